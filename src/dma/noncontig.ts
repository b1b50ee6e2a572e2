/**
 * Non-contiguous DMA allocations (kernel/dma/mapping.c,
 * drivers/iommu/dma-iommu.c): `dma_alloc_noncontiguous` returns an sg_table
 * whose CPU side may be many pages (`orig_nents` entries) and whose DMA side
 * is always one segment (`nents` = 1): behind an IOMMU, scattered pages in
 * one IOVA range; without one, a single contiguous block from
 * `dma_alloc_pages`. The memory is cacheable and is synced like a streaming
 * mapping (`dma_sync_sgtable_for_device` / `_for_cpu`).
 */

import {
  createSgTable,
  type SgTable,
  sgAllocTable,
  sgAllocTableFromPages,
  sgFreeTable,
  sgPage,
  sgSetDmaAddress,
  sgSetDmaLen,
  sgSetPage,
} from '../lib/index.js';
import {
  __GFP_COMP,
  __GFP_ZERO,
  allocPagesInner,
  type Device,
  ENXIO,
  enterCall,
  freePagesInner,
  type Gfp,
  type KernelVa,
  leaveCall,
  PAGE_SIZE,
  type Page,
  pageAddress,
  reportFinding,
  WARN,
} from '../machine/index.js';
import { PAGE_KERNEL, VM_MAP, type Vma, vmaPages, vmap, vmMapPages, vunmap } from '../mm/index.js';
import { dmaAllocPagesInner, dmaFreePages, emitNoncontig } from './alloc.js';
import { getDmaOps } from './api.js';
import { archDmaPrepCoherent, devIsDmaCoherent } from './arch.js';
import { __iommuDmaUnmap, dmaInfoToProt, mapPageList } from './iommu-dma.js';
import { dmaMmapPages } from './mmap.js';
import { warnOnce } from './state.js';
import { DMA_ATTR_ALLOC_SINGLE_PAGES, DMA_MAPPING_ERROR, type DmaDataDirection } from './types.js';

/** Host-side record of a non-contiguous allocation, keyed by its table. */
interface NoncontigRecord {
  device: number;
  pages: number[];
  /** Blocks to free (page, order). */
  blocks: { page: number; order: number }[];
  iova: number;
  size: number;
  dir: DmaDataDirection;
  iommu: boolean;
}

const records = new WeakMap<SgTable, NoncontigRecord>();

/** `__iommu_dma_alloc_noncontiguous()`: pages (single ones, or 2 MiB blocks when allowed) at one IOVA. */
function iommuAllocNoncontig(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
  attrs: number,
): { sgt: SgTable; rec: NoncontigRecord } | null {
  const m = dev.machine;
  const count = Math.ceil(size / PAGE_SIZE);
  const blocks: { page: number; order: number }[] = [];
  const pages: number[] = [];
  let left = count;
  while (left > 0) {
    const order = !(attrs & DMA_ATTR_ALLOC_SINGLE_PAGES) && left >= 512 ? 9 : 0;
    const page = allocPagesInner(m, gfp | __GFP_ZERO, order);
    if (page === null) {
      for (const b of blocks) freePagesInner(m, b.page as Page, b.order);
      return null;
    }
    blocks.push({ page, order });
    for (let k = 0; k < 2 ** order; k++) pages.push(page + k);
    left -= 2 ** order;
  }
  const coherent = devIsDmaCoherent(dev);
  if (!coherent) for (const p of pages) archDmaPrepCoherent(m, p * PAGE_SIZE, PAGE_SIZE);
  const iova = mapPageList(dev, pages, dmaInfoToProt(dir, coherent, 0), count * PAGE_SIZE);
  if (iova === DMA_MAPPING_ERROR) {
    for (const b of blocks) freePagesInner(m, b.page as Page, b.order);
    return null;
  }
  const sgt = createSgTable();
  sgAllocTableFromPages(sgt, pages as Page[], count, 0, size, gfp);
  sgSetDmaAddress(sgt.sgl!, iova as never);
  sgSetDmaLen(sgt.sgl!, size);
  sgt.nents = 1;
  return { sgt, rec: { device: dev.id, pages, blocks, iova, size, dir, iommu: true } };
}

/**
 * `dma_alloc_noncontiguous()`: cacheable memory for `dev` as an sg_table
 * (`nents` = 1 DMA segment). `attrs` may only be `DMA_ATTR_ALLOC_SINGLE_PAGES`.
 */
export function dmaAllocNoncontiguous(
  dev: Device,
  size: number,
  dir: DmaDataDirection,
  gfp: Gfp,
  attrs: number,
): SgTable | null {
  const m = dev.machine;
  enterCall(m, 'dma_alloc_noncontiguous');
  try {
    if (attrs & ~DMA_ATTR_ALLOC_SINGLE_PAGES || gfp & __GFP_COMP) {
      if (warnOnce(dev, 'alloc_noncontiguous args')) {
        reportFinding(
          m,
          WARN.code,
          'WARNING: dma_alloc_noncontiguous: only DMA_ATTR_ALLOC_SINGLE_PAGES, no __GFP_COMP',
          {
            device: dev.name,
            details: { attrs, gfp },
          },
        );
      }
      return null;
    }
    let out: { sgt: SgTable; rec: NoncontigRecord } | null;
    if (getDmaOps(dev).name === 'iommu-dma') {
      out = iommuAllocNoncontig(dev, size, dir, gfp, attrs);
    } else {
      // alloc_single_sgt: one contiguous block from dma_alloc_pages.
      const r = dmaAllocPagesInner(dev, size, dir, gfp);
      if (r === null) out = null;
      else {
        const sgt = createSgTable();
        sgAllocTable(sgt, 1, gfp);
        sgSetPage(sgt.sgl!, r.pages[0]! as Page, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE, 0);
        sgSetDmaAddress(sgt.sgl!, r.dmaHandle as never);
        sgSetDmaLen(sgt.sgl!, size);
        out = {
          sgt,
          rec: { device: dev.id, pages: r.pages, blocks: [], iova: r.dmaHandle, size, dir, iommu: false },
        };
      }
    }
    emitNoncontig(
      dev,
      'dma_alloc_noncontiguous',
      out?.rec.pages ?? null,
      out?.rec.iova ?? 0,
      size,
      gfp,
      attrs,
      dir,
      true,
    );
    if (out === null) return null;
    records.set(out.sgt, out.rec);
    return out.sgt;
  } finally {
    leaveCall(m);
  }
}

/** `dma_free_noncontiguous()`. */
export function dmaFreeNoncontiguous(dev: Device, size: number, sgt: SgTable, dir: DmaDataDirection): void {
  const m = dev.machine;
  enterCall(m, 'dma_free_noncontiguous');
  try {
    const rec = records.get(sgt);
    emitNoncontig(dev, 'dma_free_noncontiguous', rec?.pages ?? null, rec?.iova ?? 0, size, 0, 0, dir, false);
    if (rec === undefined || rec.device !== dev.id) return;
    records.delete(sgt);
    if (rec.iommu) {
      __iommuDmaUnmap(dev, rec.iova, Math.ceil(size / PAGE_SIZE) * PAGE_SIZE);
      for (const b of rec.blocks) freePagesInner(m, b.page as Page, b.order);
    } else {
      dmaFreePages(dev, size, rec.pages[0]! as Page, rec.iova as never, dir);
    }
    sgFreeTable(sgt);
  } finally {
    leaveCall(m);
  }
}

/**
 * `dma_vmap_noncontiguous()`: a cacheable kernel mapping of the allocation
 * (a vmap of the pages behind an IOMMU, the linear map otherwise).
 */
export function dmaVmapNoncontiguous(dev: Device, size: number, sgt: SgTable): KernelVa | null {
  const m = dev.machine;
  const rec = records.get(sgt);
  if (rec === undefined) return null;
  if (!rec.iommu) return pageAddress(sgPage(sgt.sgl!)!);
  const count = Math.ceil(size / PAGE_SIZE);
  return vmap(m, rec.pages.slice(0, count) as Page[], count, VM_MAP, PAGE_KERNEL);
}

/** `dma_vunmap_noncontiguous()`: a no-op without an IOMMU. */
export function dmaVunmapNoncontiguous(dev: Device, vaddr: KernelVa | number): void {
  if (getDmaOps(dev).name === 'iommu-dma') vunmap(dev.machine, vaddr);
}

/** `dma_mmap_noncontiguous()`: `vm_map_pages` of the page array, or `dma_mmap_pages`. */
export function dmaMmapNoncontiguous(dev: Device, vma: Vma, size: number, sgt: SgTable): number {
  const rec = records.get(sgt);
  if (rec === undefined) return -ENXIO;
  if (!rec.iommu) return dmaMmapPages(dev, vma, size, sgPage(sgt.sgl!)!);
  const count = Math.ceil(size / PAGE_SIZE);
  if (vma.vmPgoff >= count || vmaPages(vma) > count - vma.vmPgoff) return -ENXIO;
  return vmMapPages(vma, rec.pages.slice(0, count) as Page[], count);
}
