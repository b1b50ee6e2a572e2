/**
 * `struct sg_table` and `struct sg_append_table`: allocation in chained
 * arrays of at most `SG_MAX_SINGLE_ALLOC` entries, and freeing by walking the
 * same layout (lib/scatterlist.c: `__sg_alloc_table`, `__sg_free_table`).
 *
 * Allocation is host memory and never fails; the GFP argument is accepted
 * for fidelity. Freeing marks the arrays freed, so a later walk through them
 * is reported as a use after free.
 */

import { DmalabError, EINVAL, type Gfp } from '../../machine/index.js';
import { chainSlot, F_CHAIN, F_END, F_FREED, SgStore } from './internal/store.js';
import { Scatterlist } from './scatterlist.js';

/**
 * `SG_MAX_SINGLE_ALLOC`: entries per array before chaining, `PAGE_SIZE /
 * sizeof(struct scatterlist)` = 4096 / 32 on 64-bit kernels with
 * `dma_length` and `dma_flags`.
 */
export const SG_MAX_SINGLE_ALLOC = 128;
/** `SG_CHUNK_SIZE`. */
export const SG_CHUNK_SIZE = 128;
/** `SG_MAX_SEGMENTS` on architectures with chaining. */
export const SG_MAX_SEGMENTS = 2048;

/** `struct sg_table`. */
export interface SgTable {
  /** The first entry; null before allocation and after freeing. */
  sgl: Scatterlist | null;
  /** Entries valid for DMA (after `dma_map_sg` it can be smaller than `origNents`). */
  nents: number;
  /** CPU entries (the count used to free the table). */
  origNents: number;
}

/** `struct sg_append_table`. */
export interface SgAppendTable {
  sgt: SgTable;
  /** The last populated entry (the append point). */
  prv: Scatterlist | null;
  /** Usable slots allocated (chain links excluded). */
  totalNents: number;
}

/** A zeroed `struct sg_table`, ready for the alloc functions. kernel: `struct sg_table t = {}` */
export function createSgTable(): SgTable {
  return { sgl: null, nents: 0, origNents: 0 };
}

/**
 * A zeroed `struct sg_append_table`, ready for `sgAllocAppendTableFromPages`.
 * kernel: `struct sg_append_table a = {}`
 */
export function createSgAppendTable(): SgAppendTable {
  return { sgt: createSgTable(), prv: null, totalNents: 0 };
}

/** One kmalloc'd array: `n` slots, `sg_init_table`'d (END on the last). */
export function allocArray(s: SgStore, n: number): number {
  const start = s.alloc(n);
  s.flags[start + n - 1] = s.flags[start + n - 1]! | F_END;
  return start;
}

/** Slots `__sg_alloc_table` allocates for `nents` entries (chain links included). */
function slotsFor(nents: number, maxEnts: number): number {
  if (nents <= maxEnts) return nents;
  const full = Math.ceil((nents - maxEnts) / (maxEnts - 1));
  return nents + full;
}

/**
 * `sg_alloc_table()`: `nents` entries, chained in arrays of
 * `SG_MAX_SINGLE_ALLOC` (each full array gives its last slot to the link).
 * Returns 0, or `-EINVAL` for 0 entries. kernel: sg_alloc_table()
 */
export function sgAllocTable(table: SgTable, nents: number, _gfp: Gfp): number {
  table.sgl = null;
  table.nents = 0;
  table.origNents = 0;
  if (!Number.isInteger(nents) || nents < 0 || nents > 0xffff_ffff) {
    throw new DmalabError(`sg_alloc_table: nents must be an unsigned int, got ${nents}`, { field: 'nents' });
  }
  if (nents === 0) return -EINVAL;
  const max = SG_MAX_SINGLE_ALLOC;
  const s = new SgStore(slotsFor(nents, max));
  let left = nents;
  let prv = -1;
  do {
    let allocSize = left;
    let sgSize = left;
    if (allocSize > max) {
      allocSize = max;
      sgSize = max - 1;
    }
    left -= sgSize;
    const start = allocArray(s, allocSize);
    table.origNents += sgSize;
    table.nents = table.origNents;
    if (prv >= 0) chainSlot(s, prv + max - 1, s, start);
    else {
      table.sgl = new Scatterlist(s, start);
    }
    prv = start;
  } while (left > 0);
  return 0;
}

/**
 * `__sg_free_table()`: walks `numEnts` entries in the chunk layout the alloc
 * functions produce and frees each array. A table whose layout does not
 * match (freed with the wrong count, or chained by hand differently) would
 * make the kernel free garbage: dmalab throws a DmalabError saying so.
 */
function freeTable(table: SgTable, maxEnts: number, numEnts: number, fn: string): void {
  if (table.sgl === null) return;
  let s: SgStore | null = table.sgl._s;
  let i = table.sgl._i;
  let left = numEnts;
  while (left > 0) {
    if (s === null) throw new DmalabError(`${fn}: the table ends before its ${numEnts} entries`);
    let allocSize = left;
    let sgSize = left;
    let to: SgStore | null = null;
    let toIndex = 0;
    const a = s.allocOf(i);
    if (a < 0 || s.allocStart[a] !== i) {
      throw new DmalabError(`${fn}: the table's array does not start where an allocation starts`);
    }
    if (allocSize > maxEnts) {
      allocSize = maxEnts;
      sgSize = maxEnts - 1;
      const link: number = i + maxEnts - 1;
      if (s.allocLen[a]! < maxEnts || (s.flags[link]! & F_CHAIN) === 0) {
        throw new DmalabError(
          `${fn}: entry ${maxEnts} of this array is not a chain link, so ${numEnts} entries do not ` +
            'describe how the table was allocated (an append table is freed with sg_free_append_table)',
        );
      }
      to = s.links.get(link)!;
      toIndex = s.page[link]!;
    } else if ((s.allocLen[a] === maxEnts) !== (allocSize === maxEnts)) {
      throw new DmalabError(
        `${fn}: the last array has ${s.allocLen[a]} slots but ${allocSize} are being freed ` +
          '(the kernel would free it with the wrong allocator)',
      );
    }
    if (s.flags[i]! & F_FREED) throw new DmalabError(`${fn}: double free of a scatterlist array`);
    // kfree() frees the whole array, whatever count the caller passed.
    const len = s.allocLen[a]!;
    for (let k = i; k < i + len; k++) s.flags[k] = s.flags[k]! | F_FREED;
    left -= sgSize;
    s = to;
    i = toIndex;
  }
  table.sgl = null;
}

/** `sg_free_table()`: frees `origNents` entries' arrays; `sgl` becomes null. kernel: sg_free_table() */
export function sgFreeTable(table: SgTable): void {
  freeTable(table, SG_MAX_SINGLE_ALLOC, table.origNents, 'sg_free_table');
}

/** `sg_free_append_table()`: frees by `totalNents`. kernel: sg_free_append_table() */
export function sgFreeAppendTable(table: SgAppendTable): void {
  freeTable(table.sgt, SG_MAX_SINGLE_ALLOC, table.totalNents, 'sg_free_append_table');
}
