import { describe, expect, it } from 'vitest';
import { createMachine } from '../boot.js';
import { addDevice, deviceJob, type Machine, submitDeviceJob } from '../machine/index.js';
import { type Agent, type AgentBody, RunContext, runAgents, wait } from './runtime.js';

function machine(): Machine {
  return createMachine({ ramBytes: 16 * 1024 * 1024 });
}

function* counter(name: string, n: number): AgentBody {
  for (let i = 0; i < n; i++) yield { op: `${name}${i}` };
}

function cpus(): Agent[] {
  return [
    { name: 'a', kind: 'kernel', body: counter('a', 3) },
    { name: 'b', kind: 'process', body: counter('b', 3) },
  ];
}

const order = (t: readonly { op: string }[]) => t.map((e) => e.op).join(' ');

describe('the scheduler', () => {
  it('interleaves agents by seed, the same way for the same seed', () => {
    const m = machine();
    const one = runAgents(m, new RunContext(m), cpus(), 7);
    const two = runAgents(machine(), new RunContext(m), cpus(), 7);
    expect(order(two.timeline)).toBe(order(one.timeline));
    expect(one.schedule).toEqual(two.schedule);
    expect(one.timeline.map((e) => e.op).sort()).toEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'b2']);
    // Each agent's own steps stay in program order whatever the interleaving.
    expect(order(one.timeline).replace(/ ?b\d/g, '').trim()).toBe('a0 a1 a2');
    const seen = new Set<string>();
    for (let seed = 0; seed < 16; seed++)
      seen.add(order(runAgents(machine(), new RunContext(m), cpus(), seed).timeline));
    expect(seen.size).toBeGreaterThan(2);
  });

  it('replays a recorded schedule exactly, continues a prefix by seed, and refuses a choice that does not fit', () => {
    const m = machine();
    const first = runAgents(m, new RunContext(m), cpus(), 3);
    const m2 = machine();
    const again = runAgents(m2, new RunContext(m2), cpus(), 999, first.schedule);
    expect(order(again.timeline)).toBe(order(first.timeline));
    // A prefix: b first, then the seed decides the rest.
    const m4 = machine();
    const prefixed = runAgents(m4, new RunContext(m4), cpus(), 3, [1]);
    expect(prefixed.timeline[0]!.op).toBe('b0');
    expect(prefixed.schedule[0]).toBe(1);
    expect(prefixed.timeline).toHaveLength(6);
    const m3 = machine();
    expect(() => runAgents(m3, new RunContext(m3), cpus(), 0, [0, 0, 0, 0, 0])).toThrow(
      /schedule entry 4 \(0\) is not a runnable agent here \(runnable: 1\)/,
    );
  });

  it('lets device work run while the CPU takes steps, and resumes the device when its job completes', () => {
    const m = machine();
    const dev = addDevice(m, { name: 'dma0' });
    let job = 0;
    function* engine(): AgentBody {
      job = submitDeviceJob(dev, { kind: 'dma-write', bus: 0x10_0000, data: new Uint8Array([1, 2]) }, 1000);
      yield wait.job(job, 'transfer submitted');
      yield { op: `transfer done: ${deviceJob(m, job)!.ok}` };
    }
    function* cpu(): AgentBody {
      yield { op: 'cpu works' };
      yield wait.sleep(m, 400);
      yield { op: 'cpu after sleep' };
    }
    const ctx = new RunContext(m);
    // Seeds differ in who goes first; in every order the transfer completes at 1000 ns.
    const r = runAgents(
      m,
      ctx,
      [
        { name: 'engine', kind: 'device', body: engine() },
        { name: 'cpu', kind: 'kernel', body: cpu() },
      ],
      1,
    );
    const at = Object.fromEntries(r.timeline.map((e) => [e.op, e.time]));
    expect(at).toEqual({
      'transfer submitted': 0,
      'cpu works': 0,
      'sleep 400 ns': 0,
      'cpu after sleep': 400,
      'transfer done: true': 1000,
    });
    expect(m.clock.time).toBe(1000);
  });

  it('signals order agents across each other', () => {
    const m = machine();
    const ctx = new RunContext(m);
    function* producer(): AgentBody {
      yield { op: 'fill' };
      yield ctx.signal('ready');
    }
    function* consumer(): AgentBody {
      yield wait.signal('ready');
      yield { op: 'consume' };
    }
    for (let seed = 0; seed < 8; seed++) {
      const r = runAgents(m, new RunContext(m), [], seed);
      expect(r.timeline).toEqual([]);
    }
    const r = runAgents(
      m,
      ctx,
      [
        { name: 'c', kind: 'kernel', body: consumer() },
        { name: 'p', kind: 'kernel', body: producer() },
      ],
      5,
    );
    const ops = r.timeline.map((e) => e.op);
    expect(ops.indexOf('consume')).toBeGreaterThan(ops.indexOf('signal ready'));
  });

  it('ends with a DmalabError, not a hang, when agents can never proceed or never finish', () => {
    const m = machine();
    function* stuck(): AgentBody {
      yield wait.signal('never');
    }
    expect(() => runAgents(m, new RunContext(m), [{ name: 'w', kind: 'kernel', body: stuck() }], 0)).toThrow(
      /^agents: the agents can never proceed: w waits for signal 'never'$/,
    );
    function* forever(): AgentBody {
      for (;;) yield { op: 'spin' };
    }
    expect(() =>
      runAgents(m, new RunContext(m), [{ name: 's', kind: 'kernel', body: forever() }], 0),
    ).toThrow(/more than 100000 steps/);
    expect(() =>
      runAgents(m, new RunContext(m), [...cpus(), { name: 'a', kind: 'kernel', body: counter('x', 1) }], 0),
    ).toThrow(/two agents are named 'a'/);
  });

  it('records byte conditions: the first failure, or a count', () => {
    const ctx = new RunContext(machine());
    expect(ctx.bytes()).toBeNull();
    expect(ctx.expectBytes('ok', new Uint8Array([7, 7]), 7)).toBe(true);
    expect(ctx.bytes()).toEqual({ ok: true, detail: '1 byte condition(s) hold' });
    expect(ctx.expectBytes('list', new Uint8Array([1, 9]), [1, 2])).toBe(false);
    expect(ctx.expectBytes('gone', null, 7)).toBe(false);
    expect(ctx.bytes()).toEqual({ ok: false, detail: 'list: expected [01 02], got 0x09 at byte 1' });
  });
});
