import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaMapSingle } from '../dma/index.js';
import {
  addDevice,
  advanceTime,
  allocPages,
  deviceJob,
  EIO,
  GFP_KERNEL,
  machineFindings,
  pageAddress,
} from '../machine/index.js';
import {
  DMA_RESV_USAGE_WRITE,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceInit,
  dmaFenceIsSignaled,
  dmaFenceSignal,
  dmaFenceWait,
  dmaResvAddFence,
  dmaResvInit,
  dmaResvLock,
  dmaResvReserveFences,
  dmaResvUnlock,
  drmSchedEntityPushJob,
  drmSchedJobAddDependency,
  drmSchedJobAddResvDependencies,
  drmSchedJobArm,
  drmSchedJobInit,
} from './index.js';

const OPS: DmaFenceOps = { getDriverName: () => 'test', getTimelineName: () => 'tl' };

function setup() {
  const m = createMachine({ ramBytes: 16 << 20 });
  const cam = addDevice(m, { name: 'cam' });
  const disp = addDevice(m, { name: 'disp' });
  const va = pageAddress(allocPages(m, GFP_KERNEL, 0)!);
  // The camera writes the page, the display reads it: each maps it for its direction.
  const camBus = dmaMapSingle(cam, va, 4096, DMA_FROM_DEVICE);
  const dispBus = dmaMapSingle(disp, va, 4096, DMA_TO_DEVICE);
  return { m, cam, disp, camBus, dispBus };
}

describe('fence-gated device jobs', () => {
  it('a job waits for its dependency and signals its finished fence at completion', () => {
    const { m, cam, disp, camBus, dispBus } = setup();
    const w = drmSchedJobInit(
      cam,
      { kind: 'dma-write', bus: camBus, data: new Uint8Array(16).fill(7) },
      1000,
    );
    drmSchedJobArm(w);
    const camDone = dmaFenceGet(w.finished!);
    drmSchedEntityPushJob(w);
    expect(w.engineJob).toBeGreaterThan(0);
    const r = drmSchedJobInit(disp, { kind: 'dma-read', bus: dispBus, len: 16 }, 500);
    drmSchedJobAddDependency(r, dmaFenceGet(camDone));
    drmSchedJobArm(r);
    const dispDone = dmaFenceGet(r.finished!);
    drmSchedEntityPushJob(r);
    expect(r.engineJob).toBe(-1);
    expect(dmaFenceWait(dispDone, true)).toBe(0);
    expect([camDone.timestamp, dispDone.timestamp, m.clock.time]).toEqual([1000, 1500, 1500]);
    expect(deviceJob(m, r.engineJob)!.result).toEqual(new Uint8Array(16).fill(7));
    expect(camDone.context).not.toBe(dispDone.context);
    expect(machineFindings(m).map((f) => f.message)).toEqual([]);
  });

  it('keeps one FIFO per device: a later ready job waits behind a blocked one', () => {
    const { m, cam } = setup();
    const gate = dmaFenceInit(m, OPS, dmaFenceContextAlloc(m, 1), 1);
    const a = drmSchedJobInit(cam, { kind: 'idle' }, 100);
    drmSchedJobAddDependency(a, dmaFenceGet(gate));
    drmSchedJobArm(a);
    const aDone = dmaFenceGet(a.finished!);
    drmSchedEntityPushJob(a);
    const b = drmSchedJobInit(cam, { kind: 'idle' }, 100);
    drmSchedJobArm(b);
    const bDone = dmaFenceGet(b.finished!);
    drmSchedEntityPushJob(b);
    expect([a.engineJob, b.engineJob]).toEqual([-1, -1]);
    advanceTime(m, 50);
    dmaFenceSignal(gate);
    expect(a.engineJob).toBeGreaterThan(0);
    expect(b.engineJob).toBeGreaterThan(a.engineJob);
    dmaFenceWait(bDone, false);
    expect(bDone.timestamp).toBe(250);
    expect(aDone.seqno + 1).toBe(bDone.seqno);
  });

  it('arms one wake-up per blocking fence, and a fence whose driver declines signalling does not stall the queue', () => {
    const { m, cam } = setup();
    const gate = dmaFenceInit(m, OPS, dmaFenceContextAlloc(m, 1), 1);
    const jobs = [0, 1, 2].map(() => {
      const j = drmSchedJobInit(cam, { kind: 'idle' }, 100);
      drmSchedJobAddDependency(j, dmaFenceGet(gate));
      drmSchedJobArm(j);
      drmSchedEntityPushJob(j);
      return j;
    });
    expect(gate.state.cbs.length).toBe(1);
    dmaFenceSignal(gate);
    expect(jobs.every((j) => j.engineJob > 0)).toBe(true);
    // enable_signaling returning false: the fence signals at once and the job goes to the engine.
    const lazy = dmaFenceInit(m, { ...OPS, enableSignaling: () => false }, dmaFenceContextAlloc(m, 1), 1);
    const j = drmSchedJobInit(cam, { kind: 'idle' }, 100);
    drmSchedJobAddDependency(j, dmaFenceGet(lazy));
    drmSchedJobArm(j);
    drmSchedEntityPushJob(j);
    expect(dmaFenceIsSignaled(lazy)).toBe(true);
    expect(j.engineJob).toBeGreaterThan(0);
  });

  it('resv dependencies, and -EIO on the finished fence when the device access failed', () => {
    const { m, cam, disp, dispBus } = setup();
    const resv = dmaResvInit(m);
    const w = drmSchedJobInit(cam, { kind: 'idle' }, 300);
    drmSchedJobArm(w);
    dmaResvLock(resv, null);
    dmaResvReserveFences(resv, 1);
    dmaResvAddFence(resv, w.finished!, DMA_RESV_USAGE_WRITE);
    drmSchedEntityPushJob(w);
    const r = drmSchedJobInit(disp, { kind: 'dma-read', bus: dispBus + 2 ** 40, len: 4 }, 100);
    drmSchedJobAddResvDependencies(r, resv, DMA_RESV_USAGE_WRITE);
    dmaResvUnlock(resv);
    drmSchedJobArm(r);
    const done = dmaFenceGet(r.finished!);
    drmSchedEntityPushJob(r);
    expect(dmaFenceWait(done, true)).toBe(0);
    expect(done.timestamp).toBe(400);
    expect(dmaFenceGetStatus(done)).toBe(-EIO);
  });

  it('reports the gating and the signal by the device as events', () => {
    const { m, cam } = setup();
    const seen: string[] = [];
    for (const t of ['sched-push', 'sched-run', 'job-start', 'fence-signal'] as const) {
      m.bus.on(t, (e) =>
        seen.push(
          `${e.type}@${e.time} ${JSON.stringify({ ...e, type: undefined, step: undefined, time: undefined })}`,
        ),
      );
    }
    const gate = dmaFenceInit(m, OPS, dmaFenceContextAlloc(m, 1), 1);
    const j = drmSchedJobInit(cam, { kind: 'idle' }, 100);
    drmSchedJobAddDependency(j, dmaFenceGet(gate));
    drmSchedJobArm(j);
    const done = dmaFenceGet(j.finished!);
    drmSchedEntityPushJob(j);
    advanceTime(m, 10);
    dmaFenceSignal(gate);
    dmaFenceWait(done, true);
    expect(seen).toEqual([
      `sched-push@0 {"job":${j.id},"device":"cam","agent":"kernel","deps":[${gate.id}],"finished":${done.id}}`,
      `fence-signal@10 {"fence":${gate.id},"context":${gate.context},"seqno":1,"error":0,"agent":"kernel","byDevice":false}`,
      `sched-run@10 {"job":${j.id},"device":"cam","engineJob":${j.engineJob}}`,
      `job-start@110 {"device":"cam","job":${j.engineJob}}`,
      `fence-signal@110 {"fence":${done.id},"context":${done.context},"seqno":1,"error":0,"agent":"cam","byDevice":true}`,
    ]);
  });

  it('refuses misuse with a DmalabError', () => {
    const { cam } = setup();
    const j = drmSchedJobInit(cam, { kind: 'idle' }, 1);
    expect(() => drmSchedEntityPushJob(j)).toThrow(/must be armed first/);
    drmSchedJobArm(j);
    expect(() => drmSchedJobArm(j)).toThrow(/already armed/);
    expect(() => drmSchedJobInit(cam, { kind: 'idle' }, -1)).toThrow(/non-negative/);
  });
});
