/**
 * The GPU model's driver side (dmalab's, modelled on amdgpu and radeon):
 * the caching of system pages, where evicted objects go, the GEM domains,
 * and the copy engine — device jobs that move bytes between placements and
 * signal a fence when done. `addGpu` (device.ts) builds the device.
 */

import { devIsDmaCoherent } from '../dma/index.js';
import {
  type Device,
  DmalabError,
  deviceDmaAccess,
  deviceLocalAccess,
  type Machine,
  PAGE_SIZE,
  registerJobHandler,
  submitDeviceJob,
} from '../machine/index.js';
import {
  GPU_GEM_DOMAIN_CPU,
  GPU_GEM_DOMAIN_GTT,
  GPU_GEM_DOMAIN_VRAM,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
  type TtmCaching,
  ttm_cached,
  ttm_write_combined,
} from './consts.js';
import { freeZombies } from './internal/release.js';
import {
  type BdevState,
  type BoObjState,
  boState,
  type TtmPlace,
  type TtmPlacement,
} from './internal/state.js';
import { moveFenceCreate, moveFenceSignalPut } from './internal/sync.js';
import type { TtPage } from './internal/tt.js';
import { ttFreePages } from './internal/tt.js';

/**
 * The driver's `ttm_tt_create` caching choice: cached when the device
 * snoops the CPU caches and the cache is PIPT; write-combined otherwise (a
 * non-coherent device, or a VIPT cache where a cached user alias would not
 * be congruent with the kernel's).
 */
export function gpuTtCaching(m: Machine, bdev: BdevState): TtmCaching {
  const dev = m.devices[bdev.device]!;
  return devIsDmaCoherent(dev) && m.hw.cache.colours === 1 ? ttm_cached : ttm_write_combined;
}

/**
 * The driver's `evict_flags`: VRAM goes to GTT when the object may live
 * there, else to system memory; GTT goes to system memory.
 */
export function gpuEvictFlags(bo: BoObjState): TtmPlacement {
  const sys = { fpfn: 0, lpfn: 0, memType: TTM_PL_SYSTEM, flags: 0 };
  if (bo.resource?.memType === TTM_PL_VRAM && (bo.allowedDomains & GPU_GEM_DOMAIN_GTT) !== 0) {
    return { numPlacement: 2, placement: [{ fpfn: 0, lpfn: 0, memType: TTM_PL_TT, flags: 0 }, sys] };
  }
  return { numPlacement: 1, placement: [sys] };
}

/** Physical address of a VRAM page: the copy engine reaches its own memory directly. */
export function vramAddr(bdev: BdevState, page: number): number {
  return bdev.vramPhys + page * PAGE_SIZE;
}

/** One side of a copy: VRAM pages by physical address, or tt pages by DMA address. */
export interface CopySide {
  local: boolean;
  addrs: number[];
}

/** What the completion of a move's job does (plain data, for the job handler). */
export interface MoveDone {
  bdev: number;
  fence: number;
  /** Source pages, or null to clear the destination. */
  src: CopySide | null;
  dst: CopySide;
  /** Pages of the old tt to free once the copy out of them is done (the ghost object's). */
  free: TtPage[];
}

/** Name of the job handler the TTM core registers for move completion. */
export const MOVE_DONE_HANDLER = 'ttm-move-done';

/**
 * The copy engine: queues one job that copies `src[i] → dst[i]` page by
 * page (or clears `dst` when `src` is null) and returns the fence it
 * signals. The job queues behind the device's earlier work, so moves
 * complete in submission order; its bytes move when it completes
 * (`gpuCopyRun`), as every engine job's do.
 */
export function gpuCopy(
  m: Machine,
  bdev: BdevState,
  src: CopySide | null,
  dst: CopySide,
  free: TtPage[],
): number {
  const dev = m.devices[bdev.device]!;
  const fence = moveFenceCreate(m, bdev);
  const done: MoveDone = { bdev: bdev.id, fence, src, dst, free };
  submitDeviceJob(dev, { kind: 'idle' }, dst.addrs.length * bdev.copyNsPerPage, {
    handler: MOVE_DONE_HANDLER,
    arg: done,
  });
  return fence;
}

function access(
  dev: Device,
  local: boolean,
  addr: number,
  len: number,
  write: boolean,
  buf: Uint8Array,
): void {
  if (local) deviceLocalAccess(dev, addr, len, write, buf);
  else deviceDmaAccess(dev, addr, len, write, buf);
}

/** The copy itself, at the job's completion: runs of contiguous pages move in one access each. */
export function gpuCopyRun(m: Machine, done: MoveDone): void {
  const bdev = boState(m).bdevs[done.bdev]!;
  const dev = m.devices[bdev.device]!;
  const { src, dst } = done;
  const n = dst.addrs.length;
  let i = 0;
  while (i < n) {
    let k = 1;
    while (
      i + k < n &&
      dst.addrs[i + k] === dst.addrs[i]! + k * PAGE_SIZE &&
      (src === null || src.addrs[i + k] === src.addrs[i]! + k * PAGE_SIZE)
    )
      k++;
    const buf = new Uint8Array(k * PAGE_SIZE);
    if (src !== null) access(dev, src.local, src.addrs[i]!, buf.length, false, buf);
    access(dev, dst.local, dst.addrs[i]!, buf.length, true, buf);
    i += k;
  }
}

/**
 * The placement for a set of GEM domains, fastest first: VRAM, then GTT,
 * then CPU (dmalab's GPU model; kernel: `amdgpu_bo_placement_from_domain`).
 */
export function gpuBoPlacementFromDomain(domain: number): TtmPlacement {
  if (!Number.isInteger(domain) || domain <= 0 || (domain & ~7) !== 0) {
    throw new DmalabError(
      `gpuBoPlacementFromDomain: domain must be a non-empty mask of GPU_GEM_DOMAIN_*, got ${domain}`,
    );
  }
  const placement: TtmPlace[] = [];
  if (domain & GPU_GEM_DOMAIN_VRAM) placement.push({ fpfn: 0, lpfn: 0, memType: TTM_PL_VRAM, flags: 0 });
  if (domain & GPU_GEM_DOMAIN_GTT) placement.push({ fpfn: 0, lpfn: 0, memType: TTM_PL_TT, flags: 0 });
  if (domain & GPU_GEM_DOMAIN_CPU) placement.push({ fpfn: 0, lpfn: 0, memType: TTM_PL_SYSTEM, flags: 0 });
  return { numPlacement: placement.length, placement };
}

registerJobHandler(MOVE_DONE_HANDLER, (m, _job, arg) => {
  const done = arg as MoveDone;
  gpuCopyRun(m, done);
  moveFenceSignalPut(m, done.fence);
  const bdev = boState(m).bdevs[done.bdev]!;
  if (done.free.length > 0) ttFreePages(m.devices[bdev.device]!, bdev, done.free);
  freeZombies(m, bdev);
});
