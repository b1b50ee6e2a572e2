/**
 * Ordering of dma-buf accesses: happens-before from fences, the way the
 * kernel's implicit and explicit sync define it, with a vector clock per
 * agent — the CPU (one sequential program in dmalab's synchronous model)
 * and each device.
 *
 * Edges: CPU program order; a job starts after what its submitter did
 * before submitting it (a scheduler job: before pushing it, plus every
 * dependency fence's signal); a fence's signal is after what its
 * signaller did before (a container's after each component's); a CPU
 * wait or test that sees a fence signalled is after the signal; a device
 * access made synchronously by the CPU sits in the CPU's program order;
 * a raw engine job's completion is seen by the CPU (its stand-in for the
 * completion interrupt) — a scheduler job's completion only through its
 * finished fence.
 *
 * Two accesses to one dma-buf's bytes by different agents, at least one a
 * write, with no happens-before between them are a `DMABUF_UNORDERED`
 * finding (latent), whatever the bytes were this time. Only dma-buf bytes
 * are tracked (from `dmabuf-export`/`dmabuf-backing`), so streaming DMA
 * drivers are not affected. A device's accesses to a bounce slot count
 * for the original bytes; swiotlb's own copies are plumbing, not accesses.
 */

import {
  type CpuAccessEvent,
  type DeviceAccessEvent,
  formatHex,
  type Hasher,
  type Machine,
  registerFindingCode,
  registerSlot,
  reportFinding,
  runningJob,
} from '../machine/index.js';
import { bounceAt, isInternalAgent } from './oracle.js';
import { debugState } from './state.js';

/** Conflicting accesses to a dma-buf that no fence, signal or wait orders. */
export const DMABUF_UNORDERED = registerFindingCode({
  code: 'DMABUF_UNORDERED',
  severity: 'warning',
  verdict: 'latent',
  title: 'two agents access the same dma-buf bytes, one writing, and no fence orders them',
  layer: 'debug',
});

/** One access kept for comparison: who, at which epoch of its clock, which physical bytes. */
interface AccessRec {
  id: number;
  agent: number;
  epoch: number;
  write: boolean;
  lo: number;
  hi: number;
  step: number;
  call: string;
}

interface OrderBuf {
  /** Flat [phys, length, …] pieces. */
  backing: number[];
  records: AccessRec[];
}

export interface OrderingState {
  /** Agent names by id; 0 is the CPU. */
  agents: string[];
  /** Vector clocks by agent id. */
  clocks: number[][];
  /** Clock of each signalled fence at its signal. */
  fenceClocks: Map<number, number[]>;
  /** Container fences' components. */
  components: Map<number, number[]>;
  /** Clock a queued engine job starts with. */
  jobClocks: Map<number, number[]>;
  /** Engine jobs that came from the scheduler (completion not seen by the CPU directly). */
  schedEngineJobs: number[];
  /** Scheduler jobs pushed: the pusher's clock and the dependencies. */
  pushed: Map<number, { clock: number[]; deps: number[] }>;
  bufs: Map<number, OrderBuf>;
  /** Record id × agent pairs already reported. */
  reported: string[];
  nextRec: number;
}

const MAX_RECORDS = 64;

export function orderingState(m: Machine): OrderingState {
  return m.layers.ordering as OrderingState;
}

function agentId(s: OrderingState, name: string): number {
  let i = s.agents.indexOf(name);
  if (i < 0) {
    i = s.agents.length;
    s.agents.push(name);
    s.clocks.push([]);
    s.clocks[i]![i] = 1;
  }
  return i;
}

function join(into: number[], from: readonly number[] | undefined): void {
  if (from === undefined) return;
  for (let i = 0; i < from.length; i++) if ((from[i] ?? 0) > (into[i] ?? 0)) into[i] = from[i]!;
}

function tick(s: OrderingState, a: number): void {
  const c = s.clocks[a]!;
  c[a] = (c[a] ?? 0) + 1;
}

/** The agent acting now: the device whose engine job is running, else the CPU. */
function current(m: Machine, s: OrderingState): number {
  const job = runningJob(m);
  return job === undefined ? 0 : agentId(s, m.devices[job.device]!.name);
}

function describe(s: OrderingState, r: AccessRec): string {
  return `${s.agents[r.agent]} ${r.write ? 'wrote' : 'read'} ${formatHex(r.lo)}..${formatHex(r.hi - 1)} (step ${r.step}${r.call !== '' ? `, ${r.call}` : ''})`;
}

/** Checks and records an access of physical [pa, pa+len) by agent `a`. */
function access(m: Machine, s: OrderingState, a: number, pa: number, len: number, write: boolean): void {
  const end = pa + len;
  for (const [bufId, b] of s.bufs) {
    for (let i = 0; i < b.backing.length; i += 2) {
      const lo = Math.max(pa, b.backing[i]!);
      const hi = Math.min(end, b.backing[i]! + b.backing[i + 1]!);
      if (lo < hi) accessBuf(m, s, bufId, b, a, lo, hi, write);
    }
  }
}

function accessBuf(
  m: Machine,
  s: OrderingState,
  bufId: number,
  b: OrderBuf,
  a: number,
  lo: number,
  hi: number,
  write: boolean,
): void {
  const clock = s.clocks[a]!;
  const rec: AccessRec = {
    id: s.nextRec++,
    agent: a,
    epoch: clock[a] ?? 0,
    write,
    lo,
    hi,
    step: m.clock.step,
    call: m.clock.call,
  };
  for (const r of b.records) {
    if (r.agent === a || !(r.write || write) || r.hi <= lo || r.lo >= hi) continue;
    if ((clock[r.agent] ?? 0) >= r.epoch) continue;
    const key = `${r.id}:${a}`;
    if (s.reported.includes(key)) continue;
    s.reported.push(key);
    if (s.reported.length > 256) s.reported.shift();
    reportFinding(
      m,
      DMABUF_UNORDERED.code,
      `unordered accesses to dma-buf ${bufId}: ${describe(s, r)} and ${describe(s, rec)}; no fence signal and wait orders them, so the result depends on timing`,
      {
        agent: s.agents[a]!,
        details: {
          buf: bufId,
          first: { ...r, agent: s.agents[r.agent] },
          second: { ...rec, agent: s.agents[a] },
        },
      },
    );
  }
  // An earlier access of the same agent that this one covers adds nothing (this one is later in its order).
  const recs = b.records;
  let kept = 0;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (!(r.agent === a && r.lo >= lo && r.hi <= hi && (write || !r.write))) recs[kept++] = r;
  }
  recs.length = kept;
  recs.push(rec);
  if (recs.length > MAX_RECORDS) recs.shift();
}

function cpuAccess(m: Machine, s: OrderingState, ev: CpuAccessEvent): void {
  if (s.bufs.size === 0 || isInternalAgent(ev.agent, ev.mm)) return;
  access(m, s, 0, ev.pa, ev.len, ev.write);
}

function deviceAccess(m: Machine, s: OrderingState, ev: DeviceAccessEvent): void {
  if (s.bufs.size === 0) return;
  const a = agentId(s, ev.device);
  const inJob = runningJob(m) !== undefined;
  // A device access the CPU makes synchronously sits in the CPU's program order.
  if (!inJob) join(s.clocks[a]!, s.clocks[0]);
  const bounces = debugState(m).bounces;
  let done = 0;
  while (done < ev.len) {
    const pa = ev.pa + done;
    const bi = bounceAt(bounces, pa);
    let n = ev.len - done;
    let logical = pa;
    if (bi >= 0) {
      const bb = bounces[bi]!;
      logical = bb.orig + (pa - bb.slot);
      n = Math.min(n, bb.slot + bb.size - pa);
    }
    access(m, s, a, logical, n, ev.write);
    done += n;
  }
  if (!inJob) {
    tick(s, a);
    join(s.clocks[0]!, s.clocks[a]);
  }
}

function flat(backing: readonly number[]): number[] {
  return backing.slice();
}

/** Sets up the ordering state and its slot, and subscribes to the events it needs. */
export function attachOrdering(m: Machine): void {
  const init: OrderingState = {
    agents: [],
    clocks: [],
    fenceClocks: new Map(),
    components: new Map(),
    jobClocks: new Map(),
    schedEngineJobs: [],
    pushed: new Map(),
    bufs: new Map(),
    reported: [],
    nextRec: 1,
  };
  m.layers.ordering = init;
  agentId(init, 'cpu');
  const bus = m.bus;
  const st = () => orderingState(m);
  // Memory accesses are watched only once a dma-buf exists: other runs pay nothing on their hot path.
  let watching = false;
  const watch = () => {
    if (watching) return;
    watching = true;
    bus.on('cpu-access', (ev) => cpuAccess(m, st(), ev));
    bus.on('device-access', (ev) => deviceAccess(m, st(), ev));
  };
  registerSlot(m, {
    name: 'ordering',
    snapshot: (mm) => structuredClone(orderingState(mm)),
    restore: (mm, snap) => {
      mm.layers.ordering = structuredClone(snap as OrderingState);
      if (orderingState(mm).bufs.size > 0) watch();
    },
    // Everything that decides a future finding: clocks and what will join into them (fence clocks,
    // containers' components, queued and pushed jobs, which completions the CPU sees), the records
    // to compare with, and which pairs were reported already.
    hash: (mm, h: Hasher) => {
      const s = orderingState(mm);
      h.value(s.agents).value(s.clocks).value(s.fenceClocks).value(s.components).value(s.jobClocks);
      h.value(s.schedEngineJobs).value(s.pushed).value(s.bufs).value(s.reported);
    },
  });
  bus.on('dmabuf-export', (ev) => {
    st().bufs.set(ev.buf, { backing: flat(ev.backing), records: [] });
    watch();
  });
  bus.on('dmabuf-backing', (ev) => {
    // A move gives new bytes: what was done to the old ones no longer conflicts.
    st().bufs.set(ev.buf, { backing: flat(ev.backing), records: [] });
  });
  bus.on('dmabuf-release', (ev) => {
    st().bufs.delete(ev.buf);
  });
  bus.on('fence-init', (ev) => {
    if (ev.components !== null) st().components.set(ev.fence, ev.components.slice());
  });
  bus.on('fence-signal', (ev) => {
    const s = st();
    const a = current(m, s);
    const c = s.clocks[a]!.slice();
    for (const comp of s.components.get(ev.fence) ?? []) join(c, s.fenceClocks.get(comp));
    s.fenceClocks.set(ev.fence, c);
    tick(s, a);
  });
  bus.on('fence-release', (ev) => {
    const s = st();
    s.fenceClocks.delete(ev.fence);
    s.components.delete(ev.fence);
  });
  bus.on('fence-wait', (ev) => {
    if (!ev.signaled) return;
    const s = st();
    join(s.clocks[current(m, s)]!, s.fenceClocks.get(ev.fence));
  });
  bus.on('job-submit', (ev) => {
    const s = st();
    const a = current(m, s);
    s.jobClocks.set(ev.job, s.clocks[a]!.slice());
    tick(s, a);
  });
  bus.on('sched-push', (ev) => {
    const s = st();
    const a = current(m, s);
    s.pushed.set(ev.job, { clock: s.clocks[a]!.slice(), deps: ev.deps.slice() });
    tick(s, a);
  });
  bus.on('sched-run', (ev) => {
    const s = st();
    const p = s.pushed.get(ev.job);
    s.pushed.delete(ev.job);
    const c = p === undefined ? [] : p.clock.slice();
    for (const d of p?.deps ?? []) join(c, s.fenceClocks.get(d));
    s.jobClocks.set(ev.engineJob, c);
    s.schedEngineJobs.push(ev.engineJob);
  });
  bus.on('job-start', (ev) => {
    const s = st();
    const a = agentId(s, ev.device);
    join(s.clocks[a]!, s.jobClocks.get(ev.job));
    s.jobClocks.delete(ev.job);
  });
  bus.on('job-complete', (ev) => {
    const s = st();
    const a = agentId(s, ev.device);
    tick(s, a);
    const i = s.schedEngineJobs.indexOf(ev.job);
    if (i >= 0) s.schedEngineJobs.splice(i, 1);
    else join(s.clocks[0]!, s.clocks[a]);
  });
}
