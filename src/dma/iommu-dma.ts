/**
 * iommu-dma (drivers/iommu/dma-iommu.c): streaming DMA through an IOMMU
 * domain. Mappings are page-granular; the IOVA comes from the domain's
 * allocator (top-down, below 4 GiB first for PCI devices); permissions follow
 * the direction; a non-coherent device still gets the arch's cache
 * maintenance; small kmalloc buffers of a non-coherent device bounce through
 * swiotlb when they are not granule aligned.
 */

import {
  type Device,
  IOMMU_CACHE,
  IOMMU_MMIO,
  IOMMU_PRIV,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
  PAGE_SIZE,
  reportFinding,
  SIZE_MAX,
  WARN,
} from '../machine/index.js';
import { archSyncDmaForCpu, archSyncDmaForDevice, devIsDmaCoherent } from './arch.js';
import { allocIovaFast, createIovaDomain, freeIovaFast, type IovaDomainState } from './iova.js';
import { dmaKmallocNeedsBounce } from './kmalloc-align.js';
import type { DmaMapOps } from './ops.js';
import { dmaDev, dmaState } from './state.js';
import {
  isSwiotlbActive,
  isSwiotlbBuffer,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle,
  swiotlbTblUnmapSingle,
} from './swiotlb.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  maskLimit,
} from './types.js';

/** The IOVA granule: the smallest IOMMU page size. */
export const IOVA_GRANULE = PAGE_SIZE;
/** `IOVA_RANGE_CACHE_MAX_SIZE - 1` as pages: smaller allocations are rounded to a power of two. */
const IOVA_ROUNDUP_LIMIT = 32;

/** The IOVA allocator of a device's domain. */
export function iovaDomainOf(dev: Device): IovaDomainState {
  const s = dmaState(dev.machine);
  const id = dev.state.iommuDomain;
  let d = s.iova.get(id);
  if (d === undefined) {
    d = createIovaDomain(IOVA_GRANULE);
    s.iova.set(id, d);
  }
  return d;
}

/** `dma_info_to_prot()`. */
export function dmaInfoToProt(dir: DmaDataDirection, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if (attrs & DMA_ATTR_PRIVILEGED) prot |= IOMMU_PRIV;
  if (attrs & DMA_ATTR_MMIO) prot = (prot & ~IOMMU_CACHE) | IOMMU_MMIO;
  switch (dir) {
    case DMA_BIDIRECTIONAL:
      return prot | IOMMU_READ | IOMMU_WRITE;
    case DMA_TO_DEVICE:
      return prot | IOMMU_READ;
    case DMA_FROM_DEVICE:
      return prot | IOMMU_WRITE;
    default:
      return 0;
  }
}

function pow2Roundup(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * `iommu_dma_alloc_iova()`: a granule-aligned IOVA range below the limit,
 * trying below 4 GiB first while the PCI 32-bit workaround is on. Returns 0
 * when the space is exhausted.
 */
export function iommuDmaAllocIova(dev: Device, size: number, limitBits: number): number {
  const d = iovaDomainOf(dev);
  let iovaLen = size / IOVA_GRANULE;
  if (iovaLen < IOVA_ROUNDUP_LIMIT) iovaLen = pow2Roundup(iovaLen);
  let limit = maskLimit(limitBits) - 1;
  if (dev.state.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(dev.state.busDmaLimitBits) - 1);
  limit = Math.min(limit, 2 ** 48 - 1);
  const ds = dmaDev(dev);
  if (limit > 2 ** 32 - 1 && ds.pci32Workaround) {
    const pfn = allocIovaFast(d, iovaLen, Math.floor((2 ** 32 - 1) / IOVA_GRANULE), false);
    if (pfn !== 0) return pfn * IOVA_GRANULE;
    // The kernel logs "Using %d-bit DMA addresses" and stops trying.
    ds.pci32Workaround = false;
  }
  const pfn = allocIovaFast(d, iovaLen, Math.floor(limit / IOVA_GRANULE), true);
  return pfn * IOVA_GRANULE;
}

/** `iommu_dma_free_iova()`. */
export function iommuDmaFreeIova(dev: Device, iova: number, size: number): void {
  freeIovaFast(iovaDomainOf(dev), iova / IOVA_GRANULE, size / IOVA_GRANULE);
}

/** `__iommu_dma_map()`: IOVA allocation plus page-table entries; returns the IOVA + offset or an error. */
export function __iommuDmaMap(
  dev: Device,
  phys: number,
  size: number,
  prot: number,
  limitBits: number,
): number {
  const domain = dev.iommuDomain!;
  const off = phys % IOVA_GRANULE;
  const len = Math.ceil((size + off) / IOVA_GRANULE) * IOVA_GRANULE;
  const iova = iommuDmaAllocIova(dev, len, limitBits);
  if (iova === 0) return DMA_MAPPING_ERROR;
  if (iommuMap(domain, iova, phys - off, len, prot) !== 0) {
    iommuDmaFreeIova(dev, iova, len);
    return DMA_MAPPING_ERROR;
  }
  return iova + off;
}

/** `__iommu_dma_unmap()`. */
export function __iommuDmaUnmap(dev: Device, addr: number, size: number): void {
  const off = addr % IOVA_GRANULE;
  const iova = addr - off;
  const len = Math.ceil((size + off) / IOVA_GRANULE) * IOVA_GRANULE;
  const unmapped = iommuUnmap(dev.iommuDomain!, iova, len);
  if (unmapped !== len) {
    reportFinding(
      dev.machine,
      WARN.code,
      `WARNING: iommu_dma: unmapped ${unmapped} of ${len} bytes at IOVA 0x${iova.toString(16)}`,
      {
        device: dev.name,
        details: { iova, size: len, unmapped },
      },
    );
  }
  iommuDmaFreeIova(dev, iova, len);
}

/** `dev_use_swiotlb()`: only for buffers that may share a line (untrusted devices are not modelled). */
function devUseSwiotlb(dev: Device, size: number, dir: DmaDataDirection): boolean {
  return isSwiotlbActive(dev) && dmaKmallocNeedsBounce(dev, size, dir);
}

function iovaUnaligned(phys: number, size: number): boolean {
  return phys % IOVA_GRANULE !== 0 || size % IOVA_GRANULE !== 0;
}

/** `iommu_dma_map_phys()`. */
export function iommuDmaMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  const coherent = devIsDmaCoherent(dev);
  const prot = dmaInfoToProt(dir, coherent, attrs);
  let p = phys;
  if (devUseSwiotlb(dev, size, dir) && iovaUnaligned(phys, size)) {
    if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return DMA_MAPPING_ERROR;
    // iommu_dma_map_swiotlb: granule-aligned slot run.
    p = swiotlbTblMapSingle(dev, phys, size, IOVA_GRANULE - 1, dir, attrs);
    if (p === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  }
  if (!coherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)))
    archSyncDmaForDevice(dev.machine, p, size, dir);
  const iova = __iommuDmaMap(dev, p, size, prot, dev.state.dmaMaskBits);
  if (iova === DMA_MAPPING_ERROR && !(attrs & DMA_ATTR_MMIO) && isSwiotlbBuffer(dev.machine, p)) {
    swiotlbTblUnmapSingle(dev, p, size, dir, attrs);
  }
  return iova;
}

/** `iommu_dma_unmap_phys()`. */
export function iommuDmaUnmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) {
    __iommuDmaUnmap(dev, addr, size);
    return;
  }
  const phys = iommuIovaToPhys(dev.iommuDomain!, addr);
  if (phys === 0) {
    __iommuDmaUnmap(dev, addr, size);
    return;
  }
  if (!devIsDmaCoherent(dev) && !(attrs & DMA_ATTR_SKIP_CPU_SYNC))
    archSyncDmaForCpu(dev.machine, phys, size, dir);
  __iommuDmaUnmap(dev, addr, size);
  if (isSwiotlbBuffer(dev.machine, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs);
}

/** `iommu_dma_sync_single_for_cpu()`. */
export function iommuDmaSyncSingleForCpu(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  const phys = iommuIovaToPhys(dev.iommuDomain!, addr);
  if (phys === 0) return;
  if (!devIsDmaCoherent(dev)) archSyncDmaForCpu(dev.machine, phys, size, dir);
  swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/** `iommu_dma_sync_single_for_device()`. */
export function iommuDmaSyncSingleForDevice(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  const phys = iommuIovaToPhys(dev.iommuDomain!, addr);
  if (phys === 0) return;
  swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!devIsDmaCoherent(dev)) archSyncDmaForDevice(dev.machine, phys, size, dir);
}

/** iommu-dma as a provider table. */
export const iommuDmaOps: DmaMapOps = {
  name: 'iommu-dma',
  mapPhys: iommuDmaMapPhys,
  unmapPhys: iommuDmaUnmapPhys,
  syncSingleForCpu: iommuDmaSyncSingleForCpu,
  syncSingleForDevice: iommuDmaSyncSingleForDevice,
  dmaSupported: () => true,
  getRequiredMask: () => 32,
  maxMappingSize: () => SIZE_MAX,
  // The IOVA range caches serve allocations below 32 pages (iova_rcache_range).
  optMappingSize: () => IOVA_ROUNDUP_LIMIT * IOVA_GRANULE,
  getMergeBoundary: () => IOVA_GRANULE - 1,
  needSync: () => true,
  canMmap: () => true,
};

/** Maps a page list at consecutive IOVAs of one range (`iommu_map_sgtable` of the allocation). */
export function mapPageList(dev: Device, pages: number[], prot: number, size: number): number {
  const iova = iommuDmaAllocIova(dev, size, dev.state.coherentDmaMaskBits);
  if (iova === 0) return DMA_MAPPING_ERROR;
  for (let k = 0; k < pages.length; k++) {
    if (iommuMap(dev.iommuDomain!, iova + k * PAGE_SIZE, pages[k]! * PAGE_SIZE, PAGE_SIZE, prot) !== 0) {
      iommuDmaFreeIova(dev, iova, size);
      return DMA_MAPPING_ERROR;
    }
  }
  return iova;
}
