/**
 * The oracle's shadow memory: for every byte an agent ever wrote, the value
 * it should hold if every write were instantly visible to everybody, keyed
 * by logical physical address (the original buffer behind a bounce slot).
 *
 * Stored sparsely in 64 KiB chunks, allocated on first write and shared
 * copy-on-write with snapshots. Per 16-byte granule it also keeps the last
 * writer (step, agent, call — names interned) and the last write-back or
 * invalidate that put other bytes in memory or threw the bytes away: the
 * history a stale-data report needs. The state hash covers bytes and
 * known-flags only, incrementally per chunk.
 */

import { type Hash64, mix32, xxh32Words } from '../../machine/index.js';

export const SHADOW_CHUNK = 65536;
/** Bytes per granule of writer and clobber history. */
export const GRANULE = 16;
const GRANULES = SHADOW_CHUNK / GRANULE;

export interface ShadowChunk {
  /** Expected bytes. */
  bytes: Uint8Array;
  /** 1 where an agent wrote the byte (only those are compared). */
  known: Uint8Array;
  /** Last agent write per granule: step (0 = none), agent and call name ids. */
  wStep: Float64Array;
  wAgent: Uint16Array;
  wCall: Uint16Array;
  /** Last time memory lost the expected bytes per granule: step (0 = none) and a reason name id. */
  lStep: Float64Array;
  lWhy: Uint16Array;
}

export interface ShadowStore {
  chunks: Map<number, ShadowChunk>;
  /** Chunks the live store owns (the others are shared with a snapshot). */
  owned: Set<number>;
  /** Cached hash contribution per chunk, and the chunks to recompute. */
  hashes: Map<number, Hash64>;
  dirty: Set<number>;
  sumHi: number;
  sumLo: number;
}

export function createShadow(): ShadowStore {
  return { chunks: new Map(), owned: new Set(), hashes: new Map(), dirty: new Set(), sumHi: 0, sumLo: 0 };
}

function newChunk(): ShadowChunk {
  return {
    bytes: new Uint8Array(SHADOW_CHUNK),
    known: new Uint8Array(SHADOW_CHUNK),
    wStep: new Float64Array(GRANULES),
    wAgent: new Uint16Array(GRANULES),
    wCall: new Uint16Array(GRANULES),
    lStep: new Float64Array(GRANULES),
    lWhy: new Uint16Array(GRANULES),
  };
}

function cloneChunk(c: ShadowChunk): ShadowChunk {
  return {
    bytes: c.bytes.slice(),
    known: c.known.slice(),
    wStep: c.wStep.slice(),
    wAgent: c.wAgent.slice(),
    wCall: c.wCall.slice(),
    lStep: c.lStep.slice(),
    lWhy: c.lWhy.slice(),
  };
}

/** The chunk holding `ci`, writable by the live store (allocated or un-shared). */
export function writableChunk(s: ShadowStore, ci: number, forBytes: boolean): ShadowChunk {
  let c = s.chunks.get(ci);
  if (c === undefined) {
    c = newChunk();
    s.chunks.set(ci, c);
    s.owned.add(ci);
  } else if (!s.owned.has(ci)) {
    c = cloneChunk(c);
    s.chunks.set(ci, c);
    s.owned.add(ci);
  }
  if (forBytes) s.dirty.add(ci);
  return c;
}

/** Records an agent write of `data[0, len)` at logical `pa`. */
export function shadowWrite(
  s: ShadowStore,
  pa: number,
  data: Uint8Array,
  len: number,
  step: number,
  agent: number,
  call: number,
): void {
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const ci = Math.floor(addr / SHADOW_CHUNK);
    const off = addr - ci * SHADOW_CHUNK;
    const n = Math.min(len - done, SHADOW_CHUNK - off);
    const c = writableChunk(s, ci, true);
    c.bytes.set(data.subarray(done, done + n), off);
    c.known.fill(1, off, off + n);
    const g0 = Math.floor(off / GRANULE);
    const g1 = Math.floor((off + n - 1) / GRANULE) + 1;
    c.wStep.fill(step, g0, g1);
    c.wAgent.fill(agent, g0, g1);
    c.wCall.fill(call, g0, g1);
    done += n;
  }
}

/**
 * Compares `data[0, len)`, read at logical `pa`, with the shadow: appends
 * to `runs` the offsets `[start, end)` of every run of bytes an agent wrote
 * that differ, and returns the number of such bytes.
 */
export function shadowCompare(
  s: ShadowStore,
  pa: number,
  data: Uint8Array,
  len: number,
  runs: number[],
): number {
  let stale = 0;
  let done = 0;
  let runEnd = -1;
  while (done < len) {
    const addr = pa + done;
    const ci = Math.floor(addr / SHADOW_CHUNK);
    const off = addr - ci * SHADOW_CHUNK;
    const n = Math.min(len - done, SHADOW_CHUNK - off);
    const c = s.chunks.get(ci);
    if (c !== undefined) {
      const bytes = c.bytes;
      const known = c.known;
      // Compares bytes [from, to) of this piece (hot loop: indices in range by construction).
      const byByte = (from: number, to: number) => {
        for (let k = from; k < to; k++) {
          if (known[off + k] === 1 && bytes[off + k] !== data[done + k]) {
            stale++;
            const at = done + k;
            if (at === runEnd) runs[runs.length - 1] = ++runEnd;
            else {
              runs.push(at, at + 1);
              runEnd = at + 1;
            }
          }
        }
      };
      let k = 0;
      if ((off & 3) === 0 && ((data.byteOffset + done) & 3) === 0) {
        // A word at a time: words wholly unknown or wholly equal need no byte look.
        const nw = n >>> 2;
        const bw = wordsOf(bytes);
        const kw = wordsOf(known);
        const dw = new Uint32Array(data.buffer, data.byteOffset + done, nw);
        const base = off >>> 2;
        for (let w = 0; w < nw; w++) {
          const kn = kw[base + w]!;
          if (kn === 0 || (kn === ALL_KNOWN && bw[base + w] === dw[w])) continue;
          byByte(w << 2, (w << 2) + 4);
        }
        k = nw << 2;
      }
      byByte(k, n);
    }
    done += n;
  }
  return stale;
}

/** Four known bytes, as one 32-bit word of the known-flags array. */
const ALL_KNOWN = 0x01010101;

/** A 32-bit view of a chunk array (chunks are 64 KiB, word aligned); derived, kept outside the state. */
const views = new WeakMap<Uint8Array, Uint32Array>();

function wordsOf(a: Uint8Array): Uint32Array {
  let v = views.get(a);
  if (v === undefined) {
    v = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >>> 2);
    views.set(a, v);
  }
  return v;
}

/**
 * Compares memory-bound bytes (a write-back) with the shadow and, per
 * granule where known bytes differ, records that memory lost them at `step`
 * for reason `why`.
 */
export function shadowNoteLoss(
  s: ShadowStore,
  pa: number,
  data: Uint8Array,
  step: number,
  why: number,
): void {
  const len = data.length;
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const ci = Math.floor(addr / SHADOW_CHUNK);
    const off = addr - ci * SHADOW_CHUNK;
    const n = Math.min(len - done, SHADOW_CHUNK - off);
    const c = s.chunks.get(ci);
    if (c !== undefined) {
      for (let k = 0; k < n; k++) {
        if (c.known[off + k] === 1 && c.bytes[off + k] !== data[done + k]) {
          const w = writableChunk(s, ci, false);
          const g = Math.floor((off + k) / GRANULE);
          w.lStep[g] = step;
          w.lWhy[g] = why;
          // Skip to the next granule: one record per granule is enough.
          k = (g + 1) * GRANULE - off - 1;
        }
      }
    }
    done += n;
  }
}

/** Records that the known bytes of `[pa, pa+len)` may have been thrown away (an invalidate of dirty lines). */
export function shadowNoteDiscard(s: ShadowStore, pa: number, len: number, step: number, why: number): void {
  let done = 0;
  while (done < len) {
    const addr = pa + done;
    const ci = Math.floor(addr / SHADOW_CHUNK);
    const off = addr - ci * SHADOW_CHUNK;
    const n = Math.min(len - done, SHADOW_CHUNK - off);
    if (s.chunks.has(ci)) {
      const c = writableChunk(s, ci, false);
      const g0 = Math.floor(off / GRANULE);
      const g1 = Math.floor((off + n - 1) / GRANULE) + 1;
      c.lStep.fill(step, g0, g1);
      c.lWhy.fill(why, g0, g1);
    }
    done += n;
  }
}

/** What the shadow knows about the granule holding logical `pa`. */
export interface GranuleInfo {
  writerStep: number;
  writerAgent: number;
  writerCall: number;
  lossStep: number;
  lossWhy: number;
}

export function granuleInfo(s: ShadowStore, pa: number): GranuleInfo | null {
  const ci = Math.floor(pa / SHADOW_CHUNK);
  const c = s.chunks.get(ci);
  if (c === undefined) return null;
  const g = Math.floor((pa - ci * SHADOW_CHUNK) / GRANULE);
  return {
    writerStep: c.wStep[g]!,
    writerAgent: c.wAgent[g]!,
    writerCall: c.wCall[g]!,
    lossStep: c.lStep[g]!,
    lossWhy: c.lWhy[g]!,
  };
}

/** The expected byte at logical `pa`, or -1 when no agent wrote it. */
export function shadowByte(s: ShadowStore, pa: number): number {
  const ci = Math.floor(pa / SHADOW_CHUNK);
  const c = s.chunks.get(ci);
  if (c === undefined) return -1;
  const off = pa - ci * SHADOW_CHUNK;
  return c.known[off] === 1 ? c.bytes[off]! : -1;
}

/** A snapshot sharing every chunk (the live store gives up ownership). */
export function shadowSnapshot(s: ShadowStore): ShadowStore {
  shadowHash(s);
  s.owned.clear();
  return {
    chunks: new Map(s.chunks),
    owned: new Set(),
    hashes: new Map(s.hashes),
    dirty: new Set(),
    sumHi: s.sumHi,
    sumLo: s.sumLo,
  };
}

/** Restores `into` from a snapshot in place; the snapshot stays valid. */
export function shadowRestore(into: ShadowStore, snap: ShadowStore): void {
  into.chunks = new Map(snap.chunks);
  into.owned = new Set();
  into.hashes = new Map(snap.hashes);
  into.dirty = new Set(snap.dirty);
  into.sumHi = snap.sumHi;
  into.sumLo = snap.sumLo;
}

/** The shadow's state hash (bytes and known flags), recomputing only changed chunks. */
export function shadowHash(s: ShadowStore): Hash64 {
  for (const ci of s.dirty) {
    const c = s.chunks.get(ci)!;
    const b = new Uint32Array(c.bytes.buffer, c.bytes.byteOffset, SHADOW_CHUNK / 4);
    const k = new Uint32Array(c.known.buffer, c.known.byteOffset, SHADOW_CHUNK / 4);
    const seed = ci % 0x1_0000_0000;
    const hi = mix32(xxh32Words(b, 0, b.length, seed) ^ mix32(xxh32Words(k, 0, k.length, seed + 1)));
    const lo = mix32(xxh32Words(b, 0, b.length, seed ^ 0x5bd1e995) + xxh32Words(k, 0, k.length, seed));
    const prev = s.hashes.get(ci);
    s.sumHi = (s.sumHi - (prev?.hi ?? 0) + hi) >>> 0;
    s.sumLo = (s.sumLo - (prev?.lo ?? 0) + lo) >>> 0;
    s.hashes.set(ci, { hi, lo });
  }
  s.dirty.clear();
  return { hi: s.sumHi, lo: s.sumLo };
}
