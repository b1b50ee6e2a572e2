/**
 * `sync_file` (drivers/dma-buf/sync_file.c, include/uapi/linux/sync_file.h):
 * a fence behind a file descriptor, the explicit-sync currency between
 * processes and drivers. SYNC_IOC_MERGE makes a new fd for the union of two
 * sync_files' fences; SYNC_IOC_FILE_INFO reports the fences and their status.
 * Ioctl arguments are user addresses, copied in and out as the kernel does.
 */

import {
  apiCall,
  DmalabError,
  EFAULT,
  EINVAL,
  ENOENT,
  ENOTTY,
  GFP_KERNEL,
  type Machine,
} from '../machine/index.js';
import {
  anonInodeGetfile,
  copyToUser,
  type File,
  type FileOperations,
  fdInstall,
  fget,
  fputFile,
  kernelWrite,
  kfree,
  kmalloc,
  type Process,
  sysClose,
  tableById,
} from '../mm/index.js';
import { type DmaFenceOps, dmaFenceGetStatus, dmaFenceIsSignaled, putFence } from './fence.js';
import { dmaFenceUnwrapForEach, dmaFenceUnwrapMerge } from './fence-array.js';
import { assertFence, type DmaFence, fenceHandle, fenceState } from './fence-state.js';
import { copyStructFromUser, ioc, u32At } from './uapi.js';

const SYNC_IOC_MAGIC = 0x3e; // '>'
/** Bytes of `struct sync_merge_data`: name[32], fd2, fence, flags, pad. */
export const SYNC_MERGE_DATA_SIZE = 48;
/** Bytes of `struct sync_file_info`: name[32], status, flags, num_fences, pad, sync_fence_info (u64). */
export const SYNC_FILE_INFO_SIZE = 56;
/** Bytes of `struct sync_fence_info`: obj_name[32], driver_name[32], status, flags, timestamp_ns (u64). */
export const SYNC_FENCE_INFO_SIZE = 80;
/** `_IOWR('>', 3, struct sync_merge_data)`. */
export const SYNC_IOC_MERGE = ioc(3, SYNC_IOC_MAGIC, 3, SYNC_MERGE_DATA_SIZE);
/** `_IOWR('>', 4, struct sync_file_info)`. */
export const SYNC_IOC_FILE_INFO = ioc(3, SYNC_IOC_MAGIC, 4, SYNC_FILE_INFO_SIZE);

/** `struct sync_file *`: its file and the fence it holds a reference to. */
export class SyncFile {
  constructor(
    readonly machine: Machine,
    readonly file: File,
  ) {}
  /** The fence (the sync_file's reference; take your own with `dmaFenceGet`). */
  get fence(): DmaFence {
    const rec = fenceState(this.machine).syncFiles.get(this.file.id);
    if (rec === undefined) throw new DmalabError('sync_file used after its file was released');
    return fenceHandle(this.machine, rec.fence);
  }
}

const SYNC_FILE_FOPS: FileOperations = {
  release: (_inode, file) => {
    const m = file.machine;
    const s = fenceState(m);
    const rec = s.syncFiles.get(file.id);
    if (rec !== undefined) {
      s.syncFiles.delete(file.id);
      putFence(m, s.fences.get(rec.fence)!);
    }
    return 0;
  },
  unlockedIoctl: (file, cmd, arg, current) => syncFileIoctl(file, cmd, arg, current),
};

function newSyncFile(m: Machine, fenceId: number, userName: string): SyncFile {
  const file = anonInodeGetfile(m, 'sync_file', SYNC_FILE_FOPS, undefined, 0);
  fenceState(m).syncFiles.set(file.id, { fence: fenceId, name: userName });
  return new SyncFile(m, file);
}

/**
 * `sync_file_create()`: a sync_file holding a new reference to `fence`.
 * Give it to a process with `fdInstall(proc, syncFile.file)`; drop it with
 * `fputFile(syncFile.file)`.
 */
export function syncFileCreate(fence: DmaFence): SyncFile {
  assertFence(fence);
  const m = fence.machine;
  return apiCall(m, 'sync_file_create', () => {
    fence.state.refs++;
    return newSyncFile(m, fence.id, '');
  });
}

/** The sync_file open at `fd`, with a file reference taken, or null (`sync_file_fdget`). */
function syncFileFdget(proc: Process, fd: number): SyncFile | null {
  const m = proc.machine;
  const file = fget(proc, fd);
  if (file === null) return null;
  if (!fenceState(m).syncFiles.has(file.id)) {
    fputFile(file);
    return null;
  }
  return new SyncFile(m, file);
}

/**
 * `sync_file_get_fence()`: the fence behind a process's sync_file fd, with
 * a reference taken, or null when `fd` is not a sync_file.
 */
export function syncFileGetFence(proc: Process, fd: number): DmaFence | null {
  const m = proc.machine;
  return apiCall(m, 'sync_file_get_fence', () => {
    const sf = syncFileFdget(proc, fd);
    if (sf === null) return null;
    const f = sf.fence;
    f.state.refs++;
    fputFile(sf.file);
    return f;
  });
}

/** `sync_file_get_name()`: the user's name from a merge, else "driver-timeline<context>-<seqno>". */
function syncFileName(sf: SyncFile): string {
  const m = sf.machine;
  const rec = fenceState(m).syncFiles.get(sf.file.id)!;
  if (rec.name !== '') return rec.name;
  const n = fenceNames(sf.fence);
  return `${n.driver}-${n.timeline}${sf.fence.context}-${sf.fence.seqno}`;
}

function fenceNames(f: DmaFence): { driver: string; timeline: string } {
  const ops = fenceOps(f);
  return { driver: ops.getDriverName(f), timeline: ops.getTimelineName(f) };
}

function fenceOps(f: DmaFence): DmaFenceOps {
  return tableById<DmaFenceOps>(f.state.ops);
}

/** Writes `s` as a NUL-terminated char[32] at `off` (strscpy truncates to 31 bytes). */
function putName(b: Uint8Array, off: number, s: string): void {
  const bytes = new TextEncoder().encode(s).subarray(0, 31);
  b.fill(0, off, off + 32);
  b.set(bytes, off);
}

function getName(b: Uint8Array, off: number): string {
  const raw = b.subarray(off, off + 31);
  const end = raw.indexOf(0);
  return new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end));
}

function putU32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset).setUint32(off, v >>> 0, true);
}

function putU64(b: Uint8Array, off: number, v: number): void {
  putU32(b, off, v % 2 ** 32);
  putU32(b, off + 4, Math.floor(v / 2 ** 32));
}

/** `copy_to_user()` from a kernel buffer holding `bytes`: false when it faulted. */
function copyBytesToUser(proc: Process, userVa: number, bytes: Uint8Array): boolean {
  const m = proc.machine;
  const kva = kmalloc(m, bytes.length, GFP_KERNEL);
  if (kva === null) return false;
  try {
    kernelWrite(m, kva, bytes);
    return copyToUser(proc, userVa, kva, bytes.length) === 0;
  } finally {
    kfree(m, kva);
  }
}

/** `sync_file_ioctl_merge()`. */
function ioctlMerge(sf: SyncFile, arg: number, proc: Process): number {
  const data = copyStructFromUser(proc, arg, SYNC_MERGE_DATA_SIZE);
  if (data === null) return -EFAULT;
  if (u32At(data, 40) !== 0 || u32At(data, 44) !== 0) return -EINVAL;
  const fd2 = u32At(data, 32) | 0;
  const other = syncFileFdget(proc, fd2);
  if (other === null) return -ENOENT;
  try {
    const merged = dmaFenceUnwrapMerge(sf.fence, other.fence);
    const sf3 = newSyncFile(proc.machine, merged.id, getName(data, 0));
    // The kernel reserves the fd first and installs it after copy_to_user; nothing else takes fds between.
    const fd = fdInstall(proc, sf3.file);
    if (fd < 0) {
      fputFile(sf3.file);
      return fd;
    }
    putU32(data, 36, fd);
    data[31] = 0;
    if (!copyBytesToUser(proc, arg, data)) {
      sysClose(proc, fd);
      return -EFAULT;
    }
    return 0;
  } finally {
    fputFile(other.file);
  }
}

/** `sync_file_ioctl_fence_info()`. */
function ioctlFileInfo(sf: SyncFile, arg: number, proc: Process): number {
  const info = copyStructFromUser(proc, arg, SYNC_FILE_INFO_SIZE);
  if (info === null) return -EFAULT;
  if (u32At(info, 36) !== 0 || u32At(info, 44) !== 0) return -EINVAL;
  const fences = dmaFenceUnwrapForEach(sf.fence);
  const asked = u32At(info, 40);
  let status: number;
  if (asked === 0) {
    status = dmaFenceGetStatus(sf.fence);
  } else {
    if (asked < fences.length) return -EINVAL;
    status = 1;
    const out = new Uint8Array(fences.length * SYNC_FENCE_INFO_SIZE);
    fences.forEach((f, i) => {
      const off = i * SYNC_FENCE_INFO_SIZE;
      const n = fenceNames(f);
      putName(out, off, n.timeline);
      putName(out, off + 32, n.driver);
      const st = dmaFenceGetStatus(f);
      putU32(out, off + 64, st);
      putU64(out, off + 72, dmaFenceIsSignaled(f) ? f.timestamp : 0);
      status = status <= 0 ? status : st;
    });
    const ptr = u32At(info, 48) + u32At(info, 52) * 2 ** 32;
    if (out.length > 0 && !copyBytesToUser(proc, ptr, out)) return -EFAULT;
  }
  putName(info, 0, syncFileName(sf));
  putU32(info, 32, status);
  putU32(info, 40, fences.length);
  return copyBytesToUser(proc, arg, info) ? 0 : -EFAULT;
}

/** `sync_file_ioctl()`: MERGE and FILE_INFO; -ENOTTY for anything else. */
function syncFileIoctl(file: File, cmd: number, arg: number, proc: Process): number {
  const sf = new SyncFile(file.machine, file);
  switch (cmd) {
    case SYNC_IOC_MERGE:
      return ioctlMerge(sf, arg, proc);
    case SYNC_IOC_FILE_INFO:
      return ioctlFileInfo(sf, arg, proc);
    default:
      return -ENOTTY;
  }
}
