/**
 * A declarative scenario's buffers: their allocation before any agent runs,
 * and the kernel's CPU access to them at a logical offset — one kernel
 * address for kmalloc and coherent buffers, the linear map page by page for
 * a pages buffer, the dma-buf's kernel mapping (`dma_buf_vmap`) for a heap
 * buffer.
 */

import { dmaAllocCoherent, dmaAllocCoherentForMmap, dmaMmapCoherent } from '../../dma/index.js';
import {
  createSgTable,
  forEachSgtableSg,
  sgAllocTable,
  sgAllocTableFromPages,
  sgSetPage,
} from '../../lib/index.js';
import {
  allocPages,
  ENOMEM,
  GFP_KERNEL,
  getOrder,
  PAGE_SIZE,
  type Page,
  pageAddress,
} from '../../machine/index.js';
import { kernelRead, kernelWrite, kmalloc, registerChrdev } from '../../mm/index.js';
import type { BufferSetup, MemoryBufferSetup, PagesBufferSetup } from '../types.js';
import { allocHeapBuffer, heapKernelMap } from './dmabuf.js';
import { type Buffer, bufferSize, fill, type World } from './world.js';

/** The pages of a pages buffer: separate order-0 pages, or the first `pages` of one block. */
function allocBufferPages(w: World, spec: PagesBufferSetup): Page[] | null {
  const pages: Page[] = [];
  if (spec.contiguous === true) {
    const head = allocPages(w.m, GFP_KERNEL, getOrder(spec.pages * PAGE_SIZE));
    if (head === null) return null;
    for (let i = 0; i < spec.pages; i++) pages.push((head + i) as Page);
    return pages;
  }
  for (let i = 0; i < spec.pages; i++) {
    const p = allocPages(w.m, GFP_KERNEL, 0);
    if (p === null) return null;
    pages.push(p);
  }
  return pages;
}

/**
 * The sg_table over a pages buffer. Separate pages get one entry each
 * (`sg_alloc_table` + `sg_set_page`, as the system heap builds its tables),
 * so they stay separate entries even where the allocator happened to hand
 * out neighbours; a contiguous block goes through `sg_alloc_table_from_pages`,
 * which makes it one entry.
 */
function buildTable(b: Buffer, spec: PagesBufferSetup, pages: Page[]): boolean {
  const sgt = createSgTable();
  if (spec.contiguous === true) {
    if (sgAllocTableFromPages(sgt, pages, pages.length, 0, pages.length * PAGE_SIZE, GFP_KERNEL) !== 0) {
      return false;
    }
  } else {
    if (sgAllocTable(sgt, pages.length, GFP_KERNEL) !== 0) return false;
    let i = 0;
    for (const sg of forEachSgtableSg(sgt)) sgSetPage(sg, pages[i++]!, PAGE_SIZE, 0);
  }
  b.pages = pages;
  b.sgt = sgt;
  return true;
}

/** A coherent buffer's driver: a character device whose mmap is dma_mmap_coherent. */
function coherentChrdev(w: World, b: Buffer, spec: MemoryBufferSetup) {
  const dev = b.dev!;
  registerChrdev(w.m, `/dev/${spec.name}`, {
    open(_inode, file) {
      if (spec.kind !== 'coherent-for-mmap' || b.cpu !== null) return 0;
      const r = dmaAllocCoherentForMmap(dev, spec.size, GFP_KERNEL, file);
      if (r === null) return -ENOMEM;
      b.cpu = r.cpuAddr;
      b.dma = r.dmaHandle;
      if (spec.fill !== undefined) kernelWrite(w.m, b.cpu, fill(spec.size, spec.fill));
      return 0;
    },
    mmap(_file, vma) {
      // A coherent allocation that failed leaves nothing to map: the driver says so, as ALSA's would.
      if (b.cpu === null || b.dma === null) return -ENOMEM;
      return dmaMmapCoherent(dev, vma, b.cpu, b.dma, spec.size);
    },
  });
}

/** Allocates every buffer of the setup, in order; a failed allocation is a failed byte condition. */
export function setupBuffers(w: World, specs: readonly BufferSetup[]): void {
  for (const spec of specs) {
    const dev = 'device' in spec && spec.device !== undefined ? w.devices.get(spec.device)! : null;
    const b: Buffer = {
      spec,
      dev,
      cpu: null,
      dma: null,
      pages: null,
      sgt: null,
      dmabuf: null,
      vmap: null,
      fds: new Map(),
    };
    w.buffers.set(spec.name, b);
    let ok: boolean;
    switch (spec.kind) {
      case 'kmalloc':
        b.cpu = kmalloc(w.m, spec.size, GFP_KERNEL);
        ok = b.cpu !== null;
        break;
      case 'coherent': {
        const r = dmaAllocCoherent(dev!, spec.size, GFP_KERNEL);
        if (r !== null) {
          b.cpu = r.cpuAddr;
          b.dma = r.dmaHandle;
        }
        coherentChrdev(w, b, spec);
        ok = r !== null;
        break;
      }
      case 'coherent-for-mmap':
        // Allocated when its device file is first opened.
        coherentChrdev(w, b, spec);
        continue;
      case 'pages': {
        const pages = allocBufferPages(w, spec);
        ok = pages !== null && buildTable(b, spec, pages);
        break;
      }
      case 'heap':
        ok = allocHeapBuffer(w, b, spec);
        break;
    }
    if (!ok) {
      w.ctx.check(false, `${w.file}: allocating buffer '${spec.name}' failed`);
    } else if (spec.fill !== undefined && spec.kind !== 'heap') {
      // A heap buffer is filled by the exporter itself, inside a CPU-access bracket (allocHeapBuffer).
      kernelWriteBuffer(w, b, 0, fill(bufferSize(spec), spec.fill));
    }
  }
}

/** One piece of a kernel access: `len` bytes at kernel address `va`. */
interface CpuPiece {
  readonly va: number;
  readonly len: number;
}

/** The kernel addresses of `len` bytes at logical offset `off` of a buffer; null if it has none. */
function cpuPieces(w: World, b: Buffer, off: number, len: number, label: string): CpuPiece[] | null {
  if (b.pages !== null) {
    // The linear map, page by page: the pages need not be neighbours.
    const out: CpuPiece[] = [];
    for (let done = 0; done < len; ) {
      const at = off + done;
      const n = Math.min(len - done, PAGE_SIZE - (at % PAGE_SIZE));
      out.push({ va: pageAddress(b.pages[Math.floor(at / PAGE_SIZE)]!) + (at % PAGE_SIZE), len: n });
      done += n;
    }
    return out;
  }
  const base = b.spec.kind === 'heap' ? heapKernelMap(w, b, label) : b.cpu;
  return base === null ? null : [{ va: base + off, len }];
}

/** A kernel load of a buffer's logical range; null when the buffer has no kernel address or a load failed. */
export function kernelReadBuffer(
  w: World,
  b: Buffer,
  off: number,
  len: number,
  label: string,
): Uint8Array | null {
  const pieces = cpuPieces(w, b, off, len, label);
  if (pieces === null) return null;
  if (pieces.length === 1) return kernelRead(w.m, pieces[0]!.va, len);
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of pieces) {
    const got = kernelRead(w.m, p.va, p.len);
    if (got === null) return null;
    out.set(got, at);
    at += p.len;
  }
  return out;
}

/** A kernel store to a buffer's logical range; false when the buffer has no kernel address. */
export function kernelWriteBuffer(w: World, b: Buffer, off: number, bytes: Uint8Array, label = ''): boolean {
  const pieces = cpuPieces(w, b, off, bytes.length, label);
  if (pieces === null) return false;
  let at = 0;
  for (const p of pieces) {
    kernelWrite(w.m, p.va, bytes.subarray(at, at + p.len));
    at += p.len;
  }
  return true;
}
