/**
 * Fences in a declarative scenario: the driver's fence-gated device jobs
 * (the drm_sched-like scheduler of src/dmabuf/sched.ts), implicit sync
 * through the dma-buf's reservation object, software fences a kernel agent
 * signals, and a process's explicit sync with sync_file fds
 * (DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE, and a poll on the fd).
 *
 * The scenario keeps one reference to every named fence, so that a name
 * stays valid for the run. A wait blocks the agent in the scenario's
 * scheduler until the fence signals (other agents go on meanwhile), then
 * calls the library's wait, which orders the waiter after the signal.
 */

import {
  DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
  DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
  DMA_BUF_SYNC_READ,
  DMA_BUF_SYNC_WRITE,
  DMA_FENCE_FLAG_SIGNALED_BIT,
  DMA_RESV_USAGE_BOOKKEEP,
  DMA_RESV_USAGE_KERNEL,
  DMA_RESV_USAGE_READ,
  DMA_RESV_USAGE_WRITE,
  type DmaFence,
  type DmaFenceOps,
  type DrmSchedJob,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceInit,
  dmaFencePut,
  dmaFenceSignal,
  dmaFenceWait,
  dmaResvAddFence,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  dmaResvWaitTimeout,
  drmSchedEntityPushJob,
  drmSchedJobAddDependency,
  drmSchedJobAddResvDependencies,
  drmSchedJobArm,
  drmSchedJobInit,
  MAX_SCHEDULE_TIMEOUT,
  syncFileGetFence,
} from '../../dmabuf/index.js';
import { DmalabError, deviceJob } from '../../machine/index.js';
import { type Process, sysIoctl, userRead, userWrite } from '../../mm/index.js';
import { wait, type Yielded } from '../runtime.js';
import type { StepSpec } from '../types.js';
import { blockOnResv, le, processFd, scratch } from './dmabuf.js';
import {
  type Buffer,
  buffer,
  busPieces,
  errnoText,
  fill,
  mappingOf,
  num,
  share,
  stepAt,
  str,
  usedBeforeMade,
  type World,
  where,
} from './world.js';

/** The kernel steps this file runs. */
export const KERNEL_FENCE_OPS: ReadonlySet<string> = new Set([
  'drmSchedEntityPushJob',
  'dmaResvAddFence',
  'dmaResvWaitTimeout',
  'dmaFenceInit',
  'dmaFenceSignal',
  'dmaFenceWait',
]);

/** The process steps this file runs. */
export const PROCESS_FENCE_OPS: ReadonlySet<string> = new Set([
  'dmaBufExportSyncFile',
  'dmaBufImportSyncFile',
  'poll',
]);

/** The file's usage words as `DMA_RESV_USAGE_*`. */
const USAGES: Readonly<Record<string, number>> = {
  KERNEL: DMA_RESV_USAGE_KERNEL,
  WRITE: DMA_RESV_USAGE_WRITE,
  READ: DMA_RESV_USAGE_READ,
  BOOKKEEP: DMA_RESV_USAGE_BOOKKEEP,
};

/** A software fence's ops (the sw_sync driver's names): a kernel agent signals it with a step. */
const SW_FENCE_OPS: DmaFenceOps = {
  getDriverName: () => 'sw_sync',
  getTimelineName: () => 'scenario',
};

function signalled(f: DmaFence): boolean {
  return (f.flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) !== 0;
}

/** A named fence: null when the step that makes it was skipped; a DmalabError when it has not run yet. */
function fenceOf(w: World, s: StepSpec, field: string, name: string): DmaFence | null {
  const f = w.fences.get(name);
  if (f === undefined) usedBeforeMade(w, s, field, `fence '${name}'`);
  return f;
}

/** A named sync_file fd: null when its export failed; a DmalabError when it has not been made yet. */
function syncFileOf(
  w: World,
  s: StepSpec,
  field: string,
  name: string,
): { proc: Process; fd: number } | null {
  const sf = w.syncFiles.get(name);
  if (sf === undefined) usedBeforeMade(w, s, field, `sync_file '${name}'`);
  return sf;
}

/**
 * A dependency of a job, with a reference for the caller: a named fence, or
 * the fence behind a sync_file fd (`sync_file_get_fence` on its process's fd,
 * as a driver's submit ioctl takes an in-fence). Null when it failed.
 */
function depFence(w: World, s: StepSpec, name: string, i: number): DmaFence | null {
  if (w.syncFiles.has(name)) {
    const sf = syncFileOf(w, s, `deps[${i}]`, name);
    return sf === null ? null : syncFileGetFence(sf.proc, sf.fd);
  }
  const f = fenceOf(w, s, `deps[${i}]`, name);
  return f === null ? null : dmaFenceGet(f);
}

/** Blocks the agent until the fence signals (a no-op when it has), then waits in the library. */
function* waitFence(f: DmaFence, what: string): Generator<Yielded, number, undefined> {
  if (!signalled(f)) yield wait.fence(f.id, what, `blocks on ${what}`);
  return dmaFenceWait(f, true);
}

/** `dma_resv_lock(resv, NULL)` … `dma_resv_unlock(resv)` around `fn`, on a heap buffer's reservation object. */
function locked<T>(b: Buffer, fn: () => T): T {
  const resv = b.dmabuf!.resv;
  dmaResvLock(resv, null);
  try {
    return fn();
  } finally {
    dmaResvUnlock(resv);
  }
}

/**
 * A driver's submission of a device job on a mapping, as drm_sched runs it:
 * `drm_sched_job_init`, `drm_sched_job_add_dependency` for each of `deps`,
 * `drm_sched_job_add_resv_dependencies` on `resv` (under its lock), then
 * `drm_sched_job_arm` and `drm_sched_entity_push_job`. A scatter-gather
 * mapping gets one job per piece of its DMA segments, each with the same
 * dependencies; the device's queue runs them in order, so the last one's
 * finished fence is the transfer's, and `as` names it.
 */
function* pushJob(w: World, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  const as = str(a, 'as');
  const target = str(a, 'mapping');
  const mp = mappingOf(w, s, 'mapping');
  if (mp === null) {
    w.fences.set(as, null);
    return yield { op: `drm_sched_entity_push_job skipped (${target} failed)` };
  }
  const write = a.write as { offset?: number; length: number; fill: number } | undefined;
  const read = a.read as { offset?: number; length: number; expect?: number } | undefined;
  const range = (write ?? read)!;
  const off = range.offset ?? 0;
  const len = range.length;
  const found = busPieces(w, s, target, off, len);
  if (found === null) {
    w.fences.set(as, null);
    return yield { op: `drm_sched_entity_push_job skipped (${target} failed)` };
  }
  const deps: DmaFence[] = [];
  const depNames = a.deps as readonly string[];
  depNames.forEach((name, i) => {
    const f = depFence(w, s, name, i);
    if (f !== null) deps.push(f);
  });
  const resvArg = a.resv as { buffer: string; usage: string } | undefined;
  const resvBuf = resvArg === undefined ? null : buffer(w, resvArg.buffer);
  const duration = num(a, 'duration');
  const data = write === undefined ? null : fill(len, write.fill);
  const jobs: { job: DrmSchedJob; len: number }[] = [];
  let done = 0;
  for (const p of found.pieces) {
    const spec =
      data !== null
        ? { kind: 'dma-write' as const, bus: p.bus, data: data.subarray(done, done + p.len) }
        : { kind: 'dma-read' as const, bus: p.bus, len: p.len };
    const job = drmSchedJobInit(mp.dev, spec, share(duration, len, done, p.len));
    for (const f of deps) drmSchedJobAddDependency(job, dmaFenceGet(f));
    if (resvBuf?.dmabuf != null) {
      const usage = USAGES[resvArg!.usage]!;
      locked(resvBuf, () => drmSchedJobAddResvDependencies(job, resvBuf.dmabuf!.resv, usage));
    }
    drmSchedJobArm(job);
    jobs.push({ job, len: p.len });
    done += p.len;
  }
  for (const f of deps) dmaFencePut(f);
  const last = jobs.at(-1)!.job;
  const fence = dmaFenceGet(last.finished!);
  w.fences.set(as, fence);
  for (const { job } of jobs) drmSchedEntityPushJob(job);
  const what =
    data !== null ? `writes ${len} × 0x${write!.fill.toString(16).padStart(2, '0')}` : `reads ${len}`;
  const label = `${mp.dev.name} ${what} at ${target}+${off}`;
  if (read?.expect !== undefined) w.jobReads.push({ label: where(w, s, label), jobs, expect: read.expect });
  const gated = [
    ...(depNames.length > 0 ? [`after ${depNames.join(', ')}`] : []),
    ...(resvArg !== undefined ? [`after ${resvArg.buffer}'s ${resvArg.usage} fences`] : []),
  ];
  const pieces = jobs.length === 1 ? '' : ` in ${jobs.length} jobs`;
  return yield {
    op: `drm_sched_entity_push_job: ${label}${pieces}, ${duration} ns${gated.length > 0 ? ` ${gated.join(' and ')}` : ''} = ${as} (${fence})`,
  };
}

/** The kernel's fence steps: jobs, reservation objects, software fences and waits. */
export function* fenceKernelStep(w: World, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  switch (s.op) {
    case 'drmSchedEntityPushJob':
      return yield* pushJob(w, s);
    case 'dmaResvAddFence': {
      const b = buffer(w, str(a, 'buffer'));
      const name = str(a, 'fence');
      const f = fenceOf(w, s, 'fence', name);
      const usage = str(a, 'usage');
      if (f === null || b.dmabuf === null) return yield { op: 'dma_resv_add_fence skipped' };
      // A driver publishes its job's fence under the lock, with a slot reserved first.
      const r = locked(b, () => {
        const reserved = dmaResvReserveFences(b.dmabuf!.resv, 1);
        if (reserved === 0) dmaResvAddFence(b.dmabuf!.resv, f, USAGES[usage]!);
        return reserved;
      });
      if (r !== 0) w.ctx.check(false, where(w, s, `dma_resv_reserve_fences = ${errnoText(r)}`));
      return yield { op: `dma_resv_add_fence(${b.spec.name}, ${name}, DMA_RESV_USAGE_${usage})` };
    }
    case 'dmaResvWaitTimeout': {
      const b = buffer(w, str(a, 'buffer'));
      const usage = str(a, 'usage');
      if (b.dmabuf === null) return yield { op: 'dma_resv_wait_timeout skipped' };
      const resv = b.dmabuf.resv;
      // Block in the scheduler on each pending fence, then let the library wait (and observe) them all.
      yield* blockOnResv(b, USAGES[usage]!);
      const r = dmaResvWaitTimeout(resv, USAGES[usage]!, true, MAX_SCHEDULE_TIMEOUT);
      const shown = r === MAX_SCHEDULE_TIMEOUT ? 'MAX_SCHEDULE_TIMEOUT' : errnoText(r);
      if (r <= 0) w.ctx.check(false, where(w, s, `dma_resv_wait_timeout(${b.spec.name}) = ${shown}`));
      return yield {
        op: `dma_resv_wait_timeout(${b.spec.name}, DMA_RESV_USAGE_${usage}, MAX_SCHEDULE_TIMEOUT) = ${shown}`,
      };
    }
    case 'dmaFenceInit': {
      const as = str(a, 'as');
      const f = dmaFenceInit(w.m, SW_FENCE_OPS, dmaFenceContextAlloc(w.m, 1), 1);
      w.fences.set(as, f);
      return yield { op: `dma_fence_init = ${as} (${f})` };
    }
    case 'dmaFenceSignal': {
      const name = str(a, 'fence');
      const f = fenceOf(w, s, 'fence', name);
      if (f === null) return yield { op: 'dma_fence_signal skipped' };
      dmaFenceSignal(f);
      return yield { op: `dma_fence_signal(${name})` };
    }
    case 'dmaFenceWait': {
      const name = str(a, 'fence');
      const f = fenceOf(w, s, 'fence', name);
      if (f === null) return yield { op: `dma_fence_wait skipped (${name} was never made)` };
      const r = yield* waitFence(f, `${name} (${f})`);
      if (r !== 0) w.ctx.check(false, where(w, s, `dma_fence_wait(${name}) = ${errnoText(r)}`));
      return yield { op: `dma_fence_wait(${name}) = ${errnoText(r)}` };
    }
  }
  throw new DmalabError(`step '${s.op}' is not a fence step`, stepAt(w, s));
}

/** `struct dma_buf_export_sync_file` / `dma_buf_import_sync_file` flags. */
function syncFileFlags(words: readonly string[]): { flags: number; shown: string } {
  const flags = words.reduce((f, x) => f | (x === 'READ' ? DMA_BUF_SYNC_READ : DMA_BUF_SYNC_WRITE), 0);
  return { flags, shown: words.map((x) => `DMA_BUF_SYNC_${x}`).join('|') };
}

/** The process's explicit-sync steps on its dma-buf fd and its sync_file fds. */
export function* fenceProcessStep(w: World, proc: Process, s: StepSpec): Generator<Yielded, void, undefined> {
  const a = s.args;
  if (s.op === 'poll') {
    const name = str(a, 'syncFile');
    const sf = syncFileOf(w, s, 'syncFile', name);
    if (sf === null) return yield { op: `poll skipped (${name} was never exported)` };
    // The library has no poll on a sync_file fd: the fence behind it, waited for as sync_file_poll would.
    const f = syncFileGetFence(proc, sf.fd);
    if (f === null) {
      w.ctx.check(false, where(w, s, `poll(${name} fd ${sf.fd}): not a sync_file`));
      return yield { op: `poll(${name} fd ${sf.fd}) = POLLNVAL` };
    }
    const r = yield* waitFence(f, `${name} (${f})`);
    dmaFencePut(f);
    if (r !== 0) w.ctx.check(false, where(w, s, `poll(${name} fd ${sf.fd}): the fence did not signal`));
    return yield { op: `poll(${name} fd ${sf.fd}, POLLIN) = ${r === 0 ? 'POLLIN' : errnoText(r)}` };
  }
  const b = buffer(w, str(a, 'buffer'));
  const { flags, shown } = syncFileFlags(a.flags as readonly string[]);
  const fd = processFd(proc, b);
  const export_ = s.op === 'dmaBufExportSyncFile';
  const cmd = export_ ? 'DMA_BUF_IOCTL_EXPORT_SYNC_FILE' : 'DMA_BUF_IOCTL_IMPORT_SYNC_FILE';
  if (fd < 0) {
    if (export_) w.syncFiles.set(str(a, 'as'), null);
    return yield { op: `${cmd} skipped ('${b.spec.name}' was never allocated)` };
  }
  let inFd = 0;
  if (!export_) {
    const sf = syncFileOf(w, s, 'syncFile', str(a, 'syncFile'));
    if (sf === null) return yield { op: `${cmd} skipped (${str(a, 'syncFile')} was never exported)` };
    inFd = sf.fd;
  }
  // struct dma_buf_export_sync_file / dma_buf_import_sync_file { __u32 flags; __s32 fd; }
  const arg = scratch(w, proc);
  userWrite(proc, arg, new Uint8Array([...le(flags, 4), ...le(inFd >>> 0, 4)]));
  const r = sysIoctl(
    proc,
    fd,
    export_ ? DMA_BUF_IOCTL_EXPORT_SYNC_FILE : DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
    arg,
  );
  const call = `ioctl(${b.spec.name} fd ${fd}, ${cmd}, ${shown}`;
  if (r !== 0) {
    if (export_) w.syncFiles.set(str(a, 'as'), null);
    w.ctx.check(false, where(w, s, `${call}) = ${errnoText(r)}`));
    return yield { op: `${call}) = ${errnoText(r)}` };
  }
  if (!export_) return yield { op: `${call}, fd ${inFd}) = 0` };
  const out = userRead(proc, arg + 4, 4)!;
  const sfd = out[0]! | (out[1]! << 8) | (out[2]! << 16) | (out[3]! << 24);
  w.syncFiles.set(str(a, 'as'), { proc, fd: sfd });
  return yield { op: `${call}) = 0: ${str(a, 'as')} is fd ${sfd}` };
}

/** The expectations of scheduler jobs that read, once every job has completed (before the final conditions). */
export function checkJobReads(w: World): void {
  for (const r of w.jobReads) {
    const total = r.jobs.reduce((n, j) => n + j.len, 0);
    const got = new Uint8Array(total);
    let at = 0;
    let ok = true;
    // A job still queued at the end waits on a dependency that never signalled: no bytes moved.
    if (r.jobs.some(({ job }) => job.engineJob < 0)) {
      w.ctx.check(false, `${r.label}: the job never ran (a dependency never signalled)`);
      continue;
    }
    for (const { job, len } of r.jobs) {
      const res = deviceJob(w.m, job.engineJob)?.result ?? null;
      if (res === null) ok = false;
      else got.set(res, at);
      at += len;
    }
    w.ctx.expectBytes(r.label, ok ? got : null, r.expect);
  }
}
