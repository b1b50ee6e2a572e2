/**
 * `struct ttm_tt`: the system pages behind a SYSTEM or TT resource
 * (drivers/gpu/drm/ttm/ttm_tt.c, ttm_pool.c). Pages come from the DMA API
 * one at a time (`ttm_pool` with `use_dma_alloc`, as drivers whose device
 * cannot snoop or sits behind an IOMMU use it), so each page has a kernel
 * address and a DMA address the copy engine and the GART can use.
 *
 * A tt that is not mapped cached has its kernel alias flushed after
 * allocation, as x86's `set_pages_array_wc()` does; dmalab does it on
 * every architecture so no dirty kernel line sits under a user's
 * write-combined view (the kernel leaves that to the arch).
 */

import { dmaAllocAttrs, dmaFreeAttrs } from '../../dma/index.js';
import {
  cacheFlush,
  type Device,
  ENOMEM,
  GFP_KERNEL,
  isVmallocAddr,
  type Machine,
  PAGE_SIZE,
  pageToPfn,
  virtToPage,
} from '../../machine/index.js';
import { kernelRead, kernelWrite, vmallocToPage } from '../../mm/index.js';
import { TTM_TT_FLAG_SWAPPED, type TtmCaching, ttm_cached } from '../consts.js';
import type { BdevState, BoObjState, TtState } from './state.js';

/** `ttm_tt_create()` (the driver's `ttm_tt_create` picks the caching). */
export function ttCreate(bo: BoObjState, caching: TtmCaching): TtState {
  const n = bo.pages;
  bo.tt = {
    caching,
    pageFlags: 0,
    populated: false,
    pfns: new Array<number>(n).fill(-1),
    cpu: new Array<number>(n).fill(-1),
    dma: new Array<number>(n).fill(-1),
    swap: null,
  };
  return bo.tt;
}

/** One page a tt gives back: its kernel and DMA addresses. */
export type TtPage = [cpu: number, dma: number];

/** Frees pages taken from a tt (after a copy out of them has completed). */
export function ttFreePages(dev: Device, bdev: BdevState, pages: readonly TtPage[]): void {
  for (const [cpu, dma] of pages) dmaFreeAttrs(dev, PAGE_SIZE, cpu, dma, 0);
  bdev.ttPages -= pages.length;
}

/** Takes the pages out of a populated tt, leaving it unpopulated; the caller frees them. */
export function ttTakePages(tt: TtState): TtPage[] {
  const out: TtPage[] = [];
  if (!tt.populated) return out;
  for (let i = 0; i < tt.pfns.length; i++) out.push([tt.cpu[i]!, tt.dma[i]!]);
  tt.pfns.fill(-1);
  tt.cpu.fill(-1);
  tt.dma.fill(-1);
  tt.populated = false;
  return out;
}

/**
 * `ttm_tt_populate()` through the pool: a page per DMA allocation, zeroed
 * (or filled back from swap). Returns 0 or -ENOMEM (pages already taken
 * are given back).
 */
export function ttPopulate(m: Machine, dev: Device, bdev: BdevState, tt: TtState): number {
  if (tt.populated) return 0;
  const n = tt.pfns.length;
  for (let i = 0; i < n; i++) {
    const r = dmaAllocAttrs(dev, PAGE_SIZE, GFP_KERNEL, 0);
    if (r === null) {
      const taken: TtPage[] = [];
      for (let k = 0; k < i; k++) taken.push([tt.cpu[k]!, tt.dma[k]!]);
      bdev.ttPages += i;
      ttFreePages(dev, bdev, taken);
      tt.pfns.fill(-1);
      tt.cpu.fill(-1);
      tt.dma.fill(-1);
      return -ENOMEM;
    }
    const page = isVmallocAddr(r.cpuAddr) ? vmallocToPage(m, r.cpuAddr) : virtToPage(r.cpuAddr);
    tt.cpu[i] = r.cpuAddr;
    tt.dma[i] = r.dmaHandle;
    tt.pfns[i] = page === null ? -1 : pageToPfn(page);
  }
  bdev.ttPages += n;
  tt.populated = true;
  if (tt.swap !== null) {
    // ttm_tt_swapin: the bytes come back from the shmem file through the kernel's mapping.
    for (let i = 0; i < n; i++)
      kernelWrite(m, tt.cpu[i]!, tt.swap.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    tt.swap = null;
    tt.pageFlags &= ~TTM_TT_FLAG_SWAPPED;
  }
  if (tt.caching !== ttm_cached) {
    for (let i = 0; i < n; i++) cacheFlush(m, tt.pfns[i]! * PAGE_SIZE, PAGE_SIZE);
  }
  return 0;
}

/** `ttm_tt_swapout()`: the bytes go to the shmem file (state), the pages are freed, SWAPPED is set. */
export function ttSwapout(m: Machine, dev: Device, bdev: BdevState, tt: TtState): number {
  const n = tt.pfns.length;
  const swap = new Uint8Array(n * PAGE_SIZE);
  for (let i = 0; i < n; i++) {
    const b = kernelRead(m, tt.cpu[i]!, PAGE_SIZE);
    if (b === null) return -ENOMEM;
    swap.set(b, i * PAGE_SIZE);
  }
  ttFreePages(dev, bdev, ttTakePages(tt));
  tt.swap = swap;
  tt.pageFlags |= TTM_TT_FLAG_SWAPPED;
  return n * PAGE_SIZE;
}
