import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { dmaAllocCoherent, dmaFreeCoherent, dmaMmapCoherent } from '../dma/index.js';
import { addDevice, GFP_KERNEL, machineFindings } from '../machine/index.js';
import {
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysMunmap,
  sysOpen,
  userRead,
} from '../mm/index.js';

const SIZE = 16 * 1024;

function mapped(profile: string) {
  const m = createMachine({ profile, ramBytes: 64 << 20 });
  const dev = addDevice(m, { name: 'snd' });
  const buf = dmaAllocCoherent(dev, SIZE, GFP_KERNEL)!;
  registerChrdev(m, '/dev/pcm', {
    mmap: (_f, vma) => dmaMmapCoherent(dev, vma, buf.cpuAddr, buf.dmaHandle, SIZE),
  });
  const proc = spawnProcess(m, 'aplay');
  const addr = sysMmap(proc, 0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(proc, '/dev/pcm'), 0);
  return { m, dev, buf, proc, addr };
}

describe('DMA memory freed while mapped to user space (seed 000)', () => {
  it('is reported at the free, and the later access through the stale PTE is a use after free', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      const { m, dev, buf, proc, addr } = mapped(profile);
      dmaFreeCoherent(dev, SIZE, buf.cpuAddr, buf.dmaHandle);
      expect(
        machineFindings(m).map((f) => [f.code, f.verdict]),
        profile,
      ).toEqual([['DMA_FREE_MMAPPED', 'latent']]);
      expect(machineFindings(m)[0]!.message).toContain(`still maps it`);
      userRead(proc, addr, 4);
      expect(
        machineFindings(m).map((f) => f.code),
        profile,
      ).toEqual(['DMA_FREE_MMAPPED', 'USE_AFTER_FREE']);
    }
  });

  it('is silent when the process unmapped first', () => {
    const { m, dev, buf, proc, addr } = mapped('x86_64');
    expect(sysMunmap(proc, addr, SIZE)).toBe(0);
    dmaFreeCoherent(dev, SIZE, buf.cpuAddr, buf.dmaHandle);
    expect(machineFindings(m)).toEqual([]);
  });
});
