/**
 * Freeing a released buffer object's memory (the end of `ttm_bo_release`
 * and the delayed-delete work): its resource goes back to its manager, its
 * tt pages to the DMA API, its reservation object away. An object released
 * while a move of it was in flight (a zombie) is freed when the move's
 * fence has signalled.
 */

import type { Machine } from '../../machine/index.js';
import { switchResource } from './resource.js';
import { type BdevState, type BoObjState, boState } from './state.js';
import { resvFini, resvKernelIdle } from './sync.js';
import { ttFreePages, ttTakePages } from './tt.js';

/** Frees a released object's memory now. */
export function freeBo(m: Machine, bdev: BdevState, bo: BoObjState): void {
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
    if (bo === undefined || !resvKernelIdle(m, bo.resv)) continue;
    bdev.zombies.splice(bdev.zombies.indexOf(id), 1);
    freeBo(m, bdev, bo);
  }
}
