import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  DMA_BIDIRECTIONAL,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_NONE,
  DMA_TO_DEVICE,
  dmaCanMmap,
  dmaGetCacheAlignment,
  dmaGetMergeBoundary,
  dmaGetRequiredMask,
  dmaMapPage,
  dmaMappingError,
  dmaMapResource,
  dmaMapSingle,
  dmaMaxMappingSize,
  dmaNeedSync,
  dmaOptMappingSize,
  dmaSetMask,
  dmaSyncSingleForCpu,
  dmaUnmapPage,
  dmaUnmapSingle,
  EIO,
  isSwiotlbBuffer,
  swiotlbStats,
} from '../index.js';
import {
  addDevice,
  allocPages,
  cpuRead,
  cpuWrite,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  IOMMU_CACHE,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuCoherenceIndex,
  iommuIovaProt,
  machineFindings,
  PAGE_SIZE,
  pageAddress,
  pageToPhys,
  resolveProfile,
  runVerdict,
  VMALLOC_START,
} from '../machine/index.js';

const MiB = 1 << 20;

describe('iommu-dma', () => {
  it('allocates IOVAs top-down below 4 GiB first, with direction permissions, and reuses a freed IOVA next', () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'gpu', iommu: true });
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toBe(0);
    const p = allocPages(m, GFP_KERNEL, 2)!;
    const a = dmaMapPage(dev, p, 0x10, 100, DMA_TO_DEVICE);
    expect(a).toBe(0xffff_f010);
    expect(dmaMappingError(dev, a)).toBe(0);
    expect(iommuIovaProt(dev.iommuDomain!, a)).toBe(IOMMU_READ | IOMMU_CACHE);
    const b = dmaMapPage(dev, p, 0, 3 * PAGE_SIZE, DMA_FROM_DEVICE);
    expect(b).toBe(0xffff_8000); // 3 pages round up to a 4-page, 4-page-aligned range
    expect(dmaMappingError(dev, b)).toBe(0);
    expect(iommuIovaProt(dev.iommuDomain!, b)).toBe(IOMMU_WRITE | IOMMU_CACHE);
    // The device writes through the IOVA into the page; a write through the read-only mapping faults.
    deviceDmaWrite(dev, b, new Uint8Array([1, 2, 3]));
    dmaSyncSingleForCpu(dev, b, 3 * PAGE_SIZE, DMA_FROM_DEVICE);
    const out = new Uint8Array(3);
    cpuRead(m, pageToPhys(p), pageAddress(p), 'cached', out, 0, 3);
    expect([...out]).toEqual([1, 2, 3]);
    deviceDmaWrite(dev, a, new Uint8Array([9]));
    expect(machineFindings(m).map((f) => f.code)).toEqual(['IOMMU_FAULT']);
    dmaUnmapPage(dev, a, 100, DMA_TO_DEVICE);
    const c = dmaMapPage(dev, p, 0, 64, DMA_BIDIRECTIONAL);
    expect(c).toBe(0xffff_f000); // the freed IOVA, from the range cache
    // A device still holding the stale IOVA now reaches the new mapping's page.
    expect([...deviceDmaRead(dev, a - 0x10, 3)]).toEqual([1, 2, 3]);
    expect(machineFindings(m)).toHaveLength(1);
  });

  it('answers the capability queries of an IOMMU', () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'gpu', iommu: true });
    expect(dmaGetMergeBoundary(dev)).toBe(PAGE_SIZE - 1);
    expect(dmaOptMappingSize(dev)).toBe(128 * 1024);
    expect(dmaGetRequiredMask(dev)).toBe(32);
    expect(dmaCanMmap(dev)).toBe(true);
    expect(dmaNeedSync(dev, 0xffff_f000 as never)).toBe(true);
  });
});

describe('dma-direct queries', () => {
  it('reports required masks, max mapping sizes, cache alignment and mmap ability per profile', () => {
    const x86 = createMachine({ ramBytes: 6 * 1024 * MiB, swiotlbBytes: 4 * MiB });
    const d = addDevice(x86, { name: 'nic' });
    expect(dmaGetRequiredMask(d)).toBe(33);
    expect(dmaMaxMappingSize(d)).toBe(256 * 1024); // limited: swiotlb may bounce
    expect(dmaSetMask(d, DMA_BIT_MASK(64))).toBe(0);
    expect(dmaMaxMappingSize(d)).toBe(Number.MAX_SAFE_INTEGER);
    expect(dmaGetMergeBoundary(d)).toBe(0);
    expect(dmaGetCacheAlignment(x86)).toBe(1);
    expect(dmaCanMmap(d)).toBe(true);
    expect(dmaSetMask(d, DMA_BIT_MASK(24))).toBe(0); // covers ZONE_DMA
    expect(dmaSetMask(d, DMA_BIT_MASK(20))).toBe(-EIO);

    const arm = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const cam = addDevice(arm, { name: 'cam' });
    expect(dmaGetCacheAlignment(arm)).toBe(128);
    expect(dmaCanMmap(cam)).toBe(true);
    expect(dmaNeedSync(cam, 0x100000 as never)).toBe(true);
    const pcxl = createMachine({ profile: 'parisc-pcxl', ramBytes: 256 * MiB });
    expect(dmaCanMmap(addDevice(pcxl, { name: 'lasi' }))).toBe(false);
  });

  it('bounces small kmalloc-sized FROM_DEVICE mappings of a non-coherent arm64 device, by size alone', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'cam' });
    const buf = pageAddress(allocPages(m, GFP_KERNEL, 0)!);
    const small = dmaMapSingle(dev, buf, 64, DMA_FROM_DEVICE); // kmalloc-64 is not 128-aligned
    expect(isSwiotlbBuffer(m, small)).toBe(true);
    const sized = dmaMapSingle(dev, buf + 256, 100, DMA_FROM_DEVICE); // kmalloc-128 is
    expect(sized).toBe(buf - 2 ** 52 + 256);
    const out = dmaMapSingle(dev, buf + 512, 64, DMA_TO_DEVICE); // TO_DEVICE is always safe
    expect(isSwiotlbBuffer(m, out)).toBe(false);
    dmaUnmapSingle(dev, small, 64, DMA_FROM_DEVICE);
    expect(swiotlbStats(m).mapped).toBe(1);

    const old = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB, kmallocBounce: false });
    const dev2 = addDevice(old, { name: 'cam' });
    const b2 = pageAddress(allocPages(old, GFP_KERNEL, 0)!);
    expect(isSwiotlbBuffer(old, dmaMapSingle(dev2, b2, 64, DMA_FROM_DEVICE))).toBe(false);
  });
});

describe('parisc sba IOMMU', () => {
  it('programs the coherence index of the kernel alias and does no cache maintenance', () => {
    const m = createMachine({ profile: 'parisc', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'sym53c8xx' });
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toBe(-EIO); // sba "encourages" 32-bit masks
    expect(dmaSetMask(dev, DMA_BIT_MASK(32))).toBe(0);
    const p = allocPages(m, GFP_KERNEL, 0)!;
    const kva = pageAddress(p);
    cpuWrite(m, pageToPhys(p), kva, 'cached', new Uint8Array([5, 6]), 0, 2);
    const a = dmaMapSingle(dev, kva, 64, DMA_TO_DEVICE);
    expect(a).toBe(0x1000); // IOVA 0 is never handed out
    const colours = (4 * MiB) / PAGE_SIZE;
    expect(iommuCoherenceIndex(dev.iommuDomain!, a)).toBe((kva / PAGE_SIZE) % colours);
    // The dirty kernel-alias line is seen by the device without any flush.
    expect([...deviceDmaRead(dev, a, 2)]).toEqual([5, 6]);
    expect(m.hw.cache.stats.writebacks).toBe(0);
    expect(dmaNeedSync(dev, a)).toBe(true); // dma-debug on: syncs always run
    expect(dmaCanMmap(dev)).toBe(false);
    dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
    expect(dmaMapSingle(dev, kva, 3 * PAGE_SIZE, DMA_FROM_DEVICE)).toBe(0x4000); // aligned to 4 pages
    const quiet = createMachine({ profile: 'parisc', ramBytes: 256 * MiB, check: false });
    const d2 = addDevice(quiet, { name: 'x' });
    dmaSetMask(d2, DMA_BIT_MASK(32));
    expect(dmaNeedSync(d2, 0x1000 as never)).toBe(false);
  });
});

describe('API validation', () => {
  it('turns DMA_NONE into a BUG finding and the failure value', () => {
    const m = createMachine({ ramBytes: 64 * MiB });
    const dev = addDevice(m, { name: 'nic' });
    const buf = pageAddress(allocPages(m, GFP_KERNEL, 0)!);
    expect(dmaMapSingle(dev, buf, 64, DMA_NONE)).toBe(DMA_MAPPING_ERROR);
    const f = machineFindings(m);
    expect(f.map((x) => [x.code, x.call])).toEqual([['BUG', 'dma_map_single_attrs']]);
    expect(f[0]!.message).toContain('invalid DMA direction DMA_NONE');
    expect(runVerdict(m)).toBe('broken');
  });

  it('rejects a vmalloc address before anything else, warning once', () => {
    const m = createMachine({ ramBytes: 64 * MiB });
    const dev = addDevice(m, { name: 'nic' });
    expect(dmaMapSingle(dev, VMALLOC_START + 0x1000, 64, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapSingle(dev, VMALLOC_START + 0x2000, 64, DMA_TO_DEVICE)).toBe(DMA_MAPPING_ERROR);
    expect(machineFindings(m).map((f) => [f.code, f.message])).toEqual([
      ['WARN', 'rejecting DMA map of vmalloc memory'],
    ]);
  });

  it('maps a peer BAR with dma_map_resource without bouncing, and maps RAM too (dma-debug reports it)', () => {
    const m = createMachine({ ramBytes: 64 * MiB, profile: 'swiotlb-force' });
    const peer = addDevice(m, { name: 'nvme', deviceMemoryBytes: 2 * MiB });
    const dev = addDevice(m, { name: 'nic' });
    const bar = peer.deviceMemory!.phys;
    expect(dmaMapResource(dev, bar, 4096, DMA_BIDIRECTIONAL)).toBe(DMA_MAPPING_ERROR); // swiotlb=force refuses MMIO
    const m2 = createMachine({ ramBytes: 64 * MiB });
    const p2 = addDevice(m2, { name: 'nvme', deviceMemoryBytes: 2 * MiB });
    const d2 = addDevice(m2, { name: 'nic' });
    expect(dmaMapResource(d2, p2.deviceMemory!.phys, 4096, DMA_BIDIRECTIONAL)).toBe(p2.deviceMemory!.phys);
    const ram = pageToPhys(allocPages(m2, GFP_KERNEL, 0)!);
    expect(dmaMapResource(d2, ram, 4096, DMA_BIDIRECTIONAL)).toBe(ram);
    expect(machineFindings(m2).map((f) => f.code)).toEqual(['DMA_MAP_RESOURCE_RAM']);
  });
});

describe('swiotlb placement', () => {
  it("sits below arm64's ZONE_DMA limit, so a 30-bit bus reaches its bounce slots (as on a Raspberry Pi 4)", () => {
    const rpi4 = { ...resolveProfile('arm64-coherent'), zoneDmaBits: 30 };
    const m = createMachine({ profile: rpi4, ramBytes: 8 * 1024 * MiB, swiotlbBytes: 4 * MiB });
    const dev = addDevice(m, { name: 'hvs', busDmaLimitBits: 30 });
    expect(dmaSetMask(dev, DMA_BIT_MASK(32))).toBe(0);
    const page = allocPages(m, GFP_KERNEL, 0)!;
    expect(pageToPhys(page)).toBeGreaterThanOrEqual(2 ** 32);
    const a = dmaMapSingle(dev, pageAddress(page), 4096, DMA_TO_DEVICE);
    expect(dmaMappingError(dev, a)).toBe(0);
    expect(isSwiotlbBuffer(m, a)).toBe(true);
    expect(a + 4096).toBeLessThanOrEqual(2 ** 30);
    dmaUnmapSingle(dev, a, 4096, DMA_TO_DEVICE);
    expect(machineFindings(m)).toEqual([]);
  });

  it('stays just below 4 GiB on x86, out of a 30-bit bus’s reach: the mapping fails instead', () => {
    const m = createMachine({ ramBytes: 8 * 1024 * MiB, swiotlbBytes: 4 * MiB });
    const dev = addDevice(m, { name: 'disp', busDmaLimitBits: 30 });
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const a = dmaMapSingle(dev, pageAddress(page), 4096, DMA_TO_DEVICE);
    expect(a).toBe(DMA_MAPPING_ERROR);
    expect(dmaMappingError(dev, a)).not.toBe(0);
  });
});
