/**
 * get_user_pages and friends (mm/gup.c), mlock and populate (mm/mlock.c).
 *
 * GUP walks the range page by page: looks the VMA up (`check_vma_flags`
 * refuses VM_IO|VM_PFNMAP and mismatched permissions with -EFAULT), follows
 * the PTE, faults it in through the fault path when missing or read-only for
 * a write, and takes a reference (`FOLL_GET`) or a pin (`FOLL_PIN`: a
 * reference plus a pin count; the zero page is never pinned). A special PTE
 * without a struct page (VM_MIXEDMAP PFNs) fails. It returns the pages
 * done, or the error when none were. On a VIPT cache each returned page's
 * aliases are flushed (`flush_anon_page` + `flush_dcache_page`), so the
 * kernel alias is coherent afterwards — the behaviour seed 001 describes.
 *
 * Populate (MAP_POPULATE, mlock) faults pages in the same way without
 * taking references and skips VM_IO|VM_PFNMAP VMAs.
 */

import {
  ALL_COLOURS,
  apiCall,
  cacheFlush,
  DmalabError,
  EAGAIN,
  EEXIST,
  EFAULT,
  EHWPOISON,
  EINVAL,
  ENOMEM,
  ESRCH,
  formatHex,
  getPage,
  type Machine,
  PAGE_SIZE,
  type Page,
  putPage,
  reportFinding,
  TASK_SIZE,
  type UserVa,
  WARN,
} from '../machine/index.js';
import { FAULT_LIVELOCK } from './codes.js';
import {
  FAULT_FLAG_WRITE,
  FOLL_ANON,
  FOLL_FORCE,
  FOLL_GET,
  FOLL_HWPOISON,
  FOLL_LONGTERM,
  FOLL_NOFAULT,
  FOLL_PCI_P2PDMA,
  FOLL_PIN,
  FOLL_WRITE,
  isCowMapping,
  VM_FAULT_ERROR,
  VM_FAULT_HWPOISON,
  VM_FAULT_HWPOISON_LARGE,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_IO,
  VM_LOCKED,
  VM_LOCKED_MASK,
  VM_LOCKONFAULT,
  VM_MAYREAD,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_SPECIAL,
  VM_WRITE,
  vmFlagsAccessible,
} from './consts.js';
import { type FaultContext, handleMmFault } from './fault.js';
import type { Process } from './handles.js';
import { PTE_SPECIAL, PTE_WRITE, pteBits, ptePfn } from './internal/pagetable.js';
import { mmState, type ProcState, type VmaState } from './internal/state.js';
import { splitVma, vmaContaining, vmasIn } from './vma.js';

/** `check_vma_flags()`. */
function checkVmaFlags(v: VmaState, gup: number): number {
  const f = v.flags;
  if (f & (VM_IO | VM_PFNMAP)) return -EFAULT;
  if (gup & FOLL_ANON && v.kind !== 'anon') return -EFAULT;
  if (gup & FOLL_WRITE) {
    if (!(f & VM_WRITE)) {
      if (!(gup & FOLL_FORCE)) return -EFAULT;
      if (!isCowMapping(f)) return -EFAULT;
    }
  } else if (!(f & VM_READ)) {
    if (!(gup & FOLL_FORCE)) return -EFAULT;
    if (!(f & VM_MAYREAD)) return -EFAULT;
  }
  return 0;
}

/** `vm_fault_to_errno()`. */
function faultErrno(r: number, gup: number): number {
  if (r & VM_FAULT_OOM) return -ENOMEM;
  if (r & (VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE)) return gup & FOLL_HWPOISON ? -EHWPOISON : -EFAULT;
  return -EFAULT;
}

const MAX_RETRIES = 16;

/**
 * `__get_user_pages()` (internal): walks `nr` pages from `start`, faulting
 * as needed; fills `pages` when given. Returns pages done, or a negative
 * errno when none were.
 */
export function gupInner(
  m: Machine,
  p: ProcState,
  start: number,
  nr: number,
  gup: number,
  pages: (Page | null)[] | null,
  context: FaultContext,
): number {
  if (nr === 0) return 0;
  const st = mmState(m);
  const sp = st.spaces.get(p.space)!;
  const base = start - (start % PAGE_SIZE);
  const write = (gup & FOLL_WRITE) !== 0;
  let vma: VmaState | undefined;
  let ret = 0;
  let i = 0;
  for (; i < nr; i++) {
    const va = base + i * PAGE_SIZE;
    if (vma === undefined || va >= vma.end) {
      vma = va < TASK_SIZE ? vmaContaining(st, p, va) : undefined;
      if (vma === undefined) {
        ret = -EFAULT;
        break;
      }
      ret = checkVmaFlags(vma, gup);
      if (ret !== 0) break;
    }
    let pfn = -1;
    for (let attempt = 0; ; attempt++) {
      const cur = ptePfn(sp, va);
      if (cur >= 0 && (!write || (pteBits(sp, va) & PTE_WRITE) !== 0)) {
        pfn = cur;
        break;
      }
      if (gup & FOLL_NOFAULT) {
        ret = -EFAULT;
        break;
      }
      if (attempt === MAX_RETRIES) {
        reportFinding(
          m,
          FAULT_LIVELOCK.code,
          `${p.name}[${p.pid}]: get_user_pages at ${formatHex(va)} faults forever: the fault handler keeps reporting success without installing a usable PTE`,
          { details: { pid: p.pid, va } },
        );
        ret = -EFAULT;
        break;
      }
      const flags = write ? FAULT_FLAG_WRITE : 0;
      const r = handleMmFault(m, p, vma, va, flags, context);
      if (r & VM_FAULT_ERROR) {
        ret = faultErrno(r, gup);
        break;
      }
      if (r & VM_FAULT_RETRY) continue;
    }
    if (pfn < 0) break;
    const bits = pteBits(sp, va);
    const isZero = pfn === st.zeroPfn;
    if (bits & PTE_SPECIAL && !isZero) {
      // follow_pfn_pte: a PTE with no struct page behind it.
      if (pages !== null) {
        ret = gup & FOLL_GET ? -EFAULT : -EEXIST;
        break;
      }
    } else if (pages !== null) {
      if (gup & FOLL_PIN) {
        if (!isZero) {
          getPage(m, pfn as Page);
          st.pins.set(pfn, (st.pins.get(pfn) ?? 0) + 1);
        }
      } else if (gup & FOLL_GET) getPage(m, pfn as Page);
      pages[i] = pfn as Page;
      // flush_anon_page + flush_dcache_page: the user alias written back, the kernel alias coherent.
      if (m.hw.cache.colours > 1) cacheFlush(m, pfn * PAGE_SIZE, PAGE_SIZE, ALL_COLOURS);
    }
  }
  if (i > 0 && pages !== null && gup & FOLL_PIN && m.bus.wants['page-pin']) emitPins(m, p, pages, i, gup);
  return i > 0 ? i : ret;
}

function emitPins(m: Machine, p: ProcState, pages: (Page | null)[], n: number, gup: number): void {
  let runStart = 0;
  for (let k = 1; k <= n; k++) {
    if (k < n && pages[k] === (pages[k - 1] as number) + 1) continue;
    m.bus.emit({
      type: 'page-pin',
      pid: p.pid,
      owner: p.name,
      pfn: pages[runStart] as number,
      pages: k - runStart,
      longterm: (gup & FOLL_LONGTERM) !== 0,
      write: (gup & FOLL_WRITE) !== 0,
    });
    runStart = k;
  }
}

/** `is_valid_gup_args()`: WARN and -EINVAL for flag combinations the kernel refuses. */
function validGupArgs(m: Machine, gup: number, pages: unknown, toSet: number, call: string): number | null {
  if (!Number.isInteger(gup) || gup < 0)
    throw new DmalabError(`${call}: gupFlags must be FOLL_* bits, got ${gup}`);
  const warn = (what: string): null => {
    reportFinding(m, WARN.code, `${call}: ${what}`, { details: { gupFlags: gup } });
    return null;
  };
  if (gup & FOLL_PIN) return warn('FOLL_PIN is internal to GUP and may not be passed in');
  let flags = gup | toSet;
  if ((flags & (FOLL_PIN | FOLL_GET)) === (FOLL_PIN | FOLL_GET))
    return warn('FOLL_GET and FOLL_PIN together');
  if (!(flags & FOLL_PIN) && flags & FOLL_LONGTERM) return warn('FOLL_LONGTERM without pinning');
  if (pages !== null && !(flags & FOLL_PIN)) flags |= FOLL_GET;
  if (flags & (FOLL_GET | FOLL_PIN) && pages === null) return warn('no pages array for FOLL_GET/FOLL_PIN');
  if (flags & FOLL_LONGTERM && flags & FOLL_PCI_P2PDMA) return warn('FOLL_LONGTERM with FOLL_PCI_P2PDMA');
  return flags;
}

function gupEntry(
  proc: Process,
  start: number,
  nrPages: number,
  gupFlags: number,
  pages: (Page | null)[] | null,
  toSet: number,
  call: string,
): number {
  const m = proc.machine;
  return apiCall(m, call, () => {
    if (!Number.isInteger(start) || start < 0 || !Number.isInteger(nrPages) || nrPages < 0) {
      throw new DmalabError(`${call}: start and nrPages must be non-negative integers`);
    }
    const flags = validGupArgs(m, gupFlags, pages, toSet, call);
    if (flags === null) return -EINVAL;
    const p = proc.state;
    if (p.status !== 'running') return -ESRCH;
    return gupInner(m, p, start, nrPages, flags, pages, 'gup');
  });
}

/**
 * `get_user_pages()`: takes a reference on each of `nrPages` pages from
 * `start` of the process (faulting them in), storing them in `pages`.
 * Returns the number of pages, or a negative errno (-EFAULT on VM_IO and
 * VM_PFNMAP mappings). Release each page with `putPage`.
 */
export function getUserPages(
  proc: Process,
  start: UserVa | number,
  nrPages: number,
  gupFlags: number,
  pages: (Page | null)[] | null,
): number {
  return gupEntry(proc, start, nrPages, gupFlags, pages, 0, 'get_user_pages');
}

/** `get_user_pages_fast()`: the same walk (the lockless fast path falls back to it). */
export function getUserPagesFast(
  proc: Process,
  start: UserVa | number,
  nrPages: number,
  gupFlags: number,
  pages: (Page | null)[],
): number {
  return gupEntry(proc, start, nrPages, gupFlags, pages, 0, 'get_user_pages_fast');
}

/**
 * `pin_user_pages()`: like `getUserPages` with FOLL_PIN: for DMA into the
 * pages (`FOLL_LONGTERM` for pins held indefinitely, as RDMA does).
 * Release with `unpinUserPages`.
 */
export function pinUserPages(
  proc: Process,
  start: UserVa | number,
  nrPages: number,
  gupFlags: number,
  pages: (Page | null)[],
): number {
  return gupEntry(proc, start, nrPages, gupFlags, pages, FOLL_PIN, 'pin_user_pages');
}

/** `pin_user_pages_fast()`. */
export function pinUserPagesFast(
  proc: Process,
  start: UserVa | number,
  nrPages: number,
  gupFlags: number,
  pages: (Page | null)[],
): number {
  return gupEntry(proc, start, nrPages, gupFlags, pages, FOLL_PIN, 'pin_user_pages_fast');
}

function unpinOne(m: Machine, pfn: number): void {
  const st = mmState(m);
  if (pfn === st.zeroPfn) return;
  const n = st.pins.get(pfn) ?? 0;
  if (n === 0) {
    reportFinding(m, WARN.code, `unpin_user_page: page ${formatHex(pfn)} is not pinned`, {
      details: { pfn },
    });
    return;
  }
  if (n === 1) st.pins.delete(pfn);
  else st.pins.set(pfn, n - 1);
  putPage(m, pfn as Page);
  if (m.bus.wants['page-unpin']) m.bus.emit({ type: 'page-unpin', pfn, pages: 1 });
}

/**
 * `unpin_user_pages()`: releases pins taken by `pinUserPages` (null entries
 * skipped). The machine comes first: pages are bare frame numbers.
 */
export function unpinUserPages(m: Machine, pages: ArrayLike<Page | null>, npages: number): void {
  apiCall(m, 'unpin_user_pages', () => {
    if (!Number.isInteger(npages) || npages < 0) {
      reportFinding(m, WARN.code, `unpin_user_pages: npages ${npages} is an error value`, {
        details: { npages },
      });
      return;
    }
    for (let i = 0; i < npages; i++) {
      const pg = pages[i];
      if (pg !== null && pg !== undefined) unpinOne(m, pg);
    }
  });
}

/** `unpin_user_page()`. */
export function unpinUserPage(m: Machine, page: Page): void {
  apiCall(m, 'unpin_user_page', () => unpinOne(m, page));
}

/** FOLL_PIN pins currently held on a frame (dmalab helper). */
export function pagePinCount(m: Machine, page: Page | number): number {
  return mmState(m).pins.get(page) ?? 0;
}

/** Frames with at least one FOLL_PIN pin on the machine (dmalab helper). */
export function pinnedPageCount(m: Machine): number {
  return mmState(m).pins.size;
}

/**
 * `populate_vma_page_range()` over every VMA in [start, end) (`__mm_populate`):
 * VM_IO|VM_PFNMAP VMAs are skipped; private writable ones are written
 * (breaking copy-on-write), others read. Returns 0 or the first error.
 */
export function mmPopulate(
  m: Machine,
  p: ProcState,
  start: number,
  end: number,
  ignoreErrors: boolean,
): number {
  const st = mmState(m);
  for (let a = start; a < end; ) {
    const v = vmasIn(st, p, a, end)[0];
    if (v === undefined) break;
    const from = Math.max(a, v.start);
    const to = Math.min(end, v.end);
    a = to;
    if (v.flags & (VM_IO | VM_PFNMAP) || v.flags & VM_LOCKONFAULT) continue;
    if (!vmFlagsAccessible(v.flags)) {
      if (!ignoreErrors) return -EFAULT;
      continue;
    }
    const gup = (v.flags & (VM_WRITE | VM_SHARED)) === VM_WRITE ? FOLL_WRITE : FOLL_FORCE;
    const r = gupInner(m, p, from, (to - from) / PAGE_SIZE, gup, null, 'populate');
    if (r < 0 && !ignoreErrors) return r;
  }
  return 0;
}

function lockRange(m: Machine, p: ProcState, start: number, end: number, set: boolean): number {
  const st = mmState(m);
  // apply_vma_lock_flags: the range must be fully mapped.
  let cover = start;
  for (const v of vmasIn(st, p, start, end)) {
    if (v.start > cover) return -ENOMEM;
    cover = v.end;
  }
  if (cover < end) return -ENOMEM;
  for (const v0 of vmasIn(st, p, start, end)) {
    let v = v0;
    const want = set ? v.flags | VM_LOCKED : v.flags & ~VM_LOCKED_MASK;
    // mlock_fixup leaves VM_SPECIAL VMAs alone: nothing set, nothing split.
    if (want === v.flags || v.flags & VM_SPECIAL) continue;
    if (v.start < start) {
      const r = splitVma(m, p, v, start, true);
      if (typeof r === 'number') return r;
    }
    if (v.end > end) {
      const r = splitVma(m, p, v, end, false);
      if (typeof r === 'number') return r;
    }
    v = st.vmas.get(v.id)!;
    v.flags = want;
  }
  return 0;
}

/**
 * `mlock()`: sets VM_LOCKED on [start, start+len) (VM_SPECIAL mappings are
 * left alone, silently) and faults the range in. -ENOMEM when the range is
 * not fully mapped.
 */
export function mlock(proc: Process, start: UserVa | number, len: number): number {
  const m = proc.machine;
  return apiCall(m, 'mlock', () => {
    if (!Number.isInteger(start) || start < 0 || !Number.isInteger(len) || len < 0) return -EINVAL;
    const p = proc.state;
    if (p.status !== 'running') return -ESRCH;
    const from = start - (start % PAGE_SIZE);
    const end = from + Math.ceil((len + (start % PAGE_SIZE)) / PAGE_SIZE) * PAGE_SIZE;
    if (end === from) return 0;
    if (end > TASK_SIZE) return -ENOMEM;
    const r = lockRange(m, p, from, end, true);
    if (r !== 0) return r;
    const e = mmPopulate(m, p, from, end, false);
    // __mlock_posix_error_return.
    if (e === -EFAULT) return -ENOMEM;
    if (e === -ENOMEM) return -EAGAIN;
    return e;
  });
}

/** `munlock()`: clears VM_LOCKED on the range. */
export function munlock(proc: Process, start: UserVa | number, len: number): number {
  const m = proc.machine;
  return apiCall(m, 'munlock', () => {
    const p = proc.state;
    if (p.status !== 'running') return -ESRCH;
    const from = start - (start % PAGE_SIZE);
    const end = from + Math.ceil((len + (start % PAGE_SIZE)) / PAGE_SIZE) * PAGE_SIZE;
    if (end === from) return 0;
    return lockRange(m, p, from, end, false);
  });
}
