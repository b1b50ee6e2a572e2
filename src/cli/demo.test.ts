import { describe, expect, it } from 'vitest';
import { demoOnProfile, renderDemo } from './demo.js';

describe('dmalab demo', () => {
  it('shows coherent profiles agreeing and non-coherent ones losing bytes both ways', () => {
    expect(demoOnProfile('x86_64')).toMatchObject({ deviceSawCpuWrite: true, cpuSawDeviceWrite: true });
    expect(demoOnProfile('parisc')).toMatchObject({ deviceSawCpuWrite: true, cpuSawDeviceWrite: true });
    expect(demoOnProfile('arm64-noncoherent')).toEqual({
      profile: 'arm64-noncoherent',
      deviceSawCpuWrite: false,
      cpuSawDeviceWrite: false,
      note: "device read memory while 1 dirty line(s) held the CPU's bytes (no clean); CPU hit 1 stale line(s) over the device's bytes (no invalidate)",
    });
    // PA-RISC lines are 16 bytes: the 64-byte buffer spans four.
    expect(demoOnProfile('parisc-pcxl').note).toContain('4 dirty line(s)');
  });

  it('renders one row per profile', () => {
    const text = renderDemo();
    for (const p of [
      'x86_64',
      'arm64-coherent',
      'arm64-noncoherent',
      'parisc',
      'parisc-pcxl',
      'swiotlb-force',
    ]) {
      expect(text).toMatch(new RegExp(`^${p} `, 'm'));
    }
  });
});
