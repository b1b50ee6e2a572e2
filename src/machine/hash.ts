/**
 * Hashing for machine state: xxh32 over 32-bit words (two seeds make a
 * 64-bit key), and a streaming hasher for plain data. Hand-written so that
 * it needs no async initialisation and behaves the same in Node and the
 * browser (reference/stack.md measured it against the wasm alternatives).
 */

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** xxh32 of `words[start, start + count)` with a seed; `count` is in 32-bit words. */
export function xxh32Words(words: Uint32Array, start: number, count: number, seed: number): number {
  let i = start;
  const end = start + count;
  let h: number;
  if (count >= 4) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = end - 4;
    while (i <= limit) {
      // Hot loop: the indices are in range by construction.
      v1 = Math.imul(rotl((v1 + Math.imul(words[i]!, P2)) | 0, 13), P1);
      v2 = Math.imul(rotl((v2 + Math.imul(words[i + 1]!, P2)) | 0, 13), P1);
      v3 = Math.imul(rotl((v3 + Math.imul(words[i + 2]!, P2)) | 0, 13), P1);
      v4 = Math.imul(rotl((v4 + Math.imul(words[i + 3]!, P2)) | 0, 13), P1);
      i += 4;
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + count * 4) | 0;
  while (i < end) {
    h = Math.imul(rotl((h + Math.imul(words[i]!, P3)) | 0, 17), P4);
    i++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Finaliser that spreads a 32-bit value (xxh32's avalanche). */
export function mix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 64-bit hash as two 32-bit lanes. */
export interface Hash64 {
  hi: number;
  lo: number;
}

/** Renders a 64-bit hash as 16 lowercase hex digits (`machineHash`'s format). */
export function hash64Hex(h: Hash64): string {
  return (h.hi >>> 0).toString(16).padStart(8, '0') + (h.lo >>> 0).toString(16).padStart(8, '0');
}

/**
 * Streaming hasher for plain data (slot state, small tables). Two
 * independent lanes give 64 bits. Deterministic for a given sequence of
 * `word`/`num`/`str` calls.
 */
export class Hasher {
  private a: number;
  private b: number;
  private n = 0;

  constructor(seed = 0) {
    this.a = (seed + P1) | 0;
    this.b = (seed ^ P4) | 0;
  }

  /** Feeds one 32-bit word. */
  word(w: number): this {
    this.a = Math.imul(rotl((this.a + Math.imul(w | 0, P2)) | 0, 13), P1);
    this.b = Math.imul(rotl((this.b ^ Math.imul(w | 0, P3)) | 0, 17), P4) ^ this.n;
    this.n = (this.n + 1) | 0;
    return this;
  }

  /** Feeds a number: integers below 2^53 exactly, others by their float bits. */
  num(x: number): this {
    if (Number.isInteger(x) && Math.abs(x) <= Number.MAX_SAFE_INTEGER) {
      const neg = x < 0 ? 1 : 0;
      const v = Math.abs(x);
      this.word(v % 0x1_0000_0000);
      this.word(Math.floor(v / 0x1_0000_0000) | (neg << 31));
    } else {
      scratchF64[0] = x;
      this.word(scratchU32[0]!);
      this.word(scratchU32[1]!);
      this.word(0x7ff0_0001);
    }
    return this;
  }

  /** Feeds a string (its UTF-16 code units and its length). */
  str(s: string): this {
    this.word(s.length);
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
    return this;
  }

  /** Feeds another 64-bit hash. */
  hash(h: Hash64): this {
    return this.word(h.hi).word(h.lo);
  }

  /**
   * Feeds any plain value (null, booleans, numbers, strings, arrays, typed
   * arrays, Maps, Sets, plain objects). Object keys are taken in sorted order
   * so that construction order does not matter; Map and Set keep insertion
   * order, which dmalab's code makes deterministic.
   */
  value(v: unknown): this {
    if (v === null || v === undefined) return this.word(v === null ? 1 : 2);
    switch (typeof v) {
      case 'boolean':
        return this.word(v ? 3 : 4);
      case 'number':
        return this.word(5).num(v);
      case 'string':
        return this.word(6).str(v);
      case 'bigint':
        return this.word(7).str(v.toString(16));
      case 'object':
        break;
      default:
        return this.word(8);
    }
    if (ArrayBuffer.isView(v)) {
      this.word(9).word(v.byteLength);
      if (v.byteOffset % 4 === 0 && v.byteLength % 4 === 0) {
        const words = new Uint32Array(v.buffer, v.byteOffset, v.byteLength / 4);
        return this.word(xxh32Words(words, 0, words.length, 0x1234567)).word(
          xxh32Words(words, 0, words.length, 0x7654321),
        );
      }
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      for (let i = 0; i < bytes.length; i++) this.word(bytes[i]!);
      return this;
    }
    if (Array.isArray(v)) {
      this.word(10).word(v.length);
      for (const x of v) this.value(x);
      return this;
    }
    if (v instanceof Map) {
      this.word(11).word(v.size);
      for (const [k, x] of v) this.value(k).value(x);
      return this;
    }
    if (v instanceof Set) {
      this.word(12).word(v.size);
      for (const x of v) this.value(x);
      return this;
    }
    const keys = Object.keys(v as object).sort();
    this.word(13).word(keys.length);
    for (const k of keys) this.str(k).value((v as Record<string, unknown>)[k]);
    return this;
  }

  /** The 64-bit result. */
  digest(): Hash64 {
    return { hi: mix32(this.a ^ this.n), lo: mix32(this.b + Math.imul(this.n, P5)) };
  }
}

const scratchF64 = new Float64Array(1);
const scratchU32 = new Uint32Array(scratchF64.buffer);
