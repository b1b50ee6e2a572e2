/**
 * The mapping iterator `struct sg_mapping_iter` (lib/scatterlist.c:
 * `sg_miter_start/next/skip/stop`): walks a list a page at a time, giving
 * the kernel address of each piece (`addr`, `length`) for the caller to
 * read or write, and lets the caller consume less than a piece.
 *
 * It takes the machine because mapping acts on it: an entry with no
 * `struct page` (page-less, or a NULL page) cannot be kmapped — the kernel
 * would oops there, so dmalab records an `OOPS` finding and the iteration
 * ends — and `SG_MITER_TO_SG` runs `flush_dcache_page()` when a piece is
 * released, which on a VIPT cache (PA-RISC) writes back and invalidates the
 * page's kernel alias.
 */

import {
  apiCall,
  cacheFlush,
  colourOf,
  DmalabError,
  formatHex,
  type KernelVa,
  type Machine,
  OOPS,
  PAGE_SIZE,
  type Page,
  pageAddress,
  pageToPhys,
  reportFinding,
  WARN,
} from '../../machine/index.js';
import { F_PAGELESS } from './internal/store.js';
import { forEachSgPage, type SgPageIter, sgPageIterPage } from './iter.js';
import type { Scatterlist } from './scatterlist.js';

/** `SG_MITER_ATOMIC`: map with `kmap_atomic` (no difference in the model). */
export const SG_MITER_ATOMIC = 1 << 0;
/** `SG_MITER_TO_SG`: the caller writes into the list; flush the dcache on release. */
export const SG_MITER_TO_SG = 1 << 1;
/** `SG_MITER_FROM_SG`: the caller only reads the list. */
export const SG_MITER_FROM_SG = 1 << 2;

/** `struct sg_mapping_iter`. */
export class SgMappingIter {
  /** `miter->page`: the mapped page, null when nothing is mapped. */
  page: Page | null = null;
  /** `miter->addr`: linear-map address of the mapped piece, null when nothing is mapped. */
  addr: KernelVa | null = null;
  /** `miter->length`: bytes mapped at `addr`. */
  length = 0;
  /** `miter->consumed`: bytes the caller used (defaults to `length`; set it lower to take less). */
  consumed = 0;
  /** `miter->piter`: the page iterator underneath. */
  readonly piter: SgPageIter;
  /** The machine whose memory the pieces are in. */
  readonly machine: Machine;
  /** @internal `__offset`: offset of the next piece in its page. */ _offset = 0;
  /** @internal `__remaining`: bytes left on the current page. */ _remaining = 0;
  /** @internal `__flags`. */ readonly _flags: number;
  /** @internal The kernel oopsed in this iteration: it goes no further. */ _dead = false;

  /** @internal Use `sgMiterStart`. */
  constructor(m: Machine, sgl: Scatterlist | null, nents: number, flags: number) {
    this.machine = m;
    this.piter = forEachSgPage(sgl, nents, 0);
    this._flags = flags;
  }
}

/** Starts a mapping iteration without counting a step (for the copy helpers). */
export function miterStart(m: Machine, sgl: Scatterlist | null, nents: number, flags: number): SgMappingIter {
  if ((flags & (SG_MITER_TO_SG | SG_MITER_FROM_SG)) === 0) {
    reportFinding(
      m,
      WARN.code,
      'WARNING: sg_miter_start: neither SG_MITER_TO_SG nor SG_MITER_FROM_SG given',
      {
        details: { flags },
      },
    );
  }
  return new SgMappingIter(m, sgl, nents, flags);
}

/** `sg_miter_get_next_page()`: moves to the next piece when the current page is used up. */
function getNextPage(mi: SgMappingIter): boolean {
  if (mi._remaining === 0) {
    const piter = mi.piter;
    if (piter.next().done) return false;
    const s = piter.sg._s;
    const i = piter.sg._i;
    let off = piter.sgPgoffset !== 0 ? 0 : s.offset[i]!;
    // Whole pages inside the entry's offset are skipped (unsigned int arithmetic, as in C).
    piter.sgPgoffset += off >>> 12;
    off &= PAGE_SIZE - 1;
    mi._offset = off;
    const rem = (((s.offset[i]! + s.length[i]!) >>> 0) - ((piter.sgPgoffset * PAGE_SIZE) >>> 0) - off) >>> 0;
    mi._remaining = Math.min(rem, PAGE_SIZE - off);
  }
  return true;
}

/** `flush_dcache_page()` for a kernel page: on an aliasing (VIPT) cache, flush the kernel alias. */
function flushDcachePage(m: Machine, page: Page): void {
  if (m.profile.cache.indexing !== 'vipt') return;
  const pa = pageToPhys(page);
  cacheFlush(m, pa, PAGE_SIZE, colourOf(m.hw.cache, pageAddress(page), pa));
}

/** `sg_miter_stop()` without counting a step. */
export function miterStop(mi: SgMappingIter): void {
  if (mi.consumed > mi.length) {
    reportFinding(
      mi.machine,
      WARN.code,
      `WARNING: sg_miter_stop: consumed (${mi.consumed}) > length (${mi.length})`,
      { details: { consumed: mi.consumed, length: mi.length } },
    );
  }
  if (mi.addr !== null) {
    mi._offset = (mi._offset + mi.consumed) >>> 0;
    mi._remaining = (mi._remaining - mi.consumed) >>> 0;
    if (mi._flags & SG_MITER_TO_SG) flushDcachePage(mi.machine, mi.page!);
    mi.page = null;
    mi.addr = null;
    mi.length = 0;
    mi.consumed = 0;
  }
}

/** The kernel oopses mapping an entry with no struct page: record it, end the iteration. */
function oopsNoPage(mi: SgMappingIter): void {
  const sg = mi.piter.sg;
  const s = sg._s;
  const i = sg._i;
  const pageless = (s.flags[i]! & F_PAGELESS) !== 0;
  const what = pageless ? `a page-less entry [pfn=${formatHex(s.page[i]!)}]` : 'an entry with a NULL page';
  reportFinding(
    mi.machine,
    OOPS.code,
    `BUG: unable to handle page fault: sg_miter_next() would kmap the struct page of ${what} ` +
      `[offset=${s.offset[i]}] [length=${s.length[i]}]; an entry with no struct page has no kernel mapping`,
    {
      details: {
        pageless,
        pfn: pageless ? s.page[i]! : null,
        offset: s.offset[i]!,
        length: s.length[i]!,
        pgoffset: mi.piter.sgPgoffset,
      },
    },
  );
  mi._dead = true;
}

/** `sg_miter_next()` without counting a step. */
export function miterNext(mi: SgMappingIter): boolean {
  miterStop(mi);
  if (mi._dead || !getNextPage(mi)) return false;
  const page = sgPageIterPage(mi.piter);
  if (page === null) {
    oopsNoPage(mi);
    return false;
  }
  mi.page = page;
  mi.length = mi._remaining;
  mi.consumed = mi._remaining;
  mi.addr = (pageAddress(page) + mi._offset) as KernelVa;
  return true;
}

/** `sg_miter_skip()` without counting a step. */
export function miterSkip(mi: SgMappingIter, offset: number): boolean {
  if (!Number.isInteger(offset) || offset < 0) {
    throw new DmalabError(`sg_miter_skip: offset must be a non-negative integer, got ${offset}`, {
      field: 'offset',
    });
  }
  miterStop(mi);
  let left = offset;
  while (left > 0) {
    if (mi._dead || !getNextPage(mi)) return false;
    const consumed = Math.min(left, mi._remaining);
    mi._offset += consumed;
    mi._remaining -= consumed;
    left -= consumed;
  }
  return true;
}

/**
 * `sg_miter_start()`: a mapping iterator over the first `nents` entries.
 * `flags` must include `SG_MITER_TO_SG` or `SG_MITER_FROM_SG` (else a WARN,
 * as in the kernel). kernel: sg_miter_start()
 */
export function sgMiterStart(
  m: Machine,
  sgl: Scatterlist | null,
  nents: number,
  flags: number,
): SgMappingIter {
  return apiCall(m, 'sg_miter_start', () => miterStart(m, sgl, nents, flags));
}

/**
 * `sg_miter_next()`: releases the current piece and maps the next one
 * (`page`, `addr`, `length`); false at the end, or after an `OOPS` on an
 * entry with no struct page. kernel: sg_miter_next()
 */
export function sgMiterNext(miter: SgMappingIter): boolean {
  return apiCall(miter.machine, 'sg_miter_next', () => miterNext(miter));
}

/**
 * `sg_miter_skip()`: releases the current piece and moves `offset` bytes on
 * without mapping anything; false if the list runs out. kernel: sg_miter_skip()
 */
export function sgMiterSkip(miter: SgMappingIter, offset: number): boolean {
  return apiCall(miter.machine, 'sg_miter_skip', () => miterSkip(miter, offset));
}

/**
 * `sg_miter_stop()`: releases the current piece (advancing by `consumed`);
 * the iteration can resume with `sgMiterNext`. kernel: sg_miter_stop()
 */
export function sgMiterStop(miter: SgMappingIter): void {
  apiCall(miter.machine, 'sg_miter_stop', () => miterStop(miter));
}
