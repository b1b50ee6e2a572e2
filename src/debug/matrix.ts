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
  /** The first step whose observed bytes differ between profiles, or null. */
  divergence: { step: number; call: string } | null;
}

/**
 * The first operation where any profile observed other bytes than the
 * first profile did (or observed something the other did not).
 */
export function firstDivergence(
  logs: readonly (readonly ObservedRead[])[],
): { step: number; call: string } | null {
  const base = logs[0];
  if (base === undefined) return null;
  let best: ObservedRead | null = null;
  for (const log of logs.slice(1)) {
    const n = Math.max(base.length, log.length);
    for (let i = 0; i < n; i++) {
      const a = base[i];
      const b = log[i];
      if (a !== undefined && b !== undefined && a.step === b.step && a.call === b.call && a.hash === b.hash)
        continue;
      const here = a === undefined ? b! : b === undefined ? a : a.step <= b.step ? a : b;
      if (best === null || here.step < best.step) best = here;
      break;
    }
  }
  return best === null ? null : { step: best.step, call: best.call };
}

export interface MatrixOptions {
  color?: boolean;
}

/** A table cell: plain text, or a verdict (coloured when asked). */
type Cell = string | { verdict: Verdict };

function table(head: string[], rows: Cell[][], color: boolean): string[] {
  const text = (c: Cell) => (typeof c === 'string' ? c : c.verdict);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => text(r[i] ?? '').length)));
  const line = (cells: Cell[], bold = false) =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(Math.max(0, widths[i]! - text(c).length));
        const shown = typeof c === 'string' ? paint(bold && color, '1', c) : verdictText(c.verdict, color);
        return shown + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(head, true), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(r))];
}

/** One run on several profiles: profile × verdict, the codes found, and the first divergence. */
export function renderProfiles(result: ProfilesResult, opts: MatrixOptions = {}): string {
  const color = opts.color ?? false;
  const rows = result.rows.map((r) => {
    const codes: string[] = [];
    for (const f of r.findings) if (!codes.includes(f.code)) codes.push(f.code);
    return [r.profile, { verdict: r.verdict }, codes.join(', ') || '—'];
  });
  const lines = table(['profile', 'verdict', 'findings'], rows, color);
  const d = result.divergence;
  lines.push(
    '',
    d === null ? 'observed bytes agree on every profile' : `first divergence: step ${d.step} (${d.call})`,
  );
  return `${lines.join('\n')}\n`;
}

/** Several scenarios on several profiles: scenario × profile → verdict. */
export function renderMatrix(
  scenarios: Readonly<Record<string, ProfilesResult>>,
  opts: MatrixOptions = {},
): string {
  const color = opts.color ?? false;
  const profiles: string[] = [];
  for (const r of Object.values(scenarios))
    for (const row of r.rows) if (!profiles.includes(row.profile)) profiles.push(row.profile);
  const rows = Object.entries(scenarios).map(([name, r]) => [
    name,
    ...profiles.map((p) => {
      const row = r.rows.find((x) => x.profile === p);
      return row === undefined ? '' : { verdict: row.verdict };
    }),
    r.divergence === null ? '' : `step ${r.divergence.step}`,
  ]);
  return `${table(['scenario', ...profiles, 'diverges at'], rows, color).join('\n')}\n`;
}
