/**
 * Seed 001 ("RFC: prepare for struct scatterlist entries without page
 * backing", 2015): DMA into persistent memory and into another device's
 * ioremapped region through scatterlist entries that carry a PFN and no
 * struct page — so there is no kernel address to do cache maintenance
 * through, and on PA-RISC no obvious alias for the coherence index to name.
 */

import {
  DMA_BIT_MASK,
  DMA_FROM_DEVICE,
  dmaMapSgtable,
  dmaSetMaskAndCoherent,
  dmaUnmapSgtable,
} from '../../dma/index.js';
import { createSgTable, type SgTable, sgAllocTable, sgDmaAddress, sgSetPfn } from '../../lib/index.js';
import {
  addDevice,
  addPhysRegion,
  type Device,
  errnoName,
  GFP_KERNEL,
  type Machine,
  PAGE_SIZE,
  submitDeviceJob,
} from '../../machine/index.js';
import {
  ioremap,
  kernelRead,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  registerChrdev,
  remapPfnRange,
  spawnProcess,
  sysMmap,
  sysOpen,
  userRead,
} from '../../mm/index.js';
import type { BuiltinRun } from '../run.js';
import { type AgentBody, type RunContext, wait } from '../runtime.js';
import { builtin, filled, hex } from './kit.js';

const KiB = 1024;

/**
 * A driver that maps one page-less entry for a device to fill, then unmaps
 * it. A refused mapping is a clean outcome (the driver would fall back to a
 * CPU copy): it raises 'refused' instead, and nothing is transferred.
 */
function* mapForDevice(ctx: RunContext, dev: Device, sgt: SgTable, pfn: number): AgentBody {
  sgAllocTable(sgt, 1, GFP_KERNEL);
  sgSetPfn(sgt.sgl!, pfn, PAGE_SIZE, 0);
  const err = dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
  yield { op: `dma_map_sgtable(${dev.name}, [pfn ${hex(pfn)}, no struct page], DMA_FROM_DEVICE) = ${err}` };
  if (err !== 0) {
    ctx.check(true, `the mapping was refused (${errnoName(err)}): the driver falls back to a CPU copy`);
    yield ctx.signal('refused');
    return;
  }
  yield ctx.signal('mapped');
  yield wait.signal('written');
  dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
  yield { op: `dma_unmap_sgtable(${dev.name})` };
}

/** The device writes a 512-byte block at the entry's DMA address, as a job of 3 µs. */
function* writeBlock(ctx: RunContext, dev: Device, sgt: SgTable): AgentBody {
  yield wait.any(['mapped', 'refused']);
  if (ctx.signalled('refused')) return;
  const bus = sgDmaAddress(sgt.sgl!);
  const id = submitDeviceJob(dev, { kind: 'dma-write', bus, data: filled(512, 0x5a) }, 3000);
  yield wait.job(id, `${dev.name} writes a 512-byte block at ${hex(bus)}`);
  yield ctx.signal('written');
}

/** A database reads a block, a controller overwrites it in pmem through a page-less entry, the database reads again. */
function pmemCase(m: Machine, ctx: RunContext): BuiltinRun {
  const pmem = addPhysRegion(m, 'pmem', 4 * 1024 * KiB, 'pmem0');
  const pfn = pmem.start / PAGE_SIZE;
  registerChrdev(m, '/dev/dax0.0', {
    mmap: (_f, vma) =>
      remapPfnRange(vma, vma.vmStart, pfn + vma.vmPgoff, vma.vmEnd - vma.vmStart, vma.vmPageProt),
  });
  const dev = addDevice(m, { name: 'nvme' });
  dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  const proc = spawnProcess(m, 'db');
  const sgt = createSgTable();
  let addr = 0;
  function* db(): AgentBody {
    addr = sysMmap(proc, 0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sysOpen(proc, '/dev/dax0.0'), 0);
    yield { op: `mmap(/dev/dax0.0) = ${hex(addr)}` };
    userRead(proc, addr, 64);
    yield { op: 'read the old block (its lines are now cached in the user alias)' };
    yield ctx.signal('ready');
    yield wait.signal('unmapped');
    if (!ctx.signalled('refused')) {
      ctx.expectBytes('the new block as the process reads it', userRead(proc, addr, 64), 0x5a);
    }
    yield { op: 'read the new block' };
  }
  function* driver(): AgentBody {
    yield wait.signal('ready');
    yield* mapForDevice(ctx, dev, sgt, pfn);
    yield ctx.signal('unmapped');
  }
  return {
    agents: [
      { name: 'db', kind: 'process', body: db() },
      { name: 'driver', kind: 'kernel', body: driver() },
      { name: 'nvme', kind: 'device', body: writeBlock(ctx, dev, sgt) },
    ],
  };
}

builtin(
  {
    name: 'pageless-dma-to-pmem',
    intent:
      'a controller reads a block into persistent memory a process has mapped with DAX, through a page-less entry',
    seed: '001',
    machine: { pagelessSg: true },
    // arm64 maintains caches by physical address through the linear map; PA-RISC needs a virtual address.
    expect: { parisc: 'broken', 'parisc-pcxl': 'broken' },
  },
  pmemCase,
);

builtin(
  {
    name: 'pageless-dma-to-pmem-ci-user',
    intent:
      "the same on PA-RISC with the IOMMU's coherence index naming the user's alias, as the RFC proposed",
    seed: '001',
    profiles: ['parisc'],
    machine: { pagelessSg: true, ciPolicy: 'user' },
  },
  pmemCase,
);

builtin(
  {
    name: 'pageless-dma-to-ioremap',
    intent:
      "a NIC writes into a peer device's memory through a page-less entry; the driver reads it through ioremap",
    seed: '001',
    machine: { pagelessSg: true },
  },
  (m, ctx) => {
    const bar = addPhysRegion(m, 'device', 64 * KiB, 'gpu-bar0');
    const pfn = bar.start / PAGE_SIZE;
    const dev = addDevice(m, { name: 'nic' });
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const sgt = createSgTable();
    function* driver(): AgentBody {
      const va = ioremap(m, bar.start, 64 * KiB)!;
      yield { op: `ioremap(gpu-bar0 at ${hex(bar.start)}) = ${hex(va)}` };
      yield* mapForDevice(ctx, dev, sgt, pfn);
      if (ctx.signalled('refused')) return;
      ctx.expectBytes('the block as the driver reads it through ioremap', kernelRead(m, va, 64), 0x5a);
      yield { op: 'read the block through the uncached mapping' };
    }
    return {
      agents: [
        { name: 'driver', kind: 'kernel', body: driver() },
        { name: 'nic', kind: 'device', body: writeBlock(ctx, dev, sgt) },
      ],
    };
  },
);
