/**
 * Ownership (DESIGN.md §6.2): every byte of a streaming mapping belongs to
 * the CPU or to the device at each moment. Map and sync-for-device hand
 * bytes to the device; sync-for-cpu and unmap hand them back. Coherent
 * memory is shared and owned by nobody. The checker raises:
 *
 * - OWNERSHIP: a CPU store to device-owned bytes; a CPU load of
 *   device-owned bytes of a DMA_FROM_DEVICE or DMA_BIDIRECTIONAL mapping;
 *   a device access to CPU-owned bytes; a device write to a DMA_TO_DEVICE
 *   mapping; two devices in different coherency domains owning bytes
 *   while one of them may write;
 * - SHARED_CACHELINE: a CPU store to a cache line that a device-owned,
 *   device-writable mapping covers only in part (unless the device works
 *   on a bounce slot, where the line can never be lost);
 * - UNMAPPED_DMA: a device without an IOMMU reaching memory that none of
 *   its mappings or allocations covers.
 *
 * Each is reported once per mapping and kind until ownership changes again.
 */

import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaDirName } from '../dma/index.js';
import {
  ALL_COLOURS,
  type CpuAccessEvent,
  captureStack,
  colourOf,
  type DeviceAccessEvent,
  deviceCoherentColour,
  formatHex,
  formatHex16,
  type Machine,
  PAGE_SIZE,
} from '../machine/index.js';
import { OWNERSHIP, SHARED_CACHELINE, UNMAPPED_DMA } from './codes.js';
import { entryAt } from './entries.js';
import { addRange, covers, intersects, removeRange } from './internal/intervals.js';
import { ownershipCalls } from './messages.js';
import { mappedAt, raise } from './report.js';
import {
  type Buf,
  type DebugState,
  type Entry,
  type EntryType,
  OWNER_CPU,
  OWNER_DEVICE,
  OWNER_MIXED,
} from './state.js';

export const CPU_STORE = 1;
export const CPU_LOAD = 2;
export const DEVICE_CPU_OWNED = 4;
export const DEVICE_WRITE_TO_DEVICE = 8;
export const SHARED_DEVICES = 16;
export const SHARED_LINE = 32;

/** Retired buffers, reused (module-level: never shared with state). */
const bufPool: Buf[] = [];

/**
 * Creates a buffer over the CPU `pieces` (flat [phys, length, …]), or over
 * the single piece `[phys, phys + len)` when `pieces` is null, owned by the
 * device or by the CPU. With `into` (a single mapping's entry), the entry
 * becomes its own buffer: one object per mapping.
 */
export function createBuf(
  m: Machine,
  st: DebugState,
  dev: number,
  type: EntryType,
  dir: number,
  pieces: number[] | null,
  phys: number,
  len: number,
  deviceOwned: boolean,
  bounced: boolean,
  into: Buf | null = null,
): Buf {
  let total = len;
  if (pieces !== null) {
    total = 0;
    for (let i = 1; i < pieces.length; i += 2) total += pieces[i]!;
  }
  const stack = m.options.captureStacks === 'mappings' ? captureStack() : null;
  let buf = into ?? bufPool.pop();
  if (buf === undefined) {
    buf = {
      id: 0,
      dev,
      dir,
      type,
      pieces: pieces ?? [phys, len],
      total,
      owner: OWNER_CPU,
      devOwned: null,
      bounced,
      skipSync: false,
      reported: 0,
      since: 0,
      sinceCall: '',
      entries: 0,
      indexed: false,
      call: '',
      step: 0,
      stack,
    };
  } else {
    buf.dev = dev;
    buf.dir = dir;
    buf.type = type;
    if (pieces !== null) buf.pieces = pieces;
    else {
      // Pooled buffers and entries always hold a two-element array (see dropBuf).
      buf.pieces[0] = phys;
      buf.pieces[1] = len;
    }
    buf.total = total;
    buf.devOwned = null;
    buf.bounced = bounced;
    buf.skipSync = false;
    buf.reported = 0;
    buf.entries = 0;
    buf.indexed = false;
    buf.stack = stack;
  }
  if (into === null) buf.id = st.nextId++;
  buf.owner = deviceOwned ? OWNER_DEVICE : OWNER_CPU;
  buf.since = buf.step = m.clock.step;
  buf.sinceCall = buf.call = m.clock.call;
  st.bufCount++;
  // The page index is filled lazily: a map and unmap with no access between cost no index work.
  st.unindexed.push(buf);
  return buf;
}

/** Forgets a buffer (its last entry went away); `pool` when it is not an entry of its own. */
export function dropBuf(st: DebugState, buf: Buf, pool: boolean): void {
  if (buf.indexed) indexPages(st, buf, false);
  else {
    const u = st.unindexed;
    if (u[u.length - 1] === buf) u.pop();
    else {
      const k = u.lastIndexOf(buf);
      if (k >= 0) u.splice(k, 1);
    }
  }
  st.bufCount--;
  if (pool && bufPool.length < 64) {
    // A fresh pieces array next time: sg buffers hand theirs over, and findings may hold none.
    if (buf.pieces.length !== 2) buf.pieces = [0, 0];
    bufPool.push(buf);
  }
}

/** Enters the buffers made since the last lookup in the page index. */
function indexPending(st: DebugState): void {
  const u = st.unindexed;
  for (let i = 0; i < u.length; i++) indexPages(st, u[i]!, true);
  u.length = 0;
}

function indexPages(st: DebugState, buf: Buf, add: boolean): void {
  buf.indexed = add;
  const p = buf.pieces;
  for (let i = 0; i < p.length; i += 2) {
    const len = p[i + 1]!;
    if (len <= 0) continue;
    const first = Math.floor(p[i]! / PAGE_SIZE);
    const last = Math.floor((p[i]! + len - 1) / PAGE_SIZE);
    for (let pfn = first; pfn <= last; pfn++) {
      let list = st.pages.get(pfn);
      if (add) {
        if (list === undefined) {
          list = [];
          st.pages.set(pfn, list);
        }
        if (!list.includes(buf)) list.push(buf);
      } else if (list !== undefined) {
        const k = list.indexOf(buf);
        if (k === list.length - 1) list.pop();
        else if (k >= 0) list.splice(k, 1);
      }
    }
  }
}

/** True when the device owns every byte of logical `[s, e)`. */
export function deviceOwnsAll(buf: Buf, s: number, e: number): boolean {
  if (buf.owner !== OWNER_MIXED) return buf.owner === OWNER_DEVICE || e <= s;
  return covers(buf.devOwned!, s, e);
}

/** True when the device owns any byte of logical `[s, e)`. */
export function deviceOwnsAny(buf: Buf, s: number, e: number): boolean {
  if (buf.owner !== OWNER_MIXED) return buf.owner === OWNER_DEVICE && e > s;
  return intersects(buf.devOwned!, s, e);
}

function setOwned(buf: Buf, device: boolean, s: number, e: number): void {
  if (s <= 0 && e >= buf.total) {
    buf.owner = device ? OWNER_DEVICE : OWNER_CPU;
    buf.devOwned = null;
    return;
  }
  if (buf.owner === (device ? OWNER_DEVICE : OWNER_CPU)) return;
  if (buf.owner !== OWNER_MIXED) buf.devOwned = buf.owner === OWNER_DEVICE ? [0, buf.total] : [];
  buf.owner = OWNER_MIXED;
  const set = buf.devOwned!;
  if (device) addRange(set, s, e);
  else removeRange(set, s, e);
  if (set.length === 0) {
    buf.owner = OWNER_CPU;
    buf.devOwned = null;
  } else if (set.length === 2 && set[0]! <= 0 && set[1]! >= buf.total) {
    buf.owner = OWNER_DEVICE;
    buf.devOwned = null;
  }
}

/** Hands logical bytes `[s, e)` to the device (map, sync for device). */
export function toDevice(m: Machine, buf: Buf, s: number, e: number): void {
  setOwned(buf, true, s, e);
  buf.reported = 0;
  buf.since = m.clock.step;
  buf.sinceCall = m.clock.call;
}

/** Hands logical bytes `[s, e)` back to the CPU (sync for cpu). */
export function toCpu(m: Machine, buf: Buf, s: number, e: number): void {
  setOwned(buf, false, s, e);
  buf.reported = 0;
  buf.since = m.clock.step;
  buf.sinceCall = m.clock.call;
}

/** The logical offset of physical `pa` in `buf`, or -1. */
export function logicalOf(buf: Buf, pa: number): number {
  const p = buf.pieces;
  let off = 0;
  for (let i = 0; i < p.length; i += 2) {
    const start = p[i]!;
    const len = p[i + 1]!;
    if (pa >= start && pa < start + len) return off + (pa - start);
    off += len;
  }
  return -1;
}

const NONE: readonly Buf[] = [];

/** The buffers with CPU bytes in `[pa, pa + len)` (a shared empty array when none). */
export function bufsOver(st: DebugState, pa: number, len: number): readonly Buf[] {
  if (st.bufCount === 0 || len <= 0) return NONE;
  if (st.unindexed.length > 0) indexPending(st);
  const first = Math.floor(pa / PAGE_SIZE);
  const last = Math.floor((pa + len - 1) / PAGE_SIZE);
  if (first === last) return st.pages.get(first) ?? NONE;
  const out: Buf[] = [];
  for (let pfn = first; pfn <= last; pfn++) {
    const list = st.pages.get(pfn);
    if (list === undefined) continue;
    for (const b of list) if (!out.includes(b)) out.push(b);
  }
  return out;
}

/** True when the device owns any of `buf`'s bytes at physical `[a, b)`. */
export function deviceOwnsPhys(buf: Buf, a: number, b: number): boolean {
  const p = buf.pieces;
  let off = 0;
  for (let i = 0; i < p.length; i += 2) {
    const start = p[i]!;
    const len = p[i + 1]!;
    const lo = Math.max(a, start);
    const hi = Math.min(b, start + len);
    if (lo < hi && deviceOwnsAny(buf, off + (lo - start), off + (hi - start))) return true;
    off += len;
  }
  return false;
}

/** True when some byte of physical `[a, b)` lies outside every piece of `buf`. */
function outsideBuf(buf: Buf, a: number, b: number): boolean {
  let covered = 0;
  const p = buf.pieces;
  for (let i = 0; i < p.length; i += 2) {
    const lo = Math.max(a, p[i]!);
    const hi = Math.min(b, p[i]! + p[i + 1]!);
    if (lo < hi) covered += hi - lo;
  }
  return covered < b - a;
}

function facts(buf: Buf, entry: Entry | null): Record<string, unknown> {
  const dmaAddr = entry?.dmaAddr ?? -1;
  return {
    dmaAddr,
    size: buf.total,
    dir: dmaDirName(buf.dir),
    owner: { since: buf.since, call: buf.sinceCall },
    mappedAt: mappedAt(buf),
  };
}

function firstEntryOf(st: DebugState, buf: Buf): Entry | null {
  const d = st.devs[buf.dev];
  if (d === undefined) return null;
  for (const e of d.sorted) if (e.buf === buf && e.bufOff === 0) return e;
  return null;
}

/** The bus address at which `buf`'s device reaches logical byte `at`, or -1. */
function busAddrOf(st: DebugState, buf: Buf, at: number): number {
  const d = st.devs[buf.dev];
  if (d === undefined) return -1;
  for (const e of d.sorted) {
    if (e.buf === buf && at >= e.bufOff && at < e.bufOff + e.size) return e.dmaAddr + (at - e.bufOff);
  }
  return -1;
}

/**
 * A mapping made with DMA_ATTR_SKIP_CPU_SYNC whose driver keeps the CPU
 * side coherent without syncs: the device works on the memory itself (no
 * bounce slot) and the access to physical `[lo, hi)` (logical offset `at`)
 * either bypasses the caches or goes through lines the device sees: all of
 * them when it snoops, or, for a PA-RISC coherence-index device, those of
 * the one alias its IOMMU entries name. Then no CPU access needs to wait
 * for an ownership change (seed 003's first remedy: coherent or uncached
 * buffers only).
 */
function coherentForCpu(
  m: Machine,
  st: DebugState,
  buf: Buf,
  ev: CpuAccessEvent,
  lo: number,
  hi: number,
  at: number,
): boolean {
  if (!buf.skipSync || buf.bounced) return false;
  if (ev.attr !== 'cached') return true;
  const coherence = m.hw.devices[buf.dev]?.coherence;
  if (coherence === 'snoop') return true;
  const dev = m.devices[buf.dev];
  if (coherence !== 'ci' || dev === undefined) return false;
  // The coherence index is per IOMMU page: every page of the access must go through its alias.
  for (let pa = lo; pa < hi; pa = (Math.floor(pa / PAGE_SIZE) + 1) * PAGE_SIZE) {
    const bus = busAddrOf(st, buf, at + (pa - lo));
    if (bus < 0) return false;
    const colour = deviceCoherentColour(dev, bus);
    if (colour !== ALL_COLOURS && colour !== colourOf(m.hw.cache, ev.va + (pa - ev.pa), pa)) return false;
  }
  return true;
}

/** OWNERSHIP and SHARED_CACHELINE for a CPU load or store (not an internal copy). */
export function cpuAccessOwnership(m: Machine, st: DebugState, ev: CpuAccessEvent): void {
  const bufs = bufsOver(st, ev.pa, ev.len);
  if (bufs.length === 0) return;
  const end = ev.pa + ev.len;
  const L = m.hw.cache.lineSize;
  for (const buf of bufs) {
    const p = buf.pieces;
    let off = 0;
    for (let i = 0; i < p.length; i += 2) {
      const start = p[i]!;
      const len = p[i + 1]!;
      const lo = Math.max(ev.pa, start);
      const hi = Math.min(end, start + len);
      if (
        lo < hi &&
        deviceOwnsAny(buf, off + lo - start, off + hi - start) &&
        !coherentForCpu(m, st, buf, ev, lo, hi, off + lo - start)
      ) {
        if (ev.write) cpuViolation(m, st, buf, CPU_STORE, ev, lo, hi);
        else if (buf.dir === DMA_FROM_DEVICE || buf.dir === DMA_BIDIRECTIONAL) {
          cpuViolation(m, st, buf, CPU_LOAD, ev, lo, hi);
        }
      }
      if (ev.write && !buf.bounced && buf.dir !== DMA_TO_DEVICE && (buf.reported & SHARED_LINE) === 0) {
        // The piece's edge lines, when it covers them only in part.
        const head = Math.floor(start / L) * L;
        const tail = Math.floor((start + len - 1) / L) * L;
        const headPartial = start % L !== 0 || (head === tail && (start + len) % L !== 0);
        const tailPartial = tail !== head && (start + len) % L !== 0;
        for (const line of [head, tail]) {
          if (line === head ? !headPartial : !tailPartial) continue;
          const a = Math.max(ev.pa, line);
          const b = Math.min(end, line + L);
          if (a >= b || !outsideBuf(buf, a, b)) continue;
          const ownLo = Math.max(start, line);
          const ownHi = Math.min(start + len, line + L);
          if (!deviceOwnsAny(buf, off + ownLo - start, off + ownHi - start)) continue;
          sharedLine(m, st, buf, ev, line, L);
          break;
        }
      }
      off += len;
    }
  }
}

function cpuViolation(
  m: Machine,
  st: DebugState,
  buf: Buf,
  kind: number,
  ev: CpuAccessEvent,
  lo: number,
  hi: number,
): void {
  if ((buf.reported & kind) !== 0) return;
  buf.reported |= kind;
  const entry = firstEntryOf(st, buf);
  const calls = ownershipCalls(buf.type, buf.call);
  const what = kind === CPU_STORE ? 'CPU store to' : 'CPU load of';
  const va = ev.va + (lo - ev.pa);
  raise(
    m,
    st,
    OWNERSHIP,
    buf.dev,
    `${what} DMA memory the device owns [device address=${formatHex16(entry?.dmaAddr ?? -1)}] [size=${buf.total} bytes] [mapped with ${dmaDirName(buf.dir)}] [cpu address=${formatHex(va)}] [phys=${formatHex(lo)}] [len=${hi - lo}] [agent=${ev.agent}]: the device owns it since ${buf.sinceCall || 'the map'} (step ${buf.since}); ${calls.forCpu} or ${calls.release} first`,
    {
      kind: kind === CPU_STORE ? 'cpu-store' : 'cpu-load',
      ...facts(buf, entry),
      access: { agent: ev.agent, va, phys: lo, len: hi - lo, attr: ev.attr },
    },
    ev.agent,
  );
}

function sharedLine(m: Machine, st: DebugState, buf: Buf, ev: CpuAccessEvent, line: number, L: number): void {
  buf.reported |= SHARED_LINE;
  const entry = firstEntryOf(st, buf);
  raise(
    m,
    st,
    SHARED_CACHELINE,
    buf.dev,
    `CPU store to a cache line shared with DMA memory the device owns [device address=${formatHex16(entry?.dmaAddr ?? -1)}] [size=${buf.total} bytes] [mapped with ${dmaDirName(buf.dir)}] [cache line=${formatHex(line)}] [line size=${L}] [cpu address=${formatHex(ev.va)}] [len=${ev.len}] [agent=${ev.agent}]: a write-back of this line can overwrite what the device writes; keep CPU data out of the buffer's cache lines`,
    {
      kind: 'shared-cacheline',
      ...facts(buf, entry),
      line,
      lineSize: L,
      access: { agent: ev.agent, va: ev.va, phys: ev.pa, len: ev.len, attr: ev.attr },
    },
    ev.agent,
  );
}

/** OWNERSHIP and UNMAPPED_DMA for a device access. */
export function deviceAccessOwnership(m: Machine, st: DebugState, dev: number, ev: DeviceAccessEvent): void {
  let bus = ev.bus;
  let left = ev.len;
  while (left > 0) {
    const e = entryAt(st, dev, bus);
    if (e === null) {
      unmapped(m, st, dev, ev, ev.pa + (bus - ev.bus), left);
      return;
    }
    const n = Math.min(left, e.dmaAddr + e.size - bus);
    const buf = e.buf;
    if (buf !== null) {
      const s = e.bufOff + (bus - e.dmaAddr);
      if (ev.write && buf.dir === DMA_TO_DEVICE)
        deviceViolation(m, st, buf, e, DEVICE_WRITE_TO_DEVICE, ev, bus, n);
      if (!deviceOwnsAll(buf, s, s + n)) deviceViolation(m, st, buf, e, DEVICE_CPU_OWNED, ev, bus, n);
      checkSharedDevices(m, st, buf, s, s + n, ev.write);
    }
    bus += n;
    left -= n;
  }
}

function deviceViolation(
  m: Machine,
  st: DebugState,
  buf: Buf,
  e: Entry,
  kind: number,
  ev: DeviceAccessEvent,
  bus: number,
  n: number,
): void {
  if ((buf.reported & kind) !== 0) return;
  buf.reported |= kind;
  const calls = ownershipCalls(buf.type, buf.call);
  const verb = ev.write ? 'write' : 'read';
  const text =
    kind === DEVICE_WRITE_TO_DEVICE
      ? `device write to a DMA_TO_DEVICE mapping [device address=${formatHex16(e.dmaAddr)}] [size=${e.size} bytes] [bus address=${formatHex(bus)}] [len=${n}]: the device may only read it`
      : `device ${verb} of DMA memory the CPU owns [device address=${formatHex16(e.dmaAddr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(buf.dir)}] [bus address=${formatHex(bus)}] [len=${n}]: the CPU owns it since ${buf.sinceCall || 'the map'} (step ${buf.since}); ${calls.forDevice} first`;
  raise(
    m,
    st,
    OWNERSHIP,
    buf.dev,
    text,
    {
      kind: kind === DEVICE_WRITE_TO_DEVICE ? 'device-write-to-device' : 'device-cpu-owned',
      ...facts(buf, e),
      access: { agent: ev.device, bus, phys: ev.pa + (bus - ev.bus), len: n, write: ev.write },
    },
    ev.device,
  );
}

function unmapped(
  m: Machine,
  st: DebugState,
  dev: number,
  ev: DeviceAccessEvent,
  pa: number,
  len: number,
): void {
  const s = m.hw.devices[dev];
  if (s === undefined || s.iommuDomain >= 0) return; // the IOMMU's page table gave it this memory
  // A device's own local memory (VRAM, an on-card buffer) needs no mapping to be reached by it.
  const own = s.deviceMemory;
  if (own !== null && pa >= own.phys && pa + len <= own.phys + own.size) return;
  const key = dev * 2 ** 36 + Math.floor(pa / PAGE_SIZE);
  if (st.unmappedSeen.has(key)) return;
  st.unmappedSeen.add(key);
  const bus = ev.bus + (pa - ev.pa);
  raise(
    m,
    st,
    UNMAPPED_DMA,
    dev,
    `device ${ev.write ? 'write' : 'read'} of memory no mapping gives the device [bus address=${formatHex(bus)}] [phys=${formatHex(pa)}] [len=${len}]: map it with the DMA API (a bus address from virt_to_phys() bypasses bouncing, IOMMUs and cache maintenance)`,
    { kind: 'unmapped', access: { agent: ev.device, bus, phys: pa, len, write: ev.write } },
    ev.device,
  );
}

/**
 * OWNERSHIP when a device accesses bytes `[s, e)` of its mapping `buf`
 * that a device of another coherency domain owns at the same time, unless
 * both only read.
 */
function checkSharedDevices(
  m: Machine,
  st: DebugState,
  buf: Buf,
  s: number,
  e: number,
  write: boolean,
): void {
  if ((buf.reported & SHARED_DEVICES) !== 0) return;
  const domain = m.hw.devices[buf.dev]?.coherencyDomain;
  const p = buf.pieces;
  let off = 0;
  for (let i = 0; i < p.length; i += 2) {
    const start = p[i]!;
    const len = p[i + 1]!;
    const lo = Math.max(s, off);
    const hi = Math.min(e, off + len);
    off += len;
    if (lo >= hi) continue;
    const a = start + (lo - (off - len));
    const b = a + (hi - lo);
    for (const other of bufsOver(st, a, b - a)) {
      if (other.dev === buf.dev || other === buf) continue;
      if (!write && other.dir === DMA_TO_DEVICE && buf.dir === DMA_TO_DEVICE) continue;
      if (m.hw.devices[other.dev]?.coherencyDomain === domain) continue;
      if (!deviceOwnsPhys(other, a, b)) continue;
      // One report per pair: the other mapping's accesses are the same conflict.
      buf.reported |= SHARED_DEVICES;
      other.reported |= SHARED_DEVICES;
      const otherName = m.hw.devices[other.dev]?.name ?? '?';
      const entry = firstEntryOf(st, buf);
      raise(
        m,
        st,
        OWNERSHIP,
        buf.dev,
        `device ${write ? 'write' : 'read'} of DMA memory that device ${otherName} (another coherency domain) owns too [device address=${formatHex16(entry?.dmaAddr ?? -1)}] [size=${buf.total} bytes] [mapped with ${dmaDirName(buf.dir)}] [other mapped with ${dmaDirName(other.dir)}] [phys=${formatHex(a)}] [len=${b - a}]: only devices that all read, or that share a coherency domain, may own bytes together`,
        {
          kind: 'shared-devices',
          ...facts(buf, entry),
          other: { device: otherName, dir: dmaDirName(other.dir), mappedAt: mappedAt(other) },
        },
      );
      return;
    }
  }
}

/** Who owns physical `pa` now: the buffer covering it (latest) and whether its device owns the byte. */
export function ownerOfPhys(st: DebugState, pa: number): { buf: Buf; deviceOwned: boolean } | null {
  let best: Buf | null = null;
  for (const b of bufsOver(st, pa, 1)) {
    if (logicalOf(b, pa) >= 0 && (best === null || b.id > best.id)) best = b;
  }
  if (best === null) return null;
  const off = logicalOf(best, pa);
  return { buf: best, deviceOwned: deviceOwnsAny(best, off, off + 1) };
}
