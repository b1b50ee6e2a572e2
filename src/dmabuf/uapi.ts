/**
 * The user-space interface of a dma-buf fd (include/uapi/linux/dma-buf.h,
 * `dma_buf_ioctl`): DMA_BUF_IOCTL_SYNC brackets CPU access through an mmap
 * of the fd, DMA_BUF_SET_NAME labels the buffer. Arguments are user
 * addresses read with `copyFromUser`, as the kernel reads them.
 */

import { EFAULT, EINVAL, ENOTTY, type KernelVa } from '../machine/index.js';
import {
  copyFromUser,
  kernelRead,
  kernelStackBuffer,
  kernelStackRelease,
  type Process,
} from '../mm/index.js';
import { beginCpuAccessAs, endCpuAccessAs } from './cpu-access.js';
import { syncFileIoctl } from './resv-link.js';
import type { DmaBuf } from './state.js';

/** `_IOC(dir, type, nr, size)` of include/uapi/asm-generic/ioctl.h (dir: 1 write, 2 read, 3 both). */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return dir * 2 ** 30 + size * 2 ** 16 + type * 2 ** 8 + nr;
}

/** `O_CLOEXEC` and `O_NONBLOCK` (asm-generic/fcntl.h). */
export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

const DMA_BUF_BASE = 0x62; // 'b'

export const DMA_BUF_SYNC_READ = 1;
export const DMA_BUF_SYNC_WRITE = 2;
export const DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
export const DMA_BUF_SYNC_START = 0;
export const DMA_BUF_SYNC_END = 4;
export const DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;
export const DMA_BUF_NAME_LEN = 32;

/** `_IOW('b', 0, struct dma_buf_sync)`: `{ __u64 flags; }`. */
export const DMA_BUF_IOCTL_SYNC = ioc(1, DMA_BUF_BASE, 0, 8);
/** `_IOW('b', 1, const char *)`, the two sizes of the 32/64-bit mix-up. */
export const DMA_BUF_SET_NAME_A = ioc(1, DMA_BUF_BASE, 1, 4);
export const DMA_BUF_SET_NAME_B = ioc(1, DMA_BUF_BASE, 1, 8);
/** `_IOWR('b', 2, struct dma_buf_export_sync_file)`: `{ __u32 flags; __s32 fd; }`. */
export const DMA_BUF_IOCTL_EXPORT_SYNC_FILE = ioc(3, DMA_BUF_BASE, 2, 8);
/** `_IOW('b', 3, struct dma_buf_import_sync_file)`: `{ __u32 flags; __s32 fd; }`. */
export const DMA_BUF_IOCTL_IMPORT_SYNC_FILE = ioc(1, DMA_BUF_BASE, 3, 8);

/** Reads a little-endian u32 at `off` of `b`. */
export function u32At(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/**
 * `copy_from_user()` of a small struct into a buffer on the kernel stack,
 * as ioctl handlers do with a local; null when it faulted.
 */
export function copyStructFromUser(proc: Process, arg: number, size: number): Uint8Array | null {
  const m = proc.machine;
  const kva: KernelVa = kernelStackBuffer(m, size);
  try {
    if (copyFromUser(proc, kva, arg, size) !== 0) return null;
    return kernelRead(m, kva, size);
  } finally {
    kernelStackRelease(m, kva);
  }
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
    case DMA_BUF_IOCTL_IMPORT_SYNC_FILE:
      return syncFileIoctl(dmabuf, cmd === DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg, proc);
    default:
      return -ENOTTY;
  }
}
