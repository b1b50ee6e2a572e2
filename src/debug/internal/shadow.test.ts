import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createShadow,
  granuleInfo,
  SHADOW_CHUNK,
  shadowByte,
  shadowCompare,
  shadowHash,
  shadowNoteLoss,
  shadowRestore,
  shadowSnapshot,
  shadowWrite,
} from './shadow.js';

describe('the shadow memory', () => {
  it('finds exactly the stale runs a byte-by-byte reference finds, across chunks and alignments', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(300), fc.uint8Array({ minLength: 1, maxLength: 64 })), { maxLength: 8 }),
        fc.nat(300),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.nat(3),
        (writes, at, read, shift) => {
          const s = createShadow();
          const base = SHADOW_CHUNK - 160; // straddle a chunk boundary
          const ref = new Map<number, number>();
          for (const [o, bytes] of writes) {
            shadowWrite(s, base + o, bytes, bytes.length, 1, 1, 0);
            for (let i = 0; i < bytes.length; i++) ref.set(base + o + i, bytes[i]!);
          }
          // The read buffer at every byte alignment.
          const buf = new Uint8Array(read.length + shift);
          buf.set(read, shift);
          const view = buf.subarray(shift);
          const runs: number[] = [];
          const stale = shadowCompare(s, base + at, view, view.length, runs);
          const want: number[] = [];
          let n = 0;
          for (let i = 0; i < view.length; i++) {
            const e = ref.get(base + at + i);
            if (e === undefined || e === view[i]) continue;
            n++;
            if (want.length > 0 && want[want.length - 1] === i) want[want.length - 1] = i + 1;
            else want.push(i, i + 1);
          }
          expect(stale).toBe(n);
          expect(runs).toEqual(want);
          for (let i = 0; i < 8; i++) expect(shadowByte(s, base + at + i)).toBe(ref.get(base + at + i) ?? -1);
        },
      ),
    );
  });

  it('remembers the last writer and losses per 16-byte granule', () => {
    const s = createShadow();
    shadowWrite(s, 100, new Uint8Array([1, 2, 3]), 3, 7, 4, 5);
    expect(granuleInfo(s, 96)).toEqual({
      writerStep: 7,
      writerAgent: 4,
      writerCall: 5,
      lossStep: 0,
      lossWhy: 0,
    });
    shadowNoteLoss(s, 96, new Uint8Array(16), 9, 2); // a write-back of zeroes over them
    expect(granuleInfo(s, 100)).toMatchObject({ lossStep: 9, lossWhy: 2 });
    shadowNoteLoss(s, 112, new Uint8Array(16), 10, 3); // bytes nobody wrote: nothing lost
    expect(granuleInfo(s, 112)).toMatchObject({ lossStep: 0 });
  });

  it('shares chunks with snapshots and hashes bytes, not history', () => {
    const s = createShadow();
    shadowWrite(s, 0, new Uint8Array([1]), 1, 1, 1, 0);
    const h0 = shadowHash(s);
    const snap = shadowSnapshot(s);
    shadowWrite(s, 0, new Uint8Array([2]), 1, 2, 1, 0);
    expect(shadowByte(snap, 0)).toBe(1);
    expect(shadowHash(s)).not.toEqual(h0);
    shadowRestore(s, snap);
    expect(shadowByte(s, 0)).toBe(1);
    expect(shadowHash(s)).toEqual(h0);
    shadowNoteLoss(s, 0, new Uint8Array(16), 3, 1);
    expect(shadowHash(s)).toEqual(h0);
    expect(shadowByte(snap, 0)).toBe(1);
  });
});
