import { describe, expect, it } from 'vitest';
import { findings, MiB, machine } from '../../test/mm-kit.js';
import {
  __GFP_DMA32,
  __GFP_NOWARN,
  GFP_ATOMIC,
  GFP_DMA,
  GFP_KERNEL,
  isVmallocAddr,
  linearVirtToPhys,
  PROFILE_NAMES,
  pageIsAllocated,
  pageZone,
  virtToPage,
} from '../machine/index.js';
import { kernelRead, kernelWrite } from './kaccess.js';
import {
  kfree,
  kmalloc,
  kmallocMinalign,
  kmallocObject,
  kmallocSizeRoundup,
  ksize,
  kvfree,
  kvmalloc,
  kzalloc,
  ZERO_SIZE_PTR,
} from './kmalloc.js';

describe('kmalloc size classes and alignment', () => {
  it('uses the profile minimum, or ARCH_DMA_MINALIGN when small buffers are not bounced', () => {
    const got = Object.fromEntries(PROFILE_NAMES.map((p) => [p, kmallocMinalign(machine(p))]));
    expect(got).toEqual({
      x86_64: 8,
      'arm64-coherent': 8,
      'arm64-noncoherent': 8,
      parisc: 16,
      'parisc-pcxl': 16,
      'swiotlb-force': 8,
    });
    expect(kmallocMinalign(machine('arm64-noncoherent', { kmallocBounce: false }))).toBe(128);
    // No swiotlb means nothing to bounce through: the kernel raises the minimum too.
    expect(kmallocMinalign(machine('arm64-noncoherent', { swiotlbBytes: 0 }))).toBe(128);
  });

  it('rounds sizes to the kernel classes, which disappear below the minimum alignment', () => {
    const sizes = [1, 8, 9, 33, 65, 96, 97, 129, 193, 4000, 8192, 8193, 100_000];
    const x86 = machine('x86_64');
    expect(sizes.map((s) => kmallocSizeRoundup(x86, s))).toEqual([
      8,
      8,
      16,
      64,
      96,
      96,
      128,
      192,
      256,
      4096,
      8192,
      12288 + 4096,
      131072,
    ]);
    const nob = machine('arm64-noncoherent', { kmallocBounce: false });
    expect(sizes.map((s) => kmallocSizeRoundup(nob, s))).toEqual([
      128, 128, 128, 128, 128, 128, 128, 256, 256, 4096, 8192, 16384, 131072,
    ]);
    const pa = machine('parisc');
    expect(sizes.slice(0, 6).map((s) => kmallocSizeRoundup(pa, s))).toEqual([16, 16, 16, 64, 96, 96]);
    expect(kmallocSizeRoundup(x86, 0)).toBe(0);
    expect(kmallocSizeRoundup(x86, 8 * MiB)).toBe(8 * MiB);
  });

  it('hands out naturally aligned objects, lowest address first, from the linear map', () => {
    const m = machine();
    const a = kmalloc(m, 24, GFP_KERNEL)!;
    const b = kmalloc(m, 24, GFP_KERNEL)!;
    expect(b - a).toBe(32);
    expect(a % 32).toBe(0);
    expect(ksize(m, a)).toBe(32);
    expect(kmallocObject(m, a + 5)).toEqual({ start: a, size: 32 });
    const big = kmalloc(m, 3000, GFP_KERNEL)!;
    expect(big % 4096).toBe(0);
    expect(ksize(m, big)).toBe(4096);
    const large = kmalloc(m, 20000, GFP_KERNEL)!;
    expect(ksize(m, large)).toBe(32768);
    expect(kmallocObject(m, large + 20000)).toEqual({ start: large, size: 32768 });
    const dma = kmalloc(m, 64, GFP_DMA)!;
    expect(pageZone(m, virtToPage(dma))).toBe('DMA');
    expect(findings(m)).toEqual([]);
  });
});

describe('kmalloc, kzalloc, kfree', () => {
  it('kzalloc zeroes; kmalloc(0) is ZERO_SIZE_PTR; kfree of NULL and ZERO_SIZE_PTR is a no-op', () => {
    const m = machine();
    const a = kmalloc(m, 64, GFP_KERNEL)!;
    kernelWrite(m, a, new Uint8Array(64).fill(0xee));
    kfree(m, a);
    const b = kzalloc(m, 64, GFP_KERNEL)!;
    expect(b).toBe(a);
    expect([...kernelRead(m, b, 64)!].every((x) => x === 0)).toBe(true);
    expect(kmalloc(m, 0, GFP_KERNEL)).toBe(ZERO_SIZE_PTR);
    kfree(m, ZERO_SIZE_PTR);
    kfree(m, 0);
    expect(ksize(m, ZERO_SIZE_PTR)).toBe(0);
    expect(findings(m)).toEqual([]);
  });

  it('returns a slab page to the page allocator when its last object is freed', () => {
    const m = machine();
    const a = kmalloc(m, 100, GFP_KERNEL)!;
    const page = virtToPage(a);
    expect(pageIsAllocated(m, page)).toBe(true);
    const b = kmalloc(m, 100, GFP_KERNEL)!;
    kfree(m, a);
    expect(pageIsAllocated(m, page)).toBe(true);
    kfree(m, b);
    expect(pageIsAllocated(m, page)).toBe(false);
  });

  it('reports a double free, a pointer inside an object and a non-kmalloc pointer as BUGs', () => {
    const m = machine();
    const a = kmalloc(m, 64, GFP_KERNEL)!;
    kmalloc(m, 64, GFP_KERNEL);
    kfree(m, a);
    kfree(m, a);
    const c = kmalloc(m, 64, GFP_KERNEL)!;
    kfree(m, c + 8);
    kfree(m, 0x1000);
    expect(findings(m)).toEqual([
      `BUG: kfree: double free detected in cache kmalloc-64 [address=0x${a.toString(16)}]`,
      `BUG: kfree: pointer is not the start of an object of kmalloc-64 [address=0x${(c + 8).toString(16)}]`,
      'BUG: kfree: invalid pointer: not a kmalloc address [address=0x1000]',
    ]);
  });

  it('strips GFP_DMA32 with the kernel warning and refuses sizes above KMALLOC_MAX_SIZE', () => {
    const m = machine();
    expect(kmalloc(m, 16, GFP_KERNEL | __GFP_DMA32)).not.toBeNull();
    expect(kmalloc(m, 5 * MiB, GFP_KERNEL)).toBeNull();
    expect(kmalloc(m, 5 * MiB, GFP_KERNEL | __GFP_NOWARN)).toBeNull();
    expect(findings(m)).toEqual([
      'WARN: Unexpected gfp: 0x4 (__GFP_DMA32). Fixing up to gfp: 0xcc0 (GFP_KERNEL). Fix your code!',
      'WARN: kmalloc: order 11 allocation above MAX_PAGE_ORDER [size=5242880]',
    ]);
  });

  it('kvmalloc falls back to vmalloc when kmalloc cannot, and kvfree frees either', () => {
    const m = machine();
    const small = kvmalloc(m, 100, GFP_KERNEL)!;
    expect(isVmallocAddr(small)).toBe(false);
    const huge = kvmalloc(m, 6 * MiB, GFP_KERNEL)!;
    expect(isVmallocAddr(huge)).toBe(true);
    expect(kvmalloc(m, 6 * MiB, GFP_ATOMIC)).toBeNull();
    kvfree(m, small);
    kvfree(m, huge);
    expect(findings(m)).toEqual([]);
  });
});

describe('the shared-cache-line layout (a status word beside a DMA buffer)', () => {
  // struct rx { u32 status; u8 buf[60]; } kmalloc'ed as one object, and the same two
  // fields kmalloc'ed separately (kmalloc(4) each), on every profile.
  const line = (m: ReturnType<typeof machine>, va: number) =>
    Math.floor(linearVirtToPhys(va) / m.profile.cache.lineSize);

  it('puts the status word and the buffer of one struct in one cache line everywhere', () => {
    for (const p of PROFILE_NAMES) {
      const m = machine(p);
      const rx = kmalloc(m, 64, GFP_KERNEL)!;
      expect({ p, shared: line(m, rx) === line(m, rx + 4) }).toEqual({ p, shared: true });
    }
  });

  it('lets two small allocations share a line exactly where kmalloc alignment is below the line size', () => {
    const cases: [string, boolean | undefined, number, boolean][] = [
      ['x86_64', undefined, 8, true],
      ['arm64-coherent', undefined, 8, true],
      ['arm64-noncoherent', undefined, 8, true],
      ['arm64-noncoherent', false, 128, false],
      ['parisc', undefined, 16, false],
      ['parisc-pcxl', undefined, 16, false],
      ['swiotlb-force', undefined, 8, true],
    ];
    for (const [p, bounce, gap, shared] of cases) {
      const m = machine(p, bounce === undefined ? {} : { kmallocBounce: bounce });
      const status = kmalloc(m, 4, GFP_KERNEL)!;
      const buf = kmalloc(m, 4, GFP_KERNEL)!;
      expect({ p, bounce, gap: buf - status, shared: line(m, status) === line(m, buf) }).toEqual({
        p,
        bounce,
        gap,
        shared,
      });
    }
  });

  it('separates them when the buffer is aligned to dma_get_cache_alignment inside the struct', () => {
    // struct rx { u32 status; u8 buf[64] __aligned(ARCH_DMA_MINALIGN); }
    for (const p of PROFILE_NAMES) {
      const m = machine(p);
      const align = m.profile.archDmaMinalign;
      const rx = kmalloc(m, Math.max(align, 4) + 64, GFP_KERNEL)!;
      const buf = rx + Math.max(align, 4);
      const shared = line(m, rx) === line(m, buf);
      // x86 has no ARCH_DMA_MINALIGN (its DMA is coherent): the fields still share a line.
      expect({ p, shared }).toEqual({ p, shared: p === 'x86_64' || p === 'swiotlb-force' });
    }
  });
});
