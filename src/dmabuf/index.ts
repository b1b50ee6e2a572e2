/**
 * dma-buf (drivers/dma-buf/): sharing a buffer between devices and
 * processes. The exporter wraps its memory with `dmaBufExport` and a
 * `DmaBufOps` table; importers attach their devices and map the buffer;
 * user space gets an fd it can mmap and bracket with DMA_BUF_IOCTL_SYNC;
 * heaps are ready exporters behind /dev/dma_heap. Fences and reservation
 * objects (dma-fence.c, dma-fence-array.c, dma-fence-unwrap.c, dma-resv.c),
 * device work gated on fences (drm_sched-like) and sync_file live here too.
 */

import type { Machine } from '../machine/index.js';
import { initFence } from './fence-state.js';
import { registerDmaHeaps } from './heaps/heaps.js';
import { initDmaBuf } from './state.js';

// ---- dma-buf core (helper dmabuf) ----
export {
  dmaBufAttach,
  dmaBufAttachmentIsDynamic,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufIsDynamic,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufMoveNotify,
  dmaBufPin,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
} from './attach.js';
export {
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufMmap,
  dmaBufVmap,
  dmaBufVmapUnlocked,
  dmaBufVunmap,
  dmaBufVunmapUnlocked,
} from './cpu-access.js';
export {
  type DmaBufExportInfo,
  dmaBufExport,
  dmaBufFd,
  dmaBufGet,
  dmaBufPut,
  dmaBufSetBacking,
  getDmaBuf,
} from './dma-buf.js';
// ---- fences, reservation objects, gated jobs (helper fence) ----
export {
  DMA_FENCE_SIGNAL_JOB,
  type DmaFenceFunc,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceCheckAndSignal,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceGetStub,
  dmaFenceInit,
  dmaFenceInit64,
  dmaFenceIsLater,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceSignalTimestamp,
  dmaFenceWait,
  dmaFenceWaitAnyTimeout,
  dmaFenceWaitTimeout,
  HUNG_TASK,
  MAX_SCHEDULE_TIMEOUT,
  registerDmaFenceFunc,
} from './fence.js';
export {
  dmaFenceArrayCreate,
  dmaFenceIsContainer,
  dmaFenceUnwrapForEach,
  dmaFenceUnwrapMerge,
} from './fence-array.js';
export {
  DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
  DMA_FENCE_FLAG_SEQNO64_BIT,
  DMA_FENCE_FLAG_SIGNALED_BIT,
  DMA_FENCE_FLAG_TIMESTAMP_BIT,
  DMA_FENCE_FLAG_USER_BITS,
  DmaFence,
  DmaResv,
  EALREADY,
  EDEADLK,
  ERESTARTSYS,
  ETIME,
  fenceHandle,
  initFence,
  MAX_ERRNO,
  resvHandle,
} from './fence-state.js';
export {
  CMA_HEAP,
  DMA_HEAP_IOCTL_ALLOC,
  DMA_HEAP_VALID_FD_FLAGS,
  DMA_HEAP_VALID_HEAP_FLAGS,
  dmaHeapBufferAlloc,
  dmaHeapNames,
} from './heaps/heaps.js';
export * from './resv.js';
export * from './sched.js';
export { DmaBuf, DmaBufAttachment, type DmaBufAttachOps, type DmaBufOps, type IosysMap } from './state.js';
export {
  SYNC_FENCE_INFO_SIZE,
  SYNC_FILE_INFO_SIZE,
  SYNC_IOC_FILE_INFO,
  SYNC_IOC_MERGE,
  SYNC_MERGE_DATA_SIZE,
  SyncFile,
  syncFileCreate,
  syncFileGetFence,
} from './sync-file.js';
export {
  copyStructFromUser,
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
  DMA_BUF_IOCTL_SYNC,
  DMA_BUF_NAME_LEN,
  DMA_BUF_SET_NAME_A,
  DMA_BUF_SET_NAME_B,
  DMA_BUF_SYNC_END,
  DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_RW,
  DMA_BUF_SYNC_START,
  DMA_BUF_SYNC_VALID_FLAGS_MASK,
  DMA_BUF_SYNC_WRITE,
  ioc,
  O_CLOEXEC,
  O_NONBLOCK,
  u32At,
} from './uapi.js';

/**
 * The dma-buf layer's boot: its state (fences first), then the heaps' device files.
 * Boot work is not a step of the run.
 */
export function initDmaBufLayer(m: Machine): void {
  initFence(m);
  initDmaBuf(m);
  const step = m.clock.step;
  registerDmaHeaps(m);
  m.clock.step = step;
}
