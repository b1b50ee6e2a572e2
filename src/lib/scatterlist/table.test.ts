import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EINVAL, GFP_KERNEL, type Page } from '../../machine/index.js';
import { forEachSgPage, forEachSgtableSg } from './iter.js';
import { sgAt, sgIsChain, sgIsLast, sgLast, sgNents, sgNext, sgPage, sgSetPage } from './scatterlist.js';
import { createSgTable, SG_MAX_SINGLE_ALLOC, sgAllocTable, sgFreeAppendTable, sgFreeTable } from './table.js';

describe('sg_alloc_table', () => {
  it('allocates one array up to SG_MAX_SINGLE_ALLOC entries', () => {
    expect(SG_MAX_SINGLE_ALLOC).toBe(128);
    for (const n of [1, 2, 127, 128]) {
      const t = createSgTable();
      expect(sgAllocTable(t, n, GFP_KERNEL)).toBe(0);
      expect([t.nents, t.origNents, sgNents(t.sgl)]).toEqual([n, n, n]);
      expect(() => sgAt(t.sgl!, n)).toThrow(/outside the array/);
      expect(sgIsLast(sgAt(t.sgl!, n - 1))).toBe(true);
    }
  });

  it('chains arrays of 128 slots, each giving its last slot to the link (300 → 127 + 127 + 46)', () => {
    const t = createSgTable();
    expect(sgAllocTable(t, 300, GFP_KERNEL)).toBe(0);
    expect(t.nents).toBe(300);
    expect(t.origNents).toBe(300);
    expect(sgIsChain(sgAt(t.sgl!, 127))).toBe(true);
    expect(sgNents(t.sgl)).toBe(300);
    // Fill every entry and read them back in order: the link slots are invisible.
    let k = 0;
    for (const sg of forEachSgtableSg(t)) sgSetPage(sg, (100 + k++) as Page, 4096, 0);
    expect(k).toBe(300);
    const seen: number[] = [];
    for (const sg of forEachSgtableSg(t)) seen.push(sgPage(sg)!);
    expect(seen).toEqual(Array.from({ length: 300 }, (_, i) => 100 + i));
    expect(sgPage(sgLast(t.sgl!, 300))).toBe(399);
    // 129 entries need a second array of 2: 127 + link, then 2.
    const u = createSgTable();
    sgAllocTable(u, 129, GFP_KERNEL);
    expect(sgIsChain(sgAt(u.sgl!, 127))).toBe(true);
    expect(sgNents(u.sgl)).toBe(129);
  });

  it('fails with -EINVAL for 0 entries, after zeroing the table', () => {
    const t = createSgTable();
    sgAllocTable(t, 3, GFP_KERNEL);
    expect(sgAllocTable(t, 0, GFP_KERNEL)).toBe(-EINVAL);
    expect(t).toEqual({ sgl: null, nents: 0, origNents: 0 });
    expect(() => sgAllocTable(t, -1, GFP_KERNEL)).toThrow(/unsigned int/);
  });
});

describe('sg_free_table', () => {
  it('frees by orig_nents, clears sgl, leaves the counts, and catches later use', () => {
    const t = createSgTable();
    sgAllocTable(t, 200, GFP_KERNEL);
    const first = t.sgl!;
    sgFreeTable(t);
    expect(t.sgl).toBeNull();
    expect(t.origNents).toBe(200);
    sgFreeTable(t); // sgl NULL: nothing to do
    expect(() => sgNents(first)).toThrow(/use after free/);
    expect(() => sgSetPage(first, 1 as Page, 1, 0)).toThrow(/use after free/);
    expect(() => forEachSgtableSg({ sgl: first, nents: 1, origNents: 1 })).toThrow(/use after free/);
    expect(() => forEachSgPage(first, 1, 0)).toThrow(/use after free/);
  });

  it('refuses a count that does not describe how the table was allocated', () => {
    const t = createSgTable();
    sgAllocTable(t, 200, GFP_KERNEL);
    const wrong = { sgl: sgAt(t.sgl!, 1), nents: 10, origNents: 10 };
    expect(() => sgFreeTable(wrong)).toThrow(/does not start where an allocation starts/);
    const short = createSgTable();
    sgAllocTable(short, 100, GFP_KERNEL);
    expect(() => sgFreeTable({ ...short, origNents: 130 })).toThrow(/not a chain link/);
    expect(() => sgFreeAppendTable({ sgt: { ...t }, prv: null, totalNents: 3 })).toThrow(/wrong allocator/);
  });

  it('allocation and freeing agree for any size (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2000 }), (n) => {
        const t = createSgTable();
        expect(sgAllocTable(t, n, GFP_KERNEL)).toBe(0);
        expect(sgNents(t.sgl)).toBe(n);
        // Walk the arrays: each full one holds 127 entries and a link; the last holds the rest.
        let h = t.sgl!;
        let left = n;
        let arrays = 1;
        while (left > SG_MAX_SINGLE_ALLOC) {
          expect(sgIsChain(sgAt(h, 127))).toBe(true);
          h = sgNext(sgAt(h, 126))!;
          left -= 127;
          arrays++;
        }
        expect(sgIsLast(sgAt(h, left - 1))).toBe(true);
        expect(() => sgAt(h, left)).toThrow(/outside the array/);
        expect(arrays).toBe(n <= 128 ? 1 : 1 + Math.ceil((n - 128) / 127));
        sgFreeTable(t);
        expect(t.sgl).toBeNull();
      }),
      { numRuns: 200 },
    );
  });
});
