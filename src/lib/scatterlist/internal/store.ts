/**
 * Column-wise storage of scatterlist entries.
 *
 * The kernel's `struct scatterlist` arrays become ranges ("allocations") in a
 * store: one typed array per field, so a table of a million pages costs a few
 * typed arrays, not a million objects. A `Scatterlist` handle is a store plus
 * an index. Each build call puts all the arrays it allocates into one fresh
 * store; a chain link (`page_link | SG_CHAIN`) keeps the target index in the
 * `page` column and the target store in `links`, so a chain may join arrays
 * of different stores, as `sg_chain()` joins arrays from different kmallocs.
 *
 * Tables are host-side driver data: nothing here belongs to a machine.
 */

import { DmalabError } from '../../../machine/index.js';

/** `SG_CHAIN`: the slot links to another array (page column = target index). */
export const F_CHAIN = 0x01;
/** `SG_END`: the last entry; `sg_next()` returns NULL. */
export const F_END = 0x02;
/** dmalab: a page-less entry (seed 001): the page column holds a pfn with no struct page. */
export const F_PAGELESS = 0x04;
/** dmalab: the array was freed (`sg_free_table`); touching it is a use after free. */
export const F_FREED = 0x08;
/** dmalab: the last slot of its allocation; stepping past it reads beyond the array. */
export const F_ALLOC_END = 0x10;

/** Bits `sg_init_table()`'s memset does not clear: they describe the memory, not the entry. */
const F_MEMORY = F_ALLOC_END;

export class SgStore {
  /** Slots handed out so far. */
  used = 0;
  /** The pfn of the entry's page (0 = NULL), or a chain link's target index. */
  page: Float64Array;
  offset: Uint32Array;
  length: Uint32Array;
  dmaAddress: Float64Array;
  dmaLength: Uint32Array;
  /** `dma_flags`: `SG_DMA_BUS_ADDRESS`, `SG_DMA_SWIOTLB`. */
  dmaFlags: Uint8Array;
  /** `page_link`'s low bits plus dmalab's bookkeeping bits (`F_*`). */
  flags: Uint8Array;
  /** Target store of each chain slot, by slot index. */
  readonly links = new Map<number, SgStore>();
  /** Start and length of each allocation, in increasing order. */
  readonly allocStart: number[] = [];
  readonly allocLen: number[] = [];

  constructor(capacity: number) {
    const n = Math.max(1, capacity);
    this.page = new Float64Array(n);
    this.offset = new Uint32Array(n);
    this.length = new Uint32Array(n);
    this.dmaAddress = new Float64Array(n);
    this.dmaLength = new Uint32Array(n);
    this.dmaFlags = new Uint8Array(n);
    this.flags = new Uint8Array(n);
  }

  get capacity(): number {
    return this.flags.length;
  }

  /**
   * Hands out `n` zeroed slots as one allocation (a kmalloc'd array). The
   * arrays grow when full; handles stay valid because they hold the store.
   */
  alloc(n: number): number {
    if (this.used + n > this.capacity) this.grow(this.used + n);
    const start = this.used;
    this.used += n;
    this.flags[start + n - 1] = F_ALLOC_END;
    this.allocStart.push(start);
    this.allocLen.push(n);
    return start;
  }

  private grow(min: number): void {
    const n = Math.max(min, this.capacity * 2);
    const grown = <T extends Float64Array | Uint32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.page = grown(this.page, (k) => new Float64Array(k));
    this.offset = grown(this.offset, (k) => new Uint32Array(k));
    this.length = grown(this.length, (k) => new Uint32Array(k));
    this.dmaAddress = grown(this.dmaAddress, (k) => new Float64Array(k));
    this.dmaLength = grown(this.dmaLength, (k) => new Uint32Array(k));
    this.dmaFlags = grown(this.dmaFlags, (k) => new Uint8Array(k));
    this.flags = grown(this.flags, (k) => new Uint8Array(k));
  }

  /** Index of the allocation holding slot `i`, or -1. */
  allocOf(i: number): number {
    const starts = this.allocStart;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= i) lo = mid + 1;
      else hi = mid - 1;
    }
    if (hi < 0 || i >= starts[hi]! + this.allocLen[hi]!) return -1;
    return hi;
  }

  /** Slots from `i` to the end of its allocation. */
  slotsLeft(i: number): number {
    const a = this.allocOf(i);
    return a < 0 ? 0 : this.allocStart[a]! + this.allocLen[a]! - i;
  }

  /** `memset(sg, 0, n * sizeof(*sg))` over slots [i, i+n). */
  zero(i: number, n: number): void {
    this.page.fill(0, i, i + n);
    this.offset.fill(0, i, i + n);
    this.length.fill(0, i, i + n);
    this.dmaAddress.fill(0, i, i + n);
    this.dmaLength.fill(0, i, i + n);
    this.dmaFlags.fill(0, i, i + n);
    const f = this.flags;
    for (let k = i; k < i + n; k++) {
      if (f[k]! & F_CHAIN) this.links.delete(k);
      f[k] = f[k]! & F_MEMORY;
    }
  }
}

/** Where `sgNextRaw` leaves its result, so that walks allocate nothing. */
export const next: { s: SgStore; i: number } = { s: new SgStore(1), i: 0 };

/**
 * `sg_next()` on slot `i` of `s`: false at an end marker, else true with the
 * next entry in `next.s`/`next.i`, following a chain link. The rare cases
 * live in separate functions so that the common step stays small and its
 * type feedback stable.
 */
export function sgNextRaw(s: SgStore, i: number): boolean {
  const f = s.flags[i]!;
  if ((f & (F_END | F_ALLOC_END | F_FREED)) !== 0) return atEnd(f);
  const j = i + 1;
  const g = s.flags[j]!;
  if ((g & (F_CHAIN | F_FREED)) !== 0) return follow(s, j, g);
  next.s = s;
  next.i = j;
  return true;
}

function atEnd(f: number): boolean {
  if (f & F_FREED) throw useAfterFree('sg_next');
  if (f & F_END) return false;
  throw new DmalabError(
    'sg_next: this entry is the last of its array but carries no end marker; the kernel would read past the array ' +
      '(call sg_init_table/sg_mark_end, or pass the right nents)',
  );
}

function follow(s: SgStore, j: number, g: number): boolean {
  if (g & F_FREED) throw useAfterFree('sg_next');
  const t = s.links.get(j)!;
  // Indices are small integers; keep them int32 so walks index typed arrays without conversions.
  const ti = s.page[j]! | 0;
  if (t.flags[ti]! & F_FREED) throw useAfterFree('sg_next');
  next.s = t;
  next.i = ti;
  return true;
}

export function useAfterFree(fn: string): DmalabError {
  return new DmalabError(
    `${fn}: use after free: this scatterlist array was freed by sg_free_table/sg_free_append_table ` +
      '(KASAN would report a use-after-free here)',
  );
}

/** Throws when slot `i` was freed (setters and explicit walks call this). */
export function checkLive(s: SgStore, i: number, fn: string): void {
  if (s.flags[i]! & F_FREED) throw useAfterFree(fn);
}

/**
 * `__sg_chain()`: the slot becomes a link to (`to`, `toIndex`): offset and
 * length cleared, CHAIN set, END cleared. `dma_flags` is a separate field and
 * is left alone, as in the kernel.
 */
export function chainSlot(s: SgStore, i: number, to: SgStore, toIndex: number): void {
  s.offset[i] = 0;
  s.length[i] = 0;
  s.page[i] = toIndex;
  s.flags[i] = (s.flags[i]! & (F_MEMORY | F_FREED)) | F_CHAIN;
  s.links.set(i, to);
}
