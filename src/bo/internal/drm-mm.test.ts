import { describe, expect, it } from 'vitest';
import { ENOSPC } from '../../machine/index.js';
import {
  DRM_MM_INSERT_BEST,
  DRM_MM_INSERT_HIGH,
  drmMmInit,
  drmMmInsertNodeInRange,
  drmMmNodeAt,
  drmMmRemoveNodeAt,
  drmMmRemoveNodeOf,
} from './drm-mm.js';

const ALL = Number.MAX_SAFE_INTEGER;

/** A drm_mm of [0, 100) with five 2-page nodes owned 1…5 at 0, 2, 4, 6, 8 and a hole [10, 100). */
function five() {
  const mm = drmMmInit(0, 100);
  for (let i = 1; i <= 5; i++)
    expect(drmMmInsertNodeInRange(mm, 2, i, 0, ALL, DRM_MM_INSERT_BEST)).toBe(2 * i - 2);
  return mm;
}

describe('drm_mm (drivers/gpu/drm/drm_mm.c)', () => {
  it('DRM_MM_INSERT_BEST takes the smallest hole that fits, not the lowest', () => {
    const mm = drmMmInit(0, 16);
    for (const [owner, size] of [
      [1, 4],
      [2, 2],
      [3, 2],
      [4, 2],
    ] as const)
      drmMmInsertNodeInRange(mm, size, owner, 0, ALL, DRM_MM_INSERT_BEST);
    drmMmRemoveNodeOf(mm, 1); // hole [0, 4)
    drmMmRemoveNodeOf(mm, 3); // hole [6, 8); [10, 16) is free too
    // First fit would answer 0 and then 10.
    expect(drmMmInsertNodeInRange(mm, 2, 5, 0, ALL, DRM_MM_INSERT_BEST)).toBe(6);
    expect(drmMmInsertNodeInRange(mm, 4, 6, 0, ALL, DRM_MM_INSERT_BEST)).toBe(0);
    expect(drmMmInsertNodeInRange(mm, 7, 7, 0, ALL, DRM_MM_INSERT_BEST)).toBe(-ENOSPC);
    expect(drmMmInsertNodeInRange(mm, 6, 7, 0, ALL, DRM_MM_INSERT_BEST)).toBe(10);
  });

  it('among holes of one size, the one most recently added to the size tree wins', () => {
    const a = five();
    drmMmRemoveNodeOf(a, 2); // hole [2, 4)
    drmMmRemoveNodeOf(a, 4); // hole [6, 8), newer
    expect(drmMmInsertNodeInRange(a, 2, 9, 0, ALL, DRM_MM_INSERT_BEST)).toBe(6);
    expect(drmMmInsertNodeInRange(a, 2, 9, 0, ALL, DRM_MM_INSERT_BEST)).toBe(2);
    const b = five();
    drmMmRemoveNodeOf(b, 4);
    drmMmRemoveNodeOf(b, 2); // now [2, 4) is the newer one
    expect(drmMmInsertNodeInRange(b, 2, 9, 0, ALL, DRM_MM_INSERT_BEST)).toBe(2);
  });

  it('the remainder of a split hole is re-added: it becomes the newest of its size', () => {
    const a = five();
    drmMmRemoveNodeOf(a, 2); // hole [2, 4)
    expect(drmMmInsertNodeInRange(a, 88, 6, 0, ALL, DRM_MM_INSERT_BEST)).toBe(10); // leaves [98, 100), newer
    expect(drmMmInsertNodeInRange(a, 2, 7, 0, ALL, DRM_MM_INSERT_BEST)).toBe(98);
    expect(drmMmInsertNodeInRange(a, 2, 8, 0, ALL, DRM_MM_INSERT_BEST)).toBe(2);
    const b = five();
    expect(drmMmInsertNodeInRange(b, 88, 6, 0, ALL, DRM_MM_INSERT_BEST)).toBe(10);
    drmMmRemoveNodeOf(b, 2); // [2, 4) is now the newer hole of size 2
    expect(drmMmInsertNodeInRange(b, 2, 7, 0, ALL, DRM_MM_INSERT_BEST)).toBe(2);
  });

  it('a best hole outside the range gives way to the next in rb_prev order; the node sits at the range start', () => {
    const mm = five();
    drmMmRemoveNodeOf(mm, 2); // [2, 4)
    drmMmRemoveNodeOf(mm, 4); // [6, 8)
    expect(drmMmInsertNodeInRange(mm, 2, 9, 0, 5, DRM_MM_INSERT_BEST)).toBe(2);
    expect(drmMmInsertNodeInRange(mm, 2, 9, 7, 20, DRM_MM_INSERT_BEST)).toBe(10);
    expect(drmMmInsertNodeInRange(mm, 3, 9, 0, 2, DRM_MM_INSERT_BEST)).toBe(-ENOSPC);
  });

  it('DRM_MM_INSERT_HIGH takes the highest hole and places the node at its top', () => {
    const mm = five();
    drmMmRemoveNodeOf(mm, 2);
    expect(drmMmInsertNodeInRange(mm, 2, 9, 0, ALL, DRM_MM_INSERT_HIGH)).toBe(98);
    expect(drmMmInsertNodeInRange(mm, 2, 9, 0, 50, DRM_MM_INSERT_HIGH)).toBe(48);
    expect(drmMmInsertNodeInRange(mm, 1, 9, 0, 4, DRM_MM_INSERT_HIGH)).toBe(3);
  });

  it('removes by start or owner; finds a node by its exact start', () => {
    const mm = five();
    expect(drmMmNodeAt(mm, 4)).toEqual([2, 3]);
    expect(drmMmNodeAt(mm, 5)).toBeNull();
    expect(drmMmRemoveNodeAt(mm, 4)).toBe(true);
    expect(drmMmRemoveNodeAt(mm, 4)).toBe(false);
    expect(drmMmRemoveNodeOf(mm, 3)).toBe(false);
    expect(drmMmInsertNodeInRange(mm, 0, 9, 0, ALL, DRM_MM_INSERT_BEST)).toBe(-ENOSPC);
  });
});
