/**
 * The checker's finding codes, registered once with their severity and
 * verdict, and the parity table: every check of the kernel's dma-debug
 * (kernel/dma/debug.c; reference/dma-api-semantics.md §6b numbers them) ↔
 * the dmalab code that reports it.
 *
 * dma-debug rules are `api` (the kernel prints a WARN); ownership, shared
 * cache lines, attribute aliases and device accesses outside any mapping
 * are `latent` (they work on some machines); stale data is `broken`.
 */

import { type FindingCode, registerFindingCode } from '../machine/index.js';

function dmaDebug(code: string, title: string): FindingCode {
  return registerFindingCode({ code, severity: 'warning', verdict: 'api', title, layer: 'debug' });
}

function latent(code: string, title: string): FindingCode {
  return registerFindingCode({ code, severity: 'warning', verdict: 'latent', title, layer: 'debug' });
}

export const DMA_FREE_INVALID_ADDR = dmaDebug(
  'DMA_FREE_INVALID_ADDR',
  'unmap or free of DMA_MAPPING_ERROR (dma-debug: tries to free an invalid DMA memory address)',
);
export const DMA_FREE_NOT_ALLOCATED = dmaDebug(
  'DMA_FREE_NOT_ALLOCATED',
  'unmap or free of an address with no live mapping: never mapped, double unmap or wrong device',
);
export const DMA_FREE_WRONG_SIZE = dmaDebug('DMA_FREE_WRONG_SIZE', 'unmap or free with a different size');
export const DMA_FREE_WRONG_FUNCTION = dmaDebug(
  'DMA_FREE_WRONG_FUNCTION',
  'unmap or free with the function of another mapping type (e.g. dma_unmap_page of an sg mapping)',
);
export const DMA_FREE_WRONG_CPU_ADDR = dmaDebug(
  'DMA_FREE_WRONG_CPU_ADDR',
  'free of a coherent or non-coherent allocation with a different CPU address',
);
export const DMA_FREE_SG_NENTS = dmaDebug('DMA_FREE_SG_NENTS', 'dma_unmap_sg with a different entry count');
export const DMA_FREE_WRONG_DIR = dmaDebug('DMA_FREE_WRONG_DIR', 'unmap with a different direction');
export const DMA_MAP_ERROR_UNCHECKED = dmaDebug(
  'DMA_MAP_ERROR_UNCHECKED',
  'a mapping unmapped without its address ever passed to dma_mapping_error()',
);
export const DMA_FREE_WRONG_ATTRS = dmaDebug(
  'DMA_FREE_WRONG_ATTRS',
  'unmap with different attributes among those that must match (NO_KERNEL_MAPPING, FORCE_CONTIGUOUS, MMIO, REQUIRE_COHERENT, PRIVILEGED, CC_SHARED)',
);
export const DMA_SYNC_NOT_ALLOCATED = dmaDebug(
  'DMA_SYNC_NOT_ALLOCATED',
  'sync of a range no live mapping of the device contains',
);
export const DMA_SYNC_OUT_OF_RANGE = dmaDebug(
  'DMA_SYNC_OUT_OF_RANGE',
  'sync larger than its mapping (unreachable in current kernels: see docs/checker.md)',
);
export const DMA_SYNC_WRONG_DIR = dmaDebug(
  'DMA_SYNC_WRONG_DIR',
  'sync with a direction other than the mapping’s (mapping not bidirectional)',
);
export const DMA_SYNC_DEVICE_READ_ONLY = dmaDebug(
  'DMA_SYNC_DEVICE_READ_ONLY',
  'sync for the CPU of a DMA_TO_DEVICE mapping with a direction other than DMA_TO_DEVICE',
);
export const DMA_SYNC_DEVICE_WRITE_ONLY = dmaDebug(
  'DMA_SYNC_DEVICE_WRITE_ONLY',
  'sync for the device of a DMA_FROM_DEVICE mapping with a direction other than DMA_FROM_DEVICE',
);
export const DMA_SYNC_SG_NENTS = dmaDebug('DMA_SYNC_SG_NENTS', 'dma_sync_sg_* with a different entry count');
export const DMA_MAP_STACK = dmaDebug(
  'DMA_MAP_STACK',
  'a mapping of memory on the current task’s kernel stack (direct-mapped or vmapped)',
);
export const DMA_MAP_KERNEL_TEXT = dmaDebug(
  'DMA_MAP_KERNEL_TEXT',
  'a mapping of memory in the kernel image text or rodata',
);
export const DMA_MAP_INVALID_AREA = dmaDebug(
  'DMA_MAP_INVALID_AREA',
  'dma_map_single of an address that is not a valid linear-map address (virt_addr_valid fails)',
);
export const DMA_MAP_RESOURCE_RAM = dmaDebug(
  'DMA_MAP_RESOURCE_RAM',
  'dma_map_resource (an MMIO mapping) of ordinary, non-reserved RAM',
);
export const DMA_SG_SEGMENT_TOO_LONG = dmaDebug(
  'DMA_SG_SEGMENT_TOO_LONG',
  'a scatterlist entry longer than the device’s dma_get_max_seg_size()',
);
export const DMA_SG_SEGMENT_BOUNDARY = dmaDebug(
  'DMA_SG_SEGMENT_BOUNDARY',
  'a mapped scatterlist segment crossing the device’s dma_get_seg_boundary()',
);
export const DMA_CACHELINE_OVERLAP = dmaDebug(
  'DMA_CACHELINE_OVERLAP',
  'a device-writable mapping whose first cache line is already mapped device-writable (where the kernel checks it)',
);
export const DMA_LEAK_AT_UNBIND = dmaDebug(
  'DMA_LEAK_AT_UNBIND',
  'mappings or allocations still live when the driver is released from the device',
);
export const DMA_CACHELINE_OVERLAP_LIMIT = dmaDebug(
  'DMA_CACHELINE_OVERLAP_LIMIT',
  'more than 7 overlapping mappings of one cache line (a WARN_ONCE: mappings are probably leaking)',
);

export const OWNERSHIP = latent(
  'OWNERSHIP',
  'an access by the agent that does not own the bytes: the CPU while the device owns them, a device while the CPU does, a device writing a DMA_TO_DEVICE mapping, or two devices in different coherency domains owning them while one may write',
);
export const UNMAPPED_DMA = latent(
  'UNMAPPED_DMA',
  'a device access to memory that no mapping, coherent allocation or IOMMU mapping gives the device (e.g. a driver that programmed virt_to_phys())',
);
export const SHARED_CACHELINE = latent(
  'SHARED_CACHELINE',
  'a CPU store to a cache line that a device-owned, device-writable mapping partially covers (the status word next to a DMA buffer)',
);
export const ATTR_ALIAS = latent(
  'ATTR_ALIAS',
  'cached and uncached (or write-combined) views of one physical page, or dirty cache lines left when an uncached view is created',
);
export const DMA_FREE_MMAPPED = latent(
  'DMA_FREE_MMAPPED',
  'DMA memory freed while a user mapping made by dma_mmap_* still points at it (the process keeps stale PTEs to freed pages)',
);
export const DMABUF_MOVED_MAPPING = latent(
  'DMABUF_MOVED_MAPPING',
  'a device used a dma-buf mapping after the exporter announced a move (move_notify) and before its importer mapped again: a write is lost to the buffer (broken), a read sees the old place',
);
export const STALE_DATA = registerFindingCode({
  code: 'STALE_DATA',
  severity: 'error',
  verdict: 'broken',
  title: 'stale data observed: an agent read bytes other than the last bytes written to them',
  layer: 'debug',
});

/** One row of the dma-debug parity table. */
export interface DmaDebugCheck {
  /** The check's number in reference/dma-api-semantics.md §6b. */
  readonly check: number;
  /** The dmalab code, or another layer's code where that layer reports it. */
  readonly code: string;
  /** Where dmalab differs from, or cannot yet do, what dma-debug does. */
  readonly note?: string;
}

/** Every dma-debug check and the code that reports it. */
export const DMA_DEBUG_CHECKS: readonly DmaDebugCheck[] = [
  { check: 1, code: DMA_FREE_INVALID_ADDR.code },
  { check: 2, code: DMA_FREE_NOT_ALLOCATED.code },
  { check: 3, code: DMA_FREE_WRONG_SIZE.code },
  { check: 4, code: DMA_FREE_WRONG_FUNCTION.code },
  { check: 5, code: DMA_FREE_WRONG_CPU_ADDR.code },
  { check: 6, code: DMA_FREE_SG_NENTS.code },
  { check: 7, code: DMA_FREE_WRONG_DIR.code },
  { check: 8, code: DMA_MAP_ERROR_UNCHECKED.code },
  { check: 9, code: DMA_FREE_WRONG_ATTRS.code },
  { check: 10, code: DMA_SYNC_NOT_ALLOCATED.code },
  {
    check: 11,
    code: DMA_SYNC_OUT_OF_RANGE.code,
    note: 'the lookup only returns mappings that contain the synced range, so the kernel never reaches this message; a sync past the end reports check 10',
  },
  { check: 12, code: DMA_SYNC_WRONG_DIR.code },
  { check: 13, code: DMA_SYNC_DEVICE_READ_ONLY.code },
  { check: 14, code: DMA_SYNC_DEVICE_WRITE_ONLY.code },
  { check: 15, code: DMA_SYNC_SG_NENTS.code },
  { check: 16, code: DMA_MAP_STACK.code },
  { check: 17, code: DMA_MAP_KERNEL_TEXT.code },
  { check: 18, code: DMA_MAP_INVALID_AREA.code },
  {
    check: 19,
    code: 'WARN',
    note: 'dma_map_single refuses vmalloc memory with its own WARN before dma-debug runs',
  },
  { check: 20, code: DMA_MAP_RESOURCE_RAM.code },
  { check: 21, code: DMA_SG_SEGMENT_TOO_LONG.code },
  { check: 22, code: DMA_SG_SEGMENT_BOUNDARY.code },
  { check: 23, code: DMA_CACHELINE_OVERLAP.code },
  { check: 24, code: DMA_LEAK_AT_UNBIND.code },
  { check: 25, code: DMA_CACHELINE_OVERLAP_LIMIT.code },
];

export const BO_STALE_PTE = registerFindingCode({
  code: 'BO_STALE_PTE',
  severity: 'error',
  verdict: 'broken',
  title:
    'a user access to a buffer object through a PTE to memory that no longer backs it (a move without the PTE shoot-down)',
  layer: 'debug',
});
