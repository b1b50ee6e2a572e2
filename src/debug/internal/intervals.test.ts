import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addRange, covers, intersects, removeRange } from './intervals.js';

describe('interval sets', () => {
  it('merges, splits and answers queries', () => {
    const s: number[] = [];
    addRange(s, 10, 20);
    addRange(s, 30, 40);
    addRange(s, 20, 25);
    expect(s).toEqual([10, 25, 30, 40]);
    addRange(s, 0, 100);
    expect(s).toEqual([0, 100]);
    removeRange(s, 40, 60);
    expect(s).toEqual([0, 40, 60, 100]);
    expect(intersects(s, 40, 60)).toBe(false);
    expect(intersects(s, 39, 41)).toBe(true);
    expect(covers(s, 0, 40)).toBe(true);
    expect(covers(s, 0, 41)).toBe(false);
    removeRange(s, 0, 100);
    expect(s).toEqual([]);
  });

  it('agrees with a byte map under random edits', () => {
    const op = fc.tuple(fc.boolean(), fc.nat(64), fc.nat(64));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const s: number[] = [];
        const ref = new Uint8Array(130);
        for (const [add, a, b] of ops) {
          const lo = Math.min(a, b);
          const hi = Math.max(a, b);
          if (add) addRange(s, lo, hi);
          else removeRange(s, lo, hi);
          ref.fill(add ? 1 : 0, lo, hi);
        }
        const fromSet = new Uint8Array(130);
        for (let i = 0; i < s.length; i += 2) {
          expect(s[i]!).toBeLessThan(s[i + 1]!);
          if (i > 0) expect(s[i]!).toBeGreaterThan(s[i - 1]!);
          fromSet.fill(1, s[i]!, s[i + 1]!);
        }
        expect([...fromSet]).toEqual([...ref]);
      }),
    );
  });
});
