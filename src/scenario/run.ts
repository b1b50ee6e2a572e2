/**
 * Running a scenario on a profile, and a set of scenarios on several
 * profiles: a fresh machine per cell, the scenario's agents under the seeded
 * scheduler, then the verdict, findings, timeline and byte conditions.
 */

import { createMachine } from '../boot.js';
import { firstDivergence, type ObservedRead, observedReads } from '../debug/index.js';
import {
  DmalabError,
  type Finding,
  type Machine,
  machineFindings,
  PROFILE_NAMES,
  resolveProfile,
  runVerdict,
  type Verdict,
} from '../machine/index.js';
import { declarativeAgents } from './internal/interpret.js';
import { type Agent, RunContext, runAgents } from './runtime.js';
import { DEFAULT_RAM_BYTES } from './schema.js';
import type {
  MatrixResult,
  MatrixRow,
  RunOptions,
  Scenario,
  ScenarioMatrixOptions,
  ScenarioResult,
} from './types.js';

/** What a built-in scenario's setup returns: its agents, and an optional final check on bytes. */
export interface BuiltinRun {
  readonly agents: readonly Agent[];
  /** Runs after every agent has finished and device work has completed; records checks on `ctx`. */
  readonly final?: () => void;
}

/** A built-in TypeScript scenario: its data, and a setup building its agents on a fresh machine. */
export interface BuiltinScenario {
  readonly scenario: Scenario;
  readonly setup: (m: Machine, ctx: RunContext) => BuiltinRun;
}

const builtins = new Map<string, BuiltinScenario>();

/** Registers a built-in scenario under its name (module load time). */
export function registerBuiltin(def: BuiltinScenario): Scenario {
  if (builtins.has(def.scenario.name)) {
    throw new DmalabError(`built-in scenario '${def.scenario.name}' registered twice`);
  }
  builtins.set(def.scenario.name, def);
  return def.scenario;
}

/** A registered built-in scenario's data, by name. */
export function builtinScenario(name: string): Scenario | undefined {
  return builtins.get(name)?.scenario;
}

function short(text: string, max = 140): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The first finding of the worst verdict, as one short line. */
function explain(findings: readonly Finding[], verdict: Verdict): string | null {
  if (verdict === 'clean') return null;
  const f = findings.find((x) => x.verdict === verdict);
  return f === undefined ? null : short(`${f.code}: ${f.message}`);
}

function runCell(
  s: Scenario,
  opts: RunOptions,
): { result: ScenarioResult; observed: readonly ObservedRead[] } {
  try {
    return runCellIn(s, opts);
  } catch (e) {
    // An error raised below (createMachine's option checks, say) names no file; in `matrix dir/` it must.
    if (e instanceof DmalabError && e.location.file === undefined && s.source !== undefined) {
      const field = e.location.field;
      const prefix = field === undefined ? '' : `${field}: `;
      const message = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
      throw new DmalabError(message, { ...e.location, file: s.source });
    }
    throw e;
  }
}

function runCellIn(
  s: Scenario,
  opts: RunOptions,
): { result: ScenarioResult; observed: readonly ObservedRead[] } {
  const seed = opts.seed ?? 0;
  const { zoneDmaBits, ...options } = s.machine;
  const base = resolveProfile(opts.profile);
  // A platform's DMA zone is firmware's word on arm64 only; elsewhere the architecture fixes it.
  const profile = zoneDmaBits !== undefined && base.arch === 'arm64' ? { ...base, zoneDmaBits } : base;
  const m = createMachine({ ramBytes: DEFAULT_RAM_BYTES, ...options, profile, seed });
  const ctx = new RunContext(m);
  let agents: readonly Agent[];
  let final: (() => void) | undefined;
  if (s.body.kind === 'builtin') {
    const def = builtins.get(s.name);
    if (def === undefined) throw new DmalabError(`no built-in scenario named '${s.name}'`);
    const built = def.setup(m, ctx);
    agents = built.agents;
    final = built.final;
  } else {
    const built = declarativeAgents(m, ctx, s.body, s.source);
    agents = built.agents;
    final = built.final;
  }
  const { timeline, schedule } = runAgents(m, ctx, agents, seed, opts.schedule);
  final?.();
  const findings = machineFindings(m).slice();
  const verdict = runVerdict(m);
  const expected = s.expect[m.profile.name] ?? 'clean';
  const bytes = ctx.bytes();
  // A case expected clean whose bytes come out wrong without a finding is a miss, not a match.
  const matches = verdict === expected && !(expected === 'clean' && bytes !== null && !bytes.ok);
  return {
    result: {
      scenario: s.name,
      profile: m.profile.name,
      seed,
      verdict,
      expected,
      matches,
      findings,
      explanation: explain(findings, verdict),
      timeline,
      bytes,
      schedule,
    },
    observed: observedReads(m),
  };
}

/** Runs one scenario on one profile (a fresh machine, seeded by `seed`, default 0). */
export function runScenario(s: Scenario, opts: RunOptions): ScenarioResult {
  return runCell(s, opts).result;
}

/** The built-in profile order, with any other names after it in the order given. */
function orderProfiles(names: Iterable<string>): string[] {
  const set = new Set(names);
  return [...PROFILE_NAMES.filter((p) => set.has(p)), ...[...set].filter((p) => !PROFILE_NAMES.includes(p))];
}

/**
 * Runs every scenario on every profile: the profiles given, or each
 * scenario's own. A row's divergence is the first operation whose observed
 * bytes differ between its profiles.
 */
export function runMatrix(ss: readonly Scenario[], opts: ScenarioMatrixOptions = {}): MatrixResult {
  const perRow = ss.map((s) => opts.profiles ?? s.profiles);
  const total = perRow.reduce((n, ps) => n + ps.length, 0);
  let done = 0;
  const rows: MatrixRow[] = ss.map((s, i) => {
    const cells: ScenarioResult[] = [];
    const logs: (readonly ObservedRead[])[] = [];
    for (const profile of orderProfiles(perRow[i]!)) {
      const cell = runCell(s, { profile, ...(opts.seed !== undefined ? { seed: opts.seed } : {}) });
      cells.push(cell.result);
      logs.push(cell.observed);
      opts.onProgress?.(++done, total);
    }
    return { scenario: s.name, cells, divergence: firstDivergence(logs) };
  });
  return { profiles: orderProfiles(perRow.flat()), rows };
}
