/**
 * mm-layer benchmarks:
 * - a process reading and writing 1 MiB through its page tables (PTEs present), against the same
 *   physical access without the MMU (the cost of translation; the cache model's own cost is in the
 *   machine benchmarks);
 * - anonymous page faults per second (first touch of fresh pages, then munmap);
 * - kmalloc + kfree of 64 bytes, and vmalloc + vfree of 64 KiB;
 * - mmap of a 1 MiB device with remap_pfn_range + unmap_mapping_range + munmap.
 */

import { createMachine } from '../src/boot.js';
import { allocPages, cpuRead, cpuWrite, GFP_KERNEL } from '../src/machine/index.js';
import {
  kfree,
  kmalloc,
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  processVmas,
  pteLookup,
  registerChrdev,
  remapPfnRange,
  spawnProcess,
  sysMmap,
  sysMunmap,
  sysOpen,
  unmapMappingRange,
  userRead,
  userWrite,
  vfree,
  vmalloc,
} from '../src/mm/index.js';
import { rate, ratio } from './lib.js';

const MiB = 1024 * 1024;

export async function mmBenchmarks(): Promise<void> {
  const src = new Uint8Array(MiB).fill(7);

  for (const profile of ['x86_64', 'parisc'] as const) {
    const m = createMachine({ profile, ramBytes: 256 * MiB, check: false });
    const p = spawnProcess(m, 'bench');
    const va = sysMmap(p, 0, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    userWrite(p, va, src);
    const pa = pteLookup(p, va)!.pfn * 4096;
    const goal = { min: 0.8, text: '>= 0.8' };
    await ratio(
      `userWrite 1 MiB through present PTEs vs cpuWrite of the same frames, ${profile}`,
      () => cpuWrite(m, pa, va, 'cached', src, 0, MiB),
      () => userWrite(p, va, src),
      goal,
    );
    await ratio(
      `userRead 1 MiB through present PTEs vs cpuRead of the same frames into a new buffer, ${profile}`,
      () => cpuRead(m, pa, va, 'cached', new Uint8Array(MiB), 0, MiB),
      () => userRead(p, va, MiB),
      goal,
    );
    const small = src.subarray(0, 64);
    await rate(`userWrite 64 bytes through a present PTE, ${profile}`, () =>
      userWrite(p, va + 4096 * 7 + 128, small),
    );
  }

  {
    const m = createMachine({ ramBytes: 256 * MiB, check: false });
    const p = spawnProcess(m, 'faults');
    const one = new Uint8Array(1);
    await rate('mmap + 64 anonymous write faults + munmap', () => {
      const va = sysMmap(p, 0, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      for (let i = 0; i < 64; i++) userWrite(p, va + i * 4096, one);
      sysMunmap(p, va, 64 * 4096);
    });
  }

  {
    const m = createMachine({ ramBytes: 256 * MiB, check: false });
    await rate('kmalloc + kfree, 64 bytes', () => kfree(m, kmalloc(m, 64, GFP_KERNEL)!));
    await rate('vmalloc + vfree, 64 KiB', () => vfree(m, vmalloc(m, 65536)!));
  }

  {
    const m = createMachine({ ramBytes: 256 * MiB, check: false });
    const buf = allocPages(m, GFP_KERNEL, 8)!;
    registerChrdev(m, '/dev/bench', {
      mmap: (_f, vma) => remapPfnRange(vma, vma.vmStart, buf, vma.vmEnd - vma.vmStart, vma.vmPageProt),
    });
    const p = spawnProcess(m, 'mapper');
    const fd = sysOpen(p, '/dev/bench');
    await rate('mmap 1 MiB remap_pfn_range + unmap_mapping_range + munmap', () => {
      const va = sysMmap(p, 0, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      unmapMappingRange(processVmas(p)[0]!.vmFile!.fMapping, 0, 0, 1);
      sysMunmap(p, va, MiB);
    });
  }
}
