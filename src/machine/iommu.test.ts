import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  allocPages,
  deviceDmaAccess,
  deviceDmaRead,
  deviceDmaWrite,
  EEXIST,
  EINVAL,
  GFP_KERNEL,
  IOMMU_READ,
  IOMMU_WRITE,
  iommuCoherenceIndex,
  iommuIovaProt,
  iommuIovaToPhys,
  iommuMap,
  iommuMappedPages,
  iommuSetCoherenceIndex,
  iommuUnmap,
  type MachineEvent,
  machineFindings,
  PAGE_SIZE,
  pageToPhys,
  runVerdict,
} from './index.js';

function setup() {
  const m = createMachine({ ramBytes: 64 << 20 });
  const dev = addDevice(m, { name: 'gpu', iommu: true });
  const p = allocPages(m, GFP_KERNEL, 1)!;
  return { m, dev, domain: dev.iommuDomain!, pa: pageToPhys(p) };
}

describe('IOMMU', () => {
  it('translates IOVAs page by page to the mapped frames', () => {
    const { m, dev, domain, pa } = setup();
    // Map the two pages in reverse order: IOVA-contiguous, physically not.
    expect(iommuMap(domain, 0x20_0000, pa + PAGE_SIZE, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    expect(iommuMap(domain, 0x20_1000, pa, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE)).toBe(0);
    expect(iommuIovaToPhys(domain, 0x20_0010)).toBe(pa + PAGE_SIZE + 0x10);
    expect(iommuIovaToPhys(domain, 0x20_1fff)).toBe(pa + 0xfff);
    expect(iommuIovaToPhys(domain, 0x30_0000)).toBe(0);
    const data = new Uint8Array(2 * PAGE_SIZE);
    data.fill(1, 0, PAGE_SIZE);
    data.fill(2, PAGE_SIZE);
    deviceDmaWrite(dev, 0x20_0000, data);
    // Bypassing the IOMMU view: the CPU-physical layout shows the swap.
    expect(deviceDmaRead(dev, 0x20_1000, 1)[0]).toBe(2);
    expect(iommuMappedPages(domain)).toBe(2);
    expect(runVerdict(m)).toBe('clean');
  });

  it('refuses unaligned ranges and double mappings with the kernel errnos', () => {
    const { domain, pa } = setup();
    expect(iommuMap(domain, 0x1000 + 4, pa, PAGE_SIZE, IOMMU_READ)).toBe(-EINVAL);
    expect(iommuMap(domain, 0x1000, pa, 100, IOMMU_READ)).toBe(-EINVAL);
    expect(iommuMap(domain, 0x1000, pa, PAGE_SIZE, IOMMU_READ)).toBe(0);
    expect(iommuMap(domain, 0x1000, pa + PAGE_SIZE, PAGE_SIZE, IOMMU_READ)).toBe(-EEXIST);
    expect(iommuIovaToPhys(domain, 0x1000)).toBe(pa);
  });

  it('faults a write through a read-only entry: event, finding and result', () => {
    const { m, dev, domain, pa } = setup();
    iommuMap(domain, 0x1000, pa, PAGE_SIZE, IOMMU_READ);
    expect(iommuIovaProt(domain, 0x1000)).toBe(IOMMU_READ);
    const events: MachineEvent[] = [];
    m.bus.on('iommu-fault', (e) => events.push(e));
    const r = deviceDmaAccess(dev, 0x1010, 8, true, new Uint8Array(8).fill(9));
    expect(r.status).toBe('iommu-fault');
    expect(r.faultAddr).toBe(0x1010);
    expect(events).toMatchObject([
      { type: 'iommu-fault', device: 'gpu', iova: 0x1010, write: true, reason: 'permission' },
    ]);
    const f = machineFindings(m);
    expect(f.map((x) => x.code)).toEqual(['IOMMU_FAULT']);
    expect(f[0]!.message).toBe(
      'IOMMU fault: device gpu [DMA Write] fault addr 0x1010 [size=8 bytes]: PTE Write access is not set',
    );
    expect(f[0]!.verdict).toBe('broken');
    expect(f[0]!.device).toBe('gpu');
    // The memory was not written; reading is allowed.
    expect(deviceDmaRead(dev, 0x1010, 2)).toEqual(new Uint8Array(2));
  });

  it('faults an access to an unmapped IOVA and reads all-ones', () => {
    const { m, dev, domain, pa } = setup();
    iommuMap(domain, 0x1000, pa, PAGE_SIZE, IOMMU_READ | IOMMU_WRITE);
    deviceDmaWrite(dev, 0x1ff0, new Uint8Array(16).fill(0x44));
    const got = deviceDmaRead(dev, 0x1ff8, 16); // straddles into the unmapped page
    expect([...got]).toEqual([0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, ...Array(8).fill(0xff)]);
    expect(machineFindings(m).map((f) => f.details?.reason)).toEqual(['unmapped']);
    expect(iommuUnmap(domain, 0x1000, 2 * PAGE_SIZE)).toBe(PAGE_SIZE);
    expect(deviceDmaAccess(dev, 0x1000, 4, false).status).toBe('iommu-fault');
  });

  it('records the coherence index of each entry and lets it be reprogrammed', () => {
    const m = createMachine({ profile: 'parisc', ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'ccio' });
    const domain = dev.iommuDomain!;
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 1)!);
    const kva = 2 ** 52 + pa;
    iommuMap(domain, 0x8000, pa, 2 * PAGE_SIZE, IOMMU_READ | IOMMU_WRITE, 0, kva);
    const colours = (4 << 20) / PAGE_SIZE;
    expect(iommuCoherenceIndex(domain, 0x8000)).toBe((kva / PAGE_SIZE) % colours);
    expect(iommuCoherenceIndex(domain, 0x9000)).toBe((kva / PAGE_SIZE + 1) % colours);
    expect(iommuSetCoherenceIndex(domain, 0x8000, 2 * PAGE_SIZE, 0x4000_3000)).toBe(2);
    expect(iommuCoherenceIndex(domain, 0x8000)).toBe(3);
    expect(iommuCoherenceIndex(domain, 0x9000)).toBe(4);
    expect(iommuCoherenceIndex(domain, 0xa000)).toBe(-1);
  });

  it('reports a bus address beyond the interconnect limit without touching memory', () => {
    // Raw hardware, no DMA API: the checker would also report the unmapped access.
    const m = createMachine({ ramBytes: 2 * 2 ** 30, check: false });
    const dev = addDevice(m, { name: 'display', busDmaLimitBits: 30 });
    expect(deviceDmaAccess(dev, 0x3fff_fff0, 16, false).status).toBe('ok');
    const r = deviceDmaAccess(dev, 0x4000_0000, 16, true, new Uint8Array(16).fill(1));
    expect(r.status).toBe('unreachable');
    expect(r.faultAddr).toBe(0x4000_0000);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['DMA_UNREACHABLE']);
    expect(machineFindings(m)[0]!.message).toBe(
      'device display DMA write at a bus address beyond what its interconnect reaches [bus address=0x40000000] [size=16 bytes] [limit=0x40000000]',
    );
    expect(m.hw.mem.regions.has(0x4000_0000 / (2 << 20))).toBe(false);
    const probe = addDevice(m, { name: 'probe' });
    const hole = deviceDmaAccess(probe, 2 * 2 ** 30, 4, false);
    expect(hole.status).toBe('decode-error');
    expect([...hole.data]).toEqual([0xff, 0xff, 0xff, 0xff]);
  });
});
