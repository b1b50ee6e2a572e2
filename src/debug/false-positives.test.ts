/**
 * Correct drivers raise no finding on any profile (API.md §4): the
 * checker's false-positive suite. Each driver also checks the bytes each
 * side saw, so that a driver that moved nothing cannot pass.
 */

import { describe, expect, it } from 'vitest';
import { buffer, codes, kread, kwrite, MiB, mapSgDirect, sgOp } from '../../test/debug-kit.js';
import { createMachine, type MachineOptions } from '../boot.js';
import {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  dmaMappingError,
  dmaMapSingle,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaSyncSingleRangeForCpu,
  dmaSyncSingleRangeForDevice,
  dmaUnmapSingle,
  isSwiotlbBuffer,
} from '../dma/index.js';
import {
  type AddDeviceOptions,
  addDevice,
  type Device,
  type DmaAddr,
  deviceDmaRead,
  deviceDmaWrite,
  type KernelVa,
  type Machine,
  machineFindings,
  PAGE_OFFSET,
  PROFILE_NAMES,
  runVerdict,
} from '../machine/index.js';

function map(dev: Device, va: KernelVa | number, size: number, dir: 0 | 1 | 2): DmaAddr {
  const a = dmaMapSingle(dev, va, size, dir);
  expect(dmaMappingError(dev, a)).toBe(0);
  return a;
}

const fill = (n: number, v: number) => new Array<number>(n).fill(v);

/** A transmit ring: the CPU fills packets, maps them for the device, the device reads them. */
function txRing(m: Machine, dev: Device): void {
  for (let i = 0; i < 4; i++) {
    const buf = buffer(m);
    kwrite(m, buf, fill(1514, 0x10 + i));
    const a = map(dev, buf, 1514, DMA_TO_DEVICE);
    expect([...deviceDmaRead(dev, a, 4)]).toEqual(fill(4, 0x10 + i));
    dmaUnmapSingle(dev, a, 1514, DMA_TO_DEVICE);
  }
}

/** A receive buffer reused twice: sync for the CPU to read, sync back for the device. */
function rxBuffer(m: Machine, dev: Device): void {
  const buf = buffer(m);
  kwrite(m, buf, fill(2048, 0));
  const a = map(dev, buf, 2048, DMA_FROM_DEVICE);
  for (const v of [0x5a, 0xa5]) {
    deviceDmaWrite(dev, a, new Uint8Array(2048).fill(v));
    dmaSyncSingleForCpu(dev, a, 2048, DMA_FROM_DEVICE);
    expect(kread(m, buf + 100, 4)).toEqual(fill(4, v));
    dmaSyncSingleForDevice(dev, a, 2048, DMA_FROM_DEVICE);
  }
  dmaUnmapSingle(dev, a, 2048, DMA_FROM_DEVICE);
  expect(kread(m, buf + 2000, 4)).toEqual(fill(4, 0xa5));
}

/** A command block: the device reads a command and writes a status; the CPU answers. */
function commandBlock(m: Machine, dev: Device): void {
  const buf = buffer(m);
  kwrite(m, buf, [1, 2, 3, 4]);
  const a = map(dev, buf, 256, DMA_BIDIRECTIONAL);
  expect([...deviceDmaRead(dev, a, 4)]).toEqual([1, 2, 3, 4]);
  deviceDmaWrite(dev, a + 128, new Uint8Array([0xc0]));
  dmaSyncSingleForCpu(dev, a, 256, DMA_BIDIRECTIONAL);
  expect(kread(m, buf + 128, 1)).toEqual([0xc0]);
  kwrite(m, buf, [5, 6, 7, 8]);
  dmaSyncSingleForDevice(dev, a, 256, DMA_BIDIRECTIONAL);
  expect([...deviceDmaRead(dev, a, 4)]).toEqual([5, 6, 7, 8]);
  deviceDmaWrite(dev, a + 129, new Uint8Array([0xc1]));
  dmaUnmapSingle(dev, a, 256, DMA_BIDIRECTIONAL);
  expect(kread(m, buf + 128, 2)).toEqual([0xc0, 0xc1]);
}

/** Partial syncs: the device fills a big buffer in pieces, the CPU takes each piece as it comes. */
function partialSyncs(m: Machine, dev: Device): void {
  const buf = buffer(m, 1);
  const a = map(dev, buf, 8192, DMA_FROM_DEVICE);
  for (let k = 0; k < 4; k++) {
    deviceDmaWrite(dev, a + k * 1024, new Uint8Array(1024).fill(0x30 + k));
    dmaSyncSingleRangeForCpu(dev, a, k * 1024, 1024, DMA_FROM_DEVICE);
    expect(kread(m, buf + k * 1024 + 1000, 4)).toEqual(fill(4, 0x30 + k));
    dmaSyncSingleRangeForDevice(dev, a, k * 1024, 1024, DMA_FROM_DEVICE);
  }
  dmaUnmapSingle(dev, a, 8192, DMA_FROM_DEVICE);
}

/** Small, cache-line-aligned kmalloc-style buffers sharing a page, in both directions. */
function smallBuffers(m: Machine, dev: Device): void {
  const page = buffer(m);
  const rx = page + 128;
  const tx = page + 512;
  kwrite(m, tx, fill(96, 0x77));
  const r = map(dev, rx, 96, DMA_FROM_DEVICE);
  const t = map(dev, tx, 96, DMA_TO_DEVICE);
  expect([...deviceDmaRead(dev, t, 2)]).toEqual([0x77, 0x77]);
  deviceDmaWrite(dev, r, new Uint8Array(96).fill(0x66));
  kwrite(m, page, [1, 2, 3]); // a field in a line of its own
  dmaUnmapSingle(dev, r, 96, DMA_FROM_DEVICE);
  dmaUnmapSingle(dev, t, 96, DMA_TO_DEVICE);
  expect(kread(m, rx + 90, 2)).toEqual([0x66, 0x66]);
}

/** Scatter-gather transmit of three pages, mapped and synced as a list. */
function sgTransmit(m: Machine, dev: Device): void {
  // The helper stands in for dma_map_sg on a coherent, direct-mapped device only (no IOMMU, bounce or cache maintenance).
  const s = dev.state;
  if (s.iommuDomain >= 0 || m.profile.forceSwiotlb || s.coherence !== 'snoop' || m.options.ramBytes > 2 ** 32)
    return;
  const entries = [0, 1, 2].map((k) => {
    const va = buffer(m);
    kwrite(m, va, fill(4096, k + 1));
    return { phys: va - PAGE_OFFSET, length: 4096 };
  });
  const dma = mapSgDirect(dev, entries, DMA_TO_DEVICE);
  expect([...deviceDmaRead(dev, dma.dmaAddrs[2]!, 2)]).toEqual([3, 3]);
  sgOp(dev, 'sync-cpu', entries, dma, DMA_TO_DEVICE);
  sgOp(dev, 'sync-device', entries, dma, DMA_TO_DEVICE);
  sgOp(dev, 'unmap', entries, dma, DMA_TO_DEVICE);
}

/** Two devices reading one buffer (a frame shown by a display and sent by an encoder). */
function twoReaders(m: Machine, dev: Device): void {
  const other = addDevice(m, { name: 'enc0', iommu: dev.state.iommuDomain >= 0 });
  const buf = buffer(m);
  kwrite(m, buf, fill(4096, 0x42));
  const a = map(dev, buf, 4096, DMA_TO_DEVICE);
  const b = map(other, buf, 4096, DMA_TO_DEVICE);
  expect([...deviceDmaRead(dev, a + 4000, 2)]).toEqual([0x42, 0x42]);
  expect([...deviceDmaRead(other, b + 10, 2)]).toEqual([0x42, 0x42]);
  dmaUnmapSingle(other, b, 4096, DMA_TO_DEVICE);
  dmaUnmapSingle(dev, a, 4096, DMA_TO_DEVICE);
}

const DRIVERS = { txRing, rxBuffer, commandBlock, partialSyncs, smallBuffers, sgTransmit, twoReaders };

interface Setup {
  name: string;
  options: MachineOptions;
  device?: Partial<AddDeviceOptions>;
  mask?: number;
}

const SETUPS: Setup[] = [
  ...PROFILE_NAMES.map((p) => ({ name: p, options: { profile: p } })),
  { name: 'x86_64 + IOMMU', options: { profile: 'x86_64' }, device: { iommu: true } },
  { name: 'arm64-noncoherent + SMMU', options: { profile: 'arm64-noncoherent' }, device: { iommu: true } },
  {
    name: 'arm64-noncoherent, no kmalloc bouncing',
    options: { profile: 'arm64-noncoherent', kmallocBounce: false },
  },
  {
    name: 'x86_64 8 GiB, 32-bit device (swiotlb)',
    options: { profile: 'x86_64', ramBytes: 8 * 1024 * MiB },
    mask: 32,
  },
];

describe('false positives: correct drivers raise nothing on any profile', () => {
  for (const setup of SETUPS) {
    it(setup.name, () => {
      for (const [name, driver] of Object.entries(DRIVERS)) {
        const m = createMachine({ ramBytes: 256 * MiB, ...setup.options });
        const dev = addDevice(m, { name: 'nic0', ...setup.device });
        dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(setup.mask ?? 64));
        driver(m, dev);
        expect(machineFindings(m), `${setup.name}: ${name}`).toEqual([]);
        expect(runVerdict(m)).toBe('clean');
      }
    });
  }

  it('the 32-bit device above 4 GiB really bounces (so the suite covers swiotlb slots)', () => {
    const m = createMachine({ profile: 'x86_64', ramBytes: 8 * 1024 * MiB });
    const dev = addDevice(m, { name: 'nic0' });
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32));
    const buf = buffer(m);
    expect(buf - PAGE_OFFSET).toBeGreaterThanOrEqual(2 ** 32);
    const a = map(dev, buf, 256, DMA_FROM_DEVICE);
    expect(isSwiotlbBuffer(m, a)).toBe(true);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
  });
});
