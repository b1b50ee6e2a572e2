/**
 * The DMA mapping API: the driver face (kernel names in camelCase) and the
 * per-architecture backends underneath (dma-direct, iommu-dma, parisc's sba
 * ops, swiotlb).
 */

import type { Machine } from '../machine/index.js';
import { initDmaState } from './state.js';
import { initSwiotlb } from './swiotlb.js';

export {
  type DmaAllocRecord,
  dmaAllocAttrs,
  dmaAllocCoherent,
  dmaAllocNoncoherent,
  dmaAllocPages,
  dmaAllocRecord,
  dmaAllocWc,
  dmaDeclareCoherentMemory,
  dmaFreeAttrs,
  dmaFreeCoherent,
  dmaFreeNoncoherent,
  dmaFreePages,
  dmaFreeWc,
  dmaPgprot,
  dmaReleaseCoherentMemory,
} from './alloc.js';
export * from './api.js';
export { archDmaPrepCoherent, archSyncDmaForCpu, archSyncDmaForDevice, devIsDmaCoherent } from './arch.js';
export { dmaToPhys, physToDma } from './direct.js';
export {
  DMA_POOL_BUSY,
  DmaPool,
  dmamPoolCreate,
  dmamPoolDestroy,
  dmaPoolAlloc,
  dmaPoolCreate,
  dmaPoolDestroy,
  dmaPoolFree,
  dmaPoolStats,
  dmaPoolZalloc,
} from './dmapool.js';
export { dmaInfoToProt, IOVA_GRANULE } from './iommu-dma.js';
export { dmamAllocAttrs, dmamAllocCoherent, dmamFreeCoherent } from './managed.js';
export {
  dmaAllocCoherentForMmap,
  dmaGetSgtable,
  dmaGetSgtableAttrs,
  dmaMmapAttrs,
  dmaMmapCoherent,
  dmaMmapPages,
  dmaMmapWc,
} from './mmap.js';
export {
  dmaAllocNoncontiguous,
  dmaFreeNoncontiguous,
  dmaMmapNoncontiguous,
  dmaVmapNoncontiguous,
  dmaVunmapNoncontiguous,
} from './noncontig.js';
export type { DmaMapOps } from './ops.js';
export { sbaIovaSpace } from './sba.js';
export {
  dmaMapSg,
  dmaMapSgAttrs,
  dmaMapSgtable,
  dmaSyncSgForCpu,
  dmaSyncSgForDevice,
  dmaSyncSgtableForCpu,
  dmaSyncSgtableForDevice,
  dmaUnmapSg,
  dmaUnmapSgAttrs,
  dmaUnmapSgtable,
} from './sg.js';
export {
  type BounceOwner,
  IO_TLB_MAX_MAPPING,
  IO_TLB_SEGSIZE,
  IO_TLB_SHIFT,
  IO_TLB_SIZE,
  isSwiotlbActive,
  isSwiotlbBuffer,
  SWIOTLB_FULL,
  type SwiotlbStats,
  swiotlbStats,
} from './swiotlb.js';
export * from './types.js';

/** The DMA layer's boot: its state, then the swiotlb pool (memblock, before the allocator runs). */
export function initDma(m: Machine): void {
  initDmaState(m);
  initSwiotlb(m);
}
