/**
 * Seed 003 ("[RFC v2 1/2] dma-buf: Introduce dma buffer sharing
 * mechanism", 2011): Arnd Bergmann's table of two drivers sharing a buffer
 * with map/unmap only — twelve steps, in order — and the same work done
 * the way dma-buf settled on: exclusive device phases and CPU access
 * bracketed with begin/end_cpu_access.
 */

import { DMA_BIDIRECTIONAL, DMA_BIT_MASK, dmaSetMaskAndCoherent } from '../../dma/index.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  dmaHeapBufferAlloc,
} from '../../dmabuf/index.js';
import type { SgTable } from '../../lib/index.js';
import { sgDmaAddress } from '../../lib/index.js';
import {
  addDevice,
  type Device,
  DmalabError,
  deviceDmaRead,
  deviceDmaWrite,
  type KernelVa,
  type Machine,
  PAGE_SIZE,
} from '../../machine/index.js';
import { kernelRead, kernelWrite, O_RDWR } from '../../mm/index.js';
import type { BuiltinRun } from '../run.js';
import { type AgentBody, type RunContext, wait } from '../runtime.js';
import { builtin, filled } from './kit.js';

const SIZE = 4 * PAGE_SIZE;

/** One side of the table: a driver (CPU), its device, and its attachment. */
interface Side {
  readonly name: 'A' | 'B';
  readonly dev: Device;
  readonly at: DmaBufAttachment;
  sgt: SgTable | null;
}

interface Shared {
  readonly m: Machine;
  readonly ctx: RunContext;
  readonly db: DmaBuf;
  readonly va: KernelVa;
  readonly bracket: boolean;
}

/** One action of the table: CPU marks go in the first line, device marks in the second. */
function* act(s: Shared, side: Side, action: string): AgentBody {
  const { m, db, va } = s;
  switch (action) {
    case 'read/write': {
      if (s.bracket) dmaBufBeginCpuAccess(db, DMA_BIDIRECTIONAL);
      const seen = kernelRead(m, va + 64, 1);
      kernelWrite(m, va, filled(64, side.name === 'A' ? 0xa0 : 0xb0));
      if (s.bracket) dmaBufEndCpuAccess(db, DMA_BIDIRECTIONAL);
      yield { op: `driver ${side.name} reads ${seen === null ? '—' : seen[0]} and writes its mark` };
      return;
    }
    case 'map()': {
      const r = dmaBufMapAttachmentUnlocked(side.at, DMA_BIDIRECTIONAL);
      if (typeof r === 'number')
        throw new DmalabError(`dma_buf_map_attachment for ${side.dev.name} failed: ${r}`);
      side.sgt = r;
      yield { op: `driver ${side.name}: dma_buf_map_attachment(${side.dev.name}, DMA_BIDIRECTIONAL)` };
      return;
    }
    case 'unmap()':
      dmaBufUnmapAttachmentUnlocked(side.at, side.sgt!, DMA_BIDIRECTIONAL);
      side.sgt = null;
      yield { op: `driver ${side.name}: dma_buf_unmap_attachment(${side.dev.name})` };
      return;
    case 'dma': {
      // The device reads what the CPU marked, and writes its own mark in the second line.
      const bus = sgDmaAddress(side.sgt!.sgl!);
      deviceDmaRead(side.dev, bus, 64);
      deviceDmaWrite(side.dev, bus + 64, filled(64, side.name === 'A' ? 0xda : 0xdb));
      yield { op: `device ${side.dev.name} reads the first line and writes the second` };
      return;
    }
  }
  throw new DmalabError(`no action '${action}'`);
}

/** The table's rows: step number, side, action. */
type Row = readonly [number, 'A' | 'B', string];

/** Arnd's table, exactly. */
const TABLE: readonly Row[] = [
  [1, 'A', 'read/write'],
  [2, 'B', 'read/write'],
  [3, 'A', 'map()'],
  [4, 'B', 'read/write'],
  [5, 'A', 'dma'],
  [6, 'B', 'map()'],
  [7, 'A', 'dma'],
  [8, 'B', 'dma'],
  [9, 'A', 'unmap()'],
  [10, 'B', 'dma'],
  [11, 'A', 'read/write'],
  [12, 'B', 'unmap()'],
];

/** The same work with exclusive device phases and bracketed CPU access (steps renumbered in order). */
const EXCLUSIVE: readonly Row[] = [
  [1, 'A', 'read/write'],
  [2, 'B', 'read/write'],
  [3, 'A', 'map()'],
  [4, 'A', 'dma'],
  [5, 'A', 'dma'],
  [6, 'A', 'unmap()'],
  [7, 'B', 'read/write'],
  [8, 'B', 'map()'],
  [9, 'B', 'dma'],
  [10, 'B', 'dma'],
  [11, 'B', 'unmap()'],
  [12, 'A', 'read/write'],
];

function tableCase(m: Machine, ctx: RunContext, rows: readonly Row[], bracket: boolean): BuiltinRun {
  const db = dmaHeapBufferAlloc(m, 'system', SIZE, O_RDWR, 0);
  if (typeof db === 'number') throw new DmalabError(`the system heap refused ${SIZE} bytes: ${db}`);
  const side = (name: 'A' | 'B', devName: string): Side => {
    const dev = addDevice(m, { name: devName, maxSegmentSize: 0xffff_ffff });
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const at = dmaBufAttach(db, dev);
    if (typeof at === 'number') throw new DmalabError(`dma_buf_attach(${devName}) failed: ${at}`);
    return { name, dev, at, sgt: null };
  };
  const sides = { A: side('A', 'camera'), B: side('B', 'encoder') };
  const map = dmaBufVmapUnlocked(db);
  if (typeof map === 'number') throw new DmalabError(`dma_buf_vmap failed: ${map}`);
  const shared: Shared = { m, ctx, db, va: map.vaddr as KernelVa, bracket };
  // Each step waits for the one before it, so the table runs in its order whatever the seed.
  function* agent(who: 'A' | 'B', cpu: boolean): AgentBody {
    for (const [step, s, action] of rows) {
      if (s !== who || (action === 'dma') === cpu) continue;
      if (step > 1) yield wait.signal(`step ${step - 1}`);
      yield* act(shared, sides[who], action);
      yield ctx.signal(`step ${step}`);
    }
  }
  return {
    agents: [
      { name: 'driver A', kind: 'kernel', body: agent('A', true) },
      { name: 'driver B', kind: 'kernel', body: agent('B', true) },
      { name: 'camera', kind: 'device', body: agent('A', false) },
      { name: 'encoder', kind: 'device', body: agent('B', false) },
    ],
    final: () => {
      // After the table, both lines hold the last writers' marks as everyone should see them.
      const last = kernelRead(m, shared.va, 128);
      ctx.expectBytes('the final CPU view of the first line', last?.subarray(0, 64) ?? null, 0xa0);
      ctx.expectBytes('the final CPU view of the second line', last?.subarray(64) ?? null, 0xdb);
    },
  };
}

builtin(
  {
    name: 'dmabuf-two-driver-table',
    intent: "two drivers share a dma-buf with map/unmap only, in the RFC thread's twelve-step order",
    seed: '003',
    expect: {
      x86_64: 'latent',
      'arm64-coherent': 'latent',
      'arm64-noncoherent': 'broken',
      parisc: 'broken',
      'parisc-pcxl': 'broken',
      'swiotlb-force': 'broken',
    },
  },
  (m, ctx) => tableCase(m, ctx, TABLE, false),
);

builtin(
  {
    name: 'dmabuf-two-driver-exclusive',
    intent:
      'the same two drivers with exclusive device phases and CPU access bracketed by begin/end_cpu_access',
    seed: '003',
    expect: {},
  },
  (m, ctx) => tableCase(m, ctx, EXCLUSIVE, true),
);
