/**
 * Fake offsets (drivers/gpu/drm/drm_vma_manager.c): each buffer object gets
 * a range of page offsets in its device file, starting at 4 GiB; user space
 * passes the byte offset to mmap(), and the kernel sees `vm_pgoff` naming
 * the object rather than a physical page (seed 004). The space is per
 * device; a lookup is exact (the mapping must start at the object's start).
 */

import { apiCall, DmalabError, EACCES, PAGE_SIZE } from '../machine/index.js';
import { type AddressSpace, type File, unmapMappingRange } from '../mm/index.js';
import { type DrmVmaOffsetManager, type DrmVmaOffsetNode, nodeHandle } from './handles.js';
import {
  DRM_MM_INSERT_BEST,
  drmMmInsertNodeInRange,
  drmMmNodeAt,
  drmMmRemoveNodeOf,
} from './internal/drm-mm.js';
import { bdevState, boObj } from './internal/state.js';

function checkSameDevice(mgr: DrmVmaOffsetManager, node: DrmVmaOffsetNode): void {
  if (mgr.machine !== node.machine || boObj(node.machine, node.bo).bdev !== mgr.bdev) {
    throw new DmalabError('the offset node belongs to another device’s offset manager');
  }
}

/**
 * `drm_vma_offset_add()`: gives the node `pages` pages of fake offset from
 * the device's space above DRM_FILE_PAGE_OFFSET_START, through
 * `drm_mm_insert_node()` — best fit (DRM_MM_INSERT_BEST): the smallest
 * free range that fits, so offsets freed by released objects are reused
 * smallest-first, not lowest-first. A no-op when it already has some.
 * Returns 0 or -ENOSPC.
 */
export function drmVmaOffsetAdd(mgr: DrmVmaOffsetManager, node: DrmVmaOffsetNode, pages: number): number {
  const m = mgr.machine;
  return apiCall(m, 'drm_vma_offset_add', () => {
    checkSameDevice(mgr, node);
    if (!Number.isInteger(pages) || pages <= 0) {
      throw new DmalabError(`drm_vma_offset_add: pages must be a positive integer, got ${pages}`);
    }
    const bo = boObj(m, node.bo);
    if (bo.nodePages > 0) return 0;
    const mm = bdevState(m, mgr.bdev).vmaMm;
    // drm_mm_insert_node(): no range limit, no alignment, mode 0.
    const start = drmMmInsertNodeInRange(mm, pages, bo.id, 0, Number.MAX_SAFE_INTEGER, DRM_MM_INSERT_BEST);
    if (start < 0) return start;
    bo.nodeStart = start;
    bo.nodePages = pages;
    return 0;
  });
}

/** `drm_vma_offset_remove()`: frees the node's range; its start and size read 0 afterwards. */
export function drmVmaOffsetRemove(mgr: DrmVmaOffsetManager, node: DrmVmaOffsetNode): void {
  const m = mgr.machine;
  apiCall(m, 'drm_vma_offset_remove', () => {
    checkSameDevice(mgr, node);
    const bo = boObj(m, node.bo);
    if (bo.nodePages === 0) return;
    drmMmRemoveNodeOf(bdevState(m, mgr.bdev).vmaMm, bo.id);
    bo.nodeStart = 0;
    bo.nodePages = 0;
  });
}

/**
 * `drm_vma_offset_exact_lookup_locked()`: the node starting exactly at
 * page `start` and at least `pages` long, or null.
 */
export function drmVmaOffsetExactLookupLocked(
  mgr: DrmVmaOffsetManager,
  start: number,
  pages: number,
): DrmVmaOffsetNode | null {
  const hit = drmMmNodeAt(bdevState(mgr.machine, mgr.bdev).vmaMm, start);
  if (hit === null) return null;
  return hit[0] >= pages ? nodeHandle(mgr.machine, hit[1]) : null;
}

/** `drm_vma_node_start()`: first page of the fake offset. */
export function drmVmaNodeStart(node: DrmVmaOffsetNode): number {
  return node.start;
}

/** `drm_vma_node_size()`: pages of the fake offset. */
export function drmVmaNodeSize(node: DrmVmaOffsetNode): number {
  return node.size;
}

/** `drm_vma_node_has_offset()`. */
export function drmVmaNodeHasOffset(node: DrmVmaOffsetNode): boolean {
  return node.size > 0;
}

/** `drm_vma_node_offset_addr()`: the byte offset user space passes to mmap(). */
export function drmVmaNodeOffsetAddr(node: DrmVmaOffsetNode): number {
  return node.start * PAGE_SIZE;
}

/** `drm_vma_node_allow()`: lets an open file mmap the node (counted per file). */
export function drmVmaNodeAllow(node: DrmVmaOffsetNode, file: File): number {
  const bo = boObj(node.machine, node.bo);
  const e = bo.allowed.find(([f]) => f === file.id);
  if (e !== undefined) e[1]++;
  else bo.allowed.push([file.id, 1]);
  return 0;
}

/** `drm_vma_node_revoke()`: drops one allowance of the file. */
export function drmVmaNodeRevoke(node: DrmVmaOffsetNode, file: File): void {
  const bo = boObj(node.machine, node.bo);
  const i = bo.allowed.findIndex(([f]) => f === file.id);
  if (i < 0) return;
  const e = bo.allowed[i]!;
  if (--e[1] === 0) bo.allowed.splice(i, 1);
}

/** `drm_vma_node_is_allowed()`. */
export function drmVmaNodeIsAllowed(node: DrmVmaOffsetNode, file: File): boolean {
  return boObj(node.machine, node.bo).allowed.some(([f]) => f === file.id);
}

/** `drm_vma_node_verify_access()`: 0 or -EACCES. */
export function drmVmaNodeVerifyAccess(node: DrmVmaOffsetNode, file: File): number {
  return drmVmaNodeIsAllowed(node, file) ? 0 : -EACCES;
}

/**
 * `drm_vma_node_unmap()`: shoots down every user PTE of the node's range in
 * the device's shared address space, in every process.
 */
export function drmVmaNodeUnmap(node: DrmVmaOffsetNode, fileMapping: AddressSpace): void {
  if (node.size === 0) return;
  unmapMappingRange(fileMapping, node.start * PAGE_SIZE, node.size * PAGE_SIZE, 1);
}
