import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_BIDIRECTIONAL, dmaMapSgtable, dmaUnmapSgtable } from '../dma/index.js';
import {
  createSgTable,
  forEachSgtableDmaSg,
  type SgTable,
  sgAllocTableFromPages,
  sgFreeTable,
} from '../lib/index.js';
import {
  __freePages,
  __GFP_ZERO,
  addDevice,
  allocPages,
  deviceDmaRead,
  deviceDmaWrite,
  GFP_KERNEL,
  type Machine,
  machineFindings,
  type Page,
  PROFILE_NAMES,
  pageAddress,
} from '../machine/index.js';
import { kernelRead, kernelWrite } from '../mm/index.js';
import {
  type DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufMapAttachment,
  dmaBufMoveNotify,
  dmaBufPin,
  dmaBufSetBacking,
  dmaBufUnmapAttachment,
  dmaBufUnpin,
  dmaResvLock,
  dmaResvUnlock,
} from './index.js';

const PAGE = 4096;

/** A dynamic exporter of one page that it may move while nobody has it pinned (priv: the page and pins). */
interface Movable {
  page: number;
  pins: number;
}

const movableOps: DmaBufOps = {
  pin(at) {
    const p = at.dmabuf.priv as Movable;
    at.dmabuf.priv = { ...p, pins: p.pins + 1 };
    return 0;
  },
  unpin(at) {
    const p = at.dmabuf.priv as Movable;
    at.dmabuf.priv = { ...p, pins: p.pins - 1 };
  },
  mapDmaBuf(at, dir) {
    const sgt = createSgTable();
    sgAllocTableFromPages(sgt, [(at.dmabuf.priv as Movable).page as Page], 1, 0, PAGE, GFP_KERNEL);
    const r = dmaMapSgtable(at.dev, sgt, dir as 0 | 1 | 2, 0);
    return r === 0 ? sgt : r;
  },
  unmapDmaBuf(at, sgt, dir) {
    dmaUnmapSgtable(at.dev, sgt, dir as 0 | 1 | 2, 0);
    sgFreeTable(sgt);
  },
  release(db) {
    __freePages(db.machine, (db.priv as Movable).page as Page, 0);
  },
};

function exportMovable(m: Machine): DmaBuf {
  const page = allocPages(m, GFP_KERNEL | __GFP_ZERO, 0)!;
  kernelWrite(m, pageAddress(page), new Uint8Array(16).fill(0x11));
  return dmaBufExport(m, {
    expName: 'movable',
    size: PAGE,
    ops: movableOps,
    priv: { page, pins: 0 } satisfies Movable,
    backing: [page * PAGE, PAGE],
  }) as DmaBuf;
}

/**
 * The exporter moves the buffer (e.g. evicted under memory pressure): with
 * the reservation lock held it tells the importers, copies the bytes to a
 * new page, declares the new backing and frees the old page. Refused
 * (false) while an importer has it pinned.
 */
function move(db: DmaBuf): boolean {
  const m = db.machine;
  expect(dmaResvLock(db.resv, null)).toBe(0);
  try {
    const p = db.priv as Movable;
    if (p.pins > 0) return false;
    dmaBufMoveNotify(db);
    const page = allocPages(m, GFP_KERNEL, 0)!;
    kernelWrite(m, pageAddress(page), kernelRead(m, pageAddress(p.page as Page), PAGE)!);
    db.priv = { ...p, page };
    dmaBufSetBacking(db, [page * PAGE, PAGE]);
    __freePages(m, p.page as Page, 0);
    return true;
  } finally {
    dmaResvUnlock(db.resv);
  }
}

/** A GPU-like dynamic importer: maps under the lock, and (when `honest`) drops its mapping at move_notify. */
interface Importer {
  at: DmaBufAttachment;
  sgt: SgTable | null;
  notified: number;
}

const importers = new Map<number, Importer & { honest: boolean }>();

function attachImporter(db: DmaBuf, honest: boolean): Importer {
  const dev = addDevice(db.machine, { name: 'gpu1', dmaMaskBits: 64 });
  const at = dmaBufDynamicAttach(db, dev, {
    moveNotify(a) {
      const imp = importers.get(a.id)!;
      imp.notified++;
      // Called with the reservation lock held: the importer may unmap right here.
      if (imp.honest && imp.sgt !== null) {
        dmaBufUnmapAttachment(a, imp.sgt, DMA_BIDIRECTIONAL);
        imp.sgt = null;
      }
    },
  }) as DmaBufAttachment;
  const imp = { at, sgt: null, notified: 0, honest };
  importers.set(at.id, imp);
  return imp;
}

/** Before each job: map (again) under the lock when there is no mapping. */
function ensureMapped(imp: Importer): number {
  if (imp.sgt === null) {
    const db = imp.at.dmabuf;
    expect(dmaResvLock(db.resv, null)).toBe(0);
    imp.sgt = dmaBufMapAttachment(imp.at, DMA_BIDIRECTIONAL) as SgTable;
    dmaResvUnlock(db.resv);
  }
  for (const sg of forEachSgtableDmaSg(imp.sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

function run(m: Machine, honest: boolean) {
  const db = exportMovable(m);
  const imp = attachImporter(db, honest);
  let bus = ensureMapped(imp);
  const first = [...deviceDmaRead(imp.at.dev, bus, 2)];
  deviceDmaWrite(imp.at.dev, bus + 16, new Uint8Array(4).fill(0xd1));
  const moved = move(db);
  bus = ensureMapped(imp);
  const afterMove = [...deviceDmaRead(imp.at.dev, bus + 16, 2)];
  deviceDmaWrite(imp.at.dev, bus + 32, new Uint8Array(4).fill(0xd2));
  // The importer finishes: it gives its mapping back, and the exporter looks at its (new) page.
  expect(dmaResvLock(db.resv, null)).toBe(0);
  dmaBufUnmapAttachment(imp.at, imp.sgt!, DMA_BIDIRECTIONAL);
  dmaResvUnlock(db.resv);
  const final = [...kernelRead(m, pageAddress((db.priv as Movable).page as Page) + 32, 2)!];
  return {
    moved,
    notified: imp.notified,
    first,
    afterMove,
    final,
    codes: machineFindings(m).map((f) => f.code),
  };
}

describe('move_notify: dynamic importers re-map after a move', () => {
  it('an importer that drops its mapping at move_notify and maps again sees the moved bytes, on every profile', () => {
    for (const profile of PROFILE_NAMES) {
      const r = run(createMachine({ profile }), true);
      expect(r, profile).toEqual({
        moved: true,
        notified: 1,
        first: [0x11, 0x11],
        afterMove: [0xd1, 0xd1],
        final: [0xd2, 0xd2],
        codes: [],
      });
    }
  });

  it('an importer that keeps using its old mapping is caught, and its write is lost to the buffer', () => {
    const rows = PROFILE_NAMES.map((profile) => {
      const m = createMachine({ profile });
      const r = run(m, false);
      const moved = machineFindings(m).filter((f) => f.code === 'DMABUF_MOVED_MAPPING');
      return {
        profile,
        ...r,
        findings: moved.map((f) => [f.verdict, f.message.match(/device (read|write)/)![1]]),
      };
    });
    // The exporter's CPU copy reads the old page while the stale mapping still gives it to the device
    // (OWNERSHIP; stale on arm64-noncoherent and with bouncing, where the device's write at offset 16
    // is not yet visible to the CPU). Then the device reads and writes through that mapping: the read
    // sees the old place (latent), the write is lost to the buffer (broken: `final` stays 0).
    const expected = (codes: string[]) => ({
      moved: true,
      findings: [
        ['latent', 'read'],
        ['broken', 'write'],
      ],
      notified: 1,
      first: [0x11, 0x11],
      afterMove: [0xd1, 0xd1],
      final: [0, 0],
      codes: [...codes, 'DMABUF_MOVED_MAPPING', 'DMABUF_MOVED_MAPPING'],
    });
    expect(rows).toEqual([
      { profile: 'x86_64', ...expected(['OWNERSHIP']) },
      { profile: 'arm64-coherent', ...expected(['OWNERSHIP']) },
      { profile: 'arm64-noncoherent', ...expected(['OWNERSHIP', 'STALE_DATA']) },
      { profile: 'parisc', ...expected(['OWNERSHIP']) },
      { profile: 'parisc-pcxl', ...expected(['OWNERSHIP']) },
      { profile: 'swiotlb-force', ...expected(['OWNERSHIP', 'STALE_DATA']) },
    ]);
  });

  it('a pinned buffer is not moved; pin from a dynamic importer needs the lock', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const db = exportMovable(m);
    const imp = attachImporter(db, true);
    dmaBufPin(imp.at);
    expect(machineFindings(m).map((f) => f.code)).toEqual(['WARN']);
    expect(move(db)).toBe(false);
    expect(dmaResvLock(db.resv, null)).toBe(0);
    dmaBufUnpin(imp.at);
    dmaResvUnlock(db.resv);
    expect(move(db)).toBe(true);
    expect(imp.notified).toBe(1);
  });
});
