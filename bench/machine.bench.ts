/**
 * Machine-layer benchmarks (issue: the machine layer):
 * - device DMA of 1 MiB vs Uint8Array.set, coherent profile, checker off;
 * - the same on arm64-noncoherent, and a CPU copy through the cache model;
 * - snapshot + hash + restore of a 64 MiB machine with 1 MiB touched;
 * - createMachine of 64 GiB, and resident memory with 1 GiB touched (child process).
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createMachine } from '../src/boot.js';
import {
  addDevice,
  allocPages,
  cacheClean,
  cacheInvalidate,
  cpuRead,
  cpuWrite,
  deviceDmaAccess,
  deviceDmaWrite,
  GFP_KERNEL,
  machineHash,
  pageToPhys,
  physToVirt,
  restoreMachine,
  snapshotMachine,
} from '../src/machine/index.js';
import { rate, ratio, record } from './lib.js';

const MiB = 1024 * 1024;

export async function machineBenchmarks(): Promise<void> {
  const src = new Uint8Array(MiB).fill(7);
  const dst = new Uint8Array(MiB);
  const memcpy = () => dst.set(src);

  for (const profile of ['x86_64', 'arm64-noncoherent'] as const) {
    const m = createMachine({ profile, ramBytes: 256 * MiB, check: false });
    const dev = addDevice(m, { name: 'dma' });
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 8)!);
    deviceDmaWrite(dev, pa, src);
    const goal = profile === 'x86_64' ? { min: 0.5, text: '>= 0.5' } : { min: 0.1, text: '>= 0.1' };
    await ratio(`device DMA write 1 MiB, ${profile}`, memcpy, () => deviceDmaWrite(dev, pa, src), goal);
    // The device reads into its own (reused) buffer, as a device model would.
    await ratio(
      `device DMA read 1 MiB, ${profile}`,
      memcpy,
      () => deviceDmaAccess(dev, pa, MiB, false, dst),
      goal,
    );
    const va = physToVirt(pa);
    if (profile === 'arm64-noncoherent') {
      // What a streaming DMA of that buffer costs on this machine: clean before the device
      // reads, invalidate after it writes (the DMA API's arm64 maintenance), with the
      // CPU having read the buffer first so that every line is present and walked.
      cpuRead(m, pa, va, 'cached', dst, 0, MiB);
      await ratio(
        `device DMA read + write 1 MiB with clean/invalidate of cached lines, ${profile}`,
        memcpy,
        () => {
          cacheClean(m, pa, MiB);
          deviceDmaAccess(dev, pa, MiB, false, dst);
          deviceDmaWrite(dev, pa, src);
          cacheInvalidate(m, pa, MiB);
          cpuRead(m, pa, va, 'cached', dst, 0, MiB);
        },
      );
    }
    await ratio(`CPU write 1 MiB through the cache model, ${profile}`, memcpy, () =>
      cpuWrite(m, pa, va, 'cached', src, 0, MiB),
    );
  }

  {
    const m = createMachine({ ramBytes: 64 * MiB, check: false });
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 8)!);
    cpuWrite(m, pa, physToVirt(pa), 'cached', src, 0, MiB);
    const snap = snapshotMachine(m);
    let i = 0;
    await rate(
      'snapshot + hash + restore, 64 MiB machine, 1 MiB touched',
      () => {
        const s = snapshotMachine(m);
        cpuWrite(m, pa + (i++ % 256) * 4096, physToVirt(pa), 'cached', src, 0, 64);
        machineHash(m);
        restoreMachine(m, s);
      },
      { min: 1000, text: '>= 1000/s' },
    );
    restoreMachine(m, snap);
  }

  {
    const t0 = performance.now();
    for (let k = 0; k < 20; k++) createMachine({ ramBytes: 64 * 1024 * MiB, check: false });
    const ms = (performance.now() - t0) / 20;
    record({
      metric: 'createMachine, 64 GiB',
      median: ms,
      min: ms,
      max: ms,
      unit: 'ms',
      goal: '< 50 ms',
      pass: ms < 50,
    });
  }

  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./rss.ts', import.meta.url))],
    {
      encoding: 'utf8',
    },
  );
  if (child.status !== 0) throw new Error(`rss benchmark failed: ${child.stderr}`);
  const rssMiB = Number(child.stdout.trim());
  record({
    metric: 'resident memory, 64 GiB machine with 1 GiB touched',
    median: rssMiB,
    min: rssMiB,
    max: rssMiB,
    unit: 'MiB',
    goal: '<= 1228.8 MiB (1.2 GiB)',
    pass: rssMiB <= 1228.8,
  });
}
