import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMachine } from '../../boot.js';
import {
  addDevice,
  addPhysRegion,
  allocPages,
  cacheDirtyLines,
  cpuRead,
  cpuWrite,
  deviceDmaRead,
  GFP_KERNEL,
  type Machine,
  type MachineEvent,
  machineFindings,
  PAGE_SIZE,
  type Page,
  pageToPfn,
  physToVirt,
  runVerdict,
} from '../../machine/index.js';
import {
  sgCopyBuffer,
  sgCopyFromBuffer,
  sgCopyToBuffer,
  sgPcopyFromBuffer,
  sgPcopyToBuffer,
  sgZeroBuffer,
} from './copy.js';
import { type RefEntry, refBytes } from './internal/reference.js';
import {
  createScatterlist,
  type Scatterlist,
  sgAt,
  sgInitTable,
  sgSetPage,
  sgSetPfn,
} from './scatterlist.js';

const P = PAGE_SIZE;
const MiB = 1 << 20;

/** A list over the given entries (pfns relative to `base`). */
function listOf(base: number, entries: readonly RefEntry[]): { sgl: Scatterlist; abs: RefEntry[] } {
  const sgl = createScatterlist(entries.length);
  sgInitTable(sgl, entries.length);
  const abs = entries.map((e) => ({ ...e, pfn: base + e.pfn }));
  abs.forEach((e, i) => {
    sgSetPage(sgAt(sgl, i), e.pfn as Page, e.length, e.offset);
  });
  return { sgl, abs };
}

/** The machine's bytes at `pas`, as the CPU sees them. */
function readAt(m: Machine, pas: readonly number[]): number[] {
  const pages = new Map<number, Uint8Array>();
  return pas.map((pa) => {
    const pfn = Math.floor(pa / P);
    let page = pages.get(pfn);
    if (page === undefined) {
      page = new Uint8Array(P);
      cpuRead(m, pfn * P, physToVirt(pfn * P), 'cached', page, 0, P);
      pages.set(pfn, page);
    }
    return page[pa - pfn * P]!;
  });
}

/** Index of the first differing element, -1 when equal (cheap for long byte lists). */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function setup(profile = 'x86_64'): { m: Machine; base: number } {
  const m = createMachine({ profile, ramBytes: 64 * MiB });
  return { m, base: pageToPfn(allocPages(m, GFP_KERNEL, 6)!) };
}

// Entry 0 starts mid-page and crosses pages; entry 1 has whole pages inside its offset.
const ENTRIES: RefEntry[] = [
  { pfn: 0, offset: 3000, length: 6000 },
  { pfn: 10, offset: P + 100, length: 50 },
  { pfn: 20, offset: 0, length: 2 * P },
];
const TOTAL = 6000 + 50 + 2 * P;

describe('copy helpers', () => {
  it('copy the bytes into and out of the machine where the entries say, in list order', () => {
    const { m, base } = setup();
    const { sgl, abs } = listOf(base, ENTRIES);
    const src = pattern(TOTAL);
    expect(sgCopyFromBuffer(m, sgl, 3, src, TOTAL)).toBe(TOTAL);
    expect(readAt(m, refBytes(abs, 3))).toEqual([...src]);
    const out = new Uint8Array(TOTAL + 100);
    expect(sgCopyToBuffer(m, sgl, 3, out, out.length)).toBe(TOTAL);
    expect(out.subarray(0, TOTAL)).toEqual(src);
    expect(runVerdict(m)).toBe('clean');
  });

  it('stop at nents entries, skip bytes of the list, and return 0 when the skip runs past it', () => {
    const { m, base } = setup();
    const { sgl, abs } = listOf(base, ENTRIES);
    const src = pattern(TOTAL, 9);
    sgCopyFromBuffer(m, sgl, 3, src, TOTAL);
    const out = new Uint8Array(TOTAL);
    expect(sgCopyToBuffer(m, sgl, 2, out, TOTAL)).toBe(6050);
    expect(sgPcopyToBuffer(m, sgl, 3, out, 100, 5990)).toBe(100);
    expect(out.subarray(0, 100)).toEqual(src.subarray(5990, 6090));
    expect(sgPcopyToBuffer(m, sgl, 3, out, 100, TOTAL - 10)).toBe(10);
    expect(sgPcopyToBuffer(m, sgl, 3, out, 100, TOTAL)).toBe(0);
    expect(sgPcopyToBuffer(m, sgl, 3, out, 100, TOTAL + 1)).toBe(0);
    // sg_pcopy_from_buffer writes exactly the skipped-to bytes.
    const patch = pattern(30, 200);
    expect(sgPcopyFromBuffer(m, sgl, 3, patch, 30, 6040)).toBe(30);
    expect(readAt(m, refBytes(abs, 3).slice(6040, 6070))).toEqual([...patch]);
    expect(readAt(m, refBytes(abs, 3).slice(6030, 6040))).toEqual([...src.subarray(6030, 6040)]);
    // sg_copy_buffer is the general form.
    expect(sgCopyBuffer(m, sgl, 3, out, 30, 6040, true)).toBe(30);
    expect(out.subarray(0, 30)).toEqual(patch);
  });

  it('zero bytes with sg_zero_buffer', () => {
    const { m, base } = setup();
    const { sgl, abs } = listOf(base, ENTRIES);
    sgCopyFromBuffer(m, sgl, 3, pattern(TOTAL, 3), TOTAL);
    expect(sgZeroBuffer(m, sgl, 3, 1000, 5500)).toBe(1000);
    const bytes = readAt(m, refBytes(abs, 3));
    expect(bytes.slice(5500, 6500).every((b) => b === 0)).toBe(true);
    expect(bytes[5499]).toBe(pattern(TOTAL, 3)[5499]);
    expect(bytes[6500]).toBe(pattern(TOTAL, 3)[6500]);
    expect(sgZeroBuffer(m, sgl, 3, 10, TOTAL + 5)).toBe(0);
  });

  it('count one step per call and access memory a page piece at a time through the linear map', () => {
    const { m, base } = setup();
    const { sgl, abs } = listOf(base, ENTRIES);
    const seen: [boolean, number, number, number][] = [];
    m.bus.on('cpu-access', (ev: MachineEvent & { type: 'cpu-access' }) => {
      seen.push([ev.write, ev.pa, ev.va - ev.pa, ev.len]);
    });
    const step = m.clock.step;
    sgCopyFromBuffer(m, sgl, 3, pattern(TOTAL), TOTAL);
    expect(m.clock.step).toBe(step + 1);
    const pa0 = abs[0]!.pfn * P;
    const pa1 = abs[1]!.pfn * P;
    const pa2 = abs[2]!.pfn * P;
    const lin = physToVirt(0);
    expect(seen).toEqual([
      [true, pa0 + 3000, lin, P - 3000],
      [true, pa0 + P, lin, P],
      [true, pa0 + 2 * P, lin, 6000 - (P - 3000) - P],
      [true, pa1 + P + 100, lin, 50],
      [true, pa2, lin, P],
      [true, pa2 + P, lin, P],
    ]);
  });

  it('go through the cache model: the bytes sit in dirty lines until written back', () => {
    const { m, base } = setup('arm64-noncoherent');
    const { sgl, abs } = listOf(base, ENTRIES);
    const dev = addDevice(m, { name: 'dma0' });
    sgCopyFromBuffer(m, sgl, 3, pattern(TOTAL), TOTAL);
    const pa = abs[2]!.pfn * P;
    expect(cacheDirtyLines(m, pa, 2 * P)).toBe((2 * P) / 64);
    // A non-coherent device reads memory, which the CPU's stores have not reached yet.
    expect([...deviceDmaRead(dev, pa, 4)]).toEqual([0, 0, 0, 0]);
  });

  it("flush the kernel alias on a VIPT cache (flush_dcache_page for SG_MITER_TO_SG), as PA-RISC's does", () => {
    const { m, base } = setup('parisc');
    const { sgl, abs } = listOf(base, ENTRIES);
    const src = pattern(TOTAL);
    sgCopyFromBuffer(m, sgl, 3, src, TOTAL);
    const pa = abs[2]!.pfn * P;
    expect(cacheDirtyLines(m, pa, 2 * P)).toBe(0);
    const mem = new Uint8Array(4);
    cpuRead(m, pa, physToVirt(pa), 'uncached', mem, 0, 4);
    expect([...mem]).toEqual([...src.subarray(6050, 6054)]);
    // Reading out of the list (SG_MITER_FROM_SG) flushes nothing.
    cpuWrite(m, pa, physToVirt(pa), 'cached', new Uint8Array([1, 2, 3, 4]), 0, 4);
    sgCopyToBuffer(m, sgl, 3, new Uint8Array(TOTAL), TOTAL);
    expect(cacheDirtyLines(m, pa, 4)).toBe(1);
  });

  it('stop with an OOPS at a page-less entry and return the bytes copied before it (seed 001)', () => {
    const m = createMachine({ ramBytes: 64 * MiB, pagelessSg: true });
    const pmem = addPhysRegion(m, 'pmem', 2 * MiB, 'pmem0');
    const base = pageToPfn(allocPages(m, GFP_KERNEL, 2)!);
    const sgl = createScatterlist(3);
    sgInitTable(sgl, 3);
    sgSetPage(sgl, base as Page, 100, 0);
    sgSetPfn(sgAt(sgl, 1), pmem.start / P, 200, 16);
    sgSetPage(sgAt(sgl, 2), (base + 1) as Page, 300, 0);
    expect(sgCopyFromBuffer(m, sgl, 3, pattern(600), 600)).toBe(100);
    const f = machineFindings(m);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({
      code: 'OOPS',
      verdict: 'broken',
      call: 'sg_copy_from_buffer',
      details: { pageless: true, pfn: pmem.start / P, offset: 16, length: 200 },
    });
    expect(f[0]!.message).toMatch(/page-less entry \[pfn=0x[0-9a-f]+\]/);
    expect(runVerdict(m)).toBe('broken');
    // Skipping over it is fine (nothing is mapped), copying after it works.
    expect(sgPcopyToBuffer(m, sgAt(sgl, 2), 1, new Uint8Array(300), 300, 0)).toBe(300);
  });

  it('report an OOPS when the page has no memory behind it', () => {
    const { m } = setup();
    const sgl = createScatterlist(1);
    sgInitTable(sgl, 1);
    sgSetPage(sgl, ((64 * MiB) / P + 100) as Page, 10, 0); // beyond RAM: a hole
    expect(sgCopyToBuffer(m, sgl, 1, new Uint8Array(10), 10)).toBe(0);
    expect(machineFindings(m)[0]!.message).toMatch(/^BUG: unable to handle page fault for address: 0x/);
  });

  it('refuse a buflen longer than the buffer', () => {
    const { m, base } = setup();
    const { sgl } = listOf(base, ENTRIES);
    expect(() => sgCopyFromBuffer(m, sgl, 3, new Uint8Array(10), 11)).toThrow(/buflen/);
  });

  it('agree with the reference byte model for any list, skip and length (property)', () => {
    const { m, base } = setup();
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ offset: fc.integer({ min: 0, max: P }), length: fc.integer({ min: 0, max: 2 * P }) }),
          { minLength: 1, maxLength: 20 },
        ),
        fc.nat(3 * P),
        fc.nat(20 * P),
        fc.integer({ min: 0, max: 255 }),
        (shape, skip, buflen, seed) => {
          // Each entry in its own 3-page window, so no byte is described twice.
          const entries = shape.map((e, k) => ({ pfn: 3 * k, offset: e.offset, length: e.length }));
          const { sgl, abs } = listOf(base, entries);
          const all = refBytes(abs, entries.length);
          const expected = Math.max(0, Math.min(buflen, all.length - skip));
          const src = pattern(buflen, seed);
          const before = readAt(m, all);
          expect(sgPcopyFromBuffer(m, sgl, entries.length, src, buflen, skip)).toBe(expected);
          const after = readAt(m, all);
          const want = [...before];
          for (let k = 0; k < expected; k++) want[skip + k] = src[k]!;
          expect(firstDifference(after, want)).toBe(-1);
          const back = new Uint8Array(buflen);
          expect(sgPcopyToBuffer(m, sgl, entries.length, back, buflen, skip)).toBe(expected);
          expect(firstDifference(back.subarray(0, expected), src.subarray(0, expected))).toBe(-1);
        },
      ),
      { numRuns: 100 },
    );
    expect(runVerdict(m)).toBe('clean');
  });
});
