import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  EINVAL,
  EIO,
  ENOENT,
  type Machine,
  machineFindings,
  machineHash,
  registerJobHandler,
  restoreMachine,
  snapshotMachine,
  submitDeviceJob,
} from '../machine/index.js';
import { tableById } from '../mm/index.js';
import {
  DMA_FENCE_SIGNAL_JOB,
  type DmaFence,
  type DmaFenceOps,
  dmaFenceAddCallback,
  dmaFenceArrayCreate,
  dmaFenceCheckAndSignal,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceGetStub,
  dmaFenceInit,
  dmaFenceInit64,
  dmaFenceIsLater,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceSignalTimestamp,
  dmaFenceUnwrapForEach,
  dmaFenceUnwrapMerge,
  dmaFenceWait,
  dmaFenceWaitAnyTimeout,
  dmaFenceWaitTimeout,
  ERESTARTSYS,
  MAX_SCHEDULE_TIMEOUT,
  registerDmaFenceFunc,
} from './index.js';

const OPS: DmaFenceOps = { getDriverName: () => 'test', getTimelineName: () => 'tl' };

const calls: string[] = [];
registerDmaFenceFunc('test:record', (f, data) => calls.push(`${String(f)} ${JSON.stringify(data)}`));
registerJobHandler('test:signal-fence', (m, _job, arg) => {
  dmaFenceSignal(fenceById(m, (arg as { fence: number }).fence));
});

// A periodic device: each tick queues the next one.
registerJobHandler('test:tick', (m) => {
  submitDeviceJob(m.devices[0]!, { kind: 'idle' }, 1e9, { handler: 'test:tick' });
});

const byId = new Map<number, DmaFence>();
function fenceById(_m: Machine, id: number): DmaFence {
  return byId.get(id)!;
}

function setup() {
  const m = createMachine({ ramBytes: 16 << 20 });
  const ctx = dmaFenceContextAlloc(m, 2);
  return { m, ctx };
}

describe('dma_fence', () => {
  it('allocates contexts from 1 upwards and signals once, with a model-time timestamp', () => {
    const { m, ctx } = setup();
    expect(ctx).toBe(1);
    expect(dmaFenceContextAlloc(m, 1)).toBe(3);
    const f = dmaFenceInit(m, OPS, ctx, 7);
    expect([f.context, f.seqno, f.refcount, f.timestamp]).toEqual([1, 7, 1, -1]);
    expect(dmaFenceIsSignaled(f)).toBe(false);
    expect(dmaFenceGetStatus(f)).toBe(0);
    m.clock.time = 1234;
    dmaFenceSignal(f);
    expect(f.timestamp).toBe(1234);
    m.clock.time = 2000;
    dmaFenceSignal(f);
    expect(f.timestamp).toBe(1234);
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(dmaFenceGetStatus(f)).toBe(1);
    const g = dmaFenceInit(m, OPS, ctx, 8);
    dmaFenceSignalTimestamp(g, 99);
    expect(g.timestamp).toBe(99);
  });

  it('signalling returns nothing, as in mainline since 88e721ab978a; dma_fence_check_and_signal says whether it had signalled', () => {
    const { m, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 1);
    // The kernel's dma_fence_signal*() are void now: no 0 / -EINVAL to test.
    expect(dmaFenceSignal(f) as unknown).toBeUndefined();
    expect(dmaFenceSignal(f) as unknown).toBeUndefined();
    expect(dmaFenceSignalTimestamp(dmaFenceInit(m, OPS, ctx, 2), 5) as unknown).toBeUndefined();
    const g = dmaFenceInit(m, OPS, ctx, 3);
    m.clock.time = 77;
    expect(dmaFenceCheckAndSignal(g)).toBe(false);
    expect([dmaFenceIsSignaled(g), g.timestamp]).toEqual([true, 77]);
    m.clock.time = 88;
    expect(dmaFenceCheckAndSignal(g)).toBe(true);
    expect(g.timestamp).toBe(77);
  });

  it('reports an error set before the signal and WARNs on a late or bogus one', () => {
    const { m, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 1);
    dmaFenceSetError(f, -5);
    dmaFenceSignal(f);
    expect(dmaFenceGetStatus(f)).toBe(-5);
    expect(machineFindings(m)).toHaveLength(0);
    dmaFenceSetError(f, -6);
    const g = dmaFenceInit(m, OPS, ctx, 2);
    dmaFenceSetError(g, 3);
    expect(machineFindings(m).map((x) => [x.code, x.message])).toEqual([
      ['WARN', 'dma_fence_set_error(-6) on fence 1:1 after it signalled'],
      ['WARN', 'dma_fence_set_error(3) on fence 1:2: not a negative errno'],
    ]);
  });

  it('runs callbacks once in the order added; removed ones and late ones do not run', () => {
    const { m, ctx } = setup();
    calls.length = 0;
    const f = dmaFenceInit(m, OPS, ctx, 1);
    const a = dmaFenceAddCallback(f, 'test:record', { n: 1 });
    const b = dmaFenceAddCallback(f, 'test:record', { n: 2 });
    const c = dmaFenceAddCallback(f, 'test:record', { n: 3 });
    expect(a).toBeGreaterThan(0);
    expect(dmaFenceRemoveCallback(f, b)).toBe(true);
    expect(dmaFenceRemoveCallback(f, b)).toBe(false);
    dmaFenceSignal(f);
    dmaFenceSignal(f);
    expect(calls).toEqual(['fence 1:1 {"n":1}', 'fence 1:1 {"n":3}']);
    expect(dmaFenceAddCallback(f, 'test:record', { n: 4 })).toBe(-ENOENT);
    expect(dmaFenceRemoveCallback(f, c)).toBe(false);
    expect(calls).toHaveLength(2);
    expect(() => dmaFenceAddCallback(f, 'nope')).toThrow(/unknown fence callback 'nope'/);
    expect(() => dmaFenceAddCallback(dmaFenceInit(m, OPS, ctx, 2), 'test:record', { f })).toThrow(
      /plain data/,
    );
  });

  it('asks enable_signaling once and polls signaled', () => {
    const { m, ctx } = setup();
    let enabled = 0;
    let done = false;
    const ops: DmaFenceOps = {
      ...OPS,
      enableSignaling: () => {
        enabled++;
        return true;
      },
      signaled: () => done,
    };
    const f = dmaFenceInit(m, ops, ctx, 1);
    dmaFenceAddCallback(f, 'test:record', null);
    dmaFenceAddCallback(f, 'test:record', null);
    expect(enabled).toBe(1);
    expect(dmaFenceIsSignaled(f)).toBe(false);
    done = true;
    expect(dmaFenceIsSignaled(f)).toBe(true);
    expect(f.timestamp).toBe(m.clock.time);
    // enable_signaling returning false means: already signalled.
    const g = dmaFenceInit(m, { ...OPS, enableSignaling: () => false }, ctx, 2);
    expect(dmaFenceAddCallback(g, 'test:record', null)).toBe(-ENOENT);
    expect(dmaFenceIsSignaled(g)).toBe(true);
  });

  it('counts references, releases at zero, and WARNs when a fence with waiters is released unsignalled', () => {
    const { m, ctx } = setup();
    let released = 0;
    const ops: DmaFenceOps = { ...OPS, release: () => void released++ };
    const f = dmaFenceInit(m, ops, ctx, 1);
    dmaFenceGet(f);
    expect(f.refcount).toBe(2);
    dmaFencePut(f);
    expect(released).toBe(0);
    dmaFencePut(f);
    expect(released).toBe(1);
    expect(() => f.seqno).toThrow(/used after its last reference/);
    calls.length = 0;
    const g = dmaFenceInit(m, ops, ctx, 2);
    dmaFenceAddCallback(g, 'test:record', 'x');
    dmaFencePut(g);
    expect(calls).toEqual(['fence 1:2 "x"']);
    expect(machineFindings(m).map((x) => x.message)).toEqual([
      'Fence test:tl:1:2 released with pending signals!',
    ]);
  });

  it('compares seqnos with 32-bit wrap, or 64-bit when asked, and WARNs across contexts', () => {
    const { m, ctx } = setup();
    const a = dmaFenceInit(m, OPS, ctx, 2 ** 32 - 1);
    const b = dmaFenceInit(m, OPS, ctx, 2 ** 32 + 1);
    expect(dmaFenceIsLater(b, a)).toBe(true);
    const c = dmaFenceInit(m, OPS, ctx, 1);
    const d = dmaFenceInit(m, OPS, ctx, 0x9000_0000);
    // 32-bit: 0x90000000 - 1 wraps negative, so 1 looks later.
    expect(dmaFenceIsLater(c, d)).toBe(true);
    const c64 = dmaFenceInit64(m, OPS, ctx, 1);
    const d64 = dmaFenceInit64(m, OPS, ctx, 0x9000_0000);
    expect(dmaFenceIsLater(d64, c64)).toBe(true);
    expect(dmaFenceIsLater(c64, d64)).toBe(false);
    expect(dmaFenceIsLater(a, dmaFenceInit(m, OPS, ctx + 1, 5))).toBe(false);
    expect(machineFindings(m).map((x) => x.code)).toEqual(['WARN']);
  });
});

describe('waiting runs model time', () => {
  it('returns once a device job signals the fence, with the time left', () => {
    const { m, ctx } = setup();
    const dev = addDevice(m, { name: 'gpu' });
    const f = dmaFenceInit(m, OPS, ctx, 1);
    byId.set(f.id, f);
    submitDeviceJob(dev, { kind: 'idle' }, 5000, { handler: 'test:signal-fence', arg: { fence: f.id } });
    expect(dmaFenceWaitTimeout(f, true, 1000)).toBe(0);
    expect(m.clock.time).toBe(1000);
    expect(dmaFenceWaitTimeout(f, true, 10_000)).toBe(6000);
    expect(m.clock.time).toBe(5000);
    expect(f.timestamp).toBe(5000);
    expect(dmaFenceWaitTimeout(f, false, 0)).toBe(1);
    expect(dmaFenceWait(f, true)).toBe(0);
  });

  it('a wait nothing can end is a hung task, not a hang', () => {
    const { m, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 1);
    expect(dmaFenceWaitTimeout(f, false, 0)).toBe(0);
    expect(dmaFenceWait(f, true)).toBe(-ERESTARTSYS);
    expect(m.clock.time).toBe(120e9);
    const found = machineFindings(m);
    expect(found.map((x) => [x.code, x.verdict])).toEqual([['HUNG_TASK', 'broken']]);
    expect(found[0]!.message).toBe(
      'INFO: task kernel blocked for more than 120 seconds: waiting on fence 1:1, which nothing pending on any device engine can signal',
    );
    expect(dmaFenceWaitTimeout(f, true, MAX_SCHEDULE_TIMEOUT)).toBe(-ERESTARTSYS);
  });

  it('a raw engine job signals a fence through DMA_FENCE_SIGNAL_JOB, with -EIO when its access failed', () => {
    const { m, ctx } = setup();
    const dev = addDevice(m, { name: 'gpu' });
    const ok = dmaFenceInit(m, OPS, ctx, 1);
    const bad = dmaFenceInit(m, OPS, ctx, 2);
    submitDeviceJob(dev, { kind: 'idle' }, 100, { handler: DMA_FENCE_SIGNAL_JOB, arg: { fence: ok.id } });
    submitDeviceJob(dev, { kind: 'dma-read', bus: 2 ** 40, len: 4 }, 100, {
      handler: DMA_FENCE_SIGNAL_JOB,
      arg: { fence: bad.id },
    });
    expect(dmaFenceWait(bad, true)).toBe(0);
    expect([ok.timestamp, dmaFenceGetStatus(ok), bad.timestamp, dmaFenceGetStatus(bad)]).toEqual([
      100,
      1,
      200,
      -EIO,
    ]);
  });

  it('a device that keeps working does not keep a wait forever', () => {
    const { m, ctx } = setup();
    const dev = addDevice(m, { name: 'timer' });
    submitDeviceJob(dev, { kind: 'idle' }, 1e9, { handler: 'test:tick' });
    const f = dmaFenceInit(m, OPS, ctx, 1);
    expect(dmaFenceWait(f, false)).toBe(-ERESTARTSYS);
    expect(m.clock.time).toBe(120e9);
    expect(machineFindings(m).map((x) => x.message)).toEqual([
      'INFO: task kernel blocked for more than 120 seconds: waiting on fence 1:1, still unsignalled while device work goes on',
    ]);
  });

  it('wait_any returns the first fence to signal, or times out', () => {
    const { m, ctx } = setup();
    const dev = addDevice(m, { name: 'gpu' });
    const a = dmaFenceInit(m, OPS, ctx, 1);
    const b = dmaFenceInit(m, OPS, ctx, 2);
    expect(dmaFenceWaitAnyTimeout([a, b], 2, true, 0)).toEqual({ ret: 0, idx: -1 });
    submitDeviceJob(dev, { kind: 'idle' }, 700, { handler: DMA_FENCE_SIGNAL_JOB, arg: { fence: b.id } });
    expect(dmaFenceWaitAnyTimeout([a, b], 2, true, 500)).toEqual({ ret: 0, idx: -1 });
    expect(dmaFenceWaitAnyTimeout([a, b], 2, true, 1000)).toEqual({ ret: 800, idx: 1 });
    expect(m.clock.time).toBe(700);
    expect(dmaFenceWaitAnyTimeout([a, b], 2, true, 0)).toEqual({ ret: 1, idx: 1 });
    expect(dmaFenceWaitAnyTimeout([a, b], 0, true, 10)).toEqual({ ret: -EINVAL, idx: -1 });
    expect(machineFindings(m).map((x) => x.code)).toEqual(['WARN']);
  });

  it('rejects a non-integer timeout and WARNs on a negative one', () => {
    const { m, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 1);
    expect(() => dmaFenceWaitTimeout(f, true, 1.5)).toThrow(/timeout must be an integer/);
    expect(dmaFenceWaitTimeout(f, true, -1)).toBe(-EINVAL);
    expect(machineFindings(m).map((x) => x.code)).toEqual(['WARN']);
  });
});

describe('containers', () => {
  it('an array signals when all components have, with the first error', () => {
    const { m, ctx } = setup();
    const a = dmaFenceInit(m, OPS, ctx, 1);
    const b = dmaFenceInit(m, OPS, ctx + 1, 1);
    const arr = dmaFenceArrayCreate(2, [a, b], dmaFenceContextAlloc(m, 1), 1, false);
    dmaFenceSetError(b, -5);
    dmaFenceSignal(b);
    expect(dmaFenceIsSignaled(arr)).toBe(false);
    dmaFenceSignal(a);
    expect(dmaFenceGetStatus(arr)).toBe(-5);
    expect(dmaFenceUnwrapForEach(arr)).toEqual([a, b]);
    const c = dmaFenceInit(m, OPS, ctx, 2);
    const d = dmaFenceInit(m, OPS, ctx + 1, 2);
    const any = dmaFenceArrayCreate(2, [c, d], dmaFenceContextAlloc(m, 1), 1, true);
    dmaFenceSignal(d);
    expect(dmaFenceIsSignaled(any)).toBe(true);
  });

  it('merge flattens, drops signalled fences, keeps the latest per context', () => {
    const { m, ctx } = setup();
    const a1 = dmaFenceInit(m, OPS, ctx, 1);
    const a2 = dmaFenceInit(m, OPS, ctx, 2);
    const b = dmaFenceInit(m, OPS, ctx + 1, 1);
    const done = dmaFenceInit(m, OPS, ctx + 1, 0);
    m.clock.time = 30;
    dmaFenceSignal(done);
    expect(dmaFenceUnwrapMerge(a1)).toBe(a1);
    const merged = dmaFenceUnwrapMerge(a1, b, a2, done);
    expect(dmaFenceUnwrapForEach(merged)).toEqual([a2, b]);
    m.clock.time = 50;
    const stub = dmaFenceUnwrapMerge(done);
    // dma_fence_allocate_private_stub(): signalled, at the latest timestamp merged, named "stub".
    expect([dmaFenceIsSignaled(stub), stub.timestamp]).toEqual([true, 30]);
    const ops = tableById<DmaFenceOps>(stub.state.ops);
    expect([ops.getDriverName(stub), ops.getTimelineName(stub)]).toEqual(['stub', 'stub']);
    expect(dmaFenceIsSignaled(dmaFenceGetStub(m))).toBe(true);
  });
});

describe('fence state is machine state', () => {
  it('snapshot, hash and restore cover fences', () => {
    const { m, ctx } = setup();
    const f = dmaFenceInit(m, OPS, ctx, 1);
    const snap = snapshotMachine(m);
    const h0 = machineHash(m);
    dmaFenceSignal(f);
    expect(machineHash(m)).not.toBe(h0);
    restoreMachine(m, snap);
    expect(machineHash(m)).toBe(h0);
    expect(dmaFenceIsSignaled(f)).toBe(false);
  });
});
