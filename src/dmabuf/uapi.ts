/**
 * The user-space ABI of dma-buf fds and heaps (include/uapi/linux/dma-buf.h,
 * dma-heap.h): ioctl numbers, flags, and the copies of small argument
 * structs between user memory and a kernel stack buffer.
 */

import type { KernelVa } from '../machine/index.js';
import {
  copyFromUser,
  copyToUser,
  kernelRead,
  kernelStackBuffer,
  kernelStackRelease,
  kernelWrite,
  type Process,
} from '../mm/index.js';

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

/** `value` as 4 little-endian bytes. */
export function le32(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

/** `copy_to_user()` of a small struct built on the kernel stack; the bytes not copied (0 on success). */
export function copyStructToUser(proc: Process, arg: number, bytes: Uint8Array): number {
  const m = proc.machine;
  const kva = kernelStackBuffer(m, bytes.length);
  try {
    kernelWrite(m, kva, bytes);
    return copyToUser(proc, arg, kva, bytes.length);
  } finally {
    kernelStackRelease(m, kva);
  }
}
