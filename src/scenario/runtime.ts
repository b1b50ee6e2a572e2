/**
 * The scenario runtime: agents written as generator functions that yield
 * between steps, and a seeded scheduler that interleaves them over model
 * time. A device agent submits jobs to its engine; the transfer runs while
 * other agents take steps and completes when model time reaches it.
 *
 * Every choice the scheduler makes is recorded (`schedule`), so a run can be
 * replayed from the start: same scenario, same seed or same schedule, same
 * bytes. The explorer will replay agents from the start rather than clone
 * generators (API.md §5), which is why agents are functions of the machine.
 */

import { DMA_FENCE_FLAG_SIGNALED_BIT, fenceHandle } from '../dmabuf/index.js';
import {
  advanceTime,
  type Device,
  DmalabError,
  type Machine,
  pendingJobs,
  withAgent,
} from '../machine/index.js';
import type { TimelineEntry } from './types.js';

/** What blocks an agent until it may take its next step. */
export type WaitCondition =
  | { readonly signal: string }
  | { readonly anyOf: readonly string[] }
  | { readonly until: number }
  | { readonly job: number }
  | { readonly idle: string }
  /** A fence (by id) to signal; `what` names it in messages. */
  | { readonly fence: number; readonly what: string };

/**
 * What an agent yields after each step: the step's description for the
 * timeline, and optionally a condition to wait for before the next one.
 */
export interface Yielded {
  readonly op: string;
  readonly wait?: WaitCondition;
}

/** An agent's body: a generator that performs one step between yields. */
export type AgentBody = Generator<Yielded, void, undefined>;

/** One agent: a kernel task, a process or a device engine. */
export interface Agent {
  readonly name: string;
  readonly kind: 'kernel' | 'process' | 'device';
  readonly body: AgentBody;
}

/** The shared, per-run scratch of a scenario: signals between agents and byte checks. */
export class RunContext {
  readonly m: Machine;
  private readonly signals = new Set<string>();
  private readonly checks: { ok: boolean; detail: string }[] = [];

  constructor(m: Machine) {
    this.m = m;
  }

  /** Raises a named signal (a flag another agent may be waiting for). */
  signal(name: string): Yielded {
    this.signals.add(name);
    return { op: `signal ${name}` };
  }

  /** True once `name` was signalled. */
  signalled(name: string): boolean {
    return this.signals.has(name);
  }

  /** Records a condition on bytes (a read step's expectation or the final condition). */
  check(ok: boolean, detail: string): void {
    this.checks.push({ ok, detail });
  }

  /** Compares bytes with an expected value and records the outcome. */
  expectBytes(label: string, got: Uint8Array | null, want: number | readonly number[]): boolean {
    const expected = typeof want === 'number' ? null : want;
    let bad = -1;
    if (got === null) bad = 0;
    else {
      for (let i = 0; i < got.length; i++) {
        const w = expected === null ? (want as number) : expected[i];
        if (got[i] !== w) {
          bad = i;
          break;
        }
      }
      if (expected !== null && got.length !== expected.length) bad = Math.min(got.length, expected.length);
    }
    const wantText =
      typeof want === 'number' ? `0x${hex2(want)} × ${got?.length ?? 0}` : `[${want.map(hex2).join(' ')}]`;
    if (bad < 0) {
      this.check(true, `${label}: ${wantText}`);
      return true;
    }
    const gotText = got === null ? 'nothing (the access failed)' : `0x${hex2(got[bad]!)} at byte ${bad}`;
    this.check(false, `${label}: expected ${wantText}, got ${gotText}`);
    return false;
  }

  /** The byte checks' outcome: null when there were none, else the first failure or a count. */
  bytes(): { ok: boolean; detail: string } | null {
    if (this.checks.length === 0) return null;
    const bad = this.checks.find((c) => !c.ok);
    if (bad !== undefined) return { ok: false, detail: bad.detail };
    return { ok: true, detail: `${this.checks.length} byte condition(s) hold` };
  }
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}

/** Yield helpers for agent bodies. */
export const wait = {
  signal: (name: string): Yielded => ({ op: `wait ${name}`, wait: { signal: name } }),
  /** Waits until any of the signals is raised (an outcome that may go either way). */
  any: (names: readonly string[]): Yielded => ({ op: `wait ${names.join(' | ')}`, wait: { anyOf: names } }),
  /** Sleeps `ns` of model time from now. */
  sleep: (m: Machine, ns: number): Yielded => ({ op: `sleep ${ns} ns`, wait: { until: m.clock.time + ns } }),
  job: (id: number, op = `wait job ${id}`): Yielded => ({ op, wait: { job: id } }),
  /**
   * Blocks until the fence signals, before the step calls the library's
   * wait. When nothing else can happen the agent is let go unsignalled: the
   * library's wait then ends at its hung-task horizon with a finding.
   */
  fence: (id: number, what: string, op = `wait for ${what}`): Yielded => ({ op, wait: { fence: id, what } }),
  /** Waits until the device has no job left in flight. */
  idle: (dev: Device): Yielded => ({ op: `wait ${dev.name} idle`, wait: { idle: dev.name } }),
};

/** Seeded 32-bit generator (mulberry32), the scheduler's own: it does not perturb the machine's. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x2545f491;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

interface Running {
  readonly agent: Agent;
  waiting: WaitCondition | null;
  done: boolean;
}

function satisfied(m: Machine, ctx: RunContext, w: WaitCondition): boolean {
  if ('signal' in w) return ctx.signalled(w.signal);
  if ('anyOf' in w) return w.anyOf.some((s) => ctx.signalled(s));
  if ('until' in w) return m.clock.time >= w.until;
  if ('job' in w) return !pendingJobs(m).some((j) => j.id === w.job);
  // The bit alone: polling the fence's ops would observe it on behalf of whichever agent runs.
  if ('fence' in w) return (fenceHandle(m, w.fence).flags & (1 << DMA_FENCE_FLAG_SIGNALED_BIT)) !== 0;
  const dev = m.devices.find((d) => d.name === w.idle);
  return dev === undefined || !pendingJobs(m).some((j) => j.device === dev.id);
}

/** When the earliest timed event (a job completion or a sleeper's wake-up) falls, or null. */
function nextEventTime(m: Machine, running: readonly Running[]): number | null {
  let t: number | null = null;
  for (const j of pendingJobs(m)) if (t === null || j.due < t) t = j.due;
  for (const r of running) {
    const w = r.waiting;
    if (!r.done && w !== null && 'until' in w && (t === null || w.until < t)) t = w.until;
  }
  return t;
}

function describeWait(w: WaitCondition): string {
  if ('signal' in w) return `signal '${w.signal}'`;
  if ('anyOf' in w) return `one of the signals ${w.anyOf.map((s) => `'${s}'`).join(', ')}`;
  if ('until' in w) return `time ${w.until}`;
  if ('job' in w) return `job ${w.job}`;
  if ('fence' in w) return w.what;
  return `${w.idle} idle`;
}

/** The outcome of a schedule: the timeline and the choices made. */
export interface ScheduleOutcome {
  readonly timeline: TimelineEntry[];
  readonly schedule: number[];
}

/** A bound on steps, so that an agent that never finishes ends the run with an error, not a hang. */
export const MAX_STEPS = 100_000;

/**
 * Runs agents to completion. At each point the scheduler picks one runnable
 * agent — from `replay` while it lasts (a prefix the explorer chose), then
 * with the seeded generator — and runs
 * it to its next yield; when none is runnable, model time advances to the
 * next job completion or wake-up. Ends by letting every device job finish.
 * Agents waiting for what can no longer happen are a scenario error.
 */
export function runAgents(
  m: Machine,
  ctx: RunContext,
  agents: readonly Agent[],
  seed: number,
  replay?: readonly number[],
): ScheduleOutcome {
  const names = new Set<string>();
  for (const a of agents) {
    if (names.has(a.name)) throw new DmalabError(`two agents are named '${a.name}'`, { field: 'agents' });
    names.add(a.name);
  }
  const running: Running[] = agents.map((agent) => ({ agent, waiting: null, done: false }));
  const next = rng(seed);
  const timeline: TimelineEntry[] = [];
  const schedule: number[] = [];
  for (let n = 0; ; n++) {
    if (n > MAX_STEPS) throw new DmalabError(`the scenario took more than ${MAX_STEPS} steps without ending`);
    const runnable: number[] = [];
    running.forEach((r, i) => {
      if (r.done) return;
      if (r.waiting !== null && !satisfied(m, ctx, r.waiting)) return;
      r.waiting = null;
      runnable.push(i);
    });
    if (runnable.length === 0) {
      if (running.every((r) => r.done)) break;
      const t = nextEventTime(m, running);
      if (t === null) {
        // A fence nothing can signal any more: its waiters go on to the library's wait, which reports the hung task.
        const hung = running.filter((r) => !r.done && r.waiting !== null && 'fence' in r.waiting);
        if (hung.length > 0) {
          for (const r of hung) r.waiting = null;
          continue;
        }
        const stuck = running
          .filter((r) => !r.done)
          .map((r) => `${r.agent.name} waits for ${describeWait(r.waiting!)}`);
        throw new DmalabError(`the agents can never proceed: ${stuck.join('; ')}`, { field: 'agents' });
      }
      advanceTime(m, Math.max(0, t - m.clock.time));
      continue;
    }
    let pick: number;
    const want = replay?.[schedule.length];
    if (want !== undefined) {
      if (!runnable.includes(want)) {
        throw new DmalabError(
          `schedule entry ${schedule.length} (${want}) is not a runnable agent here (runnable: ${runnable.join(', ')})`,
          { field: 'schedule' },
        );
      }
      pick = want;
    } else {
      pick = runnable.length === 1 ? runnable[0]! : runnable[next() % runnable.length]!;
    }
    schedule.push(pick);
    const r = running[pick]!;
    const agentName = r.agent.kind === 'kernel' ? 'kernel' : r.agent.name;
    const res = withAgent(m, agentName, () => r.agent.body.next());
    if (res.done === true) {
      r.done = true;
      continue;
    }
    timeline.push({ time: m.clock.time, step: m.clock.step, agent: r.agent.name, op: res.value.op });
    r.waiting = res.value.wait ?? null;
  }
  // Device work still in flight completes before the final condition is read.
  const last = pendingJobs(m).reduce((t, j) => Math.max(t, j.due), m.clock.time);
  if (last > m.clock.time) advanceTime(m, last - m.clock.time);
  return { timeline, schedule };
}
