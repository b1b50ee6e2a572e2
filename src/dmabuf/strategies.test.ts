/**
 * Seed 003's two remedies, each written as an exporter and put through the
 * table: (i) coherent or uncached buffers only; (ii) exclusive access, the
 * user's PTEs shot down while a device has the buffer and faulted back
 * after.
 */

import { describe, expect, it } from 'vitest';
import { bracketed, runTable, SEED_003_TABLE } from '../../test/dmabuf-kit.js';
import { createMachine } from '../boot.js';
import {
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL,
  dmaAllocCoherent,
  dmaFreeCoherent,
  dmaGetSgtable,
  dmaMapSgtable,
  dmaMmapCoherent,
  dmaUnmapSgtable,
} from '../dma/index.js';
import { createSgTable, forEachSgtableDmaSg, type SgTable, sgFreeTable } from '../lib/index.js';
import {
  __freePages,
  __GFP_ZERO,
  addDevice,
  allocPages,
  type DmaAddr,
  deviceDmaRead,
  deviceDmaWrite,
  EAGAIN,
  GFP_KERNEL,
  type KernelVa,
  type Machine,
  machineFindings,
  type Page,
  PROFILE_NAMES,
  pageAddress,
} from '../machine/index.js';
import {
  flushDcachePage,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  pteLookup,
  spawnProcess,
  sysMmap,
  unmapMappingRange,
  userRead,
  userWrite,
  VM_DONTEXPAND,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_PFNMAP,
  type VmOperationsStruct,
  vmFlagsSet,
  vmfInsertPfn,
} from '../mm/index.js';
import { type HeapBufferPriv, heapCommonOps } from './heaps/heap-buffer.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufAttach,
  dmaBufExport,
  dmaBufFd,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from './index.js';
import { dmaBufHandle } from './state.js';

const PAGE = 4096;

// ---- (i) coherent buffers only ----

/** The exporter's coherent allocation (plain data): its device, CPU address and DMA handle. */
interface CoherentPriv {
  dev: number;
  cpuAddr: number;
  dmaHandle: number;
  len: number;
}

const coherentTables = new WeakMap<DmaBufAttachment, SgTable>();

function coherentPriv(db: DmaBuf): CoherentPriv {
  return db.priv as CoherentPriv;
}

/**
 * Memory from `dma_alloc_coherent` on the exporter's device: every CPU view
 * is the coherent one (the kernel mapping it returned, `dma_mmap_coherent`
 * for users), and importers get its pages mapped with
 * DMA_ATTR_SKIP_CPU_SYNC, so no access ever needs a sync (as
 * videobuf2-dma-contig does).
 */
const coherentOps: DmaBufOps = {
  attach(db, at) {
    const p = coherentPriv(db);
    const sgt = createSgTable();
    const exp = db.machine.devices[p.dev]!;
    const r = dmaGetSgtable(exp, sgt, p.cpuAddr as KernelVa, p.dmaHandle as DmaAddr, p.len);
    if (r !== 0) return r;
    coherentTables.set(at, sgt);
    return 0;
  },
  detach(_db, at) {
    sgFreeTable(coherentTables.get(at)!);
  },
  mapDmaBuf(at, dir) {
    const sgt = coherentTables.get(at)!;
    const r = dmaMapSgtable(at.dev, sgt, dir as 0 | 1 | 2, DMA_ATTR_SKIP_CPU_SYNC);
    return r === 0 ? sgt : r;
  },
  unmapDmaBuf(at, sgt, dir) {
    dmaUnmapSgtable(at.dev, sgt, dir as 0 | 1 | 2, DMA_ATTR_SKIP_CPU_SYNC);
  },
  vmap: (db) => ({ vaddr: coherentPriv(db).cpuAddr as KernelVa, isIomem: false }),
  vunmap: () => {},
  mmap(db, vma) {
    const p = coherentPriv(db);
    return dmaMmapCoherent(
      db.machine.devices[p.dev]!,
      vma,
      p.cpuAddr as KernelVa,
      p.dmaHandle as DmaAddr,
      p.len,
    );
  },
  release(db) {
    const p = coherentPriv(db);
    dmaFreeCoherent(db.machine.devices[p.dev]!, p.len, p.cpuAddr as KernelVa, p.dmaHandle as DmaAddr);
  },
};

function coherentBuffer(m: Machine, len: number): DmaBuf {
  const exp = addDevice(m, { name: 'exp0' });
  const a = dmaAllocCoherent(exp, len, GFP_KERNEL)!;
  const priv: CoherentPriv = { dev: exp.id, cpuAddr: a.cpuAddr, dmaHandle: a.dmaHandle, len };
  return dmaBufExport(m, { expName: 'coherent', size: len, ops: coherentOps, priv }) as DmaBuf;
}

// ---- (ii) exclusive access ----

/** Who has the buffer: an attachment's device (its id), the CPU inside a bracket, or nobody. */
interface ExclusivePriv extends HeapBufferPriv {
  holder: number;
  cpu: boolean;
}

function excl(db: DmaBuf): ExclusivePriv {
  return db.priv as ExclusivePriv;
}

/** User PTEs come back on fault, except while a device has the buffer. */
const exclusiveVmOps: VmOperationsStruct = {
  fault(vmf) {
    const { buf } = vmf.vma.vmPrivateData as { buf: number };
    const db = dmaBufHandle(vmf.vma.machine, buf);
    const p = excl(db);
    // The kernel would sleep here until the device's unmap; a run has one thread of control, so the
    // sleep could never end: the access is refused with SIGBUS instead.
    if (p.holder >= 0) return VM_FAULT_SIGBUS;
    if (vmf.pgoff >= p.len / PAGE) return VM_FAULT_SIGBUS;
    return vmfInsertPfn(vmf.vma, vmf.address, p.chunks[0]! + vmf.pgoff);
  },
};

/**
 * Arnd's second remedy: a map waits for the current holder's unmap (here
 * -EAGAIN: with one thread of control the wait would never end, the caller
 * retries later), CPU access is a bracket that waits the same way, and a
 * device's map first shoots down every user PTE; they fault back after
 * the unmap, onto memory the unmap made coherent.
 */
const exclusiveOps: DmaBufOps = {
  ...heapCommonOps,
  mapDmaBuf(at, dir) {
    const db = at.dmabuf;
    const p = excl(db);
    if (p.cpu || (p.holder >= 0 && p.holder !== at.id)) return -EAGAIN;
    unmapMappingRange(db.file.fMapping, 0, 0, 1);
    const r = heapCommonOps.mapDmaBuf(at, dir);
    if (typeof r !== 'number') db.priv = { ...excl(db), holder: at.id };
    return r;
  },
  unmapDmaBuf(at, sgt, dir) {
    heapCommonOps.unmapDmaBuf(at, sgt, dir);
    at.dmabuf.priv = { ...excl(at.dmabuf), holder: -1 };
  },
  beginCpuAccess(db) {
    if (excl(db).holder >= 0) return -EAGAIN;
    db.priv = { ...excl(db), cpu: true };
    return 0;
  },
  endCpuAccess(db) {
    db.priv = { ...excl(db), cpu: false };
    return 0;
  },
  vmap: (db) => ({ vaddr: pageAddress(excl(db).chunks[0]! as Page), isIomem: false }),
  vunmap: () => {},
  mmap(db, vma) {
    vmFlagsSet(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND);
    vma.vmOps = exclusiveVmOps;
    vma.vmPrivateData = { buf: db.id };
    return 0;
  },
  release(db) {
    __freePages(db.machine, excl(db).chunks[0]! as Page, 0);
  },
};

function exclusiveBuffer(m: Machine): DmaBuf {
  const page = allocPages(m, GFP_KERNEL | __GFP_ZERO, 0)!;
  // The kernel zeroed it through its own alias; user space will map it elsewhere (VIPT caches).
  flushDcachePage(m, page);
  const priv: ExclusivePriv = { heap: 'exclusive', len: PAGE, chunks: [page, 1], holder: -1, cpu: false };
  const db = dmaBufExport(m, { expName: 'exclusive', size: PAGE, ops: exclusiveOps, priv }) as DmaBuf;
  return db;
}

function firstDma(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

describe('seed 003, remedy (i): coherent buffers only', () => {
  it('the table as written: no CPU-side findings; two devices of different coherency domains still conflict', () => {
    const rows = PROFILE_NAMES.map((profile) => {
      const m = createMachine({ profile });
      return { profile, ...runTable(m, coherentBuffer(m, PAGE), SEED_003_TABLE) };
    });
    // Where the CPU's view is uncached or the importers snoop, steps 4 and 11 are no longer bugs.
    // Step 7 still is where two devices of different coherency domains own the buffer at once.
    // With forced bouncing the importer works on a bounce slot that SKIP_CPU_SYNC never copies
    // back: the remedy does not hold (step 11 reads stale bytes). On PA-RISC the coherent buffer is
    // cached, and the importers' IOMMU entries name the kernel alias the vmap goes through: their
    // DMA is coherent with exactly the lines the CPU uses, so steps 4 and 11 are fine there too.
    const both = ['OWNERSHIP', 'OWNERSHIP'];
    expect(rows).toEqual([
      { profile: 'x86_64', steps: {}, refused: {} },
      { profile: 'arm64-coherent', steps: {}, refused: {} },
      { profile: 'arm64-noncoherent', steps: { 7: ['OWNERSHIP'] }, refused: {} },
      { profile: 'parisc', steps: { 7: ['OWNERSHIP'] }, refused: {} },
      { profile: 'parisc-pcxl', steps: { 7: ['OWNERSHIP'] }, refused: {} },
      {
        profile: 'swiotlb-force',
        steps: { 4: both, 11: ['OWNERSHIP', 'STALE_DATA', 'OWNERSHIP'] },
        refused: {},
      },
    ]);
  });
});

describe('seed 003, remedy (ii): exclusive access', () => {
  it('the table (CPU access bracketed): the racing calls are refused, nothing is reported, on every profile', () => {
    const rows = PROFILE_NAMES.map((profile) => {
      const m = createMachine({ profile });
      return { profile, ...runTable(m, exclusiveBuffer(m), bracketed(SEED_003_TABLE)) };
    });
    // Step 4: B's bracket waits for A's unmap; step 6: B's map does. B never gets the buffer in
    // this table (its DMA at 8 and 10 and its unmap at 12 have nothing to work on).
    expect(rows).toEqual(
      PROFILE_NAMES.map((profile) => ({ profile, steps: {}, refused: { 4: -EAGAIN, 6: -EAGAIN } })),
    );
  });

  it('user PTEs are shot down while a device has the buffer and fault back after, with its bytes', () => {
    const rows = PROFILE_NAMES.map((profile) => {
      const m = createMachine({ profile });
      const db = exclusiveBuffer(m);
      const app = spawnProcess(m, 'app');
      const fd = dmaBufFd(app, db, 0);
      const va = sysMmap(app, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      userWrite(app, va, new Uint8Array([1, 2, 3, 4]));
      const before = pteLookup(app, va) !== null;
      const cam = addDevice(m, { name: 'cam0' });
      const at = dmaBufAttach(db, cam) as DmaBufAttachment;
      const sgt = dmaBufMapAttachmentUnlocked(at, DMA_BIDIRECTIONAL) as SgTable;
      const during = pteLookup(app, va) !== null;
      const seen = [...deviceDmaRead(cam, firstDma(sgt), 4)];
      deviceDmaWrite(cam, firstDma(sgt) + 8, new Uint8Array([9, 9]));
      // Another process touching the buffer now would sleep until the unmap: refused with SIGBUS here.
      const peeker = spawnProcess(m, 'peeker');
      const pva = sysMmap(peeker, 0, PAGE, PROT_READ, MAP_SHARED, dmaBufFd(peeker, db, 0), 0);
      const peek = userRead(peeker, pva, 1);
      dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_BIDIRECTIONAL);
      const after = [...userRead(app, va, 10)!];
      return {
        profile,
        before,
        during,
        seen,
        peek,
        peeker: peeker.killedBy,
        after,
        codes: machineFindings(m).map((f) => f.code),
      };
    });
    expect(rows).toEqual(
      PROFILE_NAMES.map((profile) => ({
        profile,
        before: true,
        during: false,
        seen: [1, 2, 3, 4],
        peek: null,
        peeker: 'SIGBUS',
        after: [1, 2, 3, 4, 0, 0, 0, 0, 9, 9],
        codes: ['SIGBUS'],
      })),
    );
  });
});
