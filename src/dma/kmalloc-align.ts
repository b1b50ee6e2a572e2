/**
 * `dma_kmalloc_needs_bounce()` (include/linux/dma-map-ops.h): arm64 ≥ 6.5
 * bounces small kmalloc buffers mapped for a non-coherent device in any
 * direction but TO_DEVICE, judging by size alone: a size whose kmalloc size
 * class is not a multiple of `dma_get_cache_alignment()` may share a cache
 * line with another object.
 */

import { type Device, getOrder, PAGE_SIZE } from '../machine/index.js';
import { devIsDmaCoherent } from './arch.js';
import { DMA_TO_DEVICE, type DmaDataDirection } from './types.js';

/** `KMALLOC_MAX_CACHE_SIZE`: larger kmallocs come from the page allocator. */
const KMALLOC_MAX_CACHE_SIZE = 2 * PAGE_SIZE;

/**
 * `kmalloc_size_roundup()` for a minimum alignment `minAlign`: the slab
 * size class a request lands in (8, 16, 32, 64, 96, 128, 192, 256, … 8192;
 * the 96 and 192 classes exist only while the minimum allows them).
 */
export function kmallocClassSize(size: number, minAlign: number): number {
  if (size <= 0) return 0;
  if (size > KMALLOC_MAX_CACHE_SIZE) return PAGE_SIZE * 2 ** getOrder(size);
  if (size <= minAlign) return minAlign;
  if (size <= 96 && minAlign <= 32 && size > 64) return 96;
  if (size <= 192 && minAlign <= 64 && size > 128) return 192;
  let c = 8;
  while (c < size) c *= 2;
  return Math.max(c, minAlign);
}

/** kmalloc's minimum alignment on this machine (ARCH_KMALLOC_MINALIGN). */
export function kmallocMinAlign(dev: Device): number {
  const p = dev.machine.profile;
  return dev.machine.options.kmallocBounce
    ? p.kmallocMinAlign
    : Math.max(p.kmallocMinAlign, p.archDmaMinalign);
}

/** `dma_kmalloc_needs_bounce()`. */
export function dmaKmallocNeedsBounce(dev: Device, size: number, dir: DmaDataDirection): boolean {
  const m = dev.machine;
  // dma_kmalloc_safe()
  if (!m.options.kmallocBounce || devIsDmaCoherent(dev) || dir === DMA_TO_DEVICE) return false;
  // dma_kmalloc_size_aligned()
  return kmallocClassSize(size, kmallocMinAlign(dev)) % m.profile.archDmaMinalign !== 0;
}
