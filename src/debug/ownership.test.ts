import { describe, expect, it } from 'vitest';
import { buffer, codes, kread, kwrite, machine } from '../../test/debug-kit.js';
import {
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_TO_DEVICE,
  dmaMappingError,
  dmaMapSingle,
  dmaMapSingleAttrs,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaSyncSingleRangeForCpu,
  dmaUnmapSingle,
} from '../dma/index.js';
import {
  addDevice,
  allocPages,
  colourOf,
  cpuRead,
  type Device,
  type DmaAddr,
  deviceCoherentColour,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  type KernelVa,
  machineFindings,
  PAGE_OFFSET,
  pageAddress,
  pageToPhys,
  physToPfn,
  runVerdict,
} from '../machine/index.js';
import {
  MAP_SHARED,
  PAGE_KERNEL,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  remapPfnRange,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
  VM_MAP,
  vmap,
} from '../mm/index.js';

function map(dev: Device, va: KernelVa | number, size: number, dir: 0 | 1 | 2): DmaAddr {
  const a = dmaMapSingle(dev, va, size, dir);
  expect(dmaMappingError(dev, a)).toBe(0);
  return a;
}

describe('ownership: the CPU reads a DMA_FROM_DEVICE buffer before dma_sync_single_for_cpu', () => {
  const run = (profile: string) => {
    const { m, dev } = machine(profile);
    const buf = buffer(m);
    kwrite(m, buf, new Array(256).fill(0)); // the driver clears the buffer: its lines are cached
    const a = map(dev, buf, 256, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, a, new Uint8Array(256).fill(0x5a));
    const deviceStep = m.clock.step;
    const seen = kread(m, buf, 8);
    dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
    return { m, seen, deviceStep, buf };
  };

  it('is latent on x86_64: the bytes arrive, the ownership finding says why it is wrong', () => {
    const { m, seen, buf } = run('x86_64');
    expect(seen).toEqual(new Array(8).fill(0x5a));
    expect(codes(m)).toEqual(['OWNERSHIP']);
    const f = machineFindings(m)[0]!;
    expect(f).toMatchObject({
      verdict: 'latent',
      severity: 'warning',
      device: 'nic0',
      agent: 'kernel',
      details: {
        kind: 'cpu-load',
        dir: 'DMA_FROM_DEVICE',
        size: 256,
        mappedAt: { call: 'dma_map_single_attrs' },
        access: { agent: 'kernel', va: buf, len: 8, attr: 'cached' },
      },
    });
    expect(f.message).toMatch(
      /^dmalab: nic0: CPU load of DMA memory the device owns \[device address=0x[0-9a-f]{16}\] \[size=256 bytes\] \[mapped with DMA_FROM_DEVICE\]/,
    );
    expect(f.message).toContain('dma_sync_single_for_cpu or dma_unmap_single first');
    expect(runVerdict(m)).toBe('latent');
  });

  it('is broken on arm64-noncoherent, with a stale-data finding naming the hidden device write', () => {
    const { m, seen, deviceStep, buf } = run('arm64-noncoherent');
    expect(seen).toEqual(new Array(8).fill(0));
    expect(codes(m)).toEqual(['OWNERSHIP', 'STALE_DATA']);
    const stale = machineFindings(m)[1]!;
    expect(stale).toMatchObject({
      verdict: 'broken',
      severity: 'error',
      device: 'nic0',
      agent: 'kernel',
      details: {
        reader: { agent: 'kernel', kind: 'cpu', va: buf, phys: buf - PAGE_OFFSET, attr: 'cached' },
        len: 8,
        got: '00 00 00 00 00 00 00 00',
        expected: '5a 5a 5a 5a 5a 5a 5a 5a',
        hiddenWrite: { agent: 'nic0', kind: 'device', step: deviceStep },
        hiddenBy: { cause: 'stale-cache-line', line: buf - PAGE_OFFSET },
        prevent: 'dma_sync_single_for_cpu (or dma_unmap_single) before the CPU reads',
      },
    });
    expect(stale.message).toBe(
      `dmalab: nic0: stale data observed: kernel read 8 bytes at cpu address 0x${buf.toString(16)} (phys 0x${(buf - PAGE_OFFSET).toString(16)}) and got 00 00 00 00 00 00 00 00 instead of 5a 5a 5a 5a 5a 5a 5a 5a; the write it missed: nic0 (device DMA write) at step ${deviceStep}; hidden by a stale cache line at 0x${(buf - PAGE_OFFSET).toString(16)}: the CPU’s cached copy predates the write, which memory holds; dma_sync_single_for_cpu (or dma_unmap_single) before the CPU reads`,
    );
    expect(runVerdict(m)).toBe('broken');
  });

  it('is clean everywhere once the driver syncs first', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent', 'swiotlb-force', 'parisc', 'parisc-pcxl']) {
      const { m, dev } = machine(profile);
      const buf = buffer(m);
      kwrite(m, buf, new Array(256).fill(0));
      const a = map(dev, buf, 256, DMA_FROM_DEVICE);
      deviceDmaWrite(dev, a, new Uint8Array(256).fill(0x5a));
      dmaSyncSingleForCpu(dev, a, 256, DMA_FROM_DEVICE);
      expect(kread(m, buf, 8), profile).toEqual(new Array(8).fill(0x5a));
      dmaUnmapSingle(dev, a, 256, DMA_FROM_DEVICE);
      expect(codes(m), profile).toEqual([]);
    }
  });
});

describe('the status-word bug: a CPU field sharing a cache line with a DMA_FROM_DEVICE buffer', () => {
  // struct { u64 status; u8 buf[1016]; } at the start of a page: the buffer is large enough not to bounce.
  const run = (profile: string) => {
    const { m, dev } = machine(profile);
    const base = buffer(m);
    kwrite(m, base, new Array(1024).fill(0));
    const a = map(dev, base + 8, 1016, DMA_FROM_DEVICE);
    kwrite(m, base, [1, 0, 0, 0, 0, 0, 0, 0]); // status = BUSY while the device owns the buffer
    deviceDmaWrite(dev, a, new Uint8Array(1016).fill(0x5a));
    const deviceStep = m.clock.step;
    dmaSyncSingleForCpu(dev, a, 1016, DMA_FROM_DEVICE);
    const syncStep = m.clock.step;
    const head = kread(m, base + 8, 56);
    dmaUnmapSingle(dev, a, 1016, DMA_FROM_DEVICE);
    return { m, head, deviceStep, syncStep, base };
  };

  it('arm64-noncoherent: the edge-line clean at sync-for-cpu destroys the device’s bytes — broken', () => {
    const { m, head, deviceStep, syncStep, base } = run('arm64-noncoherent');
    expect(head).toEqual(new Array(56).fill(0));
    expect(codes(m)).toEqual(['SHARED_CACHELINE', 'STALE_DATA']);
    const [shared, stale] = machineFindings(m);
    expect(shared!.message).toMatch(
      /^dmalab: nic0: CPU store to a cache line shared with DMA memory the device owns \[device address=0x[0-9a-f]{16}\] \[size=1016 bytes\] \[mapped with DMA_FROM_DEVICE\] \[cache line=0x[0-9a-f]+\] \[line size=64\]/,
    );
    expect(shared!.details).toMatchObject({
      kind: 'shared-cacheline',
      line: base - PAGE_OFFSET,
      lineSize: 64,
    });
    expect(stale!.details).toMatchObject({
      len: 56,
      hiddenWrite: { agent: 'nic0', kind: 'device', step: deviceStep },
      hiddenBy: { cause: 'written-back-over', lossStep: syncStep, lossCall: 'dma_sync_single_for_cpu' },
    });
    expect(stale!.message).toContain(
      'hidden by a write-back (flush) of a dirty line that put older bytes over them in memory (step',
    );
    expect(stale!.message).toContain('align and size the buffer to dma_get_cache_alignment() = 128 bytes');
    expect(runVerdict(m)).toBe('broken');
  });

  it('x86_64: the same driver works — latent', () => {
    const { m, head } = run('x86_64');
    expect(head).toEqual(new Array(56).fill(0x5a));
    expect(codes(m)).toEqual(['SHARED_CACHELINE']);
    expect(runVerdict(m)).toBe('latent');
  });

  it('arm64 with a small, bounced buffer: the line can never be lost, nothing to report', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const base = buffer(m);
    const a = map(dev, base + 8, 96, DMA_FROM_DEVICE); // the kmalloc-96 class is not 128-aligned: bounced
    kwrite(m, base, [1]);
    deviceDmaWrite(dev, a, new Uint8Array(96).fill(0x5a));
    dmaSyncSingleForCpu(dev, a, 96, DMA_FROM_DEVICE);
    expect(kread(m, base + 8, 4)).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
    dmaUnmapSingle(dev, a, 96, DMA_FROM_DEVICE);
    expect(codes(m)).toEqual([]);
  });

  it('is silent for a buffer aligned to its own cache lines', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const base = buffer(m);
    const a = map(dev, base + 128, 1024, DMA_FROM_DEVICE);
    kwrite(m, base, [1]);
    kwrite(m, base + 128 + 1024, [2]);
    deviceDmaWrite(dev, a, new Uint8Array(1024).fill(0x5a));
    dmaUnmapSingle(dev, a, 1024, DMA_FROM_DEVICE);
    expect(kread(m, base + 128, 4)).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
    expect(codes(m)).toEqual([]);
  });
});

describe('ownership: the other violations', () => {
  it('a CPU store to a DMA_TO_DEVICE buffer after the map: latent on x86, broken where the device misses it', () => {
    const verdicts: Record<string, [string, string[]]> = {
      x86_64: ['latent', ['OWNERSHIP']],
      'arm64-noncoherent': ['broken', ['OWNERSHIP', 'STALE_DATA']],
      'swiotlb-force': ['broken', ['OWNERSHIP', 'STALE_DATA']],
      parisc: ['latent', ['OWNERSHIP']],
    };
    for (const [profile, [verdict, expected]] of Object.entries(verdicts)) {
      const { m, dev } = machine(profile);
      const buf = buffer(m);
      kwrite(m, buf, [1, 2, 3, 4]);
      const a = map(dev, buf, 64, DMA_TO_DEVICE);
      kwrite(m, buf, [9, 9, 9, 9]);
      deviceDmaRead(dev, a, 4);
      dmaUnmapSingle(dev, a, 64, DMA_TO_DEVICE);
      expect(codes(m), profile).toEqual(expected);
      expect(runVerdict(m), profile).toBe(verdict);
      expect(machineFindings(m)[0]!.details, profile).toMatchObject({ kind: 'cpu-store' });
      if (expected.length === 2) {
        const d = machineFindings(m)[1]!.details!;
        expect(d.reader, profile).toMatchObject({ agent: 'nic0', kind: 'device' });
        expect(d.hiddenWrite, profile).toMatchObject({ agent: 'kernel', kind: 'cpu' });
        expect((d.hiddenBy as { cause: string }).cause, profile).toBe(
          profile === 'swiotlb-force' ? 'bounce-slot' : 'dirty-line-not-snooped',
        );
        expect(d.prevent, profile).toMatch(/^the CPU wrote after dma_map_single_attrs/);
      }
    }
  });

  it('a device access after dma_sync_single_for_cpu handed the buffer back, and a device write to DMA_TO_DEVICE', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = map(dev, buf, 128, DMA_FROM_DEVICE);
    dmaSyncSingleForCpu(dev, a, 128, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, a + 64, new Uint8Array(8));
    expect(machineFindings(m).map((f) => [f.code, f.details?.kind])).toEqual([
      ['OWNERSHIP', 'device-cpu-owned'],
    ]);
    expect(machineFindings(m)[0]!.message).toContain('dma_sync_single_for_device first');
    dmaSyncSingleForDevice(dev, a, 128, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, a, new Uint8Array(8));
    dmaUnmapSingle(dev, a, 128, DMA_FROM_DEVICE);
    const b = map(dev, buf, 128, DMA_TO_DEVICE);
    deviceDmaWrite(dev, b, new Uint8Array(8));
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual([
      'device-cpu-owned',
      'device-write-to-device',
    ]);
    expect(machineFindings(m)[1]!.agent).toBe('nic0');
  });

  it('a partial sync hands back only its range', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    const a = map(dev, buf, 256, DMA_BIDIRECTIONAL);
    dmaSyncSingleRangeForCpu(dev, a, 0, 128, DMA_BIDIRECTIONAL);
    kread(m, buf, 128);
    kwrite(m, buf + 64, [1]);
    expect(codes(m)).toEqual([]);
    kread(m, buf + 128, 4);
    expect(machineFindings(m).map((f) => f.details?.kind)).toEqual(['cpu-load']);
    // One finding per kind until ownership changes again.
    kread(m, buf + 200, 4);
    expect(codes(m)).toHaveLength(1);
  });

  it('a device reaching memory no mapping gives it (virt_to_phys): reported once per page; an IOMMU faults instead', () => {
    const { m, dev } = machine('arm64-noncoherent');
    const buf = buffer(m);
    const pa = buf - PAGE_OFFSET;
    deviceDmaWrite(dev, pa, new Uint8Array(16));
    deviceDmaWrite(dev, pa + 64, new Uint8Array(16));
    expect(machineFindings(m).map((f) => [f.code, f.verdict])).toEqual([['UNMAPPED_DMA', 'latent']]);
    expect(machineFindings(m)[0]!.message).toBe(
      `dmalab: nic0: device write of memory no mapping gives the device [bus address=0x${pa.toString(16)}] [phys=0x${pa.toString(16)}] [len=16]: map it with the DMA API (a bus address from virt_to_phys() bypasses bouncing, IOMMUs and cache maintenance)`,
    );
    const gpu = addDevice(m, { name: 'gpu0', iommu: true });
    deviceDmaWrite(gpu, pa, new Uint8Array(16));
    expect(codes(m)).toEqual(['UNMAPPED_DMA', 'IOMMU_FAULT']);
  });

  it('two devices in different coherency domains owning a buffer while one writes; silent when both read or share a domain', () => {
    const run = (bDir: 0 | 1 | 2, domain?: string) => {
      const { m, dev } = machine(
        'arm64-noncoherent',
        {},
        { name: 'cam0', ...(domain ? { coherencyDomain: domain } : {}) },
      );
      const isp = addDevice(m, { name: 'isp0', ...(domain ? { coherencyDomain: domain } : {}) });
      const buf = buffer(m);
      const a = map(dev, buf, 4096, DMA_TO_DEVICE);
      const b = map(isp, buf, 4096, bDir);
      deviceDmaRead(dev, a, 64);
      deviceDmaRead(isp, b, 64);
      return m;
    };
    expect(codes(run(DMA_TO_DEVICE))).toEqual([]);
    expect(codes(run(DMA_BIDIRECTIONAL, 'media'))).toEqual([]);
    const m = run(DMA_BIDIRECTIONAL);
    expect(machineFindings(m).map((f) => [f.code, f.details?.kind, f.device])).toEqual([
      ['OWNERSHIP', 'shared-devices', 'cam0'],
    ]);
    expect(machineFindings(m)[0]!.message).toContain('that device isp0 (another coherency domain) owns too');
  });
});

describe('ownership: DMA_ATTR_SKIP_CPU_SYNC on a PA-RISC coherence-index device', () => {
  // The device is coherent with the lines of the alias its IOMMU entry names (the kernel's linear
  // address, as sba sets it up), and with no other: a CPU access through that alias needs no sync,
  // one through a non-congruent alias does.
  const run = () => {
    const { m, dev } = machine('parisc');
    const page = allocPages(m, GFP_KERNEL, 0)!;
    const buf = pageAddress(page);
    const other = vmap(m, [page], 1, VM_MAP, PAGE_KERNEL)!;
    kwrite(m, buf, new Array(64).fill(0));
    const a = dmaMapSingleAttrs(dev, buf, 64, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    expect(dmaMappingError(dev, a)).toBe(0);
    deviceDmaWrite(dev, a, new Uint8Array(64).fill(0x77));
    return { m, dev, a, buf, other, pa: pageToPhys(page) };
  };

  it('the aliases really differ in colour, and the device is coherent with the linear one', () => {
    const { m, dev, a, buf, other, pa } = run();
    expect(deviceCoherentColour(dev, a)).toBe(colourOf(m.hw.cache, buf, pa));
    expect(colourOf(m.hw.cache, other, pa)).not.toBe(colourOf(m.hw.cache, buf, pa));
  });

  it('a load through the alias the device is coherent with sees its bytes and is not a finding', () => {
    const { m, buf } = run();
    expect(kread(m, buf, 8)).toEqual(new Array(8).fill(0x77));
    expect(codes(m)).toEqual([]);
  });

  it('a load through another alias is an ownership violation', () => {
    const { m, other, pa } = run();
    const out = new Uint8Array(8);
    cpuRead(m, pa, other, 'cached', out, 0, 8);
    expect(codes(m)).toEqual(['OWNERSHIP']);
    expect(machineFindings(m)[0]!.details).toMatchObject({ kind: 'cpu-load', access: { va: other, len: 8 } });
  });
});

describe('ownership: a user process is judged whatever its name', () => {
  it('a process named like an internal copier (swiotlb) reading device-owned bytes is a violation', () => {
    const { m, dev } = machine('x86_64');
    const buf = buffer(m);
    expect(
      registerChrdev(m, '/dev/ring', {
        mmap: (_f, vma) =>
          remapPfnRange(vma, vma.vmStart, physToPfn(buf - PAGE_OFFSET), 4096, vma.vmPageProt),
      }),
    ).toBe(0);
    const proc = spawnProcess(m, 'swiotlb');
    const va = sysMmap(proc, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(proc, '/dev/ring'), 0);
    const a = map(dev, buf, 256, DMA_FROM_DEVICE);
    deviceDmaWrite(dev, a, new Uint8Array(256).fill(0x42));
    expect([...(userRead(proc, va, 4) ?? [])]).toEqual([0x42, 0x42, 0x42, 0x42]);
    expect(codes(m)).toEqual(['OWNERSHIP']);
    expect(machineFindings(m)[0]!.agent).toBe('swiotlb');
  });
});
