/**
 * Seed 003 (Arnd Bergmann, RFC v2 of dma-buf, December 2011): two drivers
 * share one non-coherent buffer through map/unmap alone. The twelve-step
 * table, run as written on every profile, and corrected.
 */

import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_BIDIRECTIONAL } from '../dma/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../lib/index.js';
import {
  __freePages,
  __GFP_ZERO,
  addDevice,
  allocPages,
  type Device,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  getOrder,
  type Machine,
  machineFindings,
  PROFILE_NAMES,
  pageAddress,
} from '../machine/index.js';
import { kernelRead, kernelWrite } from '../mm/index.js';
import { type HeapBufferPriv, heapBacking, heapCommonOps } from './heaps/heap-buffer.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufExport,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmap,
  type IosysMap,
} from './index.js';

/** One driver: its device, attachment, current mapping, and the 64 bytes of the buffer it works on. */
interface Driver {
  name: 'A' | 'B';
  dev: Device;
  at: DmaBufAttachment;
  sgt: SgTable | null;
  off: number;
  /** What its CPU side last wrote. */
  gen: number;
}

type Op = 'rw' | 'rw-bracketed' | 'map' | 'dma' | 'unmap';

/** Arnd's table, step by step: which driver does what. */
const SEED_003_TABLE: readonly (readonly ['A' | 'B', Op])[] = [
  ['A', 'rw'],
  ['B', 'rw'],
  ['A', 'map'],
  ['B', 'rw'],
  ['A', 'dma'],
  ['B', 'map'],
  ['A', 'dma'],
  ['B', 'dma'],
  ['A', 'unmap'],
  ['B', 'dma'],
  ['A', 'rw'],
  ['B', 'unmap'],
];

/**
 * The same work with the bugs taken out: CPU access while a device has
 * the buffer mapped is bracketed with begin/end_cpu_access, and B maps only
 * after A has unmapped, so two devices never own the buffer at once.
 */
const CORRECTED: readonly (readonly ['A' | 'B', Op])[] = [
  ['A', 'rw-bracketed'],
  ['B', 'rw-bracketed'],
  ['A', 'map'],
  ['B', 'rw-bracketed'],
  ['A', 'dma'],
  ['A', 'dma'],
  ['A', 'unmap'],
  ['B', 'map'],
  ['B', 'dma'],
  ['B', 'dma'],
  ['A', 'rw-bracketed'],
  ['B', 'unmap'],
];

function firstDma(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

/**
 * The buffer of 2011: ordinary cacheable pages, mapped for each attached
 * device with the streaming API, synced for every mapped attachment in
 * begin/end_cpu_access (the heaps' callbacks), and given to the kernel
 * through its linear map (contiguous lowmem needs no vmap alias: on
 * PA-RISC a vmap alias would add a VIPT problem of its own).
 */
function streamingBuffer(m: Machine, len: number): DmaBuf {
  const order = getOrder(len);
  const page = allocPages(m, GFP_KERNEL | __GFP_ZERO, order)!;
  const priv: HeapBufferPriv = { heap: 'streaming', len, chunks: [page, 1 << order] };
  const ops: DmaBufOps = {
    ...heapCommonOps,
    vmap: () => ({ vaddr: pageAddress(page), isIomem: false }),
    vunmap: () => {},
    release: (db) => __freePages(db.machine, page, order),
  };
  return dmaBufExport(m, { expName: 'seed003', size: len, ops, priv, backing: heapBacking(priv) }) as DmaBuf;
}

/** Runs a table on such a buffer; returns the finding codes raised at each step (1-based). */
function runTable(m: Machine, table: readonly (readonly ['A' | 'B', Op])[]): Record<number, string[]> {
  const db = streamingBuffer(m, 4096);
  const map = dmaBufVmap(db) as IosysMap;
  const drivers = { A: 0, B: 64 } as const;
  const d: Record<'A' | 'B', Driver> = {} as never;
  for (const name of ['A', 'B'] as const) {
    const dev = addDevice(m, { name: `dev${name}` });
    d[name] = {
      name,
      dev,
      at: dmaBufAttach(db, dev) as DmaBufAttachment,
      sgt: null,
      off: drivers[name],
      gen: 0,
    };
  }
  const out: Record<number, string[]> = {};
  table.forEach(([who, op], i) => {
    const drv = d[who];
    const before = machineFindings(m).length;
    switch (op) {
      case 'rw':
      case 'rw-bracketed': {
        if (op === 'rw-bracketed') expect(dmaBufBeginCpuAccess(db, DMA_BIDIRECTIONAL)).toBe(0);
        kernelRead(m, map.vaddr, 128);
        drv.gen++;
        kernelWrite(m, map.vaddr + drv.off, new Uint8Array(64).fill(0x10 * drv.gen + (who === 'A' ? 1 : 2)));
        if (op === 'rw-bracketed') expect(dmaBufEndCpuAccess(db, DMA_BIDIRECTIONAL)).toBe(0);
        break;
      }
      case 'map':
        drv.sgt = dmaBufMapAttachmentUnlocked(drv.at, DMA_BIDIRECTIONAL) as SgTable;
        break;
      case 'dma': {
        const bus = firstDma(drv.sgt!) + drv.off;
        deviceDmaRead(drv.dev, bus, 64);
        deviceDmaWrite(drv.dev, bus, new Uint8Array(64).fill(who === 'A' ? 0xa0 + i : 0xb0 + i));
        break;
      }
      case 'unmap':
        dmaBufUnmapAttachmentUnlocked(drv.at, drv.sgt!, DMA_BIDIRECTIONAL);
        drv.sgt = null;
        break;
    }
    const codes = machineFindings(m)
      .slice(before)
      .map((f) => f.code);
    if (codes.length > 0) out[i + 1] = codes;
  });
  return out;
}

describe('seed 003: the two-driver table', () => {
  it('as written: findings at steps 4 and 11 everywhere, and at 7 where the devices are in different coherency domains', () => {
    const rows = PROFILE_NAMES.map((profile) => ({
      profile,
      steps: runTable(createMachine({ profile }), SEED_003_TABLE),
    }));
    // Step 4: B's CPU loads and stores bytes device A owns; step 11: A's, bytes device B owns (two
    // findings each: the load and the store). Step 7: A's device touches bytes device B owns too, which
    // matters only where the two do not share a coherency domain (non-snooping devices). On PA-RISC,
    // dma-debug also warns at step 6 that B maps cache lines A has mapped device-writable; with forced
    // bouncing, step 11 reads the original while B's device wrote its bounce slot.
    const bugs = { 4: ['OWNERSHIP', 'OWNERSHIP'], 11: ['OWNERSHIP', 'OWNERSHIP'] };
    expect(rows).toEqual([
      { profile: 'x86_64', steps: bugs },
      { profile: 'arm64-coherent', steps: bugs },
      { profile: 'arm64-noncoherent', steps: { ...bugs, 7: ['OWNERSHIP'] } },
      { profile: 'parisc', steps: { ...bugs, 6: ['DMA_CACHELINE_OVERLAP'], 7: ['OWNERSHIP'] } },
      { profile: 'parisc-pcxl', steps: { ...bugs, 6: ['DMA_CACHELINE_OVERLAP'], 7: ['OWNERSHIP'] } },
      { profile: 'swiotlb-force', steps: { ...bugs, 11: ['OWNERSHIP', 'STALE_DATA', 'OWNERSHIP'] } },
    ]);
  });

  it('corrected: brackets around CPU access and one device at a time raise nothing on any profile', () => {
    const rows = PROFILE_NAMES.map((profile) => ({
      profile,
      steps: runTable(createMachine({ profile }), CORRECTED),
    }));
    expect(rows).toEqual(PROFILE_NAMES.map((profile) => ({ profile, steps: {} })));
  });
});
