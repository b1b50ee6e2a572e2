/**
 * What drivers use to put memory into a process (mm/memory.c): whole-range
 * PFN maps at mmap time, fault-time insertion of PFNs and pages, and PTE
 * shoot-down.
 *
 * - `remapPfnRange` writes every PTE at once (special, no page references)
 *   and marks the VMA `VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP`; a PTE
 *   already present there is a kernel BUG.
 * - `vmfInsertPfn*`/`vmfInsertMixed` never overwrite a present PTE: they
 *   report VM_FAULT_NOPAGE either way (the race of two faults, seed 004).
 * - `vmInsertPage` inserts a refcounted page; a present PTE is left alone and
 *   the call returns -EBUSY, which fault handlers treat as success.
 * - `zapVmaPtes` and `unmapMappingRange` remove PTEs so the next access
 *   faults again; the latter reaches every VMA of a file in every process.
 */

import {
  apiCall,
  BUG,
  DmalabError,
  EBUSY,
  EFAULT,
  EINVAL,
  ENXIO,
  formatHex,
  getPage,
  type KernelVa,
  type Machine,
  PAGE_SIZE,
  type Page,
  pageAlign,
  pageRefCount,
  pfnIsRam,
  pfnValid,
  reportFinding,
  ULONG_MAX,
  type UserVa,
  WARN,
} from '../machine/index.js';
import {
  isCowMapping,
  VM_DMA_COHERENT,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_NOPAGE,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_USERMAP,
  type VmFaultT,
} from './consts.js';
import type { AddressSpace, Vma } from './handles.js';
import {
  attrOfBits,
  bitsOfProt,
  PTE_ANON,
  PTE_EXEC,
  PTE_READ,
  PTE_SPECIAL,
  PTE_WRITE,
  pteBits,
  pteClearRange,
  pteCountRange,
  pteInstall,
  ptePfn,
} from './internal/pagetable.js';
import { mmRuntime, mmState, type VmaState } from './internal/state.js';
import { assertPgprot, type Pgprot, pgprotDecrypted } from './pgprot.js';
import { findArea, vmallocToPage } from './vmalloc.js';

function checkPfn(pfn: number, what: string): void {
  if (!Number.isInteger(pfn) || pfn < 0)
    throw new DmalabError(`${what}: pfn must be a non-negative integer, got ${pfn}`);
}

/**
 * x86 PAT (`track_pfn_remap`/`pfnmap_setup_cachemode`): a PFN map of RAM
 * takes the memory type the RAM already has — write-back, as dmalab never
 * changes it — whatever the driver asked for, so x86 never gets a cached and
 * an uncached alias of RAM this way. Device memory keeps the request.
 */
function patProt(m: Machine, pfn: number, pages: number, prot: Pgprot): Pgprot {
  if (m.profile.arch !== 'x86' || prot.attr === 'cached') return prot;
  for (let i = 0; i < pages; i++) if (pfnIsRam(m, pfn + i)) return { ...prot, attr: 'cached' };
  return prot;
}

function bug(m: Machine, message: string, details: Record<string, unknown>): void {
  reportFinding(m, BUG.code, `kernel BUG at mm/memory.c: ${message}`, { details });
}

function spaceOf(m: Machine, v: VmaState) {
  const st = mmState(m);
  const p = st.procs.get(v.pid)!;
  return { p, sp: st.spaces.get(p.space)! };
}

function remapInner(vma: Vma, addr: number, pfn: number, size: number, prot: Pgprot, call: string): number {
  const m = vma.machine;
  assertPgprot(prot);
  checkPfn(pfn, call);
  const v = vma.state;
  if (addr % PAGE_SIZE !== 0) {
    reportFinding(m, WARN.code, `${call}: unaligned address ${formatHex(addr)}`, { details: { addr } });
    return -EINVAL;
  }
  const end = addr + pageAlign(size);
  if (!(end > addr)) {
    bug(m, `${call}: empty range at ${formatHex(addr)} [size=${size}]`, { addr, size });
    return -EINVAL;
  }
  if (isCowMapping(v.flags)) {
    if (addr !== v.start || end !== v.end) return -EINVAL;
    v.pgoff = pfn;
  }
  if (addr < v.start || end > v.end) {
    bug(
      m,
      `${call}: range ${formatHex(addr)}-${formatHex(end)} is outside the VMA ${formatHex(v.start)}-${formatHex(v.end)}`,
      {
        addr,
        end,
      },
    );
    return -EINVAL;
  }
  v.flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
  const { p, sp } = spaceOf(m, v);
  if (pteCountRange(sp, addr, end) > 0) {
    let at = addr;
    while (ptePfn(sp, at) < 0) at += PAGE_SIZE;
    bug(
      m,
      `remap_pte_range: a PTE is already present at ${formatHex(at)} [pfn=${formatHex(ptePfn(sp, at))}]`,
      {
        addr: at,
      },
    );
    return -EINVAL;
  }
  const pages = (end - addr) / PAGE_SIZE;
  const bits = bitsOfProt(patProt(m, pfn, pages, prot)) | PTE_SPECIAL;
  pteInstall(m, sp, p.name, addr, pages, (i) => pfn + i, bits, 'remap');
  return 0;
}

/**
 * `remap_pfn_range()`: maps frames `pfn…` at [addr, addr + size) of the VMA
 * right away, with `prot` (its attribute included). Works for memory with or
 * without struct page. Returns 0 or a negative errno; a PTE already present
 * in the range is a kernel BUG (-EINVAL).
 */
export function remapPfnRange(
  vma: Vma,
  addr: UserVa | number,
  pfn: number,
  size: number,
  prot: Pgprot,
): number {
  return apiCall(vma.machine, 'remap_pfn_range', () =>
    remapInner(vma, addr, pfn, size, prot, 'remap_pfn_range'),
  );
}

/** `io_remap_pfn_range()`: `remap_pfn_range` with `pgprot_decrypted(prot)`. */
export function ioRemapPfnRange(
  vma: Vma,
  addr: UserVa | number,
  pfn: number,
  size: number,
  prot: Pgprot,
): number {
  return apiCall(vma.machine, 'io_remap_pfn_range', () =>
    remapInner(vma, addr, pfn, size, pgprotDecrypted(prot), 'io_remap_pfn_range'),
  );
}

/**
 * `vm_iomap_memory()`: maps the physical region [start, start+len) into the
 * whole VMA, with `vm_pgoff` as a page offset into the region.
 */
export function vmIomapMemory(vma: Vma, start: number, len: number): number {
  return apiCall(vma.machine, 'vm_iomap_memory', () => {
    if (!Number.isInteger(start) || start < 0 || !Number.isInteger(len) || len < 0) return -EINVAL;
    const total = len + (start % PAGE_SIZE);
    let pfn = Math.floor(start / PAGE_SIZE);
    let pages = Math.ceil(total / PAGE_SIZE);
    const v = vma.state;
    if (v.pgoff > pages) return -EINVAL;
    pfn += v.pgoff;
    pages -= v.pgoff;
    const vmLen = v.end - v.start;
    if (vmLen / PAGE_SIZE > pages) return -EINVAL;
    return remapInner(vma, v.start, pfn, vmLen, pgprotDecrypted(v.prot), 'io_remap_pfn_range');
  });
}

function insertPfn(vma: Vma, addr: number, pfn: number, prot: Pgprot): VmFaultT {
  const m = vma.machine;
  const v = vma.state;
  const { p, sp } = spaceOf(m, v);
  const page = addr - (addr % PAGE_SIZE);
  if (ptePfn(sp, page) >= 0) return VM_FAULT_NOPAGE;
  pteInstall(m, sp, p.name, page, 1, () => pfn, bitsOfProt(patProt(m, pfn, 1, prot)) | PTE_SPECIAL, 'insert');
  return VM_FAULT_NOPAGE;
}

/**
 * `vmf_insert_pfn_prot()`: from a fault handler, maps one frame at `addr`
 * with `prot`. The VMA must have exactly one of VM_PFNMAP and VM_MIXEDMAP
 * (else a kernel BUG), a PFNMAP VMA must not be copy-on-write, and a
 * MIXEDMAP VMA must use `vmfInsertMixed` for frames with a struct page.
 * Returns VM_FAULT_NOPAGE (also when a PTE is already there: it is left
 * alone) or VM_FAULT_SIGBUS.
 */
export function vmfInsertPfnProt(vma: Vma, addr: UserVa | number, pfn: number, prot: Pgprot): VmFaultT {
  const m = vma.machine;
  return apiCall(m, 'vmf_insert_pfn_prot', () => {
    assertPgprot(prot);
    checkPfn(pfn, 'vmf_insert_pfn_prot');
    const v = vma.state;
    const pfnmap = (v.flags & VM_PFNMAP) !== 0;
    const mixed = (v.flags & VM_MIXEDMAP) !== 0;
    if (pfnmap === mixed) {
      bug(m, 'vmf_insert_pfn_prot: the VMA needs exactly one of VM_PFNMAP and VM_MIXEDMAP', {
        flags: v.flags,
      });
      return VM_FAULT_SIGBUS;
    }
    if (pfnmap && isCowMapping(v.flags)) {
      bug(m, 'vmf_insert_pfn_prot: VM_PFNMAP on a copy-on-write mapping', { flags: v.flags });
      return VM_FAULT_SIGBUS;
    }
    if (mixed && pfnValid(m, pfn)) {
      bug(
        m,
        `vmf_insert_pfn_prot: frame ${formatHex(pfn)} has a struct page in a VM_MIXEDMAP VMA (use vmf_insert_mixed)`,
        {
          pfn,
        },
      );
      return VM_FAULT_SIGBUS;
    }
    if (addr < v.start || addr >= v.end) return VM_FAULT_SIGBUS;
    return insertPfn(vma, addr, pfn, prot);
  });
}

/** `vmf_insert_pfn()`: `vmfInsertPfnProt` with the VMA's `vm_page_prot`. */
export function vmfInsertPfn(vma: Vma, addr: UserVa | number, pfn: number): VmFaultT {
  return apiCall(vma.machine, 'vmf_insert_pfn', () => vmfInsertPfnProt(vma, addr, pfn, vma.vmPageProt));
}

/**
 * `vmf_insert_mixed()`: maps a frame in a VM_MIXEDMAP VMA (with or without a
 * struct page; with PTE special support it is inserted as a PFN). A present
 * PTE counts as success. VM_FAULT_SIGBUS outside the VMA or without
 * VM_MIXEDMAP.
 */
export function vmfInsertMixed(vma: Vma, addr: UserVa | number, pfn: number): VmFaultT {
  return apiCall(vma.machine, 'vmf_insert_mixed', () => {
    checkPfn(pfn, 'vmf_insert_mixed');
    const v = vma.state;
    if ((v.flags & VM_MIXEDMAP) === 0) return VM_FAULT_SIGBUS;
    if (addr < v.start || addr >= v.end) return VM_FAULT_SIGBUS;
    return insertPfn(vma, addr, pfn, v.prot);
  });
}

function insertPageInner(vma: Vma, addr: number, page: Page): number {
  const m = vma.machine;
  const v = vma.state;
  if (addr < v.start || addr >= v.end) return -EFAULT;
  if (!pfnValid(m, page) || pageRefCount(m, page) === 0) return -EINVAL;
  // validate_page_before_insert: slab pages and anonymous pages are refused.
  if (mmState(m).kmem.slabs.has(page) || page === mmState(m).zeroPfn) return -EINVAL;
  if ((v.flags & VM_MIXEDMAP) === 0) {
    if (mmRuntime(m).mmapLock !== 'write') {
      bug(
        m,
        'vm_insert_page: mmap_lock not held for writing on a VMA without VM_MIXEDMAP (call it from ->mmap, or use vmf_insert_* from a fault handler)',
        { addr },
      );
      return -EINVAL;
    }
    if (v.flags & VM_PFNMAP) {
      bug(m, 'vm_insert_page: the VMA is VM_PFNMAP', { addr });
      return -EINVAL;
    }
    v.flags |= VM_MIXEDMAP;
  }
  const { p, sp } = spaceOf(m, v);
  const at = addr - (addr % PAGE_SIZE);
  if (ptePfn(sp, at) >= 0) return -EBUSY;
  getPage(m, page);
  pteInstall(m, sp, p.name, at, 1, () => page, bitsOfProt(v.prot), 'insert');
  return 0;
}

/**
 * `vm_insert_page()`: maps one refcounted page (the PTE takes a reference).
 * A PTE already present is left alone and -EBUSY returned — a fault handler
 * treats that as success (the race two faults can run). Without
 * VM_MIXEDMAP the VMA gets it, which is only legal from `->mmap`.
 */
export function vmInsertPage(vma: Vma, addr: UserVa | number, page: Page): number {
  return apiCall(vma.machine, 'vm_insert_page', () => insertPageInner(vma, addr, page));
}

function mapPages(vma: Vma, pages: ArrayLike<Page>, num: number, offset: number): number {
  const v = vma.state;
  const count = (v.end - v.start) / PAGE_SIZE;
  if (num > pages.length)
    throw new DmalabError(`vm_map_pages: num ${num} exceeds the ${pages.length} pages given`);
  if (offset >= num) return -ENXIO;
  if (count > num - offset) return -ENXIO;
  for (let i = 0; i < count; i++) {
    const r = insertPageInner(vma, v.start + i * PAGE_SIZE, pages[offset + i]!);
    if (r < 0) return r;
  }
  return 0;
}

/**
 * `vm_map_pages()`: maps `pages` into the whole VMA starting at page
 * `vm_pgoff` of the array (-ENXIO when they do not cover it), page by page
 * with `vm_insert_page`. Used by `dma_mmap_noncontiguous`.
 */
export function vmMapPages(vma: Vma, pages: ArrayLike<Page>, num: number): number {
  return apiCall(vma.machine, 'vm_map_pages', () => mapPages(vma, pages, num, vma.state.pgoff));
}

/** `vm_map_pages_zero()`: `vmMapPages` ignoring `vm_pgoff`. */
export function vmMapPagesZero(vma: Vma, pages: ArrayLike<Page>, num: number): number {
  return apiCall(vma.machine, 'vm_map_pages_zero', () => mapPages(vma, pages, num, 0));
}

/**
 * `remap_vmalloc_range()`: maps a `vmallocUser` area (VM_USERMAP), from page
 * `pgoff` of it, into the whole VMA with `vm_insert_page`.
 */
export function remapVmallocRange(vma: Vma, addr: KernelVa | number, pgoff: number): number {
  const m = vma.machine;
  return apiCall(m, 'remap_vmalloc_range', () => {
    const v = vma.state;
    const size = v.end - v.start;
    if (addr % PAGE_SIZE !== 0 || !Number.isInteger(pgoff) || pgoff < 0) return -EINVAL;
    const area = findArea(m, addr);
    if (area === undefined || (area.flags & (VM_USERMAP | VM_DMA_COHERENT)) === 0) return -EINVAL;
    const off = pgoff * PAGE_SIZE;
    if (size + off > area.size) return -EINVAL;
    for (let i = 0; i < size / PAGE_SIZE; i++) {
      const page = vmallocToPage(m, addr + off + i * PAGE_SIZE);
      if (page === null) return -EINVAL;
      const r = insertPageInner(vma, v.start + i * PAGE_SIZE, page);
      if (r !== 0) return r;
    }
    v.flags |= VM_DONTEXPAND | VM_DONTDUMP;
    return 0;
  });
}

/**
 * `zap_vma_ptes()`: removes the PTEs of [address, address+size) in a
 * VM_PFNMAP VMA; silently does nothing when the range is not inside the VMA
 * or the VMA is not VM_PFNMAP.
 */
export function zapVmaPtes(vma: Vma, address: UserVa | number, size: number): void {
  const m = vma.machine;
  apiCall(m, 'zap_vma_ptes', () => {
    const v = vma.state;
    if (address < v.start || address + size > v.end || (v.flags & VM_PFNMAP) === 0) return;
    const { p, sp } = spaceOf(m, v);
    const start = address - (address % PAGE_SIZE);
    pteClearRange(m, sp, p.name, start, pageAlign(address + size), 'zap');
  });
}

function unmapPagesInner(mapping: AddressSpace, first: number, nr: number, evenCows: boolean): void {
  const m = mapping.machine;
  const st = mmState(m);
  let last = first + nr - 1;
  if (last < first) last = ULONG_MAX;
  for (const id of mapping.state.vmas.slice()) {
    const v = st.vmas.get(id)!;
    const vba = v.pgoff;
    const vea = vba + (v.end - v.start) / PAGE_SIZE - 1;
    if (vea < first || vba > last) continue;
    const zs = Math.max(first, vba);
    const ze = Math.min(last, vea);
    const { p, sp } = spaceOf(m, v);
    const keepCows = !evenCows && isCowMapping(v.flags);
    pteClearRange(
      m,
      sp,
      p.name,
      v.start + (zs - vba) * PAGE_SIZE,
      v.start + (ze - vba + 1) * PAGE_SIZE,
      'unmap-mapping',
      keepCows ? (bits) => (bits & PTE_ANON) !== 0 : undefined,
    );
  }
}

/**
 * `unmap_mapping_pages()`: zaps pages [start, start+nr) of the object in
 * every VMA of every process that maps it (nr 0: to the end).
 */
export function unmapMappingPages(mapping: AddressSpace, start: number, nr: number, evenCows: boolean): void {
  apiCall(mapping.machine, 'unmap_mapping_pages', () => unmapPagesInner(mapping, start, nr, evenCows));
}

/**
 * `unmap_mapping_range()`: shoots down every user PTE of the byte range
 * [holeBegin, holeBegin+holeLen) of the object (holeLen 0: to the end), in
 * every process, by `vm_pgoff`; the next access faults again. With
 * `evenCows` false, private copy-on-write copies survive.
 */
export function unmapMappingRange(
  mapping: AddressSpace,
  holeBegin: number,
  holeLen: number,
  evenCows: boolean | number,
): void {
  apiCall(mapping.machine, 'unmap_mapping_range', () => {
    if (!Number.isInteger(holeBegin) || holeBegin < 0 || !Number.isInteger(holeLen) || holeLen < 0) {
      throw new DmalabError('unmap_mapping_range: holeBegin and holeLen must be non-negative integers');
    }
    const hba = Math.floor(holeBegin / PAGE_SIZE);
    const hlen = Math.ceil(holeLen / PAGE_SIZE);
    unmapPagesInner(mapping, hba, hlen, Boolean(evenCows));
  });
}

/** What `follow_pfnmap_start()` finds. */
export interface FollowPfnmapArgs {
  pfn: number;
  pgprot: Pgprot;
  writable: boolean;
  special: boolean;
}

/**
 * `follow_pfnmap_start()`: the frame a VM_IO|VM_PFNMAP VMA maps at
 * `address`, without taking any reference (what drivers use instead of GUP
 * on PFN maps); -EINVAL for other VMAs, addresses outside the VMA, or no PTE.
 * dmalab holds no lock, so there is no `follow_pfnmap_end`.
 */
export function followPfnmapStart(vma: Vma, address: UserVa | number): FollowPfnmapArgs | number {
  const m = vma.machine;
  return apiCall(m, 'follow_pfnmap_start', () => {
    const v = vma.state;
    if ((v.flags & (VM_IO | VM_PFNMAP)) === 0 || address < v.start || address >= v.end) return -EINVAL;
    const { sp } = spaceOf(m, v);
    const page = address - (address % PAGE_SIZE);
    const pfn = ptePfn(sp, page);
    if (pfn < 0) return -EINVAL;
    const bits = pteBits(sp, page);
    return {
      pfn,
      pgprot: {
        attr: attrOfBits(bits),
        read: (bits & PTE_READ) !== 0,
        write: (bits & PTE_WRITE) !== 0,
        exec: (bits & PTE_EXEC) !== 0,
      },
      writable: (bits & PTE_WRITE) !== 0,
      special: (bits & PTE_SPECIAL) !== 0,
    };
  });
}
