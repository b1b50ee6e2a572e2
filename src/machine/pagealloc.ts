/**
 * The page allocator, in the kernel's spirit: a buddy allocator per zone
 * (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL by physical address) with the kernel's
 * fallback order, naturally aligned blocks of 2^order frames, a CMA area for
 * large contiguous allocations, memblock reservations at boot, reference
 * counts, and a `BUG` finding for a double free.
 *
 * Free memory beyond each zone's frontier has never been handed to the buddy
 * lists and has no metadata: blocks of MAX_PAGE_ORDER are carved from the
 * frontier on demand, so a 64 GiB machine boots in constant time. Per-frame
 * metadata lives in typed arrays per 2 MiB section, created when first used.
 */

import { cacheFlush, colourOf } from './cache.js';
import { cpuZero } from './cpu.js';
import { DmalabError } from './errors.js';
import { BUG, reportFinding } from './findings.js';
import { __GFP_DMA, __GFP_DMA32, __GFP_ZERO, type Gfp } from './gfp.js';
import { apiCall, type Machine } from './machine.js';
import { type KernelVa, PAGE_SIZE, type Page, pageAddress, physToVirt, virtToPage } from './types.js';

/** `MAX_PAGE_ORDER`: the largest buddy block is 2^10 pages (4 MiB). */
export const MAX_PAGE_ORDER = 10;
const SECTION = 512;

const S_NONE = 0; // free beyond/below the frontier, or not RAM
const S_RESERVED = 1;
const S_FREE = 2; // inside a free block
const S_FREE_HEAD = 3;
const S_ALLOC_HEAD = 4;
const S_ALLOC_TAIL = 5;
const S_CMA_FREE = 6;
const S_CMA_ALLOC = 7;

export type ZoneName = 'DMA' | 'DMA32' | 'Normal';

export interface Zone {
  readonly name: ZoneName;
  readonly start: number; // first pfn
  readonly end: number; // pfn after the last
  /** Frames at or above the frontier were never handed to the buddy lists. */
  frontier: number;
  /** Free block heads per order (used as stacks). */
  free: number[][];
  /** Free pages, frontier included. */
  nrFree: number;
}

export interface PfnSection {
  state: Uint8Array;
  order: Uint8Array;
  ref: Int32Array;
  /** Index in the free list for free heads. */
  idx: Int32Array;
}

export interface Reservation {
  readonly start: number; // pfn
  readonly end: number;
  readonly name: string;
}

export interface CmaArea {
  readonly start: number; // pfn
  readonly count: number;
  /** 1 per allocated frame. */
  used: Uint8Array;
}

export interface AllocState {
  zones: Zone[];
  sections: Map<number, PfnSection>;
  reserved: Reservation[];
  cma: CmaArea | null;
}

function section(a: AllocState, pfn: number): PfnSection {
  const si = Math.floor(pfn / SECTION);
  let s = a.sections.get(si);
  if (s === undefined) {
    s = {
      state: new Uint8Array(SECTION),
      order: new Uint8Array(SECTION),
      ref: new Int32Array(SECTION),
      idx: new Int32Array(SECTION),
    };
    a.sections.set(si, s);
  }
  return s;
}

function stateOf(a: AllocState, pfn: number): number {
  const s = a.sections.get(Math.floor(pfn / SECTION));
  return s === undefined ? S_NONE : s.state[pfn % SECTION]!;
}

/** Sets up zones and the boot reservations (frame 0, the low 1 MiB, the kernel image). */
export function initPageAlloc(m: Machine): void {
  const ramPages = m.options.ramBytes / PAGE_SIZE;
  const dmaEnd = Math.min(ramPages, 2 ** m.profile.zoneDmaBits / PAGE_SIZE);
  const dma32End = Math.min(ramPages, 2 ** m.profile.zoneDma32Bits / PAGE_SIZE);
  const mk = (name: ZoneName, start: number, end: number): Zone => ({
    name,
    start,
    end: Math.max(start, end),
    frontier: start,
    free: Array.from({ length: MAX_PAGE_ORDER + 1 }, () => []),
    nrFree: Math.max(0, end - start),
  });
  const alloc: AllocState = {
    zones: [mk('DMA', 0, dmaEnd), mk('DMA32', dmaEnd, dma32End), mk('Normal', dma32End, ramPages)],
    sections: new Map(),
    reserved: [],
    cma: null,
  };
  m.hw.alloc = alloc;
  // Frame 0 and the low 1 MiB (firmware), then the kernel image: text, rodata.
  reserveRange(m, 0, 256, 'firmware');
  reserveRange(m, 256, 512, 'Kernel code');
  reserveRange(m, 512, 768, 'Kernel rodata');
  if (m.options.cmaBytes > 0) initCma(m, m.options.cmaBytes);
}

/** Physical range of the kernel image's text and rodata (dma-debug's check #17). */
export const KERNEL_TEXT_START = 256 * PAGE_SIZE;
export const KERNEL_RODATA_END = 768 * PAGE_SIZE;

function zoneOfPfn(a: AllocState, pfn: number): Zone | undefined {
  for (const z of a.zones) if (pfn >= z.start && pfn < z.end) return z;
  return undefined;
}

function reserveRange(m: Machine, start: number, end: number, name: string): void {
  const a = m.hw.alloc;
  for (const z of a.zones) {
    const lo = Math.max(start, z.start);
    const hi = Math.min(end, z.end);
    if (lo >= hi) continue;
    if (hi > z.frontier && lo < z.frontier) {
      throw new DmalabError(`memblock: range ${name} overlaps memory already given to the page allocator`);
    }
    z.nrFree -= hi - lo;
  }
  a.reserved.push({ start, end, name });
  a.reserved.sort((x, y) => x.start - y.start);
}

/**
 * `memblock_phys_alloc_range()`: reserves `size` bytes aligned to `align`
 * below `maxAddr`, top-down, during boot only (swiotlb's pool, CMA).
 */
export function memblockPhysAlloc(
  m: Machine,
  size: number,
  align: number,
  maxAddr: number,
  name: string,
): number | null {
  if (m.booted) throw new DmalabError('memblockPhysAlloc is only available while the machine boots');
  const a = m.hw.alloc;
  const pages = Math.ceil(size / PAGE_SIZE);
  const alignPages = Math.max(1, Math.ceil(align / PAGE_SIZE));
  let top = Math.min(m.options.ramBytes, maxAddr) / PAGE_SIZE;
  top = Math.floor(top);
  for (;;) {
    const start = Math.floor((top - pages) / alignPages) * alignPages;
    if (start < 768) return null;
    const clash = a.reserved.find((r) => r.start < start + pages && start < r.end);
    if (clash === undefined) {
      reserveRange(m, start, start + pages, name);
      return start * PAGE_SIZE;
    }
    top = clash.start;
  }
}

function initCma(m: Machine, bytes: number): void {
  const pa = memblockPhysAlloc(m, bytes, 4 * 1024 * 1024, 2 ** 32, 'cma');
  if (pa === null)
    throw new DmalabError(`no room for a ${bytes}-byte CMA area below 4 GiB`, { field: 'cmaBytes' });
  const start = pa / PAGE_SIZE;
  const count = bytes / PAGE_SIZE;
  m.hw.alloc.cma = { start, count, used: new Uint8Array(count) };
  for (let p = start; p < start + count; p++) section(m.hw.alloc, p).state[p % SECTION] = S_CMA_FREE;
}

function pushFree(z: Zone, a: AllocState, pfn: number, order: number): void {
  const s = section(a, pfn);
  const i = pfn % SECTION;
  s.state[i] = S_FREE_HEAD;
  s.order[i] = order;
  s.idx[i] = z.free[order]!.length;
  z.free[order]!.push(pfn);
}

function removeFree(z: Zone, a: AllocState, pfn: number, order: number): void {
  const list = z.free[order]!;
  const s = section(a, pfn);
  const i = s.idx[pfn % SECTION]!;
  const last = list.pop()!;
  if (last !== pfn) {
    list[i] = last;
    section(a, last).idx[last % SECTION] = i;
  }
  s.state[pfn % SECTION] = S_FREE;
}

function isReserved(a: AllocState, pfn: number): boolean {
  for (const r of a.reserved) if (pfn >= r.start && pfn < r.end) return true;
  return false;
}

/**
 * Hands the next naturally aligned block at the zone's frontier to the buddy
 * lists (`memblock_free_all` done lazily). Reserved frames are skipped.
 */
function carve(z: Zone, a: AllocState): boolean {
  if (z.frontier >= z.end) return false;
  const pfn = z.frontier;
  let order = MAX_PAGE_ORDER;
  while (order > 0 && (pfn % 2 ** order !== 0 || pfn + 2 ** order > z.end)) order--;
  const n = 2 ** order;
  z.frontier = pfn + n;
  let anyReserved = false;
  for (const r of a.reserved) if (r.start < pfn + n && pfn < r.end) anyReserved = true;
  if (!anyReserved) {
    pushFree(z, a, pfn, order);
    return true;
  }
  for (let p = pfn; p < pfn + n; p++) {
    if (isReserved(a, p)) section(a, p).state[p % SECTION] = isCma(a, p) ? S_CMA_FREE : S_RESERVED;
    else freeBlock(z, a, p, 0);
  }
  return true;
}

function isCma(a: AllocState, pfn: number): boolean {
  return a.cma !== null && pfn >= a.cma.start && pfn < a.cma.start + a.cma.count;
}

function buddyOf(pfn: number, order: number): number {
  const n = 2 ** order;
  return Math.floor(pfn / n) % 2 === 0 ? pfn + n : pfn - n;
}

/** Returns a block to the lists, merging with free buddies (`__free_one_page`). */
function freeBlock(z: Zone, a: AllocState, pfn: number, order: number): void {
  let head = pfn;
  let o = order;
  while (o < MAX_PAGE_ORDER) {
    const buddy = buddyOf(head, o);
    if (buddy < z.start || buddy >= z.end) break;
    const s = a.sections.get(Math.floor(buddy / SECTION));
    if (s === undefined || s.state[buddy % SECTION] !== S_FREE_HEAD || s.order[buddy % SECTION] !== o) break;
    removeFree(z, a, buddy, o);
    head = Math.min(head, buddy);
    o++;
  }
  pushFree(z, a, head, o);
}

function zonesFor(a: AllocState, gfp: Gfp): Zone[] {
  const [dma, dma32, normal] = a.zones as [Zone, Zone, Zone];
  if (gfp & __GFP_DMA) return [dma];
  if (gfp & __GFP_DMA32) return [dma32, dma];
  return [normal, dma32, dma];
}

function allocFromZone(z: Zone, a: AllocState, order: number): number {
  for (;;) {
    for (let o = order; o <= MAX_PAGE_ORDER; o++) {
      const list = z.free[o]!;
      if (list.length === 0) continue;
      const pfn = list[list.length - 1]!;
      removeFree(z, a, pfn, o);
      // Split: keep the lower half, free the upper halves (`expand`).
      let cur = o;
      while (cur > order) {
        cur--;
        pushFree(z, a, pfn + 2 ** cur, cur);
      }
      return pfn;
    }
    if (!carve(z, a)) return -1;
  }
}

function markAllocated(a: AllocState, pfn: number, order: number): void {
  const n = 2 ** order;
  for (let p = pfn; p < pfn + n; p++) {
    const s = section(a, p);
    const i = p % SECTION;
    s.state[i] = p === pfn ? S_ALLOC_HEAD : S_ALLOC_TAIL;
    s.order[i] = order;
    s.ref[i] = p === pfn ? 1 : 0;
  }
}

/**
 * `alloc_pages()`: a naturally aligned block of 2^order frames from the
 * zones the flags allow, in the kernel's fallback order; null when none
 * has room. `__GFP_ZERO` clears it through the cached linear map, as
 * `clear_page` does, then flushes that alias where kunmap does (parisc).
 */
export function allocPages(m: Machine, gfp: Gfp, order: number): Page | null {
  return apiCall(m, 'alloc_pages', () => allocPagesInner(m, gfp, order));
}

/** `alloc_pages()` without step accounting, for layers that allocate inside their own calls. */
export function allocPagesInner(m: Machine, gfp: Gfp, order: number): Page | null {
  if (!Number.isInteger(order) || order < 0 || order > MAX_PAGE_ORDER) return null;
  const a = m.hw.alloc;
  for (const z of zonesFor(a, gfp)) {
    if (z.end <= z.start || z.nrFree < 2 ** order) continue;
    const pfn = allocFromZone(z, a, order);
    if (pfn < 0) continue;
    z.nrFree -= 2 ** order;
    markAllocated(a, pfn, order);
    if (m.bus.wants['page-alloc']) m.bus.emit({ type: 'page-alloc', pfn, order, zone: z.name });
    if (gfp & __GFP_ZERO) {
      const pa = pfn * PAGE_SIZE;
      const va = physToVirt(pa);
      const len = PAGE_SIZE * 2 ** order;
      cpuZero(m, pa, va, 'cached', len);
      // clear_highpage maps each page with kmap_local_page; where kunmap flushes the kernel alias
      // (parisc), the zeroes reach memory and no line of them stays behind.
      if (m.profile.flushOnKunmap) cacheFlush(m, pa, len, colourOf(m.hw.cache, va, pa));
    }
    return pfn as Page;
  }
  return null;
}

/**
 * `__free_pages()`: drops the reference the allocation holds; the block
 * returns to the buddy lists when no reference is left. Freeing a block that
 * is not allocated with this order is the kernel's "Bad page state" BUG.
 */
export function __freePages(m: Machine, page: Page, order: number): void {
  apiCall(m, '__free_pages', () => freePagesInner(m, page, order));
}

/** `__free_pages()` without step accounting. */
export function freePagesInner(m: Machine, page: Page, order: number): void {
  const a = m.hw.alloc;
  const pfn = page as number;
  const s = a.sections.get(Math.floor(pfn / SECTION));
  const i = pfn % SECTION;
  if (s === undefined || s.state[i] !== S_ALLOC_HEAD || s.order[i] !== order || s.ref[i]! <= 0) {
    const why =
      s !== undefined && s.state[i] === S_ALLOC_HEAD && s.order[i] !== order
        ? `allocated with order ${s.order[i]}`
        : 'not allocated (double free?)';
    reportFinding(
      m,
      BUG.code,
      `Bad page state: freeing a page that is ${why} [pfn=0x${pfn.toString(16)}] [order=${order}]`,
      { details: { pfn, order } },
    );
    return;
  }
  s.ref[i] = s.ref[i]! - 1;
  if (s.ref[i]! > 0) return;
  releaseBlock(m, pfn, order);
}

function releaseBlock(m: Machine, pfn: number, order: number): void {
  const a = m.hw.alloc;
  const z = zoneOfPfn(a, pfn)!;
  const n = 2 ** order;
  for (let p = pfn; p < pfn + n; p++) section(a, p).state[p % SECTION] = S_FREE;
  z.nrFree += n;
  freeBlock(z, a, pfn, order);
  if (m.bus.wants['page-free']) m.bus.emit({ type: 'page-free', pfn, order });
}

/** `__get_free_pages()`: like `allocPages` but returns the linear-map address. */
export function __getFreePages(m: Machine, gfp: Gfp, order: number): KernelVa | null {
  return apiCall(m, '__get_free_pages', () => {
    const page = allocPagesInner(m, gfp, order);
    return page === null ? null : pageAddress(page);
  });
}

/** `free_pages()`: frees by linear-map address; address 0 is ignored, as in the kernel. */
export function freePages(m: Machine, va: KernelVa | number, order: number): void {
  if (va === 0) return;
  apiCall(m, 'free_pages', () => freePagesInner(m, virtToPage(va), order));
}

function headOf(a: AllocState, pfn: number): number {
  const s = a.sections.get(Math.floor(pfn / SECTION));
  if (s === undefined) return -1;
  const st = s.state[pfn % SECTION]!;
  if (st === S_ALLOC_HEAD || st === S_CMA_ALLOC) return pfn;
  if (st === S_ALLOC_TAIL) {
    const n = 2 ** s.order[pfn % SECTION]!;
    return Math.floor(pfn / n) * n;
  }
  return -1;
}

/** True when the frame belongs to an allocation (buddy or CMA) right now. */
export function pageIsAllocated(m: Machine, page: Page | number): boolean {
  const st = stateOf(m.hw.alloc, page);
  return st === S_ALLOC_HEAD || st === S_ALLOC_TAIL || st === S_CMA_ALLOC;
}

/**
 * True when the frame is reserved (`PageReserved`: firmware, kernel image,
 * memblock). CMA frames are not: the kernel gives them to the buddy allocator.
 */
export function pageIsReserved(m: Machine, page: Page | number): boolean {
  return isReserved(m.hw.alloc, page) && !isCma(m.hw.alloc, page);
}

/** `page_count()`: references held on the allocation the page belongs to (0 when free). */
export function pageRefCount(m: Machine, page: Page): number {
  const head = headOf(m.hw.alloc, page);
  if (head < 0) return 0;
  return section(m.hw.alloc, head).ref[head % SECTION]!;
}

/** `get_page()`: takes a reference (GUP pins do). Returns false on a free page (a kernel bug, reported). */
export function getPage(m: Machine, page: Page): boolean {
  const a = m.hw.alloc;
  const head = headOf(a, page);
  if (head < 0) {
    reportFinding(m, BUG.code, `get_page on a free page [pfn=0x${page.toString(16)}]`, {
      details: { pfn: page },
    });
    return false;
  }
  const s = section(a, head);
  s.ref[head % SECTION] = s.ref[head % SECTION]! + 1;
  return true;
}

/** `put_page()`: drops a reference; the block is freed when the last one goes. */
export function putPage(m: Machine, page: Page): void {
  const a = m.hw.alloc;
  const head = headOf(a, page);
  if (head < 0) {
    reportFinding(m, BUG.code, `put_page on a free page [pfn=0x${page.toString(16)}]`, {
      details: { pfn: page },
    });
    return;
  }
  const s = section(a, head);
  const i = head % SECTION;
  s.ref[i] = s.ref[i]! - 1;
  if (s.ref[i]! > 0) return;
  if (s.state[i] === S_CMA_ALLOC) {
    // A CMA allocation's pages go back one by one when their count drops.
    cmaReleaseRange(m, head, 1);
    return;
  }
  releaseBlock(m, head, s.order[i]!);
}

/** Free pages of a zone (frontier included), for tests and reports. */
export function zoneFreePages(m: Machine, zone: ZoneName): number {
  return m.hw.alloc.zones.find((z) => z.name === zone)?.nrFree ?? 0;
}

/** The zone a frame belongs to, or null outside RAM. */
export function pageZone(m: Machine, page: Page | number): ZoneName | null {
  return zoneOfPfn(m.hw.alloc, page)?.name ?? null;
}

/**
 * `cma_alloc()`: `count` contiguous frames from the CMA area, aligned to
 * 2^align frames; null when no such run is free.
 */
export function cmaAlloc(m: Machine, count: number, align: number): Page | null {
  const cma = m.hw.alloc.cma;
  if (cma === null || count <= 0 || count > cma.count) return null;
  const step = 2 ** Math.max(0, align);
  // Absolute alignment of the pfn, as the kernel's bitmap search does.
  let first = Math.ceil(cma.start / step) * step - cma.start;
  for (; first + count <= cma.count; first += step) {
    let ok = true;
    for (let k = 0; k < count; k++) {
      if (cma.used[first + k] === 1) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    const a = m.hw.alloc;
    for (let k = 0; k < count; k++) {
      cma.used[first + k] = 1;
      const p = cma.start + first + k;
      const s = section(a, p);
      s.state[p % SECTION] = S_CMA_ALLOC;
      s.ref[p % SECTION] = 1;
      s.order[p % SECTION] = 0;
    }
    if (m.bus.wants['page-alloc']) {
      m.bus.emit({
        type: 'page-alloc',
        pfn: cma.start + first,
        order: Math.ceil(Math.log2(count)),
        zone: 'CMA',
      });
    }
    return (cma.start + first) as Page;
  }
  return null;
}

/** `cma_release()`: returns frames to the CMA area; false when they are not CMA allocations. */
export function cmaRelease(m: Machine, page: Page, count: number): boolean {
  const cma = m.hw.alloc.cma;
  if (cma === null || page < cma.start || page + count > cma.start + cma.count) return false;
  for (let k = 0; k < count; k++) {
    if (stateOf(m.hw.alloc, page + k) !== S_CMA_ALLOC) {
      reportFinding(
        m,
        BUG.code,
        `cma_release of a frame that is not allocated [pfn=0x${(page + k).toString(16)}]`,
        {
          details: { pfn: page + k },
        },
      );
      return false;
    }
  }
  cmaReleaseRange(m, page, count);
  return true;
}

function cmaReleaseRange(m: Machine, pfn: number, count: number): void {
  const cma = m.hw.alloc.cma!;
  const a = m.hw.alloc;
  for (let k = 0; k < count; k++) {
    const p = pfn + k;
    cma.used[p - cma.start] = 0;
    const s = section(a, p);
    s.state[p % SECTION] = S_CMA_FREE;
    s.ref[p % SECTION] = 0;
  }
  if (m.bus.wants['page-free']) m.bus.emit({ type: 'page-free', pfn, order: Math.ceil(Math.log2(count)) });
}

/** The CMA area, as physical range and use count (for tests and reports). */
export function cmaInfo(m: Machine): { phys: number; size: number; used: number } | null {
  const cma = m.hw.alloc.cma;
  if (cma === null) return null;
  let used = 0;
  for (let i = 0; i < cma.count; i++) used += cma.used[i]!;
  return { phys: cma.start * PAGE_SIZE, size: cma.count * PAGE_SIZE, used };
}

/** Deep copy of the allocator state. */
export function allocClone(a: AllocState): AllocState {
  return structuredClone(a);
}
