import { describe, expect, it } from 'vitest';
import { createMachine, type MachineOptions } from '../boot.js';
import { createSgTable, sgDmaLen, sgPhys } from '../lib/index.js';
import {
  addDevice,
  type Device,
  type DmaAddr,
  deviceDmaRead,
  deviceDmaWrite,
  EINVAL,
  ENXIO,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  type MmapStrategy,
  runVerdict,
} from '../machine/index.js';
import {
  type File,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  processPteCount,
  pteLookup,
  registerChrdev,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
} from '../mm/index.js';
import {
  dmaAllocCoherent,
  dmaAllocCoherentForMmap,
  dmaCanMmap,
  dmaGetSgtable,
  dmaMmapCoherent,
} from './index.js';

const KiB = 1024;
const SIZE = 64 * KiB;

/**
 * A sound driver: the ring buffer is allocated at probe (or, for strategy
 * (c), at open, "made for mmap"), and mmap hands it to the process.
 */
function soundCard(profile: string, strategy?: MmapStrategy, forMmap = false) {
  const opts: MachineOptions = { profile, ramBytes: 256 * 1024 * KiB };
  if (strategy !== undefined) opts.mmapStrategy = strategy;
  const m = createMachine(opts);
  const dev = addDevice(m, { name: 'snd-hda' });
  let buf: { cpuAddr: KernelVa; dmaHandle: DmaAddr } | null = forMmap
    ? null
    : dmaAllocCoherent(dev, SIZE, GFP_KERNEL);
  registerChrdev(m, '/dev/snd/pcm0', {
    open(_inode, file: File) {
      if (forMmap) buf = dmaAllocCoherentForMmap(dev, SIZE, GFP_KERNEL, file);
      return buf === null ? -12 : 0;
    },
    mmap(_file, vma) {
      return dmaMmapCoherent(dev, vma, buf!.cpuAddr, buf!.dmaHandle, SIZE);
    },
  });
  const proc = spawnProcess(m, 'aplay');
  const fd = sysOpen(proc, '/dev/snd/pcm0');
  expect(fd).toBeGreaterThanOrEqual(0);
  const addr = sysMmap(proc, 0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return { m, dev, proc, addr, buf: buf! };
}

/** The user writes samples the device plays; the device writes a position the user polls. */
function exchange(
  m: Machine,
  dev: Device,
  proc: ReturnType<typeof spawnProcess>,
  addr: number,
  dmaHandle: number,
) {
  // The user first polls the position page: its line is cached if the mapping is cached.
  userRead(proc, addr + 32 * KiB, 4);
  expect(userWrite(proc, addr + 4096, new Uint8Array([1, 2, 3, 4]))).toBe(true);
  const deviceSaw = [...deviceDmaRead(dev, dmaHandle + 4096, 4)];
  deviceDmaWrite(dev, dmaHandle + 32 * KiB, new Uint8Array([0x40, 0x41]));
  const userSaw = [...userRead(proc, addr + 32 * KiB, 2)!];
  return { deviceSaw, userSaw, verdict: runVerdict(m) };
}

describe('dma_mmap_coherent of a 64 KiB sound buffer (seed 000)', () => {
  it('is coherent both ways on x86_64 (cached) and arm64-noncoherent (Normal non-cacheable)', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent', 'arm64-coherent', 'swiotlb-force']) {
      const s = soundCard(profile);
      expect(s.addr, profile).toBeGreaterThan(0);
      const r = exchange(s.m, s.dev, s.proc, s.addr, s.buf.dmaHandle);
      expect(r.deviceSaw, profile).toEqual([1, 2, 3, 4]);
      expect(r.userSaw, profile).toEqual([0x40, 0x41]);
      // Strategy (a): every page mapped at mmap time.
      expect(processPteCount(s.proc), profile).toBe(16);
      expect(pteLookup(s.proc, s.addr)!.attr, profile).toBe(
        profile === 'arm64-noncoherent' ? 'write-combine' : 'cached',
      );
    }
  });

  it('is refused with -ENXIO on parisc by default, and dma_can_mmap says so', () => {
    const s = soundCard('parisc');
    expect(s.addr).toBe(-ENXIO);
    expect(dmaCanMmap(s.dev)).toBe(false);
    expect(dmaCanMmap(soundCard('x86_64').dev)).toBe(true);
  });

  it('maps uncached on parisc-pcxl, which dma_can_mmap denies but the direct path does not refuse', () => {
    const s = soundCard('parisc-pcxl');
    expect(dmaCanMmap(s.dev)).toBe(false);
    expect(pteLookup(s.proc, s.addr)!.attr).toBe('uncached');
    const r = exchange(s.m, s.dev, s.proc, s.addr, s.buf.dmaHandle);
    expect(r).toMatchObject({ deviceSaw: [1, 2, 3, 4], userSaw: [0x40, 0x41] });
  });

  it('(a) remap on parisc: a non-congruent user alias loses device writes and hides user writes', () => {
    const s = soundCard('parisc', 'remap');
    expect(s.addr).toBeGreaterThan(0);
    const r = exchange(s.m, s.dev, s.proc, s.addr, s.buf.dmaHandle);
    expect(r.deviceSaw).toEqual([0, 0, 0, 0]); // the user's bytes sit in the user alias's cache line
    expect(r.userSaw).toEqual([0, 0]); // the device's bytes went to memory and the kernel alias only
  });

  it('(b) fault: pages are inserted on first touch, with the same outcome as (a)', () => {
    const x = soundCard('x86_64', 'fault');
    expect(processPteCount(x.proc)).toBe(0);
    const r = exchange(x.m, x.dev, x.proc, x.addr, x.buf.dmaHandle);
    expect(r).toMatchObject({ deviceSaw: [1, 2, 3, 4], userSaw: [0x40, 0x41] });
    expect(processPteCount(x.proc)).toBe(2);
    const p = soundCard('parisc', 'fault');
    expect(exchange(p.m, p.dev, p.proc, p.addr, p.buf.dmaHandle).userSaw).toEqual([0, 0]);
  });

  it('(c) congruent: refused for an ordinary allocation, coherent for one made for mmap', () => {
    const plain = soundCard('parisc', 'congruent');
    expect(plain.addr).toBe(-EINVAL);
    const made = soundCard('parisc', 'congruent', true);
    expect(made.addr).toBeGreaterThan(0);
    const r = exchange(made.m, made.dev, made.proc, made.addr, made.buf.dmaHandle);
    expect(r).toMatchObject({ deviceSaw: [1, 2, 3, 4], userSaw: [0x40, 0x41] });
  });

  it('(d) coherence-index: DMA becomes coherent with the user alias', () => {
    const s = soundCard('parisc', 'coherence-index');
    const r = exchange(s.m, s.dev, s.proc, s.addr, s.buf.dmaHandle);
    expect(r).toMatchObject({ deviceSaw: [1, 2, 3, 4], userSaw: [0x40, 0x41] });
  });

  it('(e) refuse: -ENXIO on every profile', () => {
    for (const profile of ['x86_64', 'arm64-noncoherent']) {
      expect(soundCard(profile, 'refuse').addr).toBe(-ENXIO);
    }
  });
});

describe('dma_get_sgtable', () => {
  it('describes a coherent allocation as one page-aligned entry', () => {
    const s = soundCard('x86_64');
    const sgt = createSgTable();
    expect(dmaGetSgtable(s.dev, sgt, s.buf.cpuAddr, s.buf.dmaHandle, SIZE)).toBe(0);
    expect(sgt.origNents).toBe(1);
    expect(sgPhys(sgt.sgl!)).toBe(s.buf.dmaHandle);
    expect(sgt.sgl!.length).toBe(SIZE);
    expect(sgDmaLen(sgt.sgl!)).toBe(0);
  });
});
