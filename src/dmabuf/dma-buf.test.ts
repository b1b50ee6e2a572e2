import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE } from '../dma/index.js';
import { createSgTable, forEachSgtableDmaSg, forEachSgtableSg, type SgTable } from '../lib/index.js';
import {
  addDevice,
  deviceDmaRead,
  deviceDmaWrite,
  EBADF,
  EINVAL,
  EIO,
  ENOMEM,
  type Machine,
  machineFindings,
  machineHash,
  PROFILE_NAMES,
  restoreMachine,
  runVerdict,
  snapshotMachine,
} from '../machine/index.js';
import { kernelRead, kernelWrite, registerChrdev, spawnProcess, sysClose, sysOpen } from '../mm/index.js';
import {
  DMA_RESV_USAGE_KERNEL,
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufEndCpuAccess,
  dmaBufExport,
  dmaBufFd,
  dmaBufGet,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufPut,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  dmaBufVunmapUnlocked,
  dmaHeapBufferAlloc,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  drmSchedEntityPushJob,
  drmSchedJobArm,
  drmSchedJobInit,
  getDmaBuf,
  type IosysMap,
  O_CLOEXEC,
} from './index.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function dmaSegments(sgt: SgTable): number[] {
  const out: number[] = [];
  for (const sg of forEachSgtableDmaSg(sgt)) out.push(sg.dmaAddress, sg.dmaLength);
  return out;
}

function cpuLengths(sgt: SgTable): number[] {
  const out: number[] = [];
  for (const sg of forEachSgtableSg(sgt)) out.push(sg.length);
  return out;
}

/** A minimal exporter whose calls are logged (the log is host-side test data). */
function loggingOps(log: string[], dynamic: boolean): DmaBufOps {
  const ops: DmaBufOps = {
    mapDmaBuf(at, dir) {
      log.push(`map ${at.dev.name} ${dir}`);
      return createSgTable();
    },
    unmapDmaBuf(at, _sgt, dir) {
      log.push(`unmap ${at.dev.name} ${dir}`);
    },
    release(db) {
      log.push(`release ${db.expName}`);
    },
  };
  if (dynamic) {
    ops.pin = (at) => {
      log.push(`pin ${at.dev.name}`);
      return 0;
    };
    ops.unpin = (at) => {
      log.push(`unpin ${at.dev.name}`);
    };
  }
  return ops;
}

describe('dma_buf_export: the callbacks an exporter must have', () => {
  it('refuses a missing release, a missing priv, and pin without unpin, each with a WARN', () => {
    const m = createMachine();
    const log: string[] = [];
    const ops = loggingOps(log, false);
    const noRelease = { mapDmaBuf: ops.mapDmaBuf, unmapDmaBuf: ops.unmapDmaBuf } as unknown as DmaBufOps;
    expect(dmaBufExport(m, { expName: 'x', size: 4096, ops: noRelease, priv: {} })).toBe(-EINVAL);
    expect(dmaBufExport(m, { expName: 'x', size: 4096, ops, priv: undefined })).toBe(-EINVAL);
    const halfDynamic: DmaBufOps = { ...ops, pin: () => 0 };
    expect(dmaBufExport(m, { expName: 'x', size: 4096, ops: halfDynamic, priv: {} })).toBe(-EINVAL);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN', 'WARN', 'WARN']);
  });

  it('rejects callbacks dmalab does not model and non-plain private data', () => {
    const m = createMachine();
    const ops = { ...loggingOps([], false), mmapp: () => 0 } as unknown as DmaBufOps;
    expect(() => dmaBufExport(m, { expName: 'x', size: 4096, ops, priv: {} })).toThrow(/ops.mmapp/);
    const good = loggingOps([], false);
    expect(() => dmaBufExport(m, { expName: 'x', size: 4096, ops: good, priv: { f: () => 0 } })).toThrow(
      /plain data/,
    );
  });
});

describe('references, fds and release', () => {
  it('the fd holds the export reference; dma_buf_get adds one; release runs once, at the last put', () => {
    const m = createMachine();
    const log: string[] = [];
    const db = dmaBufExport(m, { expName: 'exp', size: 8192, ops: loggingOps(log, false), priv: { n: 1 } });
    if (typeof db === 'number') throw new Error('export failed');
    const p = spawnProcess(m, 'app');
    const fd = dmaBufFd(p, db, 0);
    expect(fd).toBe(3);
    const got = dmaBufGet(p, fd);
    expect(got).toBe(db);
    getDmaBuf(db);
    expect(sysClose(p, fd)).toBe(0);
    dmaBufPut(db);
    expect(log).toEqual([]);
    dmaBufPut(db);
    expect(log).toEqual(['release exp']);
    expect(machineFindings(m)).toEqual([]);
    // Another put is a refcount underflow the core notices.
    dmaBufPut(db);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN']);
  });

  it('dma_buf_get: -EBADF for no file, -EINVAL for a file that is not a dma-buf; dma_buf_fd: -EINVAL once released', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    expect(dmaBufGet(p, 7)).toBe(-EBADF);
    registerChrdev(m, '/dev/other', {});
    const fd = sysOpen(p, '/dev/other');
    expect(dmaBufGet(p, fd)).toBe(-EINVAL);
    const db = dmaBufExport(m, { expName: 'e', size: 4096, ops: loggingOps([], false), priv: 1 }) as DmaBuf;
    expect(dmaBufFd(p, db, O_CLOEXEC)).toBe(4);
    expect(sysClose(p, 4)).toBe(0);
    // Released with its last reference: no fd for it any more.
    expect(dmaBufFd(p, db, 0)).toBe(-EINVAL);
  });
});

describe('attachments: static and dynamic importers of static and dynamic exporters', () => {
  function setup(dynamicExporter: boolean) {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const dev = addDevice(m, { name: 'imp0' });
    const log: string[] = [];
    const db = dmaBufExport(m, { expName: 'e', size: 4096, ops: loggingOps(log, dynamicExporter), priv: 1 });
    if (typeof db === 'number') throw new Error('export failed');
    return { m, dev, log, db };
  }

  it('a static importer maps through the exporter at every map (static exporter)', () => {
    const { dev, log, db } = setup(false);
    const at = dmaBufAttach(db, dev) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
    dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
    dmaBufDetach(db, at);
    expect(log).toEqual([`map imp0 ${DMA_TO_DEVICE}`, `unmap imp0 ${DMA_TO_DEVICE}`]);
  });

  /** The exporter also logs attach and detach, to show when the core calls them. */
  function withAttachLog(ops: DmaBufOps, log: string[]): DmaBufOps {
    return {
      ...ops,
      attach(_db, at) {
        log.push(`attach ${at.dev.name}`);
        return 0;
      },
      detach(_db, at) {
        log.push(`detach ${at.dev.name}`);
      },
    };
  }

  it('a static importer of a dynamic exporter: attach maps nothing; every map pins, every unmap unpins', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const dev = addDevice(m, { name: 'imp0' });
    const log: string[] = [];
    const db = dmaBufExport(m, {
      expName: 'e',
      size: 4096,
      ops: withAttachLog(loggingOps(log, true), log),
      priv: 1,
    }) as DmaBuf;
    const at = dmaBufAttach(db, dev) as DmaBufAttachment;
    expect(log).toEqual(['attach imp0']);
    expect(db.attachments.map((a) => a.id)).toEqual([at.id]);
    const s1 = dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE) as SgTable;
    // A second map in another direction is the exporter's to serve: no -EBUSY any more.
    const s2 = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
    expect(typeof s2).toBe('object');
    expect(s2).not.toBe(s1);
    const pins = () =>
      log.filter((l) => l === 'pin imp0').length - log.filter((l) => l === 'unpin imp0').length;
    expect(pins()).toBe(2);
    dmaBufUnmapAttachmentUnlocked(at, s1, DMA_FROM_DEVICE);
    expect(pins()).toBe(1);
    dmaBufUnmapAttachmentUnlocked(at, s2, DMA_TO_DEVICE);
    expect(pins()).toBe(0);
    dmaBufDetach(db, at);
    expect(log).toEqual([
      'attach imp0',
      'pin imp0',
      `map imp0 ${DMA_FROM_DEVICE}`,
      'pin imp0',
      `map imp0 ${DMA_TO_DEVICE}`,
      `unmap imp0 ${DMA_FROM_DEVICE}`,
      'unpin imp0',
      `unmap imp0 ${DMA_TO_DEVICE}`,
      'unpin imp0',
      'detach imp0',
    ]);
    expect(db.attachments).toEqual([]);
    expect(machineFindings(m)).toEqual([]);
  });

  it('a failed pin fails the map without mapping; a failed map is unpinned', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const dev = addDevice(m, { name: 'imp0' });
    const log: string[] = [];
    const base = loggingOps(log, true);
    let pinErr = -EIO;
    let mapNull = false;
    const ops: DmaBufOps = {
      ...base,
      pin: (a) => (pinErr !== 0 ? pinErr : base.pin!(a)),
      mapDmaBuf(a, d) {
        if (!mapNull) return base.mapDmaBuf(a, d);
        log.push('map refused');
        return null;
      },
    };
    const db = dmaBufExport(m, { expName: 'e', size: 4096, ops, priv: 1 }) as DmaBuf;
    const at = dmaBufAttach(db, dev) as DmaBufAttachment;
    expect(dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE)).toBe(-EIO);
    expect(log).toEqual([]);
    pinErr = 0;
    mapNull = true;
    expect(dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE)).toBe(-ENOMEM);
    expect(log).toEqual(['pin imp0', 'map refused', 'unpin imp0']);
    dmaBufDetach(db, at);
    expect(machineFindings(m)).toEqual([]);
  });

  it('a dynamic importer of a static exporter maps through the exporter at every map, pinning nothing', () => {
    const { m, dev, log, db } = setup(false);
    const at = dmaBufDynamicAttach(db, dev, { moveNotify: () => {} }) as DmaBufAttachment;
    expect(log).toEqual([]);
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
    dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
    dmaBufDetach(db, at);
    expect(log).toEqual([`map imp0 ${DMA_TO_DEVICE}`, `unmap imp0 ${DMA_TO_DEVICE}`]);
    expect(machineFindings(m)).toEqual([]);
  });

  it('a dynamic importer of a dynamic exporter: map does not pin; the map without the lock is a WARN', () => {
    const { m, dev, log, db } = setup(true);
    const at = dmaBufDynamicAttach(db, dev, { moveNotify: () => {} }) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_BIDIRECTIONAL) as SgTable;
    dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_BIDIRECTIONAL);
    expect(log).toEqual([`map imp0 ${DMA_BIDIRECTIONAL}`, `unmap imp0 ${DMA_BIDIRECTIONAL}`]);
    expect(machineFindings(m)).toEqual([]);
    const s2 = dmaBufMapAttachment(at, DMA_TO_DEVICE) as SgTable;
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN']);
    dmaBufUnmapAttachmentUnlocked(at, s2, DMA_TO_DEVICE);
  });

  it('importer ops without moveNotify are refused with a WARN; an exporter attach error fails the attach', () => {
    const { m, dev, db } = setup(true);
    expect(dmaBufDynamicAttach(db, dev, {} as never)).toBe(-EINVAL);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN']);
    const ops: DmaBufOps = { ...loggingOps([], false), attach: () => -19 };
    const db2 = dmaBufExport(m, { expName: 'picky', size: 4096, ops, priv: 1 }) as DmaBuf;
    expect(dmaBufAttach(db2, dev)).toBe(-19);
    expect(db2.attachments).toEqual([]);
  });
});

function heapRoundTrip(m: Machine, heap: string, len: number): { bytes: number[]; nents: number } {
  const cam = addDevice(m, { name: 'cam0', dmaMaskBits: 64, maxSegmentSize: 0xffff_ffff });
  const db = dmaHeapBufferAlloc(m, heap, len, 0, 0);
  if (typeof db === 'number') throw new Error(`alloc failed ${db}`);
  const at = dmaBufAttach(db, cam) as DmaBufAttachment;
  const sgt = dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE) as SgTable;
  const seg = dmaSegments(sgt);
  // The device writes every page of the buffer with its page index (mod 251), segment by segment.
  let page = 0;
  for (let i = 0; i < seg.length; i += 2) {
    const bytes = new Uint8Array(seg[i + 1]!);
    for (let k = 0; k < bytes.length; k++) bytes[k] = (page + Math.floor(k / 4096)) % 251;
    deviceDmaWrite(cam, seg[i]!, bytes);
    page += bytes.length / 4096;
  }
  dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_FROM_DEVICE);
  const map = dmaBufVmapUnlocked(db) as IosysMap;
  const bytes: number[] = [];
  let off = 0;
  for (const l of cpuLengths(sgt)) {
    bytes.push(kernelRead(m, map.vaddr + off, 1)![0]!);
    off += l;
  }
  dmaBufVunmapUnlocked(db, map);
  dmaBufDetach(db, at);
  dmaBufPut(db);
  return { bytes, nents: sgt.origNents };
}

describe('heaps', () => {
  it('system heap: 1 MiB, 64 KiB and 4 KiB blocks, one entry each; the device’s bytes reach the CPU on every profile', () => {
    for (const profile of PROFILE_NAMES.filter((p) => p !== 'swiotlb-force')) {
      const m = createMachine({ profile });
      const r = heapRoundTrip(m, 'system', MiB + 64 * KiB + 4 * KiB + 100);
      // 1 MiB + 64 KiB + 2 × 4 KiB (the 100 bytes round up to a page).
      expect(r.nents, profile).toBe(4);
      expect(r.bytes, profile).toEqual([0, 256 % 251, 272 % 251, 273 % 251]);
      expect(machineFindings(m), profile).toEqual([]);
      expect(runVerdict(m)).toBe('clean');
    }
  });

  it('swiotlb-force: a 1 MiB block cannot be bounced (the map fails with -EIO); 64 KiB blocks can', () => {
    const m = createMachine({ profile: 'swiotlb-force' });
    const cam = addDevice(m, { name: 'cam0', dmaMaskBits: 64, maxSegmentSize: 0xffff_ffff });
    const db = dmaHeapBufferAlloc(m, 'system', MiB, 0, 0) as DmaBuf;
    const at = dmaBufAttach(db, cam) as DmaBufAttachment;
    expect(dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE)).toBe(-EIO);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['SWIOTLB_FULL']);
    const m2 = createMachine({ profile: 'swiotlb-force' });
    expect(heapRoundTrip(m2, 'system', 68 * KiB)).toEqual({ bytes: [0, 16], nents: 2 });
    expect(machineFindings(m2)).toEqual([]);
  });

  it('CMA heap (arm64 has a CMA area): one contiguous entry, zeroed', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const r = heapRoundTrip(m, 'reserved', 256 * KiB);
    expect(r).toEqual({ bytes: [0], nents: 1 });
    expect(machineFindings(m)).toEqual([]);
    const db = dmaHeapBufferAlloc(m, 'reserved', 8192, 0, 0) as DmaBuf;
    const map = dmaBufVmapUnlocked(db) as IosysMap;
    expect([...kernelRead(m, map.vaddr, 8)!]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    kernelWrite(m, map.vaddr, new Uint8Array([1]));
    dmaBufVunmapUnlocked(db, map);
    dmaBufPut(db);
  });

  it('rejects a zero length and invalid flags; an unknown heap is a DmalabError', () => {
    const m = createMachine();
    expect(dmaHeapBufferAlloc(m, 'system', 0, 0, 0)).toBe(-EINVAL);
    expect(dmaHeapBufferAlloc(m, 'system', 4096, 0o100, 0)).toBe(-EINVAL);
    expect(dmaHeapBufferAlloc(m, 'system', 4096, 0, 1)).toBe(-EINVAL);
    expect(() => dmaHeapBufferAlloc(m, 'reserved', 4096, 0, 0)).toThrow(/no dma-buf heap 'reserved'/);
  });

  it('kernel CPU writes through vmap reach the device only inside a begin/end bracket (arm64-noncoherent)', () => {
    for (const bracket of [true, false]) {
      const m = createMachine({ profile: 'arm64-noncoherent' });
      const disp = addDevice(m, { name: 'disp0', dmaMaskBits: 64, maxSegmentSize: 0xffff_ffff });
      const db = dmaHeapBufferAlloc(m, 'system', 4096, 0, 0) as DmaBuf;
      const at = dmaBufAttach(db, disp) as DmaBufAttachment;
      const sgt = dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE) as SgTable;
      const map = dmaBufVmapUnlocked(db) as IosysMap;
      if (bracket) expect(dmaBufBeginCpuAccess(db, DMA_TO_DEVICE)).toBe(0);
      expect(kernelWrite(m, map.vaddr, new Uint8Array([9, 8, 7]))).toBe(true);
      if (bracket) expect(dmaBufEndCpuAccess(db, DMA_TO_DEVICE)).toBe(0);
      const got = [...deviceDmaRead(disp, dmaSegments(sgt)[0]!, 3)];
      dmaBufVunmapUnlocked(db, map);
      dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_TO_DEVICE);
      dmaBufDetach(db, at);
      dmaBufPut(db);
      if (bracket) {
        expect(got).toEqual([9, 8, 7]);
        expect(machineFindings(m)).toEqual([]);
      } else {
        // The vmap alias is cached: the device reads the zeroes still in memory.
        expect(got).toEqual([0, 0, 0]);
        expect(machineFindings(m).map((f) => f.code)).toEqual(['OWNERSHIP', 'STALE_DATA']);
      }
    }
  });
});

describe('a static importer waits for the kernel’s fences at map', () => {
  it('a move in flight (a KERNEL fence) delays the map until it signals; a dynamic importer does not wait', () => {
    for (const dynamic of [false, true]) {
      const m = createMachine();
      const log: string[] = [];
      const db = dmaBufExport(m, {
        expName: 'e',
        size: 4096,
        ops: loggingOps(log, false),
        priv: 1,
      }) as DmaBuf;
      const copier = addDevice(m, { name: 'copy0' });
      const job = drmSchedJobInit(copier, { kind: 'idle' }, 5000);
      drmSchedJobArm(job);
      expect(dmaResvLock(db.resv, null)).toBe(0);
      dmaResvReserveFences(db.resv, 1);
      dmaResvAddFence(db.resv, job.finished!, DMA_RESV_USAGE_KERNEL);
      dmaResvUnlock(db.resv);
      drmSchedEntityPushJob(job);
      const dev = addDevice(m, { name: 'imp0' });
      const at = (
        dynamic ? dmaBufDynamicAttach(db, dev, { moveNotify: () => {} }) : dmaBufAttach(db, dev)
      ) as DmaBufAttachment;
      if (!dynamic) expect(typeof dmaBufMapAttachmentUnlocked(at, DMA_TO_DEVICE)).toBe('object');
      // The dynamic importer of this static exporter got its mapping at attach, without waiting.
      expect(m.clock.time >= 5000, `dynamic ${dynamic}`).toBe(!dynamic);
      expect(machineFindings(m)).toEqual([]);
    }
  });
});

describe('snapshots', () => {
  it('a restore in place brings the buffer and its attachment back under the same handles; the hash agrees', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const dev = addDevice(m, { name: 'imp0', dmaMaskBits: 64, maxSegmentSize: 0xffff_ffff });
    const db = dmaHeapBufferAlloc(m, 'system', 8192, 0, 0) as DmaBuf;
    const at = dmaBufAttach(db, dev) as DmaBufAttachment;
    const snap = snapshotMachine(m);
    const hash = machineHash(m);
    dmaBufDetach(db, at);
    dmaBufPut(db);
    expect(() => db.size).toThrow(/no longer exists/);
    expect(machineHash(m)).not.toBe(hash);
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(hash);
    expect(db.size).toBe(8192);
    expect(db.attachments).toEqual([at]);
    // The attachment works again: its table is rebuilt from the buffer's pages.
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE) as SgTable;
    expect(dmaSegments(sgt).length).toBe(4); // two 4 KiB blocks: two segments
    dmaBufUnmapAttachmentUnlocked(at, sgt, DMA_FROM_DEVICE);
    expect(machineFindings(m)).toEqual([]);
  });
});
