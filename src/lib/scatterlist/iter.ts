/**
 * The scatterlist iterators, usable with `for…of`:
 *
 * | kernel macro | dmalab | loop variable |
 * |---|---|---|
 * | `for_each_sg(sgl, sg, nents, i)` | `forEachSg(sgl, nents)` | `Scatterlist` |
 * | `for_each_sgtable_sg(sgt, sg, i)` | `forEachSgtableSg(sgt)` (CPU view, `orig_nents`) | `Scatterlist` |
 * | `for_each_sgtable_dma_sg(sgt, sg, i)` | `forEachSgtableDmaSg(sgt)` (DMA view, `nents`) | `Scatterlist` |
 * | `for_each_sg_page(sgl, piter, nents, pgoffset)` | `forEachSgPage(sgl, nents, pgoffset)` | `SgPageIter` |
 * | `for_each_sg_dma_page(sgl, dma_iter, dma_nents, pgoffset)` | `forEachSgDmaPage(sgl, dmaNents, pgoffset)` | `SgDmaPageIter` |
 *
 * Each call returns one hand-written iterator object that reuses its result
 * and its loop variable: a walk allocates nothing per entry or per page. The
 * loop variable is valid until the next step (`sgHandle(it)` keeps one).
 *
 * The two page iterators are distinct types, as in the kernel since the 2019
 * DMA page iterator patch (seed 002): `sgPageIterPage` takes only an
 * `SgPageIter` and `sgPageIterDmaAddress` only an `SgDmaPageIter`, so mixing
 * the CPU and DMA views does not compile.
 */

import { type DmaAddr, DmalabError, PAGE_SIZE, type Page } from '../../machine/index.js';
import { checkLive, next, type SgStore, sgNextRaw } from './internal/store.js';
import { retarget, Scatterlist } from './scatterlist.js';
import type { SgTable } from './table.js';

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

function nullList(fn: string, nents: number): DmalabError {
  return new DmalabError(`${fn}: sgl is null but nents is ${nents}; the kernel would dereference NULL`, {
    field: 'sgl',
  });
}

/** The iterator of `forEachSg`: yields each entry, following chain links. */
export class SgIter implements IterableIterator<Scatterlist, undefined> {
  private s: SgStore | null;
  private i: number;
  private left: number;
  private started = false;
  private readonly sg: Scatterlist;
  private readonly res: IteratorYieldResult<Scatterlist>;

  /** @internal */
  constructor(sgl: Scatterlist | null, nents: number) {
    if (!Number.isInteger(nents) || nents < 0) {
      throw new DmalabError(`for_each_sg: nents must be a non-negative integer, got ${nents}`, {
        field: 'nents',
      });
    }
    if (sgl === null && nents > 0) throw nullList('for_each_sg', nents);
    if (sgl !== null && nents > 0) checkLive(sgl._s, sgl._i, 'for_each_sg');
    this.s = sgl === null ? null : sgl._s;
    this.i = sgl === null ? 0 : sgl._i;
    this.left = nents;
    this.sg = new Scatterlist(this.s ?? (null as unknown as SgStore), this.i);
    this.res = { done: false, value: this.sg };
  }

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<Scatterlist, undefined> {
    if (this.left === 0) return DONE;
    if (this.started) {
      // sg = sg_next(sg) happens before the loop test in C; stepping lazily
      // avoids reading past an array whose last entry ends the walk.
      const s = this.s!;
      const i = this.i;
      // The next slot when no marker is in the way (see PageWalk), else sg_next() proper.
      if ((s.flags[i]! & 26) === 0 && (s.flags[i + 1]! & 9) === 0) {
        this.i = i + 1;
      } else {
        if (!sgNextRaw(s, i)) {
          throw new DmalabError(
            `for_each_sg: the list ended but ${this.left} more entries were asked for; ` +
              'the kernel would hand the loop body a NULL entry',
            { field: 'nents' },
          );
        }
        this.s = next.s;
        this.i = next.i;
      }
      retarget(this.sg, this.s!, this.i);
    }
    this.started = true;
    this.left--;
    return this.res;
  }
}

/** `for_each_sg(sgl, sg, nents, i)`: the first `nents` entries. kernel: for_each_sg() */
export function forEachSg(sgl: Scatterlist | null, nents: number): SgIter {
  return new SgIter(sgl, nents);
}

/** `for_each_sgtable_sg()`: the CPU view, `sgt.origNents` entries. kernel: for_each_sgtable_sg() */
export function forEachSgtableSg(sgt: SgTable): SgIter {
  return new SgIter(sgt.sgl, sgt.origNents);
}

/**
 * `for_each_sgtable_dma_sg()`: the DMA view, `sgt.nents` entries (read
 * `sgDmaAddress`/`sgDmaLen`). kernel: for_each_sgtable_dma_sg()
 */
export function forEachSgtableDmaSg(sgt: SgTable): SgIter {
  return new SgIter(sgt.sgl, sgt.nents);
}

/**
 * `struct sg_page_iter` and its walk (`__sg_page_iter_next`, or the DMA
 * variant counting `sg_dma_len`), shared by the two distinct public types.
 *
 * The kernel's loop is kept in `_slow`, which reads the entries live. A step
 * that stays inside the current entry takes the fast path: one compare with
 * the entry's page count read when the walk moved onto it (`_limit`; 0 makes
 * the next step go the slow way: before the first step and after the end).
 * The entry's page is read at the same time (`_page`). Hot code uses literal
 * constants (4095 and 12 are PAGE_SIZE - 1 and PAGE_SHIFT, 5 is F_CHAIN |
 * F_PAGELESS) and steps to the next slot itself when no marker is in the
 * way: module constants and the shared `sg_next()` cost more than the step.
 */
abstract class PageWalk {
  /** `piter->sg_pgoffset`: the page's index inside `sg`, counted from `sg_page(sg)`. */
  sgPgoffset: number;
  /** @internal */ _s: SgStore | null;
  /** @internal */ _i: number;
  /** @internal `__nents`: entries left. */ _nents: number;
  /** @internal `__pg_advance`: 0 before the first step, then 1. */ _adv = 0;
  /** @internal Page count of the current entry for the fast path; 0 forces the slow path. */ _limit = 0;
  /** @internal The current entry's page (0: none, page-less or a link). */ _page = 0;
  /** @internal Count pages with `sg_dma_len` (the DMA iterator). */ readonly _dma: boolean;
  private readonly _sg: Scatterlist;

  /** @internal */
  constructor(fn: string, sglist: Scatterlist | null, nents: number, pgoffset: number, dma: boolean) {
    if (!Number.isInteger(nents) || nents < 0 || !Number.isInteger(pgoffset) || pgoffset < 0) {
      throw new DmalabError(`${fn}: nents and pgoffset must be non-negative integers`, { field: 'nents' });
    }
    if (sglist !== null && nents > 0) checkLive(sglist._s, sglist._i, fn);
    this._s = sglist === null ? null : sglist._s;
    this._i = sglist === null ? 0 : sglist._i;
    this._nents = nents;
    this._dma = dma;
    this.sgPgoffset = pgoffset >>> 0;
    this._sg = new Scatterlist(this._s ?? (null as unknown as SgStore), this._i);
  }

  /**
   * `piter->sg`: the entry holding the current page, a loop variable (moved
   * onto the current entry when read, so walks that never look pay nothing).
   */
  get sg(): Scatterlist {
    if (this._s !== null) retarget(this._sg, this._s, this._i);
    return this._sg;
  }

  /** @internal `__sg_page_iter_next()` as the kernel writes it. */
  _slow(): boolean {
    let s = this._s;
    this._limit = 0;
    if (this._nents === 0 || s === null) return false;
    let i = this._i;
    let pg = this.sgPgoffset + this._adv;
    this._adv = 1;
    const dma = this._dma;
    let count = ((s.offset[i]! + (dma ? s.dmaLength[i]! : s.length[i]!) + 4095) >>> 0) >>> 12;
    if (pg >= count) {
      do {
        pg -= count;
        // The kernel steps to sg_next() and then counts the entry off; counting
        // first gives the same answer without reading past a list's last array.
        if (--this._nents === 0) {
          this.sgPgoffset = pg;
          return false;
        }
        // sg_next(): the next slot, unless a marker says otherwise (26: END, FREED or
        // the array's last slot here; 9: CHAIN or FREED there), then sgNextRaw decides.
        if ((s.flags[i]! & 26) !== 0 || (s.flags[i + 1]! & 9) !== 0) {
          if (!sgNextRaw(s, i)) {
            this._s = null;
            this.sgPgoffset = pg;
            return false;
          }
          s = next.s;
          i = next.i;
        } else i++;
        count = ((s.offset[i]! + (dma ? s.dmaLength[i]! : s.length[i]!) + 4095) >>> 0) >>> 12;
      } while (pg >= count);
      this._s = s;
      this._i = i;
    }
    this.sgPgoffset = pg;
    this._limit = count;
    this._page = s.flags[i]! & 5 ? 0 : s.page[i]!;
    return true;
  }
}

/**
 * `struct sg_page_iter`: the CPU page iterator of `forEachSgPage`; also the
 * loop variable. Use `sgPageIterPage(piter)` for the page.
 */
export class SgPageIter extends PageWalk implements IterableIterator<SgPageIter, undefined> {
  declare private readonly __cpuPageIter: true;
  private readonly res: IteratorYieldResult<SgPageIter> = { done: false, value: this };

  /** @internal */
  constructor(fn: string, sglist: Scatterlist | null, nents: number, pgoffset: number) {
    super(fn, sglist, nents, pgoffset, false);
  }

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<SgPageIter, undefined> {
    const pg = this.sgPgoffset + 1;
    if (pg < this._limit) {
      this.sgPgoffset = pg;
      return this.res;
    }
    return this._slow() ? this.res : DONE;
  }
}

/**
 * `struct sg_dma_page_iter`: the DMA page iterator of `forEachSgDmaPage`;
 * also the loop variable. Use `sgPageIterDmaAddress(dmaIter)`; it has no page.
 */
export class SgDmaPageIter extends PageWalk implements IterableIterator<SgDmaPageIter, undefined> {
  declare private readonly __dmaPageIter: true;
  private readonly res: IteratorYieldResult<SgDmaPageIter> = { done: false, value: this };

  /** @internal */
  constructor(fn: string, sglist: Scatterlist | null, nents: number, pgoffset: number) {
    super(fn, sglist, nents, pgoffset, true);
  }

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<SgDmaPageIter, undefined> {
    const pg = this.sgPgoffset + 1;
    if (pg < this._limit) {
      this.sgPgoffset = pg;
      return this.res;
    }
    return this._slow() ? this.res : DONE;
  }
}

/**
 * `for_each_sg_page()`: every page of the first `nents` entries (CPU view:
 * `length`), starting `pgoffset` pages in; the offset may skip whole entries.
 * kernel: for_each_sg_page()
 */
export function forEachSgPage(sglist: Scatterlist | null, nents: number, pgoffset: number): SgPageIter {
  return new SgPageIter('for_each_sg_page', sglist, nents, pgoffset);
}

/**
 * `for_each_sg_dma_page()`: every DMA page of the first `dmaNents` entries
 * (the count `dma_map_sg` returned), counted with `sg_dma_len` — plus the
 * entry's CPU `offset`, a quirk the kernel keeps. kernel: for_each_sg_dma_page()
 */
export function forEachSgDmaPage(
  sglist: Scatterlist | null,
  dmaNents: number,
  pgoffset: number,
): SgDmaPageIter {
  return new SgDmaPageIter('for_each_sg_dma_page', sglist, dmaNents, pgoffset);
}

/** `for_each_sgtable_page()`: the CPU pages of `sgt.origNents` entries. kernel: for_each_sgtable_page() */
export function forEachSgtablePage(sgt: SgTable, pgoffset: number): SgPageIter {
  return new SgPageIter('for_each_sgtable_page', sgt.sgl, sgt.origNents, pgoffset);
}

/** `for_each_sgtable_dma_page()`: the DMA pages of `sgt.nents` entries. kernel: for_each_sgtable_dma_page() */
export function forEachSgtableDmaPage(sgt: SgTable, pgoffset: number): SgDmaPageIter {
  return new SgDmaPageIter('for_each_sgtable_dma_page', sgt.sgl, sgt.nents, pgoffset);
}

/**
 * `__sg_page_iter_start()`: a CPU page iterator to drive by hand with
 * `__sgPageIterNext` (the returned object is the `piter`).
 * kernel: __sg_page_iter_start()
 */
export function __sgPageIterStart(sglist: Scatterlist | null, nents: number, pgoffset: number): SgPageIter {
  return new SgPageIter('__sg_page_iter_start', sglist, nents, pgoffset);
}

/** `__sg_page_iter_next()`: advance; false at the end. kernel: __sg_page_iter_next() */
export function __sgPageIterNext(piter: SgPageIter): boolean {
  return !piter.next().done;
}

/** `__sg_page_iter_dma_next()`: advance a DMA page iterator. kernel: __sg_page_iter_dma_next() */
export function __sgPageIterDmaNext(dmaIter: SgDmaPageIter): boolean {
  return !dmaIter.next().done;
}

/**
 * `sg_page_iter_page()`: `nth_page(sg_page(piter->sg), piter->sg_pgoffset)`.
 * Null when the entry has no page (a page-less entry, where the kernel would
 * compute a bogus pointer). kernel: sg_page_iter_page()
 */
export function sgPageIterPage(piter: SgPageIter): Page | null {
  const p = piter._page;
  return p === 0 ? null : ((p + piter.sgPgoffset) as Page);
}

/**
 * `sg_page_iter_dma_address()`: `sg_dma_address(sg) + (sg_pgoffset << PAGE_SHIFT)`.
 * kernel: sg_page_iter_dma_address()
 */
export function sgPageIterDmaAddress(dmaIter: SgDmaPageIter): DmaAddr {
  const s = dmaIter._s!;
  return (s.dmaAddress[dmaIter._i]! + dmaIter.sgPgoffset * PAGE_SIZE) as DmaAddr;
}
