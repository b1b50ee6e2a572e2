/**
 * Buffer objects (drivers/gpu/drm/ttm/ttm_bo.c, ttm_bo_util.c): creation,
 * reservation, validation into a placement, eviction when a placement is
 * full (LRU order, pinned objects skipped), swap-out under pressure, and
 * release — the API. Every move goes through `handleMoveMem`
 * (internal/move.ts), which first shoots down every user PTE of the object
 * (`ttm_bo_unmap_virtual`), then lets the driver move the bytes; a
 * pipelined copy adds its fence to the object's reservation object with
 * KERNEL usage, which the fault handler waits for. Purging an object
 * (validate with an empty placement) is not a move: as in the kernel, it
 * leaves user PTEs to the driver.
 */

import { type DmaResv, EDEADLK } from '../dmabuf/index.js';
import {
  apiCall,
  DmalabError,
  EBUSY,
  EINVAL,
  ENOENT,
  ENOMEM,
  ENOSPC,
  type Machine,
  PAGE_SIZE,
  reportFinding,
  WARN,
} from '../machine/index.js';
import {
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  type TtmBoType,
  ttm_bo_type_device,
  ttm_bo_type_sg,
} from './consts.js';
import { gpuTtCaching } from './gpu.js';
import { boHandle, type TtmBufferObject, type TtmDevice } from './handles.js';
import {
  allocResource,
  evict,
  handleMoveMem,
  memSpace,
  pipelineGutting,
  swapout,
  unmapVirtual,
} from './internal/move.js';
import { freeBo, queueDelayedDelete, reclaimZombie } from './internal/release.js';
import { lruTail, resourceCompatible } from './internal/resource.js';
import {
  type BoObjState,
  bdevState,
  boState,
  type ResourceState,
  type TtmOperationCtx,
  type TtmPlacement,
} from './internal/state.js';
import { resvCreate, resvHeld, resvIdle, resvLock, resvUnlock } from './internal/sync.js';
import { ttCreate } from './internal/tt.js';
import { drmVmaOffsetAdd, drmVmaOffsetRemove } from './vma-manager.js';

/** A default `ttm_operation_ctx`: interruptible, may wait for the GPU. */
export function ttmOperationCtx(): TtmOperationCtx {
  return { interruptible: true, noWaitGpu: false, bytesMoved: 0 };
}

function assertHeld(m: Machine, bo: BoObjState, call: string): void {
  if (!resvHeld(m, bo.resv)) {
    reportFinding(
      m,
      WARN.code,
      `WARNING: ${call}: the buffer object’s reservation lock is not held (dma_resv_assert_held)`,
      {
        details: { bo: bo.id },
      },
    );
  }
}

/**
 * `ttm_bo_unmap_virtual()`: shoots down every user PTE of the object, in
 * every process, through its fake-offset range in the device's mapping.
 */
export function ttmBoUnmapVirtual(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_unmap_virtual', () => unmapVirtual(m, bo.state));
}

function checkPlacement(placement: TtmPlacement): void {
  if (
    typeof placement !== 'object' ||
    placement === null ||
    !Array.isArray(placement.placement) ||
    !Number.isInteger(placement.numPlacement) ||
    placement.numPlacement < 0 ||
    placement.numPlacement > placement.placement.length
  ) {
    throw new DmalabError(
      'must be a ttm_placement ({ numPlacement, placement: [{ fpfn, lpfn, memType, flags }] })',
      {
        field: 'placement',
      },
    );
  }
}

/**
 * `ttm_bo_mem_space()`: finds room for the object in the placement (first
 * without evicting, then evicting), returning the new resource (the
 * kernel's out-parameter) or -ENOSPC / -ENOMEM.
 */
export function ttmBoMemSpace(
  bo: TtmBufferObject,
  placement: TtmPlacement,
  ctx: TtmOperationCtx,
): ResourceState | number {
  const m = bo.machine;
  return apiCall(m, 'ttm_bo_mem_space', () => {
    checkPlacement(placement);
    return memSpace(m, bo.state, placement, ctx);
  });
}

/**
 * `ttm_bo_validate()` (drivers/gpu/drm/ttm/ttm_bo.c): makes the object live
 * in one of the placement's places, moving it there (the reservation must
 * be held). 0 at once, with nothing else done, when its resource already
 * satisfies the placement (`ttm_resource_compatible`); -EINVAL for a pinned
 * object that would have to move; -ENOMEM when no place has room even
 * after eviction. An empty placement (`numPlacement` 0) purges the object
 * instead, pinned or not (`ttm_bo_pipeline_gutting`, internal/move.ts):
 * it is left with no resource, its memory released now if idle, else by a
 * ghost object once its fences signal; user PTEs are left alone.
 */
export function ttmBoValidate(bo: TtmBufferObject, placement: TtmPlacement, ctx: TtmOperationCtx): number {
  const m = bo.machine;
  return apiCall(m, 'ttm_bo_validate', () => {
    checkPlacement(placement);
    const s = bo.state;
    assertHeld(m, s, 'ttm_bo_validate');
    if (placement.numPlacement === 0) return pipelineGutting(m, s);
    for (const force of [false, true]) {
      if (s.resource !== null && resourceCompatible(s.resource, placement, force)) return 0;
      if (s.pinCount > 0) return -EINVAL;
      const res = allocResource(m, s, placement, ctx, force);
      if (res === -ENOSPC) continue;
      if (typeof res === 'number') return res;
      const r = handleMoveMem(m, s, res, false, ctx);
      if (r !== 0) return r;
      // An object now in SYSTEM (or nowhere) without a tt gets an empty one.
      if ((s.resource === null || s.resource.memType === TTM_PL_SYSTEM) && s.tt === null)
        ttCreate(s, gpuTtCaching(m, bdevState(m, s.bdev)));
      return 0;
    }
    // No room anywhere: the kernel turns -ENOSPC into -ENOMEM, which user space has always seen.
    return -ENOMEM;
  });
}

/**
 * `ttm_bo_init_validate()`: creates a buffer object of `size` bytes (the
 * kernel's caller presets `bo->base.size`; here the size is an argument and
 * the object is the return value), gives device and sg objects a fake
 * offset, starts it in SYSTEM and validates it into `placement`. Returns
 * the object or a negative errno (the object is released then).
 * `resv` shares another object's reservation object (as objects of one
 * VM, or an imported buffer's, do); null gives the object its own.
 * `alignment`, `interruptible` and `sg` are accepted for the kernel's
 * shape; imported sg objects are not modelled.
 */
export function ttmBoInitValidate(
  bdev: TtmDevice,
  size: number,
  type: TtmBoType,
  placement: TtmPlacement,
  alignment = PAGE_SIZE,
  interruptible = true,
  sg: null = null,
  resv: DmaResv | null = null,
): TtmBufferObject | number {
  const m = bdev.machine;
  return apiCall(m, 'ttm_bo_init_validate', () => {
    if (!Number.isInteger(size) || size <= 0) {
      throw new DmalabError(`ttm_bo_init_validate: size must be a positive integer of bytes, got ${size}`, {
        field: 'size',
      });
    }
    if (type === ttm_bo_type_sg || sg !== null) {
      throw new DmalabError('ttm_bo_init_validate: imported (sg) buffer objects are not modelled');
    }
    void alignment;
    checkPlacement(placement);
    const st = boState(m);
    const b = bdevState(m, bdev.id);
    const id = st.nextBo++;
    const s: BoObjState = {
      id,
      bdev: bdev.id,
      size,
      pages: Math.ceil(size / PAGE_SIZE),
      type,
      priority: 0,
      pinCount: 0,
      refs: 1,
      deleted: false,
      resource: null,
      tt: null,
      nodeStart: 0,
      nodePages: 0,
      allowed: [],
      preferredDomains: domainsOf(placement),
      allowedDomains: domainsOf(placement),
      resv: resv === null ? resvCreate(m) : resv.id,
      ownResv: resv === null,
      dmabuf: -1,
    };
    st.bos.set(id, s);
    const handle = boHandle(m, id);
    if (type === ttm_bo_type_device) {
      const r = drmVmaOffsetAdd(bdev.vmaManager, handle.vmaNode, s.pages);
      if (r !== 0) {
        release(m, s);
        return r;
      }
    }
    if (m.bus.wants['bo-init']) {
      m.bus.emit({ type: 'bo-init', bo: id, device: b.name, size, path: b.path, pgoff: s.nodeStart });
    }
    // ttm_bo_init_reserved gives it no resource (no dummy SYSTEM one): the first move is from none.
    resvLock(m, s.resv);
    const ctx: TtmOperationCtx = { interruptible, noWaitGpu: false, bytesMoved: 0 };
    const r = ttmBoValidate(handle, placement, ctx);
    unreserve(m, s);
    if (r !== 0) {
      putBo(m, s);
      return r;
    }
    return handle;
  });
}

function domainsOf(placement: TtmPlacement): number {
  let d = 0;
  for (let i = 0; i < placement.numPlacement; i++) {
    const t = placement.placement[i]!.memType;
    d |= t === TTM_PL_VRAM ? GPU_GEM_DOMAIN_VRAM : t === TTM_PL_TT ? GPU_GEM_DOMAIN_GTT : GPU_GEM_DOMAIN_CPU;
  }
  return d;
}

/**
 * `ttm_bo_reserve()`: takes the reservation lock. dmalab runs one thread of
 * control, so a lock already held can only be this caller's: -EBUSY with
 * `noWait`, -EDEADLK otherwise (the kernel would deadlock or report it).
 */
export function ttmBoReserve(bo: TtmBufferObject, interruptible: boolean, noWait: boolean): number {
  const m = bo.machine;
  return apiCall(m, 'ttm_bo_reserve', () => {
    void interruptible;
    const s = bo.state;
    if (resvHeld(m, s.resv)) return noWait ? -EBUSY : -EDEADLK;
    resvLock(m, s.resv);
    return 0;
  });
}

function unreserve(m: Machine, bo: BoObjState): void {
  lruTail(bdevState(m, bo.bdev), bo);
  resvUnlock(m, bo.resv);
}

/** `ttm_bo_unreserve()`: the object goes to its LRU's tail (a use), then the lock is dropped. */
export function ttmBoUnreserve(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_unreserve', () => unreserve(m, bo.state));
}

/** `ttm_bo_move_to_lru_tail()`. */
export function ttmBoMoveToLruTail(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_move_to_lru_tail', () => lruTail(bdevState(m, bo.state.bdev), bo.state));
}

/** `ttm_bo_pin()`: a pinned object is never evicted or moved (reservation held). */
export function ttmBoPin(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_pin', () => {
    const s = bo.state;
    assertHeld(m, s, 'ttm_bo_pin');
    if (s.pinCount++ === 0) lruTail(bdevState(m, s.bdev), s);
  });
}

/** `ttm_bo_unpin()`: the last unpin puts it back on its LRU's tail. */
export function ttmBoUnpin(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_unpin', () => {
    const s = bo.state;
    assertHeld(m, s, 'ttm_bo_unpin');
    if (s.pinCount === 0) {
      reportFinding(m, WARN.code, 'WARNING: ttm_bo_unpin: the buffer object is not pinned', {
        details: { bo: s.id },
      });
      return;
    }
    if (--s.pinCount === 0) lruTail(bdevState(m, s.bdev), s);
  });
}

/** `ttm_bo_get()`. */
export function ttmBoGet(bo: TtmBufferObject): TtmBufferObject {
  bo.state.refs++;
  return bo;
}

/** `ttm_bo_put()`: the last reference releases the object (`ttm_bo_release`). */
export function ttmBoPut(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_put', () => putBo(m, bo.state));
}

export function putBo(m: Machine, bo: BoObjState): void {
  if (--bo.refs > 0) return;
  release(m, bo);
}

/**
 * `ttm_bo_release()`: the fake offset goes; an idle object's memory is
 * freed now, a busy one (any fence, BOOKKEEP included) becomes a zombie freed when they all signal
 * (the delayed-delete work). Releasing a pinned object is a WARN.
 */
function release(m: Machine, bo: BoObjState): void {
  const bdev = bdevState(m, bo.bdev);
  if (bo.pinCount > 0) {
    reportFinding(m, WARN.code, 'WARNING: ttm_bo_release: the buffer object is still pinned', {
      details: { bo: bo.id },
    });
    bo.pinCount = 0;
  }
  const handle = boHandle(m, bo.id);
  unmapVirtual(m, bo);
  drmVmaOffsetRemove(handle.bdev.vmaManager, handle.vmaNode);
  // A busy released object stays on its LRU: eviction may wait for it and reclaim it.
  if (!resvIdle(m, bo.resv)) {
    queueDelayedDelete(m, bdev, bo);
    return;
  }
  freeBo(m, bdev, bo);
}

/**
 * `ttm_bo_swapout()`: swaps objects of `man`'s memory type out, least
 * recently used first, until `target` bytes; returns the bytes swapped.
 * (`gfpFlags` is accepted for the kernel's shape.)
 */
export function ttmBoSwapout(
  bdev: TtmDevice,
  ctx: TtmOperationCtx,
  memType: number,
  gfpFlags: number,
  target: number,
): number {
  const m = bdev.machine;
  return apiCall(m, 'ttm_bo_swapout', () => {
    void gfpFlags;
    if (memType !== TTM_PL_SYSTEM && memType !== TTM_PL_TT) return 0;
    return swapout(m, bdevState(m, bdev.id), ctx, memType, target, -1);
  });
}

/**
 * `ttm_bo_evict_first()`: evicts the first evictable object of a memory
 * type's LRU. 0, or -ENOENT when there is none.
 */
export function ttmBoEvictFirst(bdev: TtmDevice, memType: number, ctx: TtmOperationCtx): number {
  const m = bdev.machine;
  return apiCall(m, 'ttm_bo_evict_first', () => {
    const b = bdevState(m, bdev.id);
    const man = b.man[memType];
    if (man === undefined) return -EINVAL;
    for (const list of man.lru) {
      for (const id of list) {
        const v = boState(m).bos.get(id);
        if (v === undefined || v.pinCount > 0 || resvHeld(m, v.resv)) continue;
        if (v.deleted) return reclaimZombie(m, b, v, ctx.noWaitGpu);
        resvLock(m, v.resv);
        const r = evict(m, v, ctx);
        resvUnlock(m, v.resv);
        return r;
      }
    }
    return -ENOENT;
  });
}

/** `ttm_resource_manager_evict_all()`: evicts every evictable object of a memory type. */
export function ttmResourceManagerEvictAll(bdev: TtmDevice, memType: number): number {
  const ctx = ttmOperationCtx();
  for (;;) {
    const r = ttmBoEvictFirst(bdev, memType, ctx);
    if (r === -ENOENT) return 0;
    if (r !== 0) return r;
  }
}
