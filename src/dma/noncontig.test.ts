import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { sgDmaAddress, sgDmaLen, sgPhys } from '../lib/index.js';
import {
  addDevice,
  allocPages,
  deviceDmaWrite,
  GFP_KERNEL,
  PAGE_SIZE,
  pageIsAllocated,
  runVerdict,
} from '../machine/index.js';
import {
  kernelRead,
  MAP_SHARED,
  PROT_READ,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
} from '../mm/index.js';
import {
  DMA_FROM_DEVICE,
  dmaAllocNoncontiguous,
  dmaFreeNoncontiguous,
  dmaMmapNoncontiguous,
  dmaSyncSgtableForCpu,
  dmaSyncSgtableForDevice,
  dmaVmapNoncontiguous,
} from './index.js';

const MiB = 1 << 20;

describe('dma_alloc_noncontiguous', () => {
  it('behind an IOMMU: scattered pages on the CPU side, one DMA segment, synced like a streaming mapping', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'vpu', iommu: true });
    // Fragment memory so that consecutive order-0 allocations are not physically contiguous.
    for (let i = 0; i < 8; i++) allocPages(m, GFP_KERNEL, 0);
    const sgt = dmaAllocNoncontiguous(dev, 8 * PAGE_SIZE, DMA_FROM_DEVICE, GFP_KERNEL, 0)!;
    expect(sgt.nents).toBe(1);
    expect(sgDmaLen(sgt.sgl!)).toBe(8 * PAGE_SIZE);
    expect(sgt.origNents).toBeGreaterThanOrEqual(1);
    const va = dmaVmapNoncontiguous(dev, 8 * PAGE_SIZE, sgt)!;
    kernelRead(m, va + 5 * PAGE_SIZE, 4); // cached through the vmap
    dmaSyncSgtableForDevice(dev, sgt, DMA_FROM_DEVICE); // hand it to the device
    const data = new Uint8Array(8 * PAGE_SIZE).fill(0x3c);
    deviceDmaWrite(dev, sgDmaAddress(sgt.sgl!), data);
    dmaSyncSgtableForCpu(dev, sgt, DMA_FROM_DEVICE);
    expect([...kernelRead(m, va + 5 * PAGE_SIZE, 4)!]).toEqual([0x3c, 0x3c, 0x3c, 0x3c]);
    expect(runVerdict(m)).toBe('clean');
  });

  it('without an IOMMU: one contiguous block, one entry, mmappable and freed', () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'uvc' });
    const sgt = dmaAllocNoncontiguous(dev, 4 * PAGE_SIZE, DMA_FROM_DEVICE, GFP_KERNEL, 0)!;
    expect(sgt.origNents).toBe(1);
    expect(sgDmaAddress(sgt.sgl!)).toBe(sgPhys(sgt.sgl!));
    deviceDmaWrite(dev, sgDmaAddress(sgt.sgl!), new Uint8Array([1, 2, 3]));
    registerChrdev(m, '/dev/video0', {
      mmap: (_f, vma) => dmaMmapNoncontiguous(dev, vma, 4 * PAGE_SIZE, sgt),
    });
    const proc = spawnProcess(m, 'cam');
    const addr = sysMmap(proc, 0, 4 * PAGE_SIZE, PROT_READ, MAP_SHARED, sysOpen(proc, '/dev/video0'), 0);
    expect([...userRead(proc, addr, 3)!]).toEqual([1, 2, 3]);
    const first = Math.floor(sgPhys(sgt.sgl!) / PAGE_SIZE);
    dmaFreeNoncontiguous(dev, 4 * PAGE_SIZE, sgt, DMA_FROM_DEVICE);
    expect(pageIsAllocated(m, first)).toBe(false);
  });

  it('refuses attributes other than DMA_ATTR_ALLOC_SINGLE_PAGES with a WARN', () => {
    const m = createMachine({ ramBytes: 64 * MiB });
    const dev = addDevice(m, { name: 'x' });
    expect(dmaAllocNoncontiguous(dev, PAGE_SIZE, DMA_FROM_DEVICE, GFP_KERNEL, 1 << 2)).toBeNull();
    expect(runVerdict(m)).toBe('api');
  });
});
