/**
 * What the system heap and the CMA heap share
 * (drivers/dma-buf/heaps/system_heap.c and cma_heap.c): per-attachment
 * tables mapped with `dma_map_sgtable`, CPU-access brackets that sync every
 * mapped attachment (and the kernel mapping), vmap, and release.
 *
 * A heap buffer's `priv` is plain data: the heap, the length, and its
 * chunks as [first pfn, page count, …]. Each attachment gets its own table
 * (host-side, as sg tables are), built when it attaches.
 */

import {
  dmaMapSgtable,
  dmaSyncSgtableForCpu,
  dmaSyncSgtableForDevice,
  dmaUnmapSgtable,
} from '../../dma/index.js';
import type { SgTable } from '../../lib/index.js';
import {
  createSgTable,
  forEachSgtableSg,
  sgAllocTable,
  sgAllocTableFromPages,
  sgFreeTable,
  sgSetPage,
} from '../../lib/index.js';
import { DmalabError, ENOMEM, GFP_KERNEL, PAGE_SIZE, type Page } from '../../machine/index.js';
import {
  flushKernelVmapRange,
  invalidateKernelVmapRange,
  PAGE_KERNEL,
  VM_MAP,
  vmap,
  vunmap,
} from '../../mm/index.js';
import type { DmaBuf, DmaBufAttachment, DmaBufOps, IosysMap } from '../state.js';

/** A heap buffer's private data. */
export interface HeapBufferPriv {
  heap: string;
  len: number;
  /** [first pfn, page count, …], one pair per allocation chunk, in buffer order. */
  chunks: number[];
}

/** An attachment's private data: whether its table is mapped now (`a->mapped`). */
export interface HeapAttachmentPriv {
  mapped: boolean;
}

/** Host-side tables, by attachment handle. */
const tables = new WeakMap<DmaBufAttachment, SgTable>();

export function heapPriv(dmabuf: DmaBuf): HeapBufferPriv {
  return dmabuf.priv as HeapBufferPriv;
}

/** Every page of the buffer, in order. */
export function heapPages(priv: HeapBufferPriv): Page[] {
  const out: Page[] = [];
  for (let i = 0; i < priv.chunks.length; i += 2) {
    for (let k = 0; k < priv.chunks[i + 1]!; k++) out.push((priv.chunks[i]! + k) as Page);
  }
  return out;
}

/** The backing as the checker wants it: flat [phys, length, …]. */
export function heapBacking(priv: HeapBufferPriv): number[] {
  const out: number[] = [];
  for (let i = 0; i < priv.chunks.length; i += 2)
    out.push(priv.chunks[i]! * PAGE_SIZE, priv.chunks[i + 1]! * PAGE_SIZE);
  return out;
}

/**
 * The attachment's own table: the system heap's has one entry per chunk
 * (adjacent chunks are not merged), the CMA heap's comes from
 * `sg_alloc_table_from_pages` (one entry for the contiguous run).
 */
function buildTable(priv: HeapBufferPriv): SgTable | null {
  const sgt = createSgTable();
  if (priv.heap === 'system') {
    if (sgAllocTable(sgt, priv.chunks.length / 2, GFP_KERNEL) !== 0) return null;
    let i = 0;
    for (const sg of forEachSgtableSg(sgt)) {
      sgSetPage(sg, priv.chunks[i]! as Page, priv.chunks[i + 1]! * PAGE_SIZE, 0);
      i += 2;
    }
    return sgt;
  }
  const pages = heapPages(priv);
  if (sgAllocTableFromPages(sgt, pages, pages.length, 0, pages.length * PAGE_SIZE, GFP_KERNEL) !== 0)
    return null;
  return sgt;
}

/**
 * The attachment's table. Tables live beside the machine state (API.md §1),
 * so after a restore to a moment when the attachment existed it may be
 * missing: it is built again from the buffer's pages (a mapped one's DMA
 * fields are not restored, so a restore keeps mapped attachments only as far
 * as their state goes).
 */
function tableOf(at: DmaBufAttachment): SgTable {
  let sgt = tables.get(at);
  if (sgt === undefined) {
    const built = buildTable(heapPriv(at.dmabuf));
    if (built === null)
      throw new DmalabError('the heap could not rebuild an attachment table after a restore');
    sgt = built;
    tables.set(at, sgt);
  }
  return sgt;
}

function attach(dmabuf: DmaBuf, at: DmaBufAttachment): number {
  const sgt = buildTable(heapPriv(dmabuf));
  if (sgt === null) return -ENOMEM;
  tables.set(at, sgt);
  at.priv = { mapped: false } satisfies HeapAttachmentPriv;
  return 0;
}

function detach(_dmabuf: DmaBuf, at: DmaBufAttachment): void {
  const sgt = tables.get(at);
  if (sgt !== undefined) sgFreeTable(sgt);
  tables.delete(at);
}

function mapDmaBuf(at: DmaBufAttachment, dir: number): SgTable | number {
  const sgt = tableOf(at);
  const r = dmaMapSgtable(at.dev, sgt, dir as 0 | 1 | 2, 0);
  if (r !== 0) return r;
  at.priv = { mapped: true } satisfies HeapAttachmentPriv;
  return sgt;
}

function unmapDmaBuf(at: DmaBufAttachment, sgt: SgTable, dir: number): void {
  at.priv = { mapped: false } satisfies HeapAttachmentPriv;
  dmaUnmapSgtable(at.dev, sgt, dir as 0 | 1 | 2, 0);
}

function mappedAttachments(dmabuf: DmaBuf): DmaBufAttachment[] {
  return dmabuf.attachments.filter((a) => (a.priv as HeapAttachmentPriv | undefined)?.mapped === true);
}

/** Syncs every mapped attachment for the CPU, after invalidating the kernel mapping's aliases. */
function beginCpuAccess(dmabuf: DmaBuf, dir: number): number {
  const vm = dmabuf.state.vmapPtr;
  if (vm !== null) invalidateKernelVmapRange(dmabuf.machine, vm.vaddr, heapPriv(dmabuf).len);
  for (const a of mappedAttachments(dmabuf)) dmaSyncSgtableForCpu(a.dev, tableOf(a), dir as 0 | 1 | 2);
  return 0;
}

/** Flushes the kernel mapping, then syncs every mapped attachment for its device. */
function endCpuAccess(dmabuf: DmaBuf, dir: number): number {
  const vm = dmabuf.state.vmapPtr;
  if (vm !== null) flushKernelVmapRange(dmabuf.machine, vm.vaddr, heapPriv(dmabuf).len);
  for (const a of mappedAttachments(dmabuf)) dmaSyncSgtableForDevice(a.dev, tableOf(a), dir as 0 | 1 | 2);
  return 0;
}

function heapVmap(dmabuf: DmaBuf): IosysMap | number {
  const pages = heapPages(heapPriv(dmabuf));
  const va = vmap(dmabuf.machine, pages, pages.length, VM_MAP, PAGE_KERNEL);
  return va === null ? -ENOMEM : { vaddr: va, isIomem: false };
}

function heapVunmap(dmabuf: DmaBuf, map: IosysMap): void {
  vunmap(dmabuf.machine, map.vaddr);
}

/** The callbacks both heaps share; each adds its own `mmap` and `release`. */
export const heapCommonOps: Omit<DmaBufOps, 'release'> = {
  attach,
  detach,
  mapDmaBuf,
  unmapDmaBuf,
  beginCpuAccess,
  endCpuAccess,
  vmap: heapVmap,
  vunmap: heapVunmap,
};
