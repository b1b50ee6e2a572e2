/**
 * Checker benchmarks: the overhead of the checker (dma-debug entries,
 * ownership, the oracle's listeners) on the DMA round trip of
 * bench/dma.bench.ts — dma_map_single + dma_mapping_error +
 * dma_sync_single_for_cpu + dma_unmap_single of 4 KiB — as the speed with
 * the checker on relative to the speed with it off. Goal: at most 2× the
 * time (ratio ≥ 0.5). With the checker on, syncs run even where they are
 * no-ops (dma-debug makes `dma_need_sync` true, as in the kernel).
 */

import { roundTrip } from './dma.bench.js';
import { ratio } from './lib.js';

export async function debugBenchmarks(): Promise<void> {
  for (const profile of ['x86_64', 'arm64-noncoherent', 'parisc', 'swiotlb-force']) {
    await ratio(
      `checker on vs off, dma map+error+sync+unmap 4 KiB, ${profile}`,
      roundTrip(profile, false),
      roundTrip(profile, true),
      { min: 0.5, text: '>= 0.5 (at most 2x the time)' },
    );
  }
}
