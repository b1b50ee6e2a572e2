/**
 * The machine root. All state hangs off `m.hw` (the hardware, this layer's)
 * and `m.layers` (one entry per upper layer), as plain data: typed arrays,
 * Maps, arrays and plain objects, so it can be snapshotted, restored, hashed
 * and sent to a browser. Behaviour lives in functions over that state.
 * Upper layers register a slot (`registerSlot`) saying how their state is
 * snapshotted, restored and hashed.
 */

import type { CacheState } from './cache.js';
import { createCache } from './cache.js';
import type { Device, DeviceState } from './device.js';
import type { EngineState } from './engine.js';
import { EventBus } from './events.js';
import type { Finding } from './findings.js';
import type { Hasher } from './hash.js';
import type { IommuState } from './iommu.js';
import type { AllocState } from './pagealloc.js';
import { createPhysMap, type PhysMap } from './physmap.js';
import { createMemStore, type MemStore } from './physmem.js';
import type { MmapStrategy, Profile } from './profiles.js';

export type CaptureStacks = 'none' | 'findings' | 'mappings';
export type CiPolicy = 'kernel' | 'user' | 'zero';

/** `createMachine`'s options after defaults are applied (API.md §2). */
export interface ResolvedOptions {
  readonly profile: Profile;
  readonly ramBytes: number;
  readonly seed: number;
  readonly check: boolean;
  readonly panicOnWarn: boolean;
  readonly captureStacks: CaptureStacks;
  readonly mmapStrategy: MmapStrategy;
  readonly swiotlbBytes: number;
  readonly kmallocBounce: boolean;
  readonly ciPolicy: CiPolicy;
  readonly pagelessSg: boolean;
  readonly cmaBytes: number;
}

/** Step counter, model time and the API call in progress. */
export interface Clock {
  /** Counts exported calls that act on the machine, and device accesses. */
  step: number;
  /** Model time in nanoseconds. */
  time: number;
  /** Nesting depth of exported calls (only the outermost counts a step). */
  depth: number;
  /** Kernel name of the outermost call in progress, '' outside calls. */
  call: string;
}

/** The hardware's state (this layer's part of the root). */
export interface HwState {
  phys: PhysMap;
  mem: MemStore;
  cache: CacheState;
  alloc: AllocState;
  iommu: IommuState;
  devices: DeviceState[];
  engine: EngineState;
  findings: Finding[];
  /** Seeded PRNG state (mulberry32). */
  rng: number;
}

/** How an upper layer's state is snapshotted, restored in place and hashed. */
export interface SlotDef {
  readonly name: string;
  snapshot(m: Machine): unknown;
  restore(m: Machine, snap: unknown): void;
  hash(m: Machine, h: Hasher): void;
}

/** A simulated machine. */
export interface Machine {
  readonly options: ResolvedOptions;
  readonly profile: Profile;
  /** Event bus; outside the snapshotted state. */
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly hw: HwState;
  /** Upper layers' state, by layer name. */
  readonly layers: Record<string, unknown>;
  readonly slots: SlotDef[];
  /** Device handles, by device id. */
  readonly devices: Device[];
  /** Name CPU accesses are attributed to (see `withAgent`). */
  agent: string;
  /**
   * Address space user-half CPU accesses go through: 0 for the kernel's,
   * else the current process's pid (see `withAgent`). Like `agent`, not
   * snapshotted: it is only ever set for the length of a call.
   */
  agentMm: number;
  /** Set once every layer has initialised; memblock allocations end there. */
  booted: boolean;
}

/**
 * Builds the bare hardware of a machine. Callers use `createMachine` (boot.ts),
 * which validates options and runs every layer's initialiser; the allocator,
 * IOMMU and engine parts are filled in by their modules' init functions.
 */
export function newMachineShell(options: ResolvedOptions): Machine {
  const clock: Clock = { step: 0, time: 0, depth: 0, call: '' };
  const hw = {
    phys: createPhysMap(options.ramBytes),
    mem: createMemStore(),
    cache: createCache(options.profile.cache),
    devices: [],
    findings: [],
    rng: options.seed >>> 0 || 0x9e3779b9,
  } as unknown as HwState;
  return {
    options,
    profile: options.profile,
    bus: new EventBus(clock),
    clock,
    hw,
    layers: {},
    slots: [],
    devices: [],
    agent: 'kernel',
    agentMm: 0,
    booted: false,
  };
}

/** Registers an upper layer's slot. */
export function registerSlot(m: Machine, def: SlotDef): void {
  if (m.slots.some((s) => s.name === def.name)) return;
  m.slots.push(def);
}

/**
 * Marks the start of an exported call: the outermost one counts a step and
 * names the call for findings. Pair with `leaveCall` in a `finally`.
 */
export function enterCall(m: Machine, call: string): void {
  if (m.clock.depth++ === 0) {
    m.clock.step++;
    m.clock.call = call;
  }
}

/** Marks the end of an exported call. */
export function leaveCall(m: Machine): void {
  if (--m.clock.depth === 0) m.clock.call = '';
}

/** Runs `fn` as the exported kernel call `call` (see `enterCall`). */
export function apiCall<T>(m: Machine, call: string, fn: () => T): T {
  enterCall(m, call);
  try {
    return fn();
  } finally {
    leaveCall(m);
  }
}

/** A seeded pseudo-random 32-bit integer (mulberry32); part of the machine state. */
export function machineRandom(m: Machine): number {
  m.hw.rng = (m.hw.rng + 0x6d2b79f5) | 0;
  let t = m.hw.rng;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}
