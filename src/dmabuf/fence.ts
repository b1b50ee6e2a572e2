/**
 * `dma_fence` (drivers/dma-buf/dma-fence.c, include/linux/dma-fence.h): a
 * one-way completion flag with a context and a sequence number, callbacks
 * run once at the signal, timestamps in model time, errors set before the
 * signal, and reference counting.
 *
 * Waiting is synchronous: a wait runs model time — the device engines —
 * until the fence signals. A wait without timeout that is still blocked
 * after khungtaskd's 120 s of model time (at once when nothing pending can
 * signal the fence) is the kernel's hung task: a `HUNG_TASK` finding, then
 * the wait returns -ERESTARTSYS so that the run goes on (the kernel's task
 * would stay blocked until killed).
 *
 * Callback functions are registered once by name (`registerDmaFenceFunc`);
 * state keeps the name and plain data, never a closure.
 */

import {
  apiCall,
  DmalabError,
  EINVAL,
  EIO,
  ENOENT,
  type Machine,
  pendingJobs,
  registerFindingCode,
  registerJobHandler,
  reportFinding,
  runningJob,
  runUntil,
  WARN,
} from '../machine/index.js';
import { assertPlainData, tableById, tableId } from '../mm/index.js';
import {
  assertFence,
  DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
  DMA_FENCE_FLAG_SEQNO64_BIT,
  DMA_FENCE_FLAG_SIGNALED_BIT,
  DMA_FENCE_FLAG_TIMESTAMP_BIT,
  type DmaFence,
  EDEADLK,
  ERESTARTSYS,
  type FenceRec,
  fenceHandle,
  fenceState,
  MAX_ERRNO,
  nextFenceId,
} from './fence-state.js';

/**
 * `struct dma_fence_ops`: the callbacks dmalab runs. `getDriverName` and
 * `getTimelineName` are mandatory; `enableSignaling` returning false means
 * the fence has already signalled; `signaled` lets a fence be polled;
 * `release` runs when the last reference goes.
 */
export interface DmaFenceOps {
  getDriverName(fence: DmaFence): string;
  getTimelineName(fence: DmaFence): string;
  enableSignaling?(fence: DmaFence): boolean;
  signaled?(fence: DmaFence): boolean;
  release?(fence: DmaFence): void;
}

const OPS_MEMBERS = ['getDriverName', 'getTimelineName', 'enableSignaling', 'signaled', 'release'];

/** `MAX_SCHEDULE_TIMEOUT`: wait without a timeout. */
export const MAX_SCHEDULE_TIMEOUT = Number.MAX_SAFE_INTEGER;

/** khungtaskd's default `hung_task_timeout_secs`, in model nanoseconds. */
const HUNG_TASK_TIMEOUT_NS = 120e9;

/** A wait without timeout still blocked after 120 s of model time (the kernel's hung task). */
export const HUNG_TASK = registerFindingCode({
  code: 'HUNG_TASK',
  severity: 'error',
  verdict: 'broken',
  title: 'a task waits on a fence that does not signal within 120 s of model time: it would hang',
  layer: 'dmabuf',
});

/** A fence callback function (`dma_fence_func_t`), with the plain data given at registration. */
export type DmaFenceFunc = (fence: DmaFence, data: unknown) => void;

const funcs = new Map<string, DmaFenceFunc>();

/** Registers a fence callback function by name (module load time, once per process). */
export function registerDmaFenceFunc(name: string, fn: DmaFenceFunc): void {
  const prev = funcs.get(name);
  if (prev !== undefined && prev !== fn) throw new DmalabError(`fence callback '${name}' registered twice`);
  funcs.set(name, fn);
}

function opsOf(f: FenceRec): DmaFenceOps {
  return tableById<DmaFenceOps>(f.ops);
}

const bit = (b: number) => 1 << b;

/** True when the fence's SIGNALED bit is set (`test_bit`), without polling the ops. */
export function fenceSignaledBit(f: FenceRec): boolean {
  return (f.flags & bit(DMA_FENCE_FLAG_SIGNALED_BIT)) !== 0;
}

/** `dma_fence_context_alloc()`: `num` consecutive contexts; returns the first. */
export function dmaFenceContextAlloc(m: Machine, num: number): number {
  return apiCall(m, 'dma_fence_context_alloc', () => {
    if (!Number.isInteger(num) || num < 0) {
      throw new DmalabError(`dma_fence_context_alloc: num must be a non-negative integer, got ${num}`);
    }
    if (num === 0) reportFinding(m, WARN.code, 'dma_fence_context_alloc(0): no context asked for');
    const s = fenceState(m);
    const first = s.nextContext;
    s.nextContext += num;
    return first;
  });
}

/** Creates a fence record (the shared part of dma_fence_init and the containers). */
export function newFence(
  m: Machine,
  ops: DmaFenceOps,
  context: number,
  seqno: number,
  flags: number,
  components: number[] | null,
): DmaFence {
  const opsId = tableId(ops, 'dma_fence_ops', OPS_MEMBERS);
  if (typeof ops.getDriverName !== 'function' || typeof ops.getTimelineName !== 'function') {
    throw new DmalabError(
      'dma_fence_ops must have getDriverName and getTimelineName (dma_fence_init BUGs without)',
      {
        field: 'ops',
      },
    );
  }
  for (const [v, n] of [
    [context, 'context'],
    [seqno, 'seqno'],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new DmalabError(`${n} must be a non-negative integer, got ${v}`);
  }
  const s = fenceState(m);
  const id = nextFenceId(s);
  s.fences.set(id, {
    id,
    context,
    seqno,
    ops: opsId,
    flags,
    error: 0,
    timestamp: -1,
    refs: 1,
    cbs: [],
    components,
    signalOnAny: false,
    pending: components?.length ?? 0,
  });
  const h = fenceHandle(m, id);
  if (m.bus.wants['fence-init']) {
    m.bus.emit({
      type: 'fence-init',
      fence: id,
      context,
      seqno,
      driver: ops.getDriverName(h),
      timeline: ops.getTimelineName(h),
      components: components === null ? null : components.slice(),
    });
  }
  return h;
}

/**
 * `dma_fence_init()`: a new unsignalled fence on `context` with `seqno`,
 * holding one reference. The kernel's caller-allocated fence is returned,
 * and its spinlock argument has no model counterpart. Fences of a context
 * compare with a wrapping 32-bit seqno (`dmaFenceInit64` for 64-bit).
 */
export function dmaFenceInit(m: Machine, ops: DmaFenceOps, context: number, seqno: number): DmaFence {
  return apiCall(m, 'dma_fence_init', () => newFence(m, ops, context, seqno, 0, null));
}

/** `dma_fence_init64()`: as `dmaFenceInit`, with 64-bit seqno comparison. */
export function dmaFenceInit64(m: Machine, ops: DmaFenceOps, context: number, seqno: number): DmaFence {
  return apiCall(m, 'dma_fence_init64', () =>
    newFence(m, ops, context, seqno, bit(DMA_FENCE_FLAG_SEQNO64_BIT), null),
  );
}

/** Signals a fence record at `timestamp` (dma_fence_signal_timestamp_locked); a no-op once signalled. */
export function signalFence(m: Machine, f: FenceRec, timestamp: number): void {
  if (fenceSignaledBit(f)) return;
  f.flags |= bit(DMA_FENCE_FLAG_SIGNALED_BIT) | bit(DMA_FENCE_FLAG_TIMESTAMP_BIT);
  f.timestamp = timestamp;
  if (m.bus.wants['fence-signal']) {
    const job = runningJob(m);
    const agent = job === undefined ? m.agent : m.devices[job.device]!.name;
    m.bus.emit({
      type: 'fence-signal',
      fence: f.id,
      context: f.context,
      seqno: f.seqno,
      error: f.error,
      agent,
      byDevice: job !== undefined,
    });
  }
  // Callbacks run once, in the order they were added; the list is emptied first.
  const cbs = f.cbs;
  f.cbs = [];
  const h = fenceHandle(m, f.id);
  for (const cb of cbs) {
    if (m.bus.wants['fence-callback']) m.bus.emit({ type: 'fence-callback', fence: f.id, func: cb.func });
    funcs.get(cb.func)!(h, cb.data);
  }
}

/**
 * `dma_fence_signal()`: signals the fence at model time and runs its
 * callbacks; signalling it again does nothing. Returns nothing, as in
 * mainline since commit 88e721ab978a ("dma-buf/dma-fence: Remove return
 * code of signaling-functions", the merge window after v6.19): the old
 * 0 / -EINVAL answer was racy. A caller that must know whether the
 * fence had already signalled uses `dmaFenceCheckAndSignal`.
 */
export function dmaFenceSignal(fence: DmaFence): void {
  assertFence(fence);
  const m = fence.machine;
  apiCall(m, 'dma_fence_signal', () => signalFence(m, fence.state, m.clock.time));
}

/** `dma_fence_signal_timestamp()`: as `dmaFenceSignal`, with a given timestamp (model ns); returns nothing. */
export function dmaFenceSignalTimestamp(fence: DmaFence, timestamp: number): void {
  assertFence(fence);
  if (!Number.isFinite(timestamp))
    throw new DmalabError(`timestamp must be a number of ns, got ${timestamp}`);
  const m = fence.machine;
  apiCall(m, 'dma_fence_signal_timestamp', () => signalFence(m, fence.state, timestamp));
}

/**
 * `dma_fence_check_and_signal()`: signals the fence unless it already had
 * signalled, and says which: true when it had (only the SIGNALED bit is
 * tested, as `dma_fence_test_signaled_flag` does; the ops are not polled).
 * The kernel's replacement for the return value `dma_fence_signal` lost.
 */
export function dmaFenceCheckAndSignal(fence: DmaFence): boolean {
  assertFence(fence);
  const m = fence.machine;
  return apiCall(m, 'dma_fence_check_and_signal', () => {
    const f = fence.state;
    const was = fenceSignaledBit(f);
    signalFence(m, f, m.clock.time);
    return was;
  });
}

/** `dma_fence_is_signaled()` on a record: the bit, else the ops' `signaled` poll (which signals). */
export function fenceIsSignaled(m: Machine, f: FenceRec): boolean {
  if (fenceSignaledBit(f)) return true;
  const poll = opsOf(f).signaled;
  if (poll?.(fenceHandle(m, f.id))) {
    signalFence(m, f, m.clock.time);
    return true;
  }
  return false;
}

/** Emits the observation of a fence by the current CPU agent. */
export function noteFenceObserved(m: Machine, f: FenceRec, signaled: boolean): void {
  if (m.bus.wants['fence-wait']) m.bus.emit({ type: 'fence-wait', fence: f.id, agent: m.agent, signaled });
}

/**
 * `dma_fence_is_signaled()`: true once signalled; asks the fence's
 * `signaled` op otherwise (and signals it when that says yes). A true
 * answer orders what the caller does next after the signal.
 */
export function dmaFenceIsSignaled(fence: DmaFence): boolean {
  assertFence(fence);
  const m = fence.machine;
  return apiCall(m, 'dma_fence_is_signaled', () => {
    const f = fence.state;
    const r = fenceIsSignaled(m, f);
    noteFenceObserved(m, f, r);
    return r;
  });
}

/** `dma_fence_get_status()`: 0 while unsignalled, 1 when signalled without error, else the error. */
export function dmaFenceGetStatus(fence: DmaFence): number {
  assertFence(fence);
  const m = fence.machine;
  return apiCall(m, 'dma_fence_get_status', () => {
    const f = fence.state;
    if (!fenceIsSignaled(m, f)) return 0;
    noteFenceObserved(m, f, true);
    return f.error !== 0 ? f.error : 1;
  });
}

/**
 * `dma_fence_set_error()`: records an error to report at the signal. WARNs
 * (and still sets it) when the fence already signalled or the value is not
 * an errno in -1 … -MAX_ERRNO.
 */
export function dmaFenceSetError(fence: DmaFence, error: number): void {
  assertFence(fence);
  const m = fence.machine;
  apiCall(m, 'dma_fence_set_error', () => {
    const f = fence.state;
    if (!Number.isInteger(error)) throw new DmalabError(`error must be an integer errno, got ${error}`);
    if (fenceSignaledBit(f)) {
      reportFinding(m, WARN.code, `dma_fence_set_error(${error}) on ${fence} after it signalled`);
    }
    if (error >= 0 || error < -MAX_ERRNO) {
      reportFinding(m, WARN.code, `dma_fence_set_error(${error}) on ${fence}: not a negative errno`);
    }
    f.error = error;
  });
}

/** Enables signalling once (`__dma_fence_enable_signaling`): false when the fence is (now) signalled. */
function enableSignaling(m: Machine, f: FenceRec): boolean {
  const was = (f.flags & bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)) !== 0;
  f.flags |= bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT);
  if (fenceSignaledBit(f)) return false;
  const en = opsOf(f).enableSignaling;
  if (!was && en !== undefined && !en(fenceHandle(m, f.id))) {
    signalFence(m, f, m.clock.time);
    return false;
  }
  return true;
}

/** `dma_fence_enable_sw_signaling()`: asks the fence's driver to signal it as soon as it can. */
export function dmaFenceEnableSwSignaling(fence: DmaFence): void {
  assertFence(fence);
  apiCall(fence.machine, 'dma_fence_enable_sw_signaling', () => {
    enableSignaling(fence.machine, fence.state);
  });
}

/** Adds a callback to a record; the cookie, or -ENOENT when it is (now) signalled. */
export function addFenceCallback(m: Machine, f: FenceRec, func: string, data: unknown): number {
  if (!funcs.has(func))
    throw new DmalabError(`unknown fence callback '${func}' (registerDmaFenceFunc first)`);
  assertPlainData(data, 'data');
  if (fenceSignaledBit(f) || !enableSignaling(m, f)) return -ENOENT;
  const id = nextFenceId(fenceState(m));
  f.cbs.push({ id, func, data });
  return id;
}

/**
 * `dma_fence_add_callback()`: runs the registered function `func` with
 * `data` when the fence signals. Returns a callback cookie (positive; the
 * kernel's caller-owned `struct dma_fence_cb`) for `dmaFenceRemoveCallback`,
 * or -ENOENT when the fence has already signalled (the callback is not run).
 */
export function dmaFenceAddCallback(fence: DmaFence, func: string, data: unknown = null): number {
  assertFence(fence);
  const m = fence.machine;
  return apiCall(m, 'dma_fence_add_callback', () => addFenceCallback(m, fence.state, func, data));
}

/** `dma_fence_remove_callback()`: true when the callback was still pending and is now removed. */
export function dmaFenceRemoveCallback(fence: DmaFence, cb: number): boolean {
  assertFence(fence);
  return apiCall(fence.machine, 'dma_fence_remove_callback', () => {
    const f = fence.state;
    const i = f.cbs.findIndex((c) => c.id === cb);
    if (i < 0) return false;
    f.cbs.splice(i, 1);
    return true;
  });
}

/** `dma_fence_get()`: takes a reference. */
export function dmaFenceGet(fence: DmaFence): DmaFence {
  assertFence(fence);
  fence.state.refs++;
  return fence;
}

/** Drops a reference on a record, releasing it when it was the last (dma_fence_release). */
export function putFence(m: Machine, f: FenceRec): void {
  if (--f.refs > 0) return;
  const h = fenceHandle(m, f.id);
  if (f.cbs.length > 0 && !fenceSignaledBit(f)) {
    const ops = opsOf(f);
    reportFinding(
      m,
      WARN.code,
      `Fence ${ops.getDriverName(h)}:${ops.getTimelineName(h)}:${f.context.toString(16)}:${f.seqno.toString(16)} released with pending signals!`,
    );
    f.error = -EDEADLK;
    signalFence(m, f, m.clock.time);
  }
  opsOf(f).release?.(h);
  const s = fenceState(m);
  s.fences.delete(f.id);
  if (m.bus.wants['fence-release']) m.bus.emit({ type: 'fence-release', fence: f.id });
  if (f.components !== null) for (const c of f.components) putFence(m, s.fences.get(c)!);
}

/** `dma_fence_put()`: drops a reference; the fence is released when it was the last. */
export function dmaFencePut(fence: DmaFence | null): void {
  if (fence === null) return;
  assertFence(fence);
  const m = fence.machine;
  apiCall(m, 'dma_fence_put', () => putFence(m, fence.state));
}

/** `dma_fence_stub_ops`: the stub fences' names (internal). */
export const STUB_OPS: DmaFenceOps = {
  getDriverName: () => 'stub',
  getTimelineName: () => 'stub',
};

/** `dma_fence_get_stub()`: the shared, already signalled fence (context 0), with a reference taken. */
export function dmaFenceGetStub(m: Machine): DmaFence {
  return apiCall(m, 'dma_fence_get_stub', () => {
    const s = fenceState(m);
    if (s.stub < 0) {
      const h = newFence(m, STUB_OPS, 0, 0, 0, null);
      signalFence(m, h.state, 0);
      s.stub = h.id;
    }
    return dmaFenceGet(fenceHandle(m, s.stub));
  });
}

/** `__dma_fence_is_later()`: 64-bit when the fence asks for it, else a wrapping 32-bit compare. */
export function seqnoLater(f1: FenceRec, a: number, b: number): boolean {
  if (f1.flags & bit(DMA_FENCE_FLAG_SEQNO64_BIT)) return a > b;
  // The difference taken modulo 2^32 as a signed 32-bit number: seqnos may wrap.
  return (((a % 2 ** 32) - (b % 2 ** 32)) | 0) > 0;
}

/** `dma_fence_is_later()` on records: WARN and false across contexts. */
export function fenceIsLater(m: Machine, f1: FenceRec, f2: FenceRec): boolean {
  if (f1.context !== f2.context) {
    reportFinding(
      m,
      WARN.code,
      `dma_fence_is_later: fences of different contexts (${f1.context}, ${f2.context})`,
    );
    return false;
  }
  return seqnoLater(f1, f1.seqno, f2.seqno);
}

/** `dma_fence_is_later()`: true when `f1` comes after `f2` on their common context. */
export function dmaFenceIsLater(f1: DmaFence, f2: DmaFence): boolean {
  assertFence(f1, 'f1');
  assertFence(f2, 'f2');
  return apiCall(f1.machine, 'dma_fence_is_later', () => fenceIsLater(f1.machine, f1.state, f2.state));
}

/** `dma_fence_is_later_or_same()`. */
export function dmaFenceIsLaterOrSame(f1: DmaFence, f2: DmaFence): boolean {
  assertFence(f1, 'f1');
  assertFence(f2, 'f2');
  return apiCall(
    f1.machine,
    'dma_fence_is_later_or_same',
    () => f1 === f2 || fenceIsLater(f1.machine, f1.state, f2.state),
  );
}

/**
 * Runs model time until `done()` holds or the timeout (ns, or
 * `MAX_SCHEDULE_TIMEOUT`) passes, the way `dma_fence_default_wait` sleeps:
 * the remaining time (at least 1) on success, 0 on timeout. When nothing
 * pending can make progress and there is no timeout, a `HUNG_TASK` finding
 * is raised and -ERESTARTSYS returned.
 */
export function waitModelTime(m: Machine, done: () => boolean, timeout: number, what: string): number {
  if (done()) return timeout === 0 ? 1 : timeout;
  if (timeout === 0) return 0;
  const forever = timeout === MAX_SCHEDULE_TIMEOUT;
  // A wait without timeout ends at khungtaskd's horizon: a device that keeps working never lets it hang the run.
  const deadline = m.clock.time + (forever ? HUNG_TASK_TIMEOUT_NS : timeout);
  let idle = false;
  for (;;) {
    let next = Number.POSITIVE_INFINITY;
    for (const j of pendingJobs(m)) next = Math.min(next, j.due);
    idle = next === Number.POSITIVE_INFINITY;
    if (idle || next > deadline) break;
    runUntil(m, next);
    if (done()) return forever ? MAX_SCHEDULE_TIMEOUT : Math.max(1, deadline - m.clock.time);
  }
  runUntil(m, deadline);
  if (!forever) return done() ? 1 : 0;
  reportFinding(
    m,
    HUNG_TASK.code,
    `INFO: task ${m.agent} blocked for more than ${HUNG_TASK_TIMEOUT_NS / 1e9} seconds: waiting on ${what}, ${idle ? 'which nothing pending on any device engine can signal' : 'still unsignalled while device work goes on'}`,
  );
  return -ERESTARTSYS;
}

function checkTimeout(timeout: number): void {
  if (!Number.isSafeInteger(timeout)) {
    throw new DmalabError(`timeout must be an integer number of ns or MAX_SCHEDULE_TIMEOUT, got ${timeout}`, {
      field: 'timeout',
    });
  }
}

/**
 * `dma_fence_wait_timeout()`: waits, running model time, until the fence
 * signals. `timeout` is in model nanoseconds (the kernel's jiffies) or
 * `MAX_SCHEDULE_TIMEOUT`. Returns the time left (at least 1) once
 * signalled, 0 on timeout, -EINVAL for a negative timeout (with a WARN),
 * -ERESTARTSYS after a hung-task finding.
 */
export function dmaFenceWaitTimeout(fence: DmaFence, intr: boolean, timeout: number): number {
  assertFence(fence);
  checkTimeout(timeout);
  const m = fence.machine;
  return apiCall(m, 'dma_fence_wait_timeout', () => {
    if (timeout < 0) {
      reportFinding(m, WARN.code, `dma_fence_wait_timeout: negative timeout ${timeout}`);
      return -EINVAL;
    }
    void intr;
    const f = fence.state;
    enableSignaling(m, f);
    const r = waitModelTime(m, () => fenceIsSignaled(m, f), timeout, String(fence));
    noteFenceObserved(m, f, r > 0);
    return r;
  });
}

/** `dma_fence_wait()`: waits without a timeout; 0 or a negative errno. */
export function dmaFenceWait(fence: DmaFence, intr: boolean): number {
  const r = dmaFenceWaitTimeout(fence, intr, MAX_SCHEDULE_TIMEOUT);
  return r < 0 ? r : 0;
}

/**
 * `dma_fence_wait_any_timeout()`: waits, running model time, until any of
 * the first `count` fences signals. Returns the time left (at least 1), 0 on
 * timeout or a negative errno as `ret`, and in `idx` (the kernel's
 * out-parameter) the index of the first signalled fence, -1 when none.
 * An empty list or a negative timeout is the kernel's WARN and -EINVAL.
 */
export function dmaFenceWaitAnyTimeout(
  fences: readonly DmaFence[],
  count: number,
  intr: boolean,
  timeout: number,
): { ret: number; idx: number } {
  checkTimeout(timeout);
  if (!Array.isArray(fences) || !Number.isInteger(count) || count < 0 || count > fences.length) {
    throw new DmalabError(`fences must be an array of at least count (${count}) DmaFence`);
  }
  for (const [i, f] of fences.slice(0, count).entries()) assertFence(f, `fences[${i}]`);
  const m = fences[0]?.machine;
  if (m === undefined || count === 0 || timeout < 0) {
    if (m !== undefined)
      reportFinding(m, WARN.code, `dma_fence_wait_any_timeout: count ${count}, timeout ${timeout}`);
    return { ret: -EINVAL, idx: -1 };
  }
  void intr;
  return apiCall(m, 'dma_fence_wait_any_timeout', () => {
    const recs = fences.slice(0, count).map((f) => f.state);
    let idx = -1;
    const any = () => {
      idx = recs.findIndex((f) => fenceIsSignaled(m, f));
      return idx >= 0;
    };
    for (const f of recs) enableSignaling(m, f);
    const ret = waitModelTime(m, any, timeout, `any of ${count} fences`);
    if (idx >= 0) noteFenceObserved(m, recs[idx]!, true);
    return { ret, idx };
  });
}

/**
 * The job handler name that signals a fence when a raw engine job completes
 * (the driver's completion interrupt calling `dma_fence_signal`): pass
 * `{ handler: DMA_FENCE_SIGNAL_JOB, arg: { fence: fence.id } }` to
 * `submitDeviceJob`. A failed device access sets -EIO first. Hold a
 * reference to the fence until it signals, as the kernel's drivers do.
 */
export const DMA_FENCE_SIGNAL_JOB = 'dma_fence_signal';

registerJobHandler(DMA_FENCE_SIGNAL_JOB, (m, job, arg) => {
  const id = (arg as { fence?: unknown } | null)?.fence;
  const f = typeof id === 'number' ? fenceState(m).fences.get(id) : undefined;
  if (f === undefined)
    throw new DmalabError(`${DMA_FENCE_SIGNAL_JOB}: job ${job.id} names no live fence (arg.fence)`);
  if (!job.ok && !fenceSignaledBit(f)) f.error = -EIO;
  signalFence(m, f, m.clock.time);
});
