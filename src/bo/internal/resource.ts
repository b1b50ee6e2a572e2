/**
 * Resource managers and LRUs (drivers/gpu/drm/ttm/ttm_resource.c,
 * ttm_range_manager.c, ttm_sys_manager.c): a range manager hands out page
 * ranges of VRAM or of the GART aperture, the system manager has no limit;
 * each manager keeps one LRU per priority, least recently used first, and
 * pinned or swapped BOs sit on the device's unevictable list instead.
 */

import {
  TTM_MAX_BO_PRIORITY,
  TTM_PL_FLAG_CONTIGUOUS,
  TTM_PL_FLAG_DESIRED,
  TTM_PL_FLAG_FALLBACK,
  TTM_PL_FLAG_TEMPORARY,
  TTM_PL_FLAG_TOPDOWN,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
} from '../consts.js';
import {
  DRM_MM_INSERT_BEST,
  DRM_MM_INSERT_HIGH,
  drmMmInit,
  drmMmInsertNodeInRange,
  drmMmRemoveNodeAt,
} from './drm-mm.js';
import type { BdevState, BoObjState, ManState, ResourceState, TtmPlace, TtmPlacement } from './state.js';

export function newManager(memType: number, size: number, useTt: boolean): ManState {
  const lru: number[][] = [];
  for (let i = 0; i < TTM_MAX_BO_PRIORITY; i++) lru.push([]);
  return { memType, useTt, usable: true, size, usage: 0, mm: drmMmInit(0, Math.max(size, 0)), lru, move: -1 };
}

/**
 * `ttm_range_man_alloc()`: `drm_mm_insert_node_in_range()` of the object's
 * pages inside [fpfn, lpfn) (lpfn 0: the manager's end), best fit
 * (DRM_MM_INSERT_BEST) or from the top with TTM_PL_FLAG_TOPDOWN
 * (DRM_MM_INSERT_HIGH). The first page, or -ENOSPC. The BO's page
 * alignment is not modelled (every range is page-aligned).
 */
function rangeAlloc(man: ManState, place: TtmPlace, pages: number, bo: number): number {
  const lpfn = place.lpfn === 0 ? man.size : place.lpfn;
  const mode = (place.flags & TTM_PL_FLAG_TOPDOWN) !== 0 ? DRM_MM_INSERT_HIGH : DRM_MM_INSERT_BEST;
  return drmMmInsertNodeInRange(man.mm, pages, bo, place.fpfn, lpfn, mode);
}

/** `ttm_resource_alloc()`: a resource for `bo` in `man` at `place`, or -ENOSPC. */
export function resourceAlloc(man: ManState, place: TtmPlace, bo: BoObjState): ResourceState | number {
  let start = 0;
  if (man.memType !== TTM_PL_SYSTEM) {
    start = rangeAlloc(man, place, bo.pages, bo.id);
    if (start < 0) return start;
  }
  man.usage += bo.pages;
  return { memType: man.memType, start, pages: bo.pages, placement: place.flags | TTM_PL_FLAG_CONTIGUOUS };
}

/** `ttm_resource_free()`: the range goes back to its manager. */
export function resourceFree(bdev: BdevState, res: ResourceState): void {
  const man = bdev.man[res.memType]!;
  man.usage -= res.pages;
  if (res.memType === TTM_PL_SYSTEM) return;
  drmMmRemoveNodeAt(man.mm, res.start);
}

/**
 * Replaces a BO's resource (null: none): the old one is unbound from the
 * GART if it was a TT range and goes back to its manager.
 */
export function switchResource(bdev: BdevState, bo: BoObjState, res: ResourceState | null): void {
  const old = bo.resource;
  if (old !== null) {
    if (old.memType === TTM_PL_TT) gartUnbind(bdev, old.start, old.pages);
    resourceFree(bdev, old);
  }
  bo.resource = res;
}

/** Takes a BO off whichever LRU or list holds it. */
export function lruDel(bdev: BdevState, bo: BoObjState): void {
  const drop = (list: number[]) => {
    const i = list.indexOf(bo.id);
    if (i >= 0) list.splice(i, 1);
  };
  drop(bdev.unevictable);
  for (const man of bdev.man) for (const l of man.lru) drop(l);
}

/**
 * `ttm_resource_add_bulk_move`/`ttm_bo_move_to_lru_tail()`: the BO goes to
 * the tail of its manager's LRU for its priority (most recently used), or
 * to the unevictable list while pinned or swapped.
 */
export function lruTail(bdev: BdevState, bo: BoObjState): void {
  lruDel(bdev, bo);
  const res = bo.resource;
  if (res === null) return;
  if (bo.pinCount > 0 || (bo.tt?.swap ?? null) !== null) bdev.unevictable.push(bo.id);
  else bdev.man[res.memType]!.lru[bo.priority]!.push(bo.id);
}

function placeMatches(res: ResourceState, place: TtmPlace): boolean {
  if (place.memType !== res.memType) return false;
  if (res.memType === TTM_PL_SYSTEM) return true;
  const lpfn = place.lpfn === 0 ? Number.MAX_SAFE_INTEGER : place.lpfn;
  return res.start >= place.fpfn && res.start + res.pages <= lpfn;
}

/** `ttm_resource_compatible()`: does the current resource already satisfy the placement? */
export function resourceCompatible(
  res: ResourceState | null,
  placement: TtmPlacement,
  evicting: boolean,
): boolean {
  if (res === null || (res.placement & TTM_PL_FLAG_TEMPORARY) !== 0) return false;
  for (let i = 0; i < placement.numPlacement; i++) {
    const place = placement.placement[i]!;
    if (evicting && (place.flags & TTM_PL_FLAG_DESIRED) !== 0) continue;
    if (!evicting && (place.flags & TTM_PL_FLAG_FALLBACK) !== 0) continue;
    if (placeMatches(res, place)) return true;
  }
  return false;
}

/** `ttm_bo_eviction_valuable()`'s default: SYSTEM always; else the resource overlaps the wanted range. */
export function evictionValuable(res: ResourceState, place: TtmPlace): boolean {
  if (res.memType === TTM_PL_SYSTEM) return true;
  const lpfn = place.lpfn === 0 ? Number.MAX_SAFE_INTEGER : place.lpfn;
  return res.start < lpfn && res.start + res.pages > place.fpfn;
}

/** Programs GART entries for a TT range (the driver's `ttm_tt` bind). */
export function gartBind(bdev: BdevState, start: number, dma: readonly number[]): void {
  for (let i = 0; i < dma.length; i++) bdev.gart[start + i] = dma[i]!;
}

/** Clears GART entries (unbind). */
export function gartUnbind(bdev: BdevState, start: number, pages: number): void {
  bdev.gart.fill(-1, start, start + pages);
}
