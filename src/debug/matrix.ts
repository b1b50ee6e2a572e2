/**
 * The result of running one driver function on several profiles
 * (`runOnProfiles` in boot.ts), where the profiles' observed bytes first
 * diverge, and its rendering as a table.
 */

import type { Finding, Verdict } from '../machine/index.js';
import type { ObservedRead } from './checker.js';
import { paint, verdictText } from './render/text.js';

export interface ProfileRow {
  profile: string;
  verdict: Verdict;
  findings: readonly Finding[];
}

export interface ProfilesResult {
  rows: ProfileRow[];
  /** The first operation whose observed bytes differ between profiles (see `firstDivergence`), or null. */
  divergence: { step: number; call: string } | null;
}

/**
 * The first operation where any profile observed other bytes than the
 * first profile did (or observed something the other did not). Reads are
 * compared in order by call and bytes, not by step number: a profile that
 * makes more calls before (a bounce, an extra device job per DMA segment)
 * numbers its steps differently and still agrees. The step given is the
 * first profile's (the other's when the first has no such read).
 */
export function firstDivergence(
  logs: readonly (readonly ObservedRead[])[],
): { step: number; call: string } | null {
  const base = logs[0];
  if (base === undefined) return null;
  let at = Number.POSITIVE_INFINITY;
  let found: ObservedRead | null = null;
  for (const log of logs.slice(1)) {
    const n = Math.max(base.length, log.length);
    for (let i = 0; i < n && i < at; i++) {
      const a = base[i];
      const b = log[i];
      if (a !== undefined && b !== undefined && a.call === b.call && a.hash === b.hash) continue;
      at = i;
      found = a ?? b!;
      break;
    }
  }
  return found === null ? null : { step: found.step, call: found.call };
}

export interface MatrixOptions {
  color?: boolean;
  /**
   * Expected verdict per scenario and profile (a profile not listed expects
   * `clean`): each cell then says whether it matches, and what was expected
   * when it does not.
   */
  expected?: Readonly<Record<string, Readonly<Record<string, Verdict>>>>;
  /**
   * Whether each run met its whole declaration, bytes included, per scenario
   * and profile: a cell whose verdict is the expected one but whose bytes are
   * not as required is marked as such, so the table never reads as a pass.
   */
  matches?: Readonly<Record<string, Readonly<Record<string, boolean>>>>;
}

/**
 * A table cell: plain text, or a verdict (coloured when asked) with an
 * optional mark after it, painted with an ANSI colour code.
 */
export type TableCell = string | { verdict: Verdict; mark?: string; markColour?: string };

/** Lays out a text table: a bold head, a rule, columns two spaces apart, no trailing blanks. */
export function textTable(head: readonly string[], rows: readonly TableCell[][], color: boolean): string[] {
  const text = (c: TableCell) => (typeof c === 'string' ? c : c.verdict + (c.mark ?? ''));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => text(r[i] ?? '').length)));
  const line = (cells: readonly TableCell[], bold = false) =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(Math.max(0, widths[i]! - text(c).length));
        const shown =
          typeof c === 'string'
            ? paint(bold && color, '1', c)
            : verdictText(c.verdict, color) + paint(color, c.markColour ?? '0', c.mark ?? '');
        return shown + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(head, true), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(r))];
}

function verdictCell(verdict: Verdict, expected: Verdict | undefined, matches = true): TableCell {
  if (expected === undefined) return { verdict };
  if (verdict !== expected) return { verdict, mark: ` ✗ expected ${expected}`, markColour: '1;31' };
  return matches
    ? { verdict, mark: ' ✓', markColour: '32' }
    : { verdict, mark: ' ✗ bytes', markColour: '1;31' };
}

/** One run on several profiles: profile × verdict, the codes found, and the first divergence. */
export function renderProfiles(result: ProfilesResult, opts: MatrixOptions = {}): string {
  const color = opts.color ?? false;
  const rows = result.rows.map((r) => {
    const codes: string[] = [];
    for (const f of r.findings) if (!codes.includes(f.code)) codes.push(f.code);
    return [r.profile, { verdict: r.verdict }, codes.join(', ') || '—'];
  });
  const lines = textTable(['profile', 'verdict', 'findings'], rows, color);
  const d = result.divergence;
  lines.push(
    '',
    d === null ? 'observed bytes agree on every profile' : `first divergence: step ${d.step} (${d.call})`,
  );
  return `${lines.join('\n')}\n`;
}

/**
 * Several scenarios on several profiles: scenario × profile → verdict (and
 * whether it is the expected one, when expectations are given), with the
 * first operation whose observed bytes diverge between profiles.
 */
export function renderMatrix(
  scenarios: Readonly<Record<string, ProfilesResult>>,
  opts: MatrixOptions = {},
): string {
  const color = opts.color ?? false;
  const profiles: string[] = [];
  for (const r of Object.values(scenarios))
    for (const row of r.rows) if (!profiles.includes(row.profile)) profiles.push(row.profile);
  let skipped = false;
  const rows = Object.entries(scenarios).map(([name, r]) => [
    name,
    ...profiles.map((p) => {
      const row = r.rows.find((x) => x.profile === p);
      if (row === undefined) {
        skipped = true;
        return NOT_RUN;
      }
      return verdictCell(
        row.verdict,
        opts.expected === undefined ? undefined : (opts.expected[name]?.[p] ?? 'clean'),
        opts.matches?.[name]?.[p],
      );
    }),
    r.divergence === null ? '' : `step ${r.divergence.step} (${r.divergence.call})`,
  ]);
  const lines = textTable(['scenario', ...profiles, 'diverges at'], rows, color);
  if (skipped) lines.push(`${NOT_RUN}: not run on that profile (the scenario does not list it)`);
  return `${lines.join('\n')}\n`;
}

/** The cell of a profile a scenario does not run on. */
const NOT_RUN = '—';
