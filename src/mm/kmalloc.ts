/**
 * kmalloc: slab-like size classes on the linear map (mm/slab_common.c,
 * mm/slub.c in spirit).
 *
 * Classes are the kernel's kmalloc caches (8, 16, 32, 64, 96, 128, 192,
 * 256 … 8192 bytes); each class size is rounded up to the minimum kmalloc
 * alignment, so classes below it disappear and alias to the next one, as
 * `new_kmalloc_cache` does. The minimum alignment is the profile's
 * `kmallocMinAlign`, unless the architecture has an `ARCH_DMA_MINALIGN`
 * above it and small buffers are not bounced for DMA (arm64 before 6.5,
 * arm32, or no swiotlb): then it is `ARCH_DMA_MINALIGN` (128 on arm64),
 * `__kmalloc_minalign()`'s rule. Two small allocations therefore share a
 * cache line on x86 and on arm64 with bouncing, never on arm64 without it.
 *
 * Objects are handed out lowest address first from the oldest slab with room
 * (the kernel's freelist order is randomised; dmalab stays deterministic). A
 * slab whose last object is freed goes back to the page allocator at once,
 * so that a user mapping left on it becomes a detectable stale PTE. Larger
 * sizes (above 8 KiB) go straight to the page allocator.
 */

import {
  __GFP_ACCOUNT,
  __GFP_DMA,
  __GFP_DMA32,
  __GFP_HIGHMEM,
  __GFP_NOFAIL,
  __GFP_NORETRY,
  __GFP_NOWARN,
  __GFP_RECLAIMABLE,
  __GFP_RETRY_MAYFAIL,
  __GFP_ZERO,
  allocPagesInner,
  apiCall,
  BUG,
  cpuZero,
  DmalabError,
  formatGfp,
  formatHex,
  freePagesInner,
  type Gfp,
  getOrder,
  gfpflagsAllowBlocking,
  isLinearMapVa,
  isVmallocAddr,
  type KernelVa,
  MAX_PAGE_ORDER,
  type Machine,
  PAGE_SIZE,
  type Page,
  pageAddress,
  reportFinding,
  virtToPage,
  WARN,
} from '../machine/index.js';
import { type KmemState, mmState, type Slab } from './internal/state.js';
import { vfreeInner, vmallocInner } from './vmalloc.js';

/** The kernel's kmalloc size classes (`kmalloc_info`), up to `KMALLOC_MAX_CACHE_SIZE`. */
export const KMALLOC_SIZES: readonly number[] = [
  8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];
/** `KMALLOC_MAX_CACHE_SIZE`: larger requests go to the page allocator. */
export const KMALLOC_MAX_CACHE_SIZE = 8192;
/** `KMALLOC_MAX_SIZE`: the largest kmalloc (2^MAX_PAGE_ORDER pages). */
export const KMALLOC_MAX_SIZE = PAGE_SIZE * 2 ** MAX_PAGE_ORDER;
/** `ZERO_SIZE_PTR`: what kmalloc(0) returns; kfree and ksize accept it. */
export const ZERO_SIZE_PTR = 16 as KernelVa;
/** `GFP_SLAB_BUG_MASK`: zone flags kmalloc refuses (and strips, with a warning). */
const GFP_SLAB_BUG_MASK = __GFP_DMA32 | __GFP_HIGHMEM;

/**
 * `__kmalloc_minalign()` (mm/slab_common.c): the minimum alignment of every
 * kmalloc object on this machine.
 */
export function kmallocMinalign(m: Machine): number {
  const p = m.profile;
  const bounced = m.options.kmallocBounce && m.options.swiotlbBytes > 0;
  if (p.archDmaMinalign > p.kmallocMinAlign && !bounced) return p.archDmaMinalign;
  return p.kmallocMinAlign;
}

function objSizeFor(m: Machine, size: number): number {
  const cls = KMALLOC_SIZES.find((s) => s >= size)!;
  const a = kmallocMinalign(m);
  return Math.ceil(cls / a) * a;
}

/**
 * `kmalloc_size_roundup()`: the bytes a kmalloc of `size` really gets (the
 * object size of its class; whole pages above `KMALLOC_MAX_CACHE_SIZE`). The
 * DMA layer uses it for `dma_kmalloc_needs_bounce`.
 */
export function kmallocSizeRoundup(m: Machine, size: number): number {
  if (size > 0 && size <= KMALLOC_MAX_CACHE_SIZE) return objSizeFor(m, size);
  if (size > 0 && size <= KMALLOC_MAX_SIZE) return PAGE_SIZE * 2 ** getOrder(size);
  return size;
}

function cacheType(gfp: Gfp): string {
  if (gfp & __GFP_DMA) return 'dma';
  if (gfp & __GFP_RECLAIMABLE) return 'reclaim';
  if (gfp & __GFP_ACCOUNT) return 'cgroup';
  return 'normal';
}

function emitAlloc(m: Machine, va: number, size: number, objSize: number): void {
  if (m.bus.wants['kmem-alloc']) {
    m.bus.emit({ type: 'kmem-alloc', kind: 'kmalloc', va, size, objSize, pa: va - pageAddress(0 as Page) });
  }
}

function slabAlloc(m: Machine, k: KmemState, type: string, objSize: number): number | null {
  const key = `${type}:${objSize}`;
  let partial = k.partial.get(key);
  if (partial === undefined) {
    partial = [];
    k.partial.set(key, partial);
  }
  let head = partial[0];
  if (head === undefined) {
    const order = getOrder(objSize);
    const page = allocPagesInner(m, type === 'dma' ? __GFP_DMA : 0, order);
    if (page === null) return null;
    const nobj = Math.floor((PAGE_SIZE * 2 ** order) / objSize);
    k.slabs.set(page, { key, size: objSize, order, nobj, inuse: 0, used: new Uint8Array(nobj) });
    partial.push(page);
    head = page as number;
  }
  const slab = k.slabs.get(head)!;
  const idx = slab.used.indexOf(0);
  slab.used[idx] = 1;
  slab.inuse++;
  if (slab.inuse === slab.nobj) partial.shift();
  return pageAddress(head as Page) + idx * objSize;
}

function kmallocInner(m: Machine, size: number, gfp: Gfp, call: string): KernelVa | null {
  if (!Number.isInteger(size) || size < 0) {
    throw new DmalabError(`${call}: size must be a non-negative integer, got ${size}`, { field: 'size' });
  }
  if (size === 0) return ZERO_SIZE_PTR;
  let flags = gfp;
  if (flags & GFP_SLAB_BUG_MASK) {
    const fixed = flags & ~GFP_SLAB_BUG_MASK;
    reportFinding(
      m,
      WARN.code,
      `Unexpected gfp: ${formatHex(flags & GFP_SLAB_BUG_MASK)} (${formatGfp(flags & GFP_SLAB_BUG_MASK)}). Fixing up to gfp: ${formatHex(fixed)} (${formatGfp(fixed)}). Fix your code!`,
      { details: { gfp: flags } },
    );
    flags = fixed;
  }
  const st = mmState(m);
  let va: number;
  let objSize: number;
  if (size > KMALLOC_MAX_CACHE_SIZE) {
    const order = getOrder(size);
    if (order > MAX_PAGE_ORDER) {
      if (!(flags & __GFP_NOWARN)) {
        reportFinding(
          m,
          WARN.code,
          `${call}: order ${order} allocation above MAX_PAGE_ORDER [size=${size}]`,
          {
            details: { size, order },
          },
        );
      }
      return null;
    }
    const page = allocPagesInner(m, flags & __GFP_DMA, order);
    if (page === null) return null;
    st.kmem.large.set(page, { order, size });
    va = pageAddress(page);
    objSize = PAGE_SIZE * 2 ** order;
  } else {
    objSize = objSizeFor(m, size);
    const got = slabAlloc(m, st.kmem, cacheType(flags), objSize);
    if (got === null) return null;
    va = got;
  }
  if (flags & __GFP_ZERO) cpuZero(m, va - pageAddress(0 as Page), va, 'cached', objSize);
  emitAlloc(m, va, size, objSize);
  return va as KernelVa;
}

/** `kmalloc()`: `size` bytes of physically contiguous kernel memory, or null. */
export function kmalloc(m: Machine, size: number, gfp: Gfp): KernelVa | null {
  return apiCall(m, 'kmalloc', () => kmallocInner(m, size, gfp, 'kmalloc'));
}

/** `kzalloc()`: kmalloc with the memory zeroed. */
export function kzalloc(m: Machine, size: number, gfp: Gfp): KernelVa | null {
  return apiCall(m, 'kzalloc', () => kmallocInner(m, size, gfp | __GFP_ZERO, 'kzalloc'));
}

/** `kcalloc()`: an array of `n` zeroed elements; null when `n * size` overflows. */
export function kcalloc(m: Machine, n: number, size: number, gfp: Gfp): KernelVa | null {
  return apiCall(m, 'kcalloc', () => {
    const bytes = n * size;
    if (!Number.isSafeInteger(bytes) || bytes > 2 ** 64) return null;
    return kmallocInner(m, bytes, gfp | __GFP_ZERO, 'kcalloc');
  });
}

interface Found {
  slabHead: number;
  slab: Slab | null;
  large: { order: number; size: number } | null;
}

function findOwner(m: Machine, va: number): Found | null {
  const k = mmState(m).kmem;
  const pfn = virtToPage(va) as number;
  for (let order = 0; order <= 1; order++) {
    const head = Math.floor(pfn / 2 ** order) * 2 ** order;
    const slab = k.slabs.get(head);
    if (slab !== undefined && slab.order === order) return { slabHead: head, slab, large: null };
  }
  // A large allocation is a naturally aligned block of 2^order pages.
  for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
    const head = Math.floor(pfn / 2 ** order) * 2 ** order;
    const large = k.large.get(head);
    if (large !== undefined && large.order >= order && pfn < head + 2 ** large.order) {
      return { slabHead: head, slab: null, large };
    }
  }
  return null;
}

/**
 * The kmalloc object holding `va`, as its start and object size, or null
 * when `va` is not inside a live kmalloc object (a dmalab helper for the
 * checker and the DMA layer).
 */
export function kmallocObject(m: Machine, va: KernelVa | number): { start: KernelVa; size: number } | null {
  if (!isLinearMapVa(va)) return null;
  const f = findOwner(m, va);
  if (f === null) return null;
  if (f.large !== null)
    return { start: pageAddress(f.slabHead as Page), size: PAGE_SIZE * 2 ** f.large.order };
  const slab = f.slab!;
  const idx = Math.floor((va - pageAddress(f.slabHead as Page)) / slab.size);
  if (idx >= slab.nobj || slab.used[idx] !== 1) return null;
  return { start: (pageAddress(f.slabHead as Page) + idx * slab.size) as KernelVa, size: slab.size };
}

function badFree(m: Machine, va: number, why: string): void {
  reportFinding(m, BUG.code, `kfree: ${why} [address=${formatHex(va)}]`, { details: { va } });
}

function kfreeInner(m: Machine, va: number): void {
  if (va === 0 || va === ZERO_SIZE_PTR) return;
  if (!isLinearMapVa(va)) {
    badFree(m, va, 'invalid pointer: not a kmalloc address');
    return;
  }
  const st = mmState(m);
  const f = findOwner(m, va);
  if (f === null) {
    badFree(m, va, 'freeing memory kmalloc does not own (double free or invalid pointer)');
    return;
  }
  let size: number;
  if (f.large !== null) {
    if (va !== pageAddress(f.slabHead as Page)) {
      badFree(m, va, 'pointer is not the start of the allocation');
      return;
    }
    st.kmem.large.delete(f.slabHead);
    freePagesInner(m, f.slabHead as Page, f.large.order);
    size = PAGE_SIZE * 2 ** f.large.order;
  } else {
    const slab = f.slab!;
    const off = va - pageAddress(f.slabHead as Page);
    const idx = off / slab.size;
    if (!Number.isInteger(idx) || idx >= slab.nobj) {
      badFree(m, va, `pointer is not the start of an object of kmalloc-${slab.size}`);
      return;
    }
    if (slab.used[idx] !== 1) {
      badFree(m, va, `double free detected in cache kmalloc-${slab.size}`);
      return;
    }
    slab.used[idx] = 0;
    const wasFull = slab.inuse === slab.nobj;
    slab.inuse--;
    const partial = st.kmem.partial.get(slab.key)!;
    if (slab.inuse === 0) {
      const i = partial.indexOf(f.slabHead);
      if (i >= 0) partial.splice(i, 1);
      st.kmem.slabs.delete(f.slabHead);
      freePagesInner(m, f.slabHead as Page, slab.order);
    } else if (wasFull) {
      partial.push(f.slabHead);
    }
    size = slab.size;
  }
  if (m.bus.wants['kmem-free']) m.bus.emit({ type: 'kmem-free', kind: 'kmalloc', va, size });
}

/** `kfree()`: frees a kmalloc allocation; NULL and ZERO_SIZE_PTR are ignored. A bad pointer is a BUG finding. */
export function kfree(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'kfree', () => kfreeInner(m, va));
}

/** `ksize()`: the usable size of a kmalloc allocation (its object size). */
export function ksize(m: Machine, va: KernelVa | number): number {
  return apiCall(m, 'ksize', () => {
    if (va === 0 || va === ZERO_SIZE_PTR) return 0;
    const o = kmallocObject(m, va);
    if (o === null || o.start !== va) {
      reportFinding(m, WARN.code, `ksize: ${formatHex(va)} is not a live kmalloc allocation`, {
        details: { va },
      });
      return 0;
    }
    return o.size;
  });
}

/**
 * `kvmalloc()`: kmalloc, falling back to vmalloc for sizes above a page
 * when kmalloc fails (and the flags allow blocking), as `kvmalloc_node` does.
 */
export function kvmalloc(m: Machine, size: number, gfp: Gfp): KernelVa | null {
  return apiCall(m, 'kvmalloc', () => {
    let kflags = gfp;
    if (size > PAGE_SIZE) {
      kflags |= __GFP_NOWARN;
      if (!(kflags & __GFP_RETRY_MAYFAIL)) kflags |= __GFP_NORETRY;
      kflags &= ~__GFP_NOFAIL;
    }
    const p = kmallocInner(m, size, kflags, 'kvmalloc');
    if (p !== null || size <= PAGE_SIZE) return p;
    if (!gfpflagsAllowBlocking(gfp)) return null;
    return vmallocInner(m, size, (gfp & __GFP_ZERO) !== 0, 0, 'kvmalloc');
  });
}

/** `kvzalloc()`. */
export function kvzalloc(m: Machine, size: number, gfp: Gfp): KernelVa | null {
  return kvmalloc(m, size, gfp | __GFP_ZERO);
}

/** `kvfree()`: vfree for vmalloc addresses, kfree otherwise. */
export function kvfree(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'kvfree', () => {
    if (isVmallocAddr(va)) vfreeInner(m, va, 'kvfree');
    else kfreeInner(m, va);
  });
}
