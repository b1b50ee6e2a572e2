/**
 * The mm layer's state: plain data under `m.layers.mm`, registered as a
 * slot so snapshots, restores and hashes cover it. Handles (Process, Vma,
 * File, …) carry the machine and an id and look everything up here, so a
 * restore in place keeps them valid.
 *
 * Callbacks (vm_ops, file_operations, driver probe/remove) are stored as
 * registry ids (internal/registry.ts), never as closures.
 */

import { DmalabError, type Hasher, type Machine, registerSlot } from '../../machine/index.js';
import type { Pgprot } from '../pgprot.js';
import { tableKey } from './registry.js';

/** One page-table leaf: 512 PTEs. */
export interface PtSection {
  /** Frame number per PTE; -1 when none. */
  pfn: Float64Array;
  /** PTE bits (see internal/pagetable.ts). */
  bits: Uint8Array;
  /** Present PTEs in this leaf. */
  n: number;
}

/** An address space's page tables: the kernel's (id 0) or a process's. */
export interface SpaceState {
  readonly id: number;
  /** Owning process, -1 for the kernel. */
  readonly pid: number;
  pt: Map<number, PtSection>;
  /** Present PTEs. */
  ptes: number;
}

export type ProcStatus = 'running' | 'exited' | 'killed';

export interface ProcState {
  readonly pid: number;
  readonly name: string;
  readonly space: number;
  /** VMA ids sorted by start address. */
  vmas: number[];
  /** fd → file id. */
  fds: Map<number, number>;
  status: ProcStatus;
  /** The signal that killed it, or null. */
  signal: string | null;
}

export type VmaKind = 'anon' | 'file';

export interface VmaState {
  readonly id: number;
  readonly pid: number;
  start: number;
  end: number;
  flags: number;
  pgoff: number;
  prot: Pgprot;
  /** vm_ops registry id, -1 for none. */
  ops: number;
  priv: unknown;
  /** File id, -1 for anonymous memory. */
  file: number;
  readonly kind: VmaKind;
}

export interface FileState {
  readonly id: number;
  readonly inode: number;
  refs: number;
  /** O_RDONLY / O_WRONLY / O_RDWR. */
  readonly accmode: number;
  priv: unknown;
  pos: number;
}

export interface InodeState {
  readonly id: number;
  readonly path: string;
  /** file_operations registry id. */
  fops: number;
  readonly mapping: number;
  registered: boolean;
}

/** `struct address_space`: the VMAs mapping one inode (`i_mmap`). */
export interface MappingState {
  readonly id: number;
  readonly inode: number;
  vmas: number[];
}

/** A kernel virtual area (vmalloc, vmap, ioremap, a vmapped stack). */
export interface KArea {
  readonly start: number;
  /** Mapped bytes (without the guard page). */
  readonly size: number;
  /** Reserved bytes (with the guard page). */
  readonly span: number;
  readonly kind: 'vmalloc' | 'vmap' | 'ioremap' | 'stack';
  /** vm_struct flags (VM_ALLOC, VM_MAP, VM_IOREMAP, VM_USERMAP…). */
  readonly flags: number;
  /** Frames mapped, in order. */
  readonly pfns: number[];
  /** The frames belong to the area (vmalloc, stack) and are freed with it. */
  readonly owned: boolean;
  /** Physical start of an ioremap, else -1. */
  readonly phys: number;
  /** Bytes requested. */
  readonly requested: number;
}

export interface Slab {
  readonly key: string;
  readonly size: number;
  readonly order: number;
  readonly nobj: number;
  inuse: number;
  /** 1 per allocated object. */
  used: Uint8Array;
}

export interface KmemState {
  /** Cache key (`type:size`) → slab head pfns with a free object, in creation order. */
  partial: Map<string, number[]>;
  slabs: Map<number, Slab>;
  /** Large kmalloc allocations: head pfn → order and requested size. */
  large: Map<number, { order: number; size: number }>;
}

export interface StackState {
  readonly base: number;
  readonly size: number;
  readonly vmapped: boolean;
  /** Next free byte going down (the stack grows down here, as on x86 and arm64). */
  sp: number;
  /** Live buffers, oldest first. */
  frames: number[];
}

export interface DriverState {
  readonly id: number;
  readonly name: string;
  /** Registry id of { probe, remove }. */
  readonly ops: number;
}

export interface DevBinding {
  driver: number;
  devres: { kind: string; data: unknown }[];
  drvdata: unknown;
}

export interface MmState {
  nextPid: number;
  nextId: number;
  procs: Map<number, ProcState>;
  spaces: Map<number, SpaceState>;
  vmas: Map<number, VmaState>;
  files: Map<number, FileState>;
  inodes: Map<number, InodeState>;
  /** chrdev path → inode id. */
  chrdevs: Map<string, number>;
  mappings: Map<number, MappingState>;
  /** Kernel areas sorted by start. */
  kareas: KArea[];
  kmem: KmemState;
  stack: StackState | null;
  /** The shared zero page's frame, -1 until first used. */
  zeroPfn: number;
  /** FOLL_PIN pins per frame. */
  pins: Map<number, number>;
  drivers: DriverState[];
  /** Device id → its driver binding, devres list and drvdata. */
  devs: Map<number, DevBinding>;
}

/** Non-snapshotted per-machine state that only lives during a call. */
export interface MmRuntime {
  /** What `mmap_lock` is held as by the running call. */
  mmapLock: 'none' | 'read' | 'write';
}

const runtimes = new WeakMap<Machine, MmRuntime>();

/** The machine's mm state; a DmalabError if the layer was not initialised. */
export function mmState(m: Machine): MmState {
  const st = m.layers.mm as MmState | undefined;
  if (st === undefined)
    throw new DmalabError('the mm layer is not initialised on this machine (use createMachine)');
  return st;
}

export function mmRuntime(m: Machine): MmRuntime {
  let r = runtimes.get(m);
  if (r === undefined) {
    r = { mmapLock: 'none' };
    runtimes.set(m, r);
  }
  return r;
}

/** Runs `fn` with `mmap_lock` held as `mode` (restoring the previous mode after). */
export function withMmapLock<T>(m: Machine, mode: 'read' | 'write', fn: () => T): T {
  const r = mmRuntime(m);
  const prev = r.mmapLock;
  r.mmapLock = mode;
  try {
    return fn();
  } finally {
    r.mmapLock = prev;
  }
}

/** A fresh id for VMAs, files, inodes and mappings (one counter, so ids never collide). */
export function nextId(st: MmState): number {
  return st.nextId++;
}

/** The kernel's address space id (`init_mm`). */
export const KERNEL_SPACE = 0;

/** Sets up the mm layer on a machine and registers its slot (called by createMachine). */
export function initMm(m: Machine): void {
  const st: MmState = {
    nextPid: 1,
    nextId: 1,
    procs: new Map(),
    spaces: new Map([[KERNEL_SPACE, { id: KERNEL_SPACE, pid: -1, pt: new Map(), ptes: 0 }]]),
    vmas: new Map(),
    files: new Map(),
    inodes: new Map(),
    chrdevs: new Map(),
    mappings: new Map(),
    kareas: [],
    kmem: { partial: new Map(), slabs: new Map(), large: new Map() },
    stack: null,
    zeroPfn: -1,
    pins: new Map(),
    drivers: [],
    devs: new Map(),
  };
  m.layers.mm = st;
  registerSlot(m, {
    name: 'mm',
    snapshot: (mm) => structuredClone(mmState(mm)),
    restore: (mm, snap) => {
      mm.layers.mm = structuredClone(snap as MmState);
    },
    hash: (mm, h: Hasher) => hashState(mmState(mm), h),
  });
}

function withKey<T extends object>(map: Map<number, T>, field: keyof T): Map<number, unknown> {
  const out = new Map<number, unknown>();
  for (const [id, v] of map) {
    const ref = v[field] as number;
    out.set(id, ref < 0 ? v : { ...v, [field]: tableKey(ref) });
  }
  return out;
}

/** Hashes the state with callback tables by their identity (`tableKey`) rather than their registry id. */
function hashState(st: MmState, h: Hasher): void {
  h.value({
    ...st,
    vmas: withKey(st.vmas, 'ops'),
    inodes: withKey(st.inodes, 'fops'),
    drivers: st.drivers.map((d) => ({ ...d, ops: tableKey(d.ops) })),
  });
}
