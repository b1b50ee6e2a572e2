import { describe, expect, it } from 'vitest';
import { buffer, codes, kread, kwrite, machine } from '../../test/debug-kit.js';
import {
  DMA_FROM_DEVICE,
  dmaMappingError,
  dmaMapSingle,
  dmaSyncSingleForCpu,
  dmaUnmapSingle,
} from '../dma/index.js';
import {
  deviceDmaWrite,
  machineHash,
  PAGE_OFFSET,
  restoreMachine,
  snapshotMachine,
} from '../machine/index.js';
import { observedReads } from './index.js';
import { type OrderingState, orderingState } from './ordering.js';
import { debugState } from './state.js';

describe('the checker’s state in snapshots', () => {
  it('hashes the pages UNMAPPED_DMA has already reported (they are not reported again)', () => {
    const { m } = machine('x86_64');
    const before = machineHash(m);
    debugState(m).unmappedSeen.add(0x1234);
    expect(machineHash(m)).not.toBe(before);
  });

  it('restores entries, ownership, the shadow and the observed log in place', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const buf = buffer(m);
    kwrite(m, buf, [1, 2, 3, 4]);
    const a = dmaMapSingle(dev, buf, 256, DMA_FROM_DEVICE);
    dmaMappingError(dev, a);
    const snap = snapshotMachine(m);
    const hash = machineHash(m);
    const reads = observedReads(m).length;

    // A correct continuation: the device writes, the CPU syncs and reads, the mapping goes.
    deviceDmaWrite(dev, a, new Uint8Array(256).fill(9));
    dmaSyncSingleForCpu(dev, a, 256, DMA_FROM_DEVICE);
    expect(kread(m, buf, 2)).toEqual([9, 9]);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
    expect(machineHash(m)).not.toBe(hash);

    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(hash);
    expect(observedReads(m)).toHaveLength(reads);
    // The mapping is live again and the device owns it: a CPU read is a violation, and stale.
    deviceDmaWrite(dev, a, new Uint8Array(256).fill(7));
    expect(kread(m, buf, 2)).toEqual([1, 2]);
    expect(codes(m)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual(['OWNERSHIP', 'STALE_DATA']); // no double-unmap: the entry was restored

    // The snapshot is reusable.
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(hash);
    // The restored entry points at the restored active-cacheline record, not at the one it was cloned from.
    const st = debugState(m);
    const line = st.cachelines.get(Math.floor((buf - PAGE_OFFSET) / m.hw.cache.lineSize))!;
    expect(line.count).toBe(0);
    expect(st.devs[dev.id]!.sorted[0]!.line).toBe(line);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
    expect(line.count).toBe(-1);
  });

  it('hashes what decides future findings: live mappings and the shadow’s bytes', () => {
    const one = machine('x86_64');
    const two = machine('x86_64');
    const b1 = buffer(one.m);
    buffer(two.m);
    expect(machineHash(one.m)).toBe(machineHash(two.m));
    const a = dmaMapSingle(one.dev, b1, 64, DMA_FROM_DEVICE);
    dmaMappingError(one.dev, a);
    expect(machineHash(one.m)).not.toBe(machineHash(two.m));
    dmaUnmapSingle(one.dev, a, 64, DMA_FROM_DEVICE);
    // Mapped and unmapped again: the same state (the checker's ids and steps are history).
    const twoStep = two.m.clock.step;
    expect(twoStep).toBeLessThan(one.m.clock.step);
    expect(machineHash(one.m)).toBe(machineHash(two.m));
    kwrite(one.m, b1, [0]);
    kwrite(two.m, b1, [0]);
    expect(machineHash(one.m)).toBe(machineHash(two.m));
    kwrite(two.m, b1 + 1, [0]); // memory equal, but the oracle now knows one more byte
    expect(machineHash(one.m)).not.toBe(machineHash(two.m));
  });
});

describe('the dma-buf ordering state in the machine hash', () => {
  // Each part below decides a later DMABUF_UNORDERED finding, so two states that differ in it
  // must not hash alike (the explorer merges states by hash).
  const parts: [string, (s: OrderingState) => void][] = [
    ['a container fence’s components', (s) => s.components.set(7, [3, 4])],
    ['a pushed scheduler job', (s) => s.pushed.set(5, { clock: [1], deps: [3] })],
    ['an engine job that came from the scheduler', (s) => s.schedEngineJobs.push(9)],
    ['a reported pair', (s) => s.reported.push('1:2')],
    ['a queued job’s clock', (s) => s.jobClocks.set(2, [1, 1])],
    ['a signalled fence’s clock', (s) => s.fenceClocks.set(3, [2])],
  ];
  for (const [what, change] of parts) {
    it(`covers ${what}`, () => {
      const { m } = machine('x86_64');
      const before = machineHash(m);
      change(orderingState(m));
      expect(machineHash(m)).not.toBe(before);
    });
  }
});
