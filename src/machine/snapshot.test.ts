import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  advanceTime,
  allocPages,
  cacheFlushAll,
  cpuWrite,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  IOMMU_READ,
  iommuMap,
  type Machine,
  type MachineEvent,
  machineHash,
  pageToPhys,
  physToVirt,
  restoreMachine,
  snapshotMachine,
  submitDeviceJob,
} from './index.js';

function workload(m: Machine): void {
  const dev = addDevice(m, { name: 'dev', iommu: true });
  const p = pageToPhys(allocPages(m, GFP_KERNEL, 2)!);
  for (let i = 0; i < 64; i++) {
    cpuWrite(m, p + i * 97, physToVirt(p + i * 97), 'cached', new Uint8Array([i, i + 1, i + 2]), 0, 3);
  }
  iommuMap(dev.iommuDomain!, 0x10000, p, 4096, IOMMU_READ);
  deviceDmaRead(dev, 0x10000, 256);
  submitDeviceJob(dev, { kind: 'dma-read', bus: 0x10000, len: 16 }, 300);
  advanceTime(m, 1000);
}

describe('snapshot, restore and hash', () => {
  it('gives the identical hash after snapshot → mutate → restore, and keeps handles valid', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'cam' });
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 0)!);
    cpuWrite(m, pa, physToVirt(pa), 'cached', new Uint8Array(32).fill(3), 0, 32);
    const before = machineHash(m);
    expect(before).toMatch(/^[0-9a-f]{16}$/);
    const snap = snapshotMachine(m);
    deviceDmaWrite(dev, pa, new Uint8Array(64).fill(9));
    cacheFlushAll(m);
    allocPages(m, GFP_KERNEL, 3);
    advanceTime(m, 50);
    expect(machineHash(m)).not.toBe(before);
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(before);
    expect(m.clock.time).toBe(0);
    // The same Device handle works, and memory is back: the device sees zeroes, the line still dirty.
    expect(deviceDmaRead(dev, pa, 4)).toEqual(new Uint8Array(4));
    // A snapshot can be restored twice.
    deviceDmaWrite(dev, pa, new Uint8Array(64).fill(1));
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(before);
  });

  it('hashes equal states equally whatever the path, and distinguishes different bytes', () => {
    // The machine's own state only: with the checker on, the oracle also remembers which bytes were written.
    const a = createMachine({ ramBytes: 64 << 20, check: false });
    const b = createMachine({ ramBytes: 64 << 20, check: false });
    expect(machineHash(a)).toBe(machineHash(b));
    const pa = pageToPhys(allocPages(a, GFP_KERNEL, 0)!);
    allocPages(b, GFP_KERNEL, 0);
    const va = physToVirt(pa);
    cpuWrite(a, pa, va, 'cached', new Uint8Array([1]), 0, 1);
    cacheFlushAll(a);
    cpuWrite(b, pa, va, 'cached', new Uint8Array([1]), 0, 1);
    cacheFlushAll(b);
    expect(machineHash(a)).toBe(machineHash(b));
    // Zero bytes written equal never-written memory.
    cpuWrite(b, pa + 100, va + 100, 'uncached', new Uint8Array([0]), 0, 1);
    expect(machineHash(a)).toBe(machineHash(b));
    cpuWrite(b, pa + 100, va + 100, 'uncached', new Uint8Array([5]), 0, 1);
    expect(machineHash(a)).not.toBe(machineHash(b));
  });

  it('gives two runs with the same seed identical event streams and hashes', () => {
    const run = () => {
      const m = createMachine({ seed: 7, profile: 'arm64-noncoherent', ramBytes: 64 << 20 });
      const events: string[] = [];
      m.bus.on('*', (e: MachineEvent) => {
        const { data: _d, ...rest } = e as MachineEvent & { data?: unknown };
        events.push(JSON.stringify(rest));
      });
      workload(m);
      return { events, hash: machineHash(m) };
    };
    const r1 = run();
    const r2 = run();
    expect(r1.events.length).toBeGreaterThan(10);
    expect(r1.events).toEqual(r2.events);
    expect(r1.hash).toBe(r2.hash);
  });
});
