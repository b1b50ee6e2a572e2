import { describe, expect, it } from 'vitest';
import { createMachine, runOnProfiles } from './boot.js';
import { DMA_FROM_DEVICE, dmaMappingError, dmaMapSingle, dmaUnmapSingle } from './dma/index.js';
import {
  addDevice,
  allocPages,
  apiCall,
  cpuRead,
  cpuWrite,
  DmalabError,
  deviceDmaWrite,
  GFP_KERNEL,
  type Machine,
  PAGE_OFFSET,
  PROFILE_NAMES,
  pageAddress,
} from './machine/index.js';

describe('createMachine', () => {
  it('builds every built-in profile with defaults from API.md', () => {
    for (const profile of PROFILE_NAMES) {
      const m = createMachine({ profile });
      expect(m.profile.name).toBe(profile);
      expect(m.options.ramBytes).toBe(1 << 30);
      expect(m.options.swiotlbBytes).toBe(64 << 20);
      expect(m.options.captureStacks).toBe('findings');
      expect(m.options.check).toBe(true);
    }
    expect(createMachine({ profile: 'parisc' }).options.mmapStrategy).toBe('refuse');
    expect(createMachine({ ramBytes: 64 << 20 }).options.swiotlbBytes).toBe(8 << 20);
  });

  it('rejects unknown options with a clear message naming the key', () => {
    expect(() => createMachine({ profle: 'x86_64' } as never)).toThrow(DmalabError);
    expect(() => createMachine({ profle: 'x86_64' } as never)).toThrow(
      "profle: unknown createMachine option 'profle' (known: profile, ramBytes, seed, check, panicOnWarn, captureStacks, mmapStrategy, swiotlbBytes, kmallocBounce, ciPolicy, pagelessSg, cmaBytes)",
    );
  });

  it('rejects bad values naming the field', () => {
    expect(() => createMachine({ profile: 'vax' })).toThrow(/^profile: unknown profile 'vax'/);
    expect(() => createMachine({ ramBytes: 1000 })).toThrow(/^ramBytes: must be an integer multiple of 4096/);
    expect(() => createMachine({ mmapStrategy: 'magic' as never })).toThrow(/^mmapStrategy: must be one of/);
    expect(() => createMachine({ captureStacks: 'all' as never })).toThrow(/^captureStacks:/);
    expect(() => createMachine({ check: 1 as never })).toThrow(/^check: must be true or false/);
    expect(() => createMachine({ seed: -1 })).toThrow(/^seed:/);
  });

  it('accepts a user-defined profile and checks it', () => {
    const base = createMachine({ profile: 'arm64-noncoherent' }).profile;
    const m = createMachine({
      profile: { ...base, name: 'my-soc', cache: { ...base.cache, sizeBytes: 256 * 1024 } },
    });
    expect(m.hw.cache.sets).toBe(256);
    expect(() => createMachine({ profile: { ...base, cache: { ...base.cache, lineSize: 48 } } })).toThrow(
      /profile\.cache\.lineSize must be a power of two/,
    );
  });

  it('boots a 64 GiB machine quickly, without touching its RAM', () => {
    // Best of three: a test run shares two cores with other test files, and one boot may be
    // descheduled; a machine that touched its RAM would miss the bound every time.
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const m = createMachine({ ramBytes: 64 * 2 ** 30 });
      best = Math.min(best, performance.now() - t0);
      expect(m.hw.mem.regions.size).toBe(0);
    }
    expect(best).toBeLessThan(200);
  });
});

describe('runOnProfiles', () => {
  // The driver reads a DMA_FROM_DEVICE buffer without dma_sync_single_for_cpu.
  const driver = (m: Machine) => {
    const dev = addDevice(m, { name: 'nic0' });
    const buf = pageAddress(allocPages(m, GFP_KERNEL, 0)!);
    const pa = buf - PAGE_OFFSET;
    cpuWrite(m, pa, buf, 'cached', new Uint8Array(64), 0, 64);
    const a = dmaMapSingle(dev, buf, 64, DMA_FROM_DEVICE);
    dmaMappingError(dev, a);
    deviceDmaWrite(dev, a, new Uint8Array(64).fill(0x5a));
    apiCall(m, 'driver_poll', () => cpuRead(m, pa, buf, 'cached', new Uint8Array(4), 0, 4));
    dmaUnmapSingle(dev, a, 64, DMA_FROM_DEVICE);
  };

  it('gives each profile its verdict and findings, and the first step where observed bytes diverge', () => {
    const r = runOnProfiles(driver, ['x86_64', 'arm64-noncoherent', 'parisc'], { ramBytes: 64 << 20 });
    expect(r.rows.map((x) => [x.profile, x.verdict, x.findings.map((f) => f.code)])).toEqual([
      ['x86_64', 'latent', ['OWNERSHIP']],
      ['arm64-noncoherent', 'broken', ['OWNERSHIP', 'STALE_DATA']],
      ['parisc', 'latent', ['OWNERSHIP']],
    ]);
    // Steps: allocPages 1, dma_map_single 2, the device write 3, the poll 4.
    expect(r.divergence).toEqual({ step: 4, call: 'driver_poll' });
  });

  it('finds no divergence when the profiles agree, nor without the checker', () => {
    expect(runOnProfiles(driver, ['x86_64', 'parisc']).divergence).toBeNull();
    const off = runOnProfiles(driver, ['x86_64', 'arm64-noncoherent'], { check: false });
    expect(off.divergence).toBeNull();
    expect(off.rows.map((x) => x.verdict)).toEqual(['clean', 'clean']);
  });

  it('compares observed bytes in order, not by step number: a profile that makes more calls first still agrees', () => {
    // On parisc the driver makes two extra calls before it maps: every later step number shifts by two.
    const busier = (m: Machine) => {
      if (m.profile.name === 'parisc') {
        apiCall(m, 'driver_extra_setup', () => {});
        apiCall(m, 'driver_extra_setup', () => {});
      }
      driver(m);
    };
    expect(runOnProfiles(busier, ['x86_64', 'parisc']).divergence).toBeNull();
    // Where the bytes do differ, the first profile's step is reported.
    expect(runOnProfiles(busier, ['x86_64', 'arm64-noncoherent', 'parisc']).divergence).toEqual({
      step: 4,
      call: 'driver_poll',
    });
    expect(runOnProfiles(busier, ['parisc', 'arm64-noncoherent']).divergence).toEqual({
      step: 6,
      call: 'driver_poll',
    });
  });

  it('keeps the findings up to a panic, and refuses a profile in the options', () => {
    const r = runOnProfiles(driver, ['arm64-noncoherent'], { panicOnWarn: true });
    expect(r.rows[0]!.findings.map((f) => f.code)).toEqual(['OWNERSHIP']);
    expect(() => runOnProfiles(driver, ['x86_64'], { profile: 'parisc' } as never)).toThrow(
      /^profile: runOnProfiles takes the profiles as its second argument/,
    );
  });
});
