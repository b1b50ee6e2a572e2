/**
 * dma-debug parity (kernel/dma/debug.c; the checks are numbered as in
 * reference/dma-api-semantics.md §6b): every check triggered by the current
 * kernel's condition, silent where the kernel is silent, with its message.
 * The handlers also create and retire the ownership buffers, since the
 * entry lookups decide which mapping a sync or unmap meant.
 */

import {
  DMA_ATTR_CC_SHARED,
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_MMIO,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  isSwiotlbActive,
} from '../dma/index.js';
import {
  type DmaAllocEvent,
  type DmaFreeEvent,
  type DmaMapEvent,
  type DmaMapSgEvent,
  type DmaSyncEvent,
  type DmaSyncSgEvent,
  type DmaUnmapEvent,
  type DmaUnmapSgEvent,
  type FindingCode,
  isLinearMapVa,
  isVmallocAddr,
  KERNEL_RODATA_END,
  KERNEL_TEXT_START,
  type Machine,
  PAGE_SIZE,
  pageIsReserved,
  pfnValid,
  physToVirt,
  ULONG_MAX,
  virtToPage,
} from '../machine/index.js';
import { taskStackInfo } from '../mm/index.js';
import * as C from './codes.js';
import {
  addEntry,
  findContaining,
  findExact,
  firstAt,
  type Ref,
  removeEntry,
  sortedEntries,
} from './entries.js';
import { type DmaDebugCode, dmaDebugText } from './messages.js';
import { createBuf, dropBuf, toCpu, toDevice } from './ownership.js';
import { mappedAt, raise } from './report.js';
import {
  type DebugState,
  devDebug,
  type Entry,
  type EntryType,
  MAP_ERR_CHECKED,
  MAP_ERR_NOT_APPLICABLE,
  MAP_ERR_NOT_CHECKED,
} from './state.js';

/** Attributes an unmap must repeat (`DMA_ATTR_UNMAP_VALID`). */
const UNMAP_VALID =
  DMA_ATTR_NO_KERNEL_MAPPING |
  DMA_ATTR_FORCE_CONTIGUOUS |
  DMA_ATTR_MMIO |
  DMA_ATTR_REQUIRE_COHERENT |
  DMA_ATTR_PRIVILEGED |
  DMA_ATTR_CC_SHARED;
/** The 3 radix-tree tag bits count overlaps up to 7 (`ACTIVE_CACHELINE_MAX_OVERLAP`). */
const MAX_OVERLAP = 7;

function checkNumber(code: DmaDebugCode): number {
  return C.DMA_DEBUG_CHECKS.find((c) => c.code === code)?.check ?? 0;
}

/** err_printk: a dma-debug finding with the kernel's message, "Mapped at" when an entry is known. */
function err<K extends DmaDebugCode>(
  m: Machine,
  st: DebugState,
  dev: number,
  code: K,
  fields: Parameters<(typeof dmaDebugText)[K]>[0],
  entry: Entry | null,
): void {
  const text = (dmaDebugText[code] as (f: unknown) => string)(fields);
  const def = (C as unknown as Record<string, FindingCode>)[code]!;
  raise(m, st, def, dev, text, {
    check: checkNumber(code),
    ...(fields as object),
    ...(entry !== null ? { mappedAt: mappedAt(entry, entry.buf ?? undefined) } : {}),
  });
}

/** Retired entries, reused so that a map and unmap allocate nothing (module-level: never shared with state). */
const entryPool: Entry[] = [];

function newEntry(
  m: Machine,
  st: DebugState,
  dev: number,
  type: EntryType,
  dmaAddr: number,
  size: number,
  dir: number,
  attrs: number,
  paddr: number,
): Entry {
  const e = entryPool.pop();
  if (e === undefined) {
    return {
      id: st.nextId++,
      dev,
      type,
      dmaAddr,
      size,
      dir,
      attrs,
      paddr,
      mapErr: MAP_ERR_NOT_APPLICABLE,
      sgCallEnts: 0,
      sgMappedEnts: 0,
      cln: -1,
      line: null,
      cacheClean: false,
      buf: null,
      bufOff: 0,
      call: m.clock.call,
      step: m.clock.step,
      hidden: false,
      // Its own buffer's fields (see createBuf), unused until then.
      pieces: [0, 0],
      total: 0,
      owner: 0,
      devOwned: null,
      bounced: false,
      skipSync: false,
      reported: 0,
      since: 0,
      sinceCall: '',
      entries: 0,
      indexed: false,
      stack: null,
    };
  }
  e.id = st.nextId++;
  e.dev = dev;
  e.type = type;
  e.dmaAddr = dmaAddr;
  e.size = size;
  e.dir = dir;
  e.attrs = attrs;
  e.paddr = paddr;
  e.mapErr = MAP_ERR_NOT_APPLICABLE;
  e.sgCallEnts = 0;
  e.sgMappedEnts = 0;
  e.cln = -1;
  e.line = null;
  e.cacheClean = false;
  e.buf = null;
  e.bufOff = 0;
  e.call = m.clock.call;
  e.step = m.clock.step;
  e.hidden = false;
  return e;
}

/** `add_dma_entry`: into the table, then the active-cacheline check (23, 25). */
function addDmaEntry(m: Machine, st: DebugState, e: Entry): void {
  addEntry(st, e);
  if (e.buf !== null) e.buf.entries++;
  e.cacheClean = (e.attrs & (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT)) !== 0;
  // A device that only reads cannot make the CPU consume stale data.
  if (e.dir === DMA_TO_DEVICE || e.hidden) return;
  const L = m.hw.cache.lineSize;
  const cln = Math.floor(e.paddr / L);
  e.cln = cln;
  let line = st.cachelines.get(cln);
  if (line === undefined || line.count < 0) {
    if (line === undefined) {
      line = { count: 0, clean: e.cacheClean };
      st.cachelines.set(cln, line);
    } else {
      line.count = 0;
      line.clean = e.cacheClean;
    }
    e.line = line;
    return;
  }
  e.line = line;
  const overlap = line.count + 1;
  if (overlap > MAX_OVERLAP) {
    if (!e.cacheClean && !st.overlapWarned) {
      st.overlapWarned = true;
      raise(m, st, C.DMA_CACHELINE_OVERLAP_LIMIT, -1, dmaDebugText.DMA_CACHELINE_OVERLAP_LIMIT({ cln }), {
        check: 25,
        cln,
      });
    }
  } else {
    line.count = overlap;
  }
  const dev = m.devices[e.dev]!;
  if (
    (e.attrs & DMA_ATTR_SKIP_CPU_SYNC) === 0 &&
    !(e.cacheClean && line.clean) &&
    m.profile.archDmaMinalign >= L &&
    !(m.options.kmallocBounce && isSwiotlbActive(dev))
  ) {
    err(m, st, e.dev, 'DMA_CACHELINE_OVERLAP', undefined as never, e);
  }
}

function removeCacheline(e: Entry): void {
  const line = e.line;
  e.line = null;
  if (line === null || line.count < 0) return;
  line.count--;
}

/** Takes an entry out of the tables and retires its buffer when it was the last. */
function retire(st: DebugState, e: Entry): void {
  removeEntry(st, e);
  removeCacheline(e);
  const buf = e.buf;
  if (buf !== null && --buf.entries <= 0) dropBuf(st, buf, buf !== e);
  e.buf = null;
  if (entryPool.length < 64) entryPool.push(e);
}

function virtAddrValid(m: Machine, va: number): boolean {
  return isLinearMapVa(va) && pfnValid(m, virtToPage(va));
}

/** `check_for_stack()`: the direct-mapped stack by address; a vmapped one by its pages. */
function checkForStack(m: Machine, st: DebugState, dev: number, phys: number): void {
  const stack = taskStackInfo(m);
  if (stack === null) return;
  if (!stack.vmapped) {
    const addr = physToVirt(phys);
    if (addr >= stack.base && addr < stack.base + stack.size) {
      err(m, st, dev, 'DMA_MAP_STACK', { addr, probable: false }, null);
    }
    return;
  }
  const i = stack.pfns.indexOf(Math.floor(phys / PAGE_SIZE));
  if (i >= 0)
    err(
      m,
      st,
      dev,
      'DMA_MAP_STACK',
      { addr: stack.base + i * PAGE_SIZE + (phys % PAGE_SIZE), probable: true },
      null,
    );
}

function checkIllegalArea(m: Machine, st: DebugState, dev: number, phys: number, len: number): void {
  if (phys < KERNEL_RODATA_END && phys + len > KERNEL_TEXT_START) {
    err(m, st, dev, 'DMA_MAP_KERNEL_TEXT', { addr: physToVirt(phys), len }, null);
  }
}

/** `debug_dma_map_single` + `debug_dma_map_phys`. */
export function onMap(m: Machine, st: DebugState, dev: number, ev: DmaMapEvent): void {
  // debug_dma_map_single runs before the map, after the core's vmalloc refusal.
  if (ev.call === 'dma_map_single_attrs' && ev.cpuAddr >= 0 && !isVmallocAddr(ev.cpuAddr)) {
    // virt_addr_valid: a linear-map address of a frame with a page (the API derived `phys` from it).
    if (!isLinearMapVa(ev.cpuAddr) || !pfnValid(m, Math.floor(ev.phys / PAGE_SIZE))) {
      err(m, st, dev, 'DMA_MAP_INVALID_AREA', { addr: ev.cpuAddr, len: ev.size }, null);
    }
  }
  if (ev.dmaAddr === DMA_MAPPING_ERROR) return; // failed maps are not recorded
  const e = newEntry(m, st, dev, 'phy', ev.dmaAddr, ev.size, ev.dir, ev.attrs, ev.phys);
  e.mapErr = MAP_ERR_NOT_CHECKED;
  if (ev.attrs & DMA_ATTR_MMIO) {
    const pfn = Math.floor(ev.phys / PAGE_SIZE);
    if (pfnValid(m, pfn) && !pageIsReserved(m, pfn))
      err(m, st, dev, 'DMA_MAP_RESOURCE_RAM', { phys: ev.phys }, e);
  } else {
    checkForStack(m, st, dev, ev.phys);
    checkIllegalArea(m, st, dev, ev.phys, ev.size);
    const bounced = st.lastBounce.step === ev.step && st.lastBounce.dev === ev.device;
    e.buf = createBuf(m, st, dev, 'phy', ev.dir, null, ev.phys, ev.size, true, bounced, e);
    e.buf.skipSync = (ev.attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0;
  }
  addDmaEntry(m, st, e);
}

/** `debug_dma_mapping_error`: marks the first unchecked entry at that address. */
export function onMappingError(st: DebugState, dev: number, dmaAddr: number): void {
  const sorted = sortedEntries(st, dev);
  for (let i = firstAt(sorted, dmaAddr); i < sorted.length && sorted[i]!.dmaAddr === dmaAddr; i++) {
    const e = sorted[i]!;
    if (e.mapErr === MAP_ERR_NOT_CHECKED) {
      e.mapErr = MAP_ERR_CHECKED;
      return;
    }
  }
}

interface UnmapRef extends Ref {
  type: EntryType;
  attrs: number;
  paddr: number;
}

/**
 * `check_unmap`: every mismatch between the unmap and its entry, then the
 * entry goes. `ref` is read only before the first finding (callers may pass
 * a reused scratch record; a finding's listeners may re-enter).
 */
function checkUnmap(m: Machine, st: DebugState, dev: number, ref: UnmapRef): Entry | null {
  const e = findExact(st, dev, ref);
  const { dmaAddr, size, type, dir, sgCallEnts, attrs, paddr } = ref;
  if (e === null) {
    if (dmaAddr === DMA_MAPPING_ERROR) err(m, st, dev, 'DMA_FREE_INVALID_ADDR', undefined as never, null);
    else err(m, st, dev, 'DMA_FREE_NOT_ALLOCATED', { dmaAddr, size }, null);
    return null;
  }
  if (size !== e.size) {
    err(m, st, dev, 'DMA_FREE_WRONG_SIZE', { dmaAddr, mapSize: e.size, unmapSize: size }, e);
  }
  if (type !== e.type) {
    err(m, st, dev, 'DMA_FREE_WRONG_FUNCTION', { dmaAddr, size, mappedAs: e.type, unmappedAs: type }, e);
  } else if ((e.type === 'coherent' || e.type === 'noncoherent') && paddr !== e.paddr) {
    err(m, st, dev, 'DMA_FREE_WRONG_CPU_ADDR', { dmaAddr, size, allocPhys: e.paddr, freePhys: paddr }, e);
  }
  if (sgCallEnts !== 0 && type === 'scatter-gather' && sgCallEnts !== e.sgCallEnts) {
    err(m, st, dev, 'DMA_FREE_SG_NENTS', { mapCount: e.sgCallEnts, unmapCount: sgCallEnts }, e);
  }
  if (dir !== e.dir) {
    err(m, st, dev, 'DMA_FREE_WRONG_DIR', { dmaAddr, size, mappedDir: e.dir, unmappedDir: dir }, e);
  }
  if (e.mapErr === MAP_ERR_NOT_CHECKED) {
    err(m, st, dev, 'DMA_MAP_ERROR_UNCHECKED', { dmaAddr, size, mappedAs: e.type }, e);
  }
  if ((attrs & UNMAP_VALID) !== (e.attrs & UNMAP_VALID)) {
    err(m, st, dev, 'DMA_FREE_WRONG_ATTRS', { dmaAddr, size, mappedAttrs: e.attrs, unmappedAttrs: attrs }, e);
  }
  retire(st, e);
  return e;
}

/** `debug_dma_unmap_phys`. */
export function onUnmap(m: Machine, st: DebugState, dev: number, ev: DmaUnmapEvent): void {
  const ref = unmapScratch;
  ref.dmaAddr = ev.dmaAddr;
  ref.size = ev.size;
  ref.dir = ev.dir;
  ref.attrs = ev.attrs;
  checkUnmap(m, st, dev, ref);
}

/** The lookup record of a single unmap or sync, reused (checkUnmap/checkSync read it before anything re-enters). */
const unmapScratch: UnmapRef = {
  type: 'phy',
  dmaAddr: 0,
  size: 0,
  dir: 0,
  sgCallEnts: 0,
  attrs: 0,
  paddr: -1,
};
const syncScratch: Ref = { type: 'single', dmaAddr: 0, size: 0, dir: 0, sgCallEnts: 0 };

/** `check_sync`, then the ownership move (`ref` as for `checkUnmap`). */
function checkSync(m: Machine, st: DebugState, dev: number, ref: Ref, forCpu: boolean): void {
  const e = findContaining(st, dev, ref);
  const { dmaAddr, size, type, dir, sgCallEnts } = ref;
  if (e === null) {
    err(m, st, dev, 'DMA_SYNC_NOT_ALLOCATED', { dmaAddr, size }, null);
    return;
  }
  if (size > e.size) {
    err(m, st, dev, 'DMA_SYNC_OUT_OF_RANGE', { dmaAddr: e.dmaAddr, allocSize: e.size, syncSize: size }, e);
  }
  if (e.dir !== DMA_BIDIRECTIONAL) {
    const f = { dmaAddr, size: e.size, mappedDir: e.dir, syncDir: dir };
    if (dir !== e.dir) err(m, st, dev, 'DMA_SYNC_WRONG_DIR', f, e);
    if (forCpu && e.dir !== DMA_FROM_DEVICE && dir !== DMA_TO_DEVICE) {
      err(m, st, dev, 'DMA_SYNC_DEVICE_READ_ONLY', f, e);
    }
    if (!forCpu && e.dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
      err(m, st, dev, 'DMA_SYNC_DEVICE_WRITE_ONLY', f, e);
    }
    if (sgCallEnts !== 0 && type === 'scatter-gather' && sgCallEnts !== e.sgCallEnts) {
      err(m, st, dev, 'DMA_SYNC_SG_NENTS', { mapCount: e.sgCallEnts, syncCount: sgCallEnts }, e);
    }
  }
  const buf = e.buf;
  if (buf === null) return;
  const s = e.bufOff + (dmaAddr - e.dmaAddr);
  if (forCpu) toCpu(m, buf, s, s + size);
  else toDevice(m, buf, s, s + size);
}

/** `debug_dma_sync_single_for_cpu/_for_device`. */
export function onSync(m: Machine, st: DebugState, dev: number, ev: DmaSyncEvent): void {
  const ref = syncScratch;
  ref.dmaAddr = ev.dmaAddr;
  ref.size = ev.size;
  ref.dir = ev.dir;
  checkSync(m, st, dev, ref, ev.forCpu);
}

function checkSgSegment(
  m: Machine,
  st: DebugState,
  dev: number,
  len: number,
  start: number,
  dmaLen: number,
): void {
  const s = m.hw.devices[dev]!;
  if (len > s.maxSegmentSize)
    err(m, st, dev, 'DMA_SG_SEGMENT_TOO_LONG', { len, max: s.maxSegmentSize }, null);
  const boundary = s.segmentBoundary;
  if (boundary === ULONG_MAX) return;
  const end = start + dmaLen - 1;
  if (Math.floor(start / (boundary + 1)) !== Math.floor(end / (boundary + 1))) {
    err(m, st, dev, 'DMA_SG_SEGMENT_BOUNDARY', { start, end, boundary }, null);
  }
}

/** Builds the sg entries and their buffer (dma_map_sg, dma_alloc_noncontiguous). */
function mapSg(
  m: Machine,
  st: DebugState,
  dev: number,
  ev: { step: number; device: string; dir: number; attrs: number },
  nents: number,
  mapped: number,
  phys: readonly number[],
  lengths: readonly number[],
  dmaAddrs: readonly number[],
  dmaLengths: readonly number[],
  deviceOwned: boolean,
  checkSegments: boolean,
): void {
  const pieces: number[] = [];
  for (let i = 0; i < nents; i++) pieces.push(phys[i]!, lengths[i]!);
  const bounced = st.lastBounce.step === ev.step && st.lastBounce.dev === ev.device;
  const buf = createBuf(m, st, dev, 'scatter-gather', ev.dir, pieces, 0, 0, deviceOwned, bounced);
  buf.skipSync = (ev.attrs & DMA_ATTR_SKIP_CPU_SYNC) !== 0;
  let off = 0;
  for (let k = 0; k < mapped; k++) {
    const e = newEntry(
      m,
      st,
      dev,
      'scatter-gather',
      dmaAddrs[k]!,
      dmaLengths[k]!,
      ev.dir,
      ev.attrs,
      phys[k]!,
    );
    e.sgCallEnts = nents;
    e.sgMappedEnts = mapped;
    e.buf = buf;
    e.bufOff = off;
    off += dmaLengths[k]!;
    if (checkSegments) checkSgSegment(m, st, dev, lengths[k]!, dmaAddrs[k]!, dmaLengths[k]!);
    addDmaEntry(m, st, e);
  }
  if (buf.entries === 0) dropBuf(st, buf, true);
}

/** `debug_dma_map_sg` (called by the kernel only when the map succeeded). */
export function onMapSg(m: Machine, st: DebugState, dev: number, ev: DmaMapSgEvent): void {
  for (let i = 0; i < ev.nents; i++) {
    checkForStack(m, st, dev, ev.phys[i]!);
    checkIllegalArea(m, st, dev, ev.phys[i]!, ev.lengths[i]!);
  }
  if (ev.mapped <= 0) return;
  mapSg(m, st, dev, ev, ev.nents, ev.mapped, ev.phys, ev.lengths, ev.dmaAddrs, ev.dmaLengths, true, true);
}

function sgRef(ev: DmaUnmapSgEvent | DmaSyncSgEvent, i: number): Ref {
  return {
    type: 'scatter-gather',
    dmaAddr: ev.dmaAddrs[i]!,
    size: ev.dmaLengths[i]!,
    dir: ev.dir,
    sgCallEnts: ev.nents,
  };
}

/** `debug_dma_unmap_sg`: each mapped segment, as many as the first one's entry says. */
export function onUnmapSg(m: Machine, st: DebugState, dev: number, ev: DmaUnmapSgEvent): void {
  let mappedEnts = 0;
  for (let i = 0; i < ev.nents; i++) {
    const ref: UnmapRef = { ...sgRef(ev, i), type: 'scatter-gather', attrs: ev.attrs, paddr: ev.phys[i]! };
    if (mappedEnts !== 0 && i >= mappedEnts) break;
    if (i === 0) mappedEnts = findExact(st, dev, ref)?.sgMappedEnts ?? 0;
    checkUnmap(m, st, dev, ref);
  }
}

/** `debug_dma_sync_sg_for_cpu/_for_device`: silent when the first segment is unknown. */
export function onSyncSg(m: Machine, st: DebugState, dev: number, ev: DmaSyncSgEvent): void {
  let mappedEnts = 0;
  for (let i = 0; i < ev.nents; i++) {
    const ref = sgRef(ev, i);
    if (i === 0) mappedEnts = findExact(st, dev, ref)?.sgMappedEnts ?? 0;
    if (i >= mappedEnts) break;
    checkSync(m, st, dev, ref, ev.forCpu);
  }
}

const KIND_TYPE: Record<DmaAllocEvent['kind'], EntryType> = {
  coherent: 'coherent',
  noncoherent: 'noncoherent',
  noncontiguous: 'scatter-gather',
};

/** `debug_dma_alloc_coherent`, `debug_dma_alloc_pages`, and the sg record of `dma_alloc_noncontiguous`. */
export function onAlloc(m: Machine, st: DebugState, dev: number, ev: DmaAllocEvent): void {
  if (ev.dmaAddr === DMA_MAPPING_ERROR || ev.phys < 0) return;
  if (ev.kind === 'noncontiguous') {
    const segs = ev.segments ?? [{ phys: ev.phys, length: ev.size }];
    mapSg(
      m,
      st,
      dev,
      ev,
      segs.length,
      1,
      segs.map((s) => s.phys),
      segs.map((s) => s.length),
      [ev.dmaAddr],
      [ev.size],
      false,
      false,
    );
    return;
  }
  const e = newEntry(m, st, dev, KIND_TYPE[ev.kind], ev.dmaAddr, ev.size, ev.dir, ev.attrs, ev.phys);
  if (ev.kind === 'coherent') {
    e.dir = DMA_BIDIRECTIONAL;
    // dma-debug skips NULL or invalid kernel addresses (a NO_KERNEL_MAPPING cookie); the memory is still the device's.
    e.hidden = !isVmallocAddr(ev.cpuAddr) && !virtAddrValid(m, ev.cpuAddr);
  } else {
    e.buf = createBuf(m, st, dev, 'noncoherent', ev.dir, null, ev.phys, ev.size, false, false, e);
  }
  addDmaEntry(m, st, e);
}

/** `debug_dma_free_coherent`, `debug_dma_free_pages`, `dma_free_noncontiguous`. */
export function onFree(m: Machine, st: DebugState, dev: number, ev: DmaFreeEvent): void {
  const type = KIND_TYPE[ev.kind];
  if (ev.kind === 'coherent' && !isVmallocAddr(ev.cpuAddr) && !virtAddrValid(m, ev.cpuAddr)) {
    // Not tracked by dma-debug: drop the checker's own record quietly.
    const hidden = sortedEntries(st, dev).find((e) => e.hidden && e.dmaAddr === ev.dmaAddr);
    if (hidden !== undefined) retire(st, hidden);
    return;
  }
  checkUnmap(m, st, dev, {
    type,
    dmaAddr: ev.dmaAddr,
    size: ev.size,
    dir: ev.kind === 'coherent' ? DMA_BIDIRECTIONAL : ev.dir,
    sgCallEnts: ev.kind === 'noncontiguous' ? (ev.segments?.length ?? 1) : 0,
    attrs: ev.attrs,
    paddr: ev.phys,
  });
}

/** `dma_debug_device_change(BUS_NOTIFY_UNBOUND_DRIVER)`: live entries of a released device. */
export function onUnbound(m: Machine, st: DebugState, dev: number, driver: string): void {
  const d = devDebug(st, dev);
  const live = d.sorted.filter((e) => !e.hidden);
  if (live.length > 0) {
    // The kernel walks its 16384 buckets in order and names the last entry it met.
    const bucket = (e: Entry) => Math.floor(e.dmaAddr / 8192) % 16384;
    const last = live.reduce((a, b) =>
      bucket(b) > bucket(a) || (bucket(b) === bucket(a) && b.id > a.id) ? b : a,
    );
    d.driver = driver;
    err(
      m,
      st,
      dev,
      'DMA_LEAK_AT_UNBIND',
      {
        count: live.length,
        dmaAddr: last.dmaAddr,
        size: last.size,
        mappedDir: last.dir,
        mappedAs: last.type,
      },
      last,
    );
  }
  d.driver = null;
}
