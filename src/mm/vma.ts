/**
 * VMAs of a process: lookup, insertion, splitting (with `may_split` and
 * `open`), removal (PTEs zapped, then `close`, then the file reference
 * dropped — the kernel's order), and the choice of a free address range
 * (`get_unmapped_area`), including PA-RISC's colouring of shared mappings.
 */

import { EINVAL, ENOMEM, type Machine, mix32, PAGE_SIZE, TASK_SIZE, type UserVa } from '../machine/index.js';
import { MAP_FIXED, MAP_SHARED, MMAP_MIN_ADDR } from './consts.js';
import { type VmOperationsStruct, vmaHandle } from './handles.js';
import { fput, getFile } from './internal/files.js';
import { pteClearRange } from './internal/pagetable.js';
import { tableById } from './internal/registry.js';
import { type MmState, mmState, nextId, type ProcState, type VmaState } from './internal/state.js';

/** Top of the top-down mmap search (below the stack, as `mmap_base`). */
export const MMAP_BASE = TASK_SIZE - 2 ** 32;

export function vmOpsOf(v: VmaState): VmOperationsStruct | null {
  return v.ops < 0 ? null : tableById<VmOperationsStruct>(v.ops);
}

/** The VMA containing `va` (`vma_lookup`), or undefined. */
export function vmaContaining(st: MmState, p: ProcState, va: number): VmaState | undefined {
  const ids = p.vmas;
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = st.vmas.get(ids[mid]!)!;
    if (va < v.start) hi = mid - 1;
    else if (va >= v.end) lo = mid + 1;
    else return v;
  }
  return undefined;
}

/** The first VMA ending above `va` (`find_vma`), or undefined. */
export function vmaAbove(st: MmState, p: ProcState, va: number): VmaState | undefined {
  for (const id of p.vmas) {
    const v = st.vmas.get(id)!;
    if (v.end > va) return v;
  }
  return undefined;
}

/** The VMAs overlapping [start, end), in address order. */
export function vmasIn(st: MmState, p: ProcState, start: number, end: number): VmaState[] {
  const out: VmaState[] = [];
  for (const id of p.vmas) {
    const v = st.vmas.get(id)!;
    if (v.end > start && v.start < end) out.push(v);
  }
  return out;
}

function emitMap(m: Machine, p: ProcState, v: VmaState, reason: 'mmap' | 'split'): void {
  if (!m.bus.wants['vma-map']) return;
  const st = mmState(m);
  const file = v.file < 0 ? null : st.inodes.get(st.files.get(v.file)!.inode)!.path;
  m.bus.emit({
    type: 'vma-map',
    pid: p.pid,
    owner: p.name,
    start: v.start,
    end: v.end,
    flags: v.flags,
    pgoff: v.pgoff,
    file,
    reason,
  });
}

function emitUnmap(
  m: Machine,
  p: ProcState,
  start: number,
  end: number,
  reason: 'munmap' | 'exit' | 'split' | 'mmap-failed',
) {
  if (m.bus.wants['vma-unmap'])
    m.bus.emit({ type: 'vma-unmap', pid: p.pid, owner: p.name, start, end, reason });
}

function sortedInsert(st: MmState, p: ProcState, id: number): void {
  const start = st.vmas.get(id)!.start;
  let i = p.vmas.length;
  while (i > 0 && st.vmas.get(p.vmas[i - 1]!)!.start > start) i--;
  p.vmas.splice(i, 0, id);
}

function fileMappingId(st: MmState, v: VmaState): number {
  return v.file < 0 ? -1 : st.inodes.get(st.files.get(v.file)!.inode)!.mapping;
}

/**
 * Creates a VMA in a process (and in its file's `i_mmap`), taking a file
 * reference. The `vma-map` event is left to the caller (`announceVma`): a new
 * mapping becomes visible once the driver's `mmap` has run, with its final flags.
 */
export function insertVma(m: Machine, p: ProcState, init: Omit<VmaState, 'id' | 'pid'>): VmaState {
  const st = mmState(m);
  const v: VmaState = { ...init, id: nextId(st), pid: p.pid };
  st.vmas.set(v.id, v);
  sortedInsert(st, p, v.id);
  if (v.file >= 0) {
    getFile(m, v.file);
    st.mappings.get(fileMappingId(st, v))!.vmas.push(v.id);
  }
  return v;
}

/** Emits the `vma-map` event of a new mapping. */
export function announceVma(m: Machine, p: ProcState, v: VmaState): void {
  emitMap(m, p, v, 'mmap');
}

function detach(st: MmState, p: ProcState, v: VmaState): void {
  p.vmas.splice(p.vmas.indexOf(v.id), 1);
  if (v.file >= 0) {
    const mp = st.mappings.get(fileMappingId(st, v))!;
    mp.vmas.splice(mp.vmas.indexOf(v.id), 1);
  }
}

/**
 * `remove_vma()` after the PTEs are gone: `close` (then no more hooks), the
 * file reference dropped, the VMA freed.
 */
export function removeVma(
  m: Machine,
  p: ProcState,
  v: VmaState,
  reason: 'munmap' | 'exit' | 'mmap-failed',
): void {
  const st = mmState(m);
  detach(st, p, v);
  // A mapping whose mmap failed was never visible, and gets no more hooks.
  if (reason !== 'mmap-failed') {
    emitUnmap(m, p, v.start, v.end, reason);
    vmOpsOf(v)?.close?.(vmaHandle(m, v.id));
  }
  v.ops = -1;
  if (v.file >= 0) fput(m, v.file);
  st.vmas.delete(v.id);
}

/**
 * `__split_vma()`: asks `may_split`, duplicates the VMA (file reference
 * and private data shared), calls `open` on the new piece, then shrinks the
 * original. With `newBelow` the new VMA is [start, addr), else [addr, end).
 * Returns the new VMA, or a negative errno.
 */
export function splitVma(
  m: Machine,
  p: ProcState,
  v: VmaState,
  addr: number,
  newBelow: boolean,
): VmaState | number {
  const ops = vmOpsOf(v);
  if (ops?.maySplit !== undefined) {
    const err = ops.maySplit(vmaHandle(m, v.id), addr as UserVa);
    if (err !== 0) return err;
  }
  const oldStart = v.start;
  const oldEnd = v.end;
  const shift = (addr - v.start) / PAGE_SIZE;
  const st = mmState(m);
  const init = { ...v } as Omit<VmaState, 'id' | 'pid'> & { id?: number; pid?: number };
  delete init.id;
  delete init.pid;
  if (newBelow) init.end = addr;
  else {
    init.start = addr;
    init.pgoff = v.pgoff + shift;
  }
  init.prot = { ...v.prot };
  // The event order reads as: the old range goes, two pieces come.
  emitUnmap(m, p, oldStart, oldEnd, 'split');
  const nv: VmaState = { ...(init as Omit<VmaState, 'id' | 'pid'>), id: nextId(st), pid: p.pid };
  st.vmas.set(nv.id, nv);
  if (nv.file >= 0) {
    getFile(m, nv.file);
    st.mappings.get(fileMappingId(st, nv))!.vmas.push(nv.id);
  }
  ops?.open?.(vmaHandle(m, nv.id));
  if (newBelow) {
    v.start = addr;
    v.pgoff += shift;
  } else v.end = addr;
  // Re-sort: the original moved.
  p.vmas.splice(p.vmas.indexOf(v.id), 1);
  sortedInsert(st, p, v.id);
  sortedInsert(st, p, nv.id);
  emitMap(m, p, newBelow ? nv : v, 'split');
  emitMap(m, p, newBelow ? v : nv, 'split');
  return nv;
}

/**
 * `do_vmi_munmap()`: removes [start, end) from a process, splitting VMAs at
 * the edges, zapping every PTE first, then closing each removed VMA.
 * Returns 0 or the negative errno of a refused split.
 */
export function unmapRange(
  m: Machine,
  p: ProcState,
  start: number,
  end: number,
  reason: 'munmap' | 'exit',
): number {
  const st = mmState(m);
  let victims = vmasIn(st, p, start, end);
  if (victims.length === 0) return 0;
  const first = victims[0]!;
  if (first.start < start) {
    const r = splitVma(m, p, first, start, true);
    if (typeof r === 'number') return r;
  }
  const last = victims[victims.length - 1]!;
  if (last.end > end) {
    const r = splitVma(m, p, last, end, false);
    if (typeof r === 'number') return r;
  }
  victims = vmasIn(st, p, start, end);
  const sp = st.spaces.get(p.space)!;
  for (const v of victims) pteClearRange(m, sp, p.name, v.start, v.end, reason);
  for (const v of victims) removeVma(m, p, v, reason);
  return 0;
}

/** True when no VMA overlaps [start, end). */
export function rangeFree(st: MmState, p: ProcState, start: number, end: number): boolean {
  return vmasIn(st, p, start, end).length === 0;
}

/** PA-RISC's artificial page offset of a file (`GET_FILP_PGOFF`: from the address of its mapping). */
export function filpColourPages(m: Machine, mappingId: number): number {
  return mix32(mappingId * 0x9e3779b1) % m.hw.cache.colours;
}

/**
 * `get_unmapped_area()`: where a new mapping of `len` bytes goes. Top-down
 * from `MMAP_BASE`, honouring a free hint. On a VIPT cache (PA-RISC's
 * `arch_get_unmapped_area`), file and shared mappings are placed so that
 * `addr ≡ (filp_pgoff + pgoff) * PAGE_SIZE (mod congruence)`: every
 * mapping of one file offset is congruent with every other; and a
 * `MAP_FIXED|MAP_SHARED` file mapping off that colour is refused with -EINVAL.
 */
export function getUnmappedArea(
  m: Machine,
  p: ProcState,
  mappingId: number,
  addr: number,
  len: number,
  pgoff: number,
  flags: number,
): number {
  const st = mmState(m);
  if (len > TASK_SIZE) return -ENOMEM;
  const vipt = m.hw.cache.colours > 1;
  const C = m.profile.cache.congruence;
  const isFile = mappingId >= 0;
  const colourAlign = vipt && (isFile || (flags & MAP_SHARED) !== 0);
  const offset = (((isFile ? filpColourPages(m, mappingId) : 0) + pgoff) * PAGE_SIZE) % C;
  if (flags & MAP_FIXED) {
    if (TASK_SIZE - len < addr) return vipt ? -EINVAL : -ENOMEM;
    if (vipt && flags & MAP_SHARED && isFile && (((addr - offset) % C) + C) % C !== 0) return -EINVAL;
    return addr;
  }
  if (addr !== 0) {
    const a = colourAlign ? Math.ceil(addr / C) * C + offset : Math.ceil(addr / PAGE_SIZE) * PAGE_SIZE;
    if (TASK_SIZE - len >= a && a >= MMAP_MIN_ADDR && rangeFree(st, p, a, a + len)) return a;
  }
  const step = colourAlign ? C : PAGE_SIZE;
  const off = colourAlign ? offset : 0;
  const fits = (lo: number, hi: number): number => {
    // Highest a in [lo, hi - len] with a ≡ off (mod step).
    const top = hi - len;
    if (top < lo) return -1;
    const a = Math.floor((top - off) / step) * step + off;
    return a >= lo ? a : -1;
  };
  // Top-down below MMAP_BASE, through the gaps between VMAs.
  let hi = MMAP_BASE;
  for (let i = p.vmas.length - 1; i >= -1; i--) {
    const v = i >= 0 ? st.vmas.get(p.vmas[i]!)! : null;
    if (v !== null && v.start >= MMAP_BASE) continue;
    const lo = v === null ? MMAP_MIN_ADDR : Math.max(MMAP_MIN_ADDR, v.end);
    const a = fits(lo, hi);
    if (a >= 0) return a;
    if (v === null) break;
    hi = Math.min(hi, v.start);
  }
  // Bottom-up above it, as the kernel falls back to.
  let lo = MMAP_BASE;
  for (const id of p.vmas) {
    const v = st.vmas.get(id)!;
    if (v.end <= lo) continue;
    const start = colourAlign ? Math.ceil((lo - off) / step) * step + off : lo;
    if (start + len <= v.start) return start;
    lo = Math.max(lo, v.end);
  }
  const start = colourAlign ? Math.ceil((lo - off) / step) * step + off : lo;
  return start + len <= TASK_SIZE ? start : -ENOMEM;
}
