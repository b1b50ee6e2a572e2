/**
 * Findings as text for people: one block per finding (verdict, code, step,
 * call, the message, where it was mapped, the caller's stack), then a
 * summary with the run's verdict. Colour only when the caller asks; the
 * renderer never looks at terminals (the CLI decides).
 */

import { type Finding, type Verdict, worstVerdict } from '../../machine/index.js';
import { formatFrame } from './frames.js';

export interface TextOptions {
  /** ANSI colours (the CLI turns them on for terminals without NO_COLOR). */
  color?: boolean;
  /** Include stacks (default true). */
  stacks?: boolean;
}

const COLOURS: Record<Verdict, string> = { broken: '31', latent: '33', api: '36', clean: '32' };

export function paint(on: boolean, code: string, s: string): string {
  return on ? `\u001b[${code}m${s}\u001b[0m` : s;
}

/** A verdict word, coloured by severity when asked. */
export function verdictText(v: Verdict, color: boolean): string {
  return paint(color, COLOURS[v], v);
}

/** Renders findings, in order, with a closing summary line. */
export function renderFindingsText(findings: readonly Finding[], opts: TextOptions = {}): string {
  const color = opts.color ?? false;
  const stacks = opts.stacks ?? true;
  const lines: string[] = [];
  let verdict: Verdict = 'clean';
  const counts: Record<string, number> = {};
  for (const f of findings) {
    verdict = worstVerdict(verdict, f.verdict);
    counts[f.verdict] = (counts[f.verdict] ?? 0) + 1;
    const head = [
      verdictText(f.verdict, color).padEnd(color ? 6 + 9 : 6),
      paint(color, '1', f.code),
      `step ${f.step}`,
      ...(f.call !== undefined ? [f.call] : []),
      ...(f.agent !== undefined ? [`by ${f.agent}`] : []),
    ];
    lines.push(head.join('  '));
    for (const l of f.message.split('\n')) lines.push(`  ${l}`);
    const at = f.details?.mappedAt as { call?: string; step?: number; stack?: string[] } | undefined;
    if (at?.call !== undefined) {
      lines.push(paint(color, '2', `  mapped at: ${at.call || 'outside any call'} (step ${at.step})`));
      if (stacks) for (const fr of at.stack ?? []) lines.push(paint(color, '2', `    at ${formatFrame(fr)}`));
    }
    if (stacks && f.stack !== undefined && f.stack.length > 0) {
      lines.push(paint(color, '2', '  stack:'));
      for (const fr of f.stack) lines.push(paint(color, '2', `    at ${formatFrame(fr)}`));
    }
  }
  const parts = (['broken', 'latent', 'api'] as const)
    .filter((v) => counts[v])
    .map((v) => `${counts[v]} ${v}`);
  const n = findings.length;
  lines.push(
    n === 0
      ? `no findings — verdict: ${verdictText('clean', color)}`
      : `${n} finding${n === 1 ? '' : 's'} (${parts.join(', ')}) — verdict: ${verdictText(verdict, color)}`,
  );
  return `${lines.join('\n')}\n`;
}
