/**
 * Buffer objects (drivers/gpu/drm/ttm/ttm_bo.c, ttm_bo_util.c): creation,
 * reservation, validation into a placement, eviction when a placement is
 * full (LRU order, pinned objects skipped), swap-out under pressure, and
 * release. Every change of backing goes through `handleMoveMem`, which
 * first shoots down every user PTE of the object (`ttm_bo_unmap_virtual`),
 * then lets the driver move the bytes; a pipelined copy adds its fence to
 * the object's reservation object with KERNEL usage, which the fault
 * handler waits for.
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
import { AddressSpace } from '../mm/index.js';
import {
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  TTM_PL_FLAG_DESIRED,
  TTM_PL_FLAG_FALLBACK,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  TTM_TT_FLAG_EXTERNAL,
  type TtmBoType,
  ttm_bo_type_device,
  ttm_bo_type_sg,
} from './consts.js';
import { type CopySide, gpuCopy, gpuEvictFlags, gpuTtCaching, vramAddr } from './gpu.js';
import { backingPfns, boHandle, placementName, type TtmBufferObject, type TtmDevice } from './handles.js';
import { primeMoveNotify, primeSetBacking } from './internal/prime-notify.js';
import { freeBo } from './internal/release.js';
import {
  evictionValuable,
  gartBind,
  gartUnbind,
  lruDel,
  lruTail,
  resourceAlloc,
  resourceCompatible,
  resourceFree,
} from './internal/resource.js';
import {
  type BdevState,
  type BoObjState,
  bdevState,
  boState,
  type ResourceState,
  type TtmOperationCtx,
  type TtmPlace,
  type TtmPlacement,
} from './internal/state.js';
import {
  moveFenceSignaled,
  resvAddKernelFence,
  resvCreate,
  resvHeld,
  resvKernelIdle,
  resvLock,
  resvUnlock,
  resvWaitKernel,
  setManagerMove,
} from './internal/sync.js';
import { type TtPage, ttCreate, ttFreePages, ttPopulate, ttSwapout, ttTakePages } from './internal/tt.js';
import { drmVmaNodeUnmap, drmVmaOffsetAdd, drmVmaOffsetRemove } from './vma-manager.js';

/** A default `ttm_operation_ctx`: interruptible, may wait for the GPU. */
export function ttmOperationCtx(): TtmOperationCtx {
  return { interruptible: true, noWaitGpu: false, bytesMoved: 0 };
}

function devOf(m: Machine, bdev: BdevState) {
  return m.devices[bdev.device]!;
}

function emitMove(
  m: Machine,
  bdev: BdevState,
  bo: BoObjState,
  from: string,
  reason: 'create' | 'validate' | 'evict' | 'populate' | 'swapout',
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

/** The device's shared address space (`bdev->dev_mapping`), once a file of it has been mmapped. */
function devMapping(m: Machine, bdev: BdevState): AddressSpace | null {
  return bdev.mappingId < 0 ? null : new AddressSpace(m, bdev.mappingId);
}

/**
 * `ttm_bo_unmap_virtual()`: shoots down every user PTE of the object, in
 * every process, through its fake-offset range in the device's mapping.
 */
export function ttmBoUnmapVirtual(bo: TtmBufferObject): void {
  const m = bo.machine;
  apiCall(m, 'ttm_bo_unmap_virtual', () => unmapVirtual(m, bo.state));
}

function unmapVirtual(m: Machine, bo: BoObjState): void {
  const mapping = devMapping(m, bdevState(m, bo.bdev));
  if (mapping !== null) drmVmaNodeUnmap(boHandle(m, bo.id).vmaNode, mapping);
}

/**
 * `ttm_bo_populate()` with the old global memory accounting: populating a
 * tt beyond the device's page limit first swaps other objects out, least
 * recently used first (`ttm_bo_swapout`). Returns 0 or -ENOMEM.
 */
function populate(m: Machine, bdev: BdevState, bo: BoObjState, ctx: TtmOperationCtx): number {
  const tt = bo.tt;
  if (tt === null || tt.populated) return 0;
  const over = bdev.ttPages + bo.pages - bdev.ttPagesLimit;
  if (over > 0) {
    for (const man of [bdev.man[TTM_PL_SYSTEM]!, bdev.man[TTM_PL_TT]!]) {
      const need = bdev.ttPages + bo.pages - bdev.ttPagesLimit;
      if (need <= 0) break;
      swapout(m, bdev, ctx, man.memType, need * PAGE_SIZE, bo.id);
    }
    if (bdev.ttPages + bo.pages > bdev.ttPagesLimit) return -ENOMEM;
  }
  return ttPopulate(m, devOf(m, bdev), bdev, tt);
}

function switchResource(bdev: BdevState, bo: BoObjState, res: ResourceState): void {
  const old = bo.resource;
  if (old !== null) {
    if (old.memType === TTM_PL_TT) gartUnbind(bdev, old.start, old.pages);
    resourceFree(bdev, old);
  }
  bo.resource = res;
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
function handleMoveMem(
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
function evict(m: Machine, victim: BoObjState, ctx: TtmOperationCtx): number {
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
function allocResource(
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

function memSpace(
  m: Machine,
  bo: BoObjState,
  placement: TtmPlacement,
  ctx: TtmOperationCtx,
): ResourceState | number {
  const r = allocResource(m, bo, placement, ctx, false);
  return r !== -ENOSPC ? r : allocResource(m, bo, placement, ctx, true);
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
 * `ttm_bo_validate()`: makes the object live in one of the placement's
 * places, moving it there (the reservation must be held). 0 when it is
 * already compatible; -EINVAL for a pinned object that would have to move;
 * -ENOMEM when no place has room even after eviction.
 */
export function ttmBoValidate(bo: TtmBufferObject, placement: TtmPlacement, ctx: TtmOperationCtx): number {
  const m = bo.machine;
  return apiCall(m, 'ttm_bo_validate', () => {
    checkPlacement(placement);
    const s = bo.state;
    assertHeld(m, s, 'ttm_bo_validate');
    if (placement.numPlacement === 0) return pipelineGutting(m, s);
    for (const force of [false, true]) {
      if (resourceCompatible(s.resource, placement, force)) return finishValidate(m, s);
      if (s.pinCount > 0) return -EINVAL;
      const res = allocResource(m, s, placement, ctx, force);
      if (res === -ENOSPC) continue;
      if (typeof res === 'number') return res;
      const r = handleMoveMem(m, s, res, false, ctx);
      if (r !== 0) return r;
      return finishValidate(m, s);
    }
    return -ENOMEM;
  });
}

function finishValidate(m: Machine, bo: BoObjState): number {
  if (bo.resource?.memType === TTM_PL_SYSTEM && bo.tt === null)
    ttCreate(bo, gpuTtCaching(m, bdevState(m, bo.bdev)));
  return 0;
}

/** `ttm_bo_pipeline_gutting()`: an empty placement drops the backing store; the object restarts empty in SYSTEM. */
function pipelineGutting(m: Machine, bo: BoObjState): number {
  const bdev = bdevState(m, bo.bdev);
  unmapVirtual(m, bo);
  resvWaitKernel(m, bo.resv);
  const from = placementName(bo);
  if (bo.tt !== null) ttFreePages(devOf(m, bdev), bdev, ttTakePages(bo.tt));
  bo.tt = null;
  const res = resourceAlloc(
    bdev.man[TTM_PL_SYSTEM]!,
    { fpfn: 0, lpfn: 0, memType: TTM_PL_SYSTEM, flags: 0 },
    bo,
  );
  switchResource(bdev, bo, res as ResourceState);
  ttCreate(bo, gpuTtCaching(m, bdev));
  lruTail(bdev, bo);
  emitMove(m, bdev, bo, from, 'validate', true);
  return 0;
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
    const sys = resourceAlloc(
      b.man[TTM_PL_SYSTEM]!,
      { fpfn: 0, lpfn: 0, memType: TTM_PL_SYSTEM, flags: 0 },
      s,
    );
    s.resource = sys as ResourceState;
    lruTail(b, s);
    emitMove(m, b, s, 'none', 'create', true);
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
 * freed now, a busy one becomes a zombie freed when its moves complete
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
  lruDel(bdev, bo);
  if (!resvKernelIdle(m, bo.resv)) {
    bo.deleted = true;
    bdev.zombies.push(bo.id);
    return;
  }
  freeBo(m, bdev, bo);
}

/**
 * The swap-out walk shared by `ttmBoSwapout` and memory pressure: LRU order,
 * trylock only (here: objects not reserved), skipping pinned, unpopulated,
 * imported and already swapped objects and `skip`; a TT object goes to
 * SYSTEM first. Returns the bytes swapped out.
 */
function swapout(
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
      resvWaitKernel(m, bo.resv);
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
