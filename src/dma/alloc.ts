/**
 * Coherent and non-coherent DMA allocations (kernel/dma/mapping.c,
 * direct.c, pool.c, coherent.c, drivers/iommu/dma-iommu.c,
 * arch/parisc/kernel/pci-dma.c): `dma_alloc_attrs` and friends, with each
 * architecture's way of making memory coherent:
 *
 * | device | how | CPU mapping |
 * |---|---|---|
 * | coherent (x86, arm64-coherent) | pages, zeroed | the cached linear map |
 * | non-coherent arm64 (DMA_DIRECT_REMAP) | pages, kernel alias cleaned+invalidated, vmap | Normal non-cacheable; the cached linear alias stays |
 * | parisc pcxl (arch_dma_alloc) | zeroed pages, kernel alias flushed, uncached window | uncached |
 * | parisc sba | pages, zeroed, mapped with the kernel alias's coherence index | the cached linear map |
 * | iommu-dma | discontiguous pages (or contiguous with FORCE_CONTIGUOUS) in one IOVA range | vmap (remap), or the linear map |
 * | a declared device memory (`dma_declare_coherent_memory`) | a bitmap allocator over it | write-combined ioremap |
 *
 * Non-blocking allocations for a non-coherent arm64 device come from the
 * pre-remapped atomic pool. Every allocation is recorded, so frees are
 * checked against what was allocated and a free while a user mapping
 * still exists is an event the checker reports.
 */

import {
  __GFP_COMP,
  __GFP_DMA,
  __GFP_DMA32,
  __GFP_HIGHMEM,
  __GFP_NOWARN,
  __GFP_ZERO,
  allocPagesInner,
  cmaAlloc,
  cmaRelease,
  type Device,
  type DmaAddr,
  enterCall,
  freePagesInner,
  type Gfp,
  getOrder,
  gfpflagsAllowBlocking,
  isLinearMapVa,
  type KernelVa,
  leaveCall,
  type Machine,
  PAGE_OFFSET,
  PAGE_SIZE,
  type Page,
  pageAddress,
  pageToPhys,
  reportFinding,
  WARN,
} from '../machine/index.js';
import {
  ioremapWc,
  iounmap,
  kernelPteLookup,
  kernelWriteFrom,
  PAGE_KERNEL,
  type Pgprot,
  pgprotDmacoherent,
  pgprotNoncached,
  pgprotWritecombine,
  vmap,
  vmapAligned,
  vunmap,
} from '../mm/index.js';
import { getDmaOps } from './api.js';
import { archDmaPrepCoherent, devIsDmaCoherent } from './arch.js';
import { physToDma } from './direct.js';
import { __iommuDmaMap, __iommuDmaUnmap, dmaInfoToProt, mapPageList } from './iommu-dma.js';
import { sbaMapRange, sbaUnmapPhys } from './sba.js';
import { dmaState, warnOnce } from './state.js';
import {
  DMA_ATTR_ALLOC_SINGLE_PAGES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_ATTR_NO_WARN,
  DMA_ATTR_WRITE_COMBINE,
  DMA_BIDIRECTIONAL,
  DMA_MAPPING_ERROR,
  type DmaDataDirection,
  maskLimit,
} from './types.js';

/** What dmalab remembers of each allocation (plain data, in `m.layers.dma.allocs`). */
export interface DmaAllocRecord {
  device: number;
  kind: 'coherent' | 'noncoherent' | 'pages';
  /** The CPU address (or the page cookie with NO_KERNEL_MAPPING). */
  cpuAddr: number;
  dmaHandle: number;
  size: number;
  /** Pages backing it, in order (a run when contiguous). */
  pages: number[];
  contiguous: boolean;
  /** Where the pages came from. */
  source: 'buddy' | 'cma' | 'atomic-pool' | 'device-coherent';
  /** The CPU address is a vmap/ioremap alias to undo at free. */
  remapped: boolean;
  /** Memory attribute of the CPU mapping. */
  attr: 'cached' | 'write-combine' | 'uncached';
  attrs: number;
  dir: DmaDataDirection;
}

/** A device's declared coherent memory (`dma_declare_coherent_memory`). */
export interface DevCoherentPool {
  phys: number;
  devAddr: number;
  size: number;
  virt: number;
  /** 1 per page in use. */
  bitmap: Uint8Array;
}

/** The pre-remapped atomic pool for non-blocking allocations (kernel/dma/pool.c). */
export interface AtomicPool {
  phys: number;
  virt: number;
  size: number;
  bitmap: Uint8Array;
}

function allocs(m: Machine): Map<number, DmaAllocRecord> {
  return dmaState(m).allocs;
}

/** The allocation a CPU address (or cookie) belongs to, if any. */
export function dmaAllocRecord(m: Machine, cpuAddr: number): DmaAllocRecord | undefined {
  return allocs(m).get(cpuAddr);
}

/** The allocation containing a CPU address, if any (for mmap and get_sgtable). */
export function dmaAllocContaining(m: Machine, cpuAddr: number): DmaAllocRecord | undefined {
  for (const r of allocs(m).values()) {
    if (cpuAddr >= r.cpuAddr && cpuAddr < r.cpuAddr + Math.ceil(r.size / PAGE_SIZE) * PAGE_SIZE) return r;
  }
  return undefined;
}

/** `dma_pgprot()`: the protection a coherent allocation is mapped with for this device. */
export function dmaPgprot(dev: Device, prot: Pgprot, attrs: number): Pgprot {
  const m = dev.machine;
  if (devIsDmaCoherent(dev)) return prot;
  if (attrs & DMA_ATTR_WRITE_COMBINE && m.profile.writeCombine) return pgprotWritecombine(m, prot);
  return pgprotDmacoherent(m, prot);
}

/** Zone flags from a coherent mask (`dma_direct_optimal_gfp_mask`). */
function zoneGfp(dev: Device): Gfp {
  const m = dev.machine;
  let limit = maskLimit(dev.state.coherentDmaMaskBits);
  if (dev.state.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(dev.state.busDmaLimitBits));
  const phys = limit - dev.state.dmaOffset;
  if (phys <= 2 ** m.profile.zoneDmaBits) return __GFP_DMA;
  if (phys <= 2 ** 32) return __GFP_DMA32;
  return 0;
}

/** `dma_coherent_ok()`. */
function coherentOk(dev: Device, phys: number, size: number): boolean {
  let limit = maskLimit(dev.state.coherentDmaMaskBits);
  if (dev.state.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(dev.state.busDmaLimitBits));
  return physToDma(dev, phys) + size <= limit;
}

interface Pages {
  first: number;
  count: number;
  cma: boolean;
}

/** `dma_alloc_contiguous()` + the buddy fallback with zone retries (`__dma_direct_alloc_pages`). */
function directAllocPages(dev: Device, size: number, gfp: Gfp): Pages | null {
  const m = dev.machine;
  const count = size / PAGE_SIZE;
  let flags = gfp | zoneGfp(dev);
  if (gfpflagsAllowBlocking(gfp) && size > PAGE_SIZE && m.hw.alloc.cma !== null) {
    const page = cmaAlloc(m, count, Math.min(getOrder(size), 8));
    if (page !== null) {
      if (coherentOk(dev, pageToPhys(page), size)) return { first: page, count, cma: true };
      cmaRelease(m, page, count);
    }
  }
  const order = getOrder(size);
  for (;;) {
    const page = allocPagesInner(m, flags & ~__GFP_ZERO, order);
    // dma-direct keeps the whole order block and frees it by order.
    if (page !== null && coherentOk(dev, pageToPhys(page), size))
      return { first: page, count: 2 ** order, cma: false };
    if (page !== null) freePagesInner(m, page, order);
    if (!(flags & (__GFP_DMA32 | __GFP_DMA))) {
      flags |= __GFP_DMA32;
      continue;
    }
    if (!(flags & __GFP_DMA)) {
      flags = (flags & ~__GFP_DMA32) | __GFP_DMA;
      continue;
    }
    return null;
  }
}

function freeDirectPages(m: Machine, first: number, count: number, cma: boolean): void {
  if (cma) cmaRelease(m, first as Page, count);
  else freePagesInner(m, first as Page, getOrder(count * PAGE_SIZE));
}

function zero(m: Machine, va: number, size: number): void {
  kernelWriteFrom(m, va, new Uint8Array(size), 0, size);
}

function runOfPages(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, k) => first + k);
}

// --------------------------------------------------------------------------- atomic pool

/** Pool size: 128 KiB per GiB of RAM, at least 128 KiB, at most one MAX_PAGE_ORDER block. */
function atomicPoolSize(m: Machine): number {
  const perGiB = Math.ceil(m.options.ramBytes / 2 ** 30) * 128 * 1024;
  return Math.min(Math.max(perGiB, 128 * 1024), 4 * 1024 * 1024);
}

/** The atomic pool, created and remapped on first use (pool.c does it at boot). */
function atomicPool(dev: Device): AtomicPool | null {
  const m = dev.machine;
  const s = dmaState(m);
  if (s.atomicPool !== null) return s.atomicPool;
  const size = atomicPoolSize(m);
  const order = getOrder(size);
  const page = allocPagesInner(m, __GFP_DMA32 | __GFP_ZERO, order);
  if (page === null) return null;
  archDmaPrepCoherent(m, pageToPhys(page), size);
  const pages = runOfPages(page, size / PAGE_SIZE) as Page[];
  const virt = vmap(m, pages, pages.length, 0, pgprotDmacoherent(m, PAGE_KERNEL));
  if (virt === null) return null;
  s.atomicPool = { phys: pageToPhys(page), virt, size, bitmap: new Uint8Array(size / PAGE_SIZE) };
  return s.atomicPool;
}

function poolAlloc(bitmap: Uint8Array, pages: number): number {
  for (let i = 0; i + pages <= bitmap.length; i++) {
    let free = true;
    for (let k = 0; k < pages; k++) {
      if (bitmap[i + k] === 1) {
        free = false;
        i += k;
        break;
      }
    }
    if (free) {
      bitmap.fill(1, i, i + pages);
      return i;
    }
  }
  return -1;
}

// --------------------------------------------------------------------------- declared device memory

/**
 * `dma_declare_coherent_memory()`: device-local memory (an audio card's
 * buffer, a BAR) that the device's coherent allocations come from first,
 * mapped write-combined for the CPU. Returns 0 or a negative errno.
 */
export function dmaDeclareCoherentMemory(
  dev: Device,
  physAddr: number,
  deviceAddr: number,
  size: number,
): number {
  const m = dev.machine;
  const s = dmaState(m);
  if (s.devCoherent.has(dev.id)) return -16; // -EBUSY: one pool per device
  if (size <= 0 || size % PAGE_SIZE !== 0) return -22;
  const virt = ioremapWc(m, physAddr, size);
  if (virt === null) return -12;
  s.devCoherent.set(dev.id, {
    phys: physAddr,
    devAddr: deviceAddr,
    size,
    virt,
    bitmap: new Uint8Array(size / PAGE_SIZE),
  });
  return 0;
}

/** `dma_release_coherent_memory()`. */
export function dmaReleaseCoherentMemory(dev: Device): void {
  const m = dev.machine;
  const pool = dmaState(m).devCoherent.get(dev.id);
  if (pool === undefined) return;
  iounmap(m, pool.virt);
  dmaState(m).devCoherent.delete(dev.id);
}

function allocFromDevCoherent(dev: Device, size: number): DmaAllocRecord | null {
  const pool = dmaState(dev.machine).devCoherent.get(dev.id);
  if (pool === undefined) return null;
  // bitmap_find_free_region: order-aligned.
  const pages = 2 ** getOrder(size);
  let at = -1;
  for (let i = 0; i + pages <= pool.bitmap.length; i += pages) {
    if (pool.bitmap.subarray(i, i + pages).every((b) => b === 0)) {
      at = i;
      break;
    }
  }
  if (at < 0) return null;
  pool.bitmap.fill(1, at, at + pages);
  const cpuAddr = pool.virt + at * PAGE_SIZE;
  zero(dev.machine, cpuAddr, size);
  return {
    device: dev.id,
    kind: 'coherent',
    cpuAddr,
    dmaHandle: pool.devAddr + at * PAGE_SIZE,
    size,
    pages: runOfPages(Math.floor(pool.phys / PAGE_SIZE) + at, pages),
    contiguous: true,
    source: 'device-coherent',
    remapped: false,
    attr: 'write-combine',
    attrs: 0,
    dir: DMA_BIDIRECTIONAL,
  };
}

// --------------------------------------------------------------------------- backends

function record(
  dev: Device,
  cpuAddr: number,
  dmaHandle: number,
  size: number,
  pages: number[],
  source: DmaAllocRecord['source'],
  remapped: boolean,
  attr: DmaAllocRecord['attr'],
  attrs: number,
): DmaAllocRecord {
  return {
    device: dev.id,
    kind: 'coherent',
    cpuAddr,
    dmaHandle,
    size,
    pages,
    contiguous: true,
    source,
    remapped,
    attr,
    attrs,
    dir: DMA_BIDIRECTIONAL,
  };
}

/** `dma_direct_alloc()` (and parisc's `arch_dma_alloc` for a non-coherent PA1.1 device). */
function directAlloc(dev: Device, size: number, gfp: Gfp, attrs: number): DmaAllocRecord | null {
  const m = dev.machine;
  const coherent = devIsDmaCoherent(dev);
  if (!coherent && m.profile.coherentAlloc === 'pcxl-uncached') {
    // arch_dma_alloc: zeroed pages, kernel alias flushed, mapped uncached in the DMA window.
    const order = getOrder(size);
    const page = allocPagesInner(m, gfp | __GFP_ZERO, order);
    if (page === null) return null;
    const phys = pageToPhys(page);
    archDmaPrepCoherent(m, phys, PAGE_SIZE * 2 ** order);
    const pages = runOfPages(page, 2 ** order) as Page[];
    const va = vmap(m, pages, pages.length, 0, pgprotNoncached(m, PAGE_KERNEL));
    if (va === null) {
      freePagesInner(m, page, order);
      return null;
    }
    return record(dev, va, phys, size, pages, 'buddy', true, 'uncached', attrs);
  }
  if (!coherent && !gfpflagsAllowBlocking(gfp) && m.profile.coherentAlloc === 'remap-uncached') {
    // dma_direct_alloc_from_pool
    const pool = atomicPool(dev);
    if (pool === null) return null;
    const n = size / PAGE_SIZE;
    const at = poolAlloc(pool.bitmap, n);
    if (at < 0) {
      if (!(gfp & __GFP_NOWARN)) {
        reportFinding(m, WARN.code, `DMA pool exhausted for ${dev.name}`, {
          device: dev.name,
          details: { size },
        });
      }
      return null;
    }
    const cpuAddr = pool.virt + at * PAGE_SIZE;
    zero(m, cpuAddr, size);
    const first = pool.phys / PAGE_SIZE + at;
    return record(
      dev,
      cpuAddr,
      physToDma(dev, pool.phys + at * PAGE_SIZE),
      size,
      runOfPages(first, n),
      'atomic-pool',
      false,
      m.profile.arch === 'arm64' ? 'write-combine' : 'uncached',
      attrs,
    );
  }
  const got = directAllocPages(dev, size, gfp);
  if (got === null) return null;
  const phys = pageToPhys(got.first as Page);
  const pages = runOfPages(got.first, got.count);
  const source = got.cma ? 'cma' : 'buddy';
  if (attrs & DMA_ATTR_NO_KERNEL_MAPPING) {
    // The page pointer is the cookie; the kernel alias is flushed, nothing is zeroed.
    archDmaPrepCoherent(m, phys, size);
    return record(dev, got.first, physToDma(dev, phys), size, pages, source, false, 'cached', attrs);
  }
  if (!coherent && m.profile.coherentAlloc === 'remap-uncached') {
    archDmaPrepCoherent(m, phys, size);
    const prot = dmaPgprot(dev, PAGE_KERNEL, attrs);
    const va = vmap(m, pages.slice(0, size / PAGE_SIZE) as Page[], size / PAGE_SIZE, 0, prot);
    if (va === null) {
      freeDirectPages(m, got.first, got.count, got.cma);
      return null;
    }
    zero(m, va, size);
    return record(dev, va, physToDma(dev, phys), size, pages, source, true, prot.attr, attrs);
  }
  const va = pageAddress(got.first as Page);
  zero(m, va, size);
  return record(dev, va, physToDma(dev, phys), size, pages, source, false, 'cached', attrs);
}

/** The highest page order iommu-dma builds allocations from (2 MiB IOMMU pages). */
const IOMMU_DMA_MAX_ORDER = 9;

/** `iommu_dma_alloc()`: discontiguous pages remapped, or contiguous ones. */
function iommuAlloc(dev: Device, size: number, gfp: Gfp, attrs: number): DmaAllocRecord | null {
  const m = dev.machine;
  const coherent = devIsDmaCoherent(dev);
  const prot = dmaInfoToProt(DMA_BIDIRECTIONAL, coherent, attrs);
  const count = size / PAGE_SIZE;
  if (gfpflagsAllowBlocking(gfp) && !(attrs & DMA_ATTR_FORCE_CONTIGUOUS)) {
    // __iommu_dma_alloc_noncontiguous: largest orders first (2 MiB or single pages).
    const pages: number[] = [];
    const blocks: { page: number; order: number }[] = [];
    let left = count;
    while (left > 0) {
      let order =
        attrs & DMA_ATTR_ALLOC_SINGLE_PAGES ? 0 : Math.min(IOMMU_DMA_MAX_ORDER, Math.floor(Math.log2(left)));
      if (order !== 0 && order !== IOMMU_DMA_MAX_ORDER) order = 0;
      const page = allocPagesInner(m, gfp | __GFP_ZERO, order);
      if (page === null) {
        for (const b of blocks) freePagesInner(m, b.page as Page, b.order);
        return null;
      }
      blocks.push({ page, order });
      for (let k = 0; k < 2 ** order; k++) pages.push(page + k);
      left -= 2 ** order;
    }
    if (!coherent) for (const p of pages) archDmaPrepCoherent(m, p * PAGE_SIZE, PAGE_SIZE);
    // One IOVA range for all pages.
    const iova = mapPageList(dev, pages, prot, pages.length * PAGE_SIZE);
    if (iova === DMA_MAPPING_ERROR) {
      for (const b of blocks) freePagesInner(m, b.page as Page, b.order);
      return null;
    }
    const kprot = dmaPgprot(dev, PAGE_KERNEL, attrs);
    const va = vmap(m, pages as Page[], pages.length, 0, kprot);
    if (va === null) {
      __iommuDmaUnmap(dev, iova, size);
      for (const b of blocks) freePagesInner(m, b.page as Page, b.order);
      return null;
    }
    const r = record(dev, va, iova, size, pages, 'buddy', true, kprot.attr, attrs);
    r.contiguous = false;
    return r;
  }
  const got = directAllocPages(dev, size, gfp | __GFP_ZERO);
  if (got === null) return null;
  const phys = pageToPhys(got.first as Page);
  const pages = runOfPages(got.first, got.count);
  let va: number = pageAddress(got.first as Page);
  let remapped = false;
  let attr: DmaAllocRecord['attr'] = 'cached';
  zero(m, va, size);
  if (!coherent) {
    archDmaPrepCoherent(m, phys, size);
    const kprot = dmaPgprot(dev, PAGE_KERNEL, attrs);
    const v = vmap(m, pages.slice(0, count) as Page[], count, 0, kprot);
    if (v === null) {
      freeDirectPages(m, got.first, got.count, got.cma);
      return null;
    }
    va = v;
    remapped = true;
    attr = kprot.attr;
  }
  const handle = __iommuDmaMap(dev, phys, size, prot, dev.state.coherentDmaMaskBits);
  if (handle === DMA_MAPPING_ERROR) {
    if (remapped) vunmap(m, va);
    freeDirectPages(m, got.first, got.count, got.cma);
    return null;
  }
  return record(dev, va, handle, size, pages, got.cma ? 'cma' : 'buddy', remapped, attr, attrs);
}

/**
 * `sba_alloc()`: pages from the buddy allocator, zeroed through the cache,
 * mapped with the kernel alias's coherence index. With `colourVa` (seed
 * 000's allocation made for user mapping) the kernel alias is a vmap at
 * that colour instead of the linear map, and the IOMMU names it.
 */
function sbaAlloc(
  dev: Device,
  size: number,
  gfp: Gfp,
  attrs: number,
  colourVa: number,
): DmaAllocRecord | null {
  const m = dev.machine;
  const order = getOrder(size);
  const page = allocPagesInner(m, gfp, order);
  if (page === null) return null;
  let va: number = pageAddress(page);
  let remapped = false;
  if (colourVa >= 0) {
    const pages = runOfPages(page, size / PAGE_SIZE) as Page[];
    const alias = vmapAligned(m, pages, pages.length, PAGE_KERNEL, colourVa);
    if (alias === null) {
      freePagesInner(m, page, order);
      return null;
    }
    va = alias;
    remapped = true;
  }
  zero(m, va, size);
  const handle = sbaMapRange(dev, pageToPhys(page), size, remapped ? va : -1);
  if (handle === DMA_MAPPING_ERROR) {
    if (remapped) vunmap(m, va);
    freePagesInner(m, page, order);
    return null;
  }
  return record(dev, va, handle, size, runOfPages(page, 2 ** order), 'buddy', remapped, 'cached', attrs);
}

function backendFree(dev: Device, r: DmaAllocRecord, size: number): void {
  const m = dev.machine;
  if (r.source === 'device-coherent') {
    const pool = dmaState(m).devCoherent.get(dev.id)!;
    const at = (r.cpuAddr - pool.virt) / PAGE_SIZE;
    pool.bitmap.fill(0, at, at + 2 ** getOrder(size));
    return;
  }
  if (r.source === 'atomic-pool') {
    const pool = dmaState(m).atomicPool!;
    const at = (r.cpuAddr - pool.virt) / PAGE_SIZE;
    pool.bitmap.fill(0, at, at + Math.ceil(size / PAGE_SIZE));
    return;
  }
  const ops = getDmaOps(dev);
  if (ops.name === 'iommu-dma') __iommuDmaUnmap(dev, r.dmaHandle, size);
  else if (ops.name === 'sba') sbaUnmapPhys(dev, r.dmaHandle, size);
  if (r.remapped) vunmap(m, r.cpuAddr);
  if (!r.contiguous) {
    // Discontiguous iommu-dma pages came in order-0 or 2 MiB blocks.
    freeIommuPages(m, r.pages);
    return;
  }
  if (r.source === 'cma') cmaRelease(m, r.pages[0]! as Page, Math.ceil(size / PAGE_SIZE));
  else freePagesInner(m, r.pages[0]! as Page, getOrder(size));
}

function freeIommuPages(m: Machine, pages: number[]): void {
  let i = 0;
  while (i < pages.length) {
    const p = pages[i]!;
    // A 2 MiB block is 512 consecutive, aligned pages.
    const big = 2 ** IOMMU_DMA_MAX_ORDER;
    if (p % big === 0 && i + big <= pages.length && pages[i + big - 1] === p + big - 1) {
      freePagesInner(m, p as Page, IOMMU_DMA_MAX_ORDER);
      i += big;
    } else {
      freePagesInner(m, p as Page, 0);
      i++;
    }
  }
}

// --------------------------------------------------------------------------- driver face

/** The checker's allocation kinds: shared coherent memory, or memory the driver syncs. */
function eventKind(kind: DmaAllocRecord['kind']): 'coherent' | 'noncoherent' {
  return kind === 'coherent' ? 'coherent' : 'noncoherent';
}

/** Physically contiguous runs of a page list, as (phys, length) pieces. */
function segmentsOf(pages: number[], size: number): { phys: number; length: number }[] {
  const out: { phys: number; length: number }[] = [];
  let left = size;
  for (let i = 0; i < pages.length && left > 0; i++) {
    const len = Math.min(PAGE_SIZE, left);
    const last = out[out.length - 1];
    if (last !== undefined && last.phys + last.length === pages[i]! * PAGE_SIZE) last.length += len;
    else out.push({ phys: pages[i]! * PAGE_SIZE, length: len });
    left -= len;
  }
  return out;
}

/** What a CPU address given to a free translates to through the kernel page tables (-1: nothing). */
function cpuAddrPhys(m: Machine, cpuAddr: number): number {
  if (isLinearMapVa(cpuAddr)) return cpuAddr - PAGE_OFFSET;
  const pte = kernelPteLookup(m, cpuAddr);
  return pte === null ? -1 : pte.pfn * PAGE_SIZE + (cpuAddr % PAGE_SIZE);
}

function emitAlloc(
  dev: Device,
  call: string,
  r: DmaAllocRecord | null,
  size: number,
  gfp: Gfp,
  attrs: number,
  kind: DmaAllocRecord['kind'],
  dir: number,
): void {
  const m = dev.machine;
  if (!m.bus.wants['dma-alloc']) return;
  m.bus.emit({
    type: 'dma-alloc',
    device: dev.name,
    call,
    kind: eventKind(kind),
    cpuAddr: r === null ? -1 : r.cpuAddr,
    cpuAttr: r === null ? 'cached' : r.attr,
    dmaAddr: r === null ? DMA_MAPPING_ERROR : r.dmaHandle,
    phys: r === null ? -1 : (r.pages[0] ?? 0) * PAGE_SIZE,
    size,
    gfp,
    attrs,
    dir,
  });
}

function emitFree(
  dev: Device,
  call: string,
  cpuAddr: number,
  dmaAddr: number,
  size: number,
  attrs: number,
  kind: DmaAllocRecord['kind'],
  dir: number,
): void {
  const m = dev.machine;
  if (!m.bus.wants['dma-free']) return;
  m.bus.emit({
    type: 'dma-free',
    device: dev.name,
    call,
    kind: eventKind(kind),
    cpuAddr,
    dmaAddr,
    size,
    phys: cpuAddrPhys(m, cpuAddr),
    attrs,
    dir,
  });
}

/** Emits `dma-alloc` or `dma-free` for a non-contiguous allocation. */
export function emitNoncontig(
  dev: Device,
  call: string,
  pages: number[] | null,
  dmaAddr: number,
  size: number,
  gfp: Gfp,
  attrs: number,
  dir: number,
  alloc: boolean,
): void {
  const m = dev.machine;
  const segments = pages === null ? [] : segmentsOf(pages, size);
  if (alloc && m.bus.wants['dma-alloc']) {
    m.bus.emit({
      type: 'dma-alloc',
      device: dev.name,
      call,
      kind: 'noncontiguous',
      cpuAddr: -1,
      cpuAttr: 'cached',
      dmaAddr: pages === null ? DMA_MAPPING_ERROR : dmaAddr,
      phys: pages === null ? -1 : pages[0]! * PAGE_SIZE,
      size,
      gfp,
      attrs,
      dir,
      segments,
    });
  }
  if (!alloc && m.bus.wants['dma-free']) {
    m.bus.emit({
      type: 'dma-free',
      device: dev.name,
      call,
      kind: 'noncontiguous',
      cpuAddr: -1,
      dmaAddr,
      size,
      phys: segments[0]?.phys ?? -1,
      attrs,
      dir,
      segments,
    });
  }
}

/** Emits the `dma-alloc` event of a coherent allocation made outside `dmaAllocAttrs`. */
export function emitAllocPublic(
  dev: Device,
  call: string,
  r: DmaAllocRecord | null,
  size: number,
  gfp: Gfp,
  attrs: number,
): void {
  emitAlloc(dev, call, r, size, gfp, attrs, 'coherent', DMA_BIDIRECTIONAL);
}

/** The body of `dma_alloc_attrs()`, shared with the managed and pool paths. */
export function dmaAllocInner(
  dev: Device,
  size: number,
  gfp: Gfp,
  attrs: number,
  colourVa = -1,
): DmaAllocRecord | null {
  const m = dev.machine;
  if (gfp & __GFP_COMP) {
    if (warnOnce(dev, 'alloc __GFP_COMP')) {
      reportFinding(m, WARN.code, 'WARNING: dma_alloc_attrs called with __GFP_COMP', {
        device: dev.name,
        details: { gfp },
      });
    }
    return null;
  }
  if (size <= 0) return null;
  let r = allocFromDevCoherent(dev, size);
  if (r === null) {
    const flags = gfp & ~(__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM);
    const aligned = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
    const a = attrs | (gfp & __GFP_NOWARN ? DMA_ATTR_NO_WARN : 0);
    const ops = getDmaOps(dev);
    if (ops.name === 'dma-direct') r = directAlloc(dev, aligned, flags, a);
    else if (ops.name === 'iommu-dma') r = iommuAlloc(dev, aligned, flags, a);
    else r = sbaAlloc(dev, aligned, flags, a, colourVa);
    if (r !== null) r.size = size;
  }
  if (r !== null) allocs(m).set(r.cpuAddr, r);
  return r;
}

/**
 * `dma_alloc_attrs()`: coherent memory for `dev`, zeroed (except with
 * `DMA_ATTR_NO_KERNEL_MAPPING`, whose CPU address is an opaque cookie).
 * Returns `{ cpuAddr, dmaHandle }` or null.
 */
export function dmaAllocAttrs(
  dev: Device,
  size: number,
  gfp: Gfp,
  attrs: number,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  const m = dev.machine;
  enterCall(m, 'dma_alloc_attrs');
  try {
    const r = dmaAllocInner(dev, size, gfp, attrs);
    emitAlloc(dev, 'dma_alloc_attrs', r, size, gfp, attrs, 'coherent', DMA_BIDIRECTIONAL);
    return r === null ? null : { cpuAddr: r.cpuAddr as KernelVa, dmaHandle: r.dmaHandle as DmaAddr };
  } finally {
    leaveCall(m);
  }
}

/** `dma_alloc_coherent()`. */
export function dmaAllocCoherent(
  dev: Device,
  size: number,
  gfp: Gfp,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  return dmaAllocAttrs(dev, size, gfp, gfp & __GFP_NOWARN ? DMA_ATTR_NO_WARN : 0);
}

/** `dma_alloc_wc()`: write-combined coherent memory where the architecture has it. */
export function dmaAllocWc(
  dev: Device,
  size: number,
  gfp: Gfp,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  return dmaAllocAttrs(dev, size, gfp, DMA_ATTR_WRITE_COMBINE);
}

/** The body of `dma_free_attrs()`. */
export function dmaFreeInner(
  dev: Device,
  size: number,
  cpuAddr: number,
  dmaHandle: number,
  attrs: number,
  call: string,
): void {
  const m = dev.machine;
  const r = allocs(m).get(cpuAddr);
  emitFree(dev, call, cpuAddr, dmaHandle, size, attrs, 'coherent', DMA_BIDIRECTIONAL);
  if (cpuAddr === 0 || r === undefined || r.device !== dev.id) return;
  allocs(m).delete(cpuAddr);
  backendFree(dev, r, size);
}

/**
 * `dma_free_attrs()`: every argument must match the allocation. A free of
 * memory dmalab did not hand out does nothing (dma-debug reports it); a
 * wrong size frees what the kernel would (and the page allocator may BUG).
 */
export function dmaFreeAttrs(
  dev: Device,
  size: number,
  cpuAddr: KernelVa | number,
  dmaHandle: DmaAddr | number,
  attrs: number,
): void {
  enterCall(dev.machine, 'dma_free_attrs');
  try {
    dmaFreeInner(dev, size, cpuAddr, dmaHandle, attrs, 'dma_free_attrs');
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_free_coherent()`. */
export function dmaFreeCoherent(
  dev: Device,
  size: number,
  cpuAddr: KernelVa | number,
  dmaHandle: DmaAddr | number,
): void {
  dmaFreeAttrs(dev, size, cpuAddr, dmaHandle, 0);
}

/** `dma_free_wc()`. */
export function dmaFreeWc(
  dev: Device,
  size: number,
  cpuAddr: KernelVa | number,
  dmaHandle: DmaAddr | number,
): void {
  dmaFreeAttrs(dev, size, cpuAddr, dmaHandle, DMA_ATTR_WRITE_COMBINE);
}

function badGfpForPages(dev: Device, gfp: Gfp, call: string): boolean {
  if (gfp & (__GFP_DMA | __GFP_DMA32 | __GFP_HIGHMEM | __GFP_COMP)) {
    if (warnOnce(dev, `${call} gfp`)) {
      reportFinding(dev.machine, WARN.code, `WARNING: ${call} called with zone or compound flags`, {
        device: dev.name,
        details: { gfp },
      });
    }
    return true;
  }
  return false;
}

/** Cacheable pages for later streaming-style use (`__dma_alloc_pages`). */
export function dmaAllocPagesInner(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
): DmaAllocRecord | null {
  return allocPagesRecord(dev, size, dir, gfp, 'pages');
}

function allocPagesRecord(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
  kind: 'pages' | 'noncoherent',
): DmaAllocRecord | null {
  const m = dev.machine;
  const aligned = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  const ops = getDmaOps(dev);
  let r: DmaAllocRecord | null = null;
  if (ops.name === 'dma-direct') {
    const got = directAllocPages(dev, aligned, gfp);
    if (got === null) return null;
    const va = pageAddress(got.first as Page);
    zero(m, va, aligned);
    r = record(
      dev,
      va,
      physToDma(dev, pageToPhys(got.first as Page)),
      size,
      runOfPages(got.first, got.count),
      got.cma ? 'cma' : 'buddy',
      false,
      'cached',
      0,
    );
  } else {
    // dma_common_alloc_pages: pages, then a streaming-style mapping through the IOMMU.
    const order = getOrder(aligned);
    const page = allocPagesInner(m, gfp | __GFP_ZERO, order);
    if (page === null) return null;
    const phys = pageToPhys(page);
    const handle = ops.mapPhys(dev, phys, aligned, dir, 0);
    if (handle === DMA_MAPPING_ERROR) {
      freePagesInner(m, page, order);
      return null;
    }
    r = record(
      dev,
      pageAddress(page),
      handle,
      size,
      runOfPages(page, 2 ** order),
      'buddy',
      false,
      'cached',
      0,
    );
  }
  r.kind = kind;
  r.dir = dir;
  allocs(m).set(r.cpuAddr, r);
  return r;
}

function freePagesRecord(
  dev: Device,
  size: number,
  cpuAddr: number,
  dmaHandle: number,
  dir: DmaDataDirection,
  call: string,
  kind: 'pages' | 'noncoherent',
): void {
  const m = dev.machine;
  const r = allocs(m).get(cpuAddr);
  emitFree(dev, call, cpuAddr, dmaHandle, size, 0, kind, dir);
  if (r === undefined || r.device !== dev.id) return;
  allocs(m).delete(cpuAddr);
  const ops = getDmaOps(dev);
  const aligned = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  if (ops.name !== 'dma-direct') ops.unmapPhys(dev, r.dmaHandle, aligned, dir, 0);
  if (r.source === 'cma') cmaRelease(m, r.pages[0]! as Page, aligned / PAGE_SIZE);
  else freePagesInner(m, r.pages[0]! as Page, getOrder(aligned));
}

/**
 * `dma_alloc_pages()`: cacheable pages the driver syncs like a reused
 * streaming mapping (`dma_sync_single_for_device` before the device reads,
 * `_for_cpu` before the CPU reads what it wrote). Returns `{ page, dmaHandle }`.
 */
export function dmaAllocPages(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
): { page: Page; dmaHandle: DmaAddr } | null {
  const m = dev.machine;
  enterCall(m, 'dma_alloc_pages');
  try {
    if (badGfpForPages(dev, gfp, 'dma_alloc_pages')) return null;
    const r = allocPagesRecord(dev, size, dir, gfp, 'pages');
    emitAlloc(dev, 'dma_alloc_pages', r, size, gfp, 0, 'pages', dir);
    return r === null ? null : { page: r.pages[0]! as Page, dmaHandle: r.dmaHandle as DmaAddr };
  } finally {
    leaveCall(m);
  }
}

/** `dma_free_pages()`: all arguments as allocated. */
export function dmaFreePages(
  dev: Device,
  size: number,
  page: Page,
  dmaHandle: DmaAddr,
  dir: DmaDataDirection,
): void {
  enterCall(dev.machine, 'dma_free_pages');
  try {
    freePagesRecord(dev, size, pageAddress(page), dmaHandle, dir, 'dma_free_pages', 'pages');
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_alloc_noncoherent()`: `dma_alloc_pages` returning the linear-map address. */
export function dmaAllocNoncoherent(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  const m = dev.machine;
  enterCall(m, 'dma_alloc_noncoherent');
  try {
    if (badGfpForPages(dev, gfp, 'dma_alloc_noncoherent')) return null;
    const r = allocPagesRecord(dev, size, dir, gfp, 'noncoherent');
    emitAlloc(dev, 'dma_alloc_noncoherent', r, size, gfp, 0, 'noncoherent', dir);
    return r === null ? null : { cpuAddr: r.cpuAddr as KernelVa, dmaHandle: r.dmaHandle as DmaAddr };
  } finally {
    leaveCall(m);
  }
}

/** `dma_free_noncoherent()`. */
export function dmaFreeNoncoherent(
  dev: Device,
  size: number,
  vaddr: KernelVa | number,
  dmaHandle: DmaAddr,
  dir: DmaDataDirection,
): void {
  enterCall(dev.machine, 'dma_free_noncoherent');
  try {
    freePagesRecord(dev, size, vaddr, dmaHandle, dir, 'dma_free_noncoherent', 'noncoherent');
  } finally {
    leaveCall(dev.machine);
  }
}
