/**
 * Helpers the built-in scenarios share: defining one, byte fills, and
 * page-sized buffers that do not touch (so that a scatterlist built from
 * them has one entry per page).
 */

import {
  allocPages,
  type DmaAddr,
  DmalabError,
  formatHex,
  GFP_KERNEL,
  type Machine,
  type Page,
  PROFILE_NAMES,
  type Verdict,
} from '../../machine/index.js';
import { type BuiltinRun, registerBuiltin } from '../run.js';
import type { RunContext } from '../runtime.js';
import type { Scenario, ScenarioMachineOptions } from '../types.js';

export interface BuiltinMeta {
  readonly name: string;
  readonly intent: string;
  readonly seed: string;
  readonly profiles?: readonly string[];
  readonly expect?: Readonly<Record<string, Verdict>>;
  readonly machine?: ScenarioMachineOptions;
}

/** Registers a built-in scenario (every profile unless it says otherwise). */
export function builtin(meta: BuiltinMeta, setup: (m: Machine, ctx: RunContext) => BuiltinRun): Scenario {
  return registerBuiltin({
    scenario: {
      name: meta.name,
      intent: meta.intent,
      seed: meta.seed,
      profiles: meta.profiles ?? PROFILE_NAMES.slice(),
      expect: meta.expect ?? {},
      source: `builtin:${meta.name}`,
      machine: meta.machine ?? {},
      body: { kind: 'builtin' },
    },
    setup,
  });
}

/** The same expected verdict on every built-in profile. */
export function everywhere(verdict: Verdict): Record<string, Verdict> {
  return Object.fromEntries(PROFILE_NAMES.map((p) => [p, verdict]));
}

export function filled(length: number, value: number): Uint8Array {
  return new Uint8Array(length).fill(value);
}

export function hex(n: number): string {
  return formatHex(n);
}

/** `n` single pages no two of which are adjacent (each becomes its own scatterlist entry). */
export function scatteredPages(m: Machine, n: number): Page[] {
  const pages: Page[] = [];
  for (let i = 0; i < n; i++) {
    const p = allocPages(m, GFP_KERNEL, 0);
    allocPages(m, GFP_KERNEL, 0); // a gap page, kept allocated
    if (p === null) throw new DmalabError('the machine ran out of pages while building the scenario');
    pages.push(p);
  }
  return pages;
}

/** A device page list entry as the driver programmed it, for the timeline. */
export function pageList(addrs: readonly DmaAddr[]): string {
  return `[${addrs.map(hex).join(', ')}]`;
}
