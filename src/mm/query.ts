/**
 * Read-only views of the mm state for tests, the checker and reports
 * (dmalab helpers, plus the kernel's `find_vma`/`vma_lookup`).
 */

import type { Machine, MemAttr, UserVa } from '../machine/index.js';
import { type File, type Process, procHandle, type Vma, vmaHandle } from './handles.js';
import {
  attrOfBits,
  forEachPte,
  PTE_ANON,
  PTE_SPECIAL,
  PTE_WRITE,
  pteBits,
  ptePfn,
} from './internal/pagetable.js';
import { KERNEL_SPACE, mmState } from './internal/state.js';
import { filpColourPages, vmaAbove, vmaContaining } from './vma.js';

/** A PTE as plain facts. */
export interface PteInfo {
  pfn: number;
  attr: MemAttr;
  write: boolean;
  /** No page reference is held through it (remap_pfn_range, vmf_insert_pfn, the zero page, kernel mappings). */
  special: boolean;
  /** A private anonymous page (an anonymous fault or a copy-on-write copy). */
  anon: boolean;
}

function info(pfn: number, bits: number): PteInfo {
  return {
    pfn,
    attr: attrOfBits(bits),
    write: (bits & PTE_WRITE) !== 0,
    special: (bits & PTE_SPECIAL) !== 0,
    anon: (bits & PTE_ANON) !== 0,
  };
}

/** The PTE mapping the page of `va` in the process, or null; no fault is taken (dmalab helper). */
export function pteLookup(proc: Process, va: UserVa | number): PteInfo | null {
  const sp = mmState(proc.machine).spaces.get(proc.state.space);
  if (sp === undefined) return null;
  const page = va - (va % 4096);
  const pfn = ptePfn(sp, page);
  return pfn < 0 ? null : info(pfn, pteBits(sp, page));
}

/** The kernel page table's PTE for a vmalloc/vmap/ioremap address, or null (dmalab helper). */
export function kernelPteLookup(m: Machine, va: number): PteInfo | null {
  const sp = mmState(m).spaces.get(KERNEL_SPACE)!;
  const page = va - (va % 4096);
  const pfn = ptePfn(sp, page);
  return pfn < 0 ? null : info(pfn, pteBits(sp, page));
}

/** Every present PTE of the process, in address order, as `[va, info]` (dmalab helper). */
export function processPtes(proc: Process): [UserVa, PteInfo][] {
  const sp = mmState(proc.machine).spaces.get(proc.state.space);
  const out: [UserVa, PteInfo][] = [];
  if (sp !== undefined) forEachPte(sp, (va, pfn, bits) => out.push([va as UserVa, info(pfn, bits)]));
  return out;
}

/** Number of present PTEs in the process, 0 once it has exited (dmalab helper). */
export function processPteCount(proc: Process): number {
  return mmState(proc.machine).spaces.get(proc.state.space)?.ptes ?? 0;
}

/** `vma_lookup()`: the VMA containing `addr`, or null. */
export function vmaLookup(proc: Process, addr: UserVa | number): Vma | null {
  const v = vmaContaining(mmState(proc.machine), proc.state, addr);
  return v === undefined ? null : vmaHandle(proc.machine, v.id);
}

/** `find_vma()`: the first VMA ending above `addr`, or null. */
export function findVma(proc: Process, addr: UserVa | number): Vma | null {
  const v = vmaAbove(mmState(proc.machine), proc.state, addr);
  return v === undefined ? null : vmaHandle(proc.machine, v.id);
}

/** The process's VMAs in address order (dmalab helper; the kernel walks them with `for_each_vma`). */
export function processVmas(proc: Process): Vma[] {
  return proc.state.vmas.map((id) => vmaHandle(proc.machine, id));
}

/** Every process the machine has spawned (running or not), by pid (dmalab helper). */
export function processes(m: Machine): Process[] {
  return [...mmState(m).procs.keys()].map((pid) => procHandle(m, pid));
}

/**
 * Where shared mappings of `file` land modulo the cache congruence: the
 * virtual offset of file offset 0 (PA-RISC's `arch_get_unmapped_area`
 * colouring; always 0 on PIPT caches). A kernel alias at this colour is
 * congruent with every user mapping of the file.
 */
export function sharedMappingColour(file: File): number {
  const m = file.machine;
  if (m.hw.cache.colours === 1) return 0;
  return (filpColourPages(m, file.fMapping.id) * 4096) % m.profile.cache.congruence;
}
