/**
 * Seed 003 (Arnd Bergmann, RFC v2 of dma-buf, December 2011): two drivers
 * share one non-coherent buffer through map/unmap alone. The twelve-step
 * table, run as written on every profile, and corrected.
 */

import { describe, expect, it } from 'vitest';
import { runTable, SEED_003_TABLE, type Table } from '../../test/dmabuf-kit.js';
import { createMachine } from '../boot.js';
import {
  __freePages,
  __GFP_ZERO,
  allocPages,
  GFP_KERNEL,
  getOrder,
  type Machine,
  PROFILE_NAMES,
  pageAddress,
} from '../machine/index.js';
import { type HeapBufferPriv, heapBacking, heapCommonOps } from './heaps/heap-buffer.js';
import { type DmaBuf, type DmaBufOps, dmaBufExport } from './index.js';

/**
 * The same work with the bugs taken out: CPU access while a device has
 * the buffer mapped is bracketed with begin/end_cpu_access, and B maps only
 * after A has unmapped, so two devices never own the buffer at once.
 */
const CORRECTED: Table = [
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

function play(m: Machine, table: Table): Record<number, string[]> {
  const r = runTable(m, streamingBuffer(m, 4096), table);
  expect(r.refused).toEqual({});
  return r.steps;
}

describe('seed 003: the two-driver table', () => {
  it('as written: findings at steps 4 and 11 everywhere, and at 7 where the devices are in different coherency domains', () => {
    const rows = PROFILE_NAMES.map((profile) => ({
      profile,
      steps: play(createMachine({ profile }), SEED_003_TABLE),
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
      steps: play(createMachine({ profile }), CORRECTED),
    }));
    expect(rows).toEqual(PROFILE_NAMES.map((profile) => ({ profile, steps: {} })));
  });
});
