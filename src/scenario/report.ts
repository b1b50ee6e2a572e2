/**
 * Scenario results as JSON: byte-identical across runs and hosts (sorted
 * keys, no stacks, no paths beyond the scenario's source as given, only
 * model time).
 */

import { findingData, stableStringify } from '../debug/index.js';
import type { Verdict } from '../machine/index.js';
import type { MatrixResult, Scenario, ScenarioResult } from './types.js';

function resultData(r: ScenarioResult): Record<string, unknown> {
  return {
    scenario: r.scenario,
    profile: r.profile,
    seed: r.seed,
    verdict: r.verdict,
    expected: r.expected,
    matches: r.matches,
    explanation: r.explanation,
    bytes: r.bytes,
    findings: r.findings.map((f) => findingData(f, false)),
    timeline: r.timeline,
    schedule: r.schedule,
  };
}

/** Results of runs, or a matrix, as deterministic JSON text ending with a newline. */
export function scenarioReportJson(results: readonly ScenarioResult[] | MatrixResult): string {
  if ('rows' in results) {
    const rows = results.rows.map((row) => ({
      scenario: row.scenario,
      divergence: row.divergence,
      cells: row.cells.map(resultData),
    }));
    return `${stableStringify({ profiles: results.profiles, rows })}\n`;
  }
  return `${stableStringify({ results: results.map(resultData) })}\n`;
}

const ORDER: readonly Verdict[] = ['broken', 'latent', 'api', 'clean'];

/**
 * A scenario's expected verdicts in one line, worst first, the last group
 * as "elsewhere": `broken on parisc; clean elsewhere`, `clean everywhere`.
 * The catalogue (scenarios/README.md) uses exactly this wording.
 */
export function describeExpectation(s: Scenario): string {
  const groups = ORDER.map(
    (v) => [v, s.profiles.filter((p) => (s.expect[p] ?? 'clean') === v)] as const,
  ).filter(([, ps]) => ps.length > 0);
  if (groups.length === 1) return `${groups[0]![0]} everywhere`;
  return groups
    .map(([v, ps], i) => (i === groups.length - 1 ? `${v} elsewhere` : `${v} on ${ps.join(', ')}`))
    .join('; ');
}
