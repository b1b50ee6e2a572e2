/**
 * Architecture hooks of the streaming and coherent DMA paths, selected by
 * the profile's `dmaMaintenance` (data plus narrow hooks, STYLE.md):
 *
 * | hook | arm64 | parisc (pcxl) | none (x86) |
 * |---|---|---|---|
 * | `arch_sync_dma_for_device` | clean to PoC, every direction | flush (`fdc`), every direction | — |
 * | `arch_sync_dma_for_cpu` | TO_DEVICE: nothing; else invalidate, partly covered edge lines cleaned+invalidated | FROM_DEVICE: purge (`pdc`); else flush | — |
 * | `arch_dma_prep_coherent` | clean+invalidate | flush | — |
 *
 * All operate on the kernel linear-map alias of the physical range (the
 * kernel passes `phys_to_virt(paddr)`), which on a VIPT cache is colour 0.
 * They run only for devices that are not DMA-coherent (`dev_is_dma_coherent`).
 */

import {
  cacheClean,
  cacheFlush,
  cacheInvalidate,
  colourOf,
  type Device,
  type Machine,
  physToVirt,
} from '../machine/index.js';
import { DMA_FROM_DEVICE, DMA_TO_DEVICE, type DmaDataDirection } from './types.js';

/**
 * `dev_is_dma_coherent()`: a snooping device, or a PA-RISC device whose
 * IOMMU entries carry the coherence index. x86 always answers true (no
 * arch sync hooks are selected there).
 */
export function devIsDmaCoherent(dev: Device): boolean {
  if (dev.machine.profile.dmaMaintenance === 'none') return true;
  return dev.state.coherence !== 'none';
}

function kernelColour(m: Machine, pa: number): number {
  return colourOf(m.hw.cache, physToVirt(pa), pa);
}

/** `arch_sync_dma_for_device()`: make the CPU's writes visible to a non-coherent device. */
export function archSyncDmaForDevice(m: Machine, paddr: number, size: number, _dir: DmaDataDirection): void {
  switch (m.profile.dmaMaintenance) {
    case 'arm64':
      cacheClean(m, paddr, size, kernelColour(m, paddr));
      return;
    case 'pcxl':
      cacheFlush(m, paddr, size, kernelColour(m, paddr));
      return;
    case 'none':
      return;
  }
}

/** `arch_sync_dma_for_cpu()`: drop stale lines so the CPU sees what the device wrote. */
export function archSyncDmaForCpu(m: Machine, paddr: number, size: number, dir: DmaDataDirection): void {
  switch (m.profile.dmaMaintenance) {
    case 'arm64':
      if (dir === DMA_TO_DEVICE) return;
      // dcache_inval_poc: whole lines invalidated, partly covered edge lines cleaned and invalidated.
      cacheInvalidate(m, paddr, size, kernelColour(m, paddr), 'clean');
      return;
    case 'pcxl':
      if (dir === DMA_FROM_DEVICE) cacheInvalidate(m, paddr, size, kernelColour(m, paddr), 'discard');
      else cacheFlush(m, paddr, size, kernelColour(m, paddr));
      return;
    case 'none':
      return;
  }
}

/** `arch_dma_prep_coherent()`: write back and drop the cached kernel alias before an uncached remap. */
export function archDmaPrepCoherent(m: Machine, paddr: number, size: number): void {
  if (m.profile.dmaMaintenance === 'none') return;
  cacheFlush(m, paddr, size, kernelColour(m, paddr));
}
