import { describe, expect, it } from 'vitest';
import { buffer, codes, kread, kwrite, machine } from '../../test/debug-kit.js';
import {
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  dmaMappingError,
  dmaMapSingle,
  dmaSyncSingleForCpu,
  dmaUnmapSingle,
} from '../dma/index.js';
import {
  cpuRead,
  cpuWrite,
  deviceDmaRead,
  deviceDmaWrite,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
  runVerdict,
  withAgent,
} from '../machine/index.js';
import { observedReads } from './index.js';

describe('the oracle: what hid a write', () => {
  it('parisc: a write through a non-congruent user alias is invisible through the kernel alias', () => {
    const { m } = machine('parisc');
    const buf = buffer(m);
    const pa = buf - PAGE_OFFSET;
    const userVa = 0x4000_1000; // another colour than the kernel alias
    withAgent(m, 'app', () => cpuWrite(m, pa, userVa, 'cached', new Uint8Array([7, 7, 7, 7]), 0, 4));
    expect(kread(m, buf, 4)).toEqual([0, 0, 0, 0]);
    expect(codes(m)).toEqual(['STALE_DATA']);
    const d = machineFindings(m)[0]!.details!;
    expect(d).toMatchObject({
      hiddenWrite: { agent: 'app', kind: 'cpu' },
      hiddenBy: { cause: 'non-congruent-alias', readColour: 0 },
    });
    expect((d.hiddenBy as { colour: number }).colour).not.toBe(0);
    expect(machineFindings(m)[0]!.device).toBeUndefined(); // no device is involved
  });

  it('parisc: the device, coherent only with the kernel alias, misses a write through a user alias (seed 000)', () => {
    const { m, dev } = machine('parisc');
    const buf = buffer(m);
    const pa = buf - PAGE_OFFSET;
    withAgent(m, 'alsa-app', () =>
      cpuWrite(m, pa, 0x4000_1000, 'cached', new Uint8Array(64).fill(0x11), 0, 64),
    );
    const a = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    dmaMappingError(dev, a);
    expect([...deviceDmaRead(dev, a, 4)]).toEqual([0, 0, 0, 0]);
    expect(codes(m)).toEqual(['STALE_DATA']);
    expect(machineFindings(m)[0]!.details).toMatchObject({
      reader: { agent: 'nic0', kind: 'device' },
      hiddenWrite: { agent: 'alsa-app' },
      hiddenBy: { cause: 'non-congruent-alias' },
    });
    expect(machineFindings(m)[0]!.message).toContain(
      'the coherence index of the IOMMU entry makes the device coherent with another colour only',
    );
  });

  it('parisc-pcxl: a CPU write to a device-owned DMA_FROM_DEVICE buffer is purged at sync-for-cpu', () => {
    const { m, dev } = machine('parisc-pcxl');
    const buf = buffer(m);
    const a = dmaMapSingle(dev, buf, 256, DMA_FROM_DEVICE);
    dmaMappingError(dev, a);
    kwrite(m, buf + 200, [9, 9]); // the device will not write these bytes
    const storeStep = m.clock.step;
    deviceDmaWrite(dev, a, new Uint8Array(128).fill(1));
    dmaSyncSingleForCpu(dev, a, 256, DMA_FROM_DEVICE);
    const syncStep = m.clock.step;
    expect(kread(m, buf + 200, 2)).toEqual([0, 0]);
    expect(codes(m)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(machineFindings(m)[1]!.details).toMatchObject({
      hiddenWrite: { agent: 'kernel', kind: 'cpu', step: storeStep },
      hiddenBy: { cause: 'discarded', lossStep: syncStep, lossCall: 'dma_sync_single_for_cpu' },
      prevent: 'the CPU wrote while the device owned the buffer: dma_sync_single_for_cpu before writing',
    });
  });

  it('reports one finding per stale range of a read, and none for bytes no agent wrote', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const buf = buffer(m);
    kread(m, buf, 1024); // the lines are cached; nobody wrote these bytes: unknown, never compared
    const a = dmaMapSingle(dev, buf, 1024, DMA_FROM_DEVICE);
    dmaMappingError(dev, a);
    deviceDmaWrite(dev, a + 256, new Uint8Array(256).fill(3));
    dmaUnmapSingle(dev, a, 1024, DMA_FROM_DEVICE);
    expect(kread(m, buf, 1024).slice(256, 260)).toEqual([3, 3, 3, 3]);
    expect(codes(m)).toEqual([]);
    // Now the same with the stale read: one finding covering the device's 256 bytes only.
    const b = dmaMapSingle(dev, buf, 1024, DMA_FROM_DEVICE);
    dmaMappingError(dev, b);
    kread(m, buf, 1024); // the CPU peeks (ownership), caching the lines
    deviceDmaWrite(dev, b + 512, new Uint8Array(256).fill(4));
    kread(m, buf, 1024);
    expect(codes(m)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    expect(machineFindings(m)[1]!.details).toMatchObject({
      len: 256,
      staleBytes: 256,
      reader: { va: buf + 512 },
    });
    expect(runVerdict(m)).toBe('broken');
  });

  it('swiotlb-force: the CPU reads the original while the device’s bytes sit in the bounce slot', () => {
    const { m, dev } = machine('swiotlb-force');
    const buf = buffer(m);
    const a = dmaMapSingle(dev, buf, 64, DMA_FROM_DEVICE);
    dmaMappingError(dev, a);
    deviceDmaWrite(dev, a, new Uint8Array(64).fill(8));
    expect(kread(m, buf, 2)).toEqual([0, 0]);
    const stale = machineFindings(m).find((f) => f.code === 'STALE_DATA')!;
    expect(stale.details).toMatchObject({
      hiddenBy: { cause: 'bounce-slot', slot: a, orig: buf - PAGE_OFFSET },
      prevent: 'dma_sync_single_for_cpu (or dma_unmap_single) before the CPU reads',
    });
    expect(stale.message).toContain(
      `hidden by the bounce slot at 0x${a.toString(16)}: the device wrote there and nothing copied it back`,
    );
  });
});

describe('observed bytes', () => {
  it('records who read what, step by step, for comparing runs', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    kwrite(m, buf, [1, 2, 3]);
    const a = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    dmaMappingError(dev, a);
    deviceDmaRead(dev, a, 3);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    kread(m, buf, 3);
    const reads = observedReads(m);
    expect(reads.map((r) => r.call)).toEqual(['device read by nic0', 'cpu read by kernel']);
    expect(reads[0]!.step).toBe(3);
    expect(reads[0]!.hash).toBe(reads[1]!.hash); // the same three bytes
    const out = new Uint8Array(3);
    cpuRead(m, buf - PAGE_OFFSET + PAGE_SIZE, buf + PAGE_SIZE, 'cached', out, 0, 3);
    expect(observedReads(m)).toHaveLength(2); // same step and call: folded into the last record
    expect(observedReads(m)[1]!.hash).not.toBe(reads[1]!.hash);
  });
});
