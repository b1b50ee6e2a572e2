/**
 * Snapshot, restore in place, and the machine's 64-bit state hash.
 *
 * Memory is shared copy-on-write with snapshots (physmem.ts), the cache is
 * copied (it is small and fixed-size), everything else is plain data cloned
 * with `structuredClone`. Restore writes back into the same machine so that
 * every handle (Device, Page, IommuDomain, upper layers' ids) stays valid.
 *
 * The hash covers the state that decides future behaviour — memory, cache
 * (contents and LRU order), allocator, IOMMU tables, devices, pending jobs,
 * model time, the PRNG and every slot — but not the step counter or the
 * findings, which record history. Memory and cache hashes are incremental.
 */

import { type CacheState, cacheClone, cacheCopyInto, cacheHash } from './cache.js';
import type { DeviceState } from './device.js';
import type { EngineState } from './engine.js';
import type { Finding } from './findings.js';
import { Hasher, hash64Hex } from './hash.js';
import type { IommuState } from './iommu.js';
import type { Machine } from './machine.js';
import type { AllocState } from './pagealloc.js';
import type { PhysMap } from './physmap.js';
import { type MemSnapshot, memHash, memRestore, memSnapshot } from './physmem.js';

/** An opaque, reusable snapshot of a machine. */
export interface MachineSnapshot {
  readonly step: number;
  readonly time: number;
  readonly mem: MemSnapshot;
  readonly cache: CacheState;
  readonly phys: PhysMap;
  readonly alloc: AllocState;
  readonly iommu: IommuState;
  readonly devices: DeviceState[];
  readonly engine: EngineState;
  readonly findings: Finding[];
  readonly rng: number;
  readonly deviceHandles: number;
  readonly slots: ReadonlyMap<string, unknown>;
}

/** Takes a snapshot of the whole machine (hardware and every registered slot). */
export function snapshotMachine(m: Machine): MachineSnapshot {
  const hw = m.hw;
  // Bring the incremental hashes up to date first, so that every restore of
  // this snapshot starts with nothing to rehash.
  memHash(hw.mem);
  cacheHash(hw.cache);
  const slots = new Map<string, unknown>();
  for (const s of m.slots) slots.set(s.name, s.snapshot(m));
  return {
    step: m.clock.step,
    time: m.clock.time,
    mem: memSnapshot(hw.mem),
    cache: cacheClone(hw.cache),
    phys: structuredClone(hw.phys),
    alloc: structuredClone(hw.alloc),
    iommu: structuredClone(hw.iommu),
    devices: structuredClone(hw.devices),
    engine: structuredClone(hw.engine),
    findings: hw.findings.slice(),
    rng: hw.rng,
    deviceHandles: m.devices.length,
    slots,
  };
}

/** Restores a snapshot in place: handles stay valid; the snapshot can be restored again. */
export function restoreMachine(m: Machine, snap: MachineSnapshot): void {
  const hw = m.hw;
  m.clock.step = snap.step;
  m.clock.time = snap.time;
  memRestore(hw.mem, snap.mem);
  cacheCopyInto(hw.cache, snap.cache);
  hw.phys = structuredClone(snap.phys);
  hw.alloc = structuredClone(snap.alloc);
  hw.iommu = structuredClone(snap.iommu);
  hw.devices = structuredClone(snap.devices);
  hw.engine = structuredClone(snap.engine);
  hw.findings = snap.findings.slice();
  hw.rng = snap.rng;
  m.devices.length = snap.deviceHandles;
  for (const s of m.slots) {
    if (snap.slots.has(s.name)) s.restore(m, snap.slots.get(s.name));
  }
}

/** The machine's state hash: 16 hex digits, equal for equal states. */
export function machineHash(m: Machine): string {
  const hw = m.hw;
  const h = new Hasher(0x646d61);
  h.hash(memHash(hw.mem));
  h.hash(cacheHash(hw.cache));
  h.num(m.clock.time).num(hw.rng);
  h.value(hw.phys.regions);
  h.value(hw.alloc);
  h.value(hw.iommu);
  h.value(hw.devices);
  h.value(hw.engine.jobs.filter((j) => !j.done));
  h.value(hw.engine.busyUntil);
  for (const s of m.slots) {
    h.str(s.name);
    s.hash(m, h);
  }
  return hash64Hex(h.digest());
}
