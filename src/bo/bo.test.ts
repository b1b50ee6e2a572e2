import { describe, expect, it } from 'vitest';
import { gpuRig, mapBo, newBo, pattern } from '../../test/bo-kit.js';
import {
  addGpu,
  advanceTime,
  clearFindings,
  createMachine,
  DMA_RESV_USAGE_BOOKKEEP,
  type DmaFence,
  DmalabError,
  type DmaResv,
  DRM_FILE_PAGE_OFFSET_START,
  dmaFenceContextAlloc,
  dmaFenceInit,
  dmaFenceSignal,
  dmaResvAddFence,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvTestSignaled,
  dmaResvUnlock,
  drmGemHandleCreate,
  drmGemHandleDelete,
  drmVmaNodeOffsetAddr,
  drmVmaNodeStart,
  EACCES,
  EBUSY,
  EINVAL,
  ENOENT,
  ENOMEM,
  fget,
  fputFile,
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  gpuBoPlacementFromDomain,
  MAP_PRIVATE,
  MAP_SHARED,
  type Machine,
  machineFindings,
  machineHash,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  pteLookup,
  restoreMachine,
  resvHandle,
  snapshotMachine,
  spawnProcess,
  sysMmap,
  sysOpen,
  TTM_PL_FLAG_TOPDOWN,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  TTM_TT_FLAG_ZERO_ALLOC,
  ttm_bo_type_device,
  ttmBoEvictFirst,
  ttmBoInitValidate,
  ttmBoPin,
  ttmBoPut,
  ttmBoReserve,
  ttmBoSwapout,
  ttmBoUnmapVirtual,
  ttmBoUnpin,
  ttmBoUnreserve,
  ttmBoValidate,
  ttmOperationCtx,
  userRead,
  userWrite,
} from '../index.js';

const P = PAGE_SIZE;
const VRAM = gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_VRAM);

/** An unsignalled software fence added to `resv` with BOOKKEEP usage; the reservation is left locked. */
function addUserFence(m: Machine, resv: DmaResv): DmaFence {
  const ops = { getDriverName: () => 'test', getTimelineName: () => 'user' };
  const f = dmaFenceInit(m, ops, dmaFenceContextAlloc(m, 1), 1);
  expect(dmaResvLock(resv, null)).toBe(0);
  expect(dmaResvReserveFences(resv, 1)).toBe(0);
  dmaResvAddFence(resv, f, DMA_RESV_USAGE_BOOKKEEP);
  return f;
}

describe('placement, LRU and eviction', () => {
  it('evicts the least recently used object; a reserve/unreserve cycle counts as a use', () => {
    const rig = gpuRig();
    const a = newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    const b = newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    expect(ttmBoReserve(a, true, false)).toBe(0);
    ttmBoUnreserve(a); // a is now the most recently used
    const c = newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    expect([a.memType, b.memType, c.memType]).toEqual([TTM_PL_VRAM, TTM_PL_SYSTEM, TTM_PL_VRAM]);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(12);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('evicts lower priorities first', () => {
    const rig = gpuRig();
    const a = newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    const b = newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    a.priority = 2; // a is older but more valuable
    newBo(rig, 6, GPU_GEM_DOMAIN_VRAM);
    expect([a.memType, b.memType]).toEqual([TTM_PL_VRAM, TTM_PL_SYSTEM]);
    expect(() => {
      a.priority = 4;
    }).toThrow(/priority must be an integer from 0 to 3/);
  });

  it('skips pinned objects; a pinned object refuses to move; nothing evictable is -ENOMEM', () => {
    const rig = gpuRig();
    const a = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    const b = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    for (const bo of [a, b]) {
      ttmBoReserve(bo, true, false);
      ttmBoPin(bo);
      ttmBoUnreserve(bo);
    }
    const c = ttmBoInitValidate(rig.gpu, 4 * P, ttm_bo_type_device, VRAM);
    expect(c).toBe(-ENOMEM);
    ttmBoReserve(a, true, false);
    expect(ttmBoValidate(a, gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_CPU), ttmOperationCtx())).toBe(-EINVAL);
    ttmBoUnpin(a);
    ttmBoUnreserve(a);
    const d = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    expect([a.memType, b.memType, d.memType]).toEqual([TTM_PL_SYSTEM, TTM_PL_VRAM, TTM_PL_VRAM]);
    expect(a.pinCount + b.pinCount).toBe(1);
  });

  it('an object allowed in GTT is evicted from VRAM to GTT, bound in the GART aperture', () => {
    const rig = gpuRig();
    const a = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM | GPU_GEM_DOMAIN_GTT);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(3, 8));
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    expect(a.memType).toBe(TTM_PL_TT);
    expect(rig.gpu.managerUsage(TTM_PL_TT)).toBe(8);
    expect(userRead(rig.app, va, 8 * P)).toEqual(pattern(3, 8));
    expect(pteLookup(rig.app, va)!.attr).toBe('cached'); // x86 snoops: GTT pages are mapped cached
  });

  it('validation without the reservation held is a WARN', () => {
    const rig = gpuRig();
    const a = newBo(rig, 1, GPU_GEM_DOMAIN_CPU);
    expect(ttmBoValidate(a, VRAM, ttmOperationCtx())).toBe(0);
    // TTM's assert, then dma_resv's own for the move fence it adds (reserve and add): lockdep would print each.
    expect(machineFindings(rig.m).map((f) => f.code)).toEqual(['WARN', 'WARN', 'WARN']);
    expect(machineFindings(rig.m)[0]!.message).toContain(
      'ttm_bo_validate: the buffer object’s reservation lock is not held',
    );
  });
});

describe('swap-out under pressure', () => {
  it('populating past the device’s page limit swaps out the least recently used system object; a fault swaps it back', () => {
    const rig = gpuRig('arm64-noncoherent', { ttPagesLimit: 8 });
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_CPU);
    const b = newBo(rig, 4, GPU_GEM_DOMAIN_CPU);
    const [va, vb] = [mapBo(rig, a), mapBo(rig, b)];
    userWrite(rig.app, va, pattern(1, 4));
    userWrite(rig.app, vb, pattern(2, 4));
    expect(rig.gpu.ttPages).toBe(8);
    const c = newBo(rig, 4, GPU_GEM_DOMAIN_CPU);
    userWrite(rig.app, mapBo(rig, c), pattern(4, 4));
    expect([a.placementName, b.placementName, c.placementName]).toEqual(['swapped', 'system', 'system']);
    expect(pteLookup(rig.app, va)).toBeNull();
    expect(userRead(rig.app, va, 4 * P)).toEqual(pattern(1, 4)); // swaps a in, b out
    expect([a.placementName, b.placementName]).toEqual(['system', 'swapped']);
    expect(userRead(rig.app, vb, 4 * P)).toEqual(pattern(2, 4));
    expect(rig.gpu.ttPages).toBe(8);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('the page limit is soft: an object larger than it is populated anyway when nothing can be swapped out', () => {
    const rig = gpuRig('x86_64', { ttPagesLimit: 4 });
    const a = newBo(rig, 8, GPU_GEM_DOMAIN_CPU);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(1, 8));
    expect(a.placementName).toBe('system');
    expect(rig.gpu.ttPages).toBe(8);
    expect(userRead(rig.app, va, 8 * P)).toEqual(pattern(1, 8));
    expect(machineFindings(rig.m)).toEqual([]);
  });
});

describe('range allocation: drm_mm best fit (DRM_MM_INSERT_BEST)', () => {
  /** Objects of these page counts in VRAM, settled (their clears done). */
  function vramObjects(rig: ReturnType<typeof gpuRig>, pages: number[]) {
    const bos = pages.map((n) => {
      const bo = ttmBoInitValidate(rig.gpu, n * P, ttm_bo_type_device, VRAM);
      if (typeof bo === 'number') throw new Error(String(bo));
      return bo;
    });
    advanceTime(rig.m, 10_000);
    return bos;
  }

  it('fake offsets freed by released objects are reused smallest hole first (drm_vma_offset_add)', () => {
    const rig = gpuRig();
    const [a, b, c, d] = vramObjects(rig, [4, 2, 2, 2]);
    const S = DRM_FILE_PAGE_OFFSET_START;
    expect([a, b, c, d].map((x) => drmVmaNodeStart(x!.vmaNode))).toEqual([S, S + 4, S + 6, S + 8]);
    ttmBoPut(a!); // frees [S, S + 4)
    ttmBoPut(c!); // frees [S + 6, S + 8)
    const [x, y] = vramObjects(rig, [2, 4]);
    // First fit would hand out S and then S + 10.
    expect([drmVmaNodeStart(x!.vmaNode), drmVmaNodeStart(y!.vmaNode)]).toEqual([S + 6, S]);
    expect(drmVmaNodeOffsetAddr(y!.vmaNode)).toBe(S * P);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('VRAM pages freed by released objects are reused smallest hole first (ttm_range_man_alloc)', () => {
    const rig = gpuRig(); // 16 pages of VRAM
    const [a, b, c, d] = vramObjects(rig, [4, 2, 2, 2]);
    expect([a, b, c, d].map((x) => x!.resourceStart)).toEqual([0, 4, 6, 8]);
    ttmBoPut(a!);
    ttmBoPut(c!);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(4);
    const [x, y] = vramObjects(rig, [2, 4]);
    // First fit would place them at 0 and 10.
    expect([x!.resourceStart, y!.resourceStart]).toEqual([6, 0]);
    const top = ttmBoInitValidate(rig.gpu, 2 * P, ttm_bo_type_device, {
      numPlacement: 1,
      placement: [{ fpfn: 0, lpfn: 0, memType: TTM_PL_VRAM, flags: TTM_PL_FLAG_TOPDOWN }],
    });
    if (typeof top === 'number') throw new Error(String(top));
    expect(top.resourceStart).toBe(14); // DRM_MM_INSERT_HIGH: the top of the highest hole
    expect(machineFindings(rig.m)).toEqual([]);
  });
});

describe('ttm_bo_validate: early return and pipeline gutting', () => {
  const EMPTY = { numPlacement: 0, placement: [] };

  function settledVram(rig: ReturnType<typeof gpuRig>, pages: number) {
    const bo = ttmBoInitValidate(rig.gpu, pages * P, ttm_bo_type_device, VRAM);
    if (typeof bo === 'number') throw new Error(String(bo));
    advanceTime(rig.m, 10_000);
    return bo;
  }

  it('a new object has no resource before its first validate: one move, from none straight to VRAM', () => {
    const rig = gpuRig();
    const moves: string[] = [];
    rig.m.bus.on('bo-move', (ev) => moves.push(`${ev.from}->${ev.to}`));
    const bo = settledVram(rig, 2);
    expect(moves).toEqual(['none->vram']);
    expect(rig.gpu.managerUsage(TTM_PL_SYSTEM)).toBe(0);
    // Already compatible: 0 at once, no move.
    expect(ttmBoReserve(bo, true, false)).toBe(0);
    expect(ttmBoValidate(bo, VRAM, ttmOperationCtx())).toBe(0);
    ttmBoUnreserve(bo);
    expect(moves).toEqual(['none->vram']);
  });

  it('an empty placement frees an idle object’s memory now and leaves it with no resource', () => {
    const rig = gpuRig();
    const bo = settledVram(rig, 4);
    expect(ttmBoReserve(bo, true, false)).toBe(0);
    expect(ttmBoValidate(bo, EMPTY, ttmOperationCtx())).toBe(0);
    // Not SYSTEM: bo->resource is NULL after ttm_bo_pipeline_gutting.
    expect([bo.memType, bo.placementName, bo.resourceStart]).toEqual([-1, 'none', -1]);
    expect([rig.gpu.managerUsage(TTM_PL_VRAM), rig.gpu.managerUsage(TTM_PL_SYSTEM)]).toEqual([0, 0]);
    // An unpopulated tt marked to be cleared if it is populated again.
    expect(bo.state.tt?.populated).toBe(false);
    expect(bo.state.tt!.pageFlags & TTM_TT_FLAG_ZERO_ALLOC).toBe(TTM_TT_FLAG_ZERO_ALLOC);
    expect(ttmBoEvictFirst(rig.gpu, TTM_PL_VRAM, ttmOperationCtx())).toBe(-ENOENT); // on no LRU
    // It can be placed again.
    expect(ttmBoValidate(bo, VRAM, ttmOperationCtx())).toBe(0);
    ttmBoUnreserve(bo);
    expect(bo.placementName).toBe('vram');
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('a busy object is gutted without waiting: a ghost keeps its memory until its fences signal', () => {
    const rig = gpuRig();
    const bo = settledVram(rig, 4);
    const resv = resvHandle(rig.m, bo.state.resv);
    const f = addUserFence(rig.m, resv);
    const t = rig.m.clock.time;
    expect(ttmBoValidate(bo, EMPTY, ttmOperationCtx())).toBe(0);
    dmaResvUnlock(resv);
    expect(rig.m.clock.time).toBe(t); // nothing waited
    expect(bo.placementName).toBe('none');
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(4); // the ghost's
    expect(dmaResvTestSignaled(resv, DMA_RESV_USAGE_BOOKKEEP)).toBe(false); // the object keeps its fence
    dmaFenceSignal(f);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(0);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('gutting leaves user PTEs alone: a driver must ttm_bo_unmap_virtual() a mapped object first', () => {
    const rig = gpuRig();
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(1, 2));
    advanceTime(rig.m, 10_000);
    expect(ttmBoReserve(a, true, false)).toBe(0);
    expect(ttmBoValidate(a, EMPTY, ttmOperationCtx())).toBe(0);
    ttmBoUnreserve(a);
    expect(pteLookup(rig.app, va)).not.toBeNull();
    userRead(rig.app, va, 8); // through the surviving PTE, to a page the tt gave back
    expect(machineFindings(rig.m).map((f) => f.code)).toEqual(['USE_AFTER_FREE', 'BO_STALE_PTE']);
    clearFindings(rig.m);
    // Done right: unmap, then gut.
    const b = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
    const vb = mapBo(rig, b);
    userWrite(rig.app, vb, pattern(2, 2));
    advanceTime(rig.m, 10_000);
    expect(ttmBoReserve(b, true, false)).toBe(0);
    ttmBoUnmapVirtual(b);
    expect(ttmBoValidate(b, EMPTY, ttmOperationCtx())).toBe(0);
    ttmBoUnreserve(b);
    expect(pteLookup(rig.app, vb)).toBeNull();
    expect(machineFindings(rig.m)).toEqual([]);
  });
});

describe('bookkeeping fences', () => {
  it('swap-out waits for every fence: with no_wait_gpu a busy object is skipped, once idle it swaps', () => {
    const rig = gpuRig('x86_64');
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(1, 2));
    const resv = resvHandle(rig.m, a.state.resv);
    const f = addUserFence(rig.m, resv);
    dmaResvUnlock(resv);
    const noWait = { ...ttmOperationCtx(), noWaitGpu: true };
    expect(ttmBoSwapout(rig.gpu, noWait, TTM_PL_SYSTEM, 0, 2 * P)).toBe(0);
    expect(a.placementName).toBe('system');
    dmaFenceSignal(f);
    expect(ttmBoSwapout(rig.gpu, noWait, TTM_PL_SYSTEM, 0, 2 * P)).toBe(2 * P);
    expect(a.placementName).toBe('swapped');
    expect(userRead(rig.app, va, 2 * P)).toEqual(pattern(1, 2));
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('a busy released object stays on the LRU: eviction waits for it and reclaims its memory', () => {
    const rig = gpuRig('x86_64', { vramBytes: 8 * P });
    const a = ttmBoInitValidate(rig.gpu, 8 * P, ttm_bo_type_device, VRAM);
    if (typeof a === 'number') throw new Error(String(a));
    ttmBoPut(a); // the clear of its VRAM is still in flight
    expect([a.alive, rig.gpu.managerUsage(TTM_PL_VRAM)]).toEqual([true, 8]);
    const b = ttmBoInitValidate(rig.gpu, 8 * P, ttm_bo_type_device, VRAM);
    if (typeof b === 'number') throw new Error(String(b));
    expect(b.memType).toBe(TTM_PL_VRAM);
    expect(a.alive).toBe(false);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(8);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('an object released with a bookkeeping fence pending is freed only once it signals', () => {
    const rig = gpuRig('x86_64');
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_CPU);
    advanceTime(rig.m, 10_000);
    const resv = resvHandle(rig.m, a.state.resv);
    const f = addUserFence(rig.m, resv);
    dmaResvUnlock(resv);
    const file = fget(rig.app, rig.fd)!;
    expect(drmGemHandleDelete(file, 1)).toBe(0); // the rig's first handle
    fputFile(file);
    advanceTime(rig.m, 10_000);
    expect(a.alive).toBe(true);
    dmaFenceSignal(f);
    advanceTime(rig.m, 10_000);
    expect(a.alive).toBe(false);
    expect(machineFindings(rig.m)).toEqual([]);
  });
});

describe('mmap at a fake offset', () => {
  it('must start at the object, be no longer than it, be allowed, and be shared', () => {
    const rig = gpuRig();
    const a = newBo(rig, 2, GPU_GEM_DOMAIN_VRAM);
    const off = drmVmaNodeOffsetAddr(a.vmaNode);
    const rw = PROT_READ | PROT_WRITE;
    expect(sysMmap(rig.app, 0, P, rw, MAP_SHARED, rig.fd, off + P)).toBe(-EINVAL);
    expect(sysMmap(rig.app, 0, 3 * P, rw, MAP_SHARED, rig.fd, off)).toBe(-EINVAL);
    expect(sysMmap(rig.app, 0, 2 * P, rw, MAP_PRIVATE, rig.fd, off)).toBe(-EINVAL);
    // A private mapping of a file opened read-write may become writable (VM_MAYWRITE): a COW mapping, refused.
    expect(sysMmap(rig.app, 0, 2 * P, PROT_READ, MAP_PRIVATE, rig.fd, off)).toBe(-EINVAL);
    const other = spawnProcess(rig.m, 'other');
    const fd = sysOpen(other, rig.gpu.path);
    expect(sysMmap(other, 0, 2 * P, rw, MAP_SHARED, fd, off)).toBe(-EACCES);
    // A handle in the other process's file allows it; both processes then share the object.
    const file = fget(other, fd)!;
    expect(drmGemHandleCreate(file, a)).toBeGreaterThan(0);
    fputFile(file);
    expect(sysMmap(other, 0, 2 * P, rw, MAP_SHARED, fd, off)).toBeGreaterThan(0);
  });

  it('two processes map one object; a move shoots down both, and both see the same bytes after', () => {
    const rig = gpuRig('parisc');
    const a = newBo(rig, 4, GPU_GEM_DOMAIN_VRAM);
    const other = spawnProcess(rig.m, 'other');
    const fd = sysOpen(other, rig.gpu.path);
    const file = fget(other, fd)!;
    drmGemHandleCreate(file, a);
    fputFile(file);
    const va = mapBo(rig, a);
    const vo = mapBo(rig, a, other, fd);
    userWrite(rig.app, va, pattern(9, 4));
    expect(userRead(other, vo, 4 * P)).toEqual(pattern(9, 4));
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    expect(a.memType).toBe(TTM_PL_SYSTEM);
    expect([pteLookup(rig.app, va), pteLookup(other, vo)]).toEqual([null, null]);
    userWrite(other, vo + 100, new Uint8Array([0x42]));
    expect(userRead(rig.app, va + 100, 1)).toEqual(new Uint8Array([0x42]));
    expect(machineFindings(rig.m)).toEqual([]);
  });
});

describe('release, snapshots and bad input', () => {
  it('objects may share one reservation object: it outlives the first one freed', () => {
    const rig = gpuRig();
    const a = ttmBoInitValidate(rig.gpu, P, ttm_bo_type_device, VRAM);
    if (typeof a === 'number') throw new Error(String(a));
    const shared = resvHandle(rig.m, a.state.resv);
    const b = ttmBoInitValidate(rig.gpu, P, ttm_bo_type_device, VRAM, P, true, null, shared);
    if (typeof b === 'number') throw new Error(String(b));
    expect(b.state.resv).toBe(a.state.resv);
    expect(ttmBoReserve(a, true, true)).toBe(0);
    expect(ttmBoReserve(b, true, true)).toBe(-EBUSY); // one lock for both
    ttmBoUnreserve(a);
    advanceTime(rig.m, 10_000);
    ttmBoPut(b);
    expect(b.alive).toBe(false);
    expect(dmaResvIsLocked(shared)).toBe(false); // still a live reservation object
    expect(ttmBoReserve(a, true, true)).toBe(0);
    ttmBoUnreserve(a);
    ttmBoPut(a);
    expect(machineFindings(rig.m)).toEqual([]);
  });

  it('an object released during a move is freed when the move completes', () => {
    const rig = gpuRig();
    const a = ttmBoInitValidate(rig.gpu, 4 * P, ttm_bo_type_device, VRAM);
    if (typeof a === 'number') throw new Error(String(a));
    ttmBoPut(a); // the clear of its VRAM is still in flight
    expect(a.alive).toBe(true);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(4);
    advanceTime(rig.m, 10_000);
    expect(a.alive).toBe(false);
    expect(rig.gpu.managerUsage(TTM_PL_VRAM)).toBe(0);
  });

  it('snapshot and restore in place bring back placements, PTEs and bytes', () => {
    const rig = gpuRig('arm64-noncoherent');
    const a = newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    const va = mapBo(rig, a);
    userWrite(rig.app, va, pattern(5, 8));
    const snap = snapshotMachine(rig.m);
    const h = machineHash(rig.m);
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    newBo(rig, 8, GPU_GEM_DOMAIN_VRAM);
    expect(a.memType).toBe(TTM_PL_SYSTEM);
    restoreMachine(rig.m, snap);
    expect(machineHash(rig.m)).toBe(h);
    expect(a.memType).toBe(TTM_PL_VRAM);
    expect(userRead(rig.app, va, 8 * P)).toEqual(pattern(5, 8));
  });

  it('rejects bad configuration with a DmalabError naming it', () => {
    const m = createMachine();
    expect(() => addGpu(m, { name: 'g', vramBytes: 1000 })).toThrow(
      /vramBytes must be a positive multiple of 4096/,
    );
    expect(() => addGpu(m, { name: 'g', colour: 1 } as never)).toThrow(DmalabError);
    expect(() => addGpu(m, { name: 'g', coherence: 'none' })).toThrow(/set_pages_array_wc/);
    const g = addGpu(m, { name: 'g' });
    expect(() => ttmBoInitValidate(g, 0, ttm_bo_type_device, VRAM)).toThrow(
      /size must be a positive integer/,
    );
    expect(() => gpuBoPlacementFromDomain(8)).toThrow(/GPU_GEM_DOMAIN_/);
    expect(TTM_PL_TT).toBe(1);
  });
});
