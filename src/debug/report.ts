/**
 * Raising the checker's findings: the kernel's prefix for dma-debug checks
 * (`DMA-API: <driver> <device>: `), the same shape for dmalab's own, the
 * driver of the device when one is bound, and "Mapped at" facts for
 * findings about a mapping.
 *
 * dma-debug prints only its first error unless `all_errors` is set; dmalab
 * records every finding, deliberately: a model run is short and each
 * finding carries its step, so nothing is lost in a flood.
 */

import { type FindingCode, type FindingVerdict, type Machine, reportFinding } from '../machine/index.js';
import { deviceDriverName } from '../mm/index.js';
import { dmaApiPrefix, dmalabPrefix } from './messages.js';
import type { Buf, DebugState, Entry } from './state.js';

/** Name and bound driver of device `id` (-1: no device). */
export function deviceNames(
  m: Machine,
  st: DebugState,
  id: number,
): { name: string | null; driver: string | null } {
  if (id < 0) return { name: null, driver: null };
  const bound = m.devices[id] === undefined ? null : deviceDriverName(m.devices[id]!);
  return { name: m.hw.devices[id]?.name ?? null, driver: st.devs[id]?.driver ?? bound };
}

/** Where a mapping was made, for a finding's details ("Mapped at"). */
export function mappedAt(src: Entry | Buf, buf?: Buf): Record<string, unknown> {
  const stack = buf?.stack ?? ('stack' in src ? src.stack : null);
  return { call: src.call, step: src.step, ...(stack !== null && stack !== undefined ? { stack } : {}) };
}

/** Raises a finding of `code` about device `dev` (-1 for none). */
export function raise(
  m: Machine,
  st: DebugState,
  code: FindingCode,
  dev: number,
  text: string,
  details: Record<string, unknown>,
  agent?: string,
  verdict?: FindingVerdict,
): void {
  const { name, driver } = deviceNames(m, st, dev);
  const prefix = code.verdict === 'api' ? dmaApiPrefix(name, driver) : dmalabPrefix(name, driver);
  reportFinding(m, code.code, prefix + text, {
    ...(name !== null ? { device: name } : {}),
    ...(driver !== null ? { driver } : {}),
    ...(agent !== undefined ? { agent } : {}),
    ...(verdict !== undefined ? { verdict } : {}),
    details: name !== null ? { device: name, ...details } : details,
  });
}
