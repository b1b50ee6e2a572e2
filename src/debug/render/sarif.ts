/**
 * Findings as SARIF 2.1.0 (the format editors and CI annotate code from):
 * one rule per finding code with its title, severity and verdict; one
 * result per finding, located at the top frame of the caller's stack, with
 * the whole stack (and the "mapped at" stack when known) as SARIF stacks.
 */

import { type Finding, findingCode } from '../../machine/index.js';
import { DMA_DEBUG_CHECKS } from '../codes.js';
import { type Frame, parseFrame } from './frames.js';
import { findingData, stableStringify } from './json.js';

const SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';

function location(f: Frame, message?: string): Record<string, unknown> {
  return {
    physicalLocation: {
      artifactLocation: { uri: f.path },
      region: { startLine: f.line, startColumn: f.column },
    },
    ...(f.fn !== '' ? { logicalLocations: [{ name: f.fn, kind: 'function' }] } : {}),
    ...(message !== undefined ? { message: { text: message } } : {}),
  };
}

function stack(frames: readonly string[], message: string): Record<string, unknown> | null {
  const parsed = frames.map(parseFrame).filter((f): f is Frame => f !== null);
  if (parsed.length === 0) return null;
  return { message: { text: message }, frames: parsed.map((f) => ({ location: location(f) })) };
}

/** One SARIF run: the rules of the codes seen and one result per finding. */
function sarifRun(findings: readonly Finding[], id?: string): Record<string, unknown> {
  const ruleIds: string[] = [];
  for (const f of findings) if (!ruleIds.includes(f.code)) ruleIds.push(f.code);
  const rules = ruleIds.map((id) => {
    const def = findingCode(id);
    const check = DMA_DEBUG_CHECKS.find((c) => c.code === id);
    return {
      id,
      name: id,
      shortDescription: { text: def?.title ?? id },
      defaultConfiguration: { level: def?.severity ?? 'warning' },
      properties: {
        verdict: def?.verdict ?? 'api',
        layer: def?.layer ?? '',
        ...(check !== undefined ? { dmaDebugCheck: check.check } : {}),
      },
    };
  });
  const results = findings.map((f) => {
    const top = (f.stack ?? []).map(parseFrame).find((x): x is Frame => x !== null);
    const mappedAt = (f.details?.mappedAt as { stack?: string[] } | undefined)?.stack;
    const stacks = [
      f.stack !== undefined ? stack(f.stack, 'raised at') : null,
      mappedAt !== undefined ? stack(mappedAt, 'mapped at') : null,
    ].filter((s) => s !== null);
    const data = findingData(f, false);
    return {
      ruleId: f.code,
      ruleIndex: ruleIds.indexOf(f.code),
      level: f.severity,
      message: { text: f.message },
      ...(top !== undefined ? { locations: [location(top)] } : {}),
      ...(stacks.length > 0 ? { stacks } : {}),
      properties: {
        verdict: f.verdict,
        step: f.step,
        ...(data.device !== undefined ? { device: data.device } : {}),
        ...(data.call !== undefined ? { call: data.call } : {}),
        ...(data.details !== undefined ? { details: data.details } : {}),
      },
    };
  });
  return {
    tool: { driver: { name: 'dmalab', informationUri: 'https://github.com/dmalab/dmalab', rules } },
    ...(id !== undefined ? { automationDetails: { id } } : {}),
    results,
  };
}

/** A SARIF 2.1.0 log of the findings, as JSON text ending with a newline. */
export function renderFindingsSarif(findings: readonly Finding[]): string {
  return `${stableStringify({ $schema: SCHEMA, version: '2.1.0', runs: [sarifRun(findings)] })}\n`;
}

/**
 * A SARIF 2.1.0 log of several runs (a scenario on several profiles, say),
 * each named by its `automationDetails.id`, as JSON text ending with a newline.
 */
export function renderSarifRuns(runs: readonly { id: string; findings: readonly Finding[] }[]): string {
  const log = { $schema: SCHEMA, version: '2.1.0', runs: runs.map((r) => sarifRun(r.findings, r.id)) };
  return `${stableStringify(log)}\n`;
}
