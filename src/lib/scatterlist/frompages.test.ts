import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmalabError, EINVAL, GFP_KERNEL, PAGE_SIZE, type Page, UINT_MAX } from '../../machine/index.js';
import {
  sgAllocAppendTableFromPages,
  sgAllocTableFromPages,
  sgAllocTableFromPagesSegment,
} from './frompages.js';
import { type RefEntry, refAppend, refFromPages, refMaxSegment, refPages } from './internal/reference.js';
import { forEachSgPage, forEachSgtableSg, sgPageIterPage } from './iter.js';
import { sgAt, sgIsChain, sgIsLast, sgNents, sgPage, sgSame } from './scatterlist.js';
import {
  createSgAppendTable,
  createSgTable,
  SG_MAX_SINGLE_ALLOC,
  type SgTable,
  sgFreeAppendTable,
  sgFreeTable,
} from './table.js';

const P = PAGE_SIZE;
const pg = (pfns: readonly number[]): Page[] => pfns.map((p) => p as Page);

function entriesOf(sgt: SgTable): RefEntry[] {
  const out: RefEntry[] = [];
  for (const sg of forEachSgtableSg(sgt))
    out.push({ pfn: sgPage(sg)!, offset: sg.offset, length: sg.length });
  return out;
}

function pagesOf(sgt: SgTable, nents: number, pgoffset: number): number[] {
  const out: number[] = [];
  for (const piter of forEachSgPage(sgt.sgl, nents, pgoffset)) out.push(sgPageIterPage(piter)!);
  return out;
}

// The kernel's tools/testing/scatterlist/main.c table (../shared/vectors/kernel-sg-table.json):
// pfn = test value + 1. Append cases: first call with leftPages = n, second with the append pages and 0.
const KERNEL_CASES: readonly {
  id: number;
  pfns: number[];
  appendPfns?: number[];
  offset: number;
  size: number;
  maxSegment: number;
  expectRet: number;
  expectNents?: number;
}[] = [
  { id: 1, pfns: [1], offset: 0, size: 4096, maxSegment: 0, expectRet: -22 },
  { id: 2, pfns: [1], offset: 0, size: 4096, maxSegment: 4097, expectRet: 0, expectNents: 1 },
  { id: 3, pfns: [1], offset: 0, size: 4096, maxSegment: 4294967295, expectRet: 0, expectNents: 1 },
  { id: 4, pfns: [1], offset: 0, size: 1, maxSegment: 4294967295, expectRet: 0, expectNents: 1 },
  { id: 5, pfns: [1, 2], offset: 0, size: 8192, maxSegment: 4294967295, expectRet: 0, expectNents: 1 },
  { id: 6, pfns: [2, 1], offset: 0, size: 8192, maxSegment: 4294967295, expectRet: 0, expectNents: 2 },
  { id: 7, pfns: [1, 2, 3], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 1 },
  { id: 8, pfns: [1, 2, 3], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 1 },
  {
    id: 9,
    pfns: [1, 2, 3],
    appendPfns: [4, 5, 6],
    offset: 0,
    size: 12288,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 1,
  },
  {
    id: 10,
    pfns: [1, 2, 3],
    appendPfns: [5, 6, 7],
    offset: 0,
    size: 12288,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 2,
  },
  { id: 11, pfns: [1, 3, 2], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 3 },
  { id: 12, pfns: [1, 2, 4], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 2 },
  { id: 13, pfns: [2, 3, 5], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 2 },
  { id: 14, pfns: [2, 4, 5], offset: 0, size: 12288, maxSegment: 4294967295, expectRet: 0, expectNents: 2 },
  {
    id: 15,
    pfns: [1, 2, 4, 5],
    offset: 0,
    size: 16384,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 2,
  },
  {
    id: 16,
    pfns: [1, 2, 4, 5, 6],
    offset: 0,
    size: 20480,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 2,
  },
  {
    id: 17,
    pfns: [1, 2, 4, 5, 7],
    offset: 0,
    size: 20480,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 3,
  },
  {
    id: 18,
    pfns: [1, 2, 3, 4, 5],
    offset: 0,
    size: 20480,
    maxSegment: 4294967295,
    expectRet: 0,
    expectNents: 1,
  },
  { id: 19, pfns: [1, 2, 3, 4, 5], offset: 0, size: 20480, maxSegment: 8192, expectRet: 0, expectNents: 3 },
  {
    id: 20,
    pfns: [1, 2, 3, 4, 5, 6],
    offset: 0,
    size: 24576,
    maxSegment: 8192,
    expectRet: 0,
    expectNents: 3,
  },
  {
    id: 21,
    pfns: [1, 3, 4, 5, 6, 7],
    offset: 0,
    size: 24576,
    maxSegment: 8192,
    expectRet: 0,
    expectNents: 4,
  },
  {
    id: 22,
    pfns: [1, 2, 4, 5, 6, 7],
    appendPfns: [8, 9, 10, 11, 12, 13],
    offset: 0,
    size: 24576,
    maxSegment: 49152,
    expectRet: 0,
    expectNents: 2,
  },
];

describe("the kernel's own test table (tools/testing/scatterlist)", () => {
  it('has all 22 cases', () => {
    expect(KERNEL_CASES.map((c) => c.id)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
  });

  for (const c of KERNEL_CASES) {
    it(`case ${c.id}: ${c.appendPfns ? 'append ' : ''}[${c.pfns}] max ${c.maxSegment} → ${c.expectNents ?? c.expectRet}`, () => {
      const n = c.pfns.length;
      if (c.appendPfns === undefined) {
        const t = createSgTable();
        const ret = sgAllocTableFromPagesSegment(
          t,
          pg(c.pfns),
          n,
          c.offset,
          c.size,
          c.maxSegment,
          GFP_KERNEL,
        );
        expect(ret).toBe(c.expectRet);
        if (ret === 0) {
          expect(t.nents).toBe(c.expectNents);
          expect(t.origNents).toBe(c.expectNents);
          sgFreeTable(t);
        }
      } else {
        const a = createSgAppendTable();
        expect(
          sgAllocAppendTableFromPages(a, pg(c.pfns), n, c.offset, c.size, c.maxSegment, n, GFP_KERNEL),
        ).toBe(0);
        const ret = sgAllocAppendTableFromPages(
          a,
          pg(c.appendPfns),
          n,
          0,
          c.size,
          c.maxSegment,
          0,
          GFP_KERNEL,
        );
        expect(ret).toBe(c.expectRet);
        expect(a.sgt.nents).toBe(c.expectNents);
        sgFreeAppendTable(a);
      }
    });
  }

  it('gives the entries the kernel gives (cases 19, 21 and 22)', () => {
    const t = createSgTable();
    sgAllocTableFromPagesSegment(t, pg([1, 2, 3, 4, 5]), 5, 0, 5 * P, 2 * P, GFP_KERNEL);
    expect(entriesOf(t)).toEqual([
      { pfn: 1, offset: 0, length: 2 * P },
      { pfn: 3, offset: 0, length: 2 * P },
      { pfn: 5, offset: 0, length: P },
    ]);
    sgAllocTableFromPagesSegment(t, pg([1, 3, 4, 5, 6, 7]), 6, 0, 6 * P, 2 * P, GFP_KERNEL);
    expect(entriesOf(t).map((e) => [e.pfn, e.length / P])).toEqual([
      [1, 1],
      [3, 2],
      [5, 2],
      [7, 1],
    ]);
    // Case 22: prv grows from 4 pages to 10 (within 12 pages), the rest does not fit any more.
    const a = createSgAppendTable();
    sgAllocAppendTableFromPages(a, pg([1, 2, 4, 5, 6, 7]), 6, 0, 6 * P, 12 * P, 6, GFP_KERNEL);
    expect(a.prv!.length).toBe(4 * P);
    sgAllocAppendTableFromPages(a, pg([8, 9, 10, 11, 12, 13]), 6, 0, 6 * P, 12 * P, 0, GFP_KERNEL);
    expect(entriesOf(a.sgt).map((e) => [e.pfn, e.length / P])).toEqual([
      [1, 2],
      [4, 10],
    ]);
    expect(sgIsLast(a.prv!)).toBe(true);
  });
});

describe('sgAllocTableFromPagesSegment edge cases', () => {
  it('puts the offset on the first entry only and clamps the last entry to size', () => {
    const t = createSgTable();
    // 100 bytes into page 10, 3*4096 - 100 - 50 bytes: pages 10,11 merge, 13 stands alone.
    const size = 3 * P - 150;
    expect(sgAllocTableFromPages(t, pg([10, 11, 13]), 3, 100, size, GFP_KERNEL)).toBe(0);
    expect(entriesOf(t)).toEqual([
      { pfn: 10, offset: 100, length: 2 * P - 100 },
      { pfn: 13, offset: 0, length: P - 50 },
    ]);
  });

  it('rounds maxSegment down to whole pages, in unsigned int arithmetic', () => {
    const t = createSgTable();
    const run = pg(Array.from({ length: 40 }, (_, i) => 100 + i));
    for (const ms of [4096, 4097, 5000, 8191]) {
      sgAllocTableFromPagesSegment(t, run, 40, 0, 40 * P, ms, GFP_KERNEL);
      expect(t.nents).toBe(40);
    }
    // 70000 acts as 69632: 17 pages per entry.
    sgAllocTableFromPagesSegment(t, run, 40, 0, 40 * P, 70000, GFP_KERNEL);
    expect(entriesOf(t).map((e) => e.length / P)).toEqual([17, 17, 6]);
    // unsigned int: 2^32 + 8192 is 8192.
    sgAllocTableFromPagesSegment(t, run, 40, 0, 40 * P, 2 ** 32 + 8192, GFP_KERNEL);
    expect(t.nents).toBe(20);
    // The first entry's offset does not earn an extra page.
    sgAllocTableFromPagesSegment(t, run, 40, 1000, 40 * P - 1000, 8192, GFP_KERNEL);
    expect(entriesOf(t)[0]).toEqual({ pfn: 100, offset: 1000, length: 2 * P - 1000 });
    expect(t.nents).toBe(20);
  });

  it('fails with -EINVAL below one page, leaving the table as it was', () => {
    const t = createSgTable();
    for (const ms of [0, 1, 4095]) {
      expect(sgAllocTableFromPagesSegment(t, pg([1]), 1, 0, P, ms, GFP_KERNEL)).toBe(-EINVAL);
      expect(t).toEqual({ sgl: null, nents: 0, origNents: 0 });
    }
  });

  it('never lets an entry reach 4 GiB with UINT_MAX (0xfffff000 per entry)', () => {
    const n = 1024 * 1024 + 3;
    const pages = new Array<Page>(n);
    for (let i = 0; i < n; i++) pages[i] = (1000 + i) as Page;
    const t = createSgTable();
    expect(sgAllocTableFromPages(t, pages, n, 0, n * P, GFP_KERNEL)).toBe(0);
    expect(entriesOf(t)).toEqual([
      { pfn: 1000, offset: 0, length: 0xfffff000 },
      { pfn: 1000 + 1048575, offset: 0, length: 4 * P },
    ]);
    expect(UINT_MAX).toBe(0xffffffff);
  });

  it('merges only ascending neighbours: duplicates and descending pfns start new entries', () => {
    const t = createSgTable();
    sgAllocTableFromPages(t, pg([5, 5, 6, 4, 5, 9, 8]), 7, 0, 7 * P, GFP_KERNEL);
    expect(entriesOf(t).map((e) => [e.pfn, e.length / P])).toEqual([
      [5, 1],
      [5, 2],
      [4, 2],
      [9, 1],
      [8, 1],
    ]);
  });

  it('keeps the kernel quirk of an unchecked size: once size runs out, later entries get whole chunks', () => {
    const t = createSgTable();
    sgAllocTableFromPages(t, pg([1, 2, 4, 7]), 4, 0, 100, GFP_KERNEL);
    expect(entriesOf(t).map((e) => e.length)).toEqual([100, P, P]);
  });

  it('chains across arrays of SG_MAX_SINGLE_ALLOC entries when there are many chunks', () => {
    const pfns = Array.from({ length: 300 }, (_, i) => 10 + 2 * i); // never adjacent
    const t = createSgTable();
    expect(sgAllocTableFromPages(t, pg(pfns), 300, 0, 300 * P, GFP_KERNEL)).toBe(0);
    expect(t.nents).toBe(300);
    expect(t.origNents).toBe(300);
    expect(sgNents(t.sgl)).toBe(300);
    // Arrays of 128 (127 entries + link), 128 (127 + link), 46.
    expect(sgIsChain(sgAt(t.sgl!, 127))).toBe(true);
    expect(entriesOf(t).map((e) => e.pfn)).toEqual(pfns);
    sgFreeTable(t);
    expect(t.sgl).toBeNull();
  });

  it('rejects arguments C cannot even express', () => {
    const t = createSgTable();
    expect(() => sgAllocTableFromPages(t, pg([1]), 0, 0, 0, GFP_KERNEL)).toThrow(DmalabError);
    expect(() => sgAllocTableFromPages(t, pg([1]), 2, 0, 2 * P, GFP_KERNEL)).toThrow(/nPages/);
    expect(() => sgAllocTableFromPages(t, pg([1]), 1, 0.5, P, GFP_KERNEL)).toThrow(/offset/);
    expect(() => sgAllocTableFromPages(t, pg([1]), 1, 0, -1, GFP_KERNEL)).toThrow(/size/);
  });
});

describe('sgAllocAppendTableFromPages', () => {
  it('merges into prv while pages continue it, up to maxSegment, then adds entries', () => {
    const a = createSgAppendTable();
    expect(sgAllocAppendTableFromPages(a, pg([10, 11]), 2, 0, 2 * P, 3 * P, 4, GFP_KERNEL)).toBe(0);
    expect(a.totalNents).toBe(5); // one array: 1 chunk + 4 left
    expect(sgAllocAppendTableFromPages(a, pg([12, 13, 14, 20]), 4, 0, 4 * P, 3 * P, 0, GFP_KERNEL)).toBe(0);
    expect(entriesOf(a.sgt).map((e) => [e.pfn, e.length / P])).toEqual([
      [10, 3],
      [13, 2],
      [20, 1],
    ]);
    expect(a.sgt.nents).toBe(3);
    expect(a.sgt.origNents).toBe(3);
    expect(sgIsLast(a.prv!)).toBe(true);
    expect(sgSame(a.prv, sgAt(a.sgt.sgl!, 2))).toBe(true);
    sgFreeAppendTable(a);
  });

  it('returns without a new entry when every page merges into prv', () => {
    const a = createSgAppendTable();
    sgAllocAppendTableFromPages(a, pg([10]), 1, 0, P, UINT_MAX, 1, GFP_KERNEL);
    const prv = a.prv!;
    expect(sgAllocAppendTableFromPages(a, pg([11, 12]), 2, 0, 2 * P, UINT_MAX, 0, GFP_KERNEL)).toBe(0);
    expect(a.sgt.nents).toBe(1);
    expect(sgSame(a.prv, prv)).toBe(true);
    expect(prv.length).toBe(3 * P);
    expect(sgIsLast(prv)).toBe(true);
  });

  it('takes the page after the byte where prv ends, rounded down (a mid-page end merges that page again)', () => {
    const a = createSgAppendTable();
    sgAllocAppendTableFromPages(a, pg([10, 11]), 2, 0, 6000, UINT_MAX, 1, GFP_KERNEL);
    expect(a.prv!.length).toBe(6000);
    sgAllocAppendTableFromPages(a, pg([11, 12]), 2, 0, 2 * P, UINT_MAX, 0, GFP_KERNEL);
    expect(a.sgt.nents).toBe(1);
    expect(a.prv!.length).toBe(6000 + 2 * P);
  });

  it('refuses an offset when appending, and a list already ended', () => {
    const a = createSgAppendTable();
    sgAllocAppendTableFromPages(a, pg([10]), 1, 0, P, UINT_MAX, 0, GFP_KERNEL);
    expect(sgAllocAppendTableFromPages(a, pg([20]), 1, 8, P, UINT_MAX, 0, GFP_KERNEL)).toBe(-EINVAL);
    expect(() => sgAllocAppendTableFromPages(a, pg([20]), 1, 0, P, UINT_MAX, 0, GFP_KERNEL)).toThrow(
      /marked as the end/,
    );
  });

  it('chains new arrays onto earlier ones across calls, and frees them all', () => {
    const a = createSgAppendTable();
    const calls = 200;
    for (let k = 0; k < calls; k++) {
      const left = calls - k - 1;
      expect(sgAllocAppendTableFromPages(a, pg([1000 + 4 * k]), 1, 0, P, UINT_MAX, left, GFP_KERNEL)).toBe(0);
    }
    expect(a.sgt.nents).toBe(200);
    expect(a.totalNents).toBe(200);
    expect(sgNents(a.sgt.sgl)).toBe(200);
    expect(sgIsChain(sgAt(a.sgt.sgl!, SG_MAX_SINGLE_ALLOC - 1))).toBe(true);
    expect(entriesOf(a.sgt).map((e) => e.pfn)).toEqual(Array.from({ length: 200 }, (_, k) => 1000 + 4 * k));
    const first = a.sgt.sgl!;
    sgFreeAppendTable(a);
    expect(a.sgt.sgl).toBeNull();
    expect(() => sgNents(first)).toThrow(/use after free/);
  });
});

// Page numbers in runs (gaps, duplicates and descents included) for the properties.
const pfnArray = fc
  .array(fc.record({ gap: fc.integer({ min: -3, max: 3 }), len: fc.integer({ min: 1, max: 9 }) }), {
    minLength: 1,
    maxLength: 30,
  })
  .map((runs) => {
    const out: number[] = [];
    let pfn = 1000;
    for (const r of runs) {
      pfn = Math.max(1, pfn + r.gap);
      for (let k = 0; k < r.len; k++) out.push(pfn++);
    }
    return out;
  });
const maxSegArb = fc.oneof(
  fc.constant(UINT_MAX),
  fc.integer({ min: P, max: 16 * P }),
  fc.integer({ min: 0, max: 40 * P }),
);

describe('against the reference model (properties)', () => {
  it('builds the same entries, whose lengths sum to size and whose pages are the input pages in order', () => {
    fc.assert(
      fc.property(
        pfnArray,
        fc.integer({ min: 0, max: P - 1 }),
        fc.integer({ min: 0, max: P - 1 }),
        maxSegArb,
        (pfns, offset, tail, maxSegment) => {
          const n = pfns.length;
          // The caller's contract: nPages = ceil((offset + size) / PAGE_SIZE).
          const size = Math.max(1, n * P - offset - tail);
          if (Math.ceil((offset + size) / P) !== n) return;
          const t = createSgTable();
          const ret = sgAllocTableFromPagesSegment(t, pg(pfns), n, offset, size, maxSegment, GFP_KERNEL);
          const ref = refFromPages(pfns, offset, size, maxSegment);
          expect(ret).toBe(ref.ret);
          if (ret !== 0) return;
          const got = entriesOf(t);
          expect(got).toEqual(ref.entries);
          expect(t.nents).toBe(got.length);
          expect(t.origNents).toBe(got.length);
          expect(got.reduce((s, e) => s + e.length, 0)).toBe(size);
          const limit = refMaxSegment(maxSegment);
          for (const e of got) expect(e.offset + e.length).toBeLessThanOrEqual(limit);
          // Every input page exactly once, in order: merging never joined non-contiguous pages.
          expect(pagesOf(t, t.nents, 0)).toEqual(pfns);
          sgFreeTable(t);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('skips pgoffset pages across entries and stops after nents entries', () => {
    fc.assert(
      fc.property(pfnArray, maxSegArb, fc.nat(80), fc.nat(40), (pfns, maxSegment, pgoffset, nentsCut) => {
        const n = pfns.length;
        const t = createSgTable();
        if (sgAllocTableFromPagesSegment(t, pg(pfns), n, 0, n * P, maxSegment, GFP_KERNEL) !== 0) return;
        const ref = refFromPages(pfns, 0, n * P, maxSegment).entries;
        const nents = Math.min(t.nents, nentsCut);
        expect(pagesOf(t, nents, pgoffset)).toEqual(refPages(ref, nents, pgoffset));
      }),
      { numRuns: 300 },
    );
  });

  it('appends in several calls exactly as the reference, chaining arrays as needed', () => {
    fc.assert(
      fc.property(
        fc.array(pfnArray, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: P, max: 12 * P }),
        fc.integer({ min: 0, max: P - 1 }),
        (parts, maxSegment, offset) => {
          const a = createSgAppendTable();
          const ref: RefEntry[] = [];
          const total = parts.reduce((s, p) => s + p.length, 0);
          // get_next_sg()'s arrays, modelled by the free slots after prv (the last one is the end slot).
          let room = 0;
          let totalNents = 0;
          let done = 0;
          parts.forEach((part, k) => {
            done += part.length;
            // An honest hint: at most one entry per page still to come.
            const left = total - done;
            const off = k === 0 ? offset : 0;
            const size = part.length * P - off;
            const before = ref.length;
            const ret = sgAllocAppendTableFromPages(
              a,
              pg(part),
              part.length,
              off,
              size,
              maxSegment,
              left,
              GFP_KERNEL,
            );
            expect(ret).toBe(refAppend(ref, part, off, size, maxSegment));
            const added = ref.length - before;
            for (let c = 0; c < added; c++) {
              const needed = added - c + left;
              if (totalNents === 0 || (room === 1 && needed !== 1)) {
                const n = Math.min(needed, SG_MAX_SINGLE_ALLOC);
                totalNents += totalNents === 0 ? n : n - 1;
                room = n;
              }
              room--;
            }
          });
          expect(entriesOf(a.sgt)).toEqual(ref);
          expect(a.sgt.nents).toBe(ref.length);
          expect(sgNents(a.sgt.sgl)).toBe(ref.length);
          expect(sgIsLast(a.prv!)).toBe(true);
          expect(a.totalNents).toBe(totalNents);
          sgFreeAppendTable(a);
          expect(a.sgt.sgl).toBeNull();
        },
      ),
      { numRuns: 300 },
    );
  });
});
