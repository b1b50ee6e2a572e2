/**
 * The driver face of the DMA mapping API (kernel/dma/mapping.c,
 * include/linux/dma-mapping.h): masks, capability queries, streaming maps
 * and syncs. Every entry point has one shape: validate as the kernel does
 * (a `BUG_ON` becomes a `BUG` finding and the failure value), dispatch to
 * the device's backend, then emit the event the checker consumes (the
 * kernel's tracepoint + dma-debug hook).
 */

import {
  BUG,
  type Device,
  type DmaAddr,
  DmalabError,
  type DmaMaskBits,
  EIO,
  ENOMEM,
  enterCall,
  isLinearMapVa,
  isVmallocAddr,
  type KernelVa,
  leaveCall,
  linearVirtToPhys,
  type Machine,
  PAGE_SIZE,
  type Page,
  type PhysAddr,
  pageToPhys,
  pfnValid,
  reportFinding,
  WARN,
} from '../machine/index.js';
import { devIsDmaCoherent } from './arch.js';
import { directOps } from './direct.js';
import { iommuDmaOps } from './iommu-dma.js';
import type { DmaMapOps } from './ops.js';
import { sbaOps } from './sba.js';
import { dmaDev, dmaState, warnOnce } from './state.js';
import {
  DMA_ATTR_MMIO,
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_MAPPING_ERROR,
  type DmaDataDirection,
  dmaDirName,
  maskLimit,
  validDmaDirection,
} from './types.js';

/** `get_dma_ops()` + `use_dma_iommu()`: the backend serving a device. */
export function getDmaOps(dev: Device): DmaMapOps {
  if (dev.state.iommuDomain < 0) return directOps;
  return dev.machine.profile.iommuOps === 'sba' ? sbaOps : iommuDmaOps;
}

/** `dma_dev_need_sync()`: syncs run unless skip-sync is set — and always under dma-debug (`check`). */
export function dmaDevNeedSync(dev: Device): boolean {
  return dev.machine.options.check || !dmaDev(dev).skipSync;
}

/** `dma_setup_need_sync()`: computed whenever the mask is set. */
function setupNeedSync(dev: Device): void {
  const ops = getDmaOps(dev);
  const d = dmaDev(dev);
  if (ops.name !== 'sba') d.skipSync = devIsDmaCoherent(dev);
  else d.skipSync = ops.syncSingleForCpu === undefined && ops.syncSingleForDevice === undefined;
}

/** `BUG_ON(!valid_dma_direction(dir))`: a BUG finding; the caller returns its failure value. */
export function bugDirection(dev: Device, dir: number): void {
  reportFinding(
    dev.machine,
    BUG.code,
    `kernel BUG at kernel/dma/mapping.c: invalid DMA direction ${dmaDirName(dir)} [device=${dev.name}]`,
    { device: dev.name, details: { dir } },
  );
}

function checkMaskBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > 64) {
    throw new DmalabError(`a DMA mask must be DMA_BIT_MASK(n) with n from 0 to 64, got ${bits}`, {
      field: 'mask',
    });
  }
}

/**
 * `dma_set_mask()`: 0, or -EIO when the backend cannot honour the mask.
 * `DMA_BIT_MASK(n)` gives the mask as a bit count.
 */
export function dmaSetMask(dev: Device, mask: DmaMaskBits): number {
  checkMaskBits(mask);
  enterCall(dev.machine, 'dma_set_mask');
  try {
    if (mask === 0 || !getDmaOps(dev).dmaSupported(dev, mask)) return -EIO;
    dev.state.dmaMaskBits = mask;
    setupNeedSync(dev);
    return 0;
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_set_coherent_mask()`: 0 or -EIO. */
export function dmaSetCoherentMask(dev: Device, mask: DmaMaskBits): number {
  checkMaskBits(mask);
  enterCall(dev.machine, 'dma_set_coherent_mask');
  try {
    if (mask === 0 || !getDmaOps(dev).dmaSupported(dev, mask)) return -EIO;
    dev.state.coherentDmaMaskBits = mask;
    return 0;
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_set_mask_and_coherent()`: the coherent mask is set only when the streaming one was. */
export function dmaSetMaskAndCoherent(dev: Device, mask: DmaMaskBits): number {
  enterCall(dev.machine, 'dma_set_mask_and_coherent');
  try {
    const rc = dmaSetMask(dev, mask);
    if (rc === 0) dmaSetCoherentMask(dev, mask);
    return rc;
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_get_mask()`, as a bit count. */
export function dmaGetMask(dev: Device): DmaMaskBits {
  return dev.state.dmaMaskBits as DmaMaskBits;
}

/** `dma_get_required_mask()`, as a bit count. */
export function dmaGetRequiredMask(dev: Device): DmaMaskBits {
  return getDmaOps(dev).getRequiredMask(dev) as DmaMaskBits;
}

/** `dma_addressing_limited()`: the device cannot reach all of RAM without help. */
export function dmaAddressingLimited(dev: Device): boolean {
  const s = dev.state;
  let limit = maskLimit(s.dmaMaskBits);
  if (s.busDmaLimitBits > 0) limit = Math.min(limit, maskLimit(s.busDmaLimitBits));
  const ops = getDmaOps(dev);
  if (limit < maskLimit(ops.getRequiredMask(dev))) return true;
  // Pure dma-direct: RAM beyond the device's reach (a bus offset or a limit below the top of RAM).
  return ops.name === 'dma-direct' && dev.machine.options.ramBytes - 1 + s.dmaOffset >= limit;
}

/** `dma_max_mapping_size()`. */
export function dmaMaxMappingSize(dev: Device): number {
  return getDmaOps(dev).maxMappingSize(dev);
}

/** `dma_opt_mapping_size()`. */
export function dmaOptMappingSize(dev: Device): number {
  const ops = getDmaOps(dev);
  return Math.min(ops.maxMappingSize(dev), ops.optMappingSize(dev));
}

/** `dma_get_merge_boundary()`: 0 means the backend cannot merge segments. */
export function dmaGetMergeBoundary(dev: Device): number {
  return getDmaOps(dev).getMergeBoundary(dev);
}

/** `dma_get_cache_alignment()`: `ARCH_DMA_MINALIGN`, or 1 where the arch defines none. */
export function dmaGetCacheAlignment(m: Machine): number {
  return m.profile.archDmaMinalign;
}

/** `dma_get_max_seg_size()`. */
export function dmaGetMaxSegSize(dev: Device): number {
  return dev.state.maxSegmentSize;
}

/** `dma_set_max_seg_size()`. */
export function dmaSetMaxSegSize(dev: Device, size: number): number {
  dev.state.maxSegmentSize = size;
  return 0;
}

/** `dma_get_seg_boundary()`. */
export function dmaGetSegBoundary(dev: Device): number {
  return dev.state.segmentBoundary;
}

/** `dma_set_seg_boundary()`. */
export function dmaSetSegBoundary(dev: Device, mask: number): number {
  dev.state.segmentBoundary = mask;
  return 0;
}

/** `dma_set_min_align_mask()`. */
export function dmaSetMinAlignMask(dev: Device, mask: number): void {
  dmaDev(dev).minAlignMask = mask;
}

/** `dma_get_min_align_mask()`. */
export function dmaGetMinAlignMask(dev: Device): number {
  return dmaDev(dev).minAlignMask;
}

/** `dma_need_sync()`: whether syncs on this address do anything. */
export function dmaNeedSync(dev: Device, dmaAddr: DmaAddr): boolean {
  if (!dmaDevNeedSync(dev)) return false;
  return getDmaOps(dev).needSync(dev, dmaAddr);
}

/** `dma_need_unmap()`: false only for dma-direct with nothing to sync and no dma-debug. */
export function dmaNeedUnmap(dev: Device): boolean {
  if (getDmaOps(dev).name !== 'dma-direct' || dev.machine.options.check) return true;
  return !dmaDev(dev).skipSync;
}

/**
 * `dma_can_mmap()`: the backend's answer under the profile's own mmap
 * strategy; under another chosen strategy, true unless it is `refuse`.
 */
export function dmaCanMmap(dev: Device): boolean {
  const s = dev.machine.options.mmapStrategy;
  if (s === 'refuse') return false;
  if (s === dev.machine.profile.mmapStrategy) return getDmaOps(dev).canMmap(dev);
  return true;
}

// ---------------------------------------------------------------------------
// Streaming mappings

function emitMap(
  dev: Device,
  call: string,
  cpuAddr: number,
  phys: number,
  size: number,
  dir: number,
  attrs: number,
  addr: number,
  backend: string,
): void {
  const m = dev.machine;
  if (addr === DMA_MAPPING_ERROR) dmaState(m).stats.mapErrors++;
  else dmaState(m).stats.maps++;
  if (m.bus.wants['dma-map']) {
    m.bus.emitTo(m.bus.listeners['dma-map'], {
      type: 'dma-map',
      device: dev.name,
      call,
      cpuAddr,
      phys,
      size,
      dir,
      attrs,
      dmaAddr: addr,
      backend,
      step: m.clock.step,
      time: m.clock.time,
    });
  }
}

/** The body of `dma_map_phys()`, shared by the map_* entry points. */
function mapPhys(
  dev: Device,
  call: string,
  cpuAddr: number,
  phys: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): DmaAddr {
  if (!validDmaDirection(dir)) {
    bugDirection(dev, dir);
    return DMA_MAPPING_ERROR;
  }
  const ops = getDmaOps(dev);
  let addr: number = DMA_MAPPING_ERROR;
  // dma_map_phys: a non-coherent device cannot honour REQUIRE_COHERENT.
  if (!(attrs & DMA_ATTR_REQUIRE_COHERENT) || devIsDmaCoherent(dev)) {
    addr = ops.mapPhys(dev, phys, size, dir, attrs);
  }
  emitMap(dev, call, cpuAddr, phys, size, dir, attrs, addr, ops.name);
  return addr as DmaAddr;
}

function unmapPhys(
  dev: Device,
  call: string,
  addr: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  if (!validDmaDirection(dir)) {
    bugDirection(dev, dir);
    return;
  }
  const m = dev.machine;
  // The kernel would maintain the caches of a wild address; dmalab leaves that out and lets dma-debug speak.
  if (addr !== DMA_MAPPING_ERROR) getDmaOps(dev).unmapPhys(dev, addr, size, dir, attrs);
  dmaState(m).stats.unmaps++;
  if (m.bus.wants['dma-unmap']) {
    m.bus.emitTo(m.bus.listeners['dma-unmap'], {
      type: 'dma-unmap',
      device: dev.name,
      call,
      dmaAddr: addr,
      size,
      dir,
      attrs,
      step: m.clock.step,
      time: m.clock.time,
    });
  }
}

/** `dma_map_phys()`: maps a physical range for DMA; `DMA_MAPPING_ERROR` on failure. */
export function dmaMapPhys(
  dev: Device,
  phys: PhysAddr | number,
  size: number,
  dir: DmaDataDirection,
  attrs = 0,
): DmaAddr {
  enterCall(dev.machine, 'dma_map_phys');
  try {
    return mapPhys(dev, 'dma_map_phys', -1, phys, size, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_unmap_phys()`. */
export function dmaUnmapPhys(
  dev: Device,
  addr: DmaAddr,
  size: number,
  dir: DmaDataDirection,
  attrs = 0,
): void {
  enterCall(dev.machine, 'dma_unmap_phys');
  try {
    unmapPhys(dev, 'dma_unmap_phys', addr, size, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_map_page_attrs()`. */
export function dmaMapPageAttrs(
  dev: Device,
  page: Page,
  offset: number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): DmaAddr {
  const m = dev.machine;
  enterCall(m, 'dma_map_page_attrs');
  try {
    const phys = pageToPhys(page) + offset;
    if (attrs & DMA_ATTR_MMIO) return DMA_MAPPING_ERROR;
    // Under dma-debug, ZONE_DEVICE pages must go through dma_map_phys (WARN_ON_ONCE).
    if (m.options.check && isZoneDevicePage(m, page)) {
      if (warnOnce(dev, 'map_page zone device')) {
        reportFinding(
          m,
          WARN.code,
          `WARNING: dma_map_page_attrs of a ZONE_DEVICE page [pfn=0x${page.toString(16)}]`,
          {
            device: dev.name,
            details: { pfn: page },
          },
        );
      }
      return DMA_MAPPING_ERROR;
    }
    return mapPhys(dev, 'dma_map_page_attrs', -1, phys, size, dir, attrs);
  } finally {
    leaveCall(m);
  }
}

function isZoneDevicePage(m: Machine, page: Page): boolean {
  return pfnValid(m, page) && page * PAGE_SIZE >= m.options.ramBytes;
}

/** `dma_map_page()`. */
export function dmaMapPage(
  dev: Device,
  page: Page,
  offset: number,
  size: number,
  dir: DmaDataDirection,
): DmaAddr {
  return dmaMapPageAttrs(dev, page, offset, size, dir, 0);
}

/** `dma_unmap_page_attrs()`: a no-op for `DMA_ATTR_MMIO`. */
export function dmaUnmapPageAttrs(
  dev: Device,
  addr: DmaAddr,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  if (attrs & DMA_ATTR_MMIO) return;
  enterCall(dev.machine, 'dma_unmap_page_attrs');
  try {
    unmapPhys(dev, 'dma_unmap_page_attrs', addr, size, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_unmap_page()`. */
export function dmaUnmapPage(dev: Device, addr: DmaAddr, size: number, dir: DmaDataDirection): void {
  dmaUnmapPageAttrs(dev, addr, size, dir, 0);
}

/**
 * `dma_map_single_attrs()`: maps a kernel virtual address of the linear
 * map. A vmalloc address is refused before anything else, with the kernel's
 * "rejecting DMA map of vmalloc memory" WARN and `DMA_MAPPING_ERROR`.
 */
export function dmaMapSingleAttrs(
  dev: Device,
  cpuAddr: KernelVa | number,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): DmaAddr {
  const m = dev.machine;
  enterCall(m, 'dma_map_single_attrs');
  try {
    if (isVmallocAddr(cpuAddr)) {
      if (warnOnce(dev, 'map_single vmalloc')) {
        reportFinding(m, WARN.code, 'rejecting DMA map of vmalloc memory', {
          device: dev.name,
          details: { cpuAddr, size },
        });
      }
      emitMap(
        dev,
        'dma_map_single_attrs',
        cpuAddr,
        -1,
        size,
        dir,
        attrs,
        DMA_MAPPING_ERROR,
        getDmaOps(dev).name,
      );
      return DMA_MAPPING_ERROR;
    }
    // virt_to_page() + offset_in_page(): garbage for non-linear addresses, as in the kernel.
    const phys = isLinearMapVa(cpuAddr) ? linearVirtToPhys(cpuAddr) : cpuAddr;
    if (attrs & DMA_ATTR_MMIO) return DMA_MAPPING_ERROR;
    return mapPhys(dev, 'dma_map_single_attrs', cpuAddr, phys, size, dir, attrs);
  } finally {
    leaveCall(m);
  }
}

/** `dma_map_single()`. */
export function dmaMapSingle(
  dev: Device,
  cpuAddr: KernelVa | number,
  size: number,
  dir: DmaDataDirection,
): DmaAddr {
  return dmaMapSingleAttrs(dev, cpuAddr, size, dir, 0);
}

/** `dma_unmap_single_attrs()`. */
export function dmaUnmapSingleAttrs(
  dev: Device,
  addr: DmaAddr,
  size: number,
  dir: DmaDataDirection,
  attrs: number,
): void {
  enterCall(dev.machine, 'dma_unmap_single_attrs');
  try {
    unmapPhys(dev, 'dma_unmap_single_attrs', addr, size, dir, attrs);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_unmap_single()`. */
export function dmaUnmapSingle(dev: Device, addr: DmaAddr, size: number, dir: DmaDataDirection): void {
  dmaUnmapSingleAttrs(dev, addr, size, dir, 0);
}

/**
 * `dma_map_resource()`: maps MMIO (a peer's BAR) for DMA, never bounced,
 * never cache-maintained: `dma_map_phys()` with `DMA_ATTR_MMIO`. Current
 * kernels no longer refuse RAM here; dma-debug reports it ("dma_map_resource
 * called for RAM address").
 */
export function dmaMapResource(
  dev: Device,
  physAddr: PhysAddr | number,
  size: number,
  dir: DmaDataDirection,
  attrs = 0,
): DmaAddr {
  const m = dev.machine;
  enterCall(m, 'dma_map_resource');
  try {
    return mapPhys(dev, 'dma_map_resource', -1, physAddr, size, dir, attrs | DMA_ATTR_MMIO);
  } finally {
    leaveCall(m);
  }
}

/** `dma_unmap_resource()`. */
export function dmaUnmapResource(
  dev: Device,
  addr: DmaAddr,
  size: number,
  dir: DmaDataDirection,
  attrs = 0,
): void {
  enterCall(dev.machine, 'dma_unmap_resource');
  try {
    unmapPhys(dev, 'dma_unmap_resource', addr, size, dir, attrs | DMA_ATTR_MMIO);
  } finally {
    leaveCall(dev.machine);
  }
}

/** `dma_mapping_error()`: -ENOMEM for `DMA_MAPPING_ERROR`, else 0 (and dma-debug marks the mapping checked). */
export function dmaMappingError(dev: Device, dmaAddr: DmaAddr | number): number {
  const m = dev.machine;
  if (m.bus.wants['dma-mapping-error']) {
    m.bus.emitTo(m.bus.listeners['dma-mapping-error'], {
      type: 'dma-mapping-error',
      device: dev.name,
      dmaAddr,
      step: m.clock.step,
      time: m.clock.time,
    });
  }
  return dmaAddr === DMA_MAPPING_ERROR ? -ENOMEM : 0;
}

// ---------------------------------------------------------------------------
// Syncs

function sync(
  dev: Device,
  call: string,
  forCpu: boolean,
  addr: number,
  size: number,
  dir: DmaDataDirection,
): void {
  const m = dev.machine;
  // The inline wrappers return at once when syncs are not needed (no trace, no debug check).
  if (!dmaDevNeedSync(dev)) return;
  enterCall(m, call);
  try {
    if (!validDmaDirection(dir)) {
      bugDirection(dev, dir);
      return;
    }
    const ops = getDmaOps(dev);
    if (addr !== DMA_MAPPING_ERROR) {
      if (forCpu) ops.syncSingleForCpu?.(dev, addr, size, dir);
      else ops.syncSingleForDevice?.(dev, addr, size, dir);
    }
    dmaState(m).stats.syncs++;
    if (m.bus.wants['dma-sync']) {
      m.bus.emitTo(m.bus.listeners['dma-sync'], {
        type: 'dma-sync',
        device: dev.name,
        call,
        forCpu,
        dmaAddr: addr,
        size,
        dir,
        step: m.clock.step,
        time: m.clock.time,
      });
    }
  } finally {
    leaveCall(m);
  }
}

/** `dma_sync_single_for_cpu()`: hands the buffer back to the CPU. */
export function dmaSyncSingleForCpu(dev: Device, addr: DmaAddr, size: number, dir: DmaDataDirection): void {
  sync(dev, 'dma_sync_single_for_cpu', true, addr, size, dir);
}

/** `dma_sync_single_for_device()`: hands the buffer to the device. */
export function dmaSyncSingleForDevice(
  dev: Device,
  addr: DmaAddr,
  size: number,
  dir: DmaDataDirection,
): void {
  sync(dev, 'dma_sync_single_for_device', false, addr, size, dir);
}

/** `dma_sync_single_range_for_cpu()`: a sync of `addr + offset`. */
export function dmaSyncSingleRangeForCpu(
  dev: Device,
  addr: DmaAddr,
  offset: number,
  size: number,
  dir: DmaDataDirection,
): void {
  sync(dev, 'dma_sync_single_for_cpu', true, addr + offset, size, dir);
}

/** `dma_sync_single_range_for_device()`. */
export function dmaSyncSingleRangeForDevice(
  dev: Device,
  addr: DmaAddr,
  offset: number,
  size: number,
  dir: DmaDataDirection,
): void {
  sync(dev, 'dma_sync_single_for_device', false, addr + offset, size, dir);
}
