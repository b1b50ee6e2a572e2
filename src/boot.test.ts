import { describe, expect, it } from 'vitest';
import { createMachine } from './boot.js';
import { DmalabError, PROFILE_NAMES } from './machine/index.js';

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
    const t0 = performance.now();
    const m = createMachine({ ramBytes: 64 * 2 ** 30 });
    expect(performance.now() - t0).toBeLessThan(200);
    expect(m.hw.mem.regions.size).toBe(0);
  });
});
