import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { EFAULT, EINVAL, ENOENT, ENOTTY, machineFindings } from '../machine/index.js';
import {
  fdInstall,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  type Process,
  spawnProcess,
  sysClose,
  sysIoctl,
  sysMmap,
  userRead,
  userWrite,
} from '../mm/index.js';
import {
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceInit,
  dmaFencePut,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceUnwrapForEach,
  SYNC_FENCE_INFO_SIZE,
  SYNC_FILE_INFO_SIZE,
  SYNC_IOC_FILE_INFO,
  SYNC_IOC_MERGE,
  syncFileCreate,
  syncFileGetFence,
} from './index.js';

const OPS: DmaFenceOps = { getDriverName: () => 'gpu', getTimelineName: () => 'ring0' };

function setup() {
  const m = createMachine({ ramBytes: 16 << 20 });
  const proc = spawnProcess(m, 'app');
  const buf = sysMmap(proc, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const ctx = dmaFenceContextAlloc(m, 2);
  return { m, proc, buf, ctx };
}

function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(off, true);
}

function str(b: Uint8Array, off: number): string {
  const s = b.subarray(off, off + 32);
  return new TextDecoder().decode(s.subarray(0, s.indexOf(0)));
}

function mergeData(name: string, fd2: number, flags = 0): Uint8Array {
  const d = new Uint8Array(48);
  d.set(new TextEncoder().encode(name));
  const v = new DataView(d.buffer);
  v.setInt32(32, fd2, true);
  v.setUint32(40, flags, true);
  return d;
}

function fileInfo(proc: Process, buf: number, fd: number, num: number, ptr: number) {
  const d = new Uint8Array(SYNC_FILE_INFO_SIZE);
  const v = new DataView(d.buffer);
  v.setUint32(40, num, true);
  v.setBigUint64(48, BigInt(ptr), true);
  userWrite(proc, buf, d);
  const r = sysIoctl(proc, fd, SYNC_IOC_FILE_INFO, buf);
  const out = userRead(proc, buf, SYNC_FILE_INFO_SIZE)!;
  return { r, name: str(out, 0), status: u32(out, 32) | 0, num: u32(out, 40) };
}

describe('sync_file', () => {
  it('wraps a fence in an fd; get_fence takes a reference; the last close drops the file’s', () => {
    const { m, proc, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 5);
    const sf = syncFileCreate(f);
    expect(f.refcount).toBe(2);
    const fd = fdInstall(proc, sf.file);
    const got = syncFileGetFence(proc, fd)!;
    expect(got).toBe(f);
    expect(f.refcount).toBe(3);
    expect(syncFileGetFence(proc, 99)).toBeNull();
    dmaFencePut(got);
    sysClose(proc, fd);
    expect(f.refcount).toBe(1);
  });

  it('FILE_INFO: the name, the status and each fence’s info', () => {
    const { m, proc, buf, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 5);
    const fd = fdInstall(proc, syncFileCreate(f).file);
    expect(fileInfo(proc, buf, fd, 0, 0)).toEqual({ r: 0, name: 'gpu-ring01-5', status: 0, num: 1 });
    m.clock.time = 777;
    dmaFenceSignal(f);
    expect(fileInfo(proc, buf, fd, 1, buf + 4096)).toEqual({ r: 0, name: 'gpu-ring01-5', status: 1, num: 1 });
    const fi = userRead(proc, buf + 4096, SYNC_FENCE_INFO_SIZE)!;
    expect([str(fi, 0), str(fi, 32), u32(fi, 64), u32(fi, 72)]).toEqual(['ring0', 'gpu', 1, 777]);
    // flags and pad must be zero; too small an array is refused; a bad pointer faults.
    const bad = new Uint8Array(SYNC_FILE_INFO_SIZE);
    bad[36] = 1;
    userWrite(proc, buf, bad);
    expect(sysIoctl(proc, fd, SYNC_IOC_FILE_INFO, buf)).toBe(-EINVAL);
    expect(fileInfo(proc, buf, fd, 1, 0x7000_0000).r).toBe(-EFAULT);
    expect(sysIoctl(proc, fd, SYNC_IOC_FILE_INFO, 0x7000_0000)).toBe(-EFAULT);
    expect(sysIoctl(proc, fd, 0x1234, buf)).toBe(-ENOTTY);
  });

  it('MERGE: a new fd for both fences, named by the user; status is the worst', () => {
    const { m, proc, buf, ctx } = setup();
    const a = dmaFenceInit(m, OPS, ctx, 1);
    const b = dmaFenceInit(m, OPS, ctx + 1, 1);
    const fa = fdInstall(proc, syncFileCreate(a).file);
    const fb = fdInstall(proc, syncFileCreate(b).file);
    userWrite(proc, buf, mergeData('both', fb));
    expect(sysIoctl(proc, fa, SYNC_IOC_MERGE, buf)).toBe(0);
    const fc = u32(userRead(proc, buf, 48)!, 36);
    expect(fc).toBe(fb + 1);
    expect(dmaFenceUnwrapForEach(syncFileGetFence(proc, fc)!)).toEqual([a, b]);
    expect(fileInfo(proc, buf, fc, 0, 0)).toMatchObject({ name: 'both', status: 0, num: 2 });
    dmaFenceSetError(a, -5);
    dmaFenceSignal(a);
    dmaFenceSignal(b);
    expect(fileInfo(proc, buf, fc, 2, buf + 4096)).toMatchObject({ status: -5, num: 2 });
    // Bad flags, an fd that is not a sync_file, a faulting argument.
    userWrite(proc, buf, mergeData('x', fb, 1));
    expect(sysIoctl(proc, fa, SYNC_IOC_MERGE, buf)).toBe(-EINVAL);
    userWrite(proc, buf, mergeData('x', 42));
    expect(sysIoctl(proc, fa, SYNC_IOC_MERGE, buf)).toBe(-ENOENT);
    expect(sysIoctl(proc, fa, SYNC_IOC_MERGE, 0x7000_0000)).toBe(-EFAULT);
    expect(machineFindings(m).filter((f) => f.code !== 'SIGSEGV')).toHaveLength(0);
  });
});
