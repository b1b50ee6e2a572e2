import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  dmaMapSg,
  dmaMapSgtable,
  dmaSyncSgtableForCpu,
  dmaUnmapSgtable,
  EOPNOTSUPP,
} from '../index.js';
import {
  createSgTable,
  forEachSgDmaPage,
  forEachSgPage,
  forEachSgtableDmaSg,
  sgAllocTableFromPages,
  sgDmaAddress,
  sgDmaLen,
  sgPageIterDmaAddress,
} from '../lib/index.js';
import {
  addDevice,
  allocPages,
  cpuRead,
  cpuWrite,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  iommuIovaToPhys,
  machineFindings,
  PAGE_SIZE,
  type Page,
  pageAddress,
  pageToPhys,
  runVerdict,
} from '../machine/index.js';

const MiB = 1 << 20;

/** 64 single pages, allocated so that most are physically scattered (every other page). */
function scatteredPages(m: ReturnType<typeof createMachine>, n: number): Page[] {
  const pages: Page[] = [];
  for (let i = 0; i < n; i++) {
    const pair = allocPages(m, GFP_KERNEL, 1)!; // take an order-1 block, use its second page
    pages.push((pair + 1) as Page);
  }
  return pages;
}

describe('dma_map_sg on dma-direct', () => {
  it('maps every entry on its own: nents segments, DMA address = phys, DMA length = length', () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'ahci' });
    const pages = scatteredPages(m, 8);
    const sgt = createSgTable();
    expect(sgAllocTableFromPages(sgt, pages, 8, 0, 8 * PAGE_SIZE, GFP_KERNEL)).toBe(0);
    expect(sgt.origNents).toBe(8);
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE)).toBe(0);
    expect(sgt.nents).toBe(8);
    let i = 0;
    for (const sg of forEachSgtableDmaSg(sgt)) {
      expect(sgDmaAddress(sg)).toBe(pageToPhys(pages[i]!));
      expect(sgDmaLen(sg)).toBe(PAGE_SIZE);
      i++;
    }
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE);
    expect(runVerdict(m)).toBe('clean');
  });
});

describe('dma_map_sg behind an IOMMU (seed 002)', () => {
  const setup = () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'gpu', iommu: true });
    const pages = scatteredPages(m, 64);
    const sgt = createSgTable();
    expect(sgAllocTableFromPages(sgt, pages, 64, 0, 64 * PAGE_SIZE, GFP_KERNEL)).toBe(0);
    return { m, dev, pages, sgt };
  };

  it('merges 64 scattered pages into fewer DMA segments within the 64 KiB segment limit', () => {
    const { dev, sgt } = setup();
    expect(sgt.origNents).toBe(64);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toBe(0);
    expect(sgt.nents).toBe(4); // 256 KiB of IOVA in 64 KiB segments
    const lens: number[] = [];
    const addrs: number[] = [];
    for (const sg of forEachSgtableDmaSg(sgt)) {
      lens.push(sgDmaLen(sg));
      addrs.push(sgDmaAddress(sg));
    }
    expect(lens).toEqual([65536, 65536, 65536, 65536]);
    expect(addrs).toEqual([addrs[0], addrs[0]! + 65536, addrs[0]! + 131072, addrs[0]! + 196608]);
    // The CPU view is untouched: 64 entries of one page each.
    let cpuEntries = 0;
    for (const p of forEachSgPage(sgt.sgl, sgt.origNents, 0)) {
      expect(p.sg.length).toBe(PAGE_SIZE);
      cpuEntries++;
    }
    expect(cpuEntries).toBe(64);
  });

  it('walks correct DMA addresses with forEachSgDmaPage, and wrong ones with the CPU iterator (the bug the patch fixed)', () => {
    const { dev, pages, sgt } = setup();
    dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    const domain = dev.iommuDomain!;
    // Right: the DMA iterator over nents segments visits 64 pages whose IOVAs translate to the pages in order.
    const good: number[] = [];
    for (const it of forEachSgDmaPage(sgt.sgl, sgt.nents, 0)) good.push(sgPageIterDmaAddress(it));
    expect(good).toHaveLength(64);
    expect(good.map((iova) => iommuIovaToPhys(domain, iova))).toEqual(pages.map((p) => pageToPhys(p)));
    // Wrong: the pre-2019 idiom — for_each_sg_page over nents with sg_dma_address(piter.sg) + pgoffset.
    const bad: number[] = [];
    for (const p of forEachSgPage(sgt.sgl, sgt.nents, 0))
      bad.push(sgDmaAddress(p.sg) + p.sgPgoffset * PAGE_SIZE);
    // It walks the CPU lengths (one page per entry) of only `nents` entries: 4 pages, not 64,
    // and the device would be told to DMA to 4 addresses of which the first is right.
    expect(bad).toHaveLength(4);
    expect(bad[0]).toBe(good[0]);
    expect(bad.slice(1)).toEqual([good[16], good[32], good[48]]);
    // Walking orig_nents with the CPU iterator reaches entries whose DMA address is the error value.
    const orig: number[] = [];
    for (const p of forEachSgPage(sgt.sgl, sgt.origNents, 0))
      orig.push(sgDmaAddress(p.sg) + p.sgPgoffset * PAGE_SIZE);
    expect(orig[4]).toBe(DMA_MAPPING_ERROR);
    expect(orig.filter((a) => a === DMA_MAPPING_ERROR)).toHaveLength(60);
  });

  it('moves real bytes through the merged mapping and unmaps the whole IOVA range', () => {
    const { m, dev, pages, sgt } = setup();
    expect(dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE)).toBe(0);
    const first = sgDmaAddress(sgt.sgl!);
    const data = new Uint8Array(64 * PAGE_SIZE);
    for (let k = 0; k < 64; k++) data.fill(k + 1, k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
    deviceDmaWrite(dev, first, data);
    dmaSyncSgtableForCpu(dev, sgt, DMA_FROM_DEVICE);
    const out = new Uint8Array(1);
    for (const k of [0, 17, 63]) {
      cpuRead(m, pageToPhys(pages[k]!), pageAddress(pages[k]!), 'cached', out, 0, 1);
      expect(out[0]).toBe(k + 1);
    }
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE);
    expect(iommuIovaToPhys(dev.iommuDomain!, first)).toBe(0);
    expect(runVerdict(m)).toBe('clean');
    expect(machineFindings(m)).toEqual([]);
  });

  it('returns 0 from dma_map_sg and -EOPNOTSUPP from dma_map_sgtable for REQUIRE_COHERENT on a non-coherent device', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'rdma' });
    const sgt = createSgTable();
    sgAllocTableFromPages(sgt, scatteredPages(m, 4), 4, 0, 4 * PAGE_SIZE, GFP_KERNEL);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, DMA_ATTR_REQUIRE_COHERENT)).toBe(-EOPNOTSUPP);
    expect(sgt.nents).toBe(4); // left as sg_alloc_table set it
  });
});

describe('dma_map_sg on parisc sba', () => {
  it('coalesces page-aligned neighbours and keeps every page coherent with its kernel alias', () => {
    const m = createMachine({ profile: 'parisc', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'sym' });
    const pages = scatteredPages(m, 8);
    const sgt = createSgTable();
    sgAllocTableFromPages(sgt, pages, 8, 0, 8 * PAGE_SIZE, GFP_KERNEL);
    const n = dmaMapSg(dev, sgt.sgl!, sgt.origNents, DMA_TO_DEVICE);
    expect(n).toBe(1); // 8 page-aligned chunks are virtually contiguous for the IOMMU
    expect(sgDmaLen(sgt.sgl!)).toBe(8 * PAGE_SIZE);
    const p5 = pages[5]!;
    cpuWrite(m, pageToPhys(p5), pageAddress(p5), 'cached', new Uint8Array([42]), 0, 1);
    expect(deviceDmaRead(dev, sgDmaAddress(sgt.sgl!) + 5 * PAGE_SIZE, 1)[0]).toBe(42);
  });
});
