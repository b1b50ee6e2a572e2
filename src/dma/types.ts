/**
 * Constants of the DMA mapping API (include/linux/dma-direction.h,
 * include/linux/dma-mapping.h), with the kernel's names and values.
 */

import { ALL_ONES, type DmaAddr, type DmaMaskBits } from '../machine/index.js';

/** `enum dma_data_direction`. */
export type DmaDataDirection = 0 | 1 | 2 | 3;
export const DMA_BIDIRECTIONAL = 0 as const;
export const DMA_TO_DEVICE = 1 as const;
export const DMA_FROM_DEVICE = 2 as const;
export const DMA_NONE = 3 as const;

const DIR_NAMES = ['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_NONE'] as const;

/** The direction's name as dma-debug prints it (`dir2name`). */
export function dmaDirName(dir: number): string {
  return DIR_NAMES[dir] ?? `invalid direction ${dir}`;
}

/** `valid_dma_direction()`: DMA_NONE and anything else is invalid. */
export function validDmaDirection(dir: number): dir is 0 | 1 | 2 {
  return dir === DMA_BIDIRECTIONAL || dir === DMA_TO_DEVICE || dir === DMA_FROM_DEVICE;
}

/** `DMA_MAPPING_ERROR`: the all-ones `dma_addr_t`. */
export const DMA_MAPPING_ERROR = ALL_ONES as DmaAddr;

/** `DMA_BIT_MASK(n)`: dmalab carries masks as bit counts (API.md §1). */
export function DMA_BIT_MASK(n: number): DmaMaskBits {
  return n as DmaMaskBits;
}

/** 2^min(n, 53) for n = 0…64: `2 ** n` with a variable exponent is slow on hot paths. */
const MASK_LIMITS = Array.from({ length: 65 }, (_, n) => 2 ** Math.min(n, 53));

/** The highest address a mask of `bits` allows, plus one (safe up to 2^53). */
export function maskLimit(bits: number): number {
  return MASK_LIMITS[bits] ?? 2 ** Math.min(bits, 53);
}

// DMA_ATTR_* (include/linux/dma-mapping.h, current numbering).
export const DMA_ATTR_WEAK_ORDERING = 1 << 1;
export const DMA_ATTR_WRITE_COMBINE = 1 << 2;
export const DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4;
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
export const DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6;
export const DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7;
export const DMA_ATTR_NO_WARN = 1 << 8;
export const DMA_ATTR_PRIVILEGED = 1 << 9;
export const DMA_ATTR_MMIO = 1 << 10;
export const DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = 1 << 11;
export const DMA_ATTR_REQUIRE_COHERENT = 1 << 12;
export const DMA_ATTR_CC_SHARED = 1 << 13;

const ATTR_NAMES: readonly [number, string][] = [
  [DMA_ATTR_WEAK_ORDERING, 'WEAK_ORDERING'],
  [DMA_ATTR_WRITE_COMBINE, 'WRITE_COMBINE'],
  [DMA_ATTR_NO_KERNEL_MAPPING, 'NO_KERNEL_MAPPING'],
  [DMA_ATTR_SKIP_CPU_SYNC, 'SKIP_CPU_SYNC'],
  [DMA_ATTR_FORCE_CONTIGUOUS, 'FORCE_CONTIGUOUS'],
  [DMA_ATTR_ALLOC_SINGLE_PAGES, 'ALLOC_SINGLE_PAGES'],
  [DMA_ATTR_NO_WARN, 'NO_WARN'],
  [DMA_ATTR_PRIVILEGED, 'PRIVILEGED'],
  [DMA_ATTR_MMIO, 'MMIO'],
  [DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, 'CACHELINES_OVERLAP'],
  [DMA_ATTR_REQUIRE_COHERENT, 'REQUIRE_COHERENT'],
  [DMA_ATTR_CC_SHARED, 'CC_SHARED'],
];

/** Attributes as the `dma` tracepoints print them: names joined by `|`, empty for 0. */
export function formatDmaAttrs(attrs: number): string {
  const parts: string[] = [];
  let rest = attrs;
  for (const [bit, name] of ATTR_NAMES) {
    if (rest & bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) parts.push(`0x${rest.toString(16)}`);
  return parts.join('|');
}
