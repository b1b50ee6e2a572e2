/**
 * The checker's state: plain data under `m.layers.debug`, with a slot so
 * that snapshots, restores and the machine hash cover it. The checker holds
 * no handles of its own; its event listeners look the state up on every
 * event, so an in-place restore is all it needs.
 *
 * - dma-debug entries: one per live mapping, DMA segment or allocation,
 *   per device, indexed by DMA address (exact lookups) and sorted by it
 *   (containing lookups and device accesses);
 * - ownership buffers: what a streaming mapping covers on the CPU side, in
 *   logical order, and which of its bytes the device owns; indexed by page;
 * - dma-debug's active cache lines (check 23);
 * - live swiotlb bounces (slot → original), for logical addresses;
 * - page views by memory attribute (attribute aliases);
 * - the oracle's shadow memory and the log of observed bytes.
 */

import { type Hasher, type Machine, registerSlot } from '../machine/index.js';
import { type BoCheckState, emptyBoCheck } from './bo.js';
import { type DmaBufCheckState, emptyDmaBufCheck } from './dmabuf.js';
import { copyReadLog, createReadLog, type ReadLog } from './internal/readlog.js';
import {
  createShadow,
  type ShadowStore,
  shadowHash,
  shadowRestore,
  shadowSnapshot,
} from './internal/shadow.js';

/** dma-debug's entry types, named as it prints them (`type2name`). */
export type EntryType = 'phy' | 'scatter-gather' | 'coherent' | 'noncoherent';

export const OWNER_CPU = 0;
export const OWNER_DEVICE = 1;
export const OWNER_MIXED = 2;

export const MAP_ERR_NOT_APPLICABLE = 0;
export const MAP_ERR_NOT_CHECKED = 1;
export const MAP_ERR_CHECKED = 2;

/**
 * A live mapping, DMA segment or allocation (the kernel's `struct
 * dma_debug_entry`). A single mapping is its own ownership buffer (`buf`
 * points to the entry itself, one object per mapping); the segments of a
 * scatterlist share one buffer; coherent and MMIO memory have none. The
 * buffer fields of an entry that is not its own buffer are unused.
 */
export interface Entry extends Buf {
  /** Creation order, unique per machine. */
  id: number;
  dev: number;
  type: EntryType;
  dmaAddr: number;
  size: number;
  dir: number;
  attrs: number;
  /** CPU physical address (for sg entries: the input entry of the same index, as the kernel records it). */
  paddr: number;
  mapErr: number;
  sgCallEnts: number;
  sgMappedEnts: number;
  /** The cache line number entered in the active-cacheline table, -1 when none. */
  cln: number;
  /** Its record in `DebugState.cachelines` (the same object: snapshots clone both at once), null when none. */
  line: ActiveLine | null;
  /** Mapped with DMA_ATTR_DEBUGGING_IGNORE_CACHELINES or DMA_ATTR_REQUIRE_COHERENT. */
  cacheClean: boolean;
  /** Ownership buffer, null for coherent and MMIO memory (shared, nobody owns it). */
  buf: Buf | null;
  /** Offset of this entry's first byte in its buffer's logical bytes. */
  bufOff: number;
  /** Where it was made: the call and step ("Mapped at"). */
  call: string;
  step: number;
  /**
   * Known to the checker but not to dma-debug (a coherent allocation with
   * no valid kernel address): it gives the device its memory, and no
   * dma-debug check sees it.
   */
  hidden: boolean;
}

/** One line of dma-debug's active-cacheline table. */
export interface ActiveLine {
  /** Overlap count (the 3 radix-tree tag bits); -1 when the line is not in the tree. */
  count: number;
  /** The cache-clean flag of the entry that put it there. */
  clean: boolean;
}

/** Per-device checker state. */
export interface DevDebug {
  /** The bound driver's name, from driver-bound/-unbound events. */
  driver: string | null;
  /** Live entries sorted by DMA address, then creation (the kernel's list order). */
  sorted: Entry[];
  /** Largest size of any entry ever live (bounds backward searches). */
  maxSize: number;
}

/** What a streaming mapping or non-coherent allocation covers, and who owns it. */
export interface Buf {
  id: number;
  dev: number;
  dir: number;
  type: EntryType;
  /** CPU side, in logical order: flat [phys, length, …]. */
  pieces: number[];
  total: number;
  /** Who owns the bytes: OWNER_CPU, OWNER_DEVICE, or OWNER_MIXED (see `devOwned`). */
  owner: number;
  /** With OWNER_MIXED: the logical ranges the device owns (flat [start, end, …]). */
  devOwned: number[] | null;
  /** The device works on a bounce slot: the original's cache lines are never exposed to it. */
  bounced: boolean;
  /**
   * Mapped with DMA_ATTR_SKIP_CPU_SYNC: the driver keeps the CPU side
   * coherent itself (uncached views, or a snooping device), as coherent
   * dma-buf exporters do.
   */
  skipSync: boolean;
  /** Finding kinds already reported since the last change of ownership. */
  reported: number;
  /** Step and call of the last change of ownership. */
  since: number;
  sinceCall: string;
  /** Live entries referring to it. */
  entries: number;
  /** Entered in the page index (done lazily, at the first access that needs it). */
  indexed: boolean;
  call: string;
  step: number;
  /** The caller's stack at the map (captureStacks: 'mappings'). */
  stack: string[] | null;
}

/** A live bounce: the device sees `slot`, standing for `orig`. */
export interface Bounce {
  dev: string;
  orig: number;
  slot: number;
  size: number;
}

/** The live page-table views of one page frame, by memory attribute. */
export interface PageViews {
  cached: number;
  uncached: number;
  /** Descriptions of the latest view of each kind, for messages. */
  lastCached: string;
  lastUncached: string;
  reported: number;
}

export interface DebugState {
  nextId: number;
  devs: (DevDebug | undefined)[];
  /** Live buffers. */
  bufCount: number;
  /** Live buffers not yet in the page index. */
  unindexed: Buf[];
  /**
   * pfn → buffers with CPU bytes in that page. Emptied lists stay (hashing
   * skips them): churning Map entries costs more than keeping them.
   */
  pages: Map<number, Buf[]>;
  /**
   * dma-debug's active cache lines: overlap count (the 3 radix-tree tag
   * bits; -1 when the line is not in the tree) and the cache-clean flag of
   * the entry that put it there. Absent lines stay as -1 for the same reason.
   */
  cachelines: Map<number, ActiveLine>;
  overlapWarned: boolean;
  /** Sorted by slot. */
  bounces: Bounce[];
  /** The last bounce taken (a map in the same step and device is bounced). */
  lastBounce: { step: number; dev: string };
  views: Map<number, PageViews>;
  /** (device id, pfn) pairs already reported by UNMAPPED_DMA. */
  unmappedSeen: Set<number>;
  /** Interned agent and call names (ids index this table; 0 is ''). */
  names: string[];
  nameIds: Map<string, number>;
  /** Name ids of the labels of reads outside any call, by agent (built once). */
  cpuReadLabels: Map<string, number>;
  deviceReadLabels: Map<string, number>;
  shadow: ShadowStore;
  reads: ReadLog;
  /** Live user mappings of DMA allocations made by dma_mmap_* (seed 000). */
  userMaps: UserMap[];
  /** Buffer objects and their user mappings (seed 004; see bo.ts). */
  bo: BoCheckState;
  /** dma-buf attachments' mappings and moves (see dmabuf.ts). */
  dmabuf: DmaBufCheckState;
}

/** A user mapping of a DMA allocation: the process's VMA range and the allocation's CPU range. */
export interface UserMap {
  pid: number;
  start: number;
  end: number;
  device: string;
  cpuAddr: number;
  size: number;
  step: number;
}

export function debugState(m: Machine): DebugState {
  return m.layers.debug as DebugState;
}

function emptyState(): DebugState {
  return {
    nextId: 1,
    devs: [],
    bufCount: 0,
    unindexed: [],
    pages: new Map(),
    cachelines: new Map(),
    overlapWarned: false,
    bounces: [],
    lastBounce: { step: -1, dev: '' },
    views: new Map(),
    unmappedSeen: new Set(),
    names: [''],
    nameIds: new Map([['', 0]]),
    cpuReadLabels: new Map(),
    deviceReadLabels: new Map(),
    shadow: createShadow(),
    reads: createReadLog(),
    userMaps: [],
    bo: emptyBoCheck(),
    dmabuf: emptyDmaBufCheck(),
  };
}

/** The checker state of device `id`, created on first use. */
export function devDebug(st: DebugState, id: number): DevDebug {
  let d = st.devs[id];
  if (d === undefined) {
    d = { driver: null, sorted: [], maxSize: 0 };
    st.devs[id] = d;
  }
  return d;
}

/** The id of an agent or call name (interned). */
export function nameId(st: DebugState, name: string): number {
  let id = st.nameIds.get(name);
  if (id === undefined) {
    id = st.names.length;
    st.names.push(name);
    st.nameIds.set(name, id);
  }
  return id;
}

type Rest = Omit<DebugState, 'shadow' | 'reads'>;

function rest(st: DebugState): Rest {
  const { shadow: _s, reads: _r, ...r } = st;
  return r;
}

/** Creates the state and registers the slot. */
export function initDebugState(m: Machine): void {
  m.layers.debug = emptyState();
  registerSlot(m, {
    name: 'debug',
    snapshot: (mm) => {
      const st = debugState(mm);
      return {
        rest: structuredClone(rest(st)),
        shadow: shadowSnapshot(st.shadow),
        reads: copyReadLog(st.reads),
      };
    },
    restore: (mm, snap) => {
      const s = snap as { rest: Rest; shadow: ShadowStore; reads: ReadLog };
      const st = debugState(mm);
      Object.assign(st, structuredClone(s.rest));
      shadowRestore(st.shadow, s.shadow);
      st.reads = copyReadLog(s.reads);
    },
    hash: (mm, h) => hashState(debugState(mm), h),
  });
}

/**
 * Hashes what decides the checker's future: live entries and buffers by
 * content (not by id or creation step, which record history), active cache
 * lines, bounces, views and the shadow's bytes.
 */
function hashState(st: DebugState, h: Hasher): void {
  h.value(st.bo);
  h.value(st.dmabuf);
  for (const u of st.userMaps) h.word(u.pid).num(u.start).num(u.end).str(u.device).num(u.cpuAddr).num(u.size);
  for (let d = 0; d < st.devs.length; d++) {
    const dev = st.devs[d];
    if (dev === undefined || dev.sorted.length === 0) continue;
    h.word(d)
      .str(dev.driver ?? '')
      .word(dev.sorted.length);
    for (const e of dev.sorted) {
      h.str(e.type).num(e.dmaAddr).num(e.size).word(e.dir).word(e.attrs).num(e.paddr).word(e.mapErr);
      h.word(e.sgCallEnts)
        .word(e.sgMappedEnts)
        .num(e.cln)
        .word(e.cacheClean ? 1 : 0)
        .num(e.bufOff);
      const b = e.buf;
      if (b !== null && e.bufOff === 0) {
        h.word(b.dir)
          .value(b.pieces)
          .word(b.owner)
          .value(b.devOwned)
          .word(b.bounced ? 1 : 0)
          .word(b.skipSync ? 1 : 0)
          .word(b.reported);
      }
    }
  }
  const lines = [...st.cachelines].filter(([, v]) => v.count >= 0).sort((a, b) => a[0] - b[0]);
  h.word(lines.length);
  for (const [cln, v] of lines)
    h.num(cln)
      .word(v.count)
      .word(v.clean ? 1 : 0);
  h.word(st.overlapWarned ? 1 : 0);
  // Pages already reported by UNMAPPED_DMA are not reported again.
  h.value([...st.unmappedSeen].sort((a, b) => a - b));
  h.value(st.bounces);
  const views = [...st.views].filter(([, v]) => v.cached + v.uncached > 0).sort((a, b) => a[0] - b[0]);
  h.word(views.length);
  for (const [pfn, v] of views) h.num(pfn).word(v.cached).word(v.uncached).word(v.reported);
  h.hash(shadowHash(st.shadow));
}
