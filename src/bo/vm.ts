/**
 * The user mapping of buffer objects (drivers/gpu/drm/ttm/ttm_bo_vm.c,
 * drm_gem.c): `mmap` of the DRM file at an object's fake offset creates one
 * `VM_PFNMAP|VM_IO` VMA and no PTE; the fault handler finds the object from
 * `vm_pgoff`, waits for the moves in flight (KERNEL fences only), and
 * inserts the PFNs of the object's current backing — VRAM or system pages
 * alike — with the placement's caching, up to 16 pages forward. PTEs
 * another fault already set are left alone (the race of seed 004).
 */

import { apiCall, EACCES, EINVAL, type Machine, PAGE_SIZE } from '../machine/index.js';
import {
  FAULT_FLAG_ALLOW_RETRY,
  FAULT_FLAG_RETRY_NOWAIT,
  FAULT_FLAG_TRIED,
  type File,
  isCowMapping,
  type Pgprot,
  pgprotNoncached,
  pgprotWritecombine,
  VM_DONTDUMP,
  VM_DONTEXPAND,
  VM_FAULT_ERROR,
  VM_FAULT_NOPAGE,
  VM_FAULT_OOM,
  VM_FAULT_RETRY,
  VM_FAULT_SIGBUS,
  VM_IO,
  VM_PFNMAP,
  type Vma,
  type VmFault,
  type VmFaultT,
  type VmOperationsStruct,
  vmaPages,
  vmFlagsSet,
  vmfInsertPfnProt,
} from '../mm/index.js';
import { putBo, ttmBoGet, ttmOperationCtx } from './bo.js';
import {
  TTM_BO_VM_NUM_PREFAULT,
  TTM_TT_FLAG_EXTERNAL,
  TTM_TT_FLAG_EXTERNAL_MAPPABLE,
  ttm_cached,
  ttm_uncached,
} from './consts.js';
import { backingPfns, bdevHandle, boHandle, type TtmBufferObject } from './handles.js';
import { boPopulate } from './internal/move.js';
import { type BoObjState, boState } from './internal/state.js';
import { resvHeld, resvKernelIdle, resvLock, resvUnlock, resvWaitKernel } from './internal/sync.js';
import {
  drmVmaNodeAllow,
  drmVmaNodeIsAllowed,
  drmVmaNodeRevoke,
  drmVmaOffsetExactLookupLocked,
} from './vma-manager.js';

/** What a buffer object's VMA keeps in `vm_private_data`. */
interface BoVmaData {
  bo: number;
}

function boOfVma(vma: Vma): BoObjState | undefined {
  const d = vma.vmPrivateData as BoVmaData | undefined;
  return d === undefined ? undefined : boState(vma.machine).bos.get(d.bo);
}

/**
 * `ttm_io_prot()`: the protection a PTE of the object gets now — the tt's
 * caching for system pages, write-combined for VRAM (the driver's
 * `io_mem_reserve` sets that) — through `ttm_prot_from_caching`.
 */
export function ttmIoProt(bo: TtmBufferObject, prot: Pgprot): Pgprot {
  return ioProt(bo.machine, bo.state, prot);
}

function ioProt(m: Machine, bo: BoObjState, prot: Pgprot): Pgprot {
  const bdev = boState(m).bdevs[bo.bdev]!;
  const useTt = bo.resource === null || bdev.man[bo.resource.memType]!.useTt;
  const caching = useTt ? (bo.tt?.caching ?? ttm_cached) : 1;
  if (caching === ttm_cached) return prot;
  return caching === ttm_uncached ? pgprotNoncached(m, prot) : pgprotWritecombine(m, prot);
}

/**
 * `ttm_bo_vm_fault_reserved()`: with the reservation held, waits for the
 * object's KERNEL fences (pipelined moves) — the first attempt of a fault
 * that may retry waits and returns VM_FAULT_RETRY, as the kernel drops
 * mmap_lock to wait — then inserts the PFNs of the current backing from
 * the faulting page forward, at most `numPrefault` and not past the VMA.
 */
export function ttmBoVmFaultReserved(vmf: VmFault, prot: Pgprot, numPrefault: number): VmFaultT {
  const vma = vmf.vma;
  const m = vma.machine;
  return apiCall(m, 'ttm_bo_vm_fault_reserved', () => {
    const bo = boOfVma(vma);
    if (bo === undefined) return VM_FAULT_SIGBUS;
    if (!resvKernelIdle(m, bo.resv)) {
      if ((vmf.flags & FAULT_FLAG_ALLOW_RETRY) !== 0 && (vmf.flags & FAULT_FLAG_TRIED) === 0) {
        if ((vmf.flags & FAULT_FLAG_RETRY_NOWAIT) !== 0) return VM_FAULT_RETRY;
        resvWaitKernel(m, bo.resv);
        resvUnlock(m, bo.resv);
        return VM_FAULT_RETRY;
      }
      resvWaitKernel(m, bo.resv);
    }
    let pageOffset = (vmf.address - vma.vmStart) / PAGE_SIZE + vma.vmPgoff - bo.nodeStart;
    const pageLast = vmaPages(vma) + vma.vmPgoff - bo.nodeStart;
    if (pageOffset >= bo.pages) return VM_FAULT_SIGBUS;
    const p = ioProt(m, bo, prot);
    const bdev = boState(m).bdevs[bo.bdev]!;
    if (bo.resource !== null && bdev.man[bo.resource.memType]!.useTt) {
      if (boPopulate(m, bo, ttmOperationCtx()) !== 0) return VM_FAULT_SIGBUS;
    }
    const pfns = backingPfns(m, bo);
    let address = vmf.address as number;
    let ret: VmFaultT = VM_FAULT_NOPAGE;
    for (let i = 0; i < numPrefault; i++) {
      const pfn = pfns[pageOffset] ?? -1;
      if (pfn < 0) {
        if (i === 0) return VM_FAULT_OOM;
        break;
      }
      ret = vmfInsertPfnProt(vma, address, pfn, p);
      if ((ret & VM_FAULT_ERROR) !== 0) {
        if (i === 0) return VM_FAULT_NOPAGE;
        break;
      }
      address += PAGE_SIZE;
      if (++pageOffset >= pageLast) break;
    }
    return ret;
  });
}

/**
 * `ttm_bo_vm_fault()`: takes the reservation (a reservation held by the
 * faulting thread itself can never be had: VM_FAULT_RETRY on the first
 * attempt, VM_FAULT_NOPAGE on the retried one, and mm reports the livelock), refuses imported pages that are not mappable
 * (SIGBUS: map them through the exporter), and maps with the VMA's
 * protection and TTM's prefault window.
 */
export function ttmBoVmFault(vmf: VmFault): VmFaultT {
  const vma = vmf.vma;
  const m = vma.machine;
  return apiCall(m, 'ttm_bo_vm_fault', () => {
    const bo = boOfVma(vma);
    if (bo === undefined) return VM_FAULT_SIGBUS;
    if (resvHeld(m, bo.resv)) {
      // ttm_bo_vm_reserve: the first attempt of a fault that may retry drops
      // mmap_lock to wait for the lock and retries; the retried one gives up.
      const first = (vmf.flags & FAULT_FLAG_ALLOW_RETRY) !== 0 && (vmf.flags & FAULT_FLAG_TRIED) === 0;
      return first ? VM_FAULT_RETRY : VM_FAULT_NOPAGE;
    }
    resvLock(m, bo.resv);
    const f = bo.tt?.pageFlags ?? 0;
    if ((f & TTM_TT_FLAG_EXTERNAL) !== 0 && (f & TTM_TT_FLAG_EXTERNAL_MAPPABLE) === 0) {
      resvUnlock(m, bo.resv);
      return VM_FAULT_SIGBUS;
    }
    const ret = ttmBoVmFaultReserved(vmf, vma.vmPageProt, TTM_BO_VM_NUM_PREFAULT);
    if ((ret & VM_FAULT_RETRY) !== 0 && (vmf.flags & FAULT_FLAG_RETRY_NOWAIT) === 0) return ret;
    resvUnlock(m, bo.resv);
    return ret;
  });
}

/** `ttm_bo_vm_open()`: a copy of the VMA (a split) holds its own reference. */
export function ttmBoVmOpen(vma: Vma): void {
  const bo = boOfVma(vma);
  if (bo !== undefined) bo.refs++;
}

/** `ttm_bo_vm_close()`: the VMA's reference goes. */
export function ttmBoVmClose(vma: Vma): void {
  const bo = boOfVma(vma);
  if (bo !== undefined) putBo(vma.machine, bo);
}

/** `ttm_bo_vm_ops`. */
export const ttmBoVmOps: VmOperationsStruct = { fault: ttmBoVmFault, open: ttmBoVmOpen, close: ttmBoVmClose };

/**
 * `ttm_bo_mmap_obj()`: a private writable (copy-on-write) mapping is
 * -EINVAL; otherwise the VMA takes a reference and becomes
 * `VM_PFNMAP|VM_IO|VM_DONTEXPAND|VM_DONTDUMP` with TTM's vm_ops. No PTE is
 * created.
 */
export function ttmBoMmapObj(vma: Vma, bo: TtmBufferObject): number {
  const m = vma.machine;
  return apiCall(m, 'ttm_bo_mmap_obj', () => {
    if (isCowMapping(vma.vmFlags)) return -EINVAL;
    ttmBoGet(bo);
    vma.vmPrivateData = { bo: bo.id } satisfies BoVmaData;
    vma.vmOps = ttmBoVmOps;
    vmFlagsSet(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
    return 0;
  });
}

function bdevByPath(m: Machine, path: string) {
  return boState(m).bdevs.find((b) => b.path === path);
}

/**
 * `drm_gem_mmap()`: the mapping must start exactly at an object's fake
 * offset and not be longer than the object (-EINVAL), and the file must
 * have been allowed the object (-EACCES); then `ttm_bo_mmap_obj`.
 */
export function drmGemMmap(filp: File, vma: Vma): number {
  const m = vma.machine;
  return apiCall(m, 'drm_gem_mmap', () => {
    const bdev = bdevByPath(m, filp.path);
    if (bdev === undefined) return -EINVAL;
    bdev.mappingId = filp.fMapping.id;
    const node = drmVmaOffsetExactLookupLocked(bdevHandle(m, bdev.id).vmaManager, vma.vmPgoff, vmaPages(vma));
    if (node === null) return -EINVAL;
    const bo = boState(m).bos.get(node.bo);
    if (bo === undefined || bo.refs === 0 || bo.deleted) return -EINVAL;
    if (!drmVmaNodeIsAllowed(node, filp)) return -EACCES;
    if (node.size * PAGE_SIZE < vma.vmEnd - vma.vmStart) return -EINVAL;
    return ttmBoMmapObj(vma, boHandle(m, bo.id));
  });
}

/** The DRM file's private data: GEM handles, as `[handle, bo]` pairs. */
export interface DrmFileData {
  handles: [number, number][];
  next: number;
}

function fileData(file: File): DrmFileData {
  let d = file.privateData as DrmFileData | undefined;
  if (d === undefined) {
    d = { handles: [], next: 1 };
    file.privateData = d;
  }
  return d;
}

/**
 * `drm_gem_handle_create()`: a handle in the file for the object, taking a
 * reference and allowing the file to mmap it (`drm_vma_node_allow`).
 * Returns the handle (the kernel's out-parameter; handles start at 1).
 */
export function drmGemHandleCreate(file: File, bo: TtmBufferObject): number {
  const m = file.machine;
  return apiCall(m, 'drm_gem_handle_create', () => {
    const d = fileData(file);
    const h = d.next++;
    ttmBoGet(bo);
    drmVmaNodeAllow(bo.vmaNode, file);
    d.handles.push([h, bo.id]);
    file.privateData = d;
    return h;
  });
}

/** `drm_gem_object_lookup()`: the object behind a handle, or null. */
export function drmGemObjectLookup(file: File, handle: number): TtmBufferObject | null {
  const d = file.privateData as DrmFileData | undefined;
  const e = d?.handles.find(([h]) => h === handle);
  return e === undefined ? null : boHandle(file.machine, e[1]);
}

/** Drops handle `i` of the file (its allowance and its reference). */
export function deleteHandle(m: Machine, file: File, d: DrmFileData, i: number): void {
  const [, id] = d.handles[i]!;
  d.handles.splice(i, 1);
  const bo = boState(m).bos.get(id);
  if (bo === undefined) return;
  drmVmaNodeRevoke(boHandle(m, id).vmaNode, file);
  putBo(m, bo);
}

/** `drm_gem_handle_delete()`: 0 or -EINVAL for an unknown handle. */
export function drmGemHandleDelete(file: File, handle: number): number {
  const m = file.machine;
  return apiCall(m, 'drm_gem_handle_delete', () => {
    const d = file.privateData as DrmFileData | undefined;
    const i = d?.handles.findIndex(([h]) => h === handle) ?? -1;
    if (d === undefined || i < 0) return -EINVAL;
    deleteHandle(m, file, d, i);
    file.privateData = d;
    return 0;
  });
}
