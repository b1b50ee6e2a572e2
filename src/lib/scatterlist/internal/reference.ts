/**
 * A deliberately simple reference model of the scatterlist algorithms, for
 * the property tests: plain arrays of entries, one page at a time, no
 * chaining, no typed arrays. It states the kernel's rules the obvious way so
 * that the fast implementation can be checked against it.
 */

const P = 4096;

export interface RefEntry {
  pfn: number;
  offset: number;
  length: number;
}

/** `ALIGN_DOWN(max_segment, PAGE_SIZE)` of an `unsigned int`. */
export function refMaxSegment(maxSegment: number): number {
  return Math.floor((maxSegment >>> 0) / P) * P;
}

/**
 * Appends `pfns` to `entries` (whose last entry is `prv`, if any), as
 * `sg_alloc_append_table_from_pages` does. Returns 0 or -22 (-EINVAL).
 */
export function refAppend(
  entries: RefEntry[],
  pfns: readonly number[],
  offset: number,
  size: number,
  maxSegment: number,
): number {
  const maxSeg = refMaxSegment(maxSegment);
  if (maxSeg < P) return -22;
  let rest = [...pfns];
  const prv = entries[entries.length - 1];
  if (prv !== undefined) {
    if (offset !== 0) return -22;
    // The page after prv's last byte: merge while the pages continue it and prv stays within the limit.
    let expect = Math.floor((prv.pfn * P + prv.offset + prv.length) / P);
    if (rest[0] === expect) {
      while (rest.length > 0 && rest[0] === expect && prv.length + P <= maxSeg) {
        prv.length += P;
        rest = rest.slice(1);
        expect++;
      }
    }
    if (rest.length === 0) return 0;
  }
  // Group pages: a new group when the pfn does not continue the previous one, or the group is full.
  const groups: number[][] = [];
  for (const pfn of rest) {
    const g = groups[groups.length - 1];
    if (g === undefined || pfn !== g[g.length - 1]! + 1 || g.length * P >= maxSeg) groups.push([pfn]);
    else g.push(pfn);
  }
  let remaining = size;
  let off = offset;
  for (const g of groups) {
    const chunk = (g.length * P - off) >>> 0;
    entries.push({ pfn: g[0]!, offset: off, length: Math.min(remaining, chunk) });
    // The kernel's size is unsigned: once it would go negative, it is huge.
    remaining = remaining >= chunk ? remaining - chunk : Number.POSITIVE_INFINITY;
    off = 0;
  }
  return 0;
}

/** `sg_alloc_table_from_pages_segment` in the reference model. */
export function refFromPages(
  pfns: readonly number[],
  offset: number,
  size: number,
  maxSegment: number,
): { ret: number; entries: RefEntry[] } {
  const entries: RefEntry[] = [];
  const ret = refAppend(entries, pfns, offset, size, maxSegment);
  return { ret, entries: ret === 0 ? entries : [] };
}

/** Pages `for_each_sg_page` visits over the first `nents` entries, after skipping `pgoffset`. */
export function refPages(entries: readonly RefEntry[], nents: number, pgoffset: number): number[] {
  const all: number[] = [];
  for (const e of entries.slice(0, nents)) {
    const count = Math.ceil((e.offset + e.length) / P);
    for (let k = 0; k < count; k++) all.push(e.pfn + k);
  }
  return all.slice(pgoffset);
}

/** DMA page addresses `for_each_sg_dma_page` visits (counting the CPU offset, as the kernel does). */
export function refDmaPages(
  entries: readonly { offset: number; dmaAddress: number; dmaLength: number }[],
  nents: number,
  pgoffset: number,
): number[] {
  const all: number[] = [];
  for (const e of entries.slice(0, nents)) {
    const count = Math.ceil((e.offset + e.dmaLength) / P);
    for (let k = 0; k < count; k++) all.push(e.dmaAddress + k * P);
  }
  return all.slice(pgoffset);
}

/** Physical address of every byte the list describes, in list order (what the copy helpers walk). */
export function refBytes(entries: readonly RefEntry[], nents: number): number[] {
  const out: number[] = [];
  for (const e of entries.slice(0, nents)) {
    for (let k = 0; k < e.length; k++) out.push(e.pfn * P + e.offset + k);
  }
  return out;
}
