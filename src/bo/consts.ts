/**
 * TTM's and DRM's constants, with the kernel's names and values
 * (include/drm/ttm/ttm_placement.h, ttm_caching.h, ttm_tt.h, ttm_bo.h,
 * include/drm/drm_vma_manager.h), and the GPU model's GEM domains
 * (amdgpu's values, include/uapi/drm/amdgpu_drm.h).
 */

/** Memory types (`TTM_PL_*`): system pages, pages bound into the GPU aperture, and device memory. */
export const TTM_PL_SYSTEM = 0;
export const TTM_PL_TT = 1;
export const TTM_PL_VRAM = 2;
export const TTM_PL_PRIV = 3;
/**
 * `TTM_NUM_MEM_TYPES` (include/drm/ttm/ttm_resource.h): 9 since v6.18
 * (commit 60df8a5d8f65, room for amdgpu's AMDGPU_PL_MMIO_REMAP), 8 before.
 */
export const TTM_NUM_MEM_TYPES = 9;
/** `TTM_MAX_BO_PRIORITY`: priorities 0 (evicted first) … 3. */
export const TTM_MAX_BO_PRIORITY = 4;

/** `struct ttm_place` flags. */
export const TTM_PL_FLAG_CONTIGUOUS = 1 << 0;
export const TTM_PL_FLAG_TOPDOWN = 1 << 1;
export const TTM_PL_FLAG_TEMPORARY = 1 << 2;
/** Never used while evicting or forcing space. */
export const TTM_PL_FLAG_DESIRED = 1 << 3;
/** Only used while evicting or forcing space. */
export const TTM_PL_FLAG_FALLBACK = 1 << 4;

/** `enum ttm_caching`. */
export const ttm_uncached = 0;
export const ttm_write_combined = 1;
export const ttm_cached = 2;
export type TtmCaching = typeof ttm_uncached | typeof ttm_write_combined | typeof ttm_cached;

/** `ttm_tt.page_flags`. */
export const TTM_TT_FLAG_SWAPPED = 1 << 0;
export const TTM_TT_FLAG_ZERO_ALLOC = 1 << 1;
export const TTM_TT_FLAG_EXTERNAL = 1 << 2;
export const TTM_TT_FLAG_EXTERNAL_MAPPABLE = 1 << 3;

/** `enum ttm_bo_type`. */
export const ttm_bo_type_device = 0;
export const ttm_bo_type_kernel = 1;
export const ttm_bo_type_sg = 2;
export type TtmBoType = typeof ttm_bo_type_device | typeof ttm_bo_type_kernel | typeof ttm_bo_type_sg;

/** `TTM_BO_VM_NUM_PREFAULT`: pages a fault maps forward from the faulting address. */
export const TTM_BO_VM_NUM_PREFAULT = 16;

/** `DRM_FILE_PAGE_OFFSET_START` (64-bit): fake offsets start at the byte offset 4 GiB. */
export const DRM_FILE_PAGE_OFFSET_START = (0xffffffff >>> 12) + 1;
/** `DRM_FILE_PAGE_OFFSET_SIZE` (recent header: `* 256`). */
export const DRM_FILE_PAGE_OFFSET_SIZE = (0xffffffff >>> 12) * 256;

/** GEM domains of the GPU model (amdgpu's values): CPU-only system pages, GART-bound pages, VRAM. */
export const GPU_GEM_DOMAIN_CPU = 0x1;
export const GPU_GEM_DOMAIN_GTT = 0x2;
export const GPU_GEM_DOMAIN_VRAM = 0x4;

/** Names of the memory types, for events and messages. */
export const MEM_TYPE_NAMES: readonly string[] = ['system', 'tt', 'vram', 'priv'];
