/**
 * `dma_resv` (drivers/dma-buf/dma-resv.c, include/linux/dma-resv.h): the
 * fences of a buffer, each with a usage class — KERNEL < WRITE < READ <
 * BOOKKEEP — behind a wound/wait mutex.
 *
 * The model is synchronous, so a lock held by somebody else cannot be
 * waited for: `dmaResvLock` returns -EDEADLK (the wound/wait back-off) and
 * `dmaResvLockSlow` on a still-held lock is a hung task. Debug kernels'
 * rule that fence slots must be reserved under the same lock hold
 * (`dma_resv_reset_max_fences` at unlock) is always on.
 */

import { apiCall, BUG, DmalabError, EINVAL, type Machine, reportFinding, WARN } from '../machine/index.js';
import {
  dmaFenceContextAlloc,
  fenceIsSignaled,
  MAX_SCHEDULE_TIMEOUT,
  noteFenceObserved,
  putFence,
  seqnoLater,
  waitModelTime,
} from './fence.js';
import { dmaFenceArrayCreate } from './fence-array.js';
import {
  assertFence,
  type DmaFence,
  DmaResv,
  EALREADY,
  EDEADLK,
  type FenceRec,
  fenceHandle,
  fenceState,
  nextFenceId,
  type ResvRec,
  resvHandle,
} from './fence-state.js';

/** In-kernel memory management (moves, clears): everyone waits for these. */
export const DMA_RESV_USAGE_KERNEL = 0;
/** Implicit-sync writers. */
export const DMA_RESV_USAGE_WRITE = 1;
/** Implicit-sync readers. */
export const DMA_RESV_USAGE_READ = 2;
/** No implicit sync: never waited for by implicit-sync users. */
export const DMA_RESV_USAGE_BOOKKEEP = 3;

const USAGE_NAMES = ['KERNEL', 'WRITE', 'READ', 'BOOKKEEP'];

function checkUsage(usage: number): void {
  if (!Number.isInteger(usage) || usage < DMA_RESV_USAGE_KERNEL || usage > DMA_RESV_USAGE_BOOKKEEP) {
    throw new DmalabError(`usage must be a DMA_RESV_USAGE_* value (0-3), got ${usage}`, { field: 'usage' });
  }
}

function assertResv(obj: unknown): asserts obj is DmaResv {
  if (!(obj instanceof DmaResv)) throw new DmalabError('obj must be a DmaResv', { field: 'obj' });
}

/**
 * `dma_resv_usage_rw()`: the usage a new access must wait for — a writer
 * waits for readers and writers (READ), a reader only for writers (WRITE).
 */
export function dmaResvUsageRw(write: boolean): number {
  return write ? DMA_RESV_USAGE_READ : DMA_RESV_USAGE_WRITE;
}

/** `dma_resv_init()`: a new, unlocked, empty reservation object. */
export function dmaResvInit(m: Machine): DmaResv {
  return apiCall(m, 'dma_resv_init', () => {
    const s = fenceState(m);
    const id = nextFenceId(s);
    s.resvs.set(id, { id, lockedBy: null, fences: [], max: 0 });
    return resvHandle(m, id);
  });
}

/** `dma_resv_fini()`: drops every fence; the object may not be used afterwards. */
export function dmaResvFini(obj: DmaResv): void {
  assertResv(obj);
  const m = obj.machine;
  apiCall(m, 'dma_resv_fini', () => {
    const r = obj.state;
    const s = fenceState(m);
    for (const slot of r.fences) putFence(m, s.fences.get(slot.fence)!);
    s.resvs.delete(r.id);
  });
}

/** `struct ww_acquire_ctx`: one locking transaction over several reservation objects. */
export class WwAcquireCtx {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}

  /** Locks held through this context (kept in machine state, so an unlock without the context counts). */
  get acquired(): number {
    return fenceState(this.machine).wwAcquired.get(this.id) ?? 0;
  }
}

/** `ww_acquire_init(ctx, &reservation_ww_class)`: a new acquire context (returned). */
export function wwAcquireInit(m: Machine): WwAcquireCtx {
  return new WwAcquireCtx(m, nextFenceId(fenceState(m)));
}

/** `ww_acquire_fini()`: WARNs (as lockdep does) when locks are still held through the context. */
export function wwAcquireFini(ctx: WwAcquireCtx): void {
  if (ctx.acquired !== 0) {
    reportFinding(
      ctx.machine,
      WARN.code,
      `ww_acquire_fini: ${ctx.acquired} lock(s) still held by the context`,
    );
  }
}

function lockInner(m: Machine, obj: DmaResv, ctx: WwAcquireCtx | null): number {
  if (ctx !== null && !(ctx instanceof WwAcquireCtx))
    throw new DmalabError('ctx must be a WwAcquireCtx or null');
  const r = obj.state;
  if (r.lockedBy !== null) {
    if (ctx !== null && r.lockedBy === ctx.id) return -EALREADY;
    if (ctx === null) {
      reportFinding(
        m,
        WARN.code,
        `possible recursive locking detected: dma_resv ${r.id} is already held and is locked again without an acquire context`,
      );
    }
    return -EDEADLK;
  }
  r.lockedBy = ctx === null ? 0 : ctx.id;
  if (ctx !== null) {
    const held = fenceState(m).wwAcquired;
    held.set(ctx.id, (held.get(ctx.id) ?? 0) + 1);
  }
  return 0;
}

/**
 * `dma_resv_lock()`: 0; -EALREADY when `ctx` already holds it; -EDEADLK
 * when somebody else holds it (back off: unlock everything and use
 * `dmaResvLockSlow`). Without a context a held lock is a self-deadlock:
 * lockdep's WARN and -EDEADLK.
 */
export function dmaResvLock(obj: DmaResv, ctx: WwAcquireCtx | null): number {
  assertResv(obj);
  return apiCall(obj.machine, 'dma_resv_lock', () => lockInner(obj.machine, obj, ctx));
}

/** `dma_resv_lock_interruptible()`: as `dmaResvLock` (no signal can arrive in the model). */
export function dmaResvLockInterruptible(obj: DmaResv, ctx: WwAcquireCtx | null): number {
  assertResv(obj);
  return apiCall(obj.machine, 'dma_resv_lock_interruptible', () => lockInner(obj.machine, obj, ctx));
}

/**
 * `dma_resv_lock_slow()`: after a back-off, sleeps until the lock is free.
 * A lock still held can never be freed in a synchronous model: a hung-task
 * finding, and the lock is not taken.
 */
export function dmaResvLockSlow(obj: DmaResv, ctx: WwAcquireCtx): void {
  assertResv(obj);
  const m = obj.machine;
  apiCall(m, 'dma_resv_lock_slow', () => {
    if (obj.state.lockedBy !== null) {
      waitModelTime(
        m,
        () => obj.state.lockedBy === null,
        MAX_SCHEDULE_TIMEOUT,
        `the lock of dma_resv ${obj.id}`,
      );
      if (obj.state.lockedBy !== null) return;
    }
    lockInner(m, obj, ctx);
  });
}

/** `dma_resv_trylock()`: true when the lock was free and is now held (no acquire context). */
export function dmaResvTrylock(obj: DmaResv): boolean {
  assertResv(obj);
  return apiCall(obj.machine, 'dma_resv_trylock', () => {
    const r = obj.state;
    if (r.lockedBy !== null) return false;
    r.lockedBy = 0;
    return true;
  });
}

/** `dma_resv_is_locked()`. */
export function dmaResvIsLocked(obj: DmaResv): boolean {
  assertResv(obj);
  return obj.state.lockedBy !== null;
}

/**
 * `dma_resv_unlock()`: releases the lock, whoever's acquire context took it
 * (the ww_mutex knows its context); the slots reserved but not used are
 * forgotten (debug kernels' `dma_resv_reset_max_fences`). Unlocking an
 * unlocked object is lockdep's WARN.
 */
export function dmaResvUnlock(obj: DmaResv): void {
  assertResv(obj);
  const m = obj.machine;
  apiCall(m, 'dma_resv_unlock', () => {
    const r = obj.state;
    if (r.lockedBy === null) {
      reportFinding(m, WARN.code, `bad unlock balance detected: dma_resv ${r.id} is not locked`);
      return;
    }
    if (r.lockedBy !== 0) {
      const held = fenceState(m).wwAcquired;
      const n = (held.get(r.lockedBy) ?? 0) - 1;
      if (n > 0) held.set(r.lockedBy, n);
      else held.delete(r.lockedBy);
    }
    r.lockedBy = null;
    r.max = r.fences.length;
  });
}

/** `dma_resv_assert_held()` on a record: lockdep's WARN when not held. */
function assertHeld(m: Machine, r: ResvRec, call: string): void {
  if (r.lockedBy === null) {
    reportFinding(m, WARN.code, `${call}: dma_resv ${r.id} is not locked (lockdep_assert_held fails)`);
  }
}

/** `dma_resv_assert_held()`: a WARN finding where lockdep would complain. */
export function dmaResvAssertHeld(obj: DmaResv): void {
  assertResv(obj);
  apiCall(obj.machine, 'dma_resv_assert_held', () =>
    assertHeld(obj.machine, obj.state, 'dma_resv_assert_held'),
  );
}

/**
 * `dma_resv_reserve_fences()`: makes room for `numFences` more fences (lock
 * held). Growing the list drops the fences that have signalled. Returns 0;
 * asking for none is a caller's miscount: a WARN and -EINVAL, as the kernel.
 */
export function dmaResvReserveFences(obj: DmaResv, numFences: number): number {
  assertResv(obj);
  if (!Number.isInteger(numFences) || numFences < 0) {
    throw new DmalabError(`numFences must be a non-negative integer, got ${numFences}`);
  }
  const m = obj.machine;
  return apiCall(m, 'dma_resv_reserve_fences', () => {
    const r = obj.state;
    assertHeld(m, r, 'dma_resv_reserve_fences');
    if (numFences === 0) {
      reportFinding(m, WARN.code, 'dma_resv_reserve_fences: num_fences is 0');
      return -EINVAL;
    }
    if (r.fences.length + numFences <= r.max) return 0;
    // The new list's size counts the old fences, signalled or not; copying it drops the signalled ones.
    r.max =
      r.max > 0
        ? Math.max(r.fences.length + numFences, r.max * 2)
        : Math.max(4, 2 ** Math.ceil(Math.log2(numFences)));
    const s = fenceState(m);
    const kept = [];
    for (const slot of r.fences) {
      const f = s.fences.get(slot.fence)!;
      if (fenceIsSignaled(m, f)) putFence(m, f);
      else kept.push(slot);
    }
    r.fences = kept;
    return 0;
  });
}

function isLaterOrSame(a: FenceRec, b: FenceRec): boolean {
  return a.id === b.id || (a.context === b.context && seqnoLater(a, a.seqno, b.seqno));
}

/**
 * `dma_resv_add_fence()`: adds `fence` (a reference is taken) with `usage`
 * (lock held, a slot reserved). It takes the first slot holding a fence of
 * the same context that it is later than or equal to with a usage at least
 * as weak — so a fence moves only to a stronger class — or a slot whose
 * fence has signalled; otherwise it is appended. No slot left is the
 * kernel's BUG.
 */
export function dmaResvAddFence(obj: DmaResv, fence: DmaFence, usage: number): void {
  assertResv(obj);
  assertFence(fence);
  checkUsage(usage);
  const m = obj.machine;
  apiCall(m, 'dma_resv_add_fence', () => {
    const r = obj.state;
    const f = fence.state;
    assertHeld(m, r, 'dma_resv_add_fence');
    if (f.components !== null) reportFinding(m, WARN.code, `dma_resv_add_fence: ${fence} is a container`);
    const s = fenceState(m);
    for (const slot of r.fences) {
      const old = s.fences.get(slot.fence)!;
      if (
        (old.context === f.context && slot.usage >= usage && isLaterOrSame(f, old)) ||
        fenceIsSignaled(m, old)
      ) {
        f.refs++;
        slot.fence = f.id;
        slot.usage = usage;
        emitAdd(m, r, f, usage, old.id);
        putFence(m, old);
        return;
      }
    }
    if (r.fences.length >= r.max) {
      reportFinding(
        m,
        BUG.code,
        `kernel BUG in dma_resv_add_fence: no reserved slot for ${fence} in dma_resv ${r.id} (${r.fences.length} of ${r.max} used; call dma_resv_reserve_fences under the same lock)`,
      );
      return;
    }
    f.refs++;
    r.fences.push({ fence: f.id, usage });
    emitAdd(m, r, f, usage, -1);
  });
}

function emitAdd(m: Machine, r: ResvRec, f: FenceRec, usage: number, replaced: number): void {
  if (m.bus.wants['resv-add']) m.bus.emit({ type: 'resv-add', resv: r.id, fence: f.id, usage, replaced });
}

/** `dma_resv_replace_fences()`: every fence of `context` becomes `replacement` with `usage` (lock held). */
export function dmaResvReplaceFences(
  obj: DmaResv,
  context: number,
  replacement: DmaFence,
  usage: number,
): void {
  assertResv(obj);
  assertFence(replacement, 'replacement');
  checkUsage(usage);
  const m = obj.machine;
  apiCall(m, 'dma_resv_replace_fences', () => {
    const r = obj.state;
    assertHeld(m, r, 'dma_resv_replace_fences');
    const s = fenceState(m);
    const f = replacement.state;
    for (const slot of r.fences) {
      const old = s.fences.get(slot.fence)!;
      if (old.context !== context) continue;
      f.refs++;
      slot.fence = f.id;
      slot.usage = usage;
      emitAdd(m, r, f, usage, old.id);
      putFence(m, old);
    }
  });
}

/** The slots of usage ≤ `usage`, in order. */
function slotsUpTo(r: ResvRec, usage: number) {
  return r.fences.filter((slot) => slot.usage <= usage);
}

/**
 * `dma_resv_for_each_fence()` (lock held): every fence with usage ≤
 * `usage`, signalled ones included, with its usage. No references taken.
 */
export function dmaResvForEachFence(obj: DmaResv, usage: number): { fence: DmaFence; usage: number }[] {
  assertResv(obj);
  checkUsage(usage);
  const m = obj.machine;
  return apiCall(m, 'dma_resv_for_each_fence', () => {
    const r = obj.state;
    assertHeld(m, r, 'dma_resv_for_each_fence');
    return slotsUpTo(r, usage).map((slot) => ({ fence: fenceHandle(m, slot.fence), usage: slot.usage }));
  });
}

/**
 * The unsignalled fences of usage ≤ `usage` (the lockless iterator skips
 * signalled ones); each fence seen is reported as observed by the caller.
 */
function unsignalled(m: Machine, r: ResvRec, usage: number): FenceRec[] {
  const s = fenceState(m);
  const out: FenceRec[] = [];
  for (const slot of slotsUpTo(r, usage)) {
    const f = s.fences.get(slot.fence)!;
    if (fenceIsSignaled(m, f)) noteFenceObserved(m, f, true);
    else out.push(f);
  }
  return out;
}

/** `dma_resv_get_fences()`: the unsignalled fences of usage ≤ `usage`, a reference taken on each. */
export function dmaResvGetFences(obj: DmaResv, usage: number): DmaFence[] {
  assertResv(obj);
  checkUsage(usage);
  const m = obj.machine;
  return apiCall(m, 'dma_resv_get_fences', () =>
    unsignalled(m, obj.state, usage).map((f) => {
      f.refs++;
      return fenceHandle(m, f.id);
    }),
  );
}

/**
 * `dma_resv_get_singleton()`: null when no fence of usage ≤ `usage` is
 * pending, the fence itself when one is, else a new `dma_fence_array` of
 * them. A reference is returned.
 */
export function dmaResvGetSingleton(obj: DmaResv, usage: number): DmaFence | null {
  const fences = dmaResvGetFences(obj, usage);
  if (fences.length === 0) return null;
  if (fences.length === 1) return fences[0]!;
  const m = obj.machine;
  return apiCall(m, 'dma_resv_get_singleton', () =>
    dmaFenceArrayCreate(fences.length, fences, dmaFenceContextAlloc(m, 1), 1, false),
  );
}

/** `dma_resv_test_signaled()`: true when every fence of usage ≤ `usage` has signalled. */
export function dmaResvTestSignaled(obj: DmaResv, usage: number): boolean {
  assertResv(obj);
  checkUsage(usage);
  const m = obj.machine;
  return apiCall(m, 'dma_resv_test_signaled', () => {
    const pending = unsignalled(m, obj.state, usage);
    const first = pending[0];
    if (first !== undefined) noteFenceObserved(m, first, false);
    return first === undefined;
  });
}

/**
 * `dma_resv_wait_timeout()`: waits, running model time, for every fence of
 * usage ≤ `usage`. Returns the time left (at least 1), 0 on timeout, or a
 * negative errno; `timeout` is model ns or `MAX_SCHEDULE_TIMEOUT`.
 */
export function dmaResvWaitTimeout(obj: DmaResv, usage: number, intr: boolean, timeout: number): number {
  assertResv(obj);
  checkUsage(usage);
  if (!Number.isSafeInteger(timeout) || timeout < 0) {
    throw new DmalabError(
      `timeout must be a non-negative integer number of ns or MAX_SCHEDULE_TIMEOUT, got ${timeout}`,
    );
  }
  void intr;
  const m = obj.machine;
  return apiCall(m, 'dma_resv_wait_timeout', () => {
    let ret = timeout === 0 ? 1 : timeout;
    for (const f of unsignalled(m, obj.state, usage)) {
      ret = waitModelTime(m, () => fenceIsSignaled(m, f), ret, `fence ${f.context}:${f.seqno}`);
      noteFenceObserved(m, f, ret > 0);
      if (ret <= 0) break;
    }
    return ret;
  });
}

/** `dma_resv_copy_fences()`: `dst` gets `src`'s unsignalled fences, usages kept (dst's lock held). Returns 0. */
export function dmaResvCopyFences(dst: DmaResv, src: DmaResv): number {
  assertResv(dst);
  assertResv(src);
  const m = dst.machine;
  return apiCall(m, 'dma_resv_copy_fences', () => {
    const d = dst.state;
    assertHeld(m, d, 'dma_resv_copy_fences');
    const s = fenceState(m);
    const copied = [];
    for (const slot of src.state.fences) {
      const f = s.fences.get(slot.fence)!;
      if (fenceIsSignaled(m, f)) continue;
      f.refs++;
      copied.push({ fence: f.id, usage: slot.usage });
    }
    for (const slot of d.fences) putFence(m, s.fences.get(slot.fence)!);
    d.fences = copied;
    d.max = Math.max(d.max, copied.length);
    return 0;
  });
}

/** A usage's kernel name (`DMA_RESV_USAGE_WRITE` → "WRITE"), for messages. */
export function dmaResvUsageName(usage: number): string {
  return USAGE_NAMES[usage] ?? String(usage);
}
