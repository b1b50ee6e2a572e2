/**
 * swiotlb: the bounce-buffer pool (kernel/dma/swiotlb.c).
 *
 * A pool below 4 GiB of 2 KiB slots grouped in 128-slot segments; a mapping
 * takes a run of slots inside one segment (so at most 256 KiB), found
 * next-fit from a moving index, with the kernel's alignment rules (slot
 * aligned; page aligned for mappings of a page or more; `min_align_mask`
 * bits of the original preserved). Current kernels copy the original into
 * the slot at every map whatever the direction; syncs and unmap copy by
 * direction. Copies are CPU memcpy through the cached kernel mapping,
 * attributed to the agent `swiotlb`.
 *
 * Beyond the kernel, dmalab keeps diagnostics users asked for: a slot map
 * (used, high-water mark, longest free run), bounce byte counters, and the
 * call site of every live bounce mapping, so a leak names who leaked.
 */

import {
  apiCallSite,
  cpuRead,
  cpuWrite,
  type Device,
  DmalabError,
  formatHex,
  type Machine,
  memblockPhysAlloc,
  PAGE_SIZE,
  physToVirt,
  registerFindingCode,
  reportFinding,
  WARN,
  withAgent,
} from '../machine/index.js';
import { archSyncDmaForDevice, devIsDmaCoherent } from './arch.js';
import { dmaDev, dmaState } from './state.js';
import {
  DMA_ATTR_NO_WARN,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  type DmaDataDirection,
  maskLimit,
} from './types.js';

/** `IO_TLB_SHIFT`, `IO_TLB_SIZE`, `IO_TLB_SEGSIZE` (include/linux/swiotlb.h). */
export const IO_TLB_SHIFT = 11;
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
export const IO_TLB_SEGSIZE = 128;
/** The largest bounce: one segment. */
export const IO_TLB_MAX_MAPPING = IO_TLB_SIZE * IO_TLB_SEGSIZE;

export const SWIOTLB_FULL = registerFindingCode({
  code: 'SWIOTLB_FULL',
  severity: 'warning',
  verdict: 'api',
  title: 'swiotlb buffer is full: a mapping failed for lack of bounce slots',
  layer: 'dma',
});

/** Where a live bounce mapping was made (for leak reports). */
export interface BounceOwner {
  device: string;
  call: string;
  step: number;
  orig: number;
  size: number;
  dir: DmaDataDirection;
  stack?: string[];
}

export interface SwiotlbState {
  /** Physical start of the pool. */
  start: number;
  nslabs: number;
  /** Per slot: original physical address it stands for, -1 when free. */
  origAddr: Float64Array;
  /** Per slot: bytes of the mapping from this slot on (the kernel's `alloc_size`). */
  allocSize: Float64Array;
  /** Per slot: free slots from here to the end of its segment (the kernel's `list`). */
  list: Uint16Array;
  /** Next-fit search position. */
  index: number;
  used: number;
  /** Diagnostics, not part of the state hash. */
  diag: {
    highWater: number;
    bouncedToDevice: number;
    bouncedFromDevice: number;
    mapped: number;
    full: number;
    /** Live mappings by first slot index. */
    owners: Map<number, BounceOwner>;
  };
}

/** Whether this machine sets up a bounce pool (the arch's swiotlb_init decision). */
function swiotlbWanted(m: Machine): boolean {
  const p = m.profile;
  if (p.forceSwiotlb) return true;
  switch (p.arch) {
    case 'x86':
      // pci_swiotlb_detect: only when RAM reaches above the 32-bit DMA zone.
      return m.options.ramBytes > 2 ** 32;
    case 'arm64':
      // Always with DMA_BOUNCE_UNALIGNED_KMALLOC; otherwise when RAM exceeds the DMA zone.
      return m.options.kmallocBounce || m.options.ramBytes > 2 ** p.zoneDmaBits;
    case 'parisc':
      return false;
  }
}

/**
 * `swiotlb_init()`: reserves the pool at boot with `memblock_alloc_low`,
 * top-down below `ARCH_LOW_ADDRESS_LIMIT`: 4 GiB, except on arm64, where
 * the limit is the top of ZONE_DMA (`arm64_dma_phys_limit`), so that a
 * platform whose DMA zone the firmware shrank (30 bits on a Raspberry Pi 4)
 * gets bounce slots its devices can reach.
 */
export function initSwiotlb(m: Machine): void {
  const bytes = m.options.swiotlbBytes;
  if (bytes === 0 || !swiotlbWanted(m)) return;
  // nslabs is rounded to whole segments, as the kernel does.
  const nslabs = Math.max(IO_TLB_SEGSIZE, Math.floor(bytes / IO_TLB_SIZE / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE);
  const lowBits = m.profile.arch === 'arm64' ? Math.min(32, m.profile.zoneDmaBits) : 32;
  const start = memblockPhysAlloc(m, nslabs * IO_TLB_SIZE, PAGE_SIZE, 2 ** lowBits, 'swiotlb');
  if (start === null) {
    throw new DmalabError(`no room below 2^${lowBits} for a ${bytes}-byte swiotlb pool`, {
      field: 'swiotlbBytes',
    });
  }
  const list = new Uint16Array(nslabs);
  for (let i = 0; i < nslabs; i++) list[i] = IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE);
  dmaState(m).swiotlb = {
    start,
    nslabs,
    origAddr: new Float64Array(nslabs).fill(-1),
    allocSize: new Float64Array(nslabs),
    list,
    index: 0,
    used: 0,
    diag: { highWater: 0, bouncedToDevice: 0, bouncedFromDevice: 0, mapped: 0, full: 0, owners: new Map() },
  };
}

/** `is_swiotlb_active()`. */
export function isSwiotlbActive(dev: Device): boolean {
  return dmaState(dev.machine).swiotlb !== null;
}

/** `is_swiotlb_force_bounce()`. */
export function isSwiotlbForceBounce(dev: Device): boolean {
  return dev.machine.profile.forceSwiotlb && isSwiotlbActive(dev);
}

/** `is_swiotlb_buffer()`: the physical address lies in the bounce pool. */
export function isSwiotlbBuffer(m: Machine, paddr: number): boolean {
  const t = dmaState(m).swiotlb;
  return t !== null && paddr >= t.start && paddr < t.start + t.nslabs * IO_TLB_SIZE;
}

/** `swiotlb_max_mapping_size()`. */
export function swiotlbMaxMappingSize(dev: Device): number {
  const minAlign = dmaDev(dev).minAlignMask;
  const pad = minAlign > 0 ? Math.ceil(minAlign / IO_TLB_SIZE) * IO_TLB_SIZE : 0;
  return IO_TLB_MAX_MAPPING - pad;
}

function alignOffset(dev: Device, orig: number): number {
  return orig & dmaDev(dev).minAlignMask & (IO_TLB_SIZE - 1);
}

/** Crosses a device segment boundary (`iommu_is_span_boundary` on slot numbers)? */
function spansBoundary(t: SwiotlbState, slot: number, nslots: number, boundaryMask: number): boolean {
  if (boundaryMask >= Number.MAX_SAFE_INTEGER) return false;
  const boundarySlots = Math.floor((boundaryMask + 1) / IO_TLB_SIZE);
  if (boundarySlots === 0) return false;
  const base = Math.floor(t.start / IO_TLB_SIZE) + slot;
  return (base % boundarySlots) + nslots > boundarySlots;
}

/** The slot search (`swiotlb_search_pool_area`). Returns the first slot index or -1. */
function searchSlots(
  dev: Device,
  t: SwiotlbState,
  orig: number,
  allocSize: number,
  allocAlignMask: number,
): number {
  const nslots = Math.ceil((allocSize + alignOffset(dev, orig)) / IO_TLB_SIZE);
  if (nslots > IO_TLB_SEGSIZE || nslots > t.nslabs - t.used) return -1;
  let iotlbAlignMask = dmaDev(dev).minAlignMask;
  let alignMask = allocAlignMask;
  if (alignMask === 0 && iotlbAlignMask === 0 && allocSize >= PAGE_SIZE) alignMask = PAGE_SIZE - 1;
  alignMask |= IO_TLB_SIZE - 1;
  iotlbAlignMask &= ~alignMask;
  const stride = Math.max(1, Math.ceil((Math.max(alignMask, iotlbAlignMask) + 1) / IO_TLB_SIZE));
  const boundary = dev.state.segmentBoundary;
  let index = t.index;
  for (let checked = 0; checked < t.nslabs; ) {
    const addr = t.start + index * IO_TLB_SIZE;
    if (addr % (alignMask + 1) !== 0 || (orig !== 0 && (addr & iotlbAlignMask) !== (orig & iotlbAlignMask))) {
      index = (index + 1) % t.nslabs;
      checked++;
      continue;
    }
    if (!spansBoundary(t, index, nslots, boundary) && t.list[index]! >= nslots) return index;
    index = (index + stride) % t.nslabs;
    checked += stride;
  }
  return -1;
}

function markUsed(t: SwiotlbState, first: number, nslots: number, orig: number, allocSize: number): void {
  for (let i = first; i < first + nslots; i++) {
    t.list[i] = 0;
    t.origAddr[i] = orig + (i - first) * IO_TLB_SIZE;
    t.allocSize[i] = allocSize - (i - first) * IO_TLB_SIZE;
  }
  // Free slots just before the run, inside the segment, now reach only up to it.
  let count = 0;
  for (let i = first - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && t.list[i] !== 0; i--) {
    t.list[i] = ++count;
  }
  t.index = (first + nslots) % t.nslabs;
  t.used += nslots;
  if (t.used > t.diag.highWater) t.diag.highWater = t.used;
}

function releaseSlots(t: SwiotlbState, first: number, offset: number): number {
  const nslots = Math.ceil((t.allocSize[first]! + offset) / IO_TLB_SIZE);
  const segEnd = (Math.floor(first / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE;
  // Merge with the free run that follows, inside the segment (swiotlb_release_slots).
  let count = first + nslots < segEnd ? t.list[first + nslots]! : 0;
  for (let i = first + nslots - 1; i >= first; i--) {
    t.list[i] = ++count;
    t.origAddr[i] = -1;
    t.allocSize[i] = 0;
  }
  for (let i = first - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && t.list[i] !== 0; i--) {
    t.list[i] = ++count;
  }
  t.used -= nslots;
  return nslots;
}

/**
 * Copies between the original and its slot through the cached kernel
 * mapping (`swiotlb_bounce`). `tlbAddr` may point inside a mapping (partial
 * syncs copy only their sub-range).
 */
function bounce(dev: Device, tlbAddr: number, size: number, toDevice: boolean): void {
  const m = dev.machine;
  const t = dmaState(m).swiotlb!;
  const index = Math.floor((tlbAddr - t.start) / IO_TLB_SIZE);
  let orig = t.origAddr[index]!;
  const allocSize = t.allocSize[index]!;
  if (orig < 0) return;
  orig += (tlbAddr % IO_TLB_SIZE) - alignOffset(dev, orig);
  let n = size;
  if (n > allocSize) {
    reportFinding(
      m,
      WARN.code,
      `swiotlb: Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}.`,
      { device: dev.name, details: { allocSize, size } },
    );
    n = allocSize;
  }
  const buf = new Uint8Array(n);
  withAgent(m, 'swiotlb', () => {
    if (toDevice) {
      cpuRead(m, orig, physToVirt(orig), 'cached', buf, 0, n);
      cpuWrite(m, tlbAddr, physToVirt(tlbAddr), 'cached', buf, 0, n);
    } else {
      cpuRead(m, tlbAddr, physToVirt(tlbAddr), 'cached', buf, 0, n);
      cpuWrite(m, orig, physToVirt(orig), 'cached', buf, 0, n);
    }
  });
  if (toDevice) t.diag.bouncedToDevice += n;
  else t.diag.bouncedFromDevice += n;
  if (m.bus.wants['swiotlb-bounce']) {
    m.bus.emit({ type: 'swiotlb-bounce', device: dev.name, orig, slot: tlbAddr, size: n, toDevice });
  }
}

/**
 * `swiotlb_tbl_map_single()`: takes slots for `orig` and copies the original
 * in (always, in current kernels). Returns the slot's physical address, or
 * `DMA_MAPPING_ERROR` with the kernel's "swiotlb buffer is full" report.
 */
export function swiotlbTblMapSingle(
  dev: Device,
  orig: number,
  mappingSize: number,
  allocAlignMask: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  const m = dev.machine;
  const t = dmaState(m).swiotlb;
  if (t === null) return DMA_MAPPING_ERROR;
  const offset = alignOffset(dev, orig);
  const first = searchSlots(dev, t, orig, mappingSize, allocAlignMask);
  if (first < 0) {
    t.diag.full++;
    if (!(attrs & DMA_ATTR_NO_WARN)) {
      reportFinding(
        m,
        SWIOTLB_FULL.code,
        `swiotlb buffer is full (sz: ${mappingSize} bytes), total ${t.nslabs} (slots), used ${t.used} (slots)`,
        { device: dev.name, details: { size: mappingSize, total: t.nslabs, used: t.used } },
      );
    }
    return DMA_MAPPING_ERROR;
  }
  const nslots = Math.ceil((mappingSize + offset) / IO_TLB_SIZE);
  markUsed(t, first, nslots, orig, mappingSize);
  // The first swiotlb mapping of a device makes its syncs matter (dma_reset_need_sync).
  dmaDev(dev).skipSync = false;
  const site = apiCallSite(m);
  t.diag.mapped++;
  t.diag.owners.set(first, {
    device: dev.name,
    call: site.call,
    step: site.step,
    orig,
    size: mappingSize,
    dir,
    ...(site.stack !== undefined ? { stack: site.stack } : {}),
  });
  const tlbAddr = t.start + first * IO_TLB_SIZE + offset;
  if (m.bus.wants['swiotlb-map']) {
    m.bus.emit({ type: 'swiotlb-map', device: dev.name, orig, slot: tlbAddr, size: mappingSize, dir });
  }
  dmaState(m).stats.bounced++;
  bounce(dev, tlbAddr, mappingSize, true);
  return tlbAddr;
}

/**
 * `swiotlb_tbl_unmap_single()`: copies back for FROM_DEVICE/BIDIRECTIONAL
 * unless `DMA_ATTR_SKIP_CPU_SYNC`, then frees the slots.
 */
export function swiotlbTblUnmapSingle(
  dev: Device,
  tlbAddr: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  const m = dev.machine;
  const t = dmaState(m).swiotlb;
  if (t === null || !isSwiotlbBuffer(m, tlbAddr)) return;
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL)) {
    bounce(dev, tlbAddr, size, false);
  }
  const offset = tlbAddr % IO_TLB_SIZE;
  const first = Math.floor((tlbAddr - offset - t.start) / IO_TLB_SIZE);
  if (t.origAddr[first]! < 0) return;
  releaseSlots(t, first, offset);
  t.diag.owners.delete(first);
  if (m.bus.wants['swiotlb-unmap']) {
    m.bus.emit({ type: 'swiotlb-unmap', device: dev.name, slot: tlbAddr, size });
  }
}

/** `swiotlb_sync_single_for_device()`: copy the original in for TO_DEVICE/BIDIRECTIONAL. */
export function swiotlbSyncSingleForDevice(
  dev: Device,
  tlbAddr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  if (!isSwiotlbBuffer(dev.machine, tlbAddr)) return;
  if (dir === DMA_TO_DEVICE || dir === DMA_BIDIRECTIONAL) bounce(dev, tlbAddr, size, true);
}

/** `swiotlb_sync_single_for_cpu()`: copy the slot back for FROM_DEVICE/BIDIRECTIONAL. */
export function swiotlbSyncSingleForCpu(
  dev: Device,
  tlbAddr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  if (!isSwiotlbBuffer(dev.machine, tlbAddr)) return;
  if (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL) bounce(dev, tlbAddr, size, false);
}

/** True when [addr, addr+size) is reachable under the device's mask and bus limit (`dma_capable`). */
export function dmaCapable(dev: Device, addr: number, size: number): boolean {
  if (addr === DMA_MAPPING_ERROR) return false;
  const s = dev.state;
  let limit = maskLimit(s.dmaMaskBits);
  if (s.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(s.busDmaLimitBits));
  return addr + size <= limit;
}

/**
 * `swiotlb_map()`: the direct path's bounce. Maps into the pool, re-checks
 * that the device can reach the slot (else releases it, WARNs "swiotlb addr
 * … overflow"), and cleans the slot for a non-coherent device.
 */
export function swiotlbMap(
  dev: Device,
  paddr: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): number {
  const m = dev.machine;
  const tlbAddr = swiotlbTblMapSingle(dev, paddr, size, 0, dir, attrs);
  if (tlbAddr === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  const dmaAddr = tlbAddr + dev.state.dmaOffset;
  if (!dmaCapable(dev, dmaAddr, size)) {
    swiotlbTblUnmapSingle(dev, tlbAddr, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    reportFinding(
      m,
      WARN.code,
      `swiotlb addr ${formatHex(dmaAddr)}+${size} overflow (mask ${formatHex(maskLimit(dev.state.dmaMaskBits) - 1)}, bus limit ${dev.state.busDmaLimitBits > 0 ? formatHex(maskLimit(dev.state.busDmaLimitBits) - 1) : '0'}).`,
      { device: dev.name, details: { dmaAddr, size } },
    );
    return DMA_MAPPING_ERROR;
  }
  if (!devIsDmaCoherent(dev) && !(attrs & DMA_ATTR_SKIP_CPU_SYNC))
    archSyncDmaForDevice(m, tlbAddr, size, dir);
  return dmaAddr;
}

/** Diagnostics of the bounce pool (beyond the kernel's debugfs). */
export interface SwiotlbStats {
  /** Pool start and slot count (0 slots when the machine has no pool). */
  start: number;
  nslabs: number;
  used: number;
  highWater: number;
  /** Longest run of free slots that one mapping could take (≤ 128). */
  longestFreeRun: number;
  bouncedToDevice: number;
  bouncedFromDevice: number;
  /** Mappings made, and maps refused because the pool was full. */
  mapped: number;
  full: number;
  /** Live bounce mappings with their call sites, in slot order. */
  live: (BounceOwner & { slot: number })[];
}

/** The bounce pool's slot map and counters (dmalab extension of `swiotlb` debugfs). */
export function swiotlbStats(m: Machine): SwiotlbStats {
  const t = dmaState(m).swiotlb;
  if (t === null) {
    return {
      start: 0,
      nslabs: 0,
      used: 0,
      highWater: 0,
      longestFreeRun: 0,
      bouncedToDevice: 0,
      bouncedFromDevice: 0,
      mapped: 0,
      full: 0,
      live: [],
    };
  }
  let longest = 0;
  for (let i = 0; i < t.nslabs; i++) if (t.list[i]! > longest) longest = t.list[i]!;
  const live = [...t.diag.owners]
    .sort((a, b) => a[0] - b[0])
    .map(([slot, o]) => ({ ...o, slot: t.start + slot * IO_TLB_SIZE }));
  return {
    start: t.start,
    nslabs: t.nslabs,
    used: t.used,
    highWater: t.diag.highWater,
    longestFreeRun: longest,
    bouncedToDevice: t.diag.bouncedToDevice,
    bouncedFromDevice: t.diag.bouncedFromDevice,
    mapped: t.diag.mapped,
    full: t.diag.full,
    live,
  };
}
