import { describe, expect, it } from 'vitest';
import { createMachine, type MachineOptions } from '../boot.js';
import {
  addDevice,
  allocPages,
  cpuRead,
  cpuWrite,
  type Device,
  type DmaAddr,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_DMA32,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  machineFindings,
  pageAddress,
  runVerdict,
} from '../machine/index.js';
import {
  DMA_ATTR_REQUIRE_COHERENT,
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
  dmaAddressingLimited,
  dmaMappingError,
  dmaMapSingle,
  dmaMapSingleAttrs,
  dmaNeedSync,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapSingle,
  isSwiotlbBuffer,
  swiotlbStats,
} from './index.js';

const MiB = 1 << 20;

/** A page-aligned kernel buffer on the linear map (kmalloc arrives with the mm layer). */
function buffer(m: Machine, order = 0, gfp = GFP_KERNEL): KernelVa {
  const p = allocPages(m, gfp, order);
  expect(p).not.toBeNull();
  return pageAddress(p!);
}

function kread(m: Machine, va: number, len: number): number[] {
  const out = new Uint8Array(len);
  cpuRead(m, va - 2 ** 52, va, 'cached', out, 0, len);
  return [...out];
}

function kwrite(m: Machine, va: number, bytes: number[]): void {
  cpuWrite(m, va - 2 ** 52, va, 'cached', new Uint8Array(bytes), 0, bytes.length);
}

function machine(profile: string, extra: MachineOptions = {}): { m: Machine; dev: Device } {
  const m = createMachine({ profile, ramBytes: 256 * MiB, ...extra });
  return { m, dev: addDevice(m, { name: 'nic0' }) };
}

describe('streaming FROM_DEVICE with the CPU polling the buffer', () => {
  const run = (profile: string, syncForCpu: boolean) => {
    const { m, dev } = machine(profile);
    const buf = buffer(m);
    const addr = dmaMapSingle(dev, buf, 256, DMA_FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    kread(m, buf, 4); // the driver polls a status word: the line is now cached
    deviceDmaWrite(dev, addr, new Uint8Array(256).fill(0x5a));
    if (syncForCpu) dmaSyncSingleForCpu(dev, addr, 256, DMA_FROM_DEVICE);
    const beforeUnmap = kread(m, buf, 4);
    dmaUnmapSingle(dev, addr, 256, DMA_FROM_DEVICE);
    return { beforeUnmap, afterUnmap: kread(m, buf, 4), m };
  };

  it('reads stale bytes on arm64-noncoherent without dma_sync_single_for_cpu, and the device bytes with it', () => {
    expect(run('arm64-noncoherent', false).beforeUnmap).toEqual([0, 0, 0, 0]);
    expect(run('arm64-noncoherent', true).beforeUnmap).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
  });

  it('reads the device bytes on x86_64 either way', () => {
    expect(run('x86_64', false).beforeUnmap).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
    expect(run('x86_64', true).beforeUnmap).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
  });

  it('always sees the device bytes after unmap', () => {
    // Polling a device-owned buffer is an ownership violation everywhere; where it read stale bytes, broken.
    const verdicts: Record<string, string> = {
      x86_64: 'latent',
      'arm64-noncoherent': 'broken',
      'swiotlb-force': 'broken',
      parisc: 'latent',
      'parisc-pcxl': 'broken',
    };
    for (const [profile, verdict] of Object.entries(verdicts)) {
      const r = run(profile, false);
      expect(r.afterUnmap, profile).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
      expect(runVerdict(r.m), profile).toBe(verdict);
      expect(runVerdict(run(profile, true).m), profile).toBe('latent'); // the poll before the sync remains
    }
  });
});

describe('streaming TO_DEVICE with a CPU write after the map', () => {
  const run = (profile: string, syncForDevice: boolean) => {
    const { m, dev } = machine(profile);
    const buf = buffer(m);
    kwrite(m, buf, [1, 2, 3, 4]);
    const addr = dmaMapSingle(dev, buf, 64, DMA_TO_DEVICE);
    kwrite(m, buf, [9, 9, 9, 9]); // too late: after the map
    if (syncForDevice) dmaSyncSingleForDevice(dev, addr, 64, DMA_TO_DEVICE);
    const seen = [...deviceDmaRead(dev, addr, 4)];
    dmaUnmapSingle(dev, addr, 64, DMA_TO_DEVICE);
    return seen;
  };

  it('shows the device the old bytes on arm64-noncoherent and through swiotlb, the new ones on x86_64', () => {
    expect(run('arm64-noncoherent', false)).toEqual([1, 2, 3, 4]);
    expect(run('swiotlb-force', false)).toEqual([1, 2, 3, 4]);
    expect(run('x86_64', false)).toEqual([9, 9, 9, 9]);
  });

  it('shows the new bytes everywhere after dma_sync_single_for_device', () => {
    for (const profile of ['arm64-noncoherent', 'swiotlb-force', 'x86_64', 'parisc-pcxl']) {
      expect(run(profile, true), profile).toEqual([9, 9, 9, 9]);
    }
  });
});

describe('a 32-bit device on a machine with more than 4 GiB', () => {
  const big = () => {
    const m = createMachine({ ramBytes: 6 * 1024 * MiB, swiotlbBytes: 4 * MiB });
    const dev = addDevice(m, { name: 'legacy', dmaMaskBits: 32 });
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32))).toBe(0);
    return { m, dev };
  };

  it('bounces a buffer above 4 GiB through swiotlb and the bytes arrive', () => {
    const { m, dev } = big();
    const buf = buffer(m);
    expect(buf - 2 ** 52).toBeGreaterThanOrEqual(2 ** 32);
    expect(dmaAddressingLimited(dev)).toBe(true);
    kwrite(m, buf, [7, 7, 7, 7]);
    const addr = dmaMapSingle(dev, buf, 512, DMA_FROM_DEVICE);
    expect(dmaMappingError(dev, addr)).toBe(0);
    expect(addr).toBeLessThan(2 ** 32);
    expect(isSwiotlbBuffer(m, addr)).toBe(true);
    expect(dmaNeedSync(dev, addr)).toBe(true);
    // The bounce slot was filled from the original at map (current kernels), so untouched bytes survive.
    expect([...deviceDmaRead(dev, addr, 4)]).toEqual([7, 7, 7, 7]);
    deviceDmaWrite(dev, addr + 2, new Uint8Array([0xab, 0xcd]));
    dmaUnmapSingle(dev, addr, 512, DMA_FROM_DEVICE);
    expect(kread(m, buf, 4)).toEqual([7, 7, 0xab, 0xcd]);
    const stats = swiotlbStats(m);
    expect(stats).toMatchObject({
      used: 0,
      highWater: 1,
      mapped: 1,
      bouncedToDevice: 512,
      bouncedFromDevice: 512,
    });
    expect(runVerdict(m)).toBe('clean');
  });

  it('fails with DMA_MAPPING_ERROR and the kernel report when the pool is exhausted', () => {
    const { m, dev } = big();
    const buf = buffer(m, 6); // 256 KiB
    const live: DmaAddr[] = [];
    for (;;) {
      const a = dmaMapSingle(dev, buf, 256 * 1024, DMA_TO_DEVICE);
      if (dmaMappingError(dev, a) !== 0) {
        expect(a).toBe(DMA_MAPPING_ERROR);
        break;
      }
      live.push(a);
    }
    expect(live.length).toBe(16); // 4 MiB of 256 KiB segments
    const f = machineFindings(m);
    expect(f.map((x) => x.code)).toEqual(['SWIOTLB_FULL']);
    expect(f[0]!.message).toBe(
      'swiotlb buffer is full (sz: 262144 bytes), total 2048 (slots), used 2048 (slots)',
    );
    expect(swiotlbStats(m).live).toHaveLength(16);
    expect(swiotlbStats(m).live[0]).toMatchObject({
      device: 'legacy',
      call: 'dma_map_single_attrs',
      size: 262144,
    });
    for (const a of live) dmaUnmapSingle(dev, a, 256 * 1024, DMA_TO_DEVICE);
    expect(swiotlbStats(m)).toMatchObject({ used: 0, longestFreeRun: 128, live: [] });
  });

  it('fails the map instead of bouncing with DMA_ATTR_REQUIRE_COHERENT', () => {
    const { m, dev } = big();
    const buf = buffer(m);
    const addr = dmaMapSingleAttrs(dev, buf, 64, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    expect(addr).toBe(DMA_MAPPING_ERROR);
    expect(swiotlbStats(m).mapped).toBe(0);
    // A buffer the device reaches maps fine with the attribute on a coherent machine.
    const low = buffer(m, 0, GFP_KERNEL | GFP_DMA32);
    expect(dmaMapSingleAttrs(dev, low, 64, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(low - 2 ** 52);
  });

  it('refuses REQUIRE_COHERENT on a non-coherent device outright', () => {
    const { m, dev } = machine('arm64-noncoherent');
    expect(dmaMapSingleAttrs(dev, buffer(m), 64, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT)).toBe(
      DMA_MAPPING_ERROR,
    );
    expect(machineFindings(m)).toEqual([]);
  });
});
