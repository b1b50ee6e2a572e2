/**
 * Finding the scenarios a command line names: files, directories of files,
 * or built-in scenarios by name. The core cannot read files (it runs in the
 * browser too), so reading happens here and the core parses the text.
 */

import { DmalabError } from '../machine/index.js';
import { builtinScenarios, parseScenario, type Scenario } from '../scenario/index.js';
import type { Io } from './io.js';

const BUILTIN = 'builtin:';
const SCENARIO_FILE = /\.ya?ml$/;

function builtin(name: string): Scenario | undefined {
  return builtinScenarios().find((s) => s.name === name);
}

/**
 * The scenarios `targets` name, in order: `builtin:NAME` or a bare built-in
 * name, a scenario file, or a directory (its *.yaml and *.yml files, sorted).
 * A name used twice is an input error, since results are keyed by name.
 */
export function loadScenarios(io: Io, targets: readonly string[]): Scenario[] {
  const out: Scenario[] = [];
  for (const t of targets) {
    if (t.startsWith(BUILTIN)) {
      const s = builtin(t.slice(BUILTIN.length));
      if (s === undefined)
        throw new DmalabError(`no built-in scenario '${t.slice(BUILTIN.length)}' (see dmalab list)`);
      out.push(s);
      continue;
    }
    const entries = io.listDir(t);
    if (entries !== null) {
      const files = entries.filter((f) => SCENARIO_FILE.test(f));
      if (files.length === 0)
        throw new DmalabError('no *.yaml scenario files in this directory', { file: t });
      for (const f of files) out.push(parseScenario(f, io.readText(f)));
      continue;
    }
    let text: string;
    try {
      text = io.readText(t);
    } catch (e) {
      const s = builtin(t);
      if (s === undefined) throw e;
      out.push(s);
      continue;
    }
    out.push(parseScenario(t, text));
  }
  const seen = new Map<string, string>();
  for (const s of out) {
    const first = seen.get(s.name);
    if (first !== undefined) {
      throw new DmalabError(`scenario '${s.name}' is given twice (${first} and ${s.source})`);
    }
    seen.set(s.name, s.source);
  }
  return out;
}

/** Quotes an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
