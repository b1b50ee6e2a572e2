/**
 * The provider face (STYLE.md "two faces"): what a DMA backend implements.
 * dma-direct, iommu-dma and parisc's sba-style IOMMU ops each provide one
 * table; the driver face (api.ts) resolves the device's table and
 * dispatches, in the kernel's order. Tables are module constants, never
 * machine state.
 */

import type { Device } from '../machine/index.js';
import type { DmaDataDirection } from './types.js';

export interface DmaMapOps {
  readonly name: 'dma-direct' | 'iommu-dma' | 'sba';
  /** `map_phys`: returns the DMA address or `DMA_MAPPING_ERROR`. */
  mapPhys(dev: Device, phys: number, size: number, dir: DmaDataDirection, attrs: number): number;
  unmapPhys(dev: Device, addr: number, size: number, dir: DmaDataDirection, attrs: number): void;
  /** Absent when the backend needs no syncs (then the device's skip-sync flag is set). */
  syncSingleForCpu?(dev: Device, addr: number, size: number, dir: DmaDataDirection): void;
  syncSingleForDevice?(dev: Device, addr: number, size: number, dir: DmaDataDirection): void;
  /** `dma_supported`: whether a streaming mask of `bits` can be honoured. */
  dmaSupported(dev: Device, bits: number): boolean;
  /** `get_required_mask`, in bits. */
  getRequiredMask(dev: Device): number;
  maxMappingSize(dev: Device): number;
  optMappingSize(dev: Device): number;
  getMergeBoundary(dev: Device): number;
  /** `dma_need_sync` for an address mapped by this backend. */
  needSync(dev: Device, addr: number): boolean;
  /** `dma_can_mmap`. */
  canMmap(dev: Device): boolean;
}
