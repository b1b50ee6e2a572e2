/**
 * `struct scatterlist` and its primitives (include/linux/scatterlist.h,
 * lib/scatterlist.c): handles, end and chain markers, `sg_next()`, the
 * page/offset/length setters, the DMA fields the DMA layer fills in, and
 * seed 001's page-less entries.
 *
 * A `Scatterlist` is an immutable handle (an array slot). Iterators yield a
 * loop variable of the same class that moves on at each step: every `sg*`
 * function accepts it; `sgHandle(it)` copies out a handle to keep.
 */

import {
  type DmaAddr,
  DmalabError,
  isLinearMapVa,
  type KernelVa,
  offsetInPage,
  PAGE_SIZE,
  type Page,
  type PhysAddr,
  pageAddress,
  virtToPage,
} from '../../machine/index.js';
import {
  chainSlot,
  checkLive,
  F_CHAIN,
  F_END,
  F_FREED,
  F_PAGELESS,
  next,
  SgStore,
  sgNextRaw,
  useAfterFree,
} from './internal/store.js';

/** `SG_CHAIN`: bit 0 of `page_link`, a link to another array. */
export const SG_CHAIN = F_CHAIN;
/** `SG_END`: bit 1 of `page_link`, the last entry. */
export const SG_END = F_END;
/** `SG_DMA_BUS_ADDRESS`: the DMA address is a PCI bus address (P2P) and is not unmapped. */
export const SG_DMA_BUS_ADDRESS = 1 << 0;
/** `SG_DMA_SWIOTLB`: the list may have been bounced through swiotlb. */
export const SG_DMA_SWIOTLB = 1 << 1;

/**
 * `struct scatterlist *`: one entry of a scatterlist array. Read-only views
 * of the entry's fields; change them with the `sg*` setters, as in C.
 */
export class Scatterlist {
  /** @internal The store holding the entry. */
  readonly _s: SgStore;
  /** @internal The entry's index in the store. */
  readonly _i: number;

  /** @internal Handles are made by the scatterlist functions. */
  constructor(s: SgStore, i: number) {
    this._s = s;
    this._i = i;
  }

  /** `sg->offset`: byte offset into the first page. */
  get offset(): number {
    return this._s.offset[this._i]!;
  }

  /** `sg->length`: bytes described (CPU view). */
  get length(): number {
    return this._s.length[this._i]!;
  }

  /** `sg_dma_address(sg)`: bus address set by the DMA layer. */
  get dmaAddress(): DmaAddr {
    return this._s.dmaAddress[this._i]! as DmaAddr;
  }

  /** `sg_dma_len(sg)`: DMA length set by the DMA layer (`CONFIG_NEED_SG_DMA_LENGTH`). */
  get dmaLength(): number {
    return this._s.dmaLength[this._i]!;
  }

  /** A plain summary for printing and JSON. */
  toJSON(): Record<string, unknown> {
    const s = this._s;
    const i = this._i;
    const f = s.flags[i]!;
    return {
      page: f & (F_CHAIN | F_PAGELESS) ? null : s.page[i]! || null,
      ...(f & F_PAGELESS ? { pfn: s.page[i]! } : {}),
      offset: s.offset[i]!,
      length: s.length[i]!,
      dmaAddress: s.dmaAddress[i]!,
      dmaLength: s.dmaLength[i]!,
      end: (f & F_END) !== 0,
      chain: (f & F_CHAIN) !== 0,
    };
  }
}

/** Setting a page on a chain link would make the list jump to a page as if it were an array. */
function notChain(s: SgStore, i: number, fn: string): void {
  if (s.flags[i]! & F_CHAIN) {
    throw new DmalabError(
      `${fn}: this slot is a chain link, not an entry (with CONFIG_DEBUG_SG the kernel BUGs; ` +
        'without it the list would follow the page as a scatterlist array)',
    );
  }
}

/** @internal Moves a loop variable to another entry (iterators only). */
export function retarget(sg: Scatterlist, s: SgStore, i: number): void {
  const w = sg as { _s: SgStore; _i: number };
  w._s = s;
  w._i = i;
}

/**
 * A zeroed array of `nents` entries, like `struct scatterlist sg[nents]`
 * after a memset (dmalab's way to declare one): returns its first entry.
 * Call `sgInitTable` on it before use, as in C. kernel: none (a C declaration)
 */
export function createScatterlist(nents: number): Scatterlist {
  if (!Number.isInteger(nents) || nents < 1) {
    throw new DmalabError(`createScatterlist: nents must be a positive integer, got ${nents}`, {
      field: 'nents',
    });
  }
  const s = new SgStore(nents);
  return new Scatterlist(s, s.alloc(nents));
}

/**
 * `&sg[n]`: the entry `n` slots after `sg` in the same array (no chain
 * following). Stepping outside the array is a DmalabError (in C it would
 * touch memory beyond it). kernel: none (pointer arithmetic)
 */
export function sgAt(sg: Scatterlist, n: number): Scatterlist {
  const s = sg._s;
  const a = s.allocOf(sg._i);
  const start = s.allocStart[a]!;
  const j = sg._i + n;
  if (!Number.isInteger(n) || j < start || j >= start + s.allocLen[a]!) {
    throw new DmalabError(
      `sgAt: index ${n} is outside the array (${s.allocLen[a]} entries, this one at ${sg._i - start})`,
      { field: 'n' },
    );
  }
  return new Scatterlist(s, j);
}

/** Copies a keepable handle out of an iterator's loop variable. kernel: none (dmalab) */
export function sgHandle(sg: Scatterlist): Scatterlist {
  return new Scatterlist(sg._s, sg._i);
}

/** True when two handles name the same entry. kernel: none (`sg1 == sg2` in C) */
export function sgSame(a: Scatterlist | null, b: Scatterlist | null): boolean {
  if (a === null || b === null) return a === b;
  return a._s === b._s && a._i === b._i;
}

function checkRoom(sgl: Scatterlist, nents: number, fn: string): void {
  const left = sgl._s.slotsLeft(sgl._i);
  if (!Number.isInteger(nents) || nents < 1 || nents > left) {
    throw new DmalabError(
      `${fn}: nents ${nents} does not fit the array (${left} entries from here); ` +
        'the kernel would write outside it',
      { field: 'nents' },
    );
  }
}

/** `sg_init_table()`: zero `nents` entries and mark the last one as the end. kernel: sg_init_table() */
export function sgInitTable(sgl: Scatterlist, nents: number): void {
  checkRoom(sgl, nents, 'sg_init_table');
  const s = sgl._s;
  for (let k = 0; k < nents; k++) checkLive(s, sgl._i + k, 'sg_init_table');
  s.zero(sgl._i, nents);
  s.flags[sgl._i + nents - 1] = s.flags[sgl._i + nents - 1]! | F_END;
}

/** `sg_init_marker()`: only mark entry `nents - 1` as the end. kernel: sg_init_marker() */
export function sgInitMarker(sgl: Scatterlist, nents: number): void {
  checkRoom(sgl, nents, 'sg_init_marker');
  sgMarkEnd(new Scatterlist(sgl._s, sgl._i + nents - 1));
}

/** `sg_init_one()`: a one-entry list describing `buflen` bytes at `buf`. kernel: sg_init_one() */
export function sgInitOne(sg: Scatterlist, buf: KernelVa, buflen: number): void {
  sgInitTable(sg, 1);
  sgSetBuf(sg, buf, buflen);
}

/** `sg_is_last()`. kernel: sg_is_last() */
export function sgIsLast(sg: Scatterlist): boolean {
  return (sg._s.flags[sg._i]! & F_END) !== 0;
}

/** `sg_is_chain()`. kernel: sg_is_chain() */
export function sgIsChain(sg: Scatterlist): boolean {
  return (sg._s.flags[sg._i]! & F_CHAIN) !== 0;
}

/** `sg_mark_end()`: set END, clear CHAIN. kernel: sg_mark_end() */
export function sgMarkEnd(sg: Scatterlist): void {
  const s = sg._s;
  checkLive(s, sg._i, 'sg_mark_end');
  if (s.flags[sg._i]! & F_CHAIN) s.links.delete(sg._i);
  s.flags[sg._i] = (s.flags[sg._i]! | F_END) & ~F_CHAIN;
}

/** `sg_unmark_end()`: clear END. kernel: sg_unmark_end() */
export function sgUnmarkEnd(sg: Scatterlist): void {
  checkLive(sg._s, sg._i, 'sg_unmark_end');
  sg._s.flags[sg._i] = sg._s.flags[sg._i]! & ~F_END;
}

/**
 * `sg_chain()`: turn entry `prvNents - 1` of `prv` into a link to `sgl`
 * (that slot stops being an entry). kernel: sg_chain()
 */
export function sgChain(prv: Scatterlist, prvNents: number, sgl: Scatterlist): void {
  checkRoom(prv, prvNents, 'sg_chain');
  checkLive(prv._s, prv._i + prvNents - 1, 'sg_chain');
  chainSlot(prv._s, prv._i + prvNents - 1, sgl._s, sgl._i);
}

/** `sg_next()`: the next entry, following chain links; null after the end. kernel: sg_next() */
export function sgNext(sg: Scatterlist): Scatterlist | null {
  return sgNextRaw(sg._s, sg._i) ? new Scatterlist(next.s, next.i) : null;
}

/** `sg_nents()`: entries until the end marker (chain links not counted). kernel: sg_nents() */
export function sgNents(sg: Scatterlist | null): number {
  if (sg === null) return 0;
  let s = sg._s;
  let i = sg._i;
  let n = 1;
  while (sgNextRaw(s, i)) {
    s = next.s;
    i = next.i;
    n++;
  }
  return n;
}

/**
 * `sg_nents_for_len()`: entries needed to cover `len` bytes, 0 for 0, and
 * `-EINVAL` (-22) when the list is shorter. kernel: sg_nents_for_len()
 */
export function sgNentsForLen(sg: Scatterlist | null, len: number): number {
  if (len === 0) return 0;
  if (sg === null) return -22;
  let s = sg._s;
  let i = sg._i;
  let n = 0;
  let total = 0;
  for (;;) {
    n++;
    total += s.length[i]!;
    if (total >= len) return n;
    if (!sgNextRaw(s, i)) return -22;
    s = next.s;
    i = next.i;
  }
}

/**
 * `sg_last()`: the `nents`-th entry. The kernel BUGs when it is not marked
 * as the end; having no machine to report to, dmalab throws a DmalabError
 * saying so. kernel: sg_last()
 */
export function sgLast(sgl: Scatterlist, nents: number): Scatterlist {
  if (!Number.isInteger(nents) || nents < 1) {
    throw new DmalabError(`sg_last: nents ${nents}: the kernel would dereference a NULL entry`, {
      field: 'nents',
    });
  }
  let s = sgl._s;
  let i = sgl._i;
  for (let k = 1; k < nents; k++) {
    if (!sgNextRaw(s, i)) {
      throw new DmalabError(
        `sg_last: the list ends after ${k} entries but nents is ${nents}; the kernel would dereference NULL`,
        { field: 'nents' },
      );
    }
    s = next.s;
    i = next.i;
  }
  if ((s.flags[i]! & F_END) === 0) {
    throw new DmalabError(
      `kernel BUG at lib/scatterlist.c (sg_last): BUG_ON(!sg_is_last(ret)): entry ${nents} is not the end of the list`,
      { field: 'nents' },
    );
  }
  return new Scatterlist(s, i);
}

/**
 * `sg_set_page()`: point the entry at `len` bytes from `offset` in `page`
 * (which may run on into the following pages). END and CHAIN bits are kept,
 * as `sg_assign_page()` keeps them. `len` and `offset` are `unsigned int`.
 * kernel: sg_set_page()
 */
export function sgSetPage(sg: Scatterlist, page: Page | null, len: number, offset: number): void {
  const s = sg._s;
  const i = sg._i;
  const f = s.flags[i]!;
  if (f & (F_PAGELESS | F_FREED | F_CHAIN)) {
    checkLive(s, i, 'sg_set_page');
    notChain(s, i, 'sg_set_page');
    s.flags[i] = f & ~F_PAGELESS;
  }
  s.page[i] = page ?? 0;
  s.offset[i] = offset;
  s.length[i] = len;
}

/**
 * dmalab's page-less entry (seed 001's RFC mode): `len` bytes from `offset`
 * in frame `pfn`, a physical range with no `struct page` (pmem or device
 * memory on a `pagelessSg` machine). `sgPage` returns null for it, `sgPhys`
 * works and `sgVirt` returns null. Named after the 2015 RFC's pfn-based
 * entries; the mainline kernel has no such entry. kernel: sg_set_pfn() (RFC)
 */
export function sgSetPfn(sg: Scatterlist, pfn: number, len: number, offset: number): void {
  if (!Number.isInteger(pfn) || pfn < 0 || pfn >= 2 ** 36) {
    throw new DmalabError(`sg_set_pfn: pfn must be an integer frame number below 2^36, got ${pfn}`, {
      field: 'pfn',
    });
  }
  const s = sg._s;
  checkLive(s, sg._i, 'sg_set_pfn');
  notChain(s, sg._i, 'sg_set_pfn');
  s.flags[sg._i] = s.flags[sg._i]! | F_PAGELESS;
  s.page[sg._i] = pfn;
  s.offset[sg._i] = offset;
  s.length[sg._i] = len;
}

/**
 * `sg_set_buf()`: describe `buflen` bytes at kernel address `buf`. Only
 * linear-map addresses have a `virt_to_page()`: anything else (vmalloc,
 * ioremap, user addresses) is a DmalabError, as `CONFIG_DEBUG_SG`'s
 * `BUG_ON(!virt_addr_valid(buf))` would stop the kernel (without it the entry
 * silently gets a bogus page). kernel: sg_set_buf()
 */
export function sgSetBuf(sg: Scatterlist, buf: KernelVa, buflen: number): void {
  if (!isLinearMapVa(buf)) {
    throw new DmalabError(
      `sg_set_buf: 0x${buf.toString(16)} is not a linear-map address (virt_addr_valid() fails): ` +
        'vmalloc and ioremap memory need sg_set_page with vmalloc_to_page, or a page-less entry',
      { field: 'buf' },
    );
  }
  sgSetPage(sg, virtToPage(buf), buflen, offsetInPage(buf));
}

/** `sg_page()`: the entry's page; null for NULL, chain links and page-less entries. kernel: sg_page() */
export function sgPage(sg: Scatterlist): Page | null {
  const s = sg._s;
  if (s.flags[sg._i]! & (F_CHAIN | F_PAGELESS)) return null;
  const p = s.page[sg._i]!;
  return p === 0 ? null : (p as Page);
}

/**
 * `sg_phys()`: physical address of the entry's first byte. Works for
 * page-less entries too (their pfn plus offset). kernel: sg_phys()
 */
export function sgPhys(sg: Scatterlist): PhysAddr {
  return (sg._s.page[sg._i]! * PAGE_SIZE + sg._s.offset[sg._i]!) as PhysAddr;
}

/**
 * `sg_virt()`: the linear-map address of the entry's first byte, or null for
 * a page-less entry (it has no kernel mapping; an access through it is what
 * the other layers report) and for an entry with no page. kernel: sg_virt()
 */
export function sgVirt(sg: Scatterlist): KernelVa | null {
  const p = sgPage(sg);
  return p === null ? null : ((pageAddress(p) + sg._s.offset[sg._i]!) as KernelVa);
}

/** `sg_dma_address(sg)`. kernel: sg_dma_address() */
export function sgDmaAddress(sg: Scatterlist): DmaAddr {
  return sg._s.dmaAddress[sg._i]! as DmaAddr;
}

/** `sg_dma_len(sg)`. kernel: sg_dma_len() */
export function sgDmaLen(sg: Scatterlist): number {
  return sg._s.dmaLength[sg._i]!;
}

/** `sg_dma_address(sg) = addr`. kernel: sg_dma_address() (as an lvalue) */
export function sgSetDmaAddress(sg: Scatterlist, addr: DmaAddr): void {
  checkLive(sg._s, sg._i, 'sg_dma_address');
  sg._s.dmaAddress[sg._i] = addr;
}

/** `sg_dma_len(sg) = len` (`unsigned int`). kernel: sg_dma_len() (as an lvalue) */
export function sgSetDmaLen(sg: Scatterlist, len: number): void {
  checkLive(sg._s, sg._i, 'sg_dma_len');
  sg._s.dmaLength[sg._i] = len;
}

function setDmaFlag(sg: Scatterlist, bit: number, on: boolean, fn: string): void {
  const s = sg._s;
  if (s.flags[sg._i]! & F_FREED) throw useAfterFree(fn);
  s.dmaFlags[sg._i] = on ? s.dmaFlags[sg._i]! | bit : s.dmaFlags[sg._i]! & ~bit;
}

/** `sg_dma_is_swiotlb()`. kernel: sg_dma_is_swiotlb() */
export function sgDmaIsSwiotlb(sg: Scatterlist): boolean {
  return (sg._s.dmaFlags[sg._i]! & SG_DMA_SWIOTLB) !== 0;
}

/** `sg_dma_mark_swiotlb()`. kernel: sg_dma_mark_swiotlb() */
export function sgDmaMarkSwiotlb(sg: Scatterlist): void {
  setDmaFlag(sg, SG_DMA_SWIOTLB, true, 'sg_dma_mark_swiotlb');
}

/**
 * Clears the swiotlb mark. Mainline has no such helper (the mark stays until
 * `sg_init_table` clears it); it is here for dmalab's DMA layer, which may
 * clear it at unmap so that a table mapped again through another path starts
 * clean. kernel: none (dmalab)
 */
export function sgDmaUnmarkSwiotlb(sg: Scatterlist): void {
  setDmaFlag(sg, SG_DMA_SWIOTLB, false, 'sg_dma_unmark_swiotlb');
}

/** `sg_dma_is_bus_address()`. kernel: sg_dma_is_bus_address() */
export function sgDmaIsBusAddress(sg: Scatterlist): boolean {
  return (sg._s.dmaFlags[sg._i]! & SG_DMA_BUS_ADDRESS) !== 0;
}

/** `sg_dma_mark_bus_address()`. kernel: sg_dma_mark_bus_address() */
export function sgDmaMarkBusAddress(sg: Scatterlist): void {
  setDmaFlag(sg, SG_DMA_BUS_ADDRESS, true, 'sg_dma_mark_bus_address');
}

/** `sg_dma_unmark_bus_address()`. kernel: sg_dma_unmark_bus_address() */
export function sgDmaUnmarkBusAddress(sg: Scatterlist): void {
  setDmaFlag(sg, SG_DMA_BUS_ADDRESS, false, 'sg_dma_unmark_bus_address');
}
