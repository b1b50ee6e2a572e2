/**
 * The dma-buf layer's public face. Fences and reservation objects
 * (dma-fence.c, dma-fence-array.c, dma-fence-unwrap.c, dma-resv.c), device
 * work gated on fences (a drm_sched-like scheduler), and sync_file.
 */

export {
  type DmaFenceFunc,
  type DmaFenceOps,
  dmaFenceAddCallback,
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
export * from './resv.js';
export * from './sched.js';
