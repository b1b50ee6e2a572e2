import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DmaAddr, GFP_KERNEL, PAGE_SIZE, type Page } from '../../machine/index.js';
import { sgAllocTableFromPages } from './frompages.js';
import { refDmaPages } from './internal/reference.js';
import {
  __sgPageIterDmaNext,
  __sgPageIterNext,
  __sgPageIterStart,
  forEachSg,
  forEachSgDmaPage,
  forEachSgPage,
  forEachSgtableDmaPage,
  forEachSgtableDmaSg,
  forEachSgtablePage,
  forEachSgtableSg,
  sgPageIterDmaAddress,
  sgPageIterPage,
} from './iter.js';
import {
  createScatterlist,
  type Scatterlist,
  sgAt,
  sgHandle,
  sgInitTable,
  sgPage,
  sgSame,
  sgSetDmaAddress,
  sgSetDmaLen,
  sgSetPage,
  sgSetPfn,
} from './scatterlist.js';
import { createSgTable, type SgTable, sgAllocTable } from './table.js';

const P = PAGE_SIZE;

/** Reads each loop variable while it is current (it moves on at the next step). */
function collect<T, R>(iter: Iterable<T>, read: (it: T) => R): R[] {
  const out: R[] = [];
  for (const it of iter) out.push(read(it));
  return out;
}

/** Four separate pages, as a CPU builds them, then an IOMMU merge into one DMA segment (seed 002). */
function mergedByIommu(): SgTable {
  const t = createSgTable();
  sgAllocTableFromPages(t, [10, 20, 30, 40] as Page[], 4, 0, 4 * P, GFP_KERNEL);
  const first = t.sgl!;
  sgSetDmaAddress(first, 0x8000_0000 as DmaAddr);
  sgSetDmaLen(first, 4 * P);
  t.nents = 1; // what dma_map_sg returned
  return t;
}

describe('entry iterators', () => {
  it('for_each_sgtable_sg walks the CPU view, for_each_sgtable_dma_sg the DMA view', () => {
    const t = mergedByIommu();
    const cpu: number[] = [];
    for (const sg of forEachSgtableSg(t)) cpu.push(sgPage(sg)!);
    expect(cpu).toEqual([10, 20, 30, 40]);
    const dma: [number, number][] = [];
    for (const sg of forEachSgtableDmaSg(t)) dma.push([sg.dmaAddress, sg.dmaLength]);
    expect(dma).toEqual([[0x8000_0000, 4 * P]]);
  });

  it('reuses one loop variable; sgHandle keeps an entry', () => {
    const t = createSgTable();
    sgAllocTable(t, 3, GFP_KERNEL);
    let kept: Scatterlist | null = null;
    let loopVar: Scatterlist | null = null;
    let k = 0;
    for (const sg of forEachSg(t.sgl, 3)) {
      if (k === 0) {
        kept = sgHandle(sg);
        loopVar = sg;
      }
      k++;
    }
    expect(sgSame(kept, t.sgl)).toBe(true);
    expect(sgSame(loopVar, sgAt(t.sgl!, 2))).toBe(true);
  });

  it('follows chain links and stops after nents entries', () => {
    const t = createSgTable();
    sgAllocTable(t, 260, GFP_KERNEL);
    let n = 0;
    for (const sg of forEachSgtableSg(t)) sgSetPage(sg, (1 + n++) as Page, P, 0);
    const pages: number[] = [];
    for (const sg of forEachSg(t.sgl, 130)) pages.push(sgPage(sg)!);
    expect(pages).toEqual(Array.from({ length: 130 }, (_, i) => 1 + i));
    expect([...forEachSg(null, 0)]).toEqual([]);
  });

  it('stops with a DmalabError where the kernel would hand the body a NULL entry', () => {
    const sgl = createScatterlist(2);
    sgInitTable(sgl, 2);
    expect(() => [...forEachSg(sgl, 3)]).toThrow(/the list ended but 1 more entries/);
    expect(() => forEachSg(null, 1)).toThrow(/sgl is null/);
  });
});

describe('page iterators', () => {
  it('for_each_sg_page yields every page of each entry, counting from sg_page (offset pages included)', () => {
    const sgl = createScatterlist(3);
    sgInitTable(sgl, 3);
    sgSetPage(sgl, 100 as Page, 2 * P, 100); // touches 3 pages
    sgSetPage(sgAt(sgl, 1), 200 as Page, 0, 0); // no pages
    sgSetPage(sgAt(sgl, 2), 300 as Page, 10, 2 * P); // page 302 only: whole pages inside offset still counted
    const seen: [number, number][] = [];
    for (const piter of forEachSgPage(sgl, 3, 0)) seen.push([sgPageIterPage(piter)!, piter.sgPgoffset]);
    expect(seen).toEqual([
      [100, 0],
      [101, 1],
      [102, 2],
      [300, 0],
      [301, 1],
      [302, 2],
    ]);
  });

  it('pgoffset skips pages across the whole list, not inside the first entry only', () => {
    const t = createSgTable();
    sgAllocTableFromPages(t, [10, 11, 20, 30, 31, 32] as Page[], 6, 0, 6 * P, GFP_KERNEL);
    const from = (k: number) => collect(forEachSgtablePage(t, k), sgPageIterPage);
    expect(from(0)).toEqual([10, 11, 20, 30, 31, 32]);
    expect(from(3)).toEqual([30, 31, 32]);
    expect(from(4)).toEqual([31, 32]);
    expect(from(6)).toEqual([]);
    expect(from(99)).toEqual([]);
  });

  it('with a merged DMA list, only the DMA page iterator gives the right addresses (seed 002)', () => {
    const t = mergedByIommu();
    const dma: number[] = [];
    for (const it of forEachSgDmaPage(t.sgl, t.nents, 0)) dma.push(sgPageIterDmaAddress(it));
    expect(dma).toEqual([0x8000_0000, 0x8000_1000, 0x8000_2000, 0x8000_3000]);
    expect(collect(forEachSgtableDmaPage(t, 2), sgPageIterDmaAddress)).toEqual([0x8000_2000, 0x8000_3000]);
    // The pre-2019 misuse: the CPU iterator with the DMA count sees one page of one entry.
    const wrong = collect(forEachSgPage(t.sgl, t.nents, 0), sgPageIterPage);
    expect(wrong).toEqual([10]);
  });

  it('the DMA page count adds the CPU offset, a quirk the kernel keeps', () => {
    const sgl = createScatterlist(1);
    sgInitTable(sgl, 1);
    sgSetPage(sgl, 5 as Page, 100, 4000);
    sgSetDmaAddress(sgl, 0x1000 as DmaAddr);
    sgSetDmaLen(sgl, 100);
    expect(collect(forEachSgDmaPage(sgl, 1, 0), sgPageIterDmaAddress)).toEqual([0x1000, 0x2000]);
  });

  it('can be driven by hand as vmwgfx does with __sg_page_iter_next', () => {
    const t = createSgTable();
    sgAllocTableFromPages(t, [7, 8, 9] as Page[], 3, 0, 3 * P, GFP_KERNEL);
    const piter = __sgPageIterStart(t.sgl, t.origNents, 1);
    expect(__sgPageIterNext(piter)).toBe(true);
    expect(sgPageIterPage(piter)).toBe(8);
    expect(sgSame(piter.sg, t.sgl)).toBe(true);
    expect(__sgPageIterNext(piter)).toBe(true);
    expect(sgPageIterPage(piter)).toBe(9);
    expect(__sgPageIterNext(piter)).toBe(false);
    expect(__sgPageIterNext(piter)).toBe(false);
    sgSetDmaAddress(t.sgl!, 0x5000 as DmaAddr);
    sgSetDmaLen(t.sgl!, 3 * P);
    const d = forEachSgDmaPage(t.sgl, 1, 0);
    expect(__sgPageIterDmaNext(d)).toBe(true);
    expect(sgPageIterDmaAddress(d)).toBe(0x5000);
  });

  it('gives no page for a page-less entry, where the kernel would compute a bogus pointer', () => {
    const sgl = createScatterlist(1);
    sgInitTable(sgl, 1);
    sgSetPfn(sgl, 1 << 24, 2 * P, 0);
    expect(collect(forEachSgPage(sgl, 1, 0), sgPageIterPage)).toEqual([null, null]);
  });

  it('keeps the CPU and DMA page iterators apart at compile time (checked by tsc)', () => {
    // Never called: tsc fails the build if any line below compiles without its expected error.
    const misuses = (t: SgTable) => {
      const dmaIter = forEachSgDmaPage(t.sgl, t.nents, 0);
      const cpuIter = forEachSgPage(t.sgl, t.origNents, 0);
      // @ts-expect-error sg_page_iter_page() cannot be called on a DMA page iterator
      sgPageIterPage(dmaIter);
      // @ts-expect-error sg_page_iter_dma_address() needs the DMA iterator
      sgPageIterDmaAddress(cpuIter);
      // @ts-expect-error a scatterlist entry is not a page iterator
      sgPageIterPage(t.sgl!);
      // @ts-expect-error __sg_page_iter_next() takes the CPU iterator only
      __sgPageIterNext(dmaIter);
    };
    // What does compile: each accessor with its own iterator.
    const t = mergedByIommu();
    expect(collect(forEachSgDmaPage(t.sgl, t.nents, 0), sgPageIterDmaAddress)).toHaveLength(4);
    expect(collect(forEachSgPage(t.sgl, t.origNents, 0), sgPageIterPage)).toEqual([10, 20, 30, 40]);
    expect(misuses).toBeTypeOf('function');
  });

  it('walks DMA pages exactly as the reference model (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            offset: fc.integer({ min: 0, max: 3 * P }),
            dmaLength: fc.integer({ min: 0, max: 6 * P }),
            dmaAddress: fc.integer({ min: 0, max: 2 ** 20 }).map((x) => x * P),
          }),
          { minLength: 1, maxLength: 20 },
        ),
        fc.nat(40),
        fc.nat(30),
        (entries, nentsCut, pgoffset) => {
          const sgl = createScatterlist(entries.length);
          sgInitTable(sgl, entries.length);
          entries.forEach((e, i) => {
            const sg = sgAt(sgl, i);
            sgSetPage(sg, (i + 1) as Page, P, e.offset);
            sgSetDmaAddress(sg, e.dmaAddress as DmaAddr);
            sgSetDmaLen(sg, e.dmaLength);
          });
          const nents = Math.min(entries.length, nentsCut);
          const got = collect(forEachSgDmaPage(sgl, nents, pgoffset), sgPageIterDmaAddress);
          expect(got).toEqual(refDmaPages(entries, nents, pgoffset));
        },
      ),
      { numRuns: 300 },
    );
  });
});
