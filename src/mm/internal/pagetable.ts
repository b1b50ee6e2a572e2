/**
 * Page tables: per address space, leaves of 512 PTEs in typed arrays, keyed
 * by `vpn / 512`, created on first use and dropped when empty. A PTE is a
 * frame number and a byte of bits:
 *
 *     bit 0 present  1 read  2 write  3 exec  4 special  5 anon  6-7 attribute
 *
 * "special" is the kernel's pte_special: no page reference is held through
 * the PTE (remap_pfn_range, vmf_insert_pfn, the zero page, kernel mappings).
 * A non-special user PTE holds one reference on its page, dropped when the
 * PTE is cleared. "anon" marks a private anonymous page (an anonymous fault
 * or a copy-on-write copy): `unmap_mapping_range` with even_cows=0 keeps it.
 *
 * Clearing a cached PTE on a VIPT cache writes back and invalidates the
 * lines of that alias first (the kernel's flush_cache_page/flush_cache_range
 * before a TLB shoot-down), so a dead alias never holds dirty bytes.
 */

import {
  cacheFlush,
  colourOf,
  type Machine,
  type MemAttr,
  PAGE_SIZE,
  type Page,
  pageIsAllocated,
  pageIsReserved,
  pfnIsRam,
  putPage,
} from '../../machine/index.js';
import type { Pgprot } from '../pgprot.js';
import type { PtSection, SpaceState } from './state.js';

export const PTE_PRESENT = 1;
export const PTE_READ = 2;
export const PTE_WRITE = 4;
export const PTE_EXEC = 8;
export const PTE_SPECIAL = 16;
export const PTE_ANON = 32;
const ATTR_SHIFT = 6;
const ATTR_MASK = 3 << ATTR_SHIFT;
const LEAF = 512;

const ATTRS: readonly MemAttr[] = ['cached', 'write-combine', 'uncached'];

export function attrOfBits(bits: number): MemAttr {
  return ATTRS[(bits & ATTR_MASK) >> ATTR_SHIFT]!;
}

export function bitsOfAttr(attr: MemAttr): number {
  return ATTRS.indexOf(attr) << ATTR_SHIFT;
}

/** PTE bits for a protection (present, permissions and attribute). */
export function bitsOfProt(p: Pgprot): number {
  return (
    PTE_PRESENT |
    (p.read ? PTE_READ : 0) |
    (p.write ? PTE_WRITE : 0) |
    (p.exec ? PTE_EXEC : 0) |
    bitsOfAttr(p.attr)
  );
}

/** The leaf holding `va`'s PTE, created when `create`. */
export function leafFor(sp: SpaceState, va: number, create: boolean): PtSection | undefined {
  const key = Math.floor(va / (PAGE_SIZE * LEAF));
  let s = sp.pt.get(key);
  if (s === undefined && create) {
    s = { pfn: new Float64Array(LEAF).fill(-1), bits: new Uint8Array(LEAF), n: 0 };
    sp.pt.set(key, s);
  }
  return s;
}

function slot(va: number): number {
  return Math.floor(va / PAGE_SIZE) % LEAF;
}

/** The frame `va` maps to, or -1. */
export function ptePfn(sp: SpaceState, va: number): number {
  const s = leafFor(sp, va, false);
  return s === undefined ? -1 : s.pfn[slot(va)]!;
}

/** The PTE bits at `va` (0 when none). */
export function pteBits(sp: SpaceState, va: number): number {
  const s = leafFor(sp, va, false);
  return s === undefined ? 0 : s.bits[slot(va)]!;
}

/** Rewrites the bits of a present PTE (write-enable after a write fault). */
export function pteSetBits(sp: SpaceState, va: number, bits: number): void {
  const s = leafFor(sp, va, false);
  if (s !== undefined && s.pfn[slot(va)]! >= 0) s.bits[slot(va)] = bits | PTE_PRESENT;
}

/** True when the frame may be legitimately reached: not RAM (device memory), allocated, or reserved. */
export function frameLive(m: Machine, pfn: number): boolean {
  if (!pfnIsRam(m, pfn)) return true;
  return pageIsAllocated(m, pfn) || pageIsReserved(m, pfn);
}

// Event runs: consecutive PTEs with consecutive frames and equal bits become one event.
interface Run {
  mm: number;
  owner: string;
  va: number;
  pfn: number;
  pages: number;
  bits: number;
  reason: string;
}
let installRun: Run | null = null;
let removeRun: Run | null = null;

function flushInstall(m: Machine): void {
  const r = installRun;
  installRun = null;
  if (r === null) return;
  m.bus.emit({
    type: 'pte-install',
    mm: r.mm,
    owner: r.owner,
    va: r.va,
    pfn: r.pfn,
    pages: r.pages,
    attr: attrOfBits(r.bits),
    write: (r.bits & PTE_WRITE) !== 0,
    special: (r.bits & PTE_SPECIAL) !== 0,
    reason: r.reason,
  });
}

function flushRemove(m: Machine): void {
  const r = removeRun;
  removeRun = null;
  if (r === null) return;
  m.bus.emit({
    type: 'pte-remove',
    mm: r.mm,
    owner: r.owner,
    va: r.va,
    pfn: r.pfn,
    pages: r.pages,
    attr: attrOfBits(r.bits),
    special: (r.bits & PTE_SPECIAL) !== 0,
    reason: r.reason,
  });
}

function extend(run: Run | null, sp: SpaceState, va: number, pfn: number, bits: number, reason: string) {
  return (
    run !== null &&
    run.mm === sp.id &&
    run.reason === reason &&
    run.bits === bits &&
    run.va + run.pages * PAGE_SIZE === va &&
    run.pfn + run.pages === pfn
  );
}

/**
 * Writes PTEs for `count` pages from `va`, frames from `pfns(i)`. Every
 * target must be empty (callers check). Events are batched into runs.
 */
export function pteInstall(
  m: Machine,
  sp: SpaceState,
  owner: string,
  va: number,
  count: number,
  pfnAt: (i: number) => number,
  bits: number,
  reason: string,
): void {
  const want = m.bus.wants['pte-install'];
  for (let i = 0; i < count; i++) {
    const a = va + i * PAGE_SIZE;
    const pfn = pfnAt(i);
    const s = leafFor(sp, a, true)!;
    const k = slot(a);
    if (s.pfn[k]! < 0) {
      s.n++;
      sp.ptes++;
    }
    s.pfn[k] = pfn;
    s.bits[k] = bits | PTE_PRESENT;
    if (want) {
      if (extend(installRun, sp, a, pfn, bits | PTE_PRESENT, reason)) installRun!.pages++;
      else {
        flushInstall(m);
        installRun = { mm: sp.id, owner, va: a, pfn, pages: 1, bits: bits | PTE_PRESENT, reason };
      }
    }
  }
  if (want) flushInstall(m);
}

/**
 * Clears the present PTEs in [start, end) for which `keep` (when given)
 * says false. Drops the page reference of each non-special PTE and, on a
 * VIPT cache, flushes the alias's cached lines first. Returns PTEs cleared.
 */
export function pteClearRange(
  m: Machine,
  sp: SpaceState,
  owner: string,
  start: number,
  end: number,
  reason: string,
  keep?: (bits: number) => boolean,
): number {
  const want = m.bus.wants['pte-remove'];
  const vipt = m.hw.cache.colours > 1;
  const toPut: number[] = [];
  let cleared = 0;
  let a = start;
  while (a < end) {
    const key = Math.floor(a / (PAGE_SIZE * LEAF));
    const leafEnd = (key + 1) * PAGE_SIZE * LEAF;
    const s = sp.pt.get(key);
    if (s === undefined || s.n === 0) {
      a = leafEnd;
      continue;
    }
    const stop = Math.min(end, leafEnd);
    for (; a < stop; a += PAGE_SIZE) {
      const k = slot(a);
      const pfn = s.pfn[k]!;
      if (pfn < 0) continue;
      const bits = s.bits[k]!;
      if (keep?.(bits)) continue;
      const pa = pfn * PAGE_SIZE;
      if (vipt && attrOfBits(bits) === 'cached') cacheFlush(m, pa, PAGE_SIZE, colourOf(m.hw.cache, a, pa));
      s.pfn[k] = -1;
      s.bits[k] = 0;
      s.n--;
      sp.ptes--;
      cleared++;
      if (want) {
        if (extend(removeRun, sp, a, pfn, bits, reason)) removeRun!.pages++;
        else {
          flushRemove(m);
          removeRun = { mm: sp.id, owner, va: a, pfn, pages: 1, bits, reason };
        }
      }
      if ((bits & PTE_SPECIAL) === 0) toPut.push(pfn);
    }
    if (s.n === 0) sp.pt.delete(key);
  }
  if (want) flushRemove(m);
  // References go after the PTEs (and their events): a page is freed only once unmapped.
  for (const pfn of toPut) putPage(m, pfn as Page);
  return cleared;
}

/** Present PTEs in [start, end). */
export function pteCountRange(sp: SpaceState, start: number, end: number): number {
  let n = 0;
  let a = start;
  while (a < end) {
    const leafEnd = (Math.floor(a / (PAGE_SIZE * LEAF)) + 1) * PAGE_SIZE * LEAF;
    const s = leafFor(sp, a, false);
    if (s === undefined || s.n === 0) {
      a = leafEnd;
      continue;
    }
    const stop = Math.min(end, leafEnd);
    for (; a < stop; a += PAGE_SIZE) if (s.pfn[slot(a)]! >= 0) n++;
  }
  return n;
}

/** Calls `fn(va, pfn, bits)` for every present PTE of the space, in address order. */
export function forEachPte(sp: SpaceState, fn: (va: number, pfn: number, bits: number) => void): void {
  const keys = [...sp.pt.keys()].sort((x, y) => x - y);
  for (const key of keys) {
    const s = sp.pt.get(key)!;
    for (let k = 0; k < LEAF; k++) {
      const pfn = s.pfn[k]!;
      if (pfn >= 0) fn((key * LEAF + k) * PAGE_SIZE, pfn, s.bits[k]!);
    }
  }
}
