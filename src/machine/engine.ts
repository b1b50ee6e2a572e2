/**
 * Device engines and model time. A device takes jobs — DMA transfers and
 * copies — that complete at a later model time, so a device works while the
 * CPU does other things. Each device runs its jobs one after another (a job
 * starts when the previous one of that device completes); `advanceTime`
 * runs what is due, in completion order.
 *
 * A job's data moves at its completion time, in one piece: a CPU write made
 * while the job is in flight is seen by the device, one made after it is not.
 *
 * Jobs are plain data. What happens after a job (signalling a fence, say)
 * is named by a handler registered once per process with
 * `registerJobHandler`, never stored as a closure in machine state.
 */

import type { Device } from './device.js';
import { deviceDmaAccess } from './device.js';
import { DmalabError } from './errors.js';
import { apiCall, type Machine } from './machine.js';

export type JobSpec =
  | { kind: 'dma-write'; bus: number; data: Uint8Array }
  | { kind: 'dma-read'; bus: number; len: number }
  | { kind: 'dma-copy'; src: number; dst: number; len: number }
  | { kind: 'idle' };

/** A queued or finished job. */
export interface DeviceJob {
  readonly id: number;
  readonly device: number;
  readonly spec: JobSpec;
  readonly submitted: number;
  readonly start: number;
  readonly due: number;
  done: boolean;
  ok: boolean;
  /** Bytes read by a `dma-read` job once done. */
  result: Uint8Array | null;
  /** Registered handler to run on completion, and its plain-data argument. */
  readonly onComplete: { handler: string; arg: unknown } | null;
}

export interface EngineState {
  jobs: DeviceJob[];
  nextId: number;
  /** Per device id: when its last queued job completes. */
  busyUntil: number[];
  /** The job whose data is moving or whose completion handler runs, 0 between jobs. */
  running: number;
}

export type JobHandler = (m: Machine, job: DeviceJob, arg: unknown) => void;

const handlers = new Map<string, JobHandler>();

/** Registers a completion handler by name (module load time, once per process). */
export function registerJobHandler(name: string, fn: JobHandler): void {
  const prev = handlers.get(name);
  if (prev !== undefined && prev !== fn) throw new DmalabError(`job handler '${name}' registered twice`);
  handlers.set(name, fn);
}

export function initEngine(m: Machine): void {
  m.hw.engine = { jobs: [], nextId: 1, busyUntil: [], running: 0 };
}

/**
 * Queues a job on a device's engine. It starts when the device's previous
 * job completes (or now) and completes `durationNs` later. Returns the job id.
 */
export function submitDeviceJob(
  dev: Device,
  spec: JobSpec,
  durationNs: number,
  onComplete: { handler: string; arg?: unknown } | null = null,
): number {
  const m = dev.machine;
  if (!Number.isFinite(durationNs) || durationNs < 0) {
    throw new DmalabError(`job duration must be a non-negative number of nanoseconds, got ${durationNs}`);
  }
  if (onComplete !== null && !handlers.has(onComplete.handler)) {
    throw new DmalabError(`unknown job handler '${onComplete.handler}'`);
  }
  const e = m.hw.engine;
  const start = Math.max(m.clock.time, e.busyUntil[dev.id] ?? 0);
  const job: DeviceJob = {
    id: e.nextId++,
    device: dev.id,
    spec: spec.kind === 'dma-write' ? { ...spec, data: spec.data.slice() } : spec,
    submitted: m.clock.time,
    start,
    due: start + durationNs,
    done: false,
    ok: false,
    result: null,
    onComplete: onComplete === null ? null : { handler: onComplete.handler, arg: onComplete.arg ?? null },
  };
  e.busyUntil[dev.id] = job.due;
  e.jobs.push(job);
  if (m.bus.wants['job-submit']) {
    m.bus.emit({ type: 'job-submit', device: dev.name, job: job.id, kind: spec.kind, start, due: job.due });
  }
  return job.id;
}

/** A job by id (queued or done). */
export function deviceJob(m: Machine, id: number): DeviceJob | undefined {
  return m.hw.engine.jobs.find((j) => j.id === id);
}

/** The earliest pending job, by completion time then submission order. */
function nextDue(m: Machine): DeviceJob | undefined {
  let best: DeviceJob | undefined;
  for (const j of m.hw.engine.jobs) {
    if (j.done) continue;
    if (best === undefined || j.due < best.due || (j.due === best.due && j.id < best.id)) best = j;
  }
  return best;
}

function runJob(m: Machine, job: DeviceJob): void {
  const dev = m.devices[job.device]!;
  const e = m.hw.engine;
  e.running = job.id;
  try {
    runJobBody(m, dev, job);
  } finally {
    e.running = 0;
  }
}

/** Moves a job's data, marks it done and runs its completion handler. */
function runJobBody(m: Machine, dev: Device, job: DeviceJob): void {
  const spec = job.spec;
  let ok = true;
  if (m.bus.wants['job-start']) m.bus.emit({ type: 'job-start', device: dev.name, job: job.id });
  switch (spec.kind) {
    case 'dma-write':
      ok = deviceDmaAccess(dev, spec.bus, spec.data.length, true, spec.data).status === 'ok';
      break;
    case 'dma-read': {
      const r = deviceDmaAccess(dev, spec.bus, spec.len, false);
      job.result = r.data;
      ok = r.status === 'ok';
      break;
    }
    case 'dma-copy': {
      const r = deviceDmaAccess(dev, spec.src, spec.len, false);
      ok = r.status === 'ok' && deviceDmaAccess(dev, spec.dst, spec.len, true, r.data).status === 'ok';
      break;
    }
    case 'idle':
      break;
  }
  job.done = true;
  job.ok = ok;
  if (m.bus.wants['job-complete']) {
    m.bus.emit({ type: 'job-complete', device: dev.name, job: job.id, kind: spec.kind, ok });
  }
  if (job.onComplete !== null) handlers.get(job.onComplete.handler)!(m, job, job.onComplete.arg);
}

/**
 * Advances model time by `ns`, running every job that comes due on the way,
 * each at its own completion time.
 */
export function advanceTime(m: Machine, ns: number): void {
  if (!Number.isFinite(ns) || ns < 0) {
    throw new DmalabError(`advanceTime needs a non-negative number of nanoseconds, got ${ns}`);
  }
  apiCall(m, 'advance_time', () => runUntil(m, m.clock.time + ns));
}

/** Runs due jobs up to absolute time `target` and leaves the clock there. */
export function runUntil(m: Machine, target: number): void {
  for (;;) {
    const job = nextDue(m);
    if (job === undefined || job.due > target) break;
    setTime(m, job.due);
    runJob(m, job);
  }
  setTime(m, Math.max(m.clock.time, target));
  // Finished jobs whose results nobody can still ask for are dropped to keep state small.
  const e = m.hw.engine;
  if (e.jobs.length > 256) e.jobs = e.jobs.filter((j) => !j.done || j.id > e.nextId - 256);
}

function setTime(m: Machine, t: number): void {
  if (t === m.clock.time) return;
  const from = m.clock.time;
  m.clock.time = t;
  if (m.bus.wants.time) m.bus.emit({ type: 'time', from, to: t });
}

/**
 * The job being run right now — its data moving or its completion handler
 * running — or undefined between jobs. A fence signalled from a completion
 * handler is signalled by that job's device.
 */
export function runningJob(m: Machine): DeviceJob | undefined {
  const id = m.hw.engine.running;
  return id === 0 ? undefined : deviceJob(m, id);
}

/** Pending jobs (not yet completed). */
export function pendingJobs(m: Machine): DeviceJob[] {
  return m.hw.engine.jobs.filter((j) => !j.done);
}
