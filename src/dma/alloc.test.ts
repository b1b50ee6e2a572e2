import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  cacheLinesPresent,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_ATOMIC,
  GFP_KERNEL,
  iommuIovaToPhys,
  isVmallocAddr,
  machineFindings,
  PAGE_OFFSET,
  PAGE_SIZE,
  pageIsAllocated,
  physToVirt,
  runVerdict,
} from '../machine/index.js';
import { kernelRead, kernelWrite, vmallocToPage } from '../mm/index.js';
import {
  DMA_ATTR_FORCE_CONTIGUOUS,
  DMA_ATTR_NO_KERNEL_MAPPING,
  DMA_FROM_DEVICE,
  dmaAllocAttrs,
  dmaAllocCoherent,
  dmaAllocPages,
  dmaAllocRecord,
  dmaAllocWc,
  dmaDeclareCoherentMemory,
  dmaFreeAttrs,
  dmaFreeCoherent,
  dmaFreePages,
  dmaSyncSingleForCpu,
} from './index.js';

const MiB = 1 << 20;

function exchange(profile: string, extra: { iommu?: boolean } = {}) {
  const m = createMachine({ profile, ramBytes: 256 * MiB });
  const dev = addDevice(m, { name: 'snd', ...extra });
  const buf = dmaAllocCoherent(dev, 2 * PAGE_SIZE, GFP_KERNEL);
  expect(buf).not.toBeNull();
  const { cpuAddr, dmaHandle } = buf!;
  // The CPU writes a command, the device reads it; the device writes a status, the CPU reads it.
  expect(kernelRead(m, cpuAddr, 4)).toEqual(new Uint8Array(4)); // zeroed
  kernelWrite(m, cpuAddr, new Uint8Array([1, 2, 3, 4]));
  const deviceSaw = [...deviceDmaRead(dev, dmaHandle, 4)];
  deviceDmaWrite(dev, dmaHandle + PAGE_SIZE, new Uint8Array([9, 8]));
  const cpuSaw = [...kernelRead(m, cpuAddr + PAGE_SIZE, 2)!];
  return { m, dev, cpuAddr, dmaHandle, deviceSaw, cpuSaw };
}

describe('dma_alloc_coherent on every profile', () => {
  it('gives memory the CPU and the device see coherently, with no syncs', () => {
    for (const [profile, extra] of [
      ['x86_64', {}],
      ['arm64-coherent', {}],
      ['arm64-noncoherent', {}],
      ['parisc', {}],
      ['parisc-pcxl', {}],
      ['swiotlb-force', {}],
      ['x86_64', { iommu: true }],
      ['arm64-noncoherent', { iommu: true }],
    ] as const) {
      const r = exchange(profile, extra);
      expect(r.deviceSaw, `${profile} ${JSON.stringify(extra)}`).toEqual([1, 2, 3, 4]);
      expect(r.cpuSaw, `${profile} ${JSON.stringify(extra)}`).toEqual([9, 8]);
      expect(runVerdict(r.m)).toBe('clean');
    }
  });

  it('uses the cached linear map on coherent machines', () => {
    const r = exchange('x86_64');
    expect(r.cpuAddr).toBe(physToVirt(r.dmaHandle));
    expect(dmaAllocRecord(r.m, r.cpuAddr)).toMatchObject({
      attr: 'cached',
      remapped: false,
      source: 'buddy',
    });
  });

  it('remaps non-cacheable on arm64-noncoherent, leaving the cached linear alias', () => {
    const r = exchange('arm64-noncoherent');
    expect(isVmallocAddr(r.cpuAddr)).toBe(true);
    expect(vmallocToPage(r.m, r.cpuAddr)! * PAGE_SIZE).toBe(r.dmaHandle);
    expect(dmaAllocRecord(r.m, r.cpuAddr)).toMatchObject({ attr: 'write-combine', remapped: true });
    // arch_dma_prep_coherent left no line of the kernel alias behind.
    expect(cacheLinesPresent(r.m, r.dmaHandle, 2 * PAGE_SIZE)).toBe(0);
  });

  it('maps uncached in the DMA window on parisc-pcxl, and with the coherence index on parisc', () => {
    expect(dmaAllocRecord(exchange('parisc-pcxl').m, exchange('parisc-pcxl').cpuAddr)).toMatchObject({
      attr: 'uncached',
      remapped: true,
    });
    const sba = exchange('parisc');
    expect(sba.cpuAddr).toBeGreaterThanOrEqual(PAGE_OFFSET);
    expect(dmaAllocRecord(sba.m, sba.cpuAddr)).toMatchObject({ attr: 'cached', remapped: false });
    expect(sba.dmaHandle).toBeLessThan(2 ** 30); // an IOVA of the I/O PDIR
  });

  it('builds an IOMMU allocation from discontiguous pages mapped at one IOVA range', () => {
    const r = exchange('x86_64', { iommu: true });
    const rec = dmaAllocRecord(r.m, r.cpuAddr)!;
    expect(rec.contiguous).toBe(false);
    expect(rec.pages).toHaveLength(2);
    const domain = r.dev.iommuDomain!;
    expect(iommuIovaToPhys(domain, r.dmaHandle)).toBe(rec.pages[0]! * PAGE_SIZE);
    expect(iommuIovaToPhys(domain, r.dmaHandle + PAGE_SIZE)).toBe(rec.pages[1]! * PAGE_SIZE);
    const contig = dmaAllocAttrs(r.dev, 2 * PAGE_SIZE, GFP_KERNEL, DMA_ATTR_FORCE_CONTIGUOUS)!;
    const crec = dmaAllocRecord(r.m, contig.cpuAddr)!;
    expect(crec.pages[1]).toBe(crec.pages[0]! + 1);
  });

  it('frees what it allocated and returns the pages', () => {
    const r = exchange('arm64-noncoherent');
    const rec = dmaAllocRecord(r.m, r.cpuAddr)!;
    dmaFreeCoherent(r.dev, 2 * PAGE_SIZE, r.cpuAddr, r.dmaHandle);
    expect(dmaAllocRecord(r.m, r.cpuAddr)).toBeUndefined();
    expect(pageIsAllocated(r.m, rec.pages[0]!)).toBe(false);
    expect(kernelRead(r.m, r.cpuAddr, 1)).toBeNull(); // the remap is gone: an oops
    expect(machineFindings(r.m).map((f) => f.code)).toEqual(['OOPS']);
  });

  it('returns a page cookie with DMA_ATTR_NO_KERNEL_MAPPING', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'gpu' });
    const a = dmaAllocAttrs(dev, 16 * PAGE_SIZE, GFP_KERNEL, DMA_ATTR_NO_KERNEL_MAPPING)!;
    expect(a.cpuAddr * PAGE_SIZE).toBe(a.dmaHandle); // the cookie is the page
    dmaFreeAttrs(dev, 16 * PAGE_SIZE, a.cpuAddr, a.dmaHandle, DMA_ATTR_NO_KERNEL_MAPPING);
    expect(pageIsAllocated(m, a.cpuAddr)).toBe(false);
  });

  it('serves GFP_ATOMIC from the pre-remapped atomic pool on arm64-noncoherent', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'usb' });
    const a = dmaAllocCoherent(dev, PAGE_SIZE, GFP_ATOMIC)!;
    const b = dmaAllocCoherent(dev, PAGE_SIZE, GFP_ATOMIC)!;
    expect(dmaAllocRecord(m, a.cpuAddr)).toMatchObject({ source: 'atomic-pool', attr: 'write-combine' });
    expect(b.cpuAddr).toBe(a.cpuAddr + PAGE_SIZE);
    dmaFreeCoherent(dev, PAGE_SIZE, a.cpuAddr, a.dmaHandle);
    expect(dmaAllocCoherent(dev, PAGE_SIZE, GFP_ATOMIC)!.cpuAddr).toBe(a.cpuAddr);
  });

  it('allocates from declared device memory first (a sound card buffer without struct page)', () => {
    const m = createMachine({ ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'snd', deviceMemoryBytes: 2 * MiB });
    const mem = dev.deviceMemory!;
    expect(dmaDeclareCoherentMemory(dev, mem.phys, mem.phys, mem.size)).toBe(0);
    const a = dmaAllocCoherent(dev, 64 * 1024, GFP_KERNEL)!;
    expect(a.dmaHandle).toBe(mem.phys);
    kernelWrite(m, a.cpuAddr, new Uint8Array([7]));
    expect(deviceDmaRead(dev, a.dmaHandle, 1)[0]).toBe(7);
    expect(dmaAllocRecord(m, a.cpuAddr)).toMatchObject({ source: 'device-coherent', attr: 'write-combine' });
    const wc = dmaAllocWc(dev, PAGE_SIZE, GFP_KERNEL)!;
    expect(wc.dmaHandle).toBe(mem.phys + 64 * 1024);
  });
});

describe('dma_alloc_pages', () => {
  it('gives cacheable pages that need syncs on a non-coherent device', () => {
    const m = createMachine({ profile: 'arm64-noncoherent', ramBytes: 256 * MiB });
    const dev = addDevice(m, { name: 'cam' });
    const a = dmaAllocPages(dev, PAGE_SIZE, DMA_FROM_DEVICE, GFP_KERNEL)!;
    const va = physToVirt(a.page * PAGE_SIZE);
    kernelRead(m, va, 4); // the CPU looks: the line is cached
    deviceDmaWrite(dev, a.dmaHandle, new Uint8Array([5, 5, 5, 5]));
    expect([...kernelRead(m, va, 4)!]).toEqual([0, 0, 0, 0]);
    dmaSyncSingleForCpu(dev, a.dmaHandle, PAGE_SIZE, DMA_FROM_DEVICE);
    expect([...kernelRead(m, va, 4)!]).toEqual([5, 5, 5, 5]);
    dmaFreePages(dev, PAGE_SIZE, a.page, a.dmaHandle, DMA_FROM_DEVICE);
    expect(pageIsAllocated(m, a.page)).toBe(false);
  });
});
