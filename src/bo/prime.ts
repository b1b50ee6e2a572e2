/**
 * Buffer objects shared as dma-bufs (drivers/gpu/drm/drm_prime.c and a
 * TTM driver's dma-buf ops, after amdgpu_dma_buf.c): the dma-buf shares the
 * object's reservation object; a static importer's map pins the object in
 * GTT until its unmap (the dma-buf core pins on map); a dynamic importer's mapping validates
 * it into GTT on demand and is told with `move_notify` before every move,
 * after which it must map again. VRAM is never handed out (no peer-to-peer
 * DMA), so imported objects sit in system pages the importer's device
 * reaches through the DMA API.
 *
 * A user mmap of the dma-buf fd goes to the object's fake offset in the
 * DRM device's mapping, so the moves' PTE shoot-down reaches it too. The
 * kernel gets there by pointing the dma-buf file's `f_mapping` at the DRM
 * device's anon inode; dmalab's files take their mapping from their inode,
 * so the VMA's file is switched to the DRM file the buffer was exported
 * from (`vma_set_file`), which has the same effect.
 */

import {
  DMA_ATTR_SKIP_CPU_SYNC,
  type DmaDataDirection,
  dmaMapSgtable,
  dmaUnmapSgtable,
} from '../dma/index.js';
import {
  DmaBuf,
  type DmaBufAttachment,
  type DmaBufOps,
  dmaBufExport,
  dmaBufFd,
  O_CLOEXEC,
  resvHandle,
} from '../dmabuf/index.js';
import { createSgTable, type SgTable, sgAllocTableFromPages, sgFreeTable } from '../lib/index.js';
import {
  apiCall,
  DmalabError,
  EINVAL,
  ENOENT,
  GFP_KERNEL,
  type Machine,
  type Page,
} from '../machine/index.js';
import {
  type File,
  fputFile,
  getFileRef,
  O_ACCMODE,
  type Process,
  type Vma,
  vmaSetFile,
} from '../mm/index.js';
import { putBo, ttmBoPin, ttmBoUnpin, ttmBoValidate, ttmOperationCtx } from './bo.js';
import { GPU_GEM_DOMAIN_GTT, TTM_PL_TT } from './consts.js';
import { gpuBoPlacementFromDomain } from './gpu.js';
import { boHandle, type TtmBufferObject } from './handles.js';
import { boBacking } from './internal/prime-notify.js';
import { boState } from './internal/state.js';
import { drmGemObjectLookup, ttmBoMmapObj } from './vm.js';

/** The dma-buf's private data: the object, and the DRM file it was exported through. */
interface PrimePriv {
  bo: number;
  drmFile: number;
}

function privOf(db: DmaBuf): PrimePriv {
  return db.priv as PrimePriv;
}

function objOf(db: DmaBuf): TtmBufferObject {
  return boHandle(db.machine, privOf(db).bo);
}

/** Moves the object into GTT for an importer (the reservation is held by the dma-buf core). */
function toGtt(bo: TtmBufferObject): number {
  if (bo.memType === TTM_PL_TT) return 0;
  return ttmBoValidate(bo, gpuBoPlacementFromDomain(GPU_GEM_DOMAIN_GTT), ttmOperationCtx());
}

/** The exporter's ops (`amdgpu_dmabuf_ops`-like). */
export const ttmDmaBufOps: DmaBufOps = {
  attach: () => 0,
  pin(at: DmaBufAttachment) {
    const bo = objOf(at.dmabuf);
    const r = toGtt(bo);
    if (r !== 0) return r;
    ttmBoPin(bo);
    return 0;
  },
  unpin(at: DmaBufAttachment) {
    ttmBoUnpin(objOf(at.dmabuf));
  },
  mapDmaBuf(at: DmaBufAttachment, dir: number): SgTable | number {
    const bo = objOf(at.dmabuf);
    if (bo.pinCount === 0) {
      const r = toGtt(bo);
      if (r !== 0) return r;
    }
    const pages = bo.pfns as Page[];
    const sgt = createSgTable();
    const r = sgAllocTableFromPages(sgt, pages, pages.length, 0, bo.size, GFP_KERNEL);
    if (r < 0) return r;
    const n = dmaMapSgtable(at.dev, sgt, dir as DmaDataDirection, DMA_ATTR_SKIP_CPU_SYNC);
    if (n < 0) {
      sgFreeTable(sgt);
      return n;
    }
    return sgt;
  },
  unmapDmaBuf(at: DmaBufAttachment, sgt: SgTable, dir: number) {
    dmaUnmapSgtable(at.dev, sgt, dir as DmaDataDirection, DMA_ATTR_SKIP_CPU_SYNC);
    sgFreeTable(sgt);
  },
  release(db: DmaBuf) {
    const m = db.machine;
    const { bo, drmFile } = privOf(db);
    const s = boState(m).bos.get(bo);
    if (s !== undefined) {
      s.dmabuf = -1;
      putBo(m, s);
    }
    if (drmFile >= 0) fputFile(fileById(m, drmFile));
  },
  mmap(db: DmaBuf, vma: Vma) {
    const m = db.machine;
    const { drmFile } = privOf(db);
    const bo = objOf(db);
    if (drmFile < 0) return -EINVAL;
    // drm_gem_prime_mmap: the fake offset is added, so vm_pgoff names the object in the DRM mapping.
    vma.vmPgoff = vma.vmPgoff + bo.vmaNode.start;
    vmaSetFile(vma, fileById(m, drmFile));
    return ttmBoMmapObj(vma, bo);
  },
};

const files = new WeakMap<Machine, Map<number, File>>();

/** The File handle of an id kept in state (a reference is held by the dma-buf). */
function fileById(m: Machine, id: number): File {
  const f = files.get(m)?.get(id);
  if (f === undefined) throw new DmalabError(`DRM file ${id} is not known to the prime layer`);
  return f;
}

function remember(file: File): void {
  let map = files.get(file.machine);
  if (map === undefined) {
    map = new Map();
    files.set(file.machine, map);
  }
  map.set(file.id, file);
}

/**
 * `drm_gem_prime_export()`: the object as a dma-buf sharing its
 * reservation object; one per object (`obj->dma_buf`), holding an object
 * reference. `file` is the DRM file it is exported through (the kernel's
 * `drm_gem_prime_handle_to_fd` has it), used for user mmaps of the dma-buf.
 */
export function drmGemPrimeExport(
  bo: TtmBufferObject,
  flags: number,
  file: File | null = null,
): DmaBuf | number {
  const m = bo.machine;
  return apiCall(m, 'drm_gem_prime_export', () => {
    const s = bo.state;
    if (s.dmabuf >= 0) return new DmaBuf(m, s.dmabuf);
    if (file !== null) {
      getFileRef(file);
      remember(file);
    }
    const db = dmaBufExport(m, {
      expName: 'ttm',
      size: s.size,
      ops: ttmDmaBufOps,
      flags,
      priv: { bo: s.id, drmFile: file === null ? -1 : file.id } satisfies PrimePriv,
      resv: resvHandle(m, s.resv),
      backing: boBacking(m, s),
    });
    if (typeof db === 'number') {
      if (file !== null) fputFile(file);
      return db;
    }
    s.refs++;
    s.dmabuf = db.id;
    return db;
  });
}

/**
 * `drm_gem_prime_handle_to_fd()` (DRM_IOCTL_PRIME_HANDLE_TO_FD): exports
 * the object behind a GEM handle of the DRM file and installs the dma-buf
 * in a new fd of the calling process (`current`, last as mm's calls have
 * it). `flags` may hold `DRM_CLOEXEC` and `DRM_RDWR`. The fd, or -errno.
 */
export function drmGemPrimeHandleToFd(file: File, handle: number, flags: number, current: Process): number {
  const m = file.machine;
  return apiCall(m, 'drm_gem_prime_handle_to_fd', () => {
    const bo = drmGemObjectLookup(file, handle);
    if (bo === null) return -ENOENT;
    const had = bo.state.dmabuf >= 0;
    const db = drmGemPrimeExport(bo, flags & O_ACCMODE, file);
    if (typeof db === 'number') return db;
    // Each fd holds a reference to the dma-buf's file; the first one is the export's own.
    if (had) getFileRef(db.file);
    return dmaBufFd(current, db, flags & O_CLOEXEC);
  });
}
