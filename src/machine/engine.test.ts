import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import {
  addDevice,
  advanceTime,
  allocPages,
  cpuRead,
  deviceJob,
  GFP_KERNEL,
  pageToPhys,
  pendingJobs,
  physToVirt,
  registerJobHandler,
  submitDeviceJob,
} from './index.js';

const completions: { job: number; at: number; arg: unknown }[] = [];
registerJobHandler('test-record', (m, job, arg) => completions.push({ job: job.id, at: m.clock.time, arg }));

describe('device engines and model time', () => {
  it('completes a job at its model time and not before', () => {
    const m = createMachine({ ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'dma0' });
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 0)!);
    advanceTime(m, 100);
    const id = submitDeviceJob(
      dev,
      { kind: 'dma-write', bus: pa, data: new Uint8Array(8).fill(0xee) },
      1000,
      {
        handler: 'test-record',
        arg: { tag: 'w' },
      },
    );
    expect(deviceJob(m, id)).toMatchObject({ start: 100, due: 1100, done: false });
    const out = new Uint8Array(1);
    advanceTime(m, 999);
    expect(m.clock.time).toBe(1099);
    cpuRead(m, pa, physToVirt(pa), 'cached', out, 0, 1);
    expect(out[0]).toBe(0);
    expect(deviceJob(m, id)!.done).toBe(false);
    advanceTime(m, 1);
    expect(deviceJob(m, id)).toMatchObject({ done: true, ok: true });
    cpuRead(m, pa, physToVirt(pa), 'cached', out, 0, 1);
    expect(out[0]).toBe(0xee);
    expect(completions.at(-1)).toEqual({ job: id, at: 1100, arg: { tag: 'w' } });
  });

  it('runs one device’s jobs back to back and different devices in completion order', () => {
    const m = createMachine({ ramBytes: 64 << 20 });
    const a = addDevice(m, { name: 'a' });
    const b = addDevice(m, { name: 'b' });
    const pa = pageToPhys(allocPages(m, GFP_KERNEL, 0)!);
    const order: string[] = [];
    m.bus.on('job-complete', (e) => order.push(`${e.device}@${m.clock.time}`));
    const a1 = submitDeviceJob(a, { kind: 'dma-read', bus: pa, len: 4 }, 500);
    const a2 = submitDeviceJob(a, { kind: 'idle' }, 500);
    submitDeviceJob(b, { kind: 'dma-copy', src: pa, dst: pa + 64, len: 4 }, 700);
    expect(deviceJob(m, a2)).toMatchObject({ start: 500, due: 1000 });
    expect(pendingJobs(m)).toHaveLength(3);
    advanceTime(m, 5000);
    expect(order).toEqual(['a@500', 'b@700', 'a@1000']);
    expect(deviceJob(m, a1)!.result).toEqual(new Uint8Array(4));
    expect(m.clock.time).toBe(5000);
  });

  it('rejects negative times and unknown handlers with a DmalabError', () => {
    const m = createMachine({ ramBytes: 64 << 20 });
    const dev = addDevice(m, { name: 'x' });
    expect(() => advanceTime(m, -1)).toThrow(/non-negative/);
    expect(() => submitDeviceJob(dev, { kind: 'idle' }, 1, { handler: 'nope' })).toThrow(
      /unknown job handler 'nope'/,
    );
  });
});
