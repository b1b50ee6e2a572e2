/**
 * The machinery behind every change of a buffer object's backing
 * (ttm_bo.c, ttm_bo_util.c): finding room (allocation, then eviction in
 * LRU order), `ttm_bo_handle_move_mem` (user PTEs shot down first, the
 * driver's move, the LRU tail), the GPU driver's move callback with its
 * pipelined copies, population under the page limit, and swap-out.
 * bo.ts is the API over it.
 */

import { dmaResvCopyFences, resvHandle } from '../../dmabuf/index.js';
import { EBUSY, ENOSPC, type Machine, PAGE_SIZE } from '../../machine/index.js';
import { AddressSpace } from '../../mm/index.js';
import {
  TTM_PL_FLAG_DESIRED,
  TTM_PL_FLAG_FALLBACK,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_TT_FLAG_EXTERNAL,
  TTM_TT_FLAG_ZERO_ALLOC,
  ttm_bo_type_device,
} from '../consts.js';
import { type CopySide, gpuCopy, gpuEvictFlags, gpuTtCaching, vramAddr } from '../gpu.js';
import { backingPfns, boHandle, placementName } from '../handles.js';
import { drmVmaNodeUnmap } from '../vma-manager.js';
import { primeMoveNotify, primeSetBacking } from './prime-notify.js';
import { queueDelayedDelete, reclaimZombie } from './release.js';
import {
  evictionValuable,
  gartBind,
  lruDel,
  lruTail,
  resourceAlloc,
  resourceFree,
  switchResource,
} from './resource.js';
import {
  type BdevState,
  type BoObjState,
  bdevState,
  boState,
  type ResourceState,
  type TtmOperationCtx,
  type TtmPlace,
  type TtmPlacement,
} from './state.js';
import {
  moveFenceSignaled,
  resvAddKernelFence,
  resvCreate,
  resvHeld,
  resvIdle,
  resvLock,
  resvUnlock,
  resvWaitAll,
  setManagerMove,
} from './sync.js';
import { type TtPage, ttCreate, ttFreePages, ttPopulate, ttSwapout, ttTakePages } from './tt.js';

export function devOf(m: Machine, bdev: BdevState) {
  return m.devices[bdev.device]!;
}

export function emitMove(
  m: Machine,
  bdev: BdevState,
  bo: BoObjState,
  from: string,
  reason: 'validate' | 'evict' | 'populate' | 'swapout',
  unmapped: boolean,
): void {
  if (!m.bus.wants['bo-move']) return;
  m.bus.emit({
    type: 'bo-move',
    bo: bo.id,
    device: bdev.name,
    from,
    to: placementName(bo),
    pfns: backingPfns(m, bo),
    reason,
    unmapped,
  });
}

/** The device's shared address space (`bdev->dev_mapping`), once a file of it has been mmapped. */
function devMapping(m: Machine, bdev: BdevState): AddressSpace | null {
  return bdev.mappingId < 0 ? null : new AddressSpace(m, bdev.mappingId);
}

export function unmapVirtual(m: Machine, bo: BoObjState): void {
  const mapping = devMapping(m, bdevState(m, bo.bdev));
  if (mapping !== null) drmVmaNodeUnmap(boHandle(m, bo.id).vmaNode, mapping);
}

/**
 * `ttm_bo_populate()` with the old global memory accounting: populating a
 * tt beyond the device's page limit first swaps other objects out, least
 * recently used first (`ttm_bo_swapout`); the limit is soft. Returns 0 or
 * the page allocation's errno.
 */
export function populate(m: Machine, bdev: BdevState, bo: BoObjState, ctx: TtmOperationCtx): number {
  const tt = bo.tt;
  if (tt === null || tt.populated) return 0;
  const over = bdev.ttPages + bo.pages - bdev.ttPagesLimit;
  if (over > 0) {
    for (const man of [bdev.man[TTM_PL_SYSTEM]!, bdev.man[TTM_PL_TT]!]) {
      const need = bdev.ttPages + bo.pages - bdev.ttPagesLimit;
      if (need <= 0) break;
      swapout(m, bdev, ctx, man.memType, need * PAGE_SIZE, bo.id);
    }
    // The limit is soft: when nothing more can be swapped out the kernel
    // stops trying and allocates anyway (ttm_tt_populate's swapout loop).
  }
  return ttPopulate(m, devOf(m, bdev), bdev, tt);
}

/**
 * The GPU driver's `move` callback: between SYSTEM and TT only the GART
 * binding changes; to or from VRAM the copy engine moves the bytes
 * (pipelined: the fence goes into the object's reservation object, the old
 * tt pages are freed when the copy is done, the old VRAM range is reusable
 * behind the manager's move fence).
 */
function driverMove(
  m: Machine,
  bdev: BdevState,
  bo: BoObjState,
  res: ResourceState,
  ctx: TtmOperationCtx,
): number {
  const old = bo.resource;
  const oldTt = old === null || bdev.man[old.memType]!.useTt;
  const newTt = bdev.man[res.memType]!.useTt;
  if (oldTt && newTt) {
    if (res.memType === TTM_PL_TT) {
      const r = populate(m, bdev, bo, ctx);
      if (r !== 0) return r;
      gartBind(bdev, res.start, bo.tt!.dma);
    }
    switchResource(bdev, bo, res);
    return 0;
  }
  let src: CopySide | null = null;
  let free: TtPage[] = [];
  if (!oldTt) {
    src = { local: true, addrs: Array.from({ length: bo.pages }, (_, i) => vramAddr(bdev, old!.start + i)) };
  } else if (bo.tt !== null && (bo.tt.populated || bo.tt.swap !== null)) {
    const r = populate(m, bdev, bo, ctx);
    if (r !== 0) return r;
    src = { local: false, addrs: bo.tt.dma.slice() };
  }
  let dst: CopySide;
  if (newTt) {
    if (bo.tt === null) ttCreate(bo, gpuTtCaching(m, bdev));
    const r = populate(m, bdev, bo, ctx);
    if (r !== 0) return r;
    dst = { local: false, addrs: bo.tt!.dma.slice() };
    if (res.memType === TTM_PL_TT) gartBind(bdev, res.start, dst.addrs);
  } else {
    dst = { local: true, addrs: Array.from({ length: bo.pages }, (_, i) => vramAddr(bdev, res.start + i)) };
    // Moving into VRAM, the tt is destroyed once its pages have been copied out.
    if (bo.tt !== null) {
      free = ttTakePages(bo.tt);
      bo.tt = null;
    }
  }
  const fence = gpuCopy(m, bdev, src, dst, free);
  resvAddKernelFence(m, bo.resv, fence);
  if (!oldTt) setManagerMove(m, bdev, old!.memType, fence);
  switchResource(bdev, bo, res);
  return 0;
}

/**
 * `ttm_bo_handle_move_mem()`: user PTEs go first, then the driver moves the
 * object; the resource joins its manager's LRU tail.
 */
export function handleMoveMem(
  m: Machine,
  bo: BoObjState,
  res: ResourceState,
  evict: boolean,
  ctx: TtmOperationCtx,
): number {
  const bdev = bdevState(m, bo.bdev);
  const unmapped = !bdev.bugs.includes('no-unmap-on-move');
  if (unmapped) unmapVirtual(m, bo);
  const from = placementName(bo);
  primeMoveNotify(m, bo);
  if (bdev.man[res.memType]!.useTt && bo.tt === null) ttCreate(bo, gpuTtCaching(m, bdev));
  const r = driverMove(m, bdev, bo, res, ctx);
  if (r !== 0) {
    resourceFree(bdev, res);
    return r;
  }
  ctx.bytesMoved += bo.size;
  lruTail(bdev, bo);
  primeSetBacking(m, bo);
  emitMove(m, bdev, bo, from, evict ? 'evict' : 'validate', unmapped);
  return 0;
}

/**
 * `ttm_buffer_object_transfer()` as gutting uses it: a ghost object takes
 * the BO's resource (in its place on its LRU or the unevictable list) and
 * `tt`, with a reservation object of its own holding copies of the BO's
 * unsignalled fences; dropped at once, it is freed by the delayed delete
 * when they have all signalled. The BO keeps its fences.
 */
function transferToGhost(m: Machine, bdev: BdevState, bo: BoObjState, tt: BoObjState['tt']): void {
  const st = boState(m);
  const id = st.nextBo++;
  const ghost: BoObjState = {
    ...bo,
    id,
    pinCount: 0,
    refs: 0,
    tt,
    nodeStart: 0,
    nodePages: 0,
    allowed: [],
    resv: resvCreate(m),
    ownResv: true,
    dmabuf: -1,
  };
  st.bos.set(id, ghost);
  for (const list of [bdev.unevictable, ...bdev.man.flatMap((man) => man.lru)]) {
    const i = list.indexOf(bo.id);
    if (i >= 0) list[i] = id;
  }
  bo.resource = null;
  resvLock(m, ghost.resv);
  dmaResvCopyFences(resvHandle(m, ghost.resv), resvHandle(m, bo.resv));
  resvUnlock(m, ghost.resv);
  queueDelayedDelete(m, bdev, ghost);
}

/**
 * `ttm_bo_pipeline_gutting()` (drivers/gpu/drm/ttm/ttm_bo_util.c), what
 * `ttm_bo_validate` does with an empty placement: the object loses its
 * backing store and is left with no resource at all (`placementName`
 * 'none', on no LRU) and an unpopulated tt whose pages will be cleared if
 * it is ever populated again. Idle (every fence signalled), its memory is
 * released now: the tt is unpopulated, the resource freed. Busy, nothing
 * waits: a ghost object takes the old resource and tt and frees them when
 * the fences signal (see `transferToGhost`); the object gets a new tt.
 * User PTEs are not shot down (the kernel's gutting does not call
 * `ttm_bo_unmap_virtual`, unlike `ttm_bo_handle_move_mem`): a driver
 * purging a mapped object unmaps it first, or the checker reports the
 * surviving mapping (BO_STALE_PTE). Returns 0.
 */
export function pipelineGutting(m: Machine, bo: BoObjState): number {
  const bdev = bdevState(m, bo.bdev);
  const from = placementName(bo);
  const caching = gpuTtCaching(m, bdev);
  if (resvIdle(m, bo.resv)) {
    if (bo.tt === null) {
      ttCreate(bo, caching).pageFlags |= TTM_TT_FLAG_ZERO_ALLOC;
    } else {
      // ttm_tt_unpopulate (a swapped-out tt keeps its swap), then ttm_tt_mark_for_clear.
      ttFreePages(devOf(m, bdev), bdev, ttTakePages(bo.tt));
      if (bo.type === ttm_bo_type_device) bo.tt.pageFlags |= TTM_TT_FLAG_ZERO_ALLOC;
    }
    lruDel(bdev, bo);
    switchResource(bdev, bo, null);
  } else {
    const old = bo.tt;
    bo.tt = null;
    ttCreate(bo, caching).pageFlags |= TTM_TT_FLAG_ZERO_ALLOC;
    transferToGhost(m, bdev, bo, old);
  }
  emitMove(m, bdev, bo, from, 'validate', false);
  return 0;
}

/** `ttm_bo_add_move_fence()`: the new resource is usable once the last move out of its range is done. */
function addMoveFence(
  m: Machine,
  bdev: BdevState,
  bo: BoObjState,
  memType: number,
  ctx: TtmOperationCtx,
): number {
  const f = bdev.man[memType]!.move;
  if (f < 0 || moveFenceSignaled(m, f)) return 0;
  if (ctx.noWaitGpu) return -EBUSY;
  resvAddKernelFence(m, bo.resv, f);
  return 0;
}

/**
 * `ttm_bo_evict()`: the driver's `evict_flags` choose where the victim
 * goes; finding space there may evict in turn.
 */
export function evict(m: Machine, victim: BoObjState, ctx: TtmOperationCtx): number {
  const placement = gpuEvictFlags(victim);
  const res = memSpace(m, victim, placement, ctx);
  if (typeof res === 'number') return res;
  return handleMoveMem(m, victim, res, true, ctx);
}

/**
 * `ttm_bo_evict_alloc()`: walks the manager's LRUs, lowest priority first
 * and least recently used first, evicting until the allocation fits.
 * Pinned objects, the object being placed and objects outside the wanted
 * range are skipped. -EBUSY when nothing could be evicted.
 */
function evictAlloc(
  m: Machine,
  bdev: BdevState,
  place: TtmPlace,
  bo: BoObjState,
  ctx: TtmOperationCtx,
): ResourceState | number {
  const man = bdev.man[place.memType]!;
  for (;;) {
    let victim: BoObjState | undefined;
    for (const list of man.lru) {
      for (const id of list) {
        const v = boState(m).bos.get(id);
        // The walk only trylocks: an object someone holds reserved is passed over.
        if (v === undefined || v.id === bo.id || v.pinCount > 0 || v.resource === null || resvHeld(m, v.resv))
          continue;
        if (!evictionValuable(v.resource, place)) continue;
        victim = v;
        break;
      }
      if (victim !== undefined) break;
    }
    if (victim === undefined) return -EBUSY;
    if (victim.deleted) {
      const r = reclaimZombie(m, bdev, victim, ctx.noWaitGpu);
      if (r !== 0) return r;
      const res = resourceAlloc(man, place, bo);
      if (typeof res !== 'number') return res;
      continue;
    }
    resvLock(m, victim.resv);
    const r = evict(m, victim, ctx);
    resvUnlock(m, victim.resv);
    if (r !== 0) return r;
    const res = resourceAlloc(man, place, bo);
    if (typeof res !== 'number') return res;
  }
}

/**
 * `ttm_bo_alloc_resource()`: tries each place in order; with `forceSpace`
 * a full non-system place is made room in by eviction.
 */
export function allocResource(
  m: Machine,
  bo: BoObjState,
  placement: TtmPlacement,
  ctx: TtmOperationCtx,
  forceSpace: boolean,
): ResourceState | number {
  const bdev = bdevState(m, bo.bdev);
  for (let i = 0; i < placement.numPlacement; i++) {
    const place = placement.placement[i]!;
    const man = bdev.man[place.memType];
    if (man === undefined || !man.usable) continue;
    if ((place.flags & (forceSpace ? TTM_PL_FLAG_DESIRED : TTM_PL_FLAG_FALLBACK)) !== 0) continue;
    let res = resourceAlloc(man, place, bo);
    if (res === -ENOSPC) {
      if (!forceSpace || place.memType === TTM_PL_SYSTEM) continue;
      res = evictAlloc(m, bdev, place, bo, ctx);
      if (res === -EBUSY) continue;
    }
    if (typeof res === 'number') return res;
    if (addMoveFence(m, bdev, bo, place.memType, ctx) !== 0) {
      resourceFree(bdev, res);
      continue;
    }
    return res;
  }
  return -ENOSPC;
}

export function memSpace(
  m: Machine,
  bo: BoObjState,
  placement: TtmPlacement,
  ctx: TtmOperationCtx,
): ResourceState | number {
  const r = allocResource(m, bo, placement, ctx, false);
  return r !== -ENOSPC ? r : allocResource(m, bo, placement, ctx, true);
}

/**
 * The swap-out walk shared by `ttmBoSwapout` and memory pressure: LRU order,
 * trylock only (here: objects not reserved), skipping pinned, unpopulated,
 * imported and already swapped objects and `skip`; a TT object goes to
 * SYSTEM first. Returns the bytes swapped out.
 */
export function swapout(
  m: Machine,
  bdev: BdevState,
  ctx: TtmOperationCtx,
  memType: number,
  target: number,
  skip: number,
): number {
  const man = bdev.man[memType]!;
  let done = 0;
  for (const list of man.lru) {
    for (const id of list.slice()) {
      if (done >= target) return done;
      const bo = boState(m).bos.get(id);
      if (bo === undefined || bo.id === skip || bo.pinCount > 0 || resvHeld(m, bo.resv)) continue;
      if (bo.deleted) {
        reclaimZombie(m, bdev, bo, ctx.noWaitGpu);
        continue;
      }
      const tt = bo.tt;
      if (tt === null || !tt.populated || (tt.pageFlags & TTM_TT_FLAG_EXTERNAL) !== 0) continue;
      resvLock(m, bo.resv);
      if (bo.resource!.memType !== TTM_PL_SYSTEM) {
        const sys = resourceAlloc(
          bdev.man[TTM_PL_SYSTEM]!,
          { fpfn: 0, lpfn: 0, memType: TTM_PL_SYSTEM, flags: 0 },
          bo,
        );
        if (handleMoveMem(m, bo, sys as ResourceState, true, ctx) !== 0) {
          resvUnlock(m, bo.resv);
          continue;
        }
      }
      // ttm_bo_wait_ctx: every fence; with no_wait_gpu a busy object is skipped (-EBUSY).
      if (ctx.noWaitGpu ? !resvIdle(m, bo.resv) : resvWaitAll(m, bo.resv) < 0) {
        resvUnlock(m, bo.resv);
        continue;
      }
      unmapVirtual(m, bo);
      primeMoveNotify(m, bo);
      const r = ttSwapout(m, devOf(m, bdev), bdev, tt);
      if (r > 0) {
        done += r;
        lruTail(bdev, bo);
        primeSetBacking(m, bo);
        emitMove(m, bdev, bo, 'system', 'swapout', true);
      }
      resvUnlock(m, bo.resv);
    }
  }
  return done;
}

/** Internal: populate for the fault path (`ttm_bo_populate`). */
export function boPopulate(m: Machine, bo: BoObjState, ctx: TtmOperationCtx): number {
  const bdev = bdevState(m, bo.bdev);
  const was = bo.tt?.populated ?? true;
  const from = placementName(bo);
  const r = populate(m, bdev, bo, ctx);
  if (r === 0 && !was) {
    lruTail(bdev, bo);
    primeSetBacking(m, bo);
    emitMove(m, bdev, bo, from, 'populate', true);
  }
  return r;
}
