/**
 * The cache-flushing API for virtual aliases (Documentation/core-api/
 * cachetlb.rst). On PIPT profiles aliases share lines, so every call here is
 * a no-op, as the kernel's are on x86 and arm64. On VIPT (PA-RISC):
 *
 * - `flushDcachePage`: writes back and invalidates every alias of the page
 *   (kernel and user), so memory — and the kernel alias — are current;
 * - `flushKernelVmapRange`: writes back and invalidates a vmap alias's lines
 *   (before a device reads, or before the pages are used through another
 *   alias);
 * - `invalidateKernelVmapRange`: discards a vmap alias's lines without
 *   writing them back (after a device wrote, before reading through it);
 * - `flushCacheRange`/`flushCachePage`: a user mapping's alias.
 */

import {
  ALL_COLOURS,
  apiCall,
  cacheFlush,
  cacheInvalidate,
  colourOf,
  isLinearMapVa,
  type KernelVa,
  linearVirtToPhys,
  type Machine,
  PAGE_SIZE,
  type Page,
  type UserVa,
} from '../machine/index.js';
import type { Vma } from './handles.js';
import { ptePfn } from './internal/pagetable.js';
import { mmState } from './internal/state.js';
import { kernelPte } from './vmalloc.js';

function vipt(m: Machine): boolean {
  return m.hw.cache.colours > 1;
}

/** `flush_dcache_page()`: on a VIPT cache, every alias of the page written back and invalidated. */
export function flushDcachePage(m: Machine, page: Page): void {
  apiCall(m, 'flush_dcache_page', () => {
    if (vipt(m)) cacheFlush(m, page * PAGE_SIZE, PAGE_SIZE, ALL_COLOURS);
  });
}

function kernelRange(
  m: Machine,
  va: number,
  size: number,
  fn: (pa: number, colour: number, n: number) => void,
) {
  let done = 0;
  while (done < size) {
    const a = va + done;
    const n = Math.min(size - done, PAGE_SIZE - (a % PAGE_SIZE));
    let pa = -1;
    if (isLinearMapVa(a)) pa = linearVirtToPhys(a);
    else {
      const pte = kernelPte(m, a - (a % PAGE_SIZE));
      if (pte !== null) pa = pte.pfn * PAGE_SIZE + (a % PAGE_SIZE);
    }
    if (pa >= 0) fn(pa, colourOf(m.hw.cache, a, pa), n);
    done += n;
  }
}

/** `flush_kernel_vmap_range()`: writes back and invalidates the lines of a kernel alias range (VIPT only). */
export function flushKernelVmapRange(m: Machine, va: KernelVa | number, size: number): void {
  apiCall(m, 'flush_kernel_vmap_range', () => {
    if (vipt(m)) kernelRange(m, va, size, (pa, colour, n) => cacheFlush(m, pa, n, colour));
  });
}

/** `invalidate_kernel_vmap_range()`: discards the lines of a kernel alias range without write-back (VIPT only). */
export function invalidateKernelVmapRange(m: Machine, va: KernelVa | number, size: number): void {
  apiCall(m, 'invalidate_kernel_vmap_range', () => {
    if (vipt(m)) kernelRange(m, va, size, (pa, colour, n) => cacheInvalidate(m, pa, n, colour));
  });
}

function userRange(vma: Vma, start: number, end: number): void {
  const m = vma.machine;
  if (!vipt(m)) return;
  const st = mmState(m);
  const p = st.procs.get(vma.state.pid)!;
  const sp = st.spaces.get(p.space);
  if (sp === undefined) return;
  for (let a = start - (start % PAGE_SIZE); a < end; a += PAGE_SIZE) {
    const pfn = ptePfn(sp, a);
    if (pfn >= 0) cacheFlush(m, pfn * PAGE_SIZE, PAGE_SIZE, colourOf(m.hw.cache, a, pfn * PAGE_SIZE));
  }
}

/** `flush_cache_range()`: writes back and invalidates a user mapping's lines over [start, end) (VIPT only). */
export function flushCacheRange(vma: Vma, start: UserVa | number, end: UserVa | number): void {
  apiCall(vma.machine, 'flush_cache_range', () => userRange(vma, start, end));
}

/** `flush_cache_page()`: the same for the one page at `addr` (VIPT only). */
export function flushCachePage(vma: Vma, addr: UserVa | number, _pfn: number): void {
  apiCall(vma.machine, 'flush_cache_page', () => userRange(vma, addr, addr + 1));
}
