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

  // Pass 1: chunk boundaries. A chunk is a run of pfn-consecutive pages, cut every maxPages pages.
  if (starts.length < nPages - first + 1)
    starts = new Uint32Array(Math.max(nPages - first + 1, starts.length * 2));
  const st = starts;
  st[0] = first;
  let chunks = 1;
  let run = 0;
  let prev = pages[first]!;
  for (let i = first + 1; i < nPages; i++) {
    const p = pages[i]!;
    run++;
    if (run >= maxPages || p !== prev + 1) {
      st[chunks++] = i;
      run = 0;
    }
    prev = p;
  }
  st[chunks] = nPages;

  // Pass 2: one entry per chunk, in slots from get_next_sg().
  let fresh: SgStore | null = null;
  let remaining = size;
  for (let c = 0; c < chunks; c++) {
    const needed = chunks - c + left;
    let s: SgStore;
    let i: number;
    if (cur !== null) {
      if (!sgNextRaw(cur, ci)) {
        throw new DmalabError(
          `${fn}: prv is marked as the end of the list (an earlier call had leftPages = 0); ` +
            'the kernel would dereference NULL in get_next_sg()',
          { field: 'sgtAppend' },
        );
      }
      s = next.s;
      i = next.i;
      if (s.flags[i]! & F_END && needed !== 1) {
        // Keep the last slot of the array for the chain link to a new array.
        const n = Math.min(needed, SG_MAX_SINGLE_ALLOC);
        if (fresh === null || fresh.used + n > fresh.capacity) fresh = storeFor(chunks - c);
        const start = allocArray(fresh, n);
        sgtAppend.totalNents += n - 1;
        chainSlot(s, i, fresh, start);
        s = fresh;
        i = start;
      }
    } else {
      const n = Math.min(needed, SG_MAX_SINGLE_ALLOC);
      fresh = storeFor(chunks - c);
      i = allocArray(fresh, n);
      s = fresh;
      sgtAppend.sgt.sgl = new Scatterlist(s, i);
      sgtAppend.totalNents = n;
    }
    // sg_set_page(s, pages[from], min(size, chunk_size), offset): u32 chunk size, u64 size.
    const chunkSize = ((st[c + 1]! - st[c]!) * PAGE_SIZE - off) >>> 0;
    const f = s.flags[i]!;
    if (f & F_PAGELESS) s.flags[i] = f & ~F_PAGELESS;
    s.page[i] = pages[st[c]!]!;
    s.offset[i] = off;
    s.length[i] = remaining < chunkSize ? remaining : chunkSize;
    remaining -= chunkSize;
    if (remaining < 0) remaining += 2 ** 64;
    off = 0;
    cur = s;
    ci = i;
  }
  sgtAppend.sgt.nents += chunks;
  sgtAppend.sgt.origNents = sgtAppend.sgt.nents;
  sgtAppend.prv = new Scatterlist(cur!, ci);
  if (left === 0) markEnd(cur!, ci);
  return 0;
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
