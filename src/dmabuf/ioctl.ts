/**
 * `dma_buf_ioctl()`: the ioctls of a dma-buf fd. DMA_BUF_IOCTL_SYNC
 * brackets CPU access through an mmap of the fd; DMA_BUF_SET_NAME labels
 * the buffer; EXPORT/IMPORT_SYNC_FILE bridge the buffer's implicit fences
 * and explicit sync_file fds. Arguments are user addresses, copied in and
 * out as the kernel copies them.
 */

import { EFAULT, EINVAL, ENOTTY } from '../machine/index.js';
import { fdInstall, fputFile, type Process, sysClose } from '../mm/index.js';
import { beginCpuAccessAs, endCpuAccessAs } from './cpu-access.js';
import { dmaFenceGetStub, dmaFencePut } from './fence.js';
import { dmaFenceUnwrapForEach } from './fence-array.js';
import {
  DMA_RESV_USAGE_READ,
  DMA_RESV_USAGE_WRITE,
  dmaResvAddFence,
  dmaResvGetSingleton,
  dmaResvReserveFences,
  dmaResvUsageRw,
} from './resv.js';
import { resvOf, withResvLock } from './resv-link.js';
import type { DmaBuf } from './state.js';
import { syncFileCreate, syncFileGetFence } from './sync-file.js';
import {
  copyStructFromUser,
  copyStructToUser,
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
  DMA_BUF_IOCTL_SYNC,
  DMA_BUF_NAME_LEN,
  DMA_BUF_SET_NAME_A,
  DMA_BUF_SET_NAME_B,
  DMA_BUF_SYNC_END,
  DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_RW,
  DMA_BUF_SYNC_VALID_FLAGS_MASK,
  DMA_BUF_SYNC_WRITE,
  le32,
  u32At,
} from './uapi.js';

/** The `{ __u32 flags; __s32 fd; }` of both sync_file ioctls, validated: flags a non-empty subset of RW. */
function syncFileArg(proc: Process, arg: number): { flags: number; fd: number } | number {
  const a = copyStructFromUser(proc, arg, 8);
  if (a === null) return -EFAULT;
  const flags = u32At(a, 0);
  if ((flags & ~DMA_BUF_SYNC_RW) !== 0 || (flags & DMA_BUF_SYNC_RW) === 0) return -EINVAL;
  return { flags, fd: u32At(a, 4) | 0 };
}

/**
 * `dma_buf_export_sync_file()`: the buffer's implicit fences as one
 * explicit fence in a new sync_file fd (O_CLOEXEC) — every writer and
 * reader for a WRITE, the writers for a READ; a signalled stub when there
 * are none. The fd is written back into the argument.
 */
function exportSyncFile(dmabuf: DmaBuf, arg: number, proc: Process): number {
  const a = syncFileArg(proc, arg);
  if (typeof a === 'number') return a;
  const m = dmabuf.machine;
  const usage = dmaResvUsageRw((a.flags & DMA_BUF_SYNC_WRITE) !== 0);
  const fence = dmaResvGetSingleton(resvOf(dmabuf), usage) ?? dmaFenceGetStub(m);
  const sf = syncFileCreate(fence);
  dmaFencePut(fence);
  const fd = fdInstall(proc, sf.file);
  if (fd < 0) {
    fputFile(sf.file);
    return fd;
  }
  const out = new Uint8Array(8);
  out.set(le32(a.flags), 0);
  out.set(le32(fd), 4);
  if (copyStructToUser(proc, arg, out) !== 0) {
    // The kernel installs the fd only after the copy succeeded.
    sysClose(proc, fd);
    return -EFAULT;
  }
  return 0;
}

/**
 * `dma_buf_import_sync_file()`: an explicit fence joins the buffer's
 * implicit ones — as a writer (WRITE flag) or a reader — each component of
 * a container added on its own, under the lock. -EINVAL for an fd that is
 * not a sync_file.
 */
function importSyncFile(dmabuf: DmaBuf, arg: number, proc: Process): number {
  const a = syncFileArg(proc, arg);
  if (typeof a === 'number') return a;
  const fence = syncFileGetFence(proc, a.fd);
  if (fence === null) return -EINVAL;
  const usage = (a.flags & DMA_BUF_SYNC_WRITE) !== 0 ? DMA_RESV_USAGE_WRITE : DMA_RESV_USAGE_READ;
  const parts = dmaFenceUnwrapForEach(fence);
  let ret = 0;
  if (parts.length > 0) {
    const resv = resvOf(dmabuf);
    withResvLock(dmabuf, () => {
      ret = dmaResvReserveFences(resv, parts.length);
      if (ret === 0) for (const f of parts) dmaResvAddFence(resv, f, usage);
    });
  }
  dmaFencePut(fence);
  return ret;
}

/** `dma_buf_ioctl()` case DMA_BUF_IOCTL_SYNC. */
function ioctlSync(dmabuf: DmaBuf, arg: number, proc: Process): number {
  const s = copyStructFromUser(proc, arg, 8);
  if (s === null) return -EFAULT;
  const lo = u32At(s, 0);
  const hi = u32At(s, 4);
  if (hi !== 0 || (lo & ~DMA_BUF_SYNC_VALID_FLAGS_MASK) !== 0) return -EINVAL;
  let dir: number;
  switch (lo & DMA_BUF_SYNC_RW) {
    case DMA_BUF_SYNC_READ:
      dir = 2; // DMA_FROM_DEVICE: the CPU reads what devices wrote
      break;
    case DMA_BUF_SYNC_WRITE:
      dir = 1; // DMA_TO_DEVICE
      break;
    case DMA_BUF_SYNC_RW:
      dir = 0; // DMA_BIDIRECTIONAL
      break;
    default:
      return -EINVAL;
  }
  return lo & DMA_BUF_SYNC_END
    ? endCpuAccessAs(dmabuf, dir, proc.name)
    : beginCpuAccessAs(dmabuf, dir, proc.name);
}

/** `dma_buf_set_name()`: a NUL-terminated user string of at most DMA_BUF_NAME_LEN bytes with its NUL. */
function setName(dmabuf: DmaBuf, arg: number, proc: Process): number {
  let name = '';
  for (let i = 0; i < DMA_BUF_NAME_LEN; i++) {
    const c = copyStructFromUser(proc, arg + i, 1);
    if (c === null) return -EFAULT;
    if (c[0] === 0) {
      dmabuf.state.name = name;
      return 0;
    }
    name += String.fromCharCode(c[0]!);
  }
  return -EINVAL;
}

/** `dma_buf_ioctl()`: the dma-buf fd's ioctls; -ENOTTY for any other command. */
export function dmaBufIoctl(dmabuf: DmaBuf, cmd: number, arg: number, proc: Process): number {
  switch (cmd) {
    case DMA_BUF_IOCTL_SYNC:
      return ioctlSync(dmabuf, arg, proc);
    case DMA_BUF_SET_NAME_A:
    case DMA_BUF_SET_NAME_B:
      return setName(dmabuf, arg, proc);
    case DMA_BUF_IOCTL_EXPORT_SYNC_FILE:
      return exportSyncFile(dmabuf, arg, proc);
    case DMA_BUF_IOCTL_IMPORT_SYNC_FILE:
      return importSyncFile(dmabuf, arg, proc);
    default:
      return -ENOTTY;
  }
}
