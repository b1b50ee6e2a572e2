/**
 * dma-direct (kernel/dma/direct.c, direct.h): streaming DMA without an
 * IOMMU. The bus address is the physical address plus the device's
 * uniform offset; a buffer the device cannot reach (mask, bus limit), a
 * small kmalloc buffer on arm64 (`dma_kmalloc_needs_bounce`) and every
 * buffer with `swiotlb=force` bounce through swiotlb; a non-coherent device
 * gets the arch's cache maintenance at map, sync and unmap.
 */

import { type Device, formatHex, PAGE_SIZE, reportFinding, SIZE_MAX, WARN } from '../machine/index.js';
import { archSyncDmaForCpu, archSyncDmaForDevice, devIsDmaCoherent } from './arch.js';
import { dmaKmallocNeedsBounce } from './kmalloc-align.js';
import type { DmaMapOps } from './ops.js';
import { warnOnce } from './state.js';
import {
  dmaCapable,
  isSwiotlbActive,
  isSwiotlbBuffer,
  isSwiotlbForceBounce,
  swiotlbMap,
  swiotlbMaxMappingSize,
  swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice,
  swiotlbTblUnmapSingle,
} from './swiotlb.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_MAPPING_ERROR,
  type DmaDataDirection,
  maskLimit,
} from './types.js';

/** `phys_to_dma()`. */
export function physToDma(dev: Device, phys: number): number {
  return phys + dev.state.dmaOffset;
}

/** `dma_to_phys()`. */
export function dmaToPhys(dev: Device, addr: number): number {
  return addr - dev.state.dmaOffset;
}

function overflow(dev: Device, addr: number, size: number): number {
  if (warnOnce(dev, 'dma-direct overflow')) {
    const s = dev.state;
    reportFinding(
      dev.machine,
      WARN.code,
      `DMA addr ${formatHex(addr)}+${size} overflow (mask ${formatHex(maskLimit(s.dmaMaskBits) - 1)}, bus limit ${s.busDmaLimitBits > 0 ? formatHex(maskLimit(s.busDmaLimitBits) - 1) : '0'}).`,
      { device: dev.name, details: { dmaAddr: addr, size } },
    );
  }
  return DMA_MAPPING_ERROR;
}

/** `dma_direct_map_phys()`. */
export function dmaDirectMapPhys(
  dev: Device,
  phys: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  if (isSwiotlbForceBounce(dev)) {
    if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return DMA_MAPPING_ERROR;
    return swiotlbMap(dev, phys, size, dir, attrs);
  }
  let addr: number;
  if (attrs & DMA_ATTR_MMIO) {
    addr = phys;
    if (!dmaCapable(dev, addr, size)) return overflow(dev, addr, size);
    return addr;
  }
  addr = physToDma(dev, phys);
  if (!dmaCapable(dev, addr, size) || dmaKmallocNeedsBounce(dev, size, dir)) {
    if (isSwiotlbActive(dev) && !(attrs & DMA_ATTR_REQUIRE_COHERENT))
      return swiotlbMap(dev, phys, size, dir, attrs);
    return overflow(dev, addr, size);
  }
  if (!devIsDmaCoherent(dev) && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) {
    archSyncDmaForDevice(dev.machine, phys, size, dir);
  }
  return addr;
}

/** `dma_direct_sync_single_for_device()`. */
export function dmaDirectSyncSingleForDevice(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  const paddr = dmaToPhys(dev, addr);
  swiotlbSyncSingleForDevice(dev, paddr, size, dir);
  if (!devIsDmaCoherent(dev)) archSyncDmaForDevice(dev.machine, paddr, size, dir);
}

/** `dma_direct_sync_single_for_cpu()`. */
export function dmaDirectSyncSingleForCpu(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  const paddr = dmaToPhys(dev, addr);
  if (!devIsDmaCoherent(dev)) archSyncDmaForCpu(dev.machine, paddr, size, dir);
  swiotlbSyncSingleForCpu(dev, paddr, size, dir);
}

/** `dma_direct_unmap_phys()`. */
export function dmaDirectUnmapPhys(
  dev: Device,
  addr: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return;
  const phys = dmaToPhys(dev, addr);
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC)) dmaDirectSyncSingleForCpu(dev, addr, size, dir);
  if (isSwiotlbBuffer(dev.machine, phys)) {
    swiotlbTblUnmapSingle(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
  }
}

/** Highest RAM byte's bus address, as a mask width (`dma_direct_get_required_mask`). */
function requiredBits(dev: Device): number {
  const top = physToDma(dev, dev.machine.options.ramBytes - 1);
  return Math.max(1, Math.ceil(Math.log2(top + 1)));
}

/** `dma_direct_supported()`: 32-bit masks always; smaller ones if they cover ZONE_DMA (or all RAM). */
function directSupported(dev: Device, bits: number): boolean {
  if (bits >= 32) return true;
  const m = dev.machine;
  const minMask = Math.min((m.options.ramBytes / PAGE_SIZE - 1) * PAGE_SIZE, 2 ** m.profile.zoneDmaBits - 1);
  return maskLimit(bits) - 1 >= physToDma(dev, minMask);
}

/** dma-direct as a provider table. */
export const directOps: DmaMapOps = {
  name: 'dma-direct',
  mapPhys: dmaDirectMapPhys,
  unmapPhys: dmaDirectUnmapPhys,
  syncSingleForCpu: dmaDirectSyncSingleForCpu,
  syncSingleForDevice: dmaDirectSyncSingleForDevice,
  dmaSupported: directSupported,
  getRequiredMask: requiredBits,
  maxMappingSize(dev) {
    // dma_direct_max_mapping_size: swiotlb's limit when bouncing may happen.
    const s = dev.state;
    let limit = maskLimit(s.dmaMaskBits);
    if (s.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(s.busDmaLimitBits));
    const limited = limit < maskLimit(requiredBits(dev));
    if (isSwiotlbActive(dev) && (limited || isSwiotlbForceBounce(dev))) return swiotlbMaxMappingSize(dev);
    return SIZE_MAX;
  },
  optMappingSize: () => SIZE_MAX,
  getMergeBoundary: () => 0,
  needSync(dev, addr) {
    return !devIsDmaCoherent(dev) || isSwiotlbBuffer(dev.machine, dmaToPhys(dev, addr));
  },
  canMmap(dev) {
    return devIsDmaCoherent(dev) || dev.machine.profile.noncoherentMmap;
  },
};
