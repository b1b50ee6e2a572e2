/**
 * Helpers shared by the mm tests (not exported from the package): a
 * machine, a findings digest, and a consistency check of page tables
 * against VMAs, refcounts and the file mappings.
 */

import { createMachine, type MachineOptions } from '../src/boot.js';
import { type Machine, machineFindings, type Page, pageRefCount } from '../src/machine/index.js';
import { VM_PFNMAP } from '../src/mm/consts.js';
import type { Process } from '../src/mm/handles.js';
import { forEachPte, PTE_ANON, PTE_SPECIAL } from '../src/mm/internal/pagetable.js';
import { mmState } from '../src/mm/internal/state.js';

export const MiB = 1024 * 1024;

export function machine(profile = 'x86_64', extra: Omit<MachineOptions, 'profile'> = {}): Machine {
  return createMachine({ profile, ramBytes: 64 * MiB, ...extra });
}

/** `code: message` of every finding so far. */
export function findings(m: Machine): string[] {
  return machineFindings(m).map((f) => `${f.code}: ${f.message}`);
}

/**
 * Every invariant the mm state must keep; returns the violations (empty
 * when consistent). Checked for one process and the shared structures.
 */
export function mmInvariants(proc: Process): string[] {
  const m = proc.machine;
  const st = mmState(m);
  const p = proc.state;
  const bad: string[] = [];
  const vmas = p.vmas.map((id) => st.vmas.get(id)!);
  for (let i = 0; i < vmas.length; i++) {
    const v = vmas[i]!;
    if (v.start % 4096 !== 0 || v.end % 4096 !== 0 || v.end <= v.start) bad.push(`vma ${v.id} bad range`);
    if (i > 0 && vmas[i - 1]!.end > v.start) bad.push(`vma ${v.id} overlaps or is out of order`);
    if (v.file >= 0) {
      const f = st.files.get(v.file);
      if (f === undefined) bad.push(`vma ${v.id} maps a released file`);
      else if (!st.mappings.get(st.inodes.get(f.inode)!.mapping)!.vmas.includes(v.id))
        bad.push(`vma ${v.id} missing from i_mmap`);
    }
  }
  for (const mp of st.mappings.values()) {
    for (const id of mp.vmas) if (!st.vmas.has(id)) bad.push(`i_mmap holds dead vma ${id}`);
  }
  const sp = st.spaces.get(p.space);
  if (sp === undefined) return p.status === 'running' ? [...bad, 'running process without page tables'] : bad;
  const refs = new Map<number, number>();
  let n = 0;
  forEachPte(sp, (va, pfn, bits) => {
    n++;
    const v = vmas.find((x) => va >= x.start && va < x.end);
    if (v === undefined) {
      bad.push(`PTE at ${va.toString(16)} outside every VMA`);
      return;
    }
    if (v.flags & VM_PFNMAP && !(bits & PTE_SPECIAL))
      bad.push(`PTE at ${va.toString(16)} in a PFNMAP VMA is not special`);
    if (v.kind === 'anon' && !(v.flags & 8) && !(bits & PTE_ANON) && pfn !== st.zeroPfn)
      bad.push(`private anonymous PTE at ${va.toString(16)} is neither anon nor the zero page`);
    if (!(bits & PTE_SPECIAL)) refs.set(pfn, (refs.get(pfn) ?? 0) + 1);
  });
  if (n !== sp.ptes) bad.push(`PTE count ${sp.ptes} but ${n} present`);
  for (const [pfn, k] of refs) {
    if (pageRefCount(m, pfn as Page) < k)
      bad.push(`frame ${pfn} mapped ${k} times with ${pageRefCount(m, pfn as Page)} references`);
  }
  return bad;
}
