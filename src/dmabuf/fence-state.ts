/**
 * The fence layer's state: every `dma_fence`, `dma_resv` and scheduler job
 * as plain data under `m.layers.fence`, with its slot (snapshot, restore,
 * hash), and the handle classes over it. Handles carry their machine and an
 * id; one handle exists per id and machine, so they compare with `===` and
 * stay valid across a restore in place.
 */

import { DmalabError, type Hasher, type JobSpec, type Machine, registerSlot } from '../machine/index.js';
import { tableKey } from '../mm/index.js';

/** `DMA_FENCE_FLAG_SIGNALED_BIT` and friends, as bit values of `FenceRec.flags`. */
export const DMA_FENCE_FLAG_SIGNALED_BIT = 0;
export const DMA_FENCE_FLAG_TIMESTAMP_BIT = 1;
export const DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT = 2;
export const DMA_FENCE_FLAG_SEQNO64_BIT = 3;
/** First bit drivers may use for their own flags (`DMA_FENCE_FLAG_USER_BITS`). */
export const DMA_FENCE_FLAG_USER_BITS = 4;

/** A registered callback waiting on a fence (the kernel's `struct dma_fence_cb` on `cb_list`). */
export interface FenceCbRec {
  id: number;
  func: string;
  data: unknown;
}

/** One `struct dma_fence`. */
export interface FenceRec {
  id: number;
  context: number;
  seqno: number;
  /** Registry id of its `DmaFenceOps`. */
  ops: number;
  flags: number;
  error: number;
  /** Model time of the signal (ns), -1 before. */
  timestamp: number;
  refs: number;
  cbs: FenceCbRec[];
  /** A container (`dma_fence_array`): its component fence ids, else null. */
  components: number[] | null;
  /** Containers: signal when any component signals instead of all. */
  signalOnAny: boolean;
  /** Containers: components still unsignalled. */
  pending: number;
}

/** A fence in a reservation object, with its usage class. */
export interface ResvSlot {
  fence: number;
  usage: number;
}

/** One `struct dma_resv`. */
export interface ResvRec {
  id: number;
  /** The holder of the ww_mutex: its acquire context id (0 without one), or null when unlocked. */
  lockedBy: number | null;
  fences: ResvSlot[];
  /** Slots usable before the list is full (`max_fences`); reset to the count at unlock, as debug kernels do. */
  max: number;
}

/** One scheduler job (a `drm_sched_job`, reduced to what the model needs). */
export interface SchedJobRec {
  id: number;
  device: number;
  spec: JobSpec;
  durationNs: number;
  deps: number[];
  /** The finished fence once armed, else -1. */
  finished: number;
  /** 'init' → 'armed' → 'pushed' (waiting) → 'running' (on the engine) → 'done'. */
  stage: 'init' | 'armed' | 'pushed' | 'running' | 'done';
  /** The engine job id once submitted, else -1. */
  engineJob: number;
}

export interface FenceLayerState {
  fences: Map<number, FenceRec>;
  resvs: Map<number, ResvRec>;
  jobs: Map<number, SchedJobRec>;
  /** Per device id: pushed jobs not yet on the engine, in push order (one FIFO entity per device). */
  queues: Map<number, number[]>;
  /** Open sync_files, by file id: the fence held and the name given at a merge ('' for none). */
  syncFiles: Map<number, { fence: number; name: string }>;
  /** Fence timelines of the layer's own producers (a device's scheduler), by name. */
  timelines: Map<string, { context: number; seqno: number }>;
  nextId: number;
  /** The next fence context `dma_fence_context_alloc` hands out (0 is the stub's). */
  nextContext: number;
  /** The signalled stub fence (`dma_fence_get_stub`), created on first use; -1 before. */
  stub: number;
  /** Per ww acquire context id: the reservation locks it holds (`ctx->acquired`). */
  wwAcquired: Map<number, number>;
}

export function fenceState(m: Machine): FenceLayerState {
  const s = m.layers.fence as FenceLayerState | undefined;
  if (s === undefined)
    throw new DmalabError('the fence layer is not initialised on this machine (use createMachine)');
  return s;
}

/** A fresh id for any object of the layer. */
export function nextFenceId(s: FenceLayerState): number {
  return s.nextId++;
}

/** Sets up the layer's state and slot (createMachine calls it). */
export function initFence(m: Machine): void {
  const state: FenceLayerState = {
    fences: new Map(),
    resvs: new Map(),
    jobs: new Map(),
    queues: new Map(),
    timelines: new Map(),
    syncFiles: new Map(),
    nextId: 1,
    nextContext: 1,
    stub: -1,
    wwAcquired: new Map(),
  };
  m.layers.fence = state;
  registerSlot(m, {
    name: 'fence',
    snapshot: (mm) => structuredClone(fenceState(mm)),
    restore: (mm, snap) => {
      mm.layers.fence = structuredClone(snap as FenceLayerState);
    },
    hash: (mm: Machine, h: Hasher) => {
      const s = fenceState(mm);
      // Ops tables hash by their identity (members and source), not their registry ids.
      for (const f of s.fences.values()) {
        h.value([f.id, f.context, f.seqno, f.flags, f.error, f.timestamp, f.refs, f.cbs, f.components]);
        h.str(tableKey(f.ops));
      }
      h.value(s.resvs)
        .value(s.jobs)
        .value(s.queues)
        .value(s.timelines)
        .value(s.syncFiles)
        .value(s.wwAcquired)
        .value([s.nextId, s.nextContext, s.stub]);
    },
  });
}

const caches = new WeakMap<Machine, { fences: Map<number, DmaFence>; resvs: Map<number, DmaResv> }>();

function cacheOf(m: Machine) {
  let c = caches.get(m);
  if (c === undefined) {
    c = { fences: new Map(), resvs: new Map() };
    caches.set(m, c);
  }
  return c;
}

/** `struct dma_fence *`: a handle over the fence's state. */
export class DmaFence {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  /** The state; a DmalabError once the last reference was dropped (a use after free). */
  get state(): FenceRec {
    const f = fenceState(this.machine).fences.get(this.id);
    if (f === undefined)
      throw new DmalabError(`dma_fence ${this.id} was used after its last reference was dropped`);
    return f;
  }
  get context(): number {
    return this.state.context;
  }
  get seqno(): number {
    return this.state.seqno;
  }
  get error(): number {
    return this.state.error;
  }
  get flags(): number {
    return this.state.flags;
  }
  /** Model time (ns) of the signal; -1 before the fence signalled. */
  get timestamp(): number {
    return this.state.timestamp;
  }
  /** `kref_read(&fence->refcount)`. */
  get refcount(): number {
    return this.state.refs;
  }
  toString(): string {
    const f = this.state;
    return `fence ${f.context}:${f.seqno}`;
  }
}

/** `struct dma_resv *`: a handle over the reservation object's state. */
export class DmaResv {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): ResvRec {
    const r = fenceState(this.machine).resvs.get(this.id);
    if (r === undefined) throw new DmalabError(`dma_resv ${this.id} was used after dma_resv_fini`);
    return r;
  }
}

/** The one `DmaFence` handle of an id. */
export function fenceHandle(m: Machine, id: number): DmaFence {
  const c = cacheOf(m).fences;
  let h = c.get(id);
  if (h === undefined) {
    h = new DmaFence(m, id);
    c.set(id, h);
  }
  return h;
}

/** The one `DmaResv` handle of an id. */
export function resvHandle(m: Machine, id: number): DmaResv {
  const c = cacheOf(m).resvs;
  let h = c.get(id);
  if (h === undefined) {
    h = new DmaResv(m, id);
    c.set(id, h);
  }
  return h;
}

/** Throws a DmalabError unless `f` is a fence handle. */
export function assertFence(f: unknown, what = 'fence'): asserts f is DmaFence {
  if (!(f instanceof DmaFence)) throw new DmalabError(`${what} must be a DmaFence`, { field: what });
}

/** Errnos the fence layer returns that the machine's table lacks (include/uapi/asm-generic/errno.h, linux/errno.h). */
export const EDEADLK = 35;
export const ETIME = 62;
export const EALREADY = 114;
/** `-ERESTARTSYS`: a wait interrupted (kernel-internal errno). */
export const ERESTARTSYS = 512;
/** `MAX_ERRNO`: error codes are -1 … -4095. */
export const MAX_ERRNO = 4095;
