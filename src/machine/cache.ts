/**
 * The CPU cache hierarchy: one write-back cache per machine holding real
 * bytes, with dirty state, LRU replacement inside a set, and PIPT or VIPT
 * indexing.
 *
 * A line is identified by its physical line number and its colour. The
 * colour is `((va - pa) mod congruence) / PAGE_SIZE`: always 0 on a PIPT
 * cache; on a VIPT cache two virtual aliases of one physical line share a
 * line only when congruent (same colour), otherwise each holds its own copy
 * and they diverge — the PA-RISC behaviour of seed 000. The set index is
 * derived from the physical line and the colour, so no virtual address needs
 * to be stored.
 *
 *     va ──colour──┐
 *     pa ──line────┴─► set ─► ways [tag, colour, dirty, lru, 64 B of data]
 *                                │ miss: fill from memory (victim: invalid way,
 *                                │       else least recently used; dirty → written back)
 *
 * A per-page count of valid lines lets device snooping and range maintenance
 * skip pages with nothing cached, so coherent DMA stays near memcpy speed.
 * Ordinary runs evict only for capacity; spontaneous evictions and
 * speculative fills are exported for the explorer.
 */

import type { Hash64 } from './hash.js';
import { mix32, xxh32Words } from './hash.js';
import type { Machine } from './machine.js';
import { memRead, memReadWords, memWriteWords } from './physmem.js';
import type { CacheGeometry } from './profiles.js';
import { PAGE_SIZE } from './types.js';

/** Selects every colour (all virtual aliases) in maintenance and snoops. */
export const ALL_COLOURS = -1;

export interface CacheStats {
  hits: number;
  misses: number;
  fills: number;
  writebacks: number;
  evictions: number;
  invalidations: number;
  dirtyDiscarded: number;
}

/** Cache state: plain typed arrays, one entry per line (`sets × ways`). */
export interface CacheState {
  readonly lineSize: number;
  readonly ways: number;
  readonly sets: number;
  /** Number of distinct colours (congruence / PAGE_SIZE); 1 on PIPT. */
  readonly colours: number;
  /** Distinct set positions one physical line can take over all colours. */
  readonly setPositions: number;
  /** Physical line number (pa / lineSize) of each line; -1 when invalid. */
  tag: Float64Array;
  colour: Uint16Array;
  dirty: Uint8Array;
  stamp: Uint32Array;
  data: Uint8Array;
  /** A 32-bit word view of `data` (derived: same buffer). */
  dataWords: Int32Array;
  /** LRU clock. */
  clock: number;
  /** Valid lines per page frame, all colours together, in 512-frame sections. */
  perPage: Map<number, Uint16Array>;
  /** Valid lines in the whole cache. */
  validLines: number;
  /** Per-set cached hash contributions and their dirty flags. */
  setHi: Uint32Array;
  setLo: Uint32Array;
  setHashDirty: Uint8Array;
  dirtySets: number[];
  sumHi: number;
  sumLo: number;
  stats: CacheStats;
}

/** Creates an empty cache of the given geometry. */
export function createCache(g: CacheGeometry): CacheState {
  const nLines = g.sizeBytes / g.lineSize;
  const sets = nLines / g.ways;
  const colours = g.indexing === 'vipt' ? g.congruence / PAGE_SIZE : 1;
  const setSpan = sets * g.lineSize;
  const setPositions = g.indexing === 'vipt' ? Math.max(1, setSpan / PAGE_SIZE) : 1;
  const data = new Uint8Array(g.sizeBytes);
  return {
    lineSize: g.lineSize,
    ways: g.ways,
    sets,
    colours,
    setPositions,
    tag: new Float64Array(nLines).fill(-1),
    colour: new Uint16Array(nLines),
    dirty: new Uint8Array(nLines),
    stamp: new Uint32Array(nLines),
    data,
    dataWords: new Int32Array(data.buffer),
    clock: 1,
    perPage: new Map(),
    validLines: 0,
    setHi: new Uint32Array(sets),
    setLo: new Uint32Array(sets),
    setHashDirty: new Uint8Array(sets),
    dirtySets: [],
    sumHi: 0,
    sumLo: 0,
    stats: { hits: 0, misses: 0, fills: 0, writebacks: 0, evictions: 0, invalidations: 0, dirtyDiscarded: 0 },
  };
}

/** The colour of an access through virtual address `va` to physical `pa`. */
export function colourOf(c: CacheState, va: number, pa: number): number {
  if (c.colours === 1) return 0;
  const span = c.colours * PAGE_SIZE;
  const d = (va - pa) % span;
  return Math.floor((d < 0 ? d + span : d) / PAGE_SIZE);
}

function setOf(c: CacheState, lineNo: number, colour: number): number {
  return (lineNo + colour * (PAGE_SIZE / c.lineSize)) % c.sets;
}

function touchSet(c: CacheState, set: number): void {
  if (c.setHashDirty[set] === 0) {
    c.setHashDirty[set] = 1;
    c.dirtySets.push(set);
  }
}

const PER_PAGE_SECTION = 512;

function bumpPage(c: CacheState, lineNo: number, delta: number): void {
  const pfn = Math.floor((lineNo * c.lineSize) / PAGE_SIZE);
  const si = Math.floor(pfn / PER_PAGE_SECTION);
  let sec = c.perPage.get(si);
  if (sec === undefined) {
    sec = new Uint16Array(PER_PAGE_SECTION);
    c.perPage.set(si, sec);
  }
  const i = pfn - si * PER_PAGE_SECTION;
  sec[i] = sec[i]! + delta;
  c.validLines += delta;
}

function pageHas(c: CacheState, pfn: number): boolean {
  const si = Math.floor(pfn / PER_PAGE_SECTION);
  const sec = c.perPage.get(si);
  return sec !== undefined && sec[pfn - si * PER_PAGE_SECTION]! > 0;
}

/** Index of the line holding (lineNo, colour), or -1. */
function lookup(c: CacheState, lineNo: number, colour: number): number {
  const base = setOf(c, lineNo, colour) * c.ways;
  const end = base + c.ways;
  for (let i = base; i < end; i++) {
    if (c.tag[i] === lineNo && c.colour[i] === colour) return i;
  }
  return -1;
}

function nextStamp(c: CacheState): number {
  if (c.clock >= 0xffff_fff0) renormaliseStamps(c);
  return c.clock++;
}

/** Keeps LRU order inside each set when the 32-bit clock would wrap. */
function renormaliseStamps(c: CacheState): void {
  const order: number[] = [];
  for (let s = 0; s < c.sets; s++) {
    const base = s * c.ways;
    order.length = 0;
    for (let w = 0; w < c.ways; w++) order.push(base + w);
    order.sort((a, b) => c.stamp[a]! - c.stamp[b]!);
    for (let r = 0; r < order.length; r++) c.stamp[order[r]!] = r + 1;
  }
  c.clock = c.ways + 1;
}

/** Writes a dirty line back to memory. */
function writeBack(
  m: Machine,
  c: CacheState,
  i: number,
  reason: 'evict' | 'clean' | 'flush' | 'spontaneous',
): void {
  const lineNo = c.tag[i]!;
  const off = i * c.lineSize;
  const pa = lineNo * c.lineSize;
  memWriteWords(m.hw.mem, pa, c.dataWords, off / 4, c.lineSize / 4);
  c.dirty[i] = 0;
  c.stats.writebacks++;
  if (m.bus.wants['cache-writeback']) {
    m.bus.emitTo(m.bus.listeners['cache-writeback'], {
      type: 'cache-writeback',
      pa,
      colour: c.colour[i]!,
      len: c.lineSize,
      reason,
      data: c.data.subarray(off, off + c.lineSize),
      step: m.clock.step,
      time: m.clock.time,
    });
  }
}

function dropLine(c: CacheState, i: number): void {
  const lineNo = c.tag[i]!;
  bumpPage(c, lineNo, -1);
  c.tag[i] = -1;
  c.dirty[i] = 0;
  c.colour[i] = 0;
  c.stamp[i] = 0;
  touchSet(c, Math.floor(i / c.ways));
}

/**
 * Returns the line for (lineNo, colour), allocating it on a miss. A miss
 * evicts the set's invalid or least recently used way (writing it back when
 * dirty) and fills from memory unless the caller overwrites the whole line.
 */
function lineFor(m: Machine, c: CacheState, lineNo: number, colour: number, willOverwrite: boolean): number {
  const set = setOf(c, lineNo, colour);
  const base = set * c.ways;
  const end = base + c.ways;
  let victim = -1;
  let oldest = 0xffff_ffff;
  for (let i = base; i < end; i++) {
    const t = c.tag[i]!;
    if (t === lineNo && c.colour[i] === colour) {
      c.stats.hits++;
      c.stamp[i] = nextStamp(c);
      return i;
    }
    if (t < 0) {
      if (oldest !== 0) {
        victim = i;
        oldest = 0;
      }
    } else if (c.stamp[i]! < oldest) {
      victim = i;
      oldest = c.stamp[i]!;
    }
  }
  c.stats.misses++;
  if (c.tag[victim]! >= 0) {
    c.stats.evictions++;
    if (c.dirty[victim] === 1) writeBack(m, c, victim, 'evict');
    dropLine(c, victim);
  }
  c.tag[victim] = lineNo;
  c.colour[victim] = colour;
  c.dirty[victim] = 0;
  c.stamp[victim] = nextStamp(c);
  bumpPage(c, lineNo, 1);
  touchSet(c, set);
  if (!willOverwrite) {
    memReadWords(m.hw.mem, lineNo * c.lineSize, c.dataWords, (victim * c.lineSize) / 4, c.lineSize / 4);
    c.stats.fills++;
    if (m.bus.wants['cache-fill']) {
      m.bus.emit({
        type: 'cache-fill',
        pa: lineNo * c.lineSize,
        colour,
        len: c.lineSize,
        speculative: false,
      });
    }
  }
  return victim;
}

/**
 * 32-bit word views for line copies (V8 copies words about four times faster
 * than bytes); derived data, kept outside the state.
 */
const wordViews = new WeakMap<ArrayBufferLike, Int32Array>();

function wordsOf(a: Uint8Array): Int32Array {
  let v = wordViews.get(a.buffer);
  if (v === undefined) {
    v = new Int32Array(a.buffer, 0, a.buffer.byteLength >>> 2);
    wordViews.set(a.buffer, v);
  }
  return v;
}

/**
 * Index of the line for (lineNo, colour) on a hit (updating LRU), else the
 * line allocated by `lineFor`. Inlined scan: this is the hottest path.
 */
function hitOrFill(
  m: Machine,
  c: CacheState,
  lineNo: number,
  colour: number,
  set: number,
  willOverwrite: boolean,
): number {
  const tag = c.tag;
  const col = c.colour;
  const end = set * c.ways + c.ways;
  for (let i = set * c.ways; i < end; i++) {
    if (tag[i] === lineNo && col[i] === colour) {
      c.stats.hits++;
      c.stamp[i] = c.clock >= 0xffff_fff0 ? nextStamp(c) : c.clock++;
      return i;
    }
  }
  return lineFor(m, c, lineNo, colour, willOverwrite);
}

/** Copies `n` bytes one at a time (short or unaligned pieces). */
function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number): void {
  for (let k = 0; k < n; k++) dst[dstOff + k] = src[srcOff + k]!;
}

/** Copies `nw` 32-bit words between word views. */
function copyWords(dst: Int32Array, di: number, src: Int32Array, si: number, nw: number): void {
  for (let k = 0; k < nw; k++) dst[di + k] = src[si + k]!;
}

/** True when a copy between `a[aOff…]` and the cache can go by words. */
function wordAligned(a: Uint8Array, aOff: number, pa: number, len: number): boolean {
  return len >= 64 && ((a.byteOffset + aOff) & 3) === 0 && (pa & 3) === 0 && (len & 3) === 0;
}

/** A cached CPU load: `len` bytes at `pa` through colour `colour` into `out[outOff…]`. */
export function cacheRead(
  m: Machine,
  pa: number,
  colour: number,
  out: Uint8Array,
  outOff: number,
  len: number,
): void {
  const c = m.hw.cache;
  const L = c.lineSize;
  let lineNo = Math.floor(pa / L);
  let inLine = pa - lineNo * L;
  let set = setOf(c, lineNo, colour);
  let done = 0;
  const words = wordAligned(out, outOff, pa, len);
  const cw = words ? wordsOf(c.data) : null;
  const ow = words ? wordsOf(out) : null;
  const obase = (out.byteOffset + outOff) >>> 2;
  while (done < len) {
    const n = Math.min(len - done, L - inLine);
    const i = hitOrFill(m, c, lineNo, colour, set, false);
    if (cw !== null) copyWords(ow!, obase + (done >>> 2), cw, (i * L + inLine) >>> 2, n >>> 2);
    else copyBytes(out, outOff + done, c.data, i * L + inLine, n);
    done += n;
    inLine = 0;
    lineNo++;
    set = set + 1 === c.sets ? 0 : set + 1;
  }
}

/** A cached CPU store (write-allocate, write-back). */
export function cacheWrite(
  m: Machine,
  pa: number,
  colour: number,
  src: Uint8Array,
  srcOff: number,
  len: number,
): void {
  const c = m.hw.cache;
  const L = c.lineSize;
  let lineNo = Math.floor(pa / L);
  let inLine = pa - lineNo * L;
  let set = setOf(c, lineNo, colour);
  let done = 0;
  const words = wordAligned(src, srcOff, pa, len);
  const cw = words ? wordsOf(c.data) : null;
  const sw = words ? wordsOf(src) : null;
  const sbase = (src.byteOffset + srcOff) >>> 2;
  while (done < len) {
    const n = Math.min(len - done, L - inLine);
    const i = hitOrFill(m, c, lineNo, colour, set, n === L);
    if (cw !== null) copyWords(cw, (i * L + inLine) >>> 2, sw!, sbase + (done >>> 2), n >>> 2);
    else copyBytes(c.data, i * L + inLine, src, srcOff + done, n);
    c.dirty[i] = 1;
    if (c.setHashDirty[set] === 0) touchSet(c, set);
    done += n;
    inLine = 0;
    lineNo++;
    set = set + 1 === c.sets ? 0 : set + 1;
  }
}

/**
 * Calls `fn(lineIndex)` for every valid line overlapping [pa, pa+len) of the
 * given colour (or of every colour), skipping pages with nothing cached.
 */
function forEachLine(c: CacheState, pa: number, len: number, colour: number, fn: (i: number) => void): void {
  if (len <= 0) return;
  const L = c.lineSize;
  const firstLine = Math.floor(pa / L);
  const lastLine = Math.floor((pa + len - 1) / L);
  const linesPerPage = PAGE_SIZE / L;
  let lineNo = firstLine;
  while (lineNo <= lastLine) {
    const pfn = Math.floor(lineNo / linesPerPage);
    const pageEndLine = (pfn + 1) * linesPerPage - 1;
    const stop = Math.min(lastLine, pageEndLine);
    if (!pageHas(c, pfn)) {
      lineNo = stop + 1;
      continue;
    }
    for (; lineNo <= stop; lineNo++) {
      if (colour !== ALL_COLOURS) {
        const i = lookup(c, lineNo, colour);
        if (i >= 0) fn(i);
        continue;
      }
      // Every colour: a line can sit in `setPositions` distinct sets.
      for (let k = 0; k < c.setPositions; k++) {
        const base = ((lineNo + k * linesPerPage) % c.sets) * c.ways;
        for (let i = base; i < base + c.ways; i++) if (c.tag[i] === lineNo) fn(i);
      }
    }
  }
}

/** Number of valid lines over [pa, pa+len) of a colour (or all); for tests and reports. */
export function cacheLinesPresent(m: Machine, pa: number, len: number, colour = ALL_COLOURS): number {
  let n = 0;
  forEachLine(m.hw.cache, pa, len, colour, () => {
    n++;
  });
  return n;
}

/** Number of dirty lines over [pa, pa+len) of a colour (or all). */
export function cacheDirtyLines(m: Machine, pa: number, len: number, colour = ALL_COLOURS): number {
  const c = m.hw.cache;
  let n = 0;
  forEachLine(c, pa, len, colour, (i) => {
    if (c.dirty[i] === 1) n++;
  });
  return n;
}

/** One cached copy of a line, as the cache holds it. */
export interface CachedLineCopy {
  /** Physical address of the line's first byte. */
  readonly pa: number;
  readonly colour: number;
  readonly dirty: boolean;
  /** A copy of the line's bytes. */
  readonly data: Uint8Array;
}

/**
 * Every cached copy of the line holding `pa` (one per colour on a VIPT
 * cache), for checkers and visualizers: no LRU update, no event, no step.
 */
export function cacheLineCopies(m: Machine, pa: number): CachedLineCopy[] {
  const c = m.hw.cache;
  const L = c.lineSize;
  const start = Math.floor(pa / L) * L;
  const out: CachedLineCopy[] = [];
  forEachLine(c, start, L, ALL_COLOURS, (i) => {
    out.push({
      pa: start,
      colour: c.colour[i]!,
      dirty: c.dirty[i] === 1,
      data: c.data.slice(i * L, i * L + L),
    });
  });
  return out;
}

/** Clean: write back dirty lines of the range, keep them valid (arm64 `dc cvac`). Returns lines written back. */
export function cacheClean(m: Machine, pa: number, len: number, colour = ALL_COLOURS): number {
  const c = m.hw.cache;
  let n = 0;
  forEachLine(c, pa, len, colour, (i) => {
    if (c.dirty[i] === 1) {
      writeBack(m, c, i, 'clean');
      touchSet(c, Math.floor(i / c.ways));
      n++;
    }
  });
  return n;
}

/** Clean and invalidate (arm64 `dc civac`, PA-RISC `fdc`). Returns lines dropped. */
export function cacheFlush(m: Machine, pa: number, len: number, colour = ALL_COLOURS): number {
  const c = m.hw.cache;
  let n = 0;
  forEachLine(c, pa, len, colour, (i) => {
    if (c.dirty[i] === 1) writeBack(m, c, i, 'flush');
    dropLine(c, i);
    c.stats.invalidations++;
    n++;
  });
  emitInvalidate(m, pa, len, colour, n, 0);
  return n;
}

/**
 * Invalidate: discard the lines of the range without writing them back
 * (PA-RISC `pdc`, arm64 `dc ivac`). With `edges: 'clean'` a line only
 * partly covered by the range is cleaned and invalidated instead, as
 * arm64's `dcache_inval_poc` does, so the bytes outside the range that
 * share it are not lost (but whatever the line held inside the range is
 * written over memory). Returns lines dropped.
 */
export function cacheInvalidate(
  m: Machine,
  pa: number,
  len: number,
  colour = ALL_COLOURS,
  edges: 'discard' | 'clean' = 'discard',
): number {
  const c = m.hw.cache;
  const L = c.lineSize;
  const end = pa + len;
  let n = 0;
  let discarded = 0;
  forEachLine(c, pa, len, colour, (i) => {
    if (c.dirty[i] === 1) {
      const start = c.tag[i]! * L;
      const partial = start < pa || start + L > end;
      if (partial && edges === 'clean') writeBack(m, c, i, 'flush');
      else {
        discarded++;
        c.stats.dirtyDiscarded++;
      }
    }
    dropLine(c, i);
    c.stats.invalidations++;
    n++;
  });
  emitInvalidate(m, pa, len, colour, n, discarded);
  return n;
}

function emitInvalidate(
  m: Machine,
  pa: number,
  len: number,
  colour: number,
  lines: number,
  dirty: number,
): void {
  if (lines > 0 && m.bus.wants['cache-invalidate']) {
    m.bus.emitTo(m.bus.listeners['cache-invalidate'], {
      type: 'cache-invalidate',
      pa,
      len,
      colour,
      lines,
      dirtyDiscarded: dirty,
      step: m.clock.step,
      time: m.clock.time,
    });
  }
}

/**
 * A device read that snoops: overlays the dirty cached bytes of [pa, pa+len)
 * of `colour` (or all colours) onto `out`, which already holds memory's bytes.
 */
export function cacheSnoopRead(
  m: Machine,
  pa: number,
  len: number,
  colour: number,
  out: Uint8Array,
  outOff: number,
): void {
  const c = m.hw.cache;
  if (c.validLines === 0) return;
  const L = c.lineSize;
  const cw = wordsOf(c.data);
  const ow = wordsOf(out);
  forEachLine(c, pa, len, colour, (i) => {
    if (c.dirty[i] === 0) return;
    const lineStart = c.tag[i]! * L;
    const from = Math.max(lineStart, pa);
    const to = Math.min(lineStart + L, pa + len);
    const at = out.byteOffset + outOff + (from - pa);
    // Whole lines into a word-aligned buffer go by words (a buffer the CPU filled is mostly dirty lines).
    if (((at | from | (to - from)) & 3) === 0)
      copyWords(ow, at >>> 2, cw, (i * L + (from - lineStart)) >>> 2, (to - from) >>> 2);
    else copyBytes(out, outOff + (from - pa), c.data, i * L + (from - lineStart), to - from);
  });
}

/**
 * A device write that snoops: updates the cached copies of [pa, pa+len) of
 * `colour` (or all colours) with the bytes written to memory, so the CPU sees
 * them; dirty lines stay dirty with the merged bytes.
 */
export function cacheSnoopWrite(
  m: Machine,
  pa: number,
  len: number,
  colour: number,
  src: Uint8Array,
  srcOff: number,
): void {
  const c = m.hw.cache;
  if (c.validLines === 0) return;
  const L = c.lineSize;
  const cw = wordsOf(c.data);
  const sw = wordsOf(src);
  forEachLine(c, pa, len, colour, (i) => {
    const lineStart = c.tag[i]! * L;
    const from = Math.max(lineStart, pa);
    const to = Math.min(lineStart + L, pa + len);
    const at = src.byteOffset + srcOff + (from - pa);
    if (((at | from | (to - from)) & 3) === 0)
      copyWords(cw, (i * L + (from - lineStart)) >>> 2, sw, at >>> 2, (to - from) >>> 2);
    else copyBytes(c.data, i * L + (from - lineStart), src, srcOff + (from - pa), to - from);
    touchSet(c, Math.floor(i / c.ways));
  });
}

/** True when any line of the page frame is cached (the per-page summary). */
export function cachePageHasLines(m: Machine, pfn: number): boolean {
  return pageHas(m.hw.cache, pfn);
}

/**
 * Explorer hook: a speculative fill of the line holding `pa` through a
 * cached mapping of colour `colour` (arm64 may fill lines through the linear
 * map at any time). Does nothing when the line is already present.
 */
export function cacheSpeculativeFill(m: Machine, pa: number, colour = 0): void {
  const c = m.hw.cache;
  const lineNo = Math.floor(pa / c.lineSize);
  if (lookup(c, lineNo, colour) >= 0) return;
  lineFor(m, c, lineNo, colour, true);
  const i = lookup(c, lineNo, colour);
  memRead(m.hw.mem, lineNo * c.lineSize, c.data, i * c.lineSize, c.lineSize);
  c.stats.fills++;
  if (m.bus.wants['cache-fill']) {
    m.bus.emit({ type: 'cache-fill', pa: lineNo * c.lineSize, colour, len: c.lineSize, speculative: true });
  }
}

/**
 * Explorer hook: a spontaneous eviction of the line holding `pa` (of
 * `colour`, or of every colour): written back when dirty, then dropped.
 * Returns the number of lines evicted.
 */
export function cacheEvict(m: Machine, pa: number, colour = ALL_COLOURS): number {
  const c = m.hw.cache;
  const lineNo = Math.floor(pa / c.lineSize);
  let n = 0;
  forEachLine(c, lineNo * c.lineSize, c.lineSize, colour, (i) => {
    if (c.dirty[i] === 1) writeBack(m, c, i, 'spontaneous');
    dropLine(c, i);
    c.stats.evictions++;
    n++;
  });
  return n;
}

/** Writes back and drops every line (a full `wbinvd`). */
export function cacheFlushAll(m: Machine): void {
  const c = m.hw.cache;
  for (let i = 0; i < c.tag.length; i++) {
    if (c.tag[i]! < 0) continue;
    if (c.dirty[i] === 1) writeBack(m, c, i, 'flush');
    dropLine(c, i);
  }
}

/** The cache's contribution to the machine hash, recomputing only changed sets. */
export function cacheHash(c: CacheState): Hash64 {
  const L = c.lineSize;
  const words = new Uint32Array(c.data.buffer, c.data.byteOffset, c.data.byteLength / 4);
  const order: number[] = [];
  for (const set of c.dirtySets) {
    c.setHashDirty[set] = 0;
    const base = set * c.ways;
    order.length = 0;
    for (let w = 0; w < c.ways; w++) if (c.tag[base + w]! >= 0) order.push(base + w);
    order.sort((a, b) => c.stamp[a]! - c.stamp[b]!);
    let hi = 0;
    let lo = 0;
    if (order.length > 0) {
      hi = mix32(set ^ 0x3c6ef372);
      lo = mix32(set + 0xa54ff53a);
      for (const i of order) {
        // Way position does not matter; LRU rank (the order) and contents do.
        const t = c.tag[i]!;
        const d = xxh32Words(words, (i * L) / 4, L / 4, t % 0x1_0000_0000);
        const meta = Math.floor(t / 0x1_0000_0000) ^ (c.colour[i]! << 12) ^ (c.dirty[i]! << 30);
        hi = mix32(hi ^ d ^ meta);
        lo = mix32((lo + d) ^ (t % 0x1_0000_0000) ^ meta);
      }
    }
    c.sumHi = (c.sumHi - c.setHi[set]! + hi) >>> 0;
    c.sumLo = (c.sumLo - c.setLo[set]! + lo) >>> 0;
    c.setHi[set] = hi >>> 0;
    c.setLo[set] = lo >>> 0;
  }
  c.dirtySets.length = 0;
  return { hi: c.sumHi, lo: c.sumLo };
}

function cloneSections(map: Map<number, Uint16Array>): Map<number, Uint16Array> {
  const out = new Map<number, Uint16Array>();
  for (const [k, v] of map) out.set(k, v.slice());
  return out;
}

/** A copy of the cache state (typed arrays copied, plain fields cloned). */
export function cacheClone(c: CacheState): CacheState {
  const data = c.data.slice();
  return {
    ...c,
    tag: c.tag.slice(),
    colour: c.colour.slice(),
    dirty: c.dirty.slice(),
    stamp: c.stamp.slice(),
    data,
    dataWords: new Int32Array(data.buffer),
    perPage: cloneSections(c.perPage),
    setHi: c.setHi.slice(),
    setLo: c.setLo.slice(),
    setHashDirty: c.setHashDirty.slice(),
    dirtySets: c.dirtySets.slice(),
    stats: { ...c.stats },
  };
}

/** Restores `into` from `from` in place (typed arrays overwritten, not replaced). */
export function cacheCopyInto(into: CacheState, from: CacheState): void {
  into.tag.set(from.tag);
  into.colour.set(from.colour);
  into.dirty.set(from.dirty);
  into.stamp.set(from.stamp);
  into.data.set(from.data);
  into.clock = from.clock;
  into.perPage = cloneSections(from.perPage);
  into.validLines = from.validLines;
  into.setHi.set(from.setHi);
  into.setLo.set(from.setLo);
  into.setHashDirty.set(from.setHashDirty);
  into.dirtySets = from.dirtySets.slice();
  into.sumHi = from.sumHi;
  into.sumLo = from.sumLo;
  into.stats = { ...from.stats };
}
