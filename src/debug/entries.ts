/**
 * dma-debug's entry store, per device: exact lookups by DMA address
 * (unmap, free, dma_mapping_error) and containing lookups (sync), with the
 * kernel's best-fit rule and its quirks (kernel/dma/debug.c:
 * `__hash_bucket_find`, `bucket_find_contain`).
 *
 * The kernel hashes entries into 16384 buckets by `dev_addr >> 13` and,
 * for a sync, walks buckets downward from the synced address until one
 * yields a match. dmalab keeps each device's entries in one array sorted
 * by address (equal addresses in creation order, the kernel's list order)
 * and reproduces the walk's outcome: candidates are grouped by the bucket
 * the walk would meet them in, nearest first, and the best-fit rule runs
 * per group.
 */

import type { DebugState, DevDebug, Entry, EntryType } from './state.js';
import { devDebug } from './state.js';

const HASH_SIZE = 16384;
const HASH_FN_SHIFT_SIZE = 8192;

/** The fields a lookup compares (a stack `struct dma_debug_entry ref` in the kernel). */
export interface Ref {
  dmaAddr: number;
  size: number;
  type: EntryType | 'single';
  dir: number;
  sgCallEnts: number;
}

/** Index of the first entry in `sorted` whose address is greater than `addr`. */
function upperBound(sorted: readonly Entry[], addr: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.dmaAddr <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first entry in `sorted` whose address is not below `addr`. */
function lowerBound(sorted: readonly Entry[], addr: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.dmaAddr < addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function addEntry(st: DebugState, e: Entry): void {
  const d = devDebug(st, e.dev);
  const sorted = d.sorted;
  const at = upperBound(sorted, e.dmaAddr);
  if (at === sorted.length) sorted.push(e);
  else sorted.splice(at, 0, e);
  if (e.size > d.maxSize) d.maxSize = e.size;
}

export function removeEntry(st: DebugState, e: Entry): void {
  const sorted = devDebug(st, e.dev).sorted;
  for (let i = lowerBound(sorted, e.dmaAddr); i < sorted.length && sorted[i]!.dmaAddr === e.dmaAddr; i++) {
    if (sorted[i] === e) {
      if (i === sorted.length - 1) sorted.pop();
      else sorted.splice(i, 1);
      return;
    }
  }
}

/** The match level of the kernel's best fit: how many of size, type, direction and nents agree. */
function level(e: Entry, ref: Ref): number {
  return (
    (e.size === ref.size ? 1 : 0) +
    (e.type === ref.type ? 1 : 0) +
    (e.dir === ref.dir ? 1 : 0) +
    (e.sgCallEnts === ref.sgCallEnts ? 1 : 0)
  );
}

/** The kernel's best fit among matches: a perfect fit at once, else the single match, else none. */
function bestFit(matches: readonly Entry[], from: number, to: number, ref: Ref): Entry | null {
  let best: Entry | null = null;
  let bestLvl = -1;
  let count = 0;
  for (let i = from; i < to; i++) {
    const e = matches[i]!;
    if (e.hidden) continue;
    count++;
    const lvl = level(e, ref);
    if (lvl === 4) return e;
    if (lvl > bestLvl) {
      bestLvl = lvl;
      best = e;
    }
  }
  return count === 1 ? best : null;
}

/** Index in the device's sorted entries of the first one at exactly `dmaAddr` (or where it would be). */
export function firstAt(sorted: readonly Entry[], dmaAddr: number): number {
  return lowerBound(sorted, dmaAddr);
}

const NO_ENTRIES: Entry[] = [];

/** The device's live entries sorted by address (a shared empty array when none). */
export function sortedEntries(st: DebugState, dev: number): Entry[] {
  return st.devs[dev]?.sorted ?? NO_ENTRIES;
}

/** `bucket_find_exact`: the entry of this device at exactly `ref.dmaAddr`. */
export function findExact(st: DebugState, dev: number, ref: Ref): Entry | null {
  const sorted = sortedEntries(st, dev);
  const from = lowerBound(sorted, ref.dmaAddr);
  let to = from;
  while (to < sorted.length && sorted[to]!.dmaAddr === ref.dmaAddr) to++;
  return from === to ? null : bestFit(sorted, from, to, ref);
}

/** `bucket_find_contain`: the entry of this device containing `[ref.dmaAddr, +ref.size)`. */
export function findContaining(st: DebugState, dev: number, ref: Ref): Entry | null {
  const d = st.devs[dev];
  if (d === undefined) return null;
  const end = ref.dmaAddr + ref.size;
  const sorted = d.sorted;
  // The common case: one entry contains the range, and it is the nearest below.
  const i = upperBound(sorted, ref.dmaAddr) - 1;
  if (i >= 0 && sorted.length === 1) {
    const e = sorted[i]!;
    return e.dmaAddr + e.size >= end && !e.hidden ? e : null;
  }
  const cands = candidates(d, ref.dmaAddr, end);
  if (cands.length <= 1) return bestFit(cands, 0, cands.length, ref);
  // Group by the step at which the downward bucket walk meets each entry.
  const top = Math.floor(ref.dmaAddr / HASH_FN_SHIFT_SIZE);
  const stepOf = (e: Entry) => (top - Math.floor(e.dmaAddr / HASH_FN_SHIFT_SIZE)) % HASH_SIZE;
  cands.sort((a, b) => stepOf(a) - stepOf(b) || a.id - b.id);
  for (let i = 0; i < cands.length; ) {
    const s = stepOf(cands[i]!);
    let j = i;
    while (j < cands.length && stepOf(cands[j]!) === s) j++;
    const hit = bestFit(cands, i, j, ref);
    if (hit !== null) return hit;
    i = j;
  }
  return null;
}

/** Live, visible entries of a device that contain `[start, end)`. */
function candidates(d: DevDebug, start: number, end: number): Entry[] {
  const out: Entry[] = [];
  const sorted = d.sorted;
  const floor = end - d.maxSize;
  for (let i = upperBound(sorted, start) - 1; i >= 0; i--) {
    const e = sorted[i]!;
    if (e.dmaAddr < floor) break;
    if (e.dmaAddr + e.size >= end && !e.hidden) out.push(e);
  }
  return out;
}

/**
 * The live entry of a device holding bus address `bus` (the latest made
 * when several do), for device accesses; null when none does.
 */
export function entryAt(st: DebugState, dev: number, bus: number): Entry | null {
  const d = st.devs[dev];
  if (d === undefined) return null;
  const sorted = d.sorted;
  const floor = bus - d.maxSize;
  let found: Entry | null = null;
  for (let i = upperBound(sorted, bus) - 1; i >= 0; i--) {
    const e = sorted[i]!;
    if (e.dmaAddr < floor) break;
    if (bus < e.dmaAddr + e.size && (found === null || e.id > found.id)) found = e;
  }
  return found;
}
