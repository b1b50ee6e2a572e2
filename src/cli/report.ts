/**
 * How `run` and `matrix` show their results: the checker's renderers for the
 * findings and the matrix (text, JSON, SARIF), a verdict line per run, one
 * line of explanation per broken or unexpected cell, and — when anything
 * differs from what its scenario declares — the command that replays it.
 */

import pc from 'picocolors';
import {
  type ProfilesResult,
  renderFindingsText,
  renderMatrix,
  renderSarifRuns,
  verdictText,
} from '../debug/index.js';
import type { Verdict } from '../machine/index.js';
import {
  builtinScenarios,
  type MatrixResult,
  type Scenario,
  type ScenarioResult,
} from '../scenario/index.js';
import { shellQuote } from './scenarios.js';

export interface ReportFormat {
  color: boolean;
  /** Print the caller's stacks with each finding. */
  stacks: boolean;
  /** Print each run's timeline. */
  timeline: boolean;
}

/** Every result of a matrix, row by row. */
export function matrixResults(mx: MatrixResult): ScenarioResult[] {
  return mx.rows.flatMap((r) => [...r.cells]);
}

/** The exact command that replays one result. */
export function replayCommand(source: string, r: ScenarioResult): string {
  return ['dmalab', 'run', source, '--profile', r.profile, '--seed', String(r.seed)]
    .map(shellQuote)
    .join(' ');
}

/**
 * The replay lines for every result that differs from its expectation
 * (empty when all match). A built-in scenario is named by its name, which
 * works from any directory; a file by the path it was given as.
 */
export function replayLines(scenarios: readonly Scenario[], results: readonly ScenarioResult[]): string {
  const bad = results.filter((r) => !r.matches);
  if (bad.length === 0) return '';
  const builtins = builtinScenarios();
  const source = (name: string) => {
    const s = scenarios.find((x) => x.name === name);
    if (s === undefined || builtins.includes(s)) return name;
    return s.source;
  };
  const lines = bad.map((r) => `  ${replayCommand(source(r.scenario), r)}`);
  return `to replay what differs:\n${lines.join('\n')}\n`;
}

function bad(color: boolean, s: string): string {
  const c = pc.createColors(color);
  return c.bold(c.red(s));
}

function mark(r: ScenarioResult, color: boolean): string {
  if (r.matches) return pc.createColors(color).green('as expected');
  // The verdict can be the declared one while the final condition on bytes fails.
  return bad(color, r.verdict === r.expected ? 'bytes not as required' : `expected ${r.expected}`);
}

/** `dmalab run`: per result, a head line, the findings, the final condition on bytes. */
export function renderRuns(results: readonly ScenarioResult[], f: ReportFormat): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(
      `${pc.createColors(f.color).bold(`${r.scenario} on ${r.profile}`)} (seed ${r.seed}): ${verdictText(r.verdict, f.color)} — ${mark(r, f.color)}`,
    );
    if (f.timeline) {
      for (const t of r.timeline) out.push(`  ${String(t.step).padStart(5)}  ${t.agent.padEnd(10)} ${t.op}`);
    }
    if (r.findings.length > 0) {
      const text = renderFindingsText(r.findings, { color: f.color, stacks: f.stacks }).trimEnd();
      // The closing summary repeats the head line's verdict.
      out.push(
        ...text
          .split('\n')
          .slice(0, -1)
          .map((l) => `  ${l}`),
      );
    }
    if (r.bytes !== null) {
      out.push(
        `  bytes: ${r.bytes.ok ? 'as required' : bad(f.color, 'NOT as required')} — ${r.bytes.detail}`,
      );
    }
    out.push('');
  }
  out.push(summary(results, f.color));
  return `${out.join('\n')}\n`;
}

function count(results: readonly ScenarioResult[], v: Verdict): number {
  return results.filter((r) => r.verdict === v).length;
}

function summary(results: readonly ScenarioResult[], color: boolean): string {
  const n = results.length;
  const differ = results.filter((r) => !r.matches).length;
  const verdicts = (['broken', 'latent', 'api', 'clean'] as const)
    .map((v) => [v, count(results, v)] as const)
    .filter(([, c]) => c > 0)
    .map(([v, c]) => `${c} ${verdictText(v, color)}`)
    .join(', ');
  const head = `${n} run${n === 1 ? '' : 's'} (${verdicts})`;
  return differ === 0
    ? `${head}: ${pc.createColors(color).green('every result as declared')}`
    : `${head}: ${bad(color, `${differ} differ${differ === 1 ? 's' : ''} from the declared expectation`)}`;
}

/**
 * `dmalab matrix`: scenarios × profiles (each cell a verdict and whether it
 * is the expected one, plus where observed bytes first diverge), then one
 * line per broken or unexpected cell, then the summary.
 */
export function renderMatrixReport(mx: MatrixResult, color: boolean): string {
  const table: Record<string, ProfilesResult> = {};
  const expected: Record<string, Record<string, Verdict>> = {};
  const matches: Record<string, Record<string, boolean>> = {};
  for (const row of mx.rows) {
    table[row.scenario] = {
      rows: row.cells.map((c) => ({ profile: c.profile, verdict: c.verdict, findings: c.findings })),
      divergence: row.divergence,
    };
    expected[row.scenario] = Object.fromEntries(row.cells.map((c) => [c.profile, c.expected]));
    matches[row.scenario] = Object.fromEntries(row.cells.map((c) => [c.profile, c.matches]));
  }
  const out = [renderMatrix(table, { color, expected, matches }).trimEnd(), ''];
  const results = matrixResults(mx);
  const notes = results.filter((r) => r.verdict === 'broken' || !r.matches);
  for (const r of notes) {
    const why = whyLine(r);
    const tag = r.matches ? '' : ` ${bad(color, `(${mark(r, false)})`)}`;
    out.push(`${r.scenario} / ${r.profile}: ${verdictText(r.verdict, color)}${tag} — ${why}`);
  }
  if (notes.length > 0) out.push('');
  const n = mx.rows.length;
  out.push(
    `${n} scenario${n === 1 ? '' : 's'} × ${mx.profiles.length} profile${mx.profiles.length === 1 ? '' : 's'} — ${summary(results, color)}`,
  );
  return `${out.join('\n')}\n`;
}

/**
 * The one line that says why a cell is what it is. For stale data the
 * checker's own facts make the line: who read, whose write was missed and
 * what hid it (the full message is long: `dmalab run` shows it).
 */
export function whyLine(r: ScenarioResult): string {
  const f = r.findings.find((x) => x.verdict === r.verdict);
  const d = f?.details as
    | { reader?: { agent?: string }; hiddenWrite?: { agent?: string; kind?: string; step?: number } }
    | undefined;
  const hiddenBy = f?.message.match(/hidden by ([^;]+)/)?.[1];
  if (f?.code === 'STALE_DATA' && d?.reader?.agent !== undefined && d.hiddenWrite !== undefined && hiddenBy) {
    const w = d.hiddenWrite;
    const what = w.kind === 'device' ? 'DMA write' : 'CPU store';
    return `STALE_DATA at step ${f.step}: ${d.reader.agent} missed ${w.agent}'s ${what} of step ${w.step}, hidden by ${hiddenBy}`;
  }
  return r.explanation ?? (r.bytes !== null && !r.bytes.ok ? r.bytes.detail : 'no finding');
}

/** SARIF with one run per scenario and profile. */
export function renderResultsSarif(results: readonly ScenarioResult[]): string {
  return renderSarifRuns(results.map((r) => ({ id: `${r.scenario}/${r.profile}`, findings: r.findings })));
}
