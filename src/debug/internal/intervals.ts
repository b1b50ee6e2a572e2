/**
 * Sets of byte ranges as flat, sorted, disjoint `[start, end)` pairs in a
 * plain number array (`[s0, e0, s1, e1, …]`), edited in place. Ownership
 * uses them for the device-owned part of a mapping: almost always one pair
 * (or none), so the common operations allocate nothing.
 */

/** Adds `[s, e)` to the set. */
export function addRange(set: number[], s: number, e: number): void {
  if (e <= s) return;
  if (set.length === 0) {
    set.push(s, e);
    return;
  }
  let lo = s;
  let hi = e;
  const out: number[] = [];
  let placed = false;
  for (let i = 0; i < set.length; i += 2) {
    const a = set[i]!;
    const b = set[i + 1]!;
    if (b < lo) out.push(a, b);
    else if (a > hi) {
      if (!placed) {
        out.push(lo, hi);
        placed = true;
      }
      out.push(a, b);
    } else {
      lo = Math.min(lo, a);
      hi = Math.max(hi, b);
    }
  }
  if (!placed) out.push(lo, hi);
  set.length = 0;
  for (const x of out) set.push(x);
}

/** Removes `[s, e)` from the set. */
export function removeRange(set: number[], s: number, e: number): void {
  if (e <= s || set.length === 0) return;
  // The whole set covered: the usual case (a full sync or unmap).
  if (s <= set[0]! && e >= set[set.length - 1]!) {
    set.length = 0;
    return;
  }
  const out: number[] = [];
  for (let i = 0; i < set.length; i += 2) {
    const a = set[i]!;
    const b = set[i + 1]!;
    if (b <= s || a >= e) {
      out.push(a, b);
      continue;
    }
    if (a < s) out.push(a, s);
    if (b > e) out.push(e, b);
  }
  set.length = 0;
  for (const x of out) set.push(x);
}

/** True when the set intersects `[s, e)`. */
export function intersects(set: readonly number[], s: number, e: number): boolean {
  for (let i = 0; i < set.length; i += 2) {
    if (set[i]! < e && set[i + 1]! > s) return true;
  }
  return false;
}

/** True when the set covers every byte of `[s, e)`. */
export function covers(set: readonly number[], s: number, e: number): boolean {
  for (let i = 0; i < set.length; i += 2) {
    if (set[i]! <= s && set[i + 1]! >= e) return true;
  }
  return e <= s;
}
