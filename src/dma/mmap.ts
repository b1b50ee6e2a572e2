/**
 * Coherent memory in user space (seed 000) and the sg_table export of an
 * allocation: `dma_mmap_attrs`, `dma_mmap_coherent`, `dma_mmap_wc`,
 * `dma_mmap_pages`, `dma_get_sgtable_attrs`.
 *
 * The five ways the 2004 thread lists are all selectable with the machine's
 * `mmapStrategy`:
 *
 * | strategy | what dmalab does | kernel default on |
 * |---|---|---|
 * | `remap` (a) | `remap_pfn_range` of the whole range at mmap, with `dma_pgprot` | x86_64, arm64, parisc-pcxl, swiotlb-force |
 * | `fault` (b) | a `fault` handler inserting each page's PFN on first touch | — |
 * | `congruent` (c) | remap only when the user address is congruent with the kernel alias, else -EINVAL; `dmaAllocCoherentForMmap` makes the alias congruent with a file's shared mappings | — |
 * | `coherence-index` (d) | reprogram the IOMMU coherence index to name the user alias, then remap (the kernel alias becomes the incoherent one) | — |
 * | `refuse` (e) | -ENXIO, `dma_can_mmap` false | parisc (sba ops have no `.mmap`) |
 */

import { type SgTable, sgAllocTable, sgAllocTableFromPages, sgSetPage } from '../lib/index.js';
import {
  type Device,
  type DmaAddr,
  EINVAL,
  ENXIO,
  enterCall,
  type Gfp,
  iommuSetCoherenceIndex,
  isVmallocAddr,
  type KernelVa,
  leaveCall,
  linearVirtToPhys,
  type MmapStrategy,
  PAGE_SIZE,
  type Page,
  pageToPfn,
} from '../machine/index.js';
import {
  type File,
  remapPfnRange,
  sharedMappingColour,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_PFNMAP,
  type Vma,
  type VmFault,
  type VmFaultT,
  type VmOperationsStruct,
  vmallocToPfn,
  vmaPages,
  vmFlagsSet,
  vmfInsertPfnProt,
} from '../mm/index.js';
import {
  type DmaAllocRecord,
  dmaAllocContaining,
  dmaAllocInner,
  dmaPgprot,
  emitAllocPublic,
} from './alloc.js';
import { getDmaOps } from './api.js';
import { devIsDmaCoherent } from './arch.js';
import { DMA_ATTR_WRITE_COMBINE } from './types.js';

/** The strategy in force for this machine. */
function strategyOf(dev: Device): MmapStrategy {
  return dev.machine.options.mmapStrategy;
}

/** Page frames of an allocation, from its record (linear, vmap or device memory). */
function allocPfns(r: DmaAllocRecord | undefined, cpuAddr: number, dev: Device, count: number): number[] {
  if (r !== undefined) {
    const first = Math.floor((cpuAddr - r.cpuAddr) / PAGE_SIZE);
    return r.pages.slice(first, first + count);
  }
  // Not an allocation dmalab made: the kernel trusts the driver's arguments.
  const base = isVmallocAddr(cpuAddr)
    ? vmallocToPfn(dev.machine, cpuAddr)
    : Math.floor(linearVirtToPhys(cpuAddr) / PAGE_SIZE);
  return Array.from({ length: count }, (_, k) => base + k);
}

interface FaultData {
  pfns: number[];
}

/** Strategy (b): PFNs inserted one page at a time, on first touch. */
const dmaMmapFaultOps: VmOperationsStruct = {
  fault(vmf: VmFault): VmFaultT {
    const data = vmf.vma.vmPrivateData as FaultData;
    const pfn = data.pfns[vmf.pgoff];
    if (pfn === undefined) return VM_FAULT_SIGBUS;
    return vmfInsertPfnProt(vmf.vma, vmf.address, pfn, vmf.vma.vmPageProt);
  },
};

function emitMmap(
  dev: Device,
  call: string,
  vma: Vma,
  cpuAddr: number,
  dmaAddr: number,
  size: number,
  ret: number,
): void {
  const m = dev.machine;
  if (!m.bus.wants['dma-mmap']) return;
  m.bus.emit({
    type: 'dma-mmap',
    device: dev.name,
    call,
    cpuAddr,
    dmaAddr,
    size,
    pid: vma.vmMm.pid,
    vmStart: vma.vmStart,
    vmEnd: vma.vmEnd,
    pgoff: vma.vmPgoff,
    strategy: strategyOf(dev),
    attr: vma.vmPageProt.attr,
    ret,
  });
}

function mmapInner(
  dev: Device,
  vma: Vma,
  cpuAddr: number,
  dmaAddr: number,
  size: number,
  attrs: number,
): number {
  const m = dev.machine;
  const strategy = strategyOf(dev);
  if (strategy === 'refuse') return -ENXIO;
  // The profile's own strategy follows the backend: parisc's sba ops have no .mmap.
  if (strategy === m.profile.mmapStrategy && getDmaOps(dev).name === 'sba') return -ENXIO;
  vma.vmPageProt = dmaPgprot(dev, vma.vmPageProt, attrs);
  const count = Math.ceil(size / PAGE_SIZE);
  const userCount = vmaPages(vma);
  const off = vma.vmPgoff;
  if (off >= count || userCount > count - off) return -ENXIO;
  const r = dmaAllocContaining(m, cpuAddr);
  const pfns = allocPfns(r, cpuAddr, dev, count);
  if (strategy === 'congruent') {
    const C = m.profile.cache.congruence;
    const userAlias = vma.vmStart - off * PAGE_SIZE;
    if ((((userAlias - cpuAddr) % C) + C) % C !== 0) return -EINVAL;
  }
  if (strategy === 'coherence-index' && dev.state.coherence === 'ci') {
    // Make DMA coherent with the user's alias: the kernel alias is now the incoherent one.
    iommuSetCoherenceIndex(dev.iommuDomain!, dmaAddr + off * PAGE_SIZE, userCount * PAGE_SIZE, vma.vmStart);
  }
  if (strategy === 'fault') {
    vmFlagsSet(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
    vma.vmPrivateData = { pfns: Array.from({ length: count }, (_, k) => pfns[k]!) } satisfies FaultData;
    vma.vmOps = dmaMmapFaultOps;
    return 0;
  }
  // remap_pfn_range of the whole range, page run by page run (vm_map_pages for vmapped arrays).
  let start = 0;
  while (start < userCount) {
    let end = start + 1;
    while (end < userCount && pfns[off + end] === pfns[off + end - 1]! + 1) end++;
    const rc = remapPfnRange(
      vma,
      vma.vmStart + start * PAGE_SIZE,
      pfns[off + start]!,
      (end - start) * PAGE_SIZE,
      vma.vmPageProt,
    );
    if (rc !== 0) return rc;
    start = end;
  }
  return 0;
}

/**
 * `dma_mmap_attrs()`: maps a coherent allocation into a user VMA, the way
 * the machine's `mmapStrategy` says. Returns 0 or a negative errno (-ENXIO
 * where the backend cannot, or the range does not fit).
 */
export function dmaMmapAttrs(
  dev: Device,
  vma: Vma,
  cpuAddr: KernelVa | number,
  dmaAddr: DmaAddr | number,
  size: number,
  attrs: number,
): number {
  const m = dev.machine;
  enterCall(m, 'dma_mmap_attrs');
  try {
    const ret = mmapInner(dev, vma, cpuAddr, dmaAddr, size, attrs);
    emitMmap(dev, 'dma_mmap_attrs', vma, cpuAddr, dmaAddr, size, ret);
    return ret;
  } finally {
    leaveCall(m);
  }
}

/** `dma_mmap_coherent()`. */
export function dmaMmapCoherent(
  dev: Device,
  vma: Vma,
  cpuAddr: KernelVa | number,
  dmaAddr: DmaAddr | number,
  size: number,
): number {
  return dmaMmapAttrs(dev, vma, cpuAddr, dmaAddr, size, 0);
}

/** `dma_mmap_wc()`. */
export function dmaMmapWc(
  dev: Device,
  vma: Vma,
  cpuAddr: KernelVa | number,
  dmaAddr: DmaAddr | number,
  size: number,
): number {
  return dmaMmapAttrs(dev, vma, cpuAddr, dmaAddr, size, DMA_ATTR_WRITE_COMBINE);
}

/**
 * `dma_mmap_pages()`: maps pages from `dma_alloc_pages` with the VMA's own
 * (cacheable) protection; -ENXIO when the VMA does not fit.
 */
export function dmaMmapPages(dev: Device, vma: Vma, size: number, page: Page): number {
  enterCall(dev.machine, 'dma_mmap_pages');
  try {
    const count = Math.ceil(size / PAGE_SIZE);
    if (vma.vmPgoff >= count || vmaPages(vma) > count - vma.vmPgoff) return -ENXIO;
    return remapPfnRange(
      vma,
      vma.vmStart,
      pageToPfn(page) + vma.vmPgoff,
      vmaPages(vma) * PAGE_SIZE,
      vma.vmPageProt,
    );
  } finally {
    leaveCall(dev.machine);
  }
}

/**
 * dmalab extension for seed 000's strategy (c) — the "extra flag to
 * dma_alloc_coherent()" the thread asks for: coherent memory whose kernel
 * alias is congruent with where `file`'s shared mappings land, so that a
 * later `dmaMmapCoherent` of it under `mmapStrategy: 'congruent'` is
 * accepted and coherent on a VIPT machine. Elsewhere it is `dmaAllocCoherent`.
 */
export function dmaAllocCoherentForMmap(
  dev: Device,
  size: number,
  gfp: Gfp,
  file: File,
): { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null {
  const m = dev.machine;
  enterCall(m, 'dma_alloc_attrs');
  try {
    const colour = m.hw.cache.colours > 1 && devIsDmaCoherent(dev) ? sharedMappingColour(file) : -1;
    const r = dmaAllocInner(dev, size, gfp, 0, colour);
    emitAllocPublic(dev, 'dma_alloc_attrs', r, size, gfp, 0);
    return r === null ? null : { cpuAddr: r.cpuAddr as KernelVa, dmaHandle: r.dmaHandle as DmaAddr };
  } finally {
    leaveCall(m);
  }
}

/**
 * `dma_get_sgtable_attrs()`: an sg_table describing a coherent allocation
 * (one entry for contiguous memory; the page array of an IOMMU remap).
 * The kernel calls the idea fundamentally unsafe — feeding it to the
 * streaming API aliases the coherent mapping. Returns 0 or a negative errno.
 */
export function dmaGetSgtableAttrs(
  dev: Device,
  sgt: SgTable,
  cpuAddr: KernelVa | number,
  _dmaAddr: DmaAddr | number,
  size: number,
  _attrs: number,
): number {
  const m = dev.machine;
  enterCall(m, 'dma_get_sgtable_attrs');
  try {
    const r = dmaAllocContaining(m, cpuAddr);
    const count = Math.ceil(size / PAGE_SIZE);
    if (r !== undefined && !r.contiguous) {
      return sgAllocTableFromPages(sgt, r.pages.slice(0, count) as Page[], count, 0, size, 0);
    }
    const pfns = allocPfns(r, cpuAddr, dev, 1);
    const rc = sgAllocTable(sgt, 1, 0);
    if (rc !== 0) return rc;
    sgSetPage(sgt.sgl!, pfns[0]! as Page, count * PAGE_SIZE, 0);
    return 0;
  } finally {
    leaveCall(m);
  }
}

/** `dma_get_sgtable()`. */
export function dmaGetSgtable(
  dev: Device,
  sgt: SgTable,
  cpuAddr: KernelVa | number,
  dmaAddr: DmaAddr | number,
  size: number,
): number {
  return dmaGetSgtableAttrs(dev, sgt, cpuAddr, dmaAddr, size, 0);
}
