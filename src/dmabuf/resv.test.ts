import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { EINVAL, machineFindings } from '../machine/index.js';
import {
  DMA_RESV_USAGE_BOOKKEEP,
  DMA_RESV_USAGE_KERNEL,
  DMA_RESV_USAGE_READ,
  DMA_RESV_USAGE_WRITE,
  type DmaFenceOps,
  type DmaResv,
  dmaFenceContextAlloc,
  dmaFenceInit,
  dmaFenceIsSignaled,
  dmaFenceSignal,
  dmaFenceUnwrapForEach,
  dmaResvAddFence,
  dmaResvAssertHeld,
  dmaResvCopyFences,
  dmaResvFini,
  dmaResvForEachFence,
  dmaResvGetFences,
  dmaResvGetSingleton,
  dmaResvInit,
  dmaResvIsLocked,
  dmaResvLock,
  dmaResvReplaceFences,
  dmaResvReserveFences,
  dmaResvTestSignaled,
  dmaResvTrylock,
  dmaResvUnlock,
  dmaResvUsageRw,
  dmaResvWaitTimeout,
  EALREADY,
  EDEADLK,
  wwAcquireFini,
  wwAcquireInit,
} from './index.js';

const OPS: DmaFenceOps = { getDriverName: () => 'test', getTimelineName: () => 'tl' };

function setup() {
  const m = createMachine({ ramBytes: 16 << 20 });
  const ctx = dmaFenceContextAlloc(m, 4);
  const resv = dmaResvInit(m);
  return { m, ctx, resv };
}

function usages(resv: DmaResv) {
  return dmaResvForEachFence(resv, DMA_RESV_USAGE_BOOKKEEP).map((e) => [
    e.fence.context,
    e.fence.seqno,
    e.usage,
  ]);
}

describe('dma_resv', () => {
  it('orders the usage classes and picks the wait class for readers and writers', () => {
    expect([
      DMA_RESV_USAGE_KERNEL,
      DMA_RESV_USAGE_WRITE,
      DMA_RESV_USAGE_READ,
      DMA_RESV_USAGE_BOOKKEEP,
    ]).toEqual([0, 1, 2, 3]);
    expect(dmaResvUsageRw(true)).toBe(DMA_RESV_USAGE_READ);
    expect(dmaResvUsageRw(false)).toBe(DMA_RESV_USAGE_WRITE);
  });

  it('a later fence of a context replaces the earlier one and may move to a stronger class, never a weaker', () => {
    const { m, ctx, resv } = setup();
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 4);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx, 1), DMA_RESV_USAGE_READ);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx, 2), DMA_RESV_USAGE_WRITE);
    expect(usages(resv)).toEqual([[ctx, 2, DMA_RESV_USAGE_WRITE]]);
    // Weaker: appended, the WRITE slot stays.
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx, 3), DMA_RESV_USAGE_BOOKKEEP);
    expect(usages(resv)).toEqual([
      [ctx, 2, DMA_RESV_USAGE_WRITE],
      [ctx, 3, DMA_RESV_USAGE_BOOKKEEP],
    ]);
    // An earlier seqno does not replace a later one.
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx + 1, 5), DMA_RESV_USAGE_READ);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx + 1, 4), DMA_RESV_USAGE_READ);
    expect(usages(resv)).toHaveLength(4);
    // A query of usage U sees every fence of usage <= U.
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_WRITE).map((f) => f.seqno)).toEqual([2]);
    expect(dmaResvGetFences(resv, DMA_RESV_USAGE_READ).map((f) => f.seqno)).toEqual([2, 5, 4]);
    dmaResvUnlock(resv);
    expect(machineFindings(m)).toHaveLength(0);
  });

  it('reserving no fence is a WARN and -EINVAL (a miscounting caller)', () => {
    const { m, resv } = setup();
    dmaResvLock(resv, null);
    expect(dmaResvReserveFences(resv, 0)).toBe(-EINVAL);
    expect(machineFindings(m).map((f) => [f.code, f.message])).toEqual([
      ['WARN', 'dma_resv_reserve_fences: num_fences is 0'],
    ]);
    expect(dmaResvReserveFences(resv, 1)).toBe(0);
    dmaResvUnlock(resv);
  });

  it('a signalled fence’s slot is reused', () => {
    const { m, ctx, resv } = setup();
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 1);
    const a = dmaFenceInit(m, OPS, ctx, 1);
    dmaResvAddFence(resv, a, DMA_RESV_USAGE_WRITE);
    dmaFenceSignal(a);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx + 1, 1), DMA_RESV_USAGE_READ);
    expect(usages(resv)).toEqual([[ctx + 1, 1, DMA_RESV_USAGE_READ]]);
    dmaResvUnlock(resv);
    expect(machineFindings(m)).toHaveLength(0);
  });

  it('adding without a reserved slot is a BUG; reservations end at unlock', () => {
    const { m, ctx, resv } = setup();
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 1);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx, 1), DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(resv);
    dmaResvLock(resv, null);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx + 1, 1), DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(resv);
    const f = machineFindings(m);
    expect(f.map((x) => [x.code, x.verdict])).toEqual([['BUG', 'broken']]);
    expect(f[0]!.message).toMatch(/no reserved slot for fence 2:1 .*\(1 of 1 used/);
    expect(usages(resv)).toHaveLength(1);
  });

  it('lockdep: adding or asserting without the lock WARNs; unlock without lock WARNs', () => {
    const { m, ctx, resv } = setup();
    dmaResvAssertHeld(resv);
    dmaResvAddFence(resv, dmaFenceInit(m, OPS, ctx, 1), DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(resv);
    expect(machineFindings(m).map((x) => x.message)).toEqual([
      `dma_resv_assert_held: dma_resv ${resv.id} is not locked (lockdep_assert_held fails)`,
      `dma_resv_add_fence: dma_resv ${resv.id} is not locked (lockdep_assert_held fails)`,
      expect.stringMatching(/kernel BUG in dma_resv_add_fence/),
      `bad unlock balance detected: dma_resv ${resv.id} is not locked`,
    ]);
  });

  it('ww locking: -EALREADY for the holder, -EDEADLK for others, trylock', () => {
    const { m, resv } = setup();
    const t1 = wwAcquireInit(m);
    const t2 = wwAcquireInit(m);
    expect(dmaResvLock(resv, t1)).toBe(0);
    expect(dmaResvLock(resv, t1)).toBe(-EALREADY);
    expect(dmaResvLock(resv, t2)).toBe(-EDEADLK);
    expect(dmaResvTrylock(resv)).toBe(false);
    expect(machineFindings(m)).toHaveLength(0);
    wwAcquireFini(t1);
    expect(machineFindings(m).map((x) => x.message)).toEqual([
      'ww_acquire_fini: 1 lock(s) still held by the context',
    ]);
    dmaResvUnlock(resv);
    expect(dmaResvIsLocked(resv)).toBe(false);
    // The unlock took no context, yet the context no longer counts the lock (the ww_mutex knew its holder).
    expect(t1.acquired).toBe(0);
    wwAcquireFini(t1);
    expect(machineFindings(m)).toHaveLength(1);
    expect(dmaResvTrylock(resv)).toBe(true);
    expect(dmaResvLock(resv, null)).toBe(-EDEADLK);
    expect(machineFindings(m).at(-1)!.message).toMatch(/possible recursive locking detected/);
  });

  it('test_signaled, get_singleton and wait_timeout cover usage ≤ U', () => {
    const { m, ctx, resv } = setup();
    const w = dmaFenceInit(m, OPS, ctx, 1);
    const r = dmaFenceInit(m, OPS, ctx + 1, 1);
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 2);
    dmaResvAddFence(resv, w, DMA_RESV_USAGE_WRITE);
    dmaResvAddFence(resv, r, DMA_RESV_USAGE_READ);
    dmaResvUnlock(resv);
    expect(dmaResvGetSingleton(resv, DMA_RESV_USAGE_KERNEL)).toBeNull();
    expect(dmaResvGetSingleton(resv, DMA_RESV_USAGE_WRITE)).toBe(w);
    const both = dmaResvGetSingleton(resv, DMA_RESV_USAGE_READ)!;
    expect(dmaFenceUnwrapForEach(both)).toEqual([w, r]);
    dmaFenceSignal(w);
    expect(dmaResvTestSignaled(resv, DMA_RESV_USAGE_WRITE)).toBe(true);
    expect(dmaResvTestSignaled(resv, DMA_RESV_USAGE_READ)).toBe(false);
    expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_WRITE, true, 100)).toBe(100);
    expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_READ, true, 100)).toBe(0);
    expect(m.clock.time).toBe(100);
    dmaFenceSignal(r);
    expect(dmaFenceIsSignaled(both)).toBe(true);
    expect(dmaResvWaitTimeout(resv, DMA_RESV_USAGE_BOOKKEEP, true, 0)).toBe(1);
  });

  it('replace_fences and copy_fences; fini drops the references', () => {
    const { m, ctx, resv } = setup();
    const a = dmaFenceInit(m, OPS, ctx, 1);
    const b = dmaFenceInit(m, OPS, ctx + 1, 1);
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 2);
    dmaResvAddFence(resv, a, DMA_RESV_USAGE_READ);
    dmaResvAddFence(resv, b, DMA_RESV_USAGE_READ);
    const c = dmaFenceInit(m, OPS, ctx + 2, 1);
    dmaResvReplaceFences(resv, ctx, c, DMA_RESV_USAGE_BOOKKEEP);
    expect(usages(resv)).toEqual([
      [ctx + 2, 1, DMA_RESV_USAGE_BOOKKEEP],
      [ctx + 1, 1, DMA_RESV_USAGE_READ],
    ]);
    expect(a.refcount).toBe(1);
    const dst = dmaResvInit(m);
    dmaResvLock(dst, null);
    expect(dmaResvCopyFences(dst, resv)).toBe(0);
    expect(usages(dst)).toEqual(usages(resv));
    expect(b.refcount).toBe(3);
    dmaResvUnlock(dst);
    dmaResvFini(dst);
    expect(b.refcount).toBe(2);
    dmaResvUnlock(resv);
    expect(machineFindings(m)).toHaveLength(0);
  });
});
