/**
 * Freeing a released buffer object's memory (the end of `ttm_bo_release`
 * and the delayed-delete work): its resource goes back to its manager, its
 * tt pages to the DMA API, its reservation object away. An object released
 * while a move of it was in flight (a zombie) is freed when the move's
 * fence has signalled.
 */

import {
  DMA_RESV_USAGE_BOOKKEEP,
  dmaFenceAddCallback,
  dmaFencePut,
  dmaResvGetFences,
  dmaResvTestSignaled,
  dmaResvWaitTimeout,
  MAX_SCHEDULE_TIMEOUT,
  registerDmaFenceFunc,
  resvHandle,
} from '../../dmabuf/index.js';
import { EBUSY, type Machine } from '../../machine/index.js';
import { lruDel, switchResource } from './resource.js';
import { type BdevState, type BoObjState, bdevState, boState } from './state.js';
import { resvFini, resvIdle } from './sync.js';
import { ttFreePages, ttTakePages } from './tt.js';

/** Frees a released object's memory now. */
export function freeBo(m: Machine, bdev: BdevState, bo: BoObjState): void {
  lruDel(bdev, bo);
  switchResource(bdev, bo, null);
  if (bo.tt !== null) ttFreePages(m.devices[bdev.device]!, bdev, ttTakePages(bo.tt));
  bo.tt = null;
  if (bo.ownResv) resvFini(m, bo.resv);
  boState(m).bos.delete(bo.id);
  if (m.bus.wants['bo-destroy']) m.bus.emit({ type: 'bo-destroy', bo: bo.id, device: bdev.name });
}

/** `ttm_bo_delayed_delete()`: zombies whose moves have completed are freed. */
export function freeZombies(m: Machine, bdev: BdevState): void {
  for (const id of bdev.zombies.slice()) {
    const bo = boState(m).bos.get(id);
    if (bo === undefined || !resvIdle(m, bo.resv)) continue;
    bdev.zombies.splice(bdev.zombies.indexOf(id), 1);
    freeBo(m, bdev, bo);
  }
}

const DELAYED_DELETE = 'ttm-bo-delayed-delete';

registerDmaFenceFunc(DELAYED_DELETE, (fence, data) => {
  freeZombies(fence.machine, bdevState(fence.machine, data as number));
});

/**
 * Queues the delayed delete of a busy released object (`ttm_bo_release`
 * queueing `ttm_bo_delayed_delete`, which waits for every fence, BOOKKEEP
 * included): it runs as each pending fence signals, and the move-done job
 * runs it too.
 */
export function queueDelayedDelete(m: Machine, bdev: BdevState, bo: BoObjState): void {
  bo.deleted = true;
  bdev.zombies.push(bo.id);
  for (const f of dmaResvGetFences(resvHandle(m, bo.resv), DMA_RESV_USAGE_BOOKKEEP)) {
    dmaFenceAddCallback(f, DELAYED_DELETE, bdev.id);
    dmaFencePut(f);
  }
}

/**
 * A released object met on an LRU walk (`ttm_bo_evict_cb`/`ttm_bo_swapout_cb`
 * on a deleted object): waits for every fence (-EBUSY instead with
 * no_wait_gpu) and frees it. 0 when its memory is back.
 */
export function reclaimZombie(m: Machine, bdev: BdevState, bo: BoObjState, noWaitGpu: boolean): number {
  const r = resvHandle(m, bo.resv);
  if (
    noWaitGpu
      ? !dmaResvTestSignaled(r, DMA_RESV_USAGE_BOOKKEEP)
      : dmaResvWaitTimeout(r, DMA_RESV_USAGE_BOOKKEEP, true, MAX_SCHEDULE_TIMEOUT) <= 0
  )
    return -EBUSY;
  // The fences' signalling may already have run the delayed delete.
  if (!boState(m).bos.has(bo.id)) return 0;
  const i = bdev.zombies.indexOf(bo.id);
  if (i >= 0) bdev.zombies.splice(i, 1);
  freeBo(m, bdev, bo);
  return 0;
}
