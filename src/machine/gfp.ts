/**
 * GFP flags (include/linux/gfp_types.h). Bit values follow the kernel's
 * ___GFP_* order for a configuration without lockdep or KASAN tags; only
 * their meaning matters to dmalab.
 */

export type Gfp = number;

export const __GFP_DMA = 0x01;
export const __GFP_HIGHMEM = 0x02;
export const __GFP_DMA32 = 0x04;
export const __GFP_MOVABLE = 0x08;
export const __GFP_RECLAIMABLE = 0x10;
export const __GFP_HIGH = 0x20;
export const __GFP_IO = 0x40;
export const __GFP_FS = 0x80;
export const __GFP_ZERO = 0x100;
export const __GFP_DIRECT_RECLAIM = 0x400;
export const __GFP_KSWAPD_RECLAIM = 0x800;
export const __GFP_WRITE = 0x1000;
export const __GFP_NOWARN = 0x2000;
export const __GFP_RETRY_MAYFAIL = 0x4000;
export const __GFP_NOFAIL = 0x8000;
export const __GFP_NORETRY = 0x10000;
export const __GFP_MEMALLOC = 0x20000;
export const __GFP_COMP = 0x40000;
export const __GFP_NOMEMALLOC = 0x80000;
export const __GFP_HARDWALL = 0x100000;
export const __GFP_THISNODE = 0x200000;
export const __GFP_ACCOUNT = 0x400000;

export const __GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM;
export const GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM;
export const GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS;
export const GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN;
export const GFP_NOIO = __GFP_RECLAIM;
export const GFP_NOFS = __GFP_RECLAIM | __GFP_IO;
export const GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL;
export const GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM;
export const GFP_DMA = __GFP_DMA;
export const GFP_DMA32 = __GFP_DMA32;
/** Zone modifiers (`GFP_ZONEMASK`). */
export const GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE;

/** `gfpflags_allow_blocking()`. */
export function gfpflagsAllowBlocking(gfp: Gfp): boolean {
  return (gfp & __GFP_DIRECT_RECLAIM) !== 0;
}

const NAMES: readonly [number, string][] = [
  [GFP_KERNEL, 'GFP_KERNEL'],
  [GFP_ATOMIC, 'GFP_ATOMIC'],
  [GFP_NOWAIT, 'GFP_NOWAIT'],
  [__GFP_DMA, '__GFP_DMA'],
  [__GFP_DMA32, '__GFP_DMA32'],
  [__GFP_HIGHMEM, '__GFP_HIGHMEM'],
  [__GFP_MOVABLE, '__GFP_MOVABLE'],
  [__GFP_ZERO, '__GFP_ZERO'],
  [__GFP_NOWARN, '__GFP_NOWARN'],
  [__GFP_COMP, '__GFP_COMP'],
  [__GFP_NOFAIL, '__GFP_NOFAIL'],
  [__GFP_NORETRY, '__GFP_NORETRY'],
  [__GFP_HARDWALL, '__GFP_HARDWALL'],
  [__GFP_ACCOUNT, '__GFP_ACCOUNT'],
];

/** `show_gfp_flags()`-style rendering: `GFP_KERNEL|__GFP_ZERO`, `none` for 0. */
export function formatGfp(gfp: Gfp): string {
  if (gfp === 0) return 'none';
  const parts: string[] = [];
  let rest = gfp;
  for (const [bits, name] of NAMES) {
    if (bits !== 0 && (rest & bits) === bits) {
      parts.push(name);
      rest &= ~bits;
    }
  }
  if (rest !== 0) parts.push(`0x${rest.toString(16)}`);
  return parts.join('|');
}
