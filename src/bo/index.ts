/**
 * Migratable buffer objects (DRM/TTM, seed 004): a GPU model with VRAM, a
 * GART aperture and a copy engine; TTM's buffer objects with placements,
 * LRUs, eviction and swap-out; fake-offset mmap and the fault handler that
 * re-points a user's PTEs at wherever the object lives now.
 */

export {
  ttmBoEvictFirst,
  ttmBoGet,
  ttmBoInitValidate,
  ttmBoMemSpace,
  ttmBoMoveToLruTail,
  ttmBoPin,
  ttmBoPut,
  ttmBoReserve,
  ttmBoSwapout,
  ttmBoUnmapVirtual,
  ttmBoUnpin,
  ttmBoUnreserve,
  ttmBoValidate,
  ttmOperationCtx,
  ttmResourceManagerEvictAll,
} from './bo.js';
export * from './consts.js';
export { type AddGpuOptions, addGpu, type GpuBug } from './device.js';
export { drmFops } from './drm-file.js';
export { gpuBoPlacementFromDomain } from './gpu.js';
export { DrmVmaOffsetManager, DrmVmaOffsetNode, TtmBufferObject, TtmDevice } from './handles.js';
export { initBo, type TtmOperationCtx, type TtmPlace, type TtmPlacement } from './internal/state.js';
export { drmGemPrimeExport, drmGemPrimeHandleToFd, ttmDmaBufOps } from './prime.js';
export {
  DRM_CLOEXEC,
  DRM_IOCTL_GEM_CLOSE,
  DRM_IOCTL_MODE_CREATE_DUMB,
  DRM_IOCTL_MODE_DESTROY_DUMB,
  DRM_IOCTL_MODE_MAP_DUMB,
  DRM_IOCTL_PRIME_HANDLE_TO_FD,
  DRM_RDWR,
  drmIoctl,
} from './uapi.js';
export {
  drmGemHandleCreate,
  drmGemHandleDelete,
  drmGemMmap,
  drmGemObjectLookup,
  ttmBoMmapObj,
  ttmBoVmClose,
  ttmBoVmFault,
  ttmBoVmFaultReserved,
  ttmBoVmOpen,
  ttmBoVmOps,
  ttmIoProt,
} from './vm.js';
export * from './vma-manager.js';
