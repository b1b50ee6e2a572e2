import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  __freePages,
  __GFP_ZERO,
  __getFreePages,
  allocPages,
  cacheDirtyLines,
  cacheLinesPresent,
  cmaAlloc,
  cmaInfo,
  cmaRelease,
  cpuRead,
  cpuWrite,
  freePages,
  GFP_DMA,
  GFP_DMA32,
  GFP_KERNEL,
  getPage,
  machineFindings,
  PAGE_SIZE,
  type Page,
  pageIsAllocated,
  pageRefCount,
  pageZone,
  pfnToPage,
  pfnValid,
  physToVirt,
  putPage,
  runVerdict,
  virtToPage,
  zoneFreePages,
} from './index.js';

const MiB = 1 << 20;

describe('page allocator', () => {
  it('hands out naturally aligned, contiguous blocks of 2^order frames', () => {
    const m = createMachine({ ramBytes: 64 * MiB, cmaBytes: 0 });
    for (let order = 0; order <= 10; order++) {
      const p = allocPages(m, GFP_KERNEL, order);
      expect(p).not.toBeNull();
      expect(p! % 2 ** order).toBe(0);
      for (let k = 0; k < 2 ** order; k++) expect(pageIsAllocated(m, p! + k)).toBe(true);
      expect(pageIsAllocated(m, p! + 2 ** order)).toBe(false);
    }
  });

  it('respects zones and the kernel fallback order NORMAL → DMA32 → DMA', () => {
    const m = createMachine({ ramBytes: 6 * 1024 * MiB, cmaBytes: 0 });
    const normal = allocPages(m, GFP_KERNEL, 0)!;
    expect(pageZone(m, normal)).toBe('Normal');
    expect(normal * PAGE_SIZE).toBeGreaterThanOrEqual(2 ** 32);
    const dma32 = allocPages(m, GFP_KERNEL | GFP_DMA32, 0)!;
    expect(pageZone(m, dma32)).toBe('DMA32');
    const dma = allocPages(m, GFP_DMA, 0)!;
    expect(pageZone(m, dma)).toBe('DMA');
    expect(dma * PAGE_SIZE).toBeLessThan(16 * MiB);

    // A small machine has no ZONE_NORMAL: GFP_KERNEL falls back to DMA32, then DMA.
    const small = createMachine({ ramBytes: 32 * MiB, cmaBytes: 0, swiotlbBytes: 0 });
    expect(pageZone(small, allocPages(small, GFP_KERNEL, 0)!)).toBe('DMA32');
    const dma32Pages = zoneFreePages(small, 'DMA32');
    for (let i = 0; i < dma32Pages; i++) expect(allocPages(small, GFP_KERNEL, 0)).not.toBeNull();
    expect(zoneFreePages(small, 'DMA32')).toBe(0);
    expect(pageZone(small, allocPages(small, GFP_KERNEL, 0)!)).toBe('DMA');
    // GFP_DMA32 never falls back upwards; with DMA32 empty it takes DMA.
    expect(pageZone(small, allocPages(small, GFP_DMA32, 0)!)).toBe('DMA');
  });

  it('returns null when exhausted, and frees merge back into large blocks', () => {
    const m = createMachine({ ramBytes: 16 * MiB, cmaBytes: 0, swiotlbBytes: 0 });
    const free = zoneFreePages(m, 'DMA') + zoneFreePages(m, 'DMA32') + zoneFreePages(m, 'Normal');
    // 16 MiB minus the 3 MiB reserved at boot (firmware, kernel text and rodata).
    expect(free).toBe((13 * MiB) / PAGE_SIZE);
    const got: Page[] = [];
    for (;;) {
      const p = allocPages(m, GFP_KERNEL, 0);
      if (p === null) break;
      got.push(p);
    }
    expect(got.length).toBe(free);
    expect(allocPages(m, GFP_KERNEL, 0)).toBeNull();
    expect(allocPages(m, GFP_KERNEL, 3)).toBeNull();
    for (const p of got) __freePages(m, p, 0);
    expect(runVerdict(m)).toBe('clean');
    // The reserved first 3 MiB split the first 4 MiB; the rest merges back to order 10.
    const big = allocPages(m, GFP_KERNEL, 10);
    expect(big).not.toBeNull();
    expect(big! * PAGE_SIZE).toBeGreaterThanOrEqual(4 * MiB);
  });

  it('reports a double free as a BUG and leaves the allocator usable', () => {
    const m = createMachine({ ramBytes: 16 * MiB, cmaBytes: 0 });
    const p = allocPages(m, GFP_KERNEL, 1)!;
    __freePages(m, p, 1);
    __freePages(m, p, 1);
    const f = machineFindings(m);
    expect(f).toHaveLength(1);
    expect(f[0]!.code).toBe('BUG');
    expect(f[0]!.message).toBe(
      `Bad page state: freeing a page that is not allocated (double free?) [pfn=0x${p.toString(16)}] [order=1]`,
    );
    expect(f[0]!.call).toBe('__free_pages');
    expect(runVerdict(m)).toBe('broken');
    expect(allocPages(m, GFP_KERNEL, 0)).not.toBeNull();
  });

  it('reports freeing with the wrong order', () => {
    const m = createMachine({ ramBytes: 16 * MiB, cmaBytes: 0 });
    const p = allocPages(m, GFP_KERNEL, 2)!;
    __freePages(m, p, 0);
    expect(machineFindings(m)[0]!.message).toContain('allocated with order 2');
    expect(pageIsAllocated(m, p)).toBe(true);
  });

  it('keeps a page allocated while another reference holds it', () => {
    const m = createMachine({ ramBytes: 16 * MiB, cmaBytes: 0 });
    const p = allocPages(m, GFP_KERNEL, 0)!;
    expect(getPage(m, p)).toBe(true);
    expect(pageRefCount(m, p)).toBe(2);
    __freePages(m, p, 0);
    expect(pageIsAllocated(m, p)).toBe(true);
    putPage(m, p);
    expect(pageIsAllocated(m, p)).toBe(false);
    expect(pageRefCount(m, p)).toBe(0);
  });

  it('pairs __get_free_pages with free_pages through the linear map, and zeroes with __GFP_ZERO', () => {
    const m = createMachine({ ramBytes: 16 * MiB, cmaBytes: 0 });
    const va = __getFreePages(m, GFP_KERNEL, 0)!;
    const pa = (virtToPage(va) as number) * PAGE_SIZE;
    cpuWrite(m, pa, va, 'cached', new Uint8Array(8).fill(7), 0, 8);
    freePages(m, va, 0);
    freePages(m, 0, 0); // ignored, as in the kernel
    const again = allocPages(m, GFP_KERNEL | __GFP_ZERO, 0)!;
    expect(again).toBe(virtToPage(va)); // LIFO reuse
    const out = new Uint8Array(8);
    cpuRead(m, pa, physToVirt(pa), 'cached', out, 0, 8);
    expect([...out]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(runVerdict(m)).toBe('clean');
  });

  it('leaves the zeroes of __GFP_ZERO in cache except where kunmap flushes the kernel alias (parisc)', () => {
    for (const [profile, lines] of [
      ['x86_64', 64],
      ['arm64-noncoherent', 64],
      ['parisc', 0],
      ['parisc-pcxl', 0],
    ] as const) {
      const m = createMachine({ profile, ramBytes: 16 * MiB, cmaBytes: 0 });
      // A frame whose memory holds old bytes (written around the cache), freed and handed out again zeroed.
      const old = allocPages(m, GFP_KERNEL, 0)!;
      const pa = (old as number) * PAGE_SIZE;
      cpuWrite(m, pa, physToVirt(pa), 'uncached', new Uint8Array(PAGE_SIZE).fill(0xee), 0, PAGE_SIZE);
      __freePages(m, old, 0);
      expect(allocPages(m, GFP_KERNEL | __GFP_ZERO, 0), profile).toBe(old);
      expect(cacheDirtyLines(m, pa, PAGE_SIZE), profile).toBe(lines === 0 ? 0 : PAGE_SIZE / 64);
      expect(cacheLinesPresent(m, pa, PAGE_SIZE), profile).toBe(lines);
      const mem = new Uint8Array(PAGE_SIZE).fill(1);
      cpuRead(m, pa, physToVirt(pa), 'uncached', mem, 0, PAGE_SIZE);
      // Memory itself holds the zeroes only where the flush wrote them back.
      expect(
        mem.every((b) => b === 0),
        profile,
      ).toBe(lines === 0 || m.profile.uncachedSnoops);
    }
  });

  it('has no struct page for frame 0 or outside RAM', () => {
    const m = createMachine({ ramBytes: 16 * MiB });
    expect(pfnToPage(m, 0)).toBeNull();
    expect(pfnValid(m, 0)).toBe(false);
    expect(pfnToPage(m, 1)).toBe(1);
    expect(pfnValid(m, (16 * MiB) / PAGE_SIZE)).toBe(false);
  });

  it('allocates contiguous, aligned runs from the CMA area', () => {
    const m = createMachine({ ramBytes: 256 * MiB, cmaBytes: 16 * MiB });
    const info = cmaInfo(m)!;
    expect(info.size).toBe(16 * MiB);
    const a = cmaAlloc(m, 16, 4)!;
    expect(a % 16).toBe(0);
    expect(a * PAGE_SIZE).toBeGreaterThanOrEqual(info.phys);
    const b = cmaAlloc(m, 3, 0)!;
    expect(b).toBe(a + 16);
    expect(cmaInfo(m)!.used).toBe(19);
    expect(cmaRelease(m, a, 16)).toBe(true);
    expect(cmaAlloc(m, (16 * MiB) / PAGE_SIZE, 0)).toBeNull();
    expect(cmaRelease(m, (info.phys / PAGE_SIZE - 1) as Page, 1)).toBe(false);
    // Buddy allocations never come from the CMA area.
    for (let i = 0; i < 64; i++) {
      const p = allocPages(m, GFP_KERNEL | GFP_DMA32, 4)!;
      const pa = p * PAGE_SIZE;
      expect(pa + 16 * PAGE_SIZE <= info.phys || pa >= info.phys + info.size).toBe(true);
    }
  });

  it('never hands out a frame twice (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ alloc: fc.boolean(), order: fc.integer({ min: 0, max: 4 }), pick: fc.nat() }), {
          maxLength: 120,
        }),
        (ops) => {
          const m = createMachine({ ramBytes: 8 * MiB, cmaBytes: 0, swiotlbBytes: 0 });
          const live: { p: number; order: number }[] = [];
          const owner = new Map<number, number>();
          for (const op of ops) {
            if (op.alloc || live.length === 0) {
              const p = allocPages(m, GFP_KERNEL, op.order);
              if (p === null) continue;
              for (let k = 0; k < 2 ** op.order; k++) {
                if (owner.has(p + k)) return false;
                owner.set(p + k, p);
              }
              live.push({ p, order: op.order });
            } else {
              const [b] = live.splice(op.pick % live.length, 1);
              __freePages(m, b!.p as Page, b!.order);
              for (let k = 0; k < 2 ** b!.order; k++) owner.delete(b!.p + k);
            }
          }
          return runVerdict(m) === 'clean';
        },
      ),
      { numRuns: 150 },
    );
  });
});
