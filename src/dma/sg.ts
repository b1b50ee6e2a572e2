/**
 * Scatter-gather DMA (kernel/dma/mapping.c, direct.c, drivers/iommu/
 * dma-iommu.c, drivers/parisc/iommu-helpers.h): `dma_map_sg` and
 * `dma_map_sgtable` with their different error conventions, unmap and
 * syncs. dma-direct maps every entry on its own (`nents` segments);
 * iommu-dma lays the entries out in one IOVA range and merges them into
 * fewer DMA segments exactly as `__finalise_sg` does — so `nents` can be
 * smaller than `orig_nents` and `sg_dma_len` differ from `length`, the
 * situation of seed 002; parisc's sba coalesces page-aligned neighbours.
 *
 * Entries with no `struct page` (seed 001) are mapped by physical address;
 * cache maintenance skips entries without a kernel virtual address, as the
 * 2015 RFC proposed; on parisc their coherence index follows `ciPolicy`.
 */

import {
  forEachSg,
  type Scatterlist,
  type SgTable,
  sgDmaAddress,
  sgDmaIsBusAddress,
  sgDmaIsSwiotlb,
  sgDmaLen,
  sgDmaMarkSwiotlb,
  sgDmaUnmarkBusAddress,
  sgDmaUnmarkSwiotlb,
  sgHandle,
  sgPage,
  sgPhys,
  sgSetDmaAddress,
  sgSetDmaLen,
} from '../lib/index.js';
import {
  BUG,
  type Device,
  EINVAL,
  EIO,
  ENOMEM,
  EOPNOTSUPP,
  EREMOTEIO,
  enterCall,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuMap,
  iommuUnmap,
  leaveCall,
  PAGE_SIZE,
  physRegionFor,
  reportFinding,
  ULONG_MAX,
  WARN,
} from '../machine/index.js';
import { bugDirection, dmaDevNeedSync, getDmaOps } from './api.js';
import { archSyncDmaForCpu, archSyncDmaForDevice, devIsDmaCoherent } from './arch.js';
import { dmaDirectMapPhys, dmaDirectUnmapPhys, dmaToPhys } from './direct.js';
import {
  __iommuDmaUnmap,
  dmaInfoToProt,
  IOVA_GRANULE,
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapPhys,
  iommuDmaSyncSingleForCpu,
  iommuDmaSyncSingleForDevice,
  iommuDmaUnmapPhys,
} from './iommu-dma.js';
import { dmaKmallocNeedsBounce } from './kmalloc-align.js';
import { sbaAllocRange, sbaCoherenceVa, sbaUnmapPhys } from './sba.js';
import { dmaState, warnOnce } from './state.js';
import { isSwiotlbActive, swiotlbSyncSingleForCpu, swiotlbSyncSingleForDevice } from './swiotlb.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_MAPPING_ERROR,
  type DmaDataDirection,
  validDmaDirection,
} from './types.js';

/** The entries of a list, as keepable handles (at most `nents`). */
function entries(sg: Scatterlist, nents: number): Scatterlist[] {
  const out: Scatterlist[] = [];
  for (const s of forEachSg(sg, nents)) out.push(sgHandle(s));
  return out;
}

/** True when the entry's memory is device memory (a peer's BAR): mapped as MMIO, never bounced or maintained. */
function isDeviceMemory(dev: Device, phys: number, len: number): boolean {
  return physRegionFor(dev.machine, phys, len)?.kind === 'device';
}

/** True when the entry has a kernel virtual address to maintain caches through. */
function hasKernelVa(s: Scatterlist): boolean {
  return sgPage(s) !== null;
}

// --------------------------------------------------------------------------- dma-direct

function directUnmapEntries(
  dev: Device,
  list: Scatterlist[],
  count: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  for (let i = 0; i < count; i++) {
    const s = list[i]!;
    if (sgDmaIsBusAddress(s)) {
      sgDmaUnmarkBusAddress(s);
      continue;
    }
    dmaDirectUnmapPhys(dev, sgDmaAddress(s), sgDmaLen(s), dir, attrs);
  }
}

/** `dma_direct_map_sg()`: one DMA segment per entry; -EIO (previous entries unmapped) on failure. */
function directMapSg(dev: Device, list: Scatterlist[], dir: DmaDataDirection, attrs: number): number {
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!;
    const phys = sgPhys(s);
    let a = attrs;
    if (isDeviceMemory(dev, phys, s.length)) a |= DMA_ATTR_MMIO;
    else if (!hasKernelVa(s)) a |= DMA_ATTR_SKIP_CPU_SYNC; // no kernel mapping to maintain
    const addr = dmaDirectMapPhys(dev, phys, s.length, dir, a);
    if (addr === DMA_MAPPING_ERROR) {
      directUnmapEntries(dev, list, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return -EIO;
    }
    sgSetDmaAddress(s, addr as never);
    sgSetDmaLen(s, s.length);
  }
  return list.length;
}

function directSyncSg(dev: Device, list: Scatterlist[], dir: DmaDataDirection, forCpu: boolean): void {
  const m = dev.machine;
  const coherent = devIsDmaCoherent(dev);
  for (const s of list) {
    const paddr = dmaToPhys(dev, sgDmaAddress(s));
    const maintain = !coherent && hasKernelVa(s);
    if (forCpu) {
      if (maintain) archSyncDmaForCpu(m, paddr, s.length, dir);
      swiotlbSyncSingleForCpu(dev, paddr, s.length, dir);
    } else {
      swiotlbSyncSingleForDevice(dev, paddr, s.length, dir);
      if (maintain) archSyncDmaForDevice(m, paddr, s.length, dir);
    }
  }
}

// --------------------------------------------------------------------------- iommu-dma

/** `dev_use_sg_swiotlb()`: any entry that would need a kmalloc bounce. */
function devUseSgSwiotlb(dev: Device, list: Scatterlist[], dir: DmaDataDirection): boolean {
  if (!isSwiotlbActive(dev)) return false;
  return list.some((s) => dmaKmallocNeedsBounce(dev, s.length, dir));
}

/** `iommu_dma_map_sg()`: one IOVA range for the whole list, then `__finalise_sg` merging. */
function iommuMapSg(dev: Device, list: Scatterlist[], dir: DmaDataDirection, attrs: number): number {
  const m = dev.machine;
  if (devUseSgSwiotlb(dev, list, dir)) {
    // iommu_dma_map_sg_swiotlb: every entry on its own, nothing merged.
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      const addr = iommuDmaMapPhys(dev, sgPhys(s), s.length, dir, attrs);
      if (addr === DMA_MAPPING_ERROR) {
        for (let k = 0; k < i; k++) {
          iommuDmaUnmapPhys(
            dev,
            sgDmaAddress(list[k]!),
            sgDmaLen(list[k]!),
            dir,
            attrs | DMA_ATTR_SKIP_CPU_SYNC,
          );
        }
        return -EIO;
      }
      sgSetDmaAddress(s, addr as never);
      sgSetDmaLen(s, s.length);
    }
    sgDmaMarkSwiotlb(list[0]!);
    return list.length;
  }
  const coherent = devIsDmaCoherent(dev);
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && !coherent) {
    for (const s of list) if (hasKernelVa(s)) archSyncDmaForDevice(m, sgPhys(s), s.length, dir);
  }
  // Lay the entries out granule-aligned, padding before an entry that would straddle a segment boundary.
  const mask = dev.state.segmentBoundary;
  const n = list.length;
  const ioOff = new Float64Array(n); // offset of the data inside its first granule
  const ioLen = new Float64Array(n); // widened (granule-aligned, padded) length
  let iovaLen = 0;
  for (let i = 0; i < n; i++) {
    const s = list[i]!;
    const off = sgPhys(s) % IOVA_GRANULE;
    const len = Math.ceil((s.length + off) / IOVA_GRANULE) * IOVA_GRANULE;
    if (mask !== ULONG_MAX && i > 0) {
      const span = mask + 1;
      const pad = (span - (iovaLen % span)) % span;
      if (pad > 0 && pad < len - 1) {
        ioLen[i - 1] = ioLen[i - 1]! + pad;
        iovaLen += pad;
      }
    }
    ioOff[i] = off;
    ioLen[i] = len;
    iovaLen += len;
  }
  const iova = iovaLen === 0 ? 0 : iommuDmaAllocIova(dev, iovaLen, dev.state.dmaMaskBits);
  if (iovaLen > 0 && iova === 0) return -ENOMEM;
  // iommu_map_sg: each widened entry's pages, consecutively.
  const prot = dmaInfoToProt(dir, coherent, attrs);
  let at = iova;
  for (let i = 0; i < n; i++) {
    const s = list[i]!;
    const base = sgPhys(s) - ioOff[i]!;
    const mapLen = Math.ceil((s.length + ioOff[i]!) / IOVA_GRANULE) * IOVA_GRANULE;
    if (iommuMap(dev.iommuDomain!, at, base, mapLen, prot) !== 0) {
      if (at > iova) iommuUnmap(dev.iommuDomain!, iova, at - iova);
      iommuDmaFreeIova(dev, iova, iovaLen);
      return -EINVAL;
    }
    at += ioLen[i]!;
  }
  return finaliseSg(dev, list, ioOff, ioLen, iova);
}

/**
 * `__finalise_sg()`: walks the entries with a running IOVA and appends an
 * entry to the current output segment when there is one, the entry starts
 * at a granule boundary, its IOVA is not on a segment boundary, and the
 * merged length stays within `max_segment_size`. Output segment k is
 * written to entry k; the others get `DMA_MAPPING_ERROR`/0.
 */
function finaliseSg(
  dev: Device,
  list: Scatterlist[],
  ioOff: Float64Array,
  ioLen: Float64Array,
  iova: number,
): number {
  const mask = dev.state.segmentBoundary;
  const maxLen = dev.state.maxSegmentSize;
  let dmaAddr = iova;
  let cur = -1;
  let curLen = 0;
  let count = 0;
  for (const s of list) {
    sgSetDmaAddress(s, DMA_MAPPING_ERROR);
    sgSetDmaLen(s, 0);
  }
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!;
    const sOff = ioOff[i]!;
    const sLen = s.length;
    const atBoundary = mask === ULONG_MAX ? dmaAddr === 0 : dmaAddr % (mask + 1) === 0;
    if (curLen > 0 && sOff === 0 && !atBoundary && maxLen - curLen >= sLen) {
      curLen += sLen;
    } else {
      cur++;
      curLen = sLen;
      count++;
      sgSetDmaAddress(list[cur]!, (dmaAddr + sOff) as never);
    }
    sgSetDmaLen(list[cur]!, curLen);
    dmaAddr += ioLen[i]!;
    if (sLen + sOff < ioLen[i]!) curLen = 0;
  }
  return count;
}

/** `iommu_dma_unmap_sg()`: one IOVA range from the first to the last valid segment. */
function iommuUnmapSg(dev: Device, list: Scatterlist[], dir: DmaDataDirection, attrs: number): void {
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC)) iommuSyncSg(dev, list, dir, true);
  if (list.length > 0 && sgDmaIsSwiotlb(list[0]!)) {
    for (const s of list) {
      if (sgDmaLen(s) === 0) break;
      iommuDmaUnmapPhys(dev, sgDmaAddress(s), sgDmaLen(s), dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    }
    sgDmaUnmarkSwiotlb(list[0]!);
    return;
  }
  let start = -1;
  let end = 0;
  for (const s of list) {
    if (sgDmaIsBusAddress(s)) {
      sgDmaUnmarkBusAddress(s);
      continue;
    }
    if (sgDmaLen(s) === 0) break;
    if (start < 0) start = sgDmaAddress(s);
    end = sgDmaAddress(s) + sgDmaLen(s);
  }
  if (start >= 0 && end > 0) __iommuDmaUnmap(dev, start, end - start);
}

function iommuSyncSg(dev: Device, list: Scatterlist[], dir: DmaDataDirection, forCpu: boolean): void {
  if (list.length > 0 && sgDmaIsSwiotlb(list[0]!)) {
    for (const s of list) {
      if (forCpu) iommuDmaSyncSingleForCpu(dev, sgDmaAddress(s), s.length, dir);
      else iommuDmaSyncSingleForDevice(dev, sgDmaAddress(s), s.length, dir);
    }
    return;
  }
  if (devIsDmaCoherent(dev)) return;
  for (const s of list) {
    if (!hasKernelVa(s)) continue;
    if (forCpu) archSyncDmaForCpu(dev.machine, sgPhys(s), s.length, dir);
    else archSyncDmaForDevice(dev.machine, sgPhys(s), s.length, dir);
  }
}

// --------------------------------------------------------------------------- parisc sba

/** `DMA_CHUNK_SIZE` on 64-bit parisc: BITS_PER_LONG pages. */
const DMA_CHUNK_SIZE = 64 * PAGE_SIZE;

/**
 * `sba_map_sg()`: `iommu_coalesce_chunks` merges neighbours that end and
 * begin on page boundaries (up to DMA_CHUNK_SIZE and the max segment size),
 * then `iommu_fill_pdir` writes one entry per page with the coherence index
 * of its kernel alias (or per `ciPolicy` for page-less memory).
 */
function sbaMapSg(dev: Device, list: Scatterlist[], _dir: DmaDataDirection): number {
  const maxSeg = dev.state.maxSegmentSize;
  const chunks: { first: number; last: number; len: number; offset: number }[] = [];
  let i = 0;
  while (i < list.length) {
    const first = i;
    const s0 = list[i]!;
    let len = s0.length;
    const offset = sgPhys(s0) % PAGE_SIZE;
    while (i + 1 < list.length) {
      const prev = list[i]!;
      const next = list[i + 1]!;
      if (Math.ceil((len + offset + next.length) / PAGE_SIZE) * PAGE_SIZE > DMA_CHUNK_SIZE) break;
      if (next.length + len > maxSeg) break;
      const prevEnd = sgPhys(prev) + prev.length;
      if (prevEnd % PAGE_SIZE !== 0 || sgPhys(next) % PAGE_SIZE !== 0) break;
      len += next.length;
      i++;
    }
    chunks.push({ first, last: i, len, offset });
    i++;
  }
  for (const s of list) {
    sgSetDmaAddress(s, 0 as never);
    sgSetDmaLen(s, 0);
  }
  for (let k = 0; k < chunks.length; k++) {
    const c = chunks[k]!;
    const pages = Math.ceil((c.len + c.offset) / PAGE_SIZE);
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
      return 0;
    }
    let at = pide * PAGE_SIZE;
    for (let e = c.first; e <= c.last; e++) {
      const s = list[e]!;
      const start = sgPhys(s) - (sgPhys(s) % PAGE_SIZE);
      const end = sgPhys(s) + s.length;
      for (let p = start; p < end; p += PAGE_SIZE) {
        iommuMap(dev.iommuDomain!, at, p, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE, 0, sbaCoherenceVa(dev, p));
        at += PAGE_SIZE;
      }
    }
    sgSetDmaAddress(list[k]!, (pide * PAGE_SIZE + c.offset) as never);
    sgSetDmaLen(list[k]!, c.len);
  }
  return chunks.length;
}

function sbaUnmapSg(dev: Device, list: Scatterlist[]): void {
  for (const s of list) {
    if (sgDmaLen(s) === 0) break;
    sbaUnmapPhys(dev, sgDmaAddress(s), sgDmaLen(s));
  }
}

// --------------------------------------------------------------------------- driver face

function emitSg(
  dev: Device,
  type: 'dma-map-sg' | 'dma-unmap-sg' | 'dma-sync-sg',
  call: string,
  list: Scatterlist[],
  nents: number,
  mapped: number,
  dir: number,
  attrs: number,
  forCpu: boolean,
): void {
  const m = dev.machine;
  if (!m.bus.wants[type]) return;
  const phys = list.map((s) => sgPhys(s) as number);
  const lengths = list.map((s) => s.length);
  // A map reports the first `mapped` DMA segments; unmap and sync, every entry passed.
  const segs = type === 'dma-map-sg' ? Math.max(0, mapped) : list.length;
  const dmaAddrs: number[] = [];
  const dmaLengths: number[] = [];
  for (let i = 0; i < segs && i < list.length; i++) {
    dmaAddrs.push(sgDmaAddress(list[i]!));
    dmaLengths.push(sgDmaLen(list[i]!));
  }
  if (type === 'dma-map-sg') {
    m.bus.emit({
      type,
      device: dev.name,
      call,
      nents,
      mapped,
      dir,
      attrs,
      phys,
      lengths,
      dmaAddrs,
      dmaLengths,
    });
  } else if (type === 'dma-unmap-sg') {
    m.bus.emit({ type, device: dev.name, call, nents, dir, attrs, phys, lengths, dmaAddrs, dmaLengths });
  } else {
    m.bus.emit({ type, device: dev.name, call, forCpu, nents, dir, phys, lengths, dmaAddrs, dmaLengths });
  }
}

/** `__dma_map_sg_attrs()`: the count of DMA segments or a negative errno. */
function mapSg(
  dev: Device,
  call: string,
  sg: Scatterlist,
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  if (!validDmaDirection(dir)) {
    bugDirection(dev, dir);
    return -EINVAL;
  }
  if (!devIsDmaCoherent(dev) && attrs & DMA_ATTR_REQUIRE_COHERENT) return -EOPNOTSUPP;
  const list = entries(sg, nents);
  const ops = getDmaOps(dev);
  let ents: number;
  if (ops.name === 'dma-direct') ents = directMapSg(dev, list, dir, attrs);
  else if (ops.name === 'iommu-dma') ents = iommuMapSg(dev, list, dir, attrs);
  else ents = sbaMapSg(dev, list, dir);
  if (ents > 0) {
    dmaState(dev.machine).stats.maps++;
    emitSg(dev, 'dma-map-sg', call, list, nents, ents, dir, attrs, false);
  } else if (ents !== -EINVAL && ents !== -ENOMEM && ents !== -EIO && ents !== -EREMOTEIO) {
    if (warnOnce(dev, 'map_sg errno')) {
      reportFinding(
        dev.machine,
        WARN.code,
        `WARNING: dma_map_sg: backend returned ${ents}, converted to -EIO`,
        {
          device: dev.name,
          details: { ents },
        },
      );
    }
    return -EIO;
  }
  return ents;
}

/**
 * `dma_map_sg_attrs()`: maps `nents` entries and returns the number of DMA
 * segments (≤ nents) to walk with `sgDmaAddress`/`sgDmaLen` — 0 on any error.
 */
export function dmaMapSgAttrs(
  dev: Device,
  sg: Scatterlist,
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  enterCall(dev.machine, 'dma_map_sg_attrs');
  try {
    const ret = mapSg(dev, 'dma_map_sg_attrs', sg, nents, dir, attrs);
    return ret < 0 ? 0 : ret;
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_map_sg()`. */
export function dmaMapSg(dev: Device, sg: Scatterlist, nents: number, dir: DmaDataDirection): number {
  return dmaMapSgAttrs(dev, sg, nents, dir, 0);
}

/**
 * `dma_map_sgtable()`: maps `orig_nents` and stores the segment count in
 * `sgt.nents`; returns 0 or -EINVAL, -ENOMEM, -EIO, -EREMOTEIO, -EOPNOTSUPP.
 */
export function dmaMapSgtable(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs = 0): number {
  enterCall(dev.machine, 'dma_map_sgtable');
  try {
    const n = mapSg(dev, 'dma_map_sgtable', sgt.sgl!, sgt.origNents, dir, attrs);
    if (n < 0) return n;
    sgt.nents = n;
    return 0;
  } finally {
    leaveCall(dev.machine);
  }
}

function unmapSg(
  dev: Device,
  call: string,
  sg: Scatterlist,
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  if (!validDmaDirection(dir)) {
    bugDirection(dev, dir);
    return;
  }
  const list = entries(sg, nents);
  // dma_unmap_sg_attrs traces and tells dma-debug before the backend runs.
  emitSg(dev, 'dma-unmap-sg', call, list, nents, 0, dir, attrs, true);
  dmaState(dev.machine).stats.unmaps++;
  const ops = getDmaOps(dev);
  if (ops.name === 'dma-direct') directUnmapEntries(dev, list, list.length, dir, attrs);
  else if (ops.name === 'iommu-dma') iommuUnmapSg(dev, list, dir, attrs);
  else sbaUnmapSg(dev, list);
}

/** `dma_unmap_sg_attrs()`: `nents` must be the value given to map, not the count it returned. */
export function dmaUnmapSgAttrs(
  dev: Device,
  sg: Scatterlist,
  nents: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  enterCall(dev.machine, 'dma_unmap_sg_attrs');
  try {
    unmapSg(dev, 'dma_unmap_sg_attrs', sg, nents, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_unmap_sg()`. */
export function dmaUnmapSg(dev: Device, sg: Scatterlist, nents: number, dir: DmaDataDirection): void {
  dmaUnmapSgAttrs(dev, sg, nents, dir, 0);
}

/** `dma_unmap_sgtable()`: uses `orig_nents`. */
export function dmaUnmapSgtable(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs = 0): void {
  enterCall(dev.machine, 'dma_unmap_sgtable');
  try {
    unmapSg(dev, 'dma_unmap_sgtable', sgt.sgl!, sgt.origNents, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

function syncSg(
  dev: Device,
  call: string,
  sg: Scatterlist,
  nents: number,
  dir: DmaDataDirection,
  forCpu: boolean,
): void {
  const m = dev.machine;
  if (!dmaDevNeedSync(dev)) return;
  enterCall(m, call);
  try {
    if (!validDmaDirection(dir)) {
      bugDirection(dev, dir);
      return;
    }
    const list = entries(sg, nents);
    const ops = getDmaOps(dev);
    if (ops.name === 'dma-direct') directSyncSg(dev, list, dir, forCpu);
    else if (ops.name === 'iommu-dma') iommuSyncSg(dev, list, dir, forCpu);
    dmaState(m).stats.syncs++;
    emitSg(dev, 'dma-sync-sg', call, list, nents, 0, dir, 0, forCpu);
  } finally {
    leaveCall(m);
  }
}

/** `dma_sync_sg_for_cpu()`: `nelems` must be the `nents` given to map. */
export function dmaSyncSgForCpu(dev: Device, sg: Scatterlist, nelems: number, dir: DmaDataDirection): void {
  syncSg(dev, 'dma_sync_sg_for_cpu', sg, nelems, dir, true);
}

/** `dma_sync_sg_for_device()`. */
export function dmaSyncSgForDevice(
  dev: Device,
  sg: Scatterlist,
  nelems: number,
  dir: DmaDataDirection,
): void {
  syncSg(dev, 'dma_sync_sg_for_device', sg, nelems, dir, false);
}

/** `dma_sync_sgtable_for_cpu()`: uses `orig_nents`. */
export function dmaSyncSgtableForCpu(dev: Device, sgt: SgTable, dir: DmaDataDirection): void {
  syncSg(dev, 'dma_sync_sg_for_cpu', sgt.sgl!, sgt.origNents, dir, true);
}

/** `dma_sync_sgtable_for_device()`. */
export function dmaSyncSgtableForDevice(dev: Device, sgt: SgTable, dir: DmaDataDirection): void {
  syncSg(dev, 'dma_sync_sg_for_device', sgt.sgl!, sgt.origNents, dir, false);
}
