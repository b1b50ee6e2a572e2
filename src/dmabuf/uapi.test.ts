import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_FROM_DEVICE, DMA_TO_DEVICE } from '../dma/index.js';
import { forEachSgtableDmaSg, type SgTable } from '../lib/index.js';
import {
  addDevice,
  deviceDmaRead,
  deviceDmaWrite,
  EFAULT,
  EINVAL,
  ENOTTY,
  type Machine,
  machineFindings,
  PROFILE_NAMES,
} from '../machine/index.js';
import {
  fdInstall,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type Process,
  spawnProcess,
  sysIoctl,
  sysMmap,
  sysOpen,
  userRead,
  userWrite,
} from '../mm/index.js';
import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
  DMA_BUF_IOCTL_SYNC,
  DMA_BUF_SET_NAME_B,
  DMA_BUF_SYNC_END,
  DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_START,
  DMA_BUF_SYNC_WRITE,
  DMA_HEAP_IOCTL_ALLOC,
  DMA_RESV_USAGE_BOOKKEEP,
  DMA_RESV_USAGE_WRITE,
  type DmaBuf,
  type DmaBufAttachment,
  type DmaFenceOps,
  dmaBufAttach,
  dmaBufGet,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
  dmaFenceContextAlloc,
  dmaFenceInit,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSignal,
  dmaResvAddFence,
  dmaResvForEachFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  drmSchedEntityPushJob,
  drmSchedJobArm,
  drmSchedJobInit,
  ioc,
  syncFileCreate,
  syncFileGetFence,
} from './index.js';

const PAGE = 4096;

function le(value: number, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
  return out;
}

/** User space: a scratch page for ioctl arguments. */
function scratch(p: Process): number {
  return sysMmap(p, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/** User space: DMA_HEAP_IOCTL_ALLOC on /dev/dma_heap/<heap>; returns the dma-buf fd or the ioctl's error. */
function heapAlloc(
  p: Process,
  heap: string,
  len: number,
  fdFlags = 2,
  fd = 0,
  heapFlags = [0, 0],
  cmd = DMA_HEAP_IOCTL_ALLOC,
): number {
  const hfd = sysOpen(p, `/dev/dma_heap/${heap}`);
  const arg = scratch(p);
  const flags = [...le(heapFlags[0]!, 4), ...le(heapFlags[1]!, 4)];
  userWrite(p, arg, new Uint8Array([...le(len, 8), ...le(fd, 4), ...le(fdFlags, 4), ...flags]));
  const r = sysIoctl(p, hfd, cmd, arg);
  if (r !== 0) return r;
  const out = userRead(p, arg + 8, 4)!;
  return out[0]! | (out[1]! << 8);
}

/** User space: DMA_BUF_IOCTL_SYNC with `flags`. */
function sync(p: Process, fd: number, flags: number, arg: number): number {
  userWrite(p, arg, new Uint8Array(le(flags, 8)));
  return sysIoctl(p, fd, DMA_BUF_IOCTL_SYNC, arg);
}

function firstDma(sgt: SgTable): number {
  for (const sg of forEachSgtableDmaSg(sgt)) return sg.dmaAddress;
  throw new Error('empty table');
}

interface Outcome {
  displayRead: number[];
  cpuRead: number[];
  codes: string[];
}

/**
 * A compositor-like process fills a system-heap buffer through its mmap for
 * a display device, then reads back what a camera wrote into a second one,
 * with or without DMA_BUF_IOCTL_SYNC brackets around each CPU access.
 */
function userMmapRun(m: Machine, brackets: boolean): Outcome {
  const p = spawnProcess(m, 'app');
  const arg = scratch(p);
  const disp = addDevice(m, { name: 'disp0', dmaMaskBits: 64 });
  const cam = addDevice(m, { name: 'cam0', dmaMaskBits: 64 });
  const outFd = heapAlloc(p, 'system', 2 * PAGE);
  const inFd = heapAlloc(p, 'system', 2 * PAGE);
  const outVa = sysMmap(p, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, outFd, 0);
  const inVa = sysMmap(p, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, inFd, 0);
  // The drivers import the fds (passed to them through their own ioctls in real life).
  const outBuf = dmaBufGet(p, outFd) as DmaBuf;
  const inBuf = dmaBufGet(p, inFd) as DmaBuf;
  const dAt = dmaBufAttach(outBuf, disp) as DmaBufAttachment;
  const cAt = dmaBufAttach(inBuf, cam) as DmaBufAttachment;
  const dSgt = dmaBufMapAttachmentUnlocked(dAt, DMA_TO_DEVICE) as SgTable;
  const cSgt = dmaBufMapAttachmentUnlocked(cAt, DMA_FROM_DEVICE) as SgTable;

  if (brackets) expect(sync(p, outFd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, arg)).toBe(0);
  userWrite(p, outVa + 100, new Uint8Array([1, 2, 3, 4]));
  if (brackets) expect(sync(p, outFd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, arg)).toBe(0);
  const displayRead = [...deviceDmaRead(disp, firstDma(dSgt) + 100, 4)];

  // The CPU looked at the camera's buffer before the frame came (its cache keeps the zeroes)...
  if (brackets) expect(sync(p, inFd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, arg)).toBe(0);
  userRead(p, inVa + 200, 4);
  if (brackets) expect(sync(p, inFd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, arg)).toBe(0);
  deviceDmaWrite(cam, firstDma(cSgt) + 200, new Uint8Array([9, 8, 7, 6]));
  if (brackets) expect(sync(p, inFd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, arg)).toBe(0);
  const cpuRead = [...userRead(p, inVa + 200, 4)!];
  if (brackets) expect(sync(p, inFd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, arg)).toBe(0);

  dmaBufUnmapAttachmentUnlocked(dAt, dSgt, DMA_TO_DEVICE);
  dmaBufUnmapAttachmentUnlocked(cAt, cSgt, DMA_FROM_DEVICE);
  return { displayRead, cpuRead, codes: [...new Set(machineFindings(m).map((f) => f.code))] };
}

describe('user mmap of a system-heap buffer, with and without DMA_BUF_IOCTL_SYNC', () => {
  const good = { displayRead: [1, 2, 3, 4], cpuRead: [9, 8, 7, 6] };
  const stale = { displayRead: [0, 0, 0, 0], cpuRead: [0, 0, 0, 0] };

  it('with brackets: the bytes arrive and nothing is reported, except on PA-RISC’s VIPT caches', () => {
    const rows = PROFILE_NAMES.map((profile) => ({
      profile,
      ...userMmapRun(createMachine({ profile }), true),
    }));
    // On PA-RISC the heap's syncs clean and invalidate the kernel alias only; the user mapping (coloured
    // by file offset, not congruent with it) keeps its own lines, so the kernel's heap loses bytes there.
    expect(rows).toEqual([
      { profile: 'x86_64', ...good, codes: [] },
      { profile: 'arm64-coherent', ...good, codes: [] },
      { profile: 'arm64-noncoherent', ...good, codes: [] },
      { profile: 'parisc', ...stale, codes: ['STALE_DATA'] },
      { profile: 'parisc-pcxl', ...stale, codes: ['STALE_DATA'] },
      { profile: 'swiotlb-force', ...good, codes: [] },
    ]);
  });

  it('without brackets: an ownership finding everywhere; stale bytes where caches or bounce buffers are in the way', () => {
    const rows = PROFILE_NAMES.map((profile) => ({
      profile,
      ...userMmapRun(createMachine({ profile }), false),
    }));
    expect(rows).toEqual([
      { profile: 'x86_64', ...good, codes: ['OWNERSHIP'] },
      { profile: 'arm64-coherent', ...good, codes: ['OWNERSHIP'] },
      { profile: 'arm64-noncoherent', ...stale, codes: ['OWNERSHIP', 'STALE_DATA'] },
      { profile: 'parisc', ...stale, codes: ['OWNERSHIP', 'STALE_DATA'] },
      { profile: 'parisc-pcxl', ...stale, codes: ['OWNERSHIP', 'STALE_DATA'] },
      { profile: 'swiotlb-force', ...stale, codes: ['OWNERSHIP', 'STALE_DATA'] },
    ]);
  });
});

describe('DMA_BUF_IOCTL_SYNC and the heap ioctl validate their arguments', () => {
  it('bad flags and an empty direction are -EINVAL; an unreadable argument is -EFAULT; unknown commands -ENOTTY', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    const arg = scratch(p);
    const fd = heapAlloc(p, 'system', PAGE);
    expect(sync(p, fd, 8, arg)).toBe(-EINVAL);
    expect(sync(p, fd, DMA_BUF_SYNC_START, arg)).toBe(-EINVAL);
    expect(sync(p, fd, DMA_BUF_SYNC_END, arg)).toBe(-EINVAL);
    userWrite(p, arg, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 1]));
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_SYNC, arg)).toBe(-EINVAL);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_SYNC, 0x1000)).toBe(-EFAULT);
    expect(sysIoctl(p, fd, 0x12345, arg)).toBe(-ENOTTY);
    // An END without a START is accepted: nothing tracks the pairing.
    expect(sync(p, fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, arg)).toBe(0);
    expect(machineFindings(m)).toEqual([]);
  });

  it('DMA_BUF_SET_NAME copies a NUL-terminated name of at most 32 bytes', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    const arg = scratch(p);
    const fd = heapAlloc(p, 'system', PAGE);
    userWrite(p, arg, new TextEncoder().encode('camera-frame\0'));
    expect(sysIoctl(p, fd, DMA_BUF_SET_NAME_B, arg)).toBe(0);
    expect((dmaBufGet(p, fd) as DmaBuf).name).toBe('camera-frame');
    userWrite(p, arg, new Uint8Array(40).fill(0x41));
    expect(sysIoctl(p, fd, DMA_BUF_SET_NAME_B, arg)).toBe(-EINVAL);
  });

  it('the heap ioctl: fd must be 0, fd_flags within O_CLOEXEC|O_ACCMODE, a length of 0 is -EINVAL', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    expect(heapAlloc(p, 'system', PAGE, 2, 5)).toBe(-EINVAL);
    expect(heapAlloc(p, 'system', PAGE, 0o100)).toBe(-EINVAL);
    expect(heapAlloc(p, 'system', 0)).toBe(-EINVAL);
    expect(heapAlloc(p, 'system', PAGE)).toBeGreaterThanOrEqual(3);
  });

  it('the heap ioctl: every heap flag is invalid, bit 32 and up included', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    expect(heapAlloc(p, 'system', PAGE, 2, 0, [1, 0])).toBe(-EINVAL);
    expect(heapAlloc(p, 'system', PAGE, 2, 0, [0, 1])).toBe(-EINVAL);
    expect(heapAlloc(p, 'system', PAGE, 2, 0, [0, 0x80000000])).toBe(-EINVAL);
  });

  it('the heap ioctl is chosen by its number alone, as dma_heap_ioctl decodes it', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    // nr 1 is past the command table: -EINVAL, not -ENOTTY.
    expect(heapAlloc(p, 'system', PAGE, 2, 0, [0, 0], ioc(3, 0x48, 1, 24))).toBe(-EINVAL);
    // nr 0 with another type byte is still the allocation.
    const fd = heapAlloc(p, 'system', PAGE, 2, 0, [0, 0], ioc(3, 0x58, 0, 24));
    expect(fd).toBeGreaterThanOrEqual(3);
    expect((dmaBufGet(p, fd) as DmaBuf).size).toBe(PAGE);
    // Without _IOC_READ nothing is copied back: the call succeeds, the user's fd field stays 0.
    const hfd = sysOpen(p, '/dev/dma_heap/system');
    const arg = scratch(p);
    userWrite(p, arg, new Uint8Array([...le(PAGE, 8), ...le(0, 4), ...le(2, 4), ...le(0, 8)]));
    expect(sysIoctl(p, hfd, ioc(1, 0x48, 0, 24), arg)).toBe(0);
    expect([...userRead(p, arg + 8, 4)!]).toEqual([0, 0, 0, 0]);
  });

  it('the CMA heap maps only shared, faults pages in, and SIGBUSes past the end', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const p = spawnProcess(m, 'app');
    const fd = heapAlloc(p, 'reserved', 2 * PAGE);
    expect(sysMmap(p, 0, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)).toBe(-EINVAL);
    const va = sysMmap(p, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    expect(va).toBeGreaterThan(0);
    expect([...userRead(p, va + PAGE, 2)!]).toEqual([0, 0]);
    // A mapping longer than the buffer is refused at mmap.
    expect(sysMmap(p, 0, 3 * PAGE, PROT_READ, MAP_SHARED, fd, 0)).toBe(-EINVAL);
  });
});

describe('DMA_BUF_IOCTL_EXPORT_SYNC_FILE / IMPORT_SYNC_FILE: implicit and explicit sync', () => {
  const timeline: DmaFenceOps = { getDriverName: () => 'test', getTimelineName: () => 'tl' };

  function syncFileArgs(p: Process, arg: number, flags: number, fd: number): void {
    userWrite(p, arg, new Uint8Array([...le(flags, 4), ...le(fd, 4)]));
  }

  it('export gives the writers’ fence for READ (a signalled stub when there is none); SYNC_START waits for it', () => {
    const m = createMachine({ profile: 'arm64-noncoherent' });
    const p = spawnProcess(m, 'app');
    const arg = scratch(p);
    const fd = heapAlloc(p, 'system', PAGE);
    const db = dmaBufGet(p, fd) as DmaBuf;
    // Nothing pending: a signalled stub.
    syncFileArgs(p, arg, DMA_BUF_SYNC_READ, 0);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg)).toBe(0);
    const stub = syncFileGetFence(p, userRead(p, arg + 4, 1)![0]!)!;
    expect(dmaFenceIsSignaled(stub)).toBe(true);
    dmaFencePut(stub);
    // A device job writing the buffer, its fence added as a writer.
    const cam = addDevice(m, { name: 'cam0' });
    const job = drmSchedJobInit(cam, { kind: 'idle' }, 1000);
    drmSchedJobArm(job);
    expect(dmaResvLock(db.resv, null)).toBe(0);
    dmaResvReserveFences(db.resv, 1);
    dmaResvAddFence(db.resv, job.finished!, DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(db.resv);
    drmSchedEntityPushJob(job);
    syncFileArgs(p, arg, DMA_BUF_SYNC_READ, 0);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg)).toBe(0);
    const got = syncFileGetFence(p, userRead(p, arg + 4, 1)![0]!);
    expect(got).toBe(job.finished!);
    expect(dmaFenceIsSignaled(job.finished!)).toBe(false);
    // The CPU's read bracket waits for the writer, in model time.
    expect(sync(p, fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, arg)).toBe(0);
    expect(dmaFenceIsSignaled(job.finished!)).toBe(true);
    expect(m.clock.time).toBeGreaterThanOrEqual(1000);
    expect(machineFindings(m)).toEqual([]);
  });

  it('import adds a sync_file’s fence as a writer or reader; flags and fds are checked', () => {
    const m = createMachine();
    const p = spawnProcess(m, 'app');
    const arg = scratch(p);
    const fd = heapAlloc(p, 'system', PAGE);
    const db = dmaBufGet(p, fd) as DmaBuf;
    const ctx = dmaFenceContextAlloc(m, 1);
    const f = dmaFenceInit(m, timeline, ctx, 1);
    const sfd = fdInstall(p, syncFileCreate(f).file);
    syncFileArgs(p, arg, DMA_BUF_SYNC_WRITE, sfd);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, arg)).toBe(0);
    expect(dmaResvForEachFence(db.resv, DMA_RESV_USAGE_BOOKKEEP).map((e) => [e.fence, e.usage])).toEqual([
      [f, DMA_RESV_USAGE_WRITE],
    ]);
    syncFileArgs(p, arg, 0, sfd);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, arg)).toBe(-EINVAL);
    syncFileArgs(p, arg, DMA_BUF_SYNC_READ | 8, sfd);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg)).toBe(-EINVAL);
    // The dma-buf's own fd is not a sync_file.
    syncFileArgs(p, arg, DMA_BUF_SYNC_READ, fd);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, arg)).toBe(-EINVAL);
    expect(sysIoctl(p, fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, 0x1000)).toBe(-EFAULT);
    dmaFenceSignal(f);
  });
});
