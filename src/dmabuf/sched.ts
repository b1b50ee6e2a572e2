/**
 * Device work gated on fences, the way the GPU scheduler
 * (drivers/gpu/drm/scheduler) runs it: a job collects dependency fences,
 * is armed (which gives it its `finished` fence), and is pushed to its
 * device's queue; it reaches the device engine only when every dependency
 * has signalled and the device's earlier jobs have reached it (one FIFO
 * entity per device). When the engine completes it, its `finished` fence
 * signals — with -EIO when the device's access failed.
 *
 * Simplified from drm_sched: no entity/scheduler objects (one per device),
 * no credits, no timeout handler, no error propagation from dependencies.
 */

import {
  apiCall,
  type Device,
  type DeviceJob,
  DmalabError,
  EIO,
  type JobSpec,
  type Machine,
  registerJobHandler,
  submitDeviceJob,
} from '../machine/index.js';
import {
  addFenceCallback,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  fenceIsSignaled,
  newFence,
  putFence,
  registerDmaFenceFunc,
  seqnoLater,
  signalFence,
} from './fence.js';
import {
  assertFence,
  type DmaFence,
  type DmaResv,
  fenceHandle,
  fenceState,
  nextFenceId,
  type SchedJobRec,
} from './fence-state.js';
import { dmaResvForEachFence } from './resv.js';

const FINISHED_OPS: DmaFenceOps = {
  getDriverName: () => 'drm_sched',
  getTimelineName: () => 'finished',
};

/** `struct drm_sched_job *`: a handle over the job's state. */
export class DrmSchedJob {
  constructor(
    readonly machine: Machine,
    readonly id: number,
  ) {}
  get state(): SchedJobRec {
    const j = fenceState(this.machine).jobs.get(this.id);
    if (j === undefined) throw new DmalabError(`scheduler job ${this.id} does not exist`);
    return j;
  }
  /**
   * `s_fence->finished` once armed, else null. The job's reference is
   * dropped when the job completes: take one with `dmaFenceGet` to keep it.
   */
  get finished(): DmaFence | null {
    const f = this.state.finished;
    return f < 0 ? null : fenceHandle(this.machine, f);
  }
  /** The engine job it became (see `deviceJob`), -1 while it waits. */
  get engineJob(): number {
    return this.state.engineJob;
  }
}

function assertJob(job: unknown): asserts job is DrmSchedJob {
  if (!(job instanceof DrmSchedJob)) throw new DmalabError('job must be a DrmSchedJob', { field: 'job' });
}

/** Per device: the fence context of its scheduler and the last seqno handed out. */
function timelineOf(m: Machine, device: number): { context: number; seqno: number } {
  const s = fenceState(m);
  const key = `sched:${device}`;
  let t = s.timelines.get(key);
  if (t === undefined) {
    t = { context: dmaFenceContextAlloc(m, 1), seqno: 0 };
    s.timelines.set(key, t);
  }
  return t;
}

/**
 * `drm_sched_job_init()`: a job that will run `spec` on `dev`'s engine for
 * `durationNs` of model time. (The kernel's entity, credits and owner
 * arguments have no model counterpart: each device is its own entity.)
 */
export function drmSchedJobInit(dev: Device, spec: JobSpec, durationNs: number): DrmSchedJob {
  const m = dev.machine;
  if (!Number.isFinite(durationNs) || durationNs < 0) {
    throw new DmalabError(`durationNs must be a non-negative number of nanoseconds, got ${durationNs}`);
  }
  return apiCall(m, 'drm_sched_job_init', () => {
    const s = fenceState(m);
    const id = nextFenceId(s);
    const copy = spec.kind === 'dma-write' ? { ...spec, data: spec.data.slice() } : { ...spec };
    s.jobs.set(id, {
      id,
      device: dev.id,
      spec: copy,
      durationNs,
      deps: [],
      finished: -1,
      stage: 'init',
      engineJob: -1,
    });
    return new DrmSchedJob(m, id);
  });
}

function addDependency(m: Machine, j: SchedJobRec, fenceId: number): void {
  const s = fenceState(m);
  const f = s.fences.get(fenceId)!;
  // One fence per context: the later one stays (drm_sched_job_add_dependency).
  for (let i = 0; i < j.deps.length; i++) {
    const old = s.fences.get(j.deps[i]!)!;
    if (old.context !== f.context) continue;
    if (seqnoLater(f, f.seqno, old.seqno)) {
      j.deps[i] = f.id;
      putFence(m, old);
    } else putFence(m, f);
    return;
  }
  j.deps.push(f.id);
}

/**
 * `drm_sched_job_add_dependency()`: the job will not start before `fence`
 * signals. The caller's reference to `fence` is consumed. Returns 0.
 */
export function drmSchedJobAddDependency(job: DrmSchedJob, fence: DmaFence): number {
  assertJob(job);
  assertFence(fence);
  const m = job.machine;
  return apiCall(m, 'drm_sched_job_add_dependency', () => {
    const j = job.state;
    if (j.stage !== 'init' && j.stage !== 'armed') {
      throw new DmalabError(`drm_sched_job_add_dependency: job ${j.id} was already pushed`);
    }
    addDependency(m, j, fence.state.id);
    return 0;
  });
}

/**
 * `drm_sched_job_add_resv_dependencies()`: every fence of `resv` with
 * usage ≤ `usage` becomes a dependency (resv lock held). Returns 0.
 */
export function drmSchedJobAddResvDependencies(job: DrmSchedJob, resv: DmaResv, usage: number): number {
  assertJob(job);
  const m = job.machine;
  return apiCall(m, 'drm_sched_job_add_resv_dependencies', () => {
    for (const { fence } of dmaResvForEachFence(resv, usage)) {
      fence.state.refs++;
      addDependency(m, job.state, fence.id);
    }
    return 0;
  });
}

/** `drm_sched_job_arm()`: gives the job its `finished` fence, next on its device's timeline. */
export function drmSchedJobArm(job: DrmSchedJob): void {
  assertJob(job);
  const m = job.machine;
  apiCall(m, 'drm_sched_job_arm', () => {
    const j = job.state;
    if (j.stage !== 'init') throw new DmalabError(`drm_sched_job_arm: job ${j.id} is already armed`);
    const t = timelineOf(m, j.device);
    t.seqno++;
    j.finished = newFence(m, FINISHED_OPS, t.context, t.seqno, 0, null).id;
    j.stage = 'armed';
  });
}

/**
 * `drm_sched_entity_push_job()`: queues an armed job on its device. It is
 * handed to the engine as soon as its dependencies have signalled — now,
 * or from the signal of the last one.
 */
export function drmSchedEntityPushJob(job: DrmSchedJob): void {
  assertJob(job);
  const m = job.machine;
  apiCall(m, 'drm_sched_entity_push_job', () => {
    const j = job.state;
    if (j.stage !== 'armed')
      throw new DmalabError(`drm_sched_entity_push_job: job ${j.id} must be armed first`);
    j.stage = 'pushed';
    if (m.bus.wants['sched-push']) {
      m.bus.emit({
        type: 'sched-push',
        job: j.id,
        device: m.devices[j.device]!.name,
        agent: m.agent,
        deps: j.deps.slice(),
        finished: j.finished,
      });
    }
    const s = fenceState(m);
    const q = s.queues.get(j.device) ?? [];
    q.push(j.id);
    s.queues.set(j.device, q);
    runReady(m, j.device);
  });
}

/** Hands the device's queued jobs to its engine in order, up to the first with an unsignalled dependency. */
function runReady(m: Machine, device: number): void {
  const s = fenceState(m);
  const q = s.queues.get(device);
  while (q !== undefined && q.length > 0) {
    const j = s.jobs.get(q[0]!)!;
    const blocker = j.deps.find((d) => !fenceIsSignaled(m, s.fences.get(d)!));
    if (blocker !== undefined) {
      // Woken by the blocking fence's signal (one callback per device and fence); the rest are checked
      // again then. A fence whose driver declines to enable signalling is signalled on the spot and the
      // add fails with -ENOENT: look again, as drm_sched treats a failed add as a signalled dependency.
      const f = s.fences.get(blocker)!;
      const armed = f.cbs.some(
        (cb) => cb.func === 'drm_sched:dependency' && (cb.data as { device: number }).device === device,
      );
      if (armed || addFenceCallback(m, f, 'drm_sched:dependency', { device }) >= 0) return;
      continue;
    }
    q.shift();
    const dev = m.devices[device]!;
    j.engineJob = submitDeviceJob(dev, j.spec, j.durationNs, {
      handler: 'drm_sched:done',
      arg: { job: j.id },
    });
    j.stage = 'running';
    if (m.bus.wants['sched-run']) {
      m.bus.emit({ type: 'sched-run', job: j.id, device: dev.name, engineJob: j.engineJob });
    }
  }
}

registerDmaFenceFunc('drm_sched:dependency', (fence, data) => {
  runReady(fence.machine, (data as { device: number }).device);
});

registerJobHandler('drm_sched:done', (m: Machine, ej: DeviceJob, arg: unknown) => {
  const s = fenceState(m);
  const j = s.jobs.get((arg as { job: number }).job);
  if (j === undefined) return;
  for (const d of j.deps) putFence(m, s.fences.get(d)!);
  j.deps = [];
  const f = s.fences.get(j.finished)!;
  if (!ej.ok) f.error = -EIO;
  j.stage = 'done';
  signalFence(m, f, m.clock.time);
  // The job's own reference goes with the job (free_job); holders took theirs with dmaFenceGet.
  putFence(m, f);
});
