/**
 * DMA API benchmarks: dma_map_single + dma_mapping_error +
 * dma_sync_single_for_cpu + dma_unmap_single of 4 KiB, round trips per
 * second, checker off (x86_64 direct is the goal; arm64-noncoherent and
 * swiotlb-force are reported).
 */

import { createMachine } from '../src/boot.js';
import {
  addDevice,
  allocPages,
  cpuWrite,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  dmaMappingError,
  dmaMapSingle,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaUnmapSingle,
  GFP_KERNEL,
  type Machine,
  pageAddress,
  pageToPhys,
} from '../src/index.js';
import { rate } from './lib.js';

export function roundTrip(profile: string, check: boolean): () => void {
  return roundTripOn(createMachine({ profile, ramBytes: 256 * 1024 * 1024, check }));
}

/** The round trip on a machine the caller set up (listeners, options). */
export function roundTripOn(m: Machine): () => void {
  const dev = addDevice(m, { name: 'nic' });
  dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  const page = allocPages(m, GFP_KERNEL, 0)!;
  const buf = pageAddress(page);
  // The CPU has the buffer in its cache, as a driver that just used it would.
  cpuWrite(m, pageToPhys(page), buf, 'cached', new Uint8Array(4096), 0, 4096);
  return () => {
    const addr = dmaMapSingle(dev, buf, 4096, DMA_FROM_DEVICE);
    if (dmaMappingError(dev, addr)) throw new Error('map failed');
    dmaSyncSingleForCpu(dev, addr, 4096, DMA_FROM_DEVICE);
    dmaUnmapSingle(dev, addr, 4096, DMA_FROM_DEVICE);
  };
}

export async function dmaBenchmarks(): Promise<void> {
  await rate('dma map+error+sync+unmap 4 KiB, x86_64 direct, checker off', roundTrip('x86_64', false), {
    min: 1_000_000,
    text: '>= 1,000,000/s',
  });
  await rate(
    'dma map+error+sync+unmap 4 KiB, arm64-noncoherent, checker off',
    roundTrip('arm64-noncoherent', false),
  );
  await rate('dma map+error+sync+unmap 4 KiB, swiotlb-force, checker off', roundTrip('swiotlb-force', false));
}
