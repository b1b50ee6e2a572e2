/**
 * Move fences and reservation objects as TTM uses them, on the dma-buf
 * layer's `dma_fence` and `dma_resv`: a pipelined move signals a fence on
 * the device's copy-engine timeline and adds it to the object's
 * reservation object with KERNEL usage; faults and evictions wait for
 * KERNEL fences only; swap-out and release wait for every fence
 * (BOOKKEEP), and gutting hands a busy object's memory to a ghost that
 * waits for them. State keeps ids; the handles come from the dmabuf
 * layer.
 */

import {
  DMA_RESV_USAGE_BOOKKEEP,
  DMA_RESV_USAGE_KERNEL,
  type DmaFence,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceInit,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceSignal,
  dmaResvAddFence,
  dmaResvFini,
  dmaResvInit,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvTestSignaled,
  dmaResvUnlock,
  dmaResvWaitTimeout,
  fenceHandle,
  MAX_SCHEDULE_TIMEOUT,
  resvHandle,
} from '../../dmabuf/index.js';
import type { Machine } from '../../machine/index.js';
import { type BdevState, boState } from './state.js';

/** The copy engine's fences (`dma_fence_ops` of a driver's move fences). */
const moveFenceOps: DmaFenceOps = {
  getDriverName: () => 'ttm',
  getTimelineName: (f: DmaFence) => {
    const b = boState(f.machine).bdevs.find((d) => d.fenceContext === f.context);
    return b === undefined ? 'copy' : `${b.name}.copy`;
  },
};

/** A fence context for a device's copy engine (`dma_fence_context_alloc`). */
export function copyEngineContext(m: Machine): number {
  return dmaFenceContextAlloc(m, 1);
}

/** A new unsignalled move fence on the device's copy-engine timeline; the caller owns the reference. */
export function moveFenceCreate(m: Machine, bdev: BdevState): number {
  return dmaFenceInit(m, moveFenceOps, bdev.fenceContext, ++bdev.fenceSeqno).id;
}

/** Signals a move fence and drops the job's reference. */
export function moveFenceSignalPut(m: Machine, id: number): void {
  const f = fenceHandle(m, id);
  dmaFenceSignal(f);
  dmaFencePut(f);
}

export function moveFenceSignaled(m: Machine, id: number): boolean {
  return dmaFenceIsSignaled(fenceHandle(m, id));
}

/** `man->move = dma_fence_get(fence)`, dropping the previous one. */
export function setManagerMove(m: Machine, bdev: BdevState, memType: number, id: number): void {
  const man = bdev.man[memType]!;
  if (man.move >= 0) dmaFencePut(fenceHandle(m, man.move));
  man.move = dmaFenceGet(fenceHandle(m, id)).id;
}

/** `dma_resv_init()`: the object's reservation object id. */
export function resvCreate(m: Machine): number {
  return dmaResvInit(m).id;
}

export function resvFini(m: Machine, resv: number): void {
  dmaResvFini(resvHandle(m, resv));
}

export function resvLock(m: Machine, resv: number): number {
  return dmaResvLock(resvHandle(m, resv), null);
}

export function resvUnlock(m: Machine, resv: number): void {
  dmaResvUnlock(resvHandle(m, resv));
}

export function resvHeld(m: Machine, resv: number): boolean {
  return dmaResvIsLocked(resvHandle(m, resv));
}

/** `dma_resv_reserve_fences(resv, 1)` + `dma_resv_add_fence(resv, fence, DMA_RESV_USAGE_KERNEL)`. */
export function resvAddKernelFence(m: Machine, resv: number, fenceId: number): void {
  const r = resvHandle(m, resv);
  dmaResvReserveFences(r, 1);
  dmaResvAddFence(r, fenceHandle(m, fenceId), DMA_RESV_USAGE_KERNEL);
}

/** `dma_resv_test_signaled(resv, DMA_RESV_USAGE_KERNEL)`. */
export function resvKernelIdle(m: Machine, resv: number): boolean {
  return dmaResvTestSignaled(resvHandle(m, resv), DMA_RESV_USAGE_KERNEL);
}

/** `dma_resv_wait_timeout(resv, DMA_RESV_USAGE_KERNEL, true, MAX_SCHEDULE_TIMEOUT)`. */
export function resvWaitKernel(m: Machine, resv: number): number {
  return dmaResvWaitTimeout(resvHandle(m, resv), DMA_RESV_USAGE_KERNEL, true, MAX_SCHEDULE_TIMEOUT);
}

/** `dma_resv_test_signaled(resv, DMA_RESV_USAGE_BOOKKEEP)`: every fence, the driver's bookkeeping ones included. */
export function resvIdle(m: Machine, resv: number): boolean {
  return dmaResvTestSignaled(resvHandle(m, resv), DMA_RESV_USAGE_BOOKKEEP);
}

/** `dma_resv_wait_timeout(resv, DMA_RESV_USAGE_BOOKKEEP, true, MAX_SCHEDULE_TIMEOUT)`. */
export function resvWaitAll(m: Machine, resv: number): number {
  return dmaResvWaitTimeout(resvHandle(m, resv), DMA_RESV_USAGE_BOOKKEEP, true, MAX_SCHEDULE_TIMEOUT);
}
