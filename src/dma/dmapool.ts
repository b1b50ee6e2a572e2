/**
 * DMA pools (mm/dmapool.c, the 6.4+ allocator): small coherent blocks carved
 * from page-sized (or larger) coherent chunks, none crossing the pool's
 * boundary. As in the kernel, the free list lives in the free blocks
 * themselves — each holds the address of the next free block and its own
 * DMA address in its first 16 bytes, written through the coherent CPU
 * mapping — so a device that keeps writing to a freed block corrupts the
 * list, and the next allocation hands out whatever pointer it wrote.
 *
 * Destroying a pool with blocks still allocated is reported ("busy") and its
 * chunks are leaked, as the kernel does.
 */

import {
  __GFP_ZERO,
  type Device,
  type DmaAddr,
  enterCall,
  type Gfp,
  type KernelVa,
  leaveCall,
  type Machine,
  registerFindingCode,
  reportFinding,
} from '../machine/index.js';
import {
  devresAdd,
  devresRemove,
  kernelReadInto,
  kernelWriteFrom,
  registerDevresRelease,
} from '../mm/index.js';
import { dmaAllocInner, dmaFreeInner, emitAllocPublic } from './alloc.js';
import { dmaState } from './state.js';

export const DMA_POOL_BUSY = registerFindingCode({
  code: 'DMA_POOL_BUSY',
  severity: 'error',
  verdict: 'api',
  title: 'a DMA pool was destroyed with blocks still allocated; its memory is leaked',
  layer: 'dma',
});

/** The size of `struct dma_block` (next pointer + dma_addr_t): the smallest block. */
const DMA_BLOCK_SIZE = 16;
const INT_MAX = 0x7fff_ffff;
const PAGE_SIZE = 4096;

export interface DmaPoolState {
  readonly id: number;
  readonly name: string;
  readonly device: number;
  readonly size: number;
  readonly allocation: number;
  readonly boundary: number;
  /** CPU address of the first free block, 0 when none. */
  nextBlock: number;
  nrBlocks: number;
  nrActive: number;
  /** Chunks: CPU address and DMA address. */
  pages: { vaddr: number; dma: number }[];
  destroyed: boolean;
}

/** `struct dma_pool *`: a handle carrying its machine. */
export class DmaPool {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): DmaPoolState {
    return dmaState(this.machine).pools.get(this.id)!;
  }
  get name(): string {
    return this.state.name;
  }
}

function bigEndian(m: Machine): boolean {
  return m.profile.arch === 'parisc';
}

/** Writes the free-list link (next block address, own DMA address) into a block. */
function writeLink(m: Machine, block: number, next: number, dma: number): void {
  const b = new Uint8Array(DMA_BLOCK_SIZE);
  const v = new DataView(b.buffer);
  const le = !bigEndian(m);
  v.setBigUint64(0, BigInt(next), le);
  v.setBigUint64(8, BigInt(dma), le);
  kernelWriteFrom(m, block, b, 0, DMA_BLOCK_SIZE);
}

/** Reads the link stored in a free block (next block, DMA address), or null after an oops. */
function readLink(m: Machine, block: number): { next: number; dma: number } | null {
  const b = new Uint8Array(DMA_BLOCK_SIZE);
  if (!kernelReadInto(m, block, b, 0, DMA_BLOCK_SIZE)) return null;
  const v = new DataView(b.buffer);
  const le = !bigEndian(m);
  const clamp = (x: bigint) => (x > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(x));
  return { next: clamp(v.getBigUint64(0, le)), dma: clamp(v.getBigUint64(8, le)) };
}

/**
 * `dma_pool_create()`: a pool of `size`-byte blocks aligned to `align`
 * that never cross a multiple of `boundary` (0: the allocation size).
 * Returns null on the kernel's argument errors.
 */
export function dmaPoolCreate(
  name: string,
  dev: Device | null,
  size: number,
  align: number,
  boundary: number,
): DmaPool | null {
  if (dev === null) return null;
  const m = dev.machine;
  enterCall(m, 'dma_pool_create');
  try {
    let a = align;
    if (a === 0) a = 1;
    else if (!Number.isInteger(a) || a < 0 || (a & (a - 1)) !== 0) return null;
    if (!Number.isInteger(size) || size <= 0 || size > INT_MAX) return null;
    let s = Math.max(size, DMA_BLOCK_SIZE);
    s = Math.ceil(s / a) * a;
    const allocation = Math.max(s, PAGE_SIZE);
    let b = boundary;
    if (b === 0) b = allocation;
    else if (b < s || (b & (b - 1)) !== 0) return null;
    b = Math.min(b, allocation);
    const st = dmaState(m);
    const id = st.nextPoolId++;
    st.pools.set(id, {
      id,
      name: name.slice(0, 31),
      device: dev.id,
      size: s,
      allocation,
      boundary: b,
      nextBlock: 0,
      nrBlocks: 0,
      nrActive: 0,
      pages: [],
      destroyed: false,
    });
    return new DmaPool(m, id);
  } finally {
    leaveCall(m);
  }
}

/** `pool_initialise_page()`: carves a chunk into blocks and pushes them on the free list. */
function initialisePage(m: Machine, p: DmaPoolState, vaddr: number, dma: number): void {
  const blocks: number[] = [];
  let nextBoundary = p.boundary;
  let offset = 0;
  while (offset + p.size <= p.allocation) {
    if (offset + p.size > nextBoundary) {
      offset = nextBoundary;
      nextBoundary += p.boundary;
      continue;
    }
    blocks.push(offset);
    offset += p.size;
    p.nrBlocks++;
  }
  for (let i = 0; i < blocks.length; i++) {
    const next = i + 1 < blocks.length ? vaddr + blocks[i + 1]! : p.nextBlock;
    writeLink(m, vaddr + blocks[i]!, next, dma + blocks[i]!);
  }
  p.nextBlock = vaddr + blocks[0]!;
  p.pages.unshift({ vaddr, dma });
}

function poolAllocInner(pool: DmaPool, memFlags: Gfp): { vaddr: KernelVa; dma: DmaAddr } | null {
  const m = pool.machine;
  const p = pool.state;
  if (p.nextBlock === 0) {
    const dev = m.devices[p.device]!;
    // pool_alloc_page: dma_alloc_coherent, seen by dma-debug like any other.
    const r = dmaAllocInner(dev, p.allocation, memFlags & ~__GFP_ZERO, 0);
    emitAllocPublic(dev, 'dma_alloc_coherent', r, p.allocation, memFlags, 0);
    if (r === null) return null;
    initialisePage(m, p, r.cpuAddr, r.dmaHandle);
  }
  // pool_block_pop() and `*handle = block->dma`: both come from the block's memory.
  const block = p.nextBlock;
  const link = readLink(m, block);
  if (link === null) {
    // The kernel oopsed dereferencing a corrupted free list (reported by the access); the pool is unusable.
    p.nextBlock = 0;
    return null;
  }
  p.nextBlock = link.next;
  p.nrActive++;
  if (memFlags & __GFP_ZERO) kernelWriteFrom(m, block, new Uint8Array(p.size), 0, p.size);
  return { vaddr: block as KernelVa, dma: link.dma as DmaAddr };
}

/** `dma_pool_alloc()`: a block and its DMA address, or null. */
export function dmaPoolAlloc(pool: DmaPool, memFlags: Gfp): { vaddr: KernelVa; dma: DmaAddr } | null {
  enterCall(pool.machine, 'dma_pool_alloc');
  try {
    return poolAllocInner(pool, memFlags);
  } finally {
    leaveCall(pool.machine);
  }
}

/** `dma_pool_zalloc()`: a zeroed block. */
export function dmaPoolZalloc(pool: DmaPool, memFlags: Gfp): { vaddr: KernelVa; dma: DmaAddr } | null {
  enterCall(pool.machine, 'dma_pool_zalloc');
  try {
    return poolAllocInner(pool, memFlags | __GFP_ZERO);
  } finally {
    leaveCall(pool.machine);
  }
}

/**
 * `dma_pool_free()`: pushes the block back, writing the link into it.
 * Without slab debugging the kernel checks nothing: an unknown block is
 * pushed all the same.
 */
export function dmaPoolFree(pool: DmaPool, vaddr: KernelVa | number, dma: DmaAddr | number): void {
  const m = pool.machine;
  enterCall(m, 'dma_pool_free');
  try {
    const p = pool.state;
    writeLink(m, vaddr, p.nextBlock, dma);
    p.nextBlock = vaddr;
    p.nrActive--;
  } finally {
    leaveCall(m);
  }
}

/** `dma_pool_destroy()`: frees every chunk, or reports "busy" and leaks them when blocks are live. */
export function dmaPoolDestroy(pool: DmaPool | null): void {
  if (pool === null) return;
  const m = pool.machine;
  enterCall(m, 'dma_pool_destroy');
  try {
    const p = pool.state;
    const dev = m.devices[p.device]!;
    const busy = p.nrActive > 0;
    if (busy) {
      reportFinding(m, DMA_POOL_BUSY.code, `dma_pool_destroy ${p.name} busy`, {
        device: dev.name,
        details: { pool: p.name, active: p.nrActive, chunks: p.pages.length },
      });
    } else {
      for (const pg of p.pages) dmaFreeInner(dev, p.allocation, pg.vaddr, pg.dma, 0, 'dma_free_coherent');
    }
    dmaState(m).pools.delete(p.id);
  } finally {
    leaveCall(m);
  }
}

/** Pool statistics (the kernel's `pools` sysfs file): blocks in use, total blocks, chunks. */
export function dmaPoolStats(pool: DmaPool): {
  name: string;
  active: number;
  blocks: number;
  pages: number;
  size: number;
} {
  const p = pool.state;
  return { name: p.name, active: p.nrActive, blocks: p.nrBlocks, pages: p.pages.length, size: p.size };
}

registerDevresRelease<{ pool: number }>('dmam_pool', (dev, data) => {
  dmaPoolDestroy(new DmaPool(dev.machine, data.pool));
});

/** `dmam_pool_create()`: a pool destroyed when the driver unbinds. */
export function dmamPoolCreate(
  name: string,
  dev: Device,
  size: number,
  align: number,
  allocation: number,
): DmaPool | null {
  const pool = dmaPoolCreate(name, dev, size, align, allocation);
  if (pool !== null) devresAdd(dev, 'dmam_pool', { pool: pool.id });
  return pool;
}

/** `dmam_pool_destroy()`. */
export function dmamPoolDestroy(pool: DmaPool): void {
  const dev = pool.machine.devices[pool.state.device]!;
  devresRemove<{ pool: number }>(dev, 'dmam_pool', (d) => d.pool === pool.id);
  dmaPoolDestroy(pool);
}
