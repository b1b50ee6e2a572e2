import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { createSgTable, sgAllocTable, sgDmaAddress, sgPage, sgSetPfn } from '../lib/index.js';
import {
  addDevice,
  addPhysRegion,
  type CiPolicy,
  cacheDirtyLines,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  PAGE_SIZE,
  pfnValid,
} from '../machine/index.js';
import {
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  remapPfnRange,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
} from '../mm/index.js';
import { DMA_BIDIRECTIONAL, DMA_TO_DEVICE, dmaMapSg, dmaUnmapSg } from './index.js';

const MiB = 1 << 20;

/** Persistent memory without struct page (seed 001's RFC mode), mapped into a process by a DAX-like driver. */
function pmemMachine(profile: string, ciPolicy: CiPolicy = 'kernel') {
  const m = createMachine({ profile, ramBytes: 256 * MiB, pagelessSg: true, ciPolicy });
  const pmem = addPhysRegion(m, 'pmem', 4 * MiB, 'pmem0');
  const pfn = pmem.start / PAGE_SIZE;
  expect(pfnValid(m, pfn)).toBe(false);
  registerChrdev(m, '/dev/dax0.0', {
    mmap: (_f, vma) =>
      remapPfnRange(vma, vma.vmStart, pfn + vma.vmPgoff, vma.vmEnd - vma.vmStart, vma.vmPageProt),
  });
  const proc = spawnProcess(m, 'db');
  const uva = sysMmap(
    proc,
    0,
    PAGE_SIZE,
    PROT_READ | PROT_WRITE,
    MAP_SHARED,
    sysOpen(proc, '/dev/dax0.0'),
    0,
  );
  const dev = addDevice(m, { name: 'nvme' });
  const sgt = createSgTable();
  sgAllocTable(sgt, 1, GFP_KERNEL);
  sgSetPfn(sgt.sgl!, pfn, PAGE_SIZE, 0);
  expect(sgPage(sgt.sgl!)).toBeNull();
  return { m, proc, uva, dev, sgt, pfn };
}

describe('page-less scatterlist entries (seed 001)', () => {
  it('map by physical address on dma-direct, with no cache maintenance (no kernel address to maintain through)', () => {
    const s = pmemMachine('arm64-noncoherent');
    userWrite(s.proc, s.uva, new Uint8Array([7, 7])); // a dirty line in the user's cached mapping
    expect(dmaMapSg(s.dev, s.sgt.sgl!, 1, DMA_TO_DEVICE)).toBe(1);
    expect(sgDmaAddress(s.sgt.sgl!)).toBe(s.pfn * PAGE_SIZE);
    // The RFC's hazard: nothing cleaned the user's line, so the device reads old bytes.
    expect(cacheDirtyLines(s.m, s.pfn * PAGE_SIZE, 64)).toBe(1);
    expect([...deviceDmaRead(s.dev, sgDmaAddress(s.sgt.sgl!), 2)]).toEqual([0, 0]);
    dmaUnmapSg(s.dev, s.sgt.sgl!, 1, DMA_TO_DEVICE);
  });

  it('on parisc, the coherence index decides whose alias sees the device write', () => {
    const seen = (policy: CiPolicy) => {
      const s = pmemMachine('parisc', policy);
      userRead(s.proc, s.uva, 2); // the user's alias holds a clean line
      expect(dmaMapSg(s.dev, s.sgt.sgl!, 1, DMA_BIDIRECTIONAL)).toBe(1);
      deviceDmaWrite(s.dev, sgDmaAddress(s.sgt.sgl!), new Uint8Array([0x99, 0x98]));
      return [...userRead(s.proc, s.uva, 2)!];
    };
    expect(seen('user')).toEqual([0x99, 0x98]);
    expect(seen('kernel')).toEqual([0, 0]);
    expect(seen('zero')).toEqual([0, 0]);
  });
});
