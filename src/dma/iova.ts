/**
 * The IOVA allocator of iommu-dma (drivers/iommu/iova.c), per IOMMU domain.
 *
 * Ranges are kept sorted (the kernel's rbtree) with an anchor at the top.
 * Allocation walks down from a cached node below the limit and takes the
 * highest size-aligned gap (top-down); separate cached positions for the
 * 32-bit and full spaces; a failed 32-bit search remembers the size that did
 * not fit. Freed ranges of fewer than 32 pages go to a per-size LIFO cache
 * (the per-CPU "rcache" magazines) and stay reserved in the tree until
 * reused, so a freshly unmapped IOVA is the next one handed out — as on real
 * machines, where a device that keeps using a stale IOVA hits the next
 * mapping.
 */

/** `IOVA_RANGE_CACHE_MAX_SIZE`: sizes of 2^6 pages and more bypass the cache. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** The anchor node's pfn (the kernel's `IOVA_ANCHOR`, ~0UL). */
const ANCHOR = 2 ** 52;
/** Entries the per-size cache holds before freeing to the tree (magazines + depot). */
const RCACHE_CAPACITY = 127 * 2 + 32 * 127;

export interface IovaDomainState {
  /** IOVA granule in bytes (smallest IOMMU page size). */
  granule: number;
  /** Lowest pfn ever handed out. */
  startPfn: number;
  /** Pfn of the first page above 4 GiB (`dma_32bit_pfn`). */
  dma32bitPfn: number;
  /** Allocated ranges sorted by `lo`, inclusive `[lo, hi]`, anchor last. */
  lo: number[];
  hi: number[];
  /** `pfn_lo` of the cached nodes (the anchor's when none). */
  cachedNode: number;
  cached32Node: number;
  max32AllocSize: number;
  /** Freed pfns per size order, most recent last. */
  rcache: number[][];
}

export function createIovaDomain(granule: number, startPfn = 1): IovaDomainState {
  const dma32bitPfn = 2 ** 32 / granule;
  return {
    granule,
    startPfn,
    dma32bitPfn,
    lo: [ANCHOR],
    hi: [ANCHOR],
    cachedNode: ANCHOR,
    cached32Node: ANCHOR,
    max32AllocSize: dma32bitPfn,
    rcache: Array.from({ length: IOVA_RANGE_CACHE_MAX_SIZE }, () => []),
  };
}

/** Index of the node whose `lo` is `pfn` (binary search), or -1. */
function indexOf(d: IovaDomainState, pfn: number): number {
  let a = 0;
  let b = d.lo.length - 1;
  while (a <= b) {
    const mid = (a + b) >>> 1;
    const v = d.lo[mid]!;
    if (v === pfn) return mid;
    if (v < pfn) a = mid + 1;
    else b = mid - 1;
  }
  return -1;
}

/** Index of the node containing `pfn`, or -1 (`find_iova`). */
export function findIova(d: IovaDomainState, pfn: number): number {
  let a = 0;
  let b = d.lo.length - 2; // never the anchor
  while (a <= b) {
    const mid = (a + b) >>> 1;
    if (pfn < d.lo[mid]!) b = mid - 1;
    else if (pfn > d.hi[mid]!) a = mid + 1;
    else return mid;
  }
  return -1;
}

/** The first node with `lo` > limit, where a search below `limit` starts (`iova_find_limit`). */
function findLimit(d: IovaDomainState, limitPfn: number): number {
  let i = 0;
  while (i < d.lo.length - 1 && d.lo[i]! < limitPfn) i++;
  return i;
}

function orderBase2(n: number): number {
  return n <= 1 ? 0 : Math.ceil(Math.log2(n));
}

/**
 * `__alloc_and_insert_iova_range()`: the highest free, size-aligned range of
 * `size` pfns below `limitPfn` (exclusive). Returns its first pfn or 0.
 */
function allocRange(d: IovaDomainState, size: number, limitPfn: number, sizeAligned: boolean): number {
  const align = sizeAligned ? 2 ** orderBase2(size) : 1;
  let highPfn = limitPfn;
  let lowPfn = d.startPfn;
  if (limitPfn <= d.dma32bitPfn && size >= d.max32AllocSize) return 0;
  let curr = indexOf(d, limitPfn <= d.dma32bitPfn ? d.cached32Node : d.cachedNode);
  if (curr < 0) curr = d.lo.length - 1;
  const retryPfn = d.hi[curr]!;
  let newPfn = 0;
  let prev = curr;
  for (let retried = false; ; retried = true) {
    for (;;) {
      highPfn = Math.min(highPfn, d.lo[curr]!);
      newPfn = Math.floor((highPfn - size) / align) * align;
      prev = curr;
      curr--;
      if (curr < 0 || !(newPfn <= d.hi[curr]! && newPfn >= lowPfn)) break;
    }
    if (highPfn >= size && newPfn >= lowPfn) break;
    if (!retried && lowPfn === d.startPfn && retryPfn < limitPfn) {
      highPfn = limitPfn;
      lowPfn = retryPfn + 1;
      curr = findLimit(d, limitPfn);
      continue;
    }
    d.max32AllocSize = size;
    return 0;
  }
  // Insert before `prev` (the node just above the new range).
  d.lo.splice(prev, 0, newPfn);
  d.hi.splice(prev, 0, newPfn + size - 1);
  if (newPfn + size - 1 < d.dma32bitPfn) d.cached32Node = newPfn;
  else d.cachedNode = newPfn;
  return newPfn;
}

/** `free_iova()`: removes the range starting at `pfn` from the tree. */
function freeRange(d: IovaDomainState, pfn: number): boolean {
  const i = findIova(d, pfn);
  if (i < 0) return false;
  const lo = d.lo[i]!;
  const hi = d.hi[i]!;
  const next = d.lo[i + 1]!;
  // __cached_rbnode_delete_update
  const c32 = indexOf(d, d.cached32Node);
  const c32lo = c32 < 0 ? ANCHOR : d.lo[c32]!;
  if (lo === d.cached32Node || (hi < d.dma32bitPfn && lo >= c32lo)) d.cached32Node = next;
  if (lo < d.dma32bitPfn) d.max32AllocSize = d.dma32bitPfn;
  const c = indexOf(d, d.cachedNode);
  const clo = c < 0 ? ANCHOR : d.lo[c]!;
  if (lo >= clo) d.cachedNode = next;
  d.lo.splice(i, 1);
  d.hi.splice(i, 1);
  return true;
}

/**
 * `alloc_iova_fast()`: a range of `size` pfns at or below `limitPfn`
 * (inclusive), from the cache when one of that size is there. Returns the
 * first pfn, or 0 when there is no room. With `flushRcache`, a failed search
 * empties the caches and retries once.
 */
export function allocIovaFast(
  d: IovaDomainState,
  size: number,
  limitPfn: number,
  flushRcache: boolean,
): number {
  const order = orderBase2(size);
  if (order < IOVA_RANGE_CACHE_MAX_SIZE) {
    const list = d.rcache[order]!;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i]! <= limitPfn) {
        const pfn = list[i]!;
        list.splice(i, 1);
        return pfn;
      }
    }
  }
  let pfn = allocRange(d, size, limitPfn + 1, true);
  if (pfn === 0 && flushRcache) {
    for (const list of d.rcache) {
      for (const p of list) freeRange(d, p);
      list.length = 0;
    }
    pfn = allocRange(d, size, limitPfn + 1, true);
  }
  return pfn;
}

/** `free_iova_fast()`: into the cache when small enough, else back to the tree. */
export function freeIovaFast(d: IovaDomainState, pfn: number, size: number): void {
  const order = orderBase2(size);
  if (order < IOVA_RANGE_CACHE_MAX_SIZE) {
    const list = d.rcache[order]!;
    if (list.length < RCACHE_CAPACITY) {
      list.push(pfn);
      return;
    }
    // Magazines full: the oldest cached range goes back to the tree.
    freeRange(d, list.shift()!);
    list.push(pfn);
    return;
  }
  freeRange(d, pfn);
}

/** Number of allocated ranges (cached ones included), for tests. */
export function iovaRanges(d: IovaDomainState): number {
  return d.lo.length - 1;
}
