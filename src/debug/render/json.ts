/**
 * Findings as JSON for machines: byte-identical across runs and hosts —
 * keys in sorted order, stacks repo-relative (or left out), no wall-clock
 * time (only the model's), no absolute path.
 */

import { type Finding, type Verdict, worstVerdict } from '../../machine/index.js';
import { formatFrame } from './frames.js';

export interface JsonOptions {
  /** Include stacks (default true; they are repo-relative but change when code moves). */
  stacks?: boolean;
}

/** A finding as plain, deterministic data. */
export function findingData(f: Finding, stacks = true): Record<string, unknown> {
  const out: Record<string, unknown> = {
    code: f.code,
    severity: f.severity,
    verdict: f.verdict,
    message: f.message,
    step: f.step,
    time: f.time,
  };
  if (f.device !== undefined) out.device = f.device;
  if (f.driver !== undefined) out.driver = f.driver;
  if (f.call !== undefined) out.call = f.call;
  if (f.agent !== undefined) out.agent = f.agent;
  if (f.details !== undefined) out.details = clean(f.details, stacks);
  if (stacks && f.stack !== undefined) out.stack = f.stack.map(formatFrame);
  return out;
}

function clean(v: unknown, stacks: boolean): unknown {
  if (Array.isArray(v)) return v.map((x) => clean(x, stacks));
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'stack') {
        if (stacks && Array.isArray(x)) out.stack = x.map((fr) => formatFrame(String(fr)));
        continue;
      }
      out[k] = clean(x, stacks);
    }
    return out;
  }
  return v;
}

/** JSON.stringify with object keys sorted at every level. */
export function stableStringify(v: unknown, indent = 2): string {
  return JSON.stringify(sortKeys(v), null, indent);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** `{ verdict, findings }` as JSON text, ending with a newline. */
export function renderFindingsJson(findings: readonly Finding[], opts: JsonOptions = {}): string {
  let verdict: Verdict = 'clean';
  for (const f of findings) verdict = worstVerdict(verdict, f.verdict);
  const stacks = opts.stacks ?? true;
  return `${stableStringify({ verdict, findings: findings.map((f) => findingData(f, stacks)) })}\n`;
}
