/**
 * The coherence oracle (DESIGN.md §6.3): a shadow memory where every agent
 * write is instantly visible to every agent. Each agent read is compared
 * with it; bytes that differ are "stale data observed" (broken), reported
 * once per read and range with who read, what they got and should have
 * got, the write that was hidden, what hid it (diagnosed from the machine's
 * state at that moment) and the call that would have prevented it.
 *
 * Addresses are logical: a device access to a swiotlb slot counts at the
 * original buffer the slot stands for while the bounce is live. Internal
 * copies (swiotlb's bounce memcpy) are neither reads nor writes. Write-backs
 * that put other bytes in memory, and invalidates that throw dirty lines
 * away, are remembered per 16-byte granule for the diagnosis.
 */

import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE } from '../dma/index.js';
import {
  type CacheInvalidateEvent,
  type CacheWritebackEvent,
  type CpuAccessEvent,
  cacheLineCopies,
  colourOf,
  type DeviceAccessEvent,
  formatHex,
  type Machine,
  memPeek,
} from '../machine/index.js';
import { STALE_DATA } from './codes.js';
import { entryAt } from './entries.js';
import { bytesHash, logRead } from './internal/readlog.js';
import {
  GRANULE,
  granuleInfo,
  shadowByte,
  shadowCompare,
  shadowNoteDiscard,
  shadowNoteLoss,
  shadowWrite,
} from './internal/shadow.js';
import { hexExcerpt, ownershipCalls } from './messages.js';
import { deviceOwnsAll, ownerOfPhys } from './ownership.js';
import { raise } from './report.js';
import { type Bounce, type Buf, type DebugState, nameId } from './state.js';

/** Agents whose accesses are the kernel's own copies, not anybody's reads or writes. */
const internalAgents = new Set<string>(['swiotlb']);

/** Declares an agent name as an internal copier (a layer's memcpy on another's behalf). */
export function registerInternalAgent(name: string): void {
  internalAgents.add(name);
}

/**
 * True for an internal copier's access: one of the kernel's own (address
 * space 0) by a registered name. A user process that happens to bear such a
 * name is still an agent of its own.
 */
export function isInternalAgent(agent: string, mm: number): boolean {
  return mm === 0 && internalAgents.has(agent);
}

const runs: number[] = [];

/** The name id of "cpu read by <agent>" or "device read by <device>" (reads outside any call), built once. */
function readerLabel(st: DebugState, kind: 0 | 1, agent: string): number {
  const cache = kind === 0 ? st.cpuReadLabels : st.deviceReadLabels;
  let id = cache.get(agent);
  if (id === undefined) {
    id = nameId(st, `${kind === 0 ? 'cpu read by' : 'device read by'} ${agent}`);
    cache.set(agent, id);
  }
  return id;
}

/** Index of the live bounce whose slot holds `pa`, or -1. */
export function bounceAt(bounces: readonly Bounce[], pa: number): number {
  let lo = 0;
  let hi = bounces.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bounces[mid]!.slot <= pa) lo = mid + 1;
    else hi = mid;
  }
  const i = lo - 1;
  return i >= 0 && pa < bounces[i]!.slot + bounces[i]!.size ? i : -1;
}

export function addBounce(st: DebugState, b: Bounce): void {
  const list = st.bounces;
  let i = list.length;
  while (i > 0 && list[i - 1]!.slot > b.slot) i--;
  list.splice(i, 0, b);
}

export function removeBounce(st: DebugState, slot: number): void {
  const i = st.bounces.findIndex((b) => b.slot === slot);
  if (i >= 0) st.bounces.splice(i, 1);
}

/** A CPU load or store by an agent. */
export function oracleCpu(m: Machine, st: DebugState, ev: CpuAccessEvent): void {
  const call = nameId(st, m.clock.call);
  if (ev.write) {
    shadowWrite(st.shadow, ev.pa, ev.data, ev.len, ev.step, nameId(st, ev.agent), call);
    return;
  }
  const label = m.clock.call !== '' ? call : readerLabel(st, 0, ev.agent);
  logRead(st.reads, ev.step, label, bytesHash(ev.data, ev.len));
  runs.length = 0;
  if (shadowCompare(st.shadow, ev.pa, ev.data, ev.len, runs) === 0) return;
  const found = runs.slice();
  reportRuns(m, st, found, ev.data, {
    kind: 'cpu',
    agent: ev.agent,
    dev: -1,
    pa: ev.pa,
    logical: ev.pa,
    va: ev.va,
    attr: ev.attr,
    bus: -1,
  });
}

/** A device access, piece by piece across bounce slots. */
export function oracleDevice(m: Machine, st: DebugState, dev: number, ev: DeviceAccessEvent): void {
  const agent = nameId(st, ev.device);
  if (!ev.write) logRead(st.reads, ev.step, readerLabel(st, 1, ev.device), bytesHash(ev.data, ev.len));
  let done = 0;
  while (done < ev.len) {
    const pa = ev.pa + done;
    const bi = bounceAt(st.bounces, pa);
    let n = ev.len - done;
    let logical = pa;
    if (bi >= 0) {
      const b = st.bounces[bi]!;
      logical = b.orig + (pa - b.slot);
      n = Math.min(n, b.slot + b.size - pa);
    } else {
      // Stop at the next slot, if the access runs into one.
      const next = st.bounces.find((b) => b.slot > pa && b.slot < pa + n);
      if (next !== undefined) n = next.slot - pa;
    }
    const data = ev.data.subarray(done, done + n);
    if (ev.write) shadowWrite(st.shadow, logical, data, n, ev.step, agent, 0);
    else {
      runs.length = 0;
      if (shadowCompare(st.shadow, logical, data, n, runs) > 0) {
        reportRuns(m, st, runs.slice(), data, {
          kind: 'device',
          agent: ev.device,
          dev,
          pa,
          logical,
          va: -1,
          attr: 'cached',
          bus: ev.bus + done,
        });
      }
    }
    done += n;
  }
}

/** A write-back: where it puts bytes other than the expected ones in memory, remember it. */
export function oracleWriteback(m: Machine, st: DebugState, ev: CacheWritebackEvent): void {
  if (ev.data === null) return;
  shadowNoteLoss(st.shadow, ev.pa, ev.data, ev.step, nameId(st, `${ev.reason}|${m.clock.call}`));
}

/** An invalidate that threw dirty lines away. */
export function oracleInvalidate(m: Machine, st: DebugState, ev: CacheInvalidateEvent): void {
  if (ev.dirtyDiscarded > 0) {
    shadowNoteDiscard(st.shadow, ev.pa, ev.len, ev.step, nameId(st, `invalidate|${m.clock.call}`));
  }
}

interface Reader {
  kind: 'cpu' | 'device';
  agent: string;
  dev: number;
  /** Physical address read (a bounce slot for a device), and the logical address it stands for. */
  pa: number;
  logical: number;
  va: number;
  attr: string;
  bus: number;
}

interface Diagnosis {
  cause: string;
  hiddenBy: string;
  prevent: string;
  /** The device the finding is about (-1: none). */
  dev: number;
  facts: Record<string, unknown>;
}

/** Groups the stale runs of one read by diagnosis and reports each group once. */
function reportRuns(m: Machine, st: DebugState, found: number[], data: Uint8Array, r: Reader): void {
  let group: { lo: number; hi: number; stale: number; d: Diagnosis; key: string } | null = null;
  const flush = () => {
    if (group !== null) report(m, st, r, data, group.lo, group.hi, group.stale, group.d);
  };
  for (let i = 0; i < found.length; i += 2) {
    const lo = found[i]!;
    const hi = found[i + 1]!;
    const d = diagnose(m, st, r, lo);
    const info = granuleInfo(st.shadow, r.logical + lo);
    const key = `${d.cause}|${info?.writerStep}|${info?.writerAgent}`;
    if (group !== null && group.key === key) {
      group.hi = hi;
      group.stale += hi - lo;
      continue;
    }
    flush();
    group = { lo, hi, stale: hi - lo, d, key };
  }
  flush();
}

function report(
  m: Machine,
  st: DebugState,
  r: Reader,
  data: Uint8Array,
  lo: number,
  hi: number,
  stale: number,
  d: Diagnosis,
): void {
  const n = Math.min(hi - lo, 16);
  const got = Array.from(data.subarray(lo, lo + n));
  const expected: number[] = [];
  for (let k = 0; k < n; k++) expected.push(shadowByte(st.shadow, r.logical + lo + k));
  const info = granuleInfo(st.shadow, r.logical + lo);
  const writer = info === null ? '?' : st.names[info.writerAgent]!;
  const writerCall = info === null ? '' : st.names[info.writerCall]!;
  const wStep = info?.writerStep ?? 0;
  const addr = r.kind === 'cpu' ? r.va + lo : r.bus + lo;
  const where = r.kind === 'cpu' ? `cpu address ${formatHex(addr)}` : `bus address ${formatHex(addr)}`;
  const logical = r.logical + lo;
  const byDevice = devId(m, writer) >= 0;
  const how = byDevice ? 'device DMA write' : `CPU store${writerCall !== '' ? ` in ${writerCall}` : ''}`;
  const text =
    `stale data observed: ${r.agent} read ${hi - lo} bytes at ${where} (phys ${formatHex(logical)}) ` +
    `and got ${hexExcerpt(got)} instead of ${hexExcerpt(expected)}; ` +
    `the write it missed: ${writer} (${how}) at step ${wStep}; hidden by ${d.hiddenBy}; ${d.prevent}`;
  raise(
    m,
    st,
    STALE_DATA,
    d.dev,
    text,
    {
      reader: {
        agent: r.agent,
        kind: r.kind,
        ...(r.kind === 'cpu' ? { va: addr, attr: r.attr } : { bus: addr }),
        phys: r.pa + lo,
        logical,
      },
      len: hi - lo,
      staleBytes: stale,
      got: hexExcerpt(got),
      expected: hexExcerpt(expected),
      hiddenWrite: { agent: writer, kind: byDevice ? 'device' : 'cpu', step: wStep, call: writerCall },
      hiddenBy: { cause: d.cause, ...d.facts },
      prevent: d.prevent,
    },
    r.agent,
  );
}

function devId(m: Machine, name: string): number {
  return m.hw.devices.findIndex((s) => s.name === name);
}

/** True when `bytes` (a line copy starting at `lineStart`) holds the expected bytes of granule `g`. */
function holdsExpected(
  st: DebugState,
  bytes: Uint8Array,
  lineStart: number,
  logicalLine: number,
  from: number,
  to: number,
): boolean {
  let any = false;
  for (let a = from; a < to; a++) {
    const want = shadowByte(st.shadow, logicalLine + (a - lineStart));
    if (want < 0) continue;
    any = true;
    if (bytes[a - lineStart] !== want) return false;
  }
  return any;
}

/** What hid the write that the byte at offset `lo` of the read should have shown, and what would have prevented it. */
function diagnose(m: Machine, st: DebugState, r: Reader, lo: number): Diagnosis {
  const pa = r.pa + lo;
  const logical = r.logical + lo;
  const info = granuleInfo(st.shadow, logical);
  const wStep = info?.writerStep ?? 0;
  const writer = info === null ? '' : st.names[info.writerAgent]!;
  const writerDev = devId(m, writer);
  const L = m.hw.cache.lineSize;
  const lineStart = Math.floor(pa / L) * L;
  // The granule's bytes, as far as they lie in this line.
  const gStart = Math.floor(pa / GRANULE) * GRANULE;
  const from = Math.max(gStart, lineStart);
  const to = Math.min(gStart + GRANULE, lineStart + L);
  const logicalLine = logical - (pa - lineStart);
  const mem = new Uint8Array(L);
  memPeek(m, lineStart, mem, 0, L);
  const memHas = holdsExpected(st, mem, lineStart, logicalLine, from, to);
  const copies = cacheLineCopies(m, pa);
  const dirtyWith = copies.find(
    (c) => c.dirty && holdsExpected(st, c.data, lineStart, logicalLine, from, to),
  );
  const loss =
    info !== null && info.lossStep >= wStep && info.lossStep > 0
      ? { step: info.lossStep, why: st.names[info.lossWhy]! }
      : null;
  const lossText = () => {
    const [reason, call] = loss!.why.split('|') as [string, string];
    const what =
      reason === 'invalidate'
        ? 'an invalidate that discarded the dirty line holding them'
        : `a write-back (${reason}) of a dirty line that put older bytes over them in memory`;
    return { what, call, reason };
  };

  if (r.kind === 'device') {
    const e = entryAt(st, r.dev, r.bus + lo);
    const buf = e?.buf ?? undefined;
    const calls = buf === undefined ? null : ownershipCalls(buf.type, buf.call);
    let prevent: string;
    if (buf === undefined || calls === null) {
      prevent = 'map the buffer with the DMA API (dma_map_single) so that the CPU’s writes reach the device';
    } else {
      const s = e!.bufOff + (r.bus + lo - e!.dmaAddr);
      if (!deviceOwnsAll(buf, s, s + 1))
        prevent = `${calls.forDevice} after the CPU writes and before the device reads`;
      else if (wStep >= buf.since && writerDev < 0) {
        prevent = `the CPU wrote after ${buf.sinceCall || 'the map'} (step ${buf.since}): write before it, or ${calls.forCpu}, write, ${calls.forDevice}`;
      } else prevent = `${calls.forDevice} after the CPU writes and before the device reads`;
    }
    const dev = r.dev;
    if (r.pa !== r.logical) {
      return {
        cause: 'bounce-slot',
        hiddenBy: `the bounce slot at ${formatHex(pa)}: it was copied from the original before this write`,
        prevent,
        dev,
        facts: { slot: pa, orig: logical },
      };
    }
    const coherence = m.hw.devices[r.dev]?.coherence;
    if (dirtyWith !== undefined) {
      if (coherence === 'ci') {
        return {
          cause: 'non-congruent-alias',
          hiddenBy: `a dirty cache line of colour ${dirtyWith.colour}; the coherence index of the IOMMU entry makes the device coherent with another colour only`,
          prevent:
            'write through the kernel alias the coherence index names, or flush the other alias (flush_dcache_page) first',
          dev,
          facts: { colour: dirtyWith.colour, line: lineStart },
        };
      }
      return {
        cause: 'dirty-line-not-snooped',
        hiddenBy: `a dirty CPU cache line at ${formatHex(lineStart)} that the device does not snoop`,
        prevent,
        dev,
        facts: { line: lineStart },
      };
    }
    if (loss !== null && !memHas) {
      const l = lossText();
      return {
        cause: l.reason === 'invalidate' ? 'discarded' : 'written-back-over',
        hiddenBy: `${l.what} (step ${loss.step}${l.call !== '' ? `, ${l.call}` : ''})`,
        prevent,
        dev,
        facts: { lossStep: loss.step, lossCall: l.call },
      };
    }
    return { cause: 'unknown', hiddenBy: 'a path the checker cannot name', prevent, dev, facts: {} };
  }

  // A CPU read.
  const owner = ownerOfPhys(st, pa);
  const buf: Buf | undefined = owner?.buf;
  const calls = buf === undefined ? null : ownershipCalls(buf.type, buf.call);
  const dev = buf?.dev ?? (writerDev >= 0 ? writerDev : -1);
  const readsDevWritable =
    buf !== undefined && (buf.dir === DMA_FROM_DEVICE || buf.dir === DMA_BIDIRECTIONAL);
  let prevent: string;
  if (owner?.deviceOwned && readsDevWritable && calls !== null) {
    prevent = `${calls.forCpu} (or ${calls.release}) before the CPU reads`;
  } else if (buf === undefined && writerDev >= 0) {
    prevent = 'map the buffer with the DMA API, and sync it for the CPU or unmap it before the CPU reads';
  } else prevent = '';

  const b = st.bounces.find((x) => pa >= x.orig && pa < x.orig + x.size);
  if (writerDev >= 0 && b !== undefined && !memHas && dirtyWith === undefined) {
    return {
      cause: 'bounce-slot',
      hiddenBy: `the bounce slot at ${formatHex(b.slot + (pa - b.orig))}: the device wrote there and nothing copied it back to the original`,
      prevent: prevent || `${calls?.forCpu ?? 'dma_sync_single_for_cpu'} before the CPU reads`,
      dev,
      facts: { slot: b.slot + (pa - b.orig), orig: pa },
    };
  }
  if (r.attr !== 'cached') {
    if (dirtyWith !== undefined) {
      return {
        cause: 'dirty-line-of-cached-alias',
        hiddenBy: `a dirty line of a cached alias (colour ${dirtyWith.colour}); ${r.attr} accesses do not look in the cache`,
        prevent:
          'write back the cached alias before using the uncached one (arch_dma_prep_coherent / flush_dcache_page), and do not mix the two',
        dev,
        facts: { colour: dirtyWith.colour, line: lineStart },
      };
    }
  } else {
    const colour = colourOf(m.hw.cache, r.va + lo, pa);
    const own = copies.find((c) => c.colour === colour);
    if (dirtyWith !== undefined && dirtyWith.colour !== colour) {
      return {
        cause: 'non-congruent-alias',
        hiddenBy: `a dirty line of colour ${dirtyWith.colour}, a non-congruent alias of the colour-${colour} address read`,
        prevent:
          'keep the aliases congruent, or flush the writer’s alias (flush_dcache_page, flush_kernel_vmap_range) before reading through another',
        dev,
        facts: { colour: dirtyWith.colour, readColour: colour, line: lineStart },
      };
    }
    if (own !== undefined && memHas) {
      return {
        cause: 'stale-cache-line',
        hiddenBy: `a stale cache line at ${formatHex(lineStart)}: the CPU’s cached copy predates the write, which memory holds`,
        prevent: prevent || 'invalidate the CPU’s copy before reading (dma_sync_single_for_cpu)',
        dev,
        facts: { line: lineStart, colour },
      };
    }
  }
  if (loss !== null && !memHas) {
    const l = lossText();
    let p = prevent;
    if (p === '' && calls !== null && buf !== undefined) {
      p =
        l.reason === 'invalidate'
          ? `the CPU wrote while the device owned the buffer: ${calls.forCpu} before writing`
          : `keep CPU-written data out of the buffer’s cache lines (align and size the buffer to dma_get_cache_alignment() = ${m.profile.archDmaMinalign} bytes), or do not write them while the device owns the buffer`;
    }
    return {
      cause: l.reason === 'invalidate' ? 'discarded' : 'written-back-over',
      hiddenBy: `${l.what} (step ${loss.step}${l.call !== '' ? `, ${l.call}` : ''})`,
      prevent: p || 'do not let cache maintenance of one buffer touch another’s bytes',
      dev,
      facts: { lossStep: loss.step, lossCall: l.call, line: lineStart },
    };
  }
  return {
    cause: 'unknown',
    hiddenBy: 'a path the checker cannot name',
    prevent: prevent || 'synchronize the buffer between its agents',
    dev,
    facts: {},
  };
}
