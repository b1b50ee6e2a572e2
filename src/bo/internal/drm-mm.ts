/**
 * `struct drm_mm` (drivers/gpu/drm/drm_mm.c): the range allocator behind
 * the fake-offset space (`drm_vma_offset_add` → `drm_mm_insert_node`) and
 * TTM's range managers (`ttm_range_man_alloc`). Plain data: the allocated
 * nodes sorted by start, and for each hole the order in which drm_mm last
 * (re)inserted it into its size tree.
 *
 * Which hole a request takes is what user space sees (fake offsets, VRAM
 * and GART pages), so the search follows drm_mm's, not just its spirit:
 *
 *   DRM_MM_INSERT_BEST (the default, mode 0): the smallest hole that fits;
 *     among holes of one size the one added to the size tree last (the
 *     tree keeps equal sizes in insertion order and `best_hole` takes the
 *     rightmost); when range limits make it unusable, the next one in
 *     `rb_prev` order — same size older first, then larger. The node goes
 *     at the bottom of the hole.
 *   DRM_MM_INSERT_HIGH (TTM_PL_FLAG_TOPDOWN): holes from the highest
 *     address down; the node goes at the top of the hole.
 *
 * A hole is re-added (and so becomes the newest of its size) whenever
 * `add_hole` runs for it: the remainders of a hole an insertion split, and
 * the merged hole a removal leaves behind its predecessor.
 */

import { ENOSPC } from '../../machine/index.js';

/** `enum drm_mm_insert_mode` values dmalab uses. */
export const DRM_MM_INSERT_BEST = 0;
export const DRM_MM_INSERT_HIGH = 2;
export type DrmMmInsertMode = typeof DRM_MM_INSERT_BEST | typeof DRM_MM_INSERT_HIGH;

/** Stride of a node in `DrmMmState.nodes`: start, size, owner, hole order. */
const N = 4;

export interface DrmMmState {
  /** The managed range [start, start + size). */
  start: number;
  size: number;
  /**
   * Allocated nodes sorted by start: flat [start, size, owner, holeSeq]
   * quadruples; `holeSeq` is when the hole after the node was last added
   * to the size tree (meaningless while no hole follows it).
   */
  nodes: number[];
  /** `holeSeq` of the hole before the first node (drm_mm's head node). */
  headSeq: number;
  /** The next `holeSeq` to hand out. */
  seq: number;
}

/** `drm_mm_init()`: one hole covering the whole range. */
export function drmMmInit(start: number, size: number): DrmMmState {
  return { start, size, nodes: [], headSeq: 0, seq: 1 };
}

interface Hole {
  /** Index in `nodes` of the node the hole follows, -1 for the head. */
  at: number;
  start: number;
  end: number;
  seq: number;
}

/** The holes in address order (only those of non-zero size, as drm_mm tracks them). */
function holes(mm: DrmMmState): Hole[] {
  const out: Hole[] = [];
  const n = mm.nodes;
  let start = mm.start;
  let seq = mm.headSeq;
  let at = -1;
  for (let i = 0; i <= n.length; i += N) {
    const end = i < n.length ? n[i]! : mm.start + mm.size;
    if (end > start) out.push({ at, start, end, seq });
    if (i < n.length) {
      start = n[i]! + n[i + 1]!;
      seq = n[i + 3]!;
      at = i;
    }
  }
  return out;
}

function addHole(mm: DrmMmState, at: number): void {
  if (at < 0) mm.headSeq = mm.seq++;
  else mm.nodes[at + 3] = mm.seq++;
}

/**
 * `drm_mm_insert_node_in_range()` without alignment or colour: places a
 * node of `size` owned by `owner` inside [rangeStart, rangeEnd) and
 * returns its start, or -ENOSPC.
 */
export function drmMmInsertNodeInRange(
  mm: DrmMmState,
  size: number,
  owner: number,
  rangeStart: number,
  rangeEnd: number,
  mode: DrmMmInsertMode,
): number {
  if (size <= 0 || rangeEnd - rangeStart < size) return -ENOSPC;
  const fit = holes(mm).filter((h) => h.end - h.start >= size);
  if (mode === DRM_MM_INSERT_HIGH) fit.reverse();
  else fit.sort((a, b) => a.end - a.start - (b.end - b.start) || b.seq - a.seq);
  for (const h of fit) {
    const lo = Math.max(h.start, rangeStart);
    const hi = Math.min(h.end, rangeEnd);
    if (hi <= lo || hi - lo < size) continue;
    const start = mode === DRM_MM_INSERT_HIGH ? hi - size : lo;
    const at = h.at < 0 ? 0 : h.at + N;
    mm.nodes.splice(at, 0, start, size, owner, 0);
    // rm_hole(hole), then add_hole for what is left below and above the node, in that order.
    if (start > h.start) addHole(mm, h.at);
    if (start + size < h.end) addHole(mm, at);
    return start;
  }
  return -ENOSPC;
}

/** `drm_mm_remove_node()` of the node at `i` in `nodes`: its space merges into the hole before it. */
function removeNode(mm: DrmMmState, i: number): void {
  mm.nodes.splice(i, N);
  // rm_hole of both neighbours' holes, then add_hole(prev): the merged hole is the newest of its size.
  addHole(mm, i === 0 ? -1 : i - N);
}

/** `drm_mm_remove_node()` of the node starting at `start`; false when there is none. */
export function drmMmRemoveNodeAt(mm: DrmMmState, start: number): boolean {
  const n = mm.nodes;
  for (let i = 0; i < n.length; i += N) {
    if (n[i] === start) {
      removeNode(mm, i);
      return true;
    }
  }
  return false;
}

/** `drm_mm_remove_node()` of the node `owner` holds; false when there is none. */
export function drmMmRemoveNodeOf(mm: DrmMmState, owner: number): boolean {
  const n = mm.nodes;
  for (let i = 0; i < n.length; i += N) {
    if (n[i + 2] === owner) {
      removeNode(mm, i);
      return true;
    }
  }
  return false;
}

/** The node starting exactly at `start`: [size, owner], or null. */
export function drmMmNodeAt(mm: DrmMmState, start: number): [size: number, owner: number] | null {
  const n = mm.nodes;
  for (let i = 0; i < n.length; i += N) {
    if (n[i] === start) return [n[i + 1]!, n[i + 2]!];
    if (n[i]! > start) break;
  }
  return null;
}
