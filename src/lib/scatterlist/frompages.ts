/**
 * Building tables from page arrays (lib/scatterlist.c:
 * `sg_alloc_append_table_from_pages`, `sg_alloc_table_from_pages_segment`),
 * with the kernel's exact rules:
 *
 * - `maxSegment` is rounded down to a page multiple; below one page the call
 *   fails with -EINVAL;
 * - pages merge while each pfn is the previous one plus 1, and an entry holds
 *   at most `maxSegment / PAGE_SIZE` pages (the first entry's offset does not
 *   earn an extra page);
 * - only the first entry carries `offset`; the last is clamped to `size`;
 * - appending first grows `prv` while the pages continue it, then adds
 *   entries in arrays sized by the `leftPages` hint, chained as needed.
 *
 * Two passes, as in C: one finds the chunk boundaries (kept in a scratch
 * array), one fills the entries into a store made for the call. Nothing is
 * allocated per page or per entry.
 */

import { DmalabError, EINVAL, type Gfp, PAGE_SIZE, type Page, UINT_MAX } from '../../machine/index.js';
import {
  chainSlot,
  checkLive,
  F_CHAIN,
  F_END,
  F_PAGELESS,
  next,
  SgStore,
  sgNextRaw,
} from './internal/store.js';
import { Scatterlist } from './scatterlist.js';
import {
  allocArray,
  createSgAppendTable,
  SG_MAX_SINGLE_ALLOC,
  type SgAppendTable,
  type SgTable,
  sgFreeAppendTable,
} from './table.js';

// Chunk start indices of the call in progress (host scratch, reused).
let starts = new Uint32Array(4096);

function u32(v: number, field: string, fn: string): number {
  if (!Number.isInteger(v)) throw new DmalabError(`${fn}: ${field} must be an integer, got ${v}`, { field });
  return v >>> 0;
}

function checkPages(pages: ArrayLike<Page>, nPages: number, fn: string): void {
  if (!Number.isInteger(nPages) || nPages < 1 || nPages > pages.length) {
    throw new DmalabError(
      `${fn}: nPages must be from 1 to pages.length (${pages.length}), got ${nPages} ` +
        '(the kernel reads pages[0] even for 0 pages)',
      { field: 'nPages' },
    );
  }
}

/** Entries of the store sized for `chunks` more entries, all in new arrays. */
function storeFor(chunks: number): SgStore {
  return new SgStore(SG_MAX_SINGLE_ALLOC * (Math.ceil(chunks / (SG_MAX_SINGLE_ALLOC - 1)) + 1));
}

/**
 * `sg_alloc_append_table_from_pages()`: appends `nPages` pages (`size` bytes
 * from `offset` in the first) to `sgtAppend`, merging physically contiguous
 * pages into entries of at most `maxSegment` bytes. `leftPages` is the
 * caller's bound on entries later calls will add (0 on the last call, which
 * marks the end). Returns 0 or `-EINVAL`; free with `sgFreeAppendTable`.
 * kernel: sg_alloc_append_table_from_pages()
 */
export function sgAllocAppendTableFromPages(
  sgtAppend: SgAppendTable,
  pages: ArrayLike<Page>,
  nPages: number,
  offset: number,
  size: number,
  maxSegment: number,
  leftPages: number,
  _gfp: Gfp,
): number {
  const fn = 'sg_alloc_append_table_from_pages';
  checkPages(pages, nPages, fn);
  let off = u32(offset, 'offset', fn);
  const left = u32(leftPages, 'leftPages', fn);
  if (!Number.isInteger(size) || size < 0) {
    throw new DmalabError(`${fn}: size must be a non-negative integer, got ${size}`, { field: 'size' });
  }
  const maxSeg = (u32(maxSegment, 'maxSegment', fn) & ~(PAGE_SIZE - 1)) >>> 0;
  if (maxSeg < PAGE_SIZE) return -EINVAL;
  const maxPages = maxSeg / PAGE_SIZE;

  // `s` of the kernel: the entry most recently filled.
  let cur: SgStore | null = null;
  let ci = 0;
  let first = 0;
  const prv = sgtAppend.prv;
  if (prv !== null) {
    if (off !== 0) return -EINVAL;
    cur = prv._s;
    ci = prv._i;
    checkLive(cur, ci, fn);
    // The frame just after the last byte prv describes (rounded down).
    const nextPfn = Math.floor((cur.page[ci]! * PAGE_SIZE + cur.offset[ci]! + cur.length[ci]!) / PAGE_SIZE);
    if (pages[0] === nextPfn) {
      let last = nextPfn - 1;
      let len = cur.length[ci]!;
      while (first < nPages && pages[first] === last + 1) {
        if ((len + PAGE_SIZE) >>> 0 > maxSeg) break;
        len = (len + PAGE_SIZE) >>> 0;
        last = pages[first]!;
        first++;
      }
      cur.length[ci] = len;
      if (first === nPages) {
        if (left === 0) markEnd(cur, ci);
        return 0;
      }
    }
  }

  // Pass 1: chunk boundaries. A chunk is a run of pfn-consecutive pages, cut
  // after maxPages pages (`cut`: the index where the current chunk must end).
  if (starts.length < nPages - first + 1)
    starts = new Uint32Array(Math.max(nPages - first + 1, starts.length * 2));
  const st = starts;
  st[0] = first;
  let chunks = 1;
  let cut = first + maxPages;
  let prev = pages[first]!;
  for (let i = first + 1; i < nPages; i++) {
    const p = pages[i]!;
    if (p !== prev + 1 || i === cut) {
      st[chunks++] = i;
      cut = i + maxPages;
    }
    prev = p;
  }
  st[chunks] = nPages;

  // Pass 2: one entry per chunk (setChunk), in the slots get_next_sg() hands out.
  let remaining = size;
  let c = 0;

  // Phase 1 (appending): the slots after prv in the arrays already there.
  // `link` is the end slot that becomes a chain link to the next new array.
  let linkS: SgStore | null = null;
  let linkI = 0;
  if (cur !== null) {
    while (c < chunks) {
      if (!sgNextRaw(cur, ci)) {
        throw new DmalabError(
          `${fn}: prv is marked as the end of the list (an earlier call had leftPages = 0); ` +
            'the kernel would dereference NULL in get_next_sg()',
          { field: 'sgtAppend' },
        );
      }
      const s = next.s;
      const i = next.i;
      // The array's last slot is kept for the chain link unless this is the last entry needed.
      if (s.flags[i]! & F_END && chunks - c + left !== 1) {
        linkS = s;
        linkI = i;
        break;
      }
      s.flags[i] = s.flags[i]! & ~F_PAGELESS;
      remaining = setChunk(s, i, pages, st, c++, off, remaining);
      off = 0;
      cur = s;
      ci = i;
    }
  }

  // Phase 2: new arrays of min(needed, SG_MAX_SINGLE_ALLOC) slots, all in one
  // store for the call. Slots before an array's last are handed out in turn;
  // the last takes an entry only when exactly one more is needed.
  let fresh: SgStore | null = null;
  while (c < chunks) {
    const n = Math.min(chunks - c + left, SG_MAX_SINGLE_ALLOC);
    if (fresh === null || fresh.used + n > fresh.capacity) fresh = storeFor(chunks - c);
    const start = allocArray(fresh, n);
    if (linkS !== null) {
      chainSlot(linkS, linkI, fresh, start);
      sgtAppend.totalNents += n - 1;
    } else {
      sgtAppend.sgt.sgl = new Scatterlist(fresh, start);
      sgtAppend.totalNents = n;
    }
    const last = start + n - 1;
    const stop = Math.min(last, start + (chunks - c));
    let i = start;
    if (off !== 0) {
      remaining = setChunk(fresh, i++, pages, st, c++, off, remaining);
      off = 0;
    }
    // setChunk() unrolled for the bulk of the entries (fresh slots: offset 0, flags clear).
    const page = fresh.page;
    const length = fresh.length;
    let k = c;
    let rem = remaining;
    for (; i < stop; i++, k++) {
      const from = st[k]!;
      const chunkSize = ((st[k + 1]! - from) * PAGE_SIZE) >>> 0;
      page[i] = pages[from]!;
      length[i] = rem < chunkSize ? rem : chunkSize;
      rem -= chunkSize;
      if (rem < 0) rem += 2 ** 64;
    }
    c = k;
    remaining = rem;
    if (c < chunks && chunks - c + left === 1) remaining = setChunk(fresh, i++, pages, st, c++, 0, remaining);
    cur = fresh;
    ci = i - 1;
    linkS = fresh;
    linkI = last;
  }

  sgtAppend.sgt.nents += chunks;
  sgtAppend.sgt.origNents = sgtAppend.sgt.nents;
  sgtAppend.prv = new Scatterlist(cur!, ci);
  if (left === 0) markEnd(cur!, ci);
  return 0;
}

/**
 * `sg_set_page(sg, pages[first], min(size, chunk_size), offset)` for chunk
 * `c`, in the kernel's unsigned arithmetic (a u32 chunk size, a u64 size
 * that wraps); returns the size left.
 */
function setChunk(
  s: SgStore,
  i: number,
  pages: ArrayLike<Page>,
  st: Uint32Array,
  c: number,
  off: number,
  remaining: number,
): number {
  const chunkSize = ((st[c + 1]! - st[c]!) * PAGE_SIZE - off) >>> 0;
  s.page[i] = pages[st[c]!]!;
  s.offset[i] = off;
  s.length[i] = remaining < chunkSize ? remaining : chunkSize;
  const left = remaining - chunkSize;
  return left < 0 ? left + 2 ** 64 : left;
}

function markEnd(s: SgStore, i: number): void {
  if (s.flags[i]! & F_CHAIN) s.links.delete(i);
  s.flags[i] = (s.flags[i]! | F_END) & ~F_CHAIN;
}

/**
 * `sg_alloc_table_from_pages_segment()`: a table of `nPages` pages, merged
 * as `sgAllocAppendTableFromPages` does, one slot per entry. Returns 0 or
 * `-EINVAL` (the table is left as it was); free with `sgFreeTable`.
 * kernel: sg_alloc_table_from_pages_segment()
 */
export function sgAllocTableFromPagesSegment(
  sgt: SgTable,
  pages: ArrayLike<Page>,
  nPages: number,
  offset: number,
  size: number,
  maxSegment: number,
  gfp: Gfp,
): number {
  const append = createSgAppendTable();
  const err = sgAllocAppendTableFromPages(append, pages, nPages, offset, size, maxSegment, 0, gfp);
  if (err !== 0) {
    sgFreeAppendTable(append);
    return err;
  }
  sgt.sgl = append.sgt.sgl;
  sgt.nents = append.sgt.nents;
  sgt.origNents = append.sgt.origNents;
  return 0;
}

/**
 * `sg_alloc_table_from_pages()`: as `sgAllocTableFromPagesSegment` with
 * `maxSegment` = `UINT_MAX` (which rounds down to 0xfffff000).
 * kernel: sg_alloc_table_from_pages()
 */
export function sgAllocTableFromPages(
  sgt: SgTable,
  pages: ArrayLike<Page>,
  nPages: number,
  offset: number,
  size: number,
  gfp: Gfp,
): number {
  return sgAllocTableFromPagesSegment(sgt, pages, nPages, offset, size, UINT_MAX, gfp);
}
