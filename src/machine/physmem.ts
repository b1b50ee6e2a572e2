/**
 * The bytes of physical memory (RAM, persistent memory and device memory),
 * stored sparsely: a 64 GiB machine costs nothing until touched.
 *
 * Bytes live in 64 KiB chunks allocated on first write and grouped by 2 MiB
 * region. A snapshot shares chunks with the live machine; the first write to
 * a shared chunk copies it (copy-on-write), so snapshot and restore cost is
 * proportional to the touched regions, not to RAM. Each page keeps a cached
 * 64-bit hash contribution that is recomputed only when the page was written
 * since the last `memHash`, so the state hash is incremental.
 */

import { type Hash64, mix32, xxh32Words } from './hash.js';
import { PAGE_SIZE } from './types.js';

export const CHUNK_SIZE = 65536;
export const REGION_SIZE = 2 * 1024 * 1024;
const CHUNKS_PER_REGION = REGION_SIZE / CHUNK_SIZE;
const PAGES_PER_REGION = REGION_SIZE / PAGE_SIZE;
const PAGES_PER_CHUNK = CHUNK_SIZE / PAGE_SIZE;
const SEED_A = 0x2545f491;
const SEED_B = 0x6a09e667;

/** One 2 MiB region of the sparse store. */
export interface MemRegion {
  /** 64 KiB chunks; null while never written (reads as zeroes). */
  chunks: (Uint8Array | null)[];
  /** 32-bit word views of the same chunks (derived; used by cache-line copies). */
  words: (Int32Array | null)[];
  /** 1 when the chunk belongs to the live machine alone, 0 when a snapshot shares it. */
  owned: Uint8Array;
  /** Cached hash contribution per page (two lanes). */
  pageHi: Uint32Array;
  pageLo: Uint32Array;
  /** 1 when the page was written since its contribution was computed. */
  hashDirty: Uint8Array;
}

/** The sparse byte store of a machine. */
export interface MemStore {
  regions: Map<number, MemRegion>;
  /** Pfns whose `hashDirty` is set, in the order they were first dirtied. */
  dirtyPages: number[];
  /** Sum (mod 2^32, per lane) of every page's contribution. */
  sumHi: number;
  sumLo: number;
}

export interface MemSnapshot {
  regions: Map<number, MemRegion>;
  dirtyPages: number[];
  sumHi: number;
  sumLo: number;
}

/** Creates an empty store. */
export function createMemStore(): MemStore {
  return { regions: new Map(), dirtyPages: [], sumHi: 0, sumLo: 0 };
}

function newRegion(): MemRegion {
  return {
    chunks: new Array<Uint8Array | null>(CHUNKS_PER_REGION).fill(null),
    words: new Array<Int32Array | null>(CHUNKS_PER_REGION).fill(null),
    owned: new Uint8Array(CHUNKS_PER_REGION),
    pageHi: new Uint32Array(PAGES_PER_REGION),
    pageLo: new Uint32Array(PAGES_PER_REGION),
    hashDirty: new Uint8Array(PAGES_PER_REGION),
  };
}

/**
 * Returns the writable chunk holding `pa` (allocating or un-sharing it) and
 * marks the pages `[pa, pa + len)` of that chunk dirty for hashing. `len`
 * must not cross the chunk.
 */
function writableChunk(store: MemStore, pa: number, len: number): Uint8Array {
  const ri = Math.floor(pa / REGION_SIZE);
  let region = store.regions.get(ri);
  if (region === undefined) {
    region = newRegion();
    store.regions.set(ri, region);
  }
  const inRegion = pa - ri * REGION_SIZE;
  const ci = Math.floor(inRegion / CHUNK_SIZE);
  let chunk = region.chunks[ci] ?? null;
  if (region.owned[ci] === 0 || chunk === null) {
    chunk = chunk === null ? new Uint8Array(CHUNK_SIZE) : chunk.slice();
    region.chunks[ci] = chunk;
    region.words[ci] = new Int32Array(chunk.buffer);
    region.owned[ci] = 1;
  }
  const firstPage = Math.floor(inRegion / PAGE_SIZE);
  const lastPage = Math.floor((inRegion + len - 1) / PAGE_SIZE);
  const dirty = region.hashDirty;
  for (let p = firstPage; p <= lastPage; p++) {
    if (dirty[p] === 0) {
      dirty[p] = 1;
      store.dirtyPages.push(ri * PAGES_PER_REGION + p);
    }
  }
  return chunk;
}

/** Copies `len` bytes of physical memory at `pa` into `out[outOff…]`. */
export function memRead(store: MemStore, pa: number, out: Uint8Array, outOff: number, len: number): void {
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const off = addr % CHUNK_SIZE;
    const n = Math.min(len - done, CHUNK_SIZE - off);
    const region = store.regions.get(Math.floor(addr / REGION_SIZE));
    const chunk = region?.chunks[Math.floor((addr % REGION_SIZE) / CHUNK_SIZE)] ?? null;
    if (chunk === null) out.fill(0, outOff + done, outOff + done + n);
    else out.set(chunk.subarray(off, off + n), outOff + done);
    done += n;
  }
}

/** Writes `src[srcOff…srcOff+len)` to physical memory at `pa`. */
export function memWrite(store: MemStore, pa: number, src: Uint8Array, srcOff: number, len: number): void {
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const off = addr % CHUNK_SIZE;
    const n = Math.min(len - done, CHUNK_SIZE - off);
    const chunk = writableChunk(store, addr, n);
    chunk.set(src.subarray(srcOff + done, srcOff + done + n), off);
    done += n;
  }
}

/**
 * Reads `nWords` 32-bit words at word-aligned `pa` into `dst[dstIdx…]`
 * without crossing a chunk (cache-line fills).
 */
export function memReadWords(
  store: MemStore,
  pa: number,
  dst: Int32Array,
  dstIdx: number,
  nWords: number,
): void {
  const region = store.regions.get(Math.floor(pa / REGION_SIZE));
  const w = region?.words[Math.floor((pa % REGION_SIZE) / CHUNK_SIZE)] ?? null;
  if (w === null) {
    dst.fill(0, dstIdx, dstIdx + nWords);
    return;
  }
  const from = (pa % CHUNK_SIZE) / 4;
  for (let k = 0; k < nWords; k++) dst[dstIdx + k] = w[from + k]!;
}

/** Writes `nWords` words from `src[srcIdx…]` at word-aligned `pa`, inside one chunk (write-backs). */
export function memWriteWords(
  store: MemStore,
  pa: number,
  src: Int32Array,
  srcIdx: number,
  nWords: number,
): void {
  writableChunk(store, pa, nWords * 4);
  const ri = Math.floor(pa / REGION_SIZE);
  const w = store.regions.get(ri)!.words[Math.floor((pa - ri * REGION_SIZE) / CHUNK_SIZE)]!;
  const to = (pa % CHUNK_SIZE) / 4;
  for (let k = 0; k < nWords; k++) w[to + k] = src[srcIdx + k]!;
}

/** Fills `len` bytes at `pa` with `value`. */
export function memFill(store: MemStore, pa: number, value: number, len: number): void {
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const off = addr % CHUNK_SIZE;
    const n = Math.min(len - done, CHUNK_SIZE - off);
    if (value === 0 && !memChunkPresent(store, addr)) {
      done += n; // never written: already zero
      continue;
    }
    writableChunk(store, addr, n).fill(value, off, off + n);
    done += n;
  }
}

/** Copies `len` bytes from physical `src` to physical `dst` (ranges must not overlap). */
export function memCopy(store: MemStore, dst: number, src: number, len: number, scratch: Uint8Array): void {
  let done = 0;
  while (done < len) {
    const n = Math.min(len - done, scratch.length);
    memRead(store, src + done, scratch, 0, n);
    memWrite(store, dst + done, scratch, 0, n);
    done += n;
  }
}

function memChunkPresent(store: MemStore, pa: number): boolean {
  const region = store.regions.get(Math.floor(pa / REGION_SIZE));
  return (region?.chunks[Math.floor((pa % REGION_SIZE) / CHUNK_SIZE)] ?? null) !== null;
}

/** Number of chunks holding bytes (for memory accounting and tests). */
export function memChunksInUse(store: MemStore): number {
  let n = 0;
  for (const region of store.regions.values()) for (const c of region.chunks) if (c !== null) n++;
  return n;
}

let zeroHashHi = -1;
let zeroHashLo = -1;

function pageHashes(words: Uint32Array | null, start: number): [number, number] {
  if (words === null) {
    if (zeroHashHi < 0) {
      const zero = new Uint32Array(PAGE_SIZE / 4);
      zeroHashHi = xxh32Words(zero, 0, zero.length, SEED_A);
      zeroHashLo = xxh32Words(zero, 0, zero.length, SEED_B);
    }
    return [zeroHashHi, zeroHashLo];
  }
  return [xxh32Words(words, start, PAGE_SIZE / 4, SEED_A), xxh32Words(words, start, PAGE_SIZE / 4, SEED_B)];
}

/**
 * Brings the hash of every dirtied page up to date and returns the store's
 * 64-bit hash. A page of zeroes contributes nothing, so never-touched memory
 * and memory written with zeroes hash alike.
 */
export function memHash(store: MemStore): Hash64 {
  pageHashes(null, 0); // make sure the zero-page constants exist
  for (const pfn of store.dirtyPages) {
    const ri = Math.floor(pfn / PAGES_PER_REGION);
    const p = pfn - ri * PAGES_PER_REGION;
    const region = store.regions.get(ri);
    if (region === undefined) continue;
    region.hashDirty[p] = 0;
    const chunk = region.chunks[Math.floor(p / PAGES_PER_CHUNK)] ?? null;
    const words = chunk === null ? null : new Uint32Array(chunk.buffer, chunk.byteOffset, CHUNK_SIZE / 4);
    const [h1, h2] = pageHashes(words, (p % PAGES_PER_CHUNK) * (PAGE_SIZE / 4));
    let hi = 0;
    let lo = 0;
    if (h1 !== zeroHashHi || h2 !== zeroHashLo) {
      const pfnLo = pfn % 0x1_0000_0000;
      const pfnHi = Math.floor(pfn / 0x1_0000_0000);
      hi = mix32(h1 ^ mix32(pfnLo + 0x51ed27)) ^ pfnHi;
      lo = mix32(h2 ^ mix32(pfnLo ^ 0x7f4a7c15)) + pfnHi;
    }
    store.sumHi = (store.sumHi - region.pageHi[p]! + hi) >>> 0;
    store.sumLo = (store.sumLo - region.pageLo[p]! + lo) >>> 0;
    region.pageHi[p] = hi >>> 0;
    region.pageLo[p] = lo >>> 0;
  }
  store.dirtyPages.length = 0;
  return { hi: store.sumHi, lo: store.sumLo };
}

function cloneRegion(r: MemRegion): MemRegion {
  return {
    chunks: r.chunks.slice(),
    words: r.words.slice(),
    owned: new Uint8Array(CHUNKS_PER_REGION),
    pageHi: r.pageHi.slice(),
    pageLo: r.pageLo.slice(),
    hashDirty: r.hashDirty.slice(),
  };
}

/** Takes a snapshot sharing every chunk with the live store (which loses ownership of them). */
export function memSnapshot(store: MemStore): MemSnapshot {
  const regions = new Map<number, MemRegion>();
  for (const [ri, r] of store.regions) {
    r.owned.fill(0);
    regions.set(ri, cloneRegion(r));
  }
  return { regions, dirtyPages: store.dirtyPages.slice(), sumHi: store.sumHi, sumLo: store.sumLo };
}

/** Restores a snapshot in place; the snapshot stays valid for further restores. */
export function memRestore(store: MemStore, snap: MemSnapshot): void {
  store.regions.clear();
  for (const [ri, r] of snap.regions) store.regions.set(ri, cloneRegion(r));
  store.dirtyPages = snap.dirtyPages.slice();
  store.sumHi = snap.sumHi;
  store.sumLo = snap.sumLo;
}
