/**
 * The finding sink (API.md §4). Every layer records kernel outcomes here
 * (`BUG`, `WARN`, `SIGSEGV`, `SIGBUS`, `IOMMU_FAULT`, `OOPS`) and the checker
 * adds its analysis. A finding's verdict is fixed when it is raised; a run's
 * verdict is the worst of its findings.
 *
 * Codes are registered once, with their severity, verdict and a one-line
 * description, so that reports and docs are generated from one table.
 */

import { DmalabError } from './errors.js';
import type { Machine } from './machine.js';

export type Severity = 'error' | 'warning';
export type FindingVerdict = 'api' | 'latent' | 'broken';
export type Verdict = 'clean' | FindingVerdict;

/** A registered finding code. */
export interface FindingCode {
  readonly code: string;
  readonly severity: Severity;
  readonly verdict: FindingVerdict;
  /** One line: what the code means. */
  readonly title: string;
  /** The layer that raises it. */
  readonly layer: string;
}

/** One finding, as plain data. */
export interface Finding {
  readonly code: string;
  readonly severity: Severity;
  readonly verdict: FindingVerdict;
  readonly message: string;
  /** Device name where one is involved. */
  readonly device?: string;
  /** Driver name, when the device has one bound. */
  readonly driver?: string;
  /** The machine step at which it was raised. */
  readonly step: number;
  /** Model time (ns). */
  readonly time: number;
  /** The API call being executed (kernel name), when inside one. */
  readonly call?: string;
  /** The agent whose action raised it (process name, `kernel`, a device). */
  readonly agent?: string;
  /** Caller's stack, repo-relative, when stacks are captured. */
  readonly stack?: readonly string[];
  /** Structured facts (addresses, sizes, directions) for JSON and SARIF output. */
  readonly details?: Readonly<Record<string, unknown>>;
}

const registry = new Map<string, FindingCode>();

/** Registers a finding code (idempotent for identical definitions). */
export function registerFindingCode(def: FindingCode): FindingCode {
  const prev = registry.get(def.code);
  if (prev !== undefined) {
    if (prev.severity !== def.severity || prev.verdict !== def.verdict || prev.layer !== def.layer) {
      throw new DmalabError(`finding code ${def.code} registered twice with different definitions`);
    }
    return prev;
  }
  registry.set(def.code, def);
  return def;
}

/** The registered definition of a code. */
export function findingCode(code: string): FindingCode | undefined {
  return registry.get(code);
}

/** Every registered code, in registration order. */
export function findingCodes(): FindingCode[] {
  return [...registry.values()];
}

export const BUG = registerFindingCode({
  code: 'BUG',
  severity: 'error',
  verdict: 'broken',
  title: 'the kernel hit a BUG(): the call fails and the run is broken',
  layer: 'machine',
});
export const WARN = registerFindingCode({
  code: 'WARN',
  severity: 'warning',
  verdict: 'api',
  title: 'the kernel printed a WARN splat for API misuse',
  layer: 'machine',
});
export const OOPS = registerFindingCode({
  code: 'OOPS',
  severity: 'error',
  verdict: 'broken',
  title: 'a kernel access faulted (an oops)',
  layer: 'machine',
});
export const SIGSEGV = registerFindingCode({
  code: 'SIGSEGV',
  severity: 'error',
  verdict: 'broken',
  title: 'a process was killed by SIGSEGV',
  layer: 'mm',
});
export const SIGBUS = registerFindingCode({
  code: 'SIGBUS',
  severity: 'error',
  verdict: 'broken',
  title: 'a process was killed by SIGBUS',
  layer: 'mm',
});
export const IOMMU_FAULT = registerFindingCode({
  code: 'IOMMU_FAULT',
  severity: 'error',
  verdict: 'broken',
  title: 'a device access was refused by the IOMMU',
  layer: 'machine',
});
export const DMA_UNREACHABLE = registerFindingCode({
  code: 'DMA_UNREACHABLE',
  severity: 'error',
  verdict: 'broken',
  title: 'a device put an address on the bus that its interconnect cannot reach, or that decodes to nothing',
  layer: 'machine',
});

export interface ReportOptions {
  device?: string;
  driver?: string;
  agent?: string;
  details?: Record<string, unknown>;
  /** Override of the code's verdict (a code whose harm depends on the architecture). */
  verdict?: FindingVerdict;
}

/**
 * Records a finding. With `panicOnWarn` the finding is recorded and then a
 * `DmalabError` is thrown, as panic_on_warn stops the kernel.
 */
export function reportFinding(m: Machine, code: string, message: string, opts: ReportOptions = {}): Finding {
  const def = registry.get(code);
  if (def === undefined) throw new DmalabError(`unknown finding code ${code} (register it first)`);
  const f: Finding = {
    code,
    severity: def.severity,
    verdict: opts.verdict ?? def.verdict,
    message,
    step: m.clock.step,
    time: m.clock.time,
    ...(opts.device !== undefined ? { device: opts.device } : {}),
    ...(opts.driver !== undefined ? { driver: opts.driver } : {}),
    ...(m.clock.call !== '' ? { call: m.clock.call } : {}),
    agent: opts.agent ?? m.agent,
    ...(m.options.captureStacks !== 'none' ? { stack: captureStack() } : {}),
    ...(opts.details !== undefined ? { details: opts.details } : {}),
  };
  m.hw.findings.push(f);
  if (m.bus.wants.finding) m.bus.emit({ type: 'finding', code, verdict: f.verdict, message });
  if (m.options.panicOnWarn) {
    throw new DmalabError(`panic on warn: ${code}: ${message}`);
  }
  return f;
}

/** The findings recorded so far, in order. */
export function machineFindings(m: Machine): readonly Finding[] {
  return m.hw.findings;
}

/** Forgets every finding. */
export function clearFindings(m: Machine): void {
  m.hw.findings.length = 0;
}

const RANK: Readonly<Record<Verdict, number>> = { clean: 0, api: 1, latent: 2, broken: 3 };

/** The worse of two verdicts (clean < api < latent < broken). */
export function worstVerdict(a: Verdict, b: Verdict): Verdict {
  return RANK[a] >= RANK[b] ? a : b;
}

/** The run's verdict: the worst of its findings, `clean` when none. */
export function runVerdict(m: Machine): Verdict {
  let v: Verdict = 'clean';
  for (const f of m.hw.findings) v = worstVerdict(v, f.verdict);
  return v;
}

/** Where an API call was made: its name and step, and its stack with `captureStacks: 'mappings'`. */
export interface CallSite {
  call: string;
  step: number;
  stack?: string[];
}

/** The current call site, for records that outlive the call (live mappings, bounce slots). */
export function apiCallSite(m: Machine): CallSite {
  const site: CallSite = { call: m.clock.call, step: m.clock.step };
  if (m.options.captureStacks === 'mappings') site.stack = captureStack();
  return site;
}

// Stacks: the caller's frames, repo-relative, without dmalab's own frames.
const packageRoot = new URL('../../', import.meta.url).href;

/** The caller's stack as repo-relative `file:line:col` frames, dmalab's internals left out. */
export function captureStack(): string[] {
  // V8 keeps 10 frames by default; a finding raised by a listener deep in dmalab would lose the caller's.
  const E = Error as { stackTraceLimit?: number | undefined };
  const limit = E.stackTraceLimit;
  E.stackTraceLimit = 64;
  const raw = new Error().stack ?? '';
  E.stackTraceLimit = limit;
  const frames: string[] = [];
  for (const line of raw.split('\n').slice(1)) {
    const m = /\(?((?:file|node):[^\s)]+|\/[^\s)]+):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (m === null) continue;
    let file = m[1]!;
    if (file.startsWith('node:') || file.includes('/node_modules/')) continue;
    if (!file.startsWith('file:')) file = `file://${file}`;
    if (file.startsWith(packageRoot)) file = file.slice(packageRoot.length);
    // dmalab's own modules are not the user's code; test files are.
    if (/^(src|dist)\//.test(file) && !/\.test\.[cm]?[jt]s$/.test(file)) continue;
    const fn = /^\s*at\s+(?:async\s+)?([^\s(]+)\s+\(/.exec(line);
    frames.push(`${fn !== null ? `${fn[1]} ` : ''}${file}:${m[2]}:${m[3]}`);
  }
  return frames;
}
