/**
 * The handlers for scatter-gather maps and DMA allocations, driven by the
 * events their layers will emit (see test/debug-kit.ts): ownership through
 * a list's segments, non-coherent memory owned by the CPU until synced for
 * the device, coherent memory shared by both.
 */

import { describe, expect, it } from 'vitest';
import { buffer, codes, emitIn, kread, kwrite, machine, mapSgDirect, sgOp } from '../../test/debug-kit.js';
import {
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
} from '../dma/index.js';
import {
  type Device,
  type DmaAllocEvent,
  deviceDmaRead,
  deviceDmaWrite,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
} from '../machine/index.js';

function alloc(
  dev: Device,
  kind: DmaAllocEvent['kind'],
  cpuAddr: number,
  phys: number,
  size: number,
  extra: Partial<DmaAllocEvent> = {},
) {
  const call =
    kind === 'coherent'
      ? 'dma_alloc_attrs'
      : kind === 'noncoherent'
        ? 'dma_alloc_pages'
        : 'dma_alloc_noncontiguous';
  emitIn(dev.machine, call, {
    type: 'dma-alloc',
    device: dev.name,
    call,
    kind,
    cpuAddr,
    cpuAttr: 'cached',
    dmaAddr: phys,
    size,
    phys,
    dir: kind === 'coherent' ? DMA_BIDIRECTIONAL : DMA_FROM_DEVICE,
    attrs: 0,
    ...extra,
  });
}

describe('scatter-gather ownership', () => {
  it('maps each segment to its share of the list: a device write after sync-for-cpu is caught in the right entry', () => {
    const { m, dev } = machine('x86_64');
    const entries = [0, 1].map(() => ({ phys: buffer(m) - PAGE_OFFSET, length: 4096 }));
    const dma = mapSgDirect(dev, entries, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, dma.dmaAddrs[1]!, new Uint8Array(8).fill(2));
    sgOp(dev, 'sync-cpu', entries, dma, DMA_FROM_DEVICE);
    expect(kread(m, entries[1]!.phys + PAGE_OFFSET, 2)).toEqual([2, 2]);
    expect(codes(m)).toEqual([]);
    deviceDmaWrite(dev, dma.dmaAddrs[1]! + 100, new Uint8Array(8));
    expect(machineFindings(m).map((f) => [f.code, f.details?.kind])).toEqual([
      ['OWNERSHIP', 'device-cpu-owned'],
    ]);
    expect(machineFindings(m)[0]!.message).toContain('dma_sync_sg_for_device first');
    sgOp(dev, 'unmap', entries, dma, DMA_FROM_DEVICE);
    expect(codes(m)).toHaveLength(1);
  });

  it('a merged IOMMU segment covering two entries: the CPU load of the second entry is a violation', () => {
    const { m, dev } = machine('x86_64');
    const entries = [0, 1].map(() => ({ phys: buffer(m) - PAGE_OFFSET, length: 4096 }));
    // One DMA segment of 8 KiB at an IOVA, as iommu-dma merges contiguous IOVA pieces.
    const dma = mapSgDirect(dev, entries, DMA_FROM_DEVICE, {
      dmaAddrs: [0x10_0000],
      dmaLengths: [8192],
      mapped: 1,
    });
    kread(m, entries[1]!.phys + PAGE_OFFSET, 4);
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual(['cpu-load']);
    sgOp(dev, 'unmap', entries, { dmaAddrs: [0x10_0000, 0], dmaLengths: [8192, 0] }, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual(['OWNERSHIP']);
    expect(dma.dmaAddrs).toEqual([0x10_0000]);
  });
});

describe('DMA allocations', () => {
  it('non-coherent pages belong to the CPU until dma_sync_single_for_device, like a reused streaming mapping', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const va = buffer(m);
    const pa = va - PAGE_OFFSET;
    alloc(dev, 'noncoherent', va, pa, PAGE_SIZE);
    kwrite(m, va, [1, 2, 3]); // the CPU prepares it: fine
    expect(codes(m)).toEqual([]);
    deviceDmaWrite(dev, pa, new Uint8Array(4)); // before the sync for the device
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual(['device-cpu-owned']);
    dmaSyncSingleForDevice(dev, pa as never, PAGE_SIZE, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, pa + 64, new Uint8Array(4).fill(9));
    dmaSyncSingleForCpu(dev, pa as never, PAGE_SIZE, DMA_FROM_DEVICE);
    expect(kread(m, va + 64, 1)).toEqual([9]);
    emitIn(m, 'dma_free_pages', {
      type: 'dma-free',
      device: dev.name,
      call: 'dma_free_pages',
      kind: 'noncoherent',
      cpuAddr: va,
      dmaAddr: pa,
      size: PAGE_SIZE,
      phys: pa,
      dir: DMA_FROM_DEVICE,
      attrs: 0,
    });
    expect(codes(m)).toEqual(['OWNERSHIP']);
  });

  it('coherent memory is shared: device and CPU use it without syncs or findings, even without a kernel mapping', () => {
    for (const attrs of [0, DMA_ATTR_NO_KERNEL_MAPPING]) {
      const { m, dev } = machine('x86_64');
      const va = buffer(m);
      const pa = va - PAGE_OFFSET;
      alloc(dev, 'coherent', attrs === 0 ? va : 1234, pa, PAGE_SIZE, { attrs });
      kwrite(m, va, [7]);
      expect([...deviceDmaRead(dev, pa, 1)]).toEqual([7]);
      deviceDmaWrite(dev, pa + 8, new Uint8Array([8]));
      expect(kread(m, va + 8, 1)).toEqual([8]);
      expect(codes(m)).toEqual([]);
    }
  });

  it('dma_alloc_noncontiguous is recorded as a one-segment sg mapping of its pieces', () => {
    const { m, dev } = machine('x86_64');
    const pieces = [0, 1].map(() => ({ phys: buffer(m) - PAGE_OFFSET, length: PAGE_SIZE }));
    alloc(dev, 'noncontiguous', -1, pieces[0]!.phys, 2 * PAGE_SIZE, {
      dmaAddr: 0x20_0000,
      segments: pieces,
      dir: DMA_TO_DEVICE,
    });
    // The CPU owns it until synced; then the device reads across both pieces through one segment.
    dmaSyncSingleForDevice(dev, 0x20_0000 as never, 2 * PAGE_SIZE, DMA_TO_DEVICE);
    expect(codes(m)).toEqual([]);
    emitIn(m, 'dma_free_noncontiguous', {
      type: 'dma-free',
      device: dev.name,
      call: 'dma_free_noncontiguous',
      kind: 'noncontiguous',
      cpuAddr: -1,
      dmaAddr: 0x20_0000,
      size: 2 * PAGE_SIZE,
      phys: pieces[0]!.phys,
      dir: DMA_TO_DEVICE,
      attrs: 0,
      segments: pieces,
    });
    expect(codes(m)).toEqual([]);
  });
});
