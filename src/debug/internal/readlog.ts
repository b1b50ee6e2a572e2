/**
 * The bytes each agent observed, as a compact append-only log of
 * (step, call, hash of the bytes read): what `runOnProfiles` compares to
 * find the first operation where profiles diverge. Reads within one step
 * and call fold into one record. Stored in fixed-size chunks so that a
 * snapshot copies pointers and the last chunk only.
 */

import { xxh32Words } from '../../machine/index.js';

const PER_CHUNK = 1024;
const FIELDS = 3;

export interface ReadLog {
  chunks: Float64Array[];
  length: number;
}

export function createReadLog(): ReadLog {
  return { chunks: [], length: 0 };
}

/** A hash of `data[0, len)`: xxh32 over the whole words, FNV-1a over the bytes left. */
export function bytesHash(data: Uint8Array, len: number): number {
  let h = 0x811c9dc5;
  let i = 0;
  if ((data.byteOffset & 3) === 0 && len >= 64) {
    const nw = len >>> 2;
    h = xxh32Words(new Uint32Array(data.buffer, data.byteOffset, nw), 0, nw, 0x9747b28c);
    i = nw << 2;
  }
  for (; i < len; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca77);
  return (h ^ (h >>> 13)) >>> 0;
}

/** Appends a read, folding it into the previous record when step and call match. */
export function logRead(log: ReadLog, step: number, call: number, hash: number): void {
  if (log.length > 0) {
    const i = log.length - 1;
    const c = log.chunks[Math.floor(i / PER_CHUNK)]!;
    const o = (i % PER_CHUNK) * FIELDS;
    if (c[o] === step && c[o + 1] === call) {
      c[o + 2] = (Math.imul(c[o + 2]! ^ hash, 0x9e3779b1) ^ (hash >>> 7)) >>> 0;
      return;
    }
  }
  const ci = Math.floor(log.length / PER_CHUNK);
  if (ci === log.chunks.length) log.chunks.push(new Float64Array(PER_CHUNK * FIELDS));
  const o = (log.length % PER_CHUNK) * FIELDS;
  const c = log.chunks[ci]!;
  c[o] = step;
  c[o + 1] = call;
  c[o + 2] = hash;
  log.length++;
}

/** Record `i`: [step, call, hash]. */
export function readAt(log: ReadLog, i: number): [number, number, number] {
  const c = log.chunks[Math.floor(i / PER_CHUNK)]!;
  const o = (i % PER_CHUNK) * FIELDS;
  return [c[o]!, c[o + 1]!, c[o + 2]!];
}

/** A copy sharing the full chunks; the last one (which may still change) is copied. */
export function copyReadLog(log: ReadLog): ReadLog {
  const chunks = log.chunks.slice();
  const last = chunks.length - 1;
  if (last >= 0) chunks[last] = chunks[last]!.slice();
  return { chunks, length: log.length };
}
