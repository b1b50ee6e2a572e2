import { describe, expect, it } from 'vitest';
import {
  ALL_ONES,
  type DmaAddr,
  DmalabError,
  type KernelVa,
  PAGE_OFFSET,
  PAGE_SIZE,
  type Page,
  VMALLOC_START,
} from '../../machine/index.js';
import {
  createScatterlist,
  SG_DMA_BUS_ADDRESS,
  SG_DMA_SWIOTLB,
  sgAt,
  sgChain,
  sgDmaAddress,
  sgDmaIsBusAddress,
  sgDmaIsSwiotlb,
  sgDmaLen,
  sgDmaMarkBusAddress,
  sgDmaMarkSwiotlb,
  sgDmaUnmarkBusAddress,
  sgDmaUnmarkSwiotlb,
  sgHandle,
  sgInitMarker,
  sgInitOne,
  sgInitTable,
  sgIsChain,
  sgIsLast,
  sgLast,
  sgMarkEnd,
  sgNents,
  sgNentsForLen,
  sgNext,
  sgPage,
  sgPhys,
  sgSame,
  sgSetBuf,
  sgSetDmaAddress,
  sgSetDmaLen,
  sgSetPage,
  sgSetPfn,
  sgUnmarkEnd,
  sgVirt,
} from './scatterlist.js';

const P = PAGE_SIZE;

describe('entries', () => {
  it('sg_init_table zeroes the entries and marks the last one as the end', () => {
    const sgl = createScatterlist(4);
    sgSetPage(sgl, 7 as Page, 100, 5);
    sgInitTable(sgl, 4);
    expect(sgPage(sgl)).toBeNull();
    expect(sgl.length).toBe(0);
    expect(sgIsLast(sgAt(sgl, 2))).toBe(false);
    expect(sgIsLast(sgAt(sgl, 3))).toBe(true);
    expect(sgNents(sgl)).toBe(4);
    // A shorter table in the same array ends earlier.
    sgInitTable(sgl, 2);
    expect(sgNents(sgl)).toBe(2);
    sgInitMarker(sgl, 3);
    expect(sgIsLast(sgAt(sgl, 2))).toBe(true);
  });

  it('sg_set_page sets page, offset and length and keeps the end marker', () => {
    const sgl = createScatterlist(1);
    sgInitTable(sgl, 1);
    sgSetPage(sgl, 42 as Page, 3 * P, 12);
    expect(sgPage(sgl)).toBe(42);
    expect(sgl.offset).toBe(12);
    expect(sgl.length).toBe(3 * P);
    expect(sgIsLast(sgl)).toBe(true);
    expect(sgPhys(sgl)).toBe(42 * P + 12);
    expect(sgVirt(sgl)).toBe(PAGE_OFFSET + 42 * P + 12);
    // unsigned int fields, as in C.
    sgSetPage(sgl, 42 as Page, -1, 2 ** 32 + 3);
    expect(sgl.length).toBe(0xffffffff);
    expect(sgl.offset).toBe(3);
    sgSetPage(sgl, null, 0, 0);
    expect(sgPage(sgl)).toBeNull();
  });

  it('sg_set_buf and sg_init_one take a linear-map address; other addresses are refused', () => {
    const sg = createScatterlist(1);
    const va = (PAGE_OFFSET + 9 * P + 300) as KernelVa;
    sgInitOne(sg, va, 5000);
    expect(sgPage(sg)).toBe(9);
    expect(sg.offset).toBe(300);
    expect(sg.length).toBe(5000);
    expect(sgIsLast(sg)).toBe(true);
    expect(() => sgSetBuf(sg, VMALLOC_START as KernelVa, 10)).toThrow(/not a linear-map address/);
  });

  it('page-less entries have a physical address but no page and no kernel address', () => {
    const sgl = createScatterlist(2);
    sgInitTable(sgl, 2);
    const pfn = 2 ** 30; // 4 TiB up: device memory
    sgSetPfn(sgl, pfn, 8192, 64);
    expect(sgPage(sgl)).toBeNull();
    expect(sgPhys(sgl)).toBe(pfn * P + 64);
    expect(sgVirt(sgl)).toBeNull();
    expect(sgl.length).toBe(8192);
    // Setting a page makes it an ordinary entry again.
    sgSetPage(sgl, 3 as Page, 10, 0);
    expect(sgPage(sgl)).toBe(3);
    expect(() => sgSetPfn(sgl, -1, 1, 0)).toThrow(DmalabError);
  });

  it('carries the DMA fields and flags the DMA layer writes', () => {
    const sg = createScatterlist(1);
    sgInitTable(sg, 1);
    expect(sgDmaAddress(sg)).toBe(0);
    sgSetDmaAddress(sg, 0x1_2345_6000 as DmaAddr);
    sgSetDmaLen(sg, 12288);
    expect(sgDmaAddress(sg)).toBe(0x1_2345_6000);
    expect(sg.dmaAddress).toBe(0x1_2345_6000);
    expect(sgDmaLen(sg)).toBe(12288);
    expect(sg.dmaLength).toBe(12288);
    // DMA_MAPPING_ERROR is the all-ones sentinel.
    sgSetDmaAddress(sg, ALL_ONES as DmaAddr);
    expect(sgDmaAddress(sg)).toBe(Number.MAX_SAFE_INTEGER);
    expect(SG_DMA_BUS_ADDRESS).toBe(1);
    expect(SG_DMA_SWIOTLB).toBe(2);
    sgDmaMarkSwiotlb(sg);
    sgDmaMarkBusAddress(sg);
    expect([sgDmaIsSwiotlb(sg), sgDmaIsBusAddress(sg)]).toEqual([true, true]);
    sgDmaUnmarkSwiotlb(sg);
    expect([sgDmaIsSwiotlb(sg), sgDmaIsBusAddress(sg)]).toEqual([false, true]);
    sgDmaUnmarkBusAddress(sg);
    expect(sgDmaIsBusAddress(sg)).toBe(false);
    // sg_init_table clears them, as its memset does.
    sgDmaMarkSwiotlb(sg);
    sgInitTable(sg, 1);
    expect([sgDmaIsSwiotlb(sg), sgDmaAddress(sg), sgDmaLen(sg)]).toEqual([false, 0, 0]);
  });

  it('handles are values: sgNext returns a fresh handle naming the next slot', () => {
    const sgl = createScatterlist(3);
    sgInitTable(sgl, 3);
    const b = sgNext(sgl)!;
    expect(sgSame(b, sgAt(sgl, 1))).toBe(true);
    expect(sgSame(b, sgl)).toBe(false);
    expect(sgSame(sgHandle(b), b)).toBe(true);
    expect(sgNext(sgAt(sgl, 2))).toBeNull();
    expect(JSON.parse(JSON.stringify(sgAt(sgl, 2)))).toMatchObject({ end: true, chain: false, length: 0 });
  });
});

describe('chaining and counting', () => {
  it('sg_chain turns the last slot into a link that sg_next follows invisibly', () => {
    const a = createScatterlist(3);
    const b = createScatterlist(2);
    sgInitTable(a, 3);
    sgInitTable(b, 2);
    for (let i = 0; i < 2; i++) sgSetPage(sgAt(a, i), (10 + i) as Page, P, 0);
    for (let i = 0; i < 2; i++) sgSetPage(sgAt(b, i), (20 + i) as Page, P, 0);
    sgChain(a, 3, b);
    expect(sgIsChain(sgAt(a, 2))).toBe(true);
    expect(sgIsLast(sgAt(a, 2))).toBe(false);
    expect(sgAt(a, 2).length).toBe(0);
    expect(sgSame(sgNext(sgAt(a, 1)), b)).toBe(true);
    expect(sgNents(a)).toBe(4);
    expect(sgPage(sgLast(a, 4))).toBe(21);
    expect(() => sgSetPage(sgAt(a, 2), 5 as Page, P, 0)).toThrow(/chain link/);
    expect(() => sgSetPfn(sgAt(a, 2), 5, P, 0)).toThrow(/chain link/);
  });

  it('sg_nents_for_len counts entries until the sum reaches len', () => {
    const sgl = createScatterlist(3);
    sgInitTable(sgl, 3);
    for (let i = 0; i < 3; i++) sgSetPage(sgAt(sgl, i), (1 + i) as Page, 1000, 0);
    expect(sgNentsForLen(sgl, 0)).toBe(0);
    expect(sgNentsForLen(sgl, 1)).toBe(1);
    expect(sgNentsForLen(sgl, 1000)).toBe(1);
    expect(sgNentsForLen(sgl, 1001)).toBe(2);
    expect(sgNentsForLen(sgl, 3000)).toBe(3);
    expect(sgNentsForLen(sgl, 3001)).toBe(-22);
    expect(sgNentsForLen(null, 5)).toBe(-22);
    expect(sgNents(null)).toBe(0);
  });

  it("sg_last returns the end entry and stops on the kernel's BUG_ON otherwise", () => {
    const sgl = createScatterlist(4);
    sgInitTable(sgl, 4);
    expect(sgSame(sgLast(sgl, 4), sgAt(sgl, 3))).toBe(true);
    expect(() => sgLast(sgl, 2)).toThrow(/BUG_ON\(!sg_is_last\(ret\)\)/);
    expect(() => sgLast(sgl, 5)).toThrow(/ends after 4 entries/);
    sgUnmarkEnd(sgAt(sgl, 3));
    expect(() => sgNents(sgl)).toThrow(/no end marker/);
    sgMarkEnd(sgAt(sgl, 1));
    expect(sgNents(sgl)).toBe(2);
  });

  it('refuses to step or initialise outside an array', () => {
    const sgl = createScatterlist(2);
    expect(() => sgAt(sgl, 2)).toThrow(/outside the array/);
    expect(() => sgAt(sgl, -1)).toThrow(/outside the array/);
    expect(sgSame(sgAt(sgAt(sgl, 1), -1), sgl)).toBe(true);
    expect(() => sgInitTable(sgl, 3)).toThrow(/does not fit/);
    expect(() => sgInitTable(sgl, 0)).toThrow(/does not fit/);
    expect(() => createScatterlist(0)).toThrow(DmalabError);
  });
});
