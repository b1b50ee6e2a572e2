/**
 * `dma_kmalloc_needs_bounce()` (include/linux/dma-map-ops.h): arm64 ≥ 6.5
 * bounces small kmalloc buffers mapped for a non-coherent device in any
 * direction but TO_DEVICE, judging by size alone: a size whose kmalloc size
 * class is not a multiple of `dma_get_cache_alignment()` may share a cache
 * line with another object.
 */

import type { Device } from '../machine/index.js';
import { kmallocSizeRoundup } from '../mm/index.js';
import { devIsDmaCoherent } from './arch.js';
import { DMA_TO_DEVICE, type DmaDataDirection } from './types.js';

/** `dma_kmalloc_needs_bounce()`. */
export function dmaKmallocNeedsBounce(dev: Device, size: number, dir: DmaDataDirection): boolean {
  const m = dev.machine;
  // dma_kmalloc_safe()
  if (!m.options.kmallocBounce || devIsDmaCoherent(dev) || dir === DMA_TO_DEVICE) return false;
  // dma_kmalloc_size_aligned()
  return kmallocSizeRoundup(m, size) % m.profile.archDmaMinalign !== 0;
}
