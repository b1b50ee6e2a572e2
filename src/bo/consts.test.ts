import { describe, expect, it } from 'vitest';
import {
  TTM_MAX_BO_PRIORITY,
  TTM_NUM_MEM_TYPES,
  TTM_PL_PRIV,
  TTM_PL_SYSTEM,
  TTM_PL_TT,
  TTM_PL_VRAM,
} from '../index.js';

describe('TTM constants', () => {
  it('has the values of include/drm/ttm/ttm_resource.h and ttm_placement.h in current mainline', () => {
    // 9 memory types since commit 60df8a5d8f65 (v6.18); TTM_MAX_BO_PRIORITY is still 4.
    expect(TTM_NUM_MEM_TYPES).toBe(9);
    expect(TTM_MAX_BO_PRIORITY).toBe(4);
    expect([TTM_PL_SYSTEM, TTM_PL_TT, TTM_PL_VRAM, TTM_PL_PRIV]).toEqual([0, 1, 2, 3]);
  });
});
