/**
 * A camera → compositor → display pipeline over one system-heap dma-buf,
 * ordered the kernel's way: the camera's job puts a WRITE fence in the
 * buffer's reservation object; the compositor brackets its overlay with
 * DMA_BUF_IOCTL_SYNC (which waits for that fence) and signals an explicit
 * "overlay done" fence; the display's job depends on both. Without the
 * display's fence waits the bytes still come out right where devices snoop
 * the CPU's caches, but the accesses are unordered on every profile.
 */

import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_FROM_DEVICE, DMA_TO_DEVICE } from '../dma/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../lib/index.js';
import {
  addDevice,
  advanceTime,
  deviceDmaWrite,
  deviceJob,
  formatHex,
  type Machine,
  machineFindings,
  PROFILE_NAMES,
  submitDeviceJob,
} from '../machine/index.js';
import { fdInstall, kernelWrite, spawnProcess, userRead } from '../mm/index.js';
import {
  DMA_RESV_USAGE_BOOKKEEP,
  DMA_RESV_USAGE_READ,
  DMA_RESV_USAGE_WRITE,
  type DmaBuf,
  type DmaBufAttachment,
  type DmaFence,
  dmaBufAttach,
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufVmapUnlocked,
  dmaBufVunmapUnlocked,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceInit,
  dmaFencePut,
  dmaFenceSignal,
  dmaFenceUnwrapMerge,
  dmaFenceWait,
  dmaHeapBufferAlloc,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  drmSchedEntityPushJob,
  drmSchedJobAddDependency,
  drmSchedJobAddResvDependencies,
  drmSchedJobArm,
  drmSchedJobInit,
  type IosysMap,
  syncFileCreate,
  syncFileGetFence,
} from './index.js';

const PAGE = 4096;
const FRAME = 256;
const OVERLAY_AT = 16;
const OVERLAY = [0xcc, 0xcd, 0xce, 0xcf];

function firstDma(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

/** Adds `fence` to the buffer's reservation object with `usage`, as a driver does at submission. */
function publish(buf: DmaBuf, fence: DmaFence, usage: number): void {
  dmaResvLock(buf.resv, null);
  dmaResvReserveFences(buf.resv, 1);
  dmaResvAddFence(buf.resv, fence, usage);
  dmaResvUnlock(buf.resv);
}

interface Run {
  shown: number[];
  codes: string[];
  unordered: string[];
}

const swSyncOps = { getDriverName: () => 'sw_sync', getTimelineName: () => 'compositor' };

function pipeline(m: Machine, ordered: boolean): Run {
  const p = spawnProcess(m, 'compositor');
  const cam = addDevice(m, { name: 'cam0', dmaMaskBits: 64 });
  const disp = addDevice(m, { name: 'disp0', dmaMaskBits: 64 });
  const buf = dmaHeapBufferAlloc(m, 'system', 2 * PAGE, 2, 0) as DmaBuf;

  // The camera driver maps the buffer for its write, waits for earlier users, publishes its write fence.
  const cAt = dmaBufAttach(buf, cam) as DmaBufAttachment;
  const cSgt = dmaBufMapAttachmentUnlocked(cAt, DMA_FROM_DEVICE) as SgTable;
  const frame = new Uint8Array(FRAME).map((_, i) => 0x40 + (i % 64));
  const capture = drmSchedJobInit(cam, { kind: 'dma-write', bus: firstDma(cSgt), data: frame }, 1000);
  dmaResvLock(buf.resv, null);
  drmSchedJobAddResvDependencies(capture, buf.resv, DMA_RESV_USAGE_READ);
  dmaResvUnlock(buf.resv);
  drmSchedJobArm(capture);
  publish(buf, capture.finished!, DMA_RESV_USAGE_WRITE);
  // User space gets the capture's out-fence as a sync_file.
  const outFence = fdInstall(p, syncFileCreate(capture.finished!).file);
  drmSchedEntityPushJob(capture);

  // The display driver's commit takes it as an in-fence and waits for it before touching the buffer;
  // the camera driver's completion unmaps its attachment.
  const inFence = syncFileGetFence(p, outFence)!;
  expect(dmaFenceWait(inFence, true)).toBe(0);
  dmaFencePut(inFence);
  dmaBufUnmapAttachmentUnlocked(cAt, cSgt, DMA_FROM_DEVICE);

  // The overlay is drawn by the CPU; it signals this explicit fence when done (as with sw_sync).
  const overlayDone = dmaFenceInit(m, swSyncOps, dmaFenceContextAlloc(m, 1), 1);

  // The scanout is queued now: it must wait for the writers in the buffer's resv and for the overlay.
  const dAt = dmaBufAttach(buf, disp) as DmaBufAttachment;
  const dSgt = dmaBufMapAttachmentUnlocked(dAt, DMA_TO_DEVICE) as SgTable;
  const scanout = drmSchedJobInit(disp, { kind: 'dma-read', bus: firstDma(dSgt), len: FRAME }, 3000);
  if (ordered) {
    dmaResvLock(buf.resv, null);
    drmSchedJobAddResvDependencies(scanout, buf.resv, DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(buf.resv);
    drmSchedJobAddDependency(scanout, dmaFenceGet(overlayDone));
  }
  drmSchedJobArm(scanout);
  const shownFence = dmaFenceGet(scanout.finished!);
  // An explicitly synced job: its fence is bookkeeping, implicit-sync users do not wait for it.
  publish(buf, scanout.finished!, DMA_RESV_USAGE_BOOKKEEP);
  drmSchedEntityPushJob(scanout);

  // The CPU draws the overlay through a kernel mapping, bracketed by begin/end_cpu_access.
  const map = dmaBufVmapUnlocked(buf) as IosysMap;
  expect(dmaBufBeginCpuAccess(buf, DMA_TO_DEVICE)).toBe(0);
  kernelWrite(m, map.vaddr + OVERLAY_AT, new Uint8Array(OVERLAY));
  advanceTime(m, 5000); // composing the rest of the scene
  expect(dmaBufEndCpuAccess(buf, DMA_TO_DEVICE)).toBe(0);
  dmaBufVunmapUnlocked(buf, map);
  dmaFenceSignal(overlayDone);

  expect(dmaFenceWait(shownFence, true)).toBe(0);
  const shown = [...deviceJob(m, scanout.engineJob)!.result!];
  dmaBufUnmapAttachmentUnlocked(dAt, dSgt, DMA_TO_DEVICE);
  const found = machineFindings(m);
  return {
    shown,
    codes: [...new Set(found.map((x) => x.code))],
    unordered: found.filter((x) => x.code === 'DMABUF_UNORDERED').map((x) => x.message),
  };
}

const expected = (() => {
  const e = new Uint8Array(FRAME).map((_, i) => 0x40 + (i % 64));
  e.set(OVERLAY, OVERLAY_AT);
  return [...e];
})();

describe('camera → compositor → display, ordered by fences', () => {
  for (const profile of PROFILE_NAMES) {
    it(`${profile}: with the fence waits the display shows the overlaid frame and nothing is found`, () => {
      const r = pipeline(createMachine({ profile, ramBytes: 32 << 20 }), true);
      expect(r.unordered).toEqual([]);
      expect(r.codes).toEqual([]);
      expect(r.shown).toEqual(expected);
    });
  }

  // Where devices do not snoop the CPU's caches (or see a bounce slot), the scanout misses the overlay.
  const stale = new Set(['arm64-noncoherent', 'parisc', 'parisc-pcxl', 'swiotlb-force']);
  for (const profile of PROFILE_NAMES) {
    it(`${profile}: without them the overlay and the scanout are unordered${stale.has(profile) ? ' and the display shows stale bytes' : ''}`, () => {
      const r = pipeline(createMachine({ profile, ramBytes: 32 << 20 }), false);
      expect(r.unordered).toEqual([
        expect.stringMatching(
          /^unordered accesses to dma-buf \d+: cpu wrote 0x[0-9a-f]+10\.\.0x[0-9a-f]+13 \(step \d+, kernelWrite\) and disp0 read 0x[0-9a-f]+00\.\.0x[0-9a-f]+ff \(step \d+, advance_time\); no fence signal and wait orders them, so the result depends on timing$/,
        ),
      ]);
      // The scanout also reads while the CPU owns the buffer (between begin and end_cpu_access).
      if (stale.has(profile)) {
        expect(r.codes.sort()).toEqual(['DMABUF_UNORDERED', 'OWNERSHIP', 'STALE_DATA']);
        const without = expected.slice();
        without.splice(OVERLAY_AT, OVERLAY.length, ...frameBytes(OVERLAY_AT, OVERLAY.length));
        expect(r.shown).toEqual(without);
      } else {
        // The bytes come out right on this run: the display snooped the CPU's dirty lines.
        expect(r.codes.sort()).toEqual(['DMABUF_UNORDERED', 'OWNERSHIP']);
        expect(r.shown).toEqual(expected);
      }
    });
  }
});

function frameBytes(at: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => 0x40 + ((at + i) % 64));
}

describe('happens-before edges of the ordering checker', () => {
  function heapBuf(m: Machine) {
    const dev = addDevice(m, { name: 'dev0', dmaMaskBits: 64 });
    const buf = dmaHeapBufferAlloc(m, 'system', PAGE, 2, 0) as DmaBuf;
    const at = dmaBufAttach(buf, dev) as DmaBufAttachment;
    const sgt = dmaBufMapAttachmentUnlocked(at, DMA_FROM_DEVICE) as SgTable;
    return { dev, buf, bus: firstDma(sgt) };
  }
  const unordered = (m: Machine) => machineFindings(m).filter((f) => f.code === 'DMABUF_UNORDERED');

  it('a device write then a write by another device after waiting on a merged fence: ordered', () => {
    const m = createMachine({ ramBytes: 32 << 20 });
    const { dev, bus } = heapBuf(m);
    const j = drmSchedJobInit(dev, { kind: 'dma-write', bus, data: new Uint8Array(8) }, 100);
    drmSchedJobArm(j);
    const f = dmaFenceGet(j.finished!);
    drmSchedEntityPushJob(j);
    const other = dmaFenceInit(m, swSyncOps, dmaFenceContextAlloc(m, 1), 1);
    const merged = dmaFenceUnwrapMerge(f, other);
    dmaFenceSignal(other);
    expect(dmaFenceWait(merged, true)).toBe(0);
    deviceDmaWrite(addDevice(m, { name: 'dev1', dmaMaskBits: 64 }), bus, new Uint8Array(8));
    expect(unordered(m)).toEqual([]);
  });

  it('time alone does not order a scheduler job; a raw engine job’s completion does', () => {
    const m = createMachine({ ramBytes: 32 << 20 });
    const { dev, bus } = heapBuf(m);
    const j = drmSchedJobInit(dev, { kind: 'dma-write', bus, data: new Uint8Array(8).fill(1) }, 100);
    drmSchedJobArm(j);
    drmSchedEntityPushJob(j);
    advanceTime(m, 1000);
    deviceDmaWrite(addDevice(m, { name: 'dev1', dmaMaskBits: 64 }), bus + 4, new Uint8Array(8));
    expect(unordered(m).map((f) => f.message)).toEqual([
      `unordered accesses to dma-buf 1: dev0 wrote ${formatHex(bus)}..${formatHex(bus + 7)} (step 8, advance_time) and dev1 wrote ${formatHex(bus + 4)}..${formatHex(bus + 11)} (step 9); no fence signal and wait orders them, so the result depends on timing`,
    ]);
    const m2 = createMachine({ ramBytes: 32 << 20 });
    const h = heapBuf(m2);
    submitDeviceJob(h.dev, { kind: 'dma-write', bus: h.bus, data: new Uint8Array(8) }, 100);
    advanceTime(m2, 1000);
    deviceDmaWrite(addDevice(m2, { name: 'dev1', dmaMaskBits: 64 }), h.bus, new Uint8Array(8));
    expect(unordered(m2)).toEqual([]);
  });

  it('forgets a fence once its last reference is dropped', () => {
    const m = createMachine({ ramBytes: 32 << 20 });
    const { dev } = heapBuf(m);
    const ctx = dmaFenceContextAlloc(m, 1);
    for (let i = 1; i <= 50; i++) {
      const gate = dmaFenceInit(m, swSyncOps, ctx, i);
      const j = drmSchedJobInit(dev, { kind: 'idle' }, 10);
      drmSchedJobAddDependency(j, dmaFenceGet(gate));
      drmSchedJobArm(j);
      const done = dmaFenceGet(j.finished!);
      drmSchedEntityPushJob(j);
      dmaFenceSignal(gate);
      dmaFenceWait(done, true);
      dmaFencePut(done);
      dmaFencePut(gate);
    }
    const ordering = m.layers.ordering as {
      fenceClocks: Map<number, number[]>;
      jobClocks: Map<number, number[]>;
    };
    expect([ordering.fenceClocks.size, ordering.jobClocks.size]).toEqual([0, 0]);
  });

  it('reads do not conflict with reads, and bytes outside dma-bufs are not tracked', () => {
    const m = createMachine({ ramBytes: 32 << 20 });
    const { dev, bus } = heapBuf(m);
    const j = drmSchedJobInit(dev, { kind: 'dma-read', bus, len: 8 }, 100);
    drmSchedJobArm(j);
    drmSchedEntityPushJob(j);
    const k = drmSchedJobInit(
      addDevice(m, { name: 'dev1', dmaMaskBits: 64 }),
      { kind: 'dma-read', bus, len: 8 },
      50,
    );
    drmSchedJobArm(k);
    drmSchedEntityPushJob(k);
    advanceTime(m, 1000);
    expect(unordered(m)).toEqual([]);
    const seen = userRead(spawnProcess(m, 'x'), 0x1000, 1);
    expect(seen).toBeNull();
    expect(unordered(m)).toEqual([]);
  });
});
