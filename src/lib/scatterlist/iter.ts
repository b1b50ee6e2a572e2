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
import { F_CHAIN, F_PAGELESS, next, type SgStore, sgNextRaw } from './internal/store.js';
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
      if (!sgNextRaw(this.s!, this.i)) {
        throw new DmalabError(
          `for_each_sg: the list ended but ${this.left} more entries were asked for; ` +
            'the kernel would hand the loop body a NULL entry',
          { field: 'nents' },
        );
      }
      this.s = next.s;
      this.i = next.i;
      retarget(this.sg, this.s, this.i);
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
 * variant counting `sg_dma_len`): shared by the two distinct public types.
 */
abstract class PageWalk {
  /** `piter->sg`: the entry holding the current page (a loop variable). */
  readonly sg: Scatterlist;
  /** `piter->sg_pgoffset`: the page's index inside `sg`, counted from `sg_page(sg)`. */
  sgPgoffset: number;
  /** @internal */ _s: SgStore | null;
  /** @internal */ _i: number;
  /** @internal `__nents`: entries left. */ _nents: number;
  /** @internal `__pg_advance`: 0 before the first step, then 1. */ _adv = 0;

  /** @internal */
  constructor(fn: string, sglist: Scatterlist | null, nents: number, pgoffset: number) {
    if (!Number.isInteger(nents) || nents < 0 || !Number.isInteger(pgoffset) || pgoffset < 0) {
      throw new DmalabError(`${fn}: nents and pgoffset must be non-negative integers`, { field: 'nents' });
    }
    this._s = sglist === null ? null : sglist._s;
    this._i = sglist === null ? 0 : sglist._i;
    this._nents = nents;
    this.sgPgoffset = pgoffset >>> 0;
    this.sg = new Scatterlist(this._s ?? (null as unknown as SgStore), this._i);
  }

  /** One step; `dma` selects `sg_dma_len` for the page count. */
  protected step(dma: boolean): boolean {
    let s = this._s;
    if (this._nents === 0 || s === null) return false;
    let i = this._i;
    this.sgPgoffset += this._adv;
    this._adv = 1;
    // sg_page_count(): PAGE_ALIGN(offset + length) >> PAGE_SHIFT, in unsigned int.
    let count = ((s.offset[i]! + (dma ? s.dmaLength[i]! : s.length[i]!) + PAGE_SIZE - 1) >>> 0) >>> 12;
    if (this.sgPgoffset < count) return true;
    do {
      this.sgPgoffset -= count;
      // The kernel steps to sg_next() and then counts the entry off; counting
      // first gives the same answer without reading past a list's last array.
      if (--this._nents === 0) return false;
      if (!sgNextRaw(s, i)) {
        this._s = null;
        return false;
      }
      s = next.s;
      i = next.i;
      this._s = s;
      this._i = i;
      retarget(this.sg, s, i);
      count = ((s.offset[i]! + (dma ? s.dmaLength[i]! : s.length[i]!) + PAGE_SIZE - 1) >>> 0) >>> 12;
    } while (this.sgPgoffset >= count);
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

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<SgPageIter, undefined> {
    return this.step(false) ? this.res : DONE;
  }
}

/**
 * `struct sg_dma_page_iter`: the DMA page iterator of `forEachSgDmaPage`;
 * also the loop variable. Use `sgPageIterDmaAddress(dmaIter)`; it has no page.
 */
export class SgDmaPageIter extends PageWalk implements IterableIterator<SgDmaPageIter, undefined> {
  declare private readonly __dmaPageIter: true;
  private readonly res: IteratorYieldResult<SgDmaPageIter> = { done: false, value: this };

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<SgDmaPageIter, undefined> {
    return this.step(true) ? this.res : DONE;
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
  const s = piter.sg._s;
  const i = piter.sg._i;
  if (s.flags[i]! & (F_CHAIN | F_PAGELESS)) return null;
  const p = s.page[i]!;
  return p === 0 ? null : ((p + piter.sgPgoffset) as Page);
}

/**
 * `sg_page_iter_dma_address()`: `sg_dma_address(sg) + (sg_pgoffset << PAGE_SHIFT)`.
 * kernel: sg_page_iter_dma_address()
 */
export function sgPageIterDmaAddress(dmaIter: SgDmaPageIter): DmaAddr {
  const s = dmaIter.sg._s;
  return (s.dmaAddress[dmaIter.sg._i]! + dmaIter.sgPgoffset * PAGE_SIZE) as DmaAddr;
}
