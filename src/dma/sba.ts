/**
 * PA-RISC's sba-style IOMMU DMA ops (drivers/parisc/sba_iommu.c, and the
 * ccio twin): every mapping goes through the I/O PDIR, whose entries carry
 * the coherence index (`lci`) of the buffer's kernel virtual address, so
 * the I/O adapter keeps DMA coherent with that alias — and with no other.
 * There is no CPU cache maintenance in the streaming paths, no sync
 * callbacks (so `dma_need_sync` is false) and no `.mmap`, hence
 * `dma_can_mmap()` is false and `dma_mmap_attrs()` fails with -ENXIO.
 *
 * IOVAs come from a resource bitmap searched from a moving hint, each range
 * aligned to its power-of-two size (`sba_search_bitmap`); IOVA page 0 is
 * never handed out. The IOVA space is sized from RAM, between 1 MiB and 1 GiB.
 */

import {
  BUG,
  type Device,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuMap,
  iommuUnmap,
  type Machine,
  PAGE_SIZE,
  physToVirt,
  reportFinding,
  SIZE_MAX,
} from '../machine/index.js';
import { processes, processPtes } from '../mm/index.js';
import type { DmaMapOps } from './ops.js';
import { dmaState } from './state.js';
import { DMA_ATTR_MMIO, DMA_MAPPING_ERROR, type DmaDataDirection, maskLimit } from './types.js';

export interface SbaState {
  /** 1 per IOVA page in use (the resource map). */
  resMap: Uint8Array;
  /** Search hint (page index) and the bit shift within a 64-page word. */
  hint: number;
}

/** IOVA space of the I/O PDIR: RAM size rounded to a power of two, clamped to [1 MiB, 1 GiB]. */
export function sbaIovaSpace(m: Machine): number {
  let space = 2 ** Math.ceil(Math.log2(m.options.ramBytes));
  space = Math.min(Math.max(space, 1 << 20), 1 << 30);
  return space;
}

function sbaOf(dev: Device): SbaState {
  const s = dmaState(dev.machine);
  const id = dev.state.iommuDomain;
  let st = s.sba.get(id);
  if (st === undefined) {
    const pages = sbaIovaSpace(dev.machine) / PAGE_SIZE;
    st = { resMap: new Uint8Array(pages), hint: 0 };
    st.resMap[0] = 1; // IOVA 0 is never valid
    s.sba.set(id, st);
  }
  return st;
}

function spansBoundary(pide: number, pages: number, boundaryMask: number): boolean {
  if (boundaryMask >= Number.MAX_SAFE_INTEGER) return false;
  const boundaryPages = Math.ceil((boundaryMask + 1) / PAGE_SIZE);
  return (pide % boundaryPages) + pages > boundaryPages;
}

/** `sba_search_bitmap()` from the hint to the end; -1 when nothing fits. */
function search(st: SbaState, pages: number, boundaryMask: number): number {
  const total = st.resMap.length;
  // Up to half a word: aligned to the power-of-two size; larger: whole 64-page words.
  const align = pages > 32 ? 64 : 2 ** Math.ceil(Math.log2(pages));
  for (let pide = Math.ceil(st.hint / align) * align; pide + pages <= total; pide += align) {
    if (spansBoundary(pide, pages, boundaryMask)) continue;
    let free = true;
    for (let k = 0; k < pages; k++) {
      if (st.resMap[pide + k] === 1) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    st.resMap.fill(1, pide, pide + pages);
    st.hint = pide + pages;
    return pide;
  }
  st.hint = 0;
  return -1;
}

/** `sba_alloc_range()`: searches from the hint, then once more from the start. */
export function sbaAllocRange(dev: Device, pages: number): number {
  const st = sbaOf(dev);
  let pide = search(st, pages, dev.state.segmentBoundary);
  if (pide < 0) pide = search(st, pages, dev.state.segmentBoundary);
  return pide;
}

/** The virtual address whose coherence index an entry for `phys` carries. */
export function sbaCoherenceVa(dev: Device, phys: number): number {
  const m = dev.machine;
  const isRam = phys < m.options.ramBytes;
  if (isRam) return physToVirt(phys);
  // Memory outside RAM (seed 001's page-less entries): the machine's ciPolicy decides.
  switch (m.options.ciPolicy) {
    case 'zero':
      // An untouched line of the kernel: coherent with nobody's alias.
      return 0;
    case 'user': {
      // The user's alias of the frame, where a process maps it; the kernel's otherwise.
      const va = userAliasOf(m, Math.floor(phys / PAGE_SIZE));
      return va >= 0 ? va : physToVirt(phys);
    }
    case 'kernel':
      return physToVirt(phys);
  }
}

/** The first user virtual address (over all processes) whose PTE maps `pfn`, or -1. */
function userAliasOf(m: Machine, pfn: number): number {
  for (const proc of processes(m)) {
    if (!proc.alive) continue;
    for (const [va, pte] of processPtes(proc)) if (pte.pfn === pfn) return va;
  }
  return -1;
}

/** `sba_map_single()` for a physical range. */
export function sbaMapPhys(
  dev: Device,
  phys: number,
  size: number,
  _dir: DmaDataDirection,
  attrs: number,
): number {
  if (attrs & DMA_ATTR_MMIO) return DMA_MAPPING_ERROR;
  return sbaMapRange(dev, phys, size, -1);
}

/**
 * Maps a physical range through the I/O PDIR. Entries carry the coherence
 * index of `vba` (the kernel alias the buffer is used through), or of each
 * page's linear-map alias when `vba` is -1.
 */
export function sbaMapRange(dev: Device, phys: number, size: number, vba: number): number {
  const off = phys % PAGE_SIZE;
  const len = Math.ceil((size + off) / PAGE_SIZE) * PAGE_SIZE;
  const pages = len / PAGE_SIZE;
  const pide = sbaAllocRange(dev, pages);
  if (pide < 0) {
    reportFinding(
      dev.machine,
      BUG.code,
      `sba_iommu.c: I/O MMU is out of mapping resources (${pages} pages wanted)`,
      {
        device: dev.name,
        details: { pages },
      },
    );
    return DMA_MAPPING_ERROR;
  }
  const iova = pide * PAGE_SIZE;
  const base = phys - off;
  // One PDIR entry per page, each with the coherence index of the page's kernel alias.
  for (let k = 0; k < pages; k++) {
    const p = base + k * PAGE_SIZE;
    const ci = vba < 0 ? sbaCoherenceVa(dev, p) : vba - off + k * PAGE_SIZE;
    iommuMap(dev.iommuDomain!, iova + k * PAGE_SIZE, p, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE, 0, ci);
  }
  return iova + off;
}

/** `sba_unmap_page()`. */
export function sbaUnmapPhys(dev: Device, addr: number, size: number): void {
  const off = addr % PAGE_SIZE;
  const iova = addr - off;
  const len = Math.ceil((size + off) / PAGE_SIZE) * PAGE_SIZE;
  iommuUnmap(dev.iommuDomain!, iova, len);
  sbaOf(dev).resMap.fill(0, iova / PAGE_SIZE, (iova + len) / PAGE_SIZE);
}

/** The sba IOMMU as a provider table. */
export const sbaOps: DmaMapOps = {
  name: 'sba',
  mapPhys: sbaMapPhys,
  unmapPhys: (dev, addr, size) => sbaUnmapPhys(dev, addr, size),
  // sba_dma_supported: at most 32 bits, and enough to cover the IOVA space.
  dmaSupported: (dev, bits) => bits <= 32 && maskLimit(bits) >= sbaIovaSpace(dev.machine),
  getRequiredMask: () => 32,
  maxMappingSize: () => SIZE_MAX,
  optMappingSize: () => SIZE_MAX,
  getMergeBoundary: () => 0,
  // __dma_need_sync answers true for ops backends; without dma-debug the skip-sync flag wins first.
  needSync: () => true,
  canMmap: () => false,
};
