/**
 * The kernel's own page-table mappings (mm/vmalloc.c, ioremap): vmalloc
 * areas of single pages, vmap of a caller's pages, and ioremap of physical
 * ranges with an uncached, write-combined or cached attribute. Each area is
 * followed by an unmapped guard page, as the kernel's are.
 *
 *     VMALLOC_START ─ vmalloc / vmap / vmapped stacks ─ VMALLOC_END
 *     IOREMAP_START ─ ioremap, ioremap_wc, ioremap_cache ─ IOREMAP_END
 *
 * Kernel PTEs hold no page references (vmalloc owns its pages and frees
 * them; vmap borrows the caller's). Unmapping a cached alias on a VIPT cache
 * writes back and invalidates its lines first (flush_cache_vunmap).
 *
 * `vmapAligned` is a dmalab extension: a vmap whose address is congruent
 * with a given address modulo the cache's congruence, so that the alias
 * shares cache lines with it on VIPT machines (seed 000's strategy (c)).
 */

import {
  allocPagesInner,
  apiCall,
  cpuZero,
  DmalabError,
  formatHex,
  freePagesInner,
  IOREMAP_END,
  IOREMAP_START,
  isLinearMapVa,
  type KernelVa,
  type Machine,
  type MemAttr,
  PAGE_SIZE,
  type Page,
  pfnIsRam,
  pfnToPage,
  pfnValid,
  physToVirt,
  reportFinding,
  VMALLOC_END,
  VMALLOC_START,
  WARN,
} from '../machine/index.js';
import { VM_ALLOC, VM_IOREMAP, VM_MAP, VM_MAP_PUT_PAGES, VM_NO_GUARD, VM_USERMAP } from './consts.js';
import {
  bitsOfAttr,
  bitsOfProt,
  PTE_PRESENT,
  PTE_READ,
  PTE_SPECIAL,
  PTE_WRITE,
  pteBits,
  pteClearRange,
  pteInstall,
  ptePfn,
} from './internal/pagetable.js';
import { type KArea, KERNEL_SPACE, mmState } from './internal/state.js';
import { assertPgprot, PAGE_KERNEL, type Pgprot } from './pgprot.js';

function kspace(m: Machine) {
  return mmState(m).spaces.get(KERNEL_SPACE)!;
}

/** Lowest free span in [lo, hi) of `span` bytes, congruent with `colourVa` when given; -1 when full. */
function findSpan(m: Machine, lo: number, hi: number, span: number, colourVa: number | null): number {
  const areas = mmState(m).kareas;
  const C = m.profile.cache.congruence;
  const align = (x: number): number => {
    if (colourVa === null) return x;
    const want = Math.floor(colourVa / PAGE_SIZE) * PAGE_SIZE;
    return x + ((((want - x) % C) + C) % C);
  };
  let prevEnd = lo;
  for (const a of areas) {
    if (a.start + a.span <= lo || a.start >= hi) continue;
    const cand = align(prevEnd);
    if (cand + span <= a.start) return cand;
    prevEnd = Math.max(prevEnd, a.start + a.span);
  }
  const cand = align(prevEnd);
  return cand + span <= hi ? cand : -1;
}

function insertArea(m: Machine, area: KArea): void {
  const areas = mmState(m).kareas;
  let i = areas.length;
  while (i > 0 && areas[i - 1]!.start > area.start) i--;
  areas.splice(i, 0, area);
}

/** The kernel area starting at `va` exactly, or containing it when `containing`. */
export function findArea(m: Machine, va: number, containing = false): KArea | undefined {
  for (const a of mmState(m).kareas) {
    if (a.start === va) return a;
    if (containing && va >= a.start && va < a.start + a.size) return a;
  }
  return undefined;
}

function emitAlloc(m: Machine, area: KArea, va: number): void {
  if (m.bus.wants['kmem-alloc']) {
    m.bus.emit({
      type: 'kmem-alloc',
      kind: area.kind,
      va,
      size: area.requested,
      objSize: area.size,
      pa: area.phys >= 0 ? area.phys : -1,
    });
  }
}

function removeArea(m: Machine, area: KArea, reason: string, call: string): void {
  const st = mmState(m);
  pteClearRange(m, kspace(m), 'kernel', area.start, area.start + area.size, reason);
  if (area.owned) for (const pfn of area.pfns) freePagesInner(m, pfn as Page, 0);
  st.kareas.splice(st.kareas.indexOf(area), 1);
  if (m.bus.wants['kmem-free']) {
    m.bus.emit({ type: 'kmem-free', kind: area.kind, va: area.start, size: area.requested });
  }
  void call;
}

/** Allocates `size` bytes of page-granular virtual memory backed by single pages (internal, un-stepped). */
export function vmallocInner(
  m: Machine,
  size: number,
  zero: boolean,
  flags: number,
  call: string,
  kind: 'vmalloc' | 'stack' = 'vmalloc',
): KernelVa | null {
  if (!Number.isInteger(size) || size < 0) {
    throw new DmalabError(`${call}: size must be a non-negative integer, got ${size}`, { field: 'size' });
  }
  if (size === 0) return null;
  const npages = Math.ceil(size / PAGE_SIZE);
  const mapped = npages * PAGE_SIZE;
  const start = findSpan(m, VMALLOC_START, VMALLOC_END, mapped + PAGE_SIZE, null);
  if (start < 0) return null;
  const pfns: number[] = [];
  for (let i = 0; i < npages; i++) {
    const p = allocPagesInner(m, 0, 0);
    if (p === null) {
      for (const q of pfns) freePagesInner(m, q as Page, 0);
      return null;
    }
    if (zero) cpuZero(m, p * PAGE_SIZE, physToVirt(p * PAGE_SIZE), 'cached', PAGE_SIZE);
    pfns.push(p);
  }
  const area: KArea = {
    start,
    size: mapped,
    span: mapped + PAGE_SIZE,
    kind,
    flags: VM_ALLOC | flags,
    pfns,
    owned: true,
    phys: -1,
    requested: size,
  };
  insertArea(m, area);
  pteInstall(
    m,
    kspace(m),
    'kernel',
    start,
    npages,
    (i) => pfns[i]!,
    bitsOfProt(PAGE_KERNEL) | PTE_SPECIAL,
    kind,
  );
  emitAlloc(m, area, start);
  return start as KernelVa;
}

/** `vmalloc()`: virtually contiguous kernel memory from single pages; null for size 0 or no memory. */
export function vmalloc(m: Machine, size: number): KernelVa | null {
  return apiCall(m, 'vmalloc', () => vmallocInner(m, size, false, 0, 'vmalloc'));
}

/** `vzalloc()`: vmalloc, zeroed. */
export function vzalloc(m: Machine, size: number): KernelVa | null {
  return apiCall(m, 'vzalloc', () => vmallocInner(m, size, true, 0, 'vzalloc'));
}

/** `vmalloc_user()`: zeroed vmalloc memory that `remapVmallocRange` may map to user space (VM_USERMAP). */
export function vmallocUser(m: Machine, size: number): KernelVa | null {
  return apiCall(m, 'vmalloc_user', () => vmallocInner(m, size, true, VM_USERMAP, 'vmalloc_user'));
}

/** vfree without step accounting. */
export function vfreeInner(m: Machine, va: number, call: string): void {
  if (va === 0) return;
  const area = findArea(m, va);
  if (area === undefined || area.kind === 'ioremap' || area.kind === 'stack') {
    reportFinding(m, WARN.code, `Trying to ${call}() nonexistent vm area (${formatHex(va)})`, {
      details: { va },
    });
    return;
  }
  removeArea(m, area, 'vunmap', call);
}

/** `vfree()`: frees a vmalloc area and its pages (a vmap area is unmapped; VM_MAP_PUT_PAGES pages are freed). */
export function vfree(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'vfree', () => vfreeInner(m, va, 'vfree'));
}

function vmapInner(
  m: Machine,
  pages: ArrayLike<Page>,
  count: number,
  flags: number,
  prot: Pgprot,
  colourVa: number | null,
  call: string,
): KernelVa | null {
  assertPgprot(prot);
  if (!Number.isInteger(count) || count < 0 || count > pages.length) {
    throw new DmalabError(`${call}: count ${count} exceeds the ${pages.length} pages given`, {
      field: 'count',
    });
  }
  if (count === 0) return null;
  for (let i = 0; i < count; i++) {
    const p = pages[i]!;
    if (!pfnValid(m, p)) {
      reportFinding(m, WARN.code, `${call}: page ${i} (pfn ${formatHex(p)}) has no struct page`, {
        details: { pfn: p, index: i },
      });
      return null;
    }
  }
  const mapped = count * PAGE_SIZE;
  const guard = flags & VM_NO_GUARD ? 0 : PAGE_SIZE;
  const start = findSpan(m, VMALLOC_START, VMALLOC_END, mapped + guard, colourVa);
  if (start < 0) return null;
  const pfns = Array.from({ length: count }, (_, i) => pages[i] as number);
  const area: KArea = {
    start,
    size: mapped,
    span: mapped + guard,
    kind: 'vmap',
    flags: flags | VM_MAP,
    pfns,
    owned: (flags & VM_MAP_PUT_PAGES) !== 0,
    phys: -1,
    requested: mapped,
  };
  insertArea(m, area);
  pteInstall(m, kspace(m), 'kernel', start, count, (i) => pfns[i]!, bitsOfProt(prot) | PTE_SPECIAL, 'vmap');
  emitAlloc(m, area, start);
  return start as KernelVa;
}

/**
 * `vmap()`: maps `count` pages into one virtually contiguous kernel range
 * with protection `prot` (its attribute: cached, write-combine, uncached).
 * The pages stay the caller's unless `VM_MAP_PUT_PAGES` is given.
 */
export function vmap(
  m: Machine,
  pages: ArrayLike<Page>,
  count: number,
  flags: number,
  prot: Pgprot,
): KernelVa | null {
  return apiCall(m, 'vmap', () => vmapInner(m, pages, count, flags, prot, null, 'vmap'));
}

/**
 * dmalab extension: `vmap` at an address congruent with `colourVa` modulo
 * the cache congruence (4 MiB on PA-RISC, a page elsewhere), so that the new
 * kernel alias and `colourVa`'s mapping share cache lines on a VIPT cache.
 */
export function vmapAligned(
  m: Machine,
  pages: ArrayLike<Page>,
  count: number,
  prot: Pgprot,
  colourVa: number,
): KernelVa | null {
  if (!Number.isInteger(colourVa) || colourVa < 0) {
    throw new DmalabError(`vmapAligned: colourVa must be an address, got ${colourVa}`, { field: 'colourVa' });
  }
  return apiCall(m, 'vmap', () => vmapInner(m, pages, count, 0, prot, colourVa, 'vmap'));
}

/** `vunmap()`: removes a vmap mapping (the pages are not freed). */
export function vunmap(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'vunmap', () => {
    if (va === 0) return;
    const area = findArea(m, va);
    if (area === undefined || area.kind !== 'vmap') {
      reportFinding(m, WARN.code, `Trying to vunmap() nonexistent vm area (${formatHex(va)})`, {
        details: { va },
      });
      return;
    }
    removeArea(m, area, 'vunmap', 'vunmap');
  });
}

function ioremapInner(m: Machine, phys: number, size: number, attr: MemAttr, call: string): KernelVa | null {
  if (!Number.isInteger(phys) || phys < 0 || !Number.isInteger(size) || size < 0) {
    throw new DmalabError(`${call}: phys and size must be non-negative integers`, { field: 'phys' });
  }
  if (size === 0) return null;
  const off = phys % PAGE_SIZE;
  const base = phys - off;
  const npages = Math.ceil((off + size) / PAGE_SIZE);
  let ram = false;
  for (let i = 0; i < npages; i++) if (pfnIsRam(m, base / PAGE_SIZE + i)) ram = true;
  if (ram) {
    // arm64's ioremap_cache hands back the linear map for RAM; everyone else refuses RAM.
    if (call === 'ioremap_cache' && m.profile.arch === 'arm64') return physToVirt(phys);
    reportFinding(m, WARN.code, `ioremap on RAM at ${formatHex(phys)} - ${formatHex(phys + size - 1)}`, {
      details: { phys, size },
    });
    return null;
  }
  const mapped = npages * PAGE_SIZE;
  const start = findSpan(m, IOREMAP_START, IOREMAP_END, mapped + PAGE_SIZE, null);
  if (start < 0) return null;
  const pfns = Array.from({ length: npages }, (_, i) => base / PAGE_SIZE + i);
  const area: KArea = {
    start,
    size: mapped,
    span: mapped + PAGE_SIZE,
    kind: 'ioremap',
    flags: VM_IOREMAP,
    pfns,
    owned: false,
    phys: base,
    requested: size,
  };
  insertArea(m, area);
  const bits = PTE_PRESENT | PTE_READ | PTE_WRITE | PTE_SPECIAL | bitsOfAttr(attr);
  pteInstall(m, kspace(m), 'kernel', start, npages, (i) => pfns[i]!, bits, 'ioremap');
  emitAlloc(m, area, start + off);
  return (start + off) as KernelVa;
}

/** `ioremap()`: an uncached kernel mapping of device memory; null (with a WARN) for RAM. */
export function ioremap(m: Machine, phys: number, size: number): KernelVa | null {
  return apiCall(m, 'ioremap', () => ioremapInner(m, phys, size, 'uncached', 'ioremap'));
}

/** `ioremap_wc()`: write-combined where the architecture has it (x86, arm64), uncached on PA-RISC. */
export function ioremapWc(m: Machine, phys: number, size: number): KernelVa | null {
  const attr: MemAttr = m.profile.arch === 'parisc' ? 'uncached' : 'write-combine';
  return apiCall(m, 'ioremap_wc', () => ioremapInner(m, phys, size, attr, 'ioremap_wc'));
}

/** `ioremap_cache()`: a cached mapping (arm64 returns the linear map for RAM). */
export function ioremapCache(m: Machine, phys: number, size: number): KernelVa | null {
  return apiCall(m, 'ioremap_cache', () => ioremapInner(m, phys, size, 'cached', 'ioremap_cache'));
}

/** `iounmap()`: removes an ioremap mapping; a linear-map address (arm64 ioremap_cache of RAM) is a no-op. */
export function iounmap(m: Machine, va: KernelVa | number): void {
  apiCall(m, 'iounmap', () => {
    if (va === 0 || isLinearMapVa(va)) return;
    const area = findArea(m, va - (va % PAGE_SIZE), true);
    if (area === undefined || area.kind !== 'ioremap') {
      reportFinding(m, WARN.code, `iounmap: bad address ${formatHex(va)}`, { details: { va } });
      return;
    }
    removeArea(m, area, 'iounmap', 'iounmap');
  });
}

/** `vmalloc_to_page()`: the page behind a kernel virtual mapping, or null. */
export function vmallocToPage(m: Machine, va: KernelVa | number): Page | null {
  const pfn = ptePfn(kspace(m), va - (va % PAGE_SIZE));
  return pfn < 0 ? null : pfnToPage(m, pfn);
}

/** `vmalloc_to_pfn()`: the frame behind a kernel virtual mapping (0 when unmapped, as `page_to_pfn(NULL)` would be garbage). */
export function vmallocToPfn(m: Machine, va: KernelVa | number): number {
  const pfn = ptePfn(kspace(m), va - (va % PAGE_SIZE));
  return pfn < 0 ? 0 : pfn;
}

/** The kernel PTE at `va` as frame and bits, or null (internal). */
export function kernelPte(m: Machine, va: number): { pfn: number; bits: number } | null {
  const sp = kspace(m);
  const pfn = ptePfn(sp, va);
  return pfn < 0 ? null : { pfn, bits: pteBits(sp, va) };
}
