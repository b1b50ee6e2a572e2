/**
 * The DRM file's ioctls a user-space client needs to share a buffer object
 * (include/uapi/drm/drm.h, drm_mode.h; drm_dumb_buffers.c, drm_gem.c,
 * drm_prime.c): create a dumb buffer (the GPU model puts it in VRAM), get
 * its fake offset for mmap, export it as a dma-buf fd, close the handle.
 * Arguments are user addresses of the kernel's structs, copied in and out
 * with `copy_from_user`/`copy_to_user` as the kernel does.
 */

import { copyStructFromUser, ioc, u32At } from '../dmabuf/index.js';
import { EFAULT, EINVAL, ENOENT, ENOTTY, type KernelVa, PAGE_SIZE } from '../machine/index.js';
import {
  copyToUser,
  type File,
  kernelStackBuffer,
  kernelStackRelease,
  kernelWrite,
  O_RDWR,
  type Process,
} from '../mm/index.js';
import { ttmBoInitValidate, ttmBoPut } from './bo.js';
import { GPU_GEM_DOMAIN_VRAM, ttm_bo_type_device } from './consts.js';
import { gpuBoPlacementFromDomain } from './gpu.js';
import { bdevHandle } from './handles.js';
import { boState } from './internal/state.js';
import { drmGemPrimeHandleToFd } from './prime.js';
import { drmGemHandleCreate, drmGemHandleDelete, drmGemObjectLookup } from './vm.js';
import { drmVmaNodeOffsetAddr } from './vma-manager.js';

const DRM_IOCTL_BASE = 0x64; // 'd'

/** `DRM_IOW(0x09, struct drm_gem_close)`: `{ __u32 handle; __u32 pad; }`. */
export const DRM_IOCTL_GEM_CLOSE = ioc(1, DRM_IOCTL_BASE, 0x09, 8);
/** `DRM_IOWR(0x2d, struct drm_prime_handle)`: `{ __u32 handle; __u32 flags; __s32 fd; }`. */
export const DRM_IOCTL_PRIME_HANDLE_TO_FD = ioc(3, DRM_IOCTL_BASE, 0x2d, 12);
/** `DRM_IOWR(0xB2, struct drm_mode_create_dumb)`: `{ __u32 height, width, bpp, flags, handle, pitch; __u64 size; }`. */
export const DRM_IOCTL_MODE_CREATE_DUMB = ioc(3, DRM_IOCTL_BASE, 0xb2, 32);
/** `DRM_IOWR(0xB3, struct drm_mode_map_dumb)`: `{ __u32 handle; __u32 pad; __u64 offset; }`. */
export const DRM_IOCTL_MODE_MAP_DUMB = ioc(3, DRM_IOCTL_BASE, 0xb3, 16);
/** `DRM_IOWR(0xB4, struct drm_mode_destroy_dumb)`: `{ __u32 handle; }`. */
export const DRM_IOCTL_MODE_DESTROY_DUMB = ioc(3, DRM_IOCTL_BASE, 0xb4, 4);
/** `DRM_CLOEXEC` and `DRM_RDWR` (the prime flags are O_CLOEXEC and O_RDWR). */
export const DRM_CLOEXEC = 0o2000000;
export const DRM_RDWR = O_RDWR;

const U32 = 0xffffffff;

/** `copy_to_user()` of a struct built on the kernel stack; 0 or -EFAULT. */
function copyStructToUser(proc: Process, arg: number, bytes: Uint8Array): number {
  const m = proc.machine;
  const kva: KernelVa = kernelStackBuffer(m, bytes.length);
  try {
    kernelWrite(m, kva, bytes);
    return copyToUser(proc, arg, kva, bytes.length) === 0 ? 0 : -EFAULT;
  } finally {
    kernelStackRelease(m, kva);
  }
}

/**
 * `drm_mode_create_dumb()`'s checks, then the driver's `dumb_create`: an
 * object of `PAGE_ALIGN(pitch * height)` bytes in VRAM and a handle for it.
 */
function createDumb(file: File, arg: number, proc: Process): number {
  const s = copyStructFromUser(proc, arg, 32);
  if (s === null) return -EFAULT;
  const [height, width, bpp, flags] = [u32At(s, 0), u32At(s, 4), u32At(s, 8), u32At(s, 12)];
  if (width === 0 || height === 0 || bpp === 0 || flags !== 0) return -EINVAL;
  const cpp = Math.ceil(bpp / 8);
  if (cpp > Math.floor(U32 / width)) return -EINVAL;
  const pitch = cpp * width;
  if (height > Math.floor(U32 / pitch)) return -EINVAL;
  const size = Math.ceil((pitch * height) / PAGE_SIZE) * PAGE_SIZE;
  const m = proc.machine;
  const bdev = boState(m).bdevs.find((b) => b.path === file.path);
  if (bdev === undefined) return -ENOTTY;
  const bo = ttmBoInitValidate(
    bdevHandle(m, bdev.id),
    size,
    ttm_bo_type_device,
    gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM),
  );
  if (typeof bo === 'number') return bo;
  const handle = drmGemHandleCreate(file, bo);
  ttmBoPut(bo);
  const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
  dv.setUint32(16, handle, true);
  dv.setUint32(20, pitch, true);
  dv.setBigUint64(24, BigInt(size), true);
  return copyStructToUser(proc, arg, s);
}

function mapDumb(file: File, arg: number, proc: Process): number {
  const s = copyStructFromUser(proc, arg, 16);
  if (s === null) return -EFAULT;
  const bo = drmGemObjectLookup(file, u32At(s, 0));
  if (bo === null) return -ENOENT;
  new DataView(s.buffer, s.byteOffset, s.byteLength).setBigUint64(
    8,
    BigInt(drmVmaNodeOffsetAddr(bo.vmaNode)),
    true,
  );
  return copyStructToUser(proc, arg, s);
}

function primeHandleToFd(file: File, arg: number, proc: Process): number {
  const s = copyStructFromUser(proc, arg, 12);
  if (s === null) return -EFAULT;
  const flags = u32At(s, 4);
  if ((flags & ~(DRM_CLOEXEC | DRM_RDWR)) !== 0) return -EINVAL;
  const fd = drmGemPrimeHandleToFd(file, u32At(s, 0), flags, proc);
  if (fd < 0) return fd;
  new DataView(s.buffer, s.byteOffset, s.byteLength).setInt32(8, fd, true);
  return copyStructToUser(proc, arg, s);
}

function closeHandle(file: File, arg: number, proc: Process, size: number): number {
  const s = copyStructFromUser(proc, arg, size);
  if (s === null) return -EFAULT;
  return drmGemHandleDelete(file, u32At(s, 0));
}

/** `drm_ioctl()` for the ioctls above; anything else is -ENOTTY. */
export function drmIoctl(file: File, cmd: number, arg: number, current: Process): number {
  switch (cmd) {
    case DRM_IOCTL_MODE_CREATE_DUMB:
      return createDumb(file, arg, current);
    case DRM_IOCTL_MODE_MAP_DUMB:
      return mapDumb(file, arg, current);
    case DRM_IOCTL_PRIME_HANDLE_TO_FD:
      return primeHandleToFd(file, arg, current);
    case DRM_IOCTL_MODE_DESTROY_DUMB:
      return closeHandle(file, arg, current, 4);
    case DRM_IOCTL_GEM_CLOSE:
      return closeHandle(file, arg, current, 8);
    default:
      return -ENOTTY;
  }
}
