/**
 * The `dmalab` command's structure: commander sub-commands, each with its
 * help and examples, and the exit-code contract — 0 when every result is
 * what its scenario declares, 1 when any differs, 2 for a usage or input
 * error (never a stack trace for those).
 */

import { Command, CommanderError, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { stableStringify, textTable } from '../debug/index.js';
import { DmalabError, PROFILE_NAMES, PROFILES } from '../machine/index.js';
import {
  builtinScenarios,
  runMatrix,
  runScenario,
  type ScenarioResult,
  scenarioReportJson,
} from '../scenario/index.js';
import { renderDemo } from './demo.js';
import { renderExplain } from './explain.js';
import { type Io, progress, wantsColour } from './io.js';
import { matrixResults, renderMatrixReport, renderResultsSarif, renderRuns, replayLines } from './report.js';
import { loadScenarios } from './scenarios.js';

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_DIFFERS = 1;
export const EXIT_USAGE = 2;

function profileArg(value: string, previous: string[]): string[] {
  if (!PROFILE_NAMES.includes(value)) {
    throw new InvalidArgumentError(`unknown profile '${value}' (known: ${PROFILE_NAMES.join(', ')})`);
  }
  return previous.includes(value) ? previous : [...previous, value];
}

/** `--seed N`: a decimal integer that fits the machine's 32-bit seed. */
export function seedArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n > 0xffff_ffff) {
    throw new InvalidArgumentError('must be an integer from 0 to 4294967295');
  }
  return n;
}

/** `--profile P` (repeatable): the profiles asked for, in the built-in order, or all. */
export function profileOption(): Option<'-p, --profile <name>', undefined, string[], string[], false> {
  return new Option('-p, --profile <name>', 'a profile to run on (repeatable)')
    .argParser(profileArg)
    .default([] as string[], 'all');
}

/** The profiles asked for with `--profile`, in the built-in order; all of them when none was asked for. */
export function chosenProfiles(asked: readonly string[]): string[] {
  return asked.length === 0 ? [...PROFILE_NAMES] : PROFILE_NAMES.filter((p) => asked.includes(p));
}

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

/** The command tree; `code.value` receives each action's exit code. */
export function buildProgram(io: Io, code: { value: number }, version: string): Command {
  const program = new Command('dmalab')
    .description(
      'An executable model of the Linux DMA and device-memory subsystem: runs litmus-style ' +
        'scenarios on simulated machines and says which write was lost and why.',
    )
    .version(version)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s),
      writeErr: (s) => io.err(s),
      outputError: (s, write) => write(`dmalab: ${s.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      examples('dmalab matrix', 'dmalab list', 'dmalab explain --profile arm64-noncoherent dma_map_single'),
    );

  program
    .command('run')
    .summary('run scenario files or built-in scenarios: verdicts, findings, bytes')
    .description(
      'run scenarios (files, or built-in ones by name) on their profiles and show verdicts, findings and ' +
        'the final condition on bytes; exit 1 when a result is not the one the scenario declares',
    )
    .argument('<scenario...>', 'a scenario file, or a built-in scenario name (builtin:NAME or NAME)')
    .addOption(profileOption().default([] as string[], "the scenario's own"))
    .option('-s, --seed <n>', 'scheduler and machine seed', seedArg, 0)
    .option('--json', 'machine-readable output (deterministic)')
    .option('--sarif <file>', 'also write the findings as SARIF 2.1.0 to this file')
    .option('--timeline', 'print the steps each agent took')
    .addHelpText(
      'after',
      examples(
        'dmalab run scenarios/sound-ring-mmap-remap.yaml',
        'dmalab run my-case.yaml --profile parisc --seed 3 --timeline',
        'dmalab run sound-ring-mmap-fault --json',
        'dmalab run my-case.yaml --sarif findings.sarif',
      ),
    )
    .action((targets, opts) => {
      const scenarios = loadScenarios(io, targets);
      const results: ScenarioResult[] = [];
      for (const s of scenarios) {
        const profiles = opts.profile.length > 0 ? chosenProfiles(opts.profile) : s.profiles;
        for (const profile of profiles) results.push(runScenario(s, { profile, seed: opts.seed }));
      }
      if (opts.sarif !== undefined) io.writeText(opts.sarif, renderResultsSarif(results));
      const format = {
        color: wantsColour(io, 'stdout'),
        // Finding stacks name frames of the caller's own code; a scenario run from the command line has none.
        stacks: false,
        timeline: opts.timeline === true,
      };
      io.out(opts.json === true ? scenarioReportJson(results) : renderRuns(results, format));
      io.err(replayLines(scenarios, results));
      code.value = results.every((r) => r.matches) ? EXIT_OK : EXIT_DIFFERS;
    });

  program
    .command('matrix')
    .summary('every scenario × every profile as a table of verdicts (default: the seed suite)')
    .description(
      'run every scenario on every profile and print verdicts as a table, marked against each ' +
        "scenario's declared expectation, with the first operation whose observed bytes diverge; " +
        'with no argument, the built-in seed suite',
    )
    .argument('[scenario...]', 'scenario files, directories of *.yaml files, or built-in names')
    .addOption(profileOption().default([] as string[], "each scenario's own"))
    .option('-s, --seed <n>', 'scheduler and machine seed', seedArg, 0)
    .option('--json', 'machine-readable output (deterministic)')
    .option('--sarif <file>', 'also write the findings as SARIF 2.1.0 to this file')
    .addHelpText(
      'after',
      examples(
        'dmalab matrix',
        'dmalab matrix scenarios/',
        'dmalab matrix a.yaml b.yaml -p x86_64 -p parisc --json',
      ),
    )
    .action((targets, opts) => {
      const scenarios = targets.length === 0 ? [...builtinScenarios()] : loadScenarios(io, targets);
      const bar = progress(io);
      let mx: ReturnType<typeof runMatrix>;
      try {
        mx = runMatrix(scenarios, {
          ...(opts.profile.length > 0 ? { profiles: chosenProfiles(opts.profile) } : {}),
          seed: opts.seed,
          onProgress: bar.onProgress,
        });
      } finally {
        bar.stop();
      }
      const results = matrixResults(mx);
      if (opts.sarif !== undefined) io.writeText(opts.sarif, renderResultsSarif(results));
      io.out(opts.json === true ? scenarioReportJson(mx) : renderMatrixReport(mx, wantsColour(io, 'stdout')));
      io.err(replayLines(scenarios, results));
      code.value = results.every((r) => r.matches) ? EXIT_OK : EXIT_DIFFERS;
    });

  program
    .command('list')
    .description('list the built-in scenarios and profiles')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('dmalab list', 'dmalab list --json'))
    .action((opts) => {
      io.out(renderList(opts.json === true, wantsColour(io, 'stdout')));
      code.value = EXIT_OK;
    });

  program
    .command('explain')
    .summary('the semantics table, measured: cache operations, bounces, attributes per profile')
    .description(
      'the executable semantics table: for each profile, call and direction, the cache operations, ' +
        'bounce copies and attributes honoured — measured by running each call on a fresh machine',
    )
    .argument('[call]', 'one DMA API call, by kernel or dmalab name (dma_map_single, dmaMapSingle)')
    .addOption(profileOption())
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      examples(
        'dmalab explain',
        'dmalab explain --profile arm64-noncoherent',
        'dmalab explain dma_sync_single_for_cpu -p x86_64 -p parisc-pcxl',
        'dmalab explain --json',
      ),
    )
    .action((call, opts) => {
      const profiles = chosenProfiles(opts.profile);
      const format = { json: opts.json === true, color: wantsColour(io, 'stdout') };
      io.out(renderExplain({ profiles, ...(call !== undefined ? { call } : {}) }, format));
      code.value = EXIT_OK;
    });

  program
    .command('demo')
    .description("show how each profile's caches and devices treat the same bytes, with no DMA API at all")
    .addHelpText('after', examples('dmalab demo'))
    .action(() => {
      io.out(renderDemo());
      code.value = EXIT_OK;
    });

  return program;
}

function renderList(json: boolean, color: boolean): string {
  const profiles = PROFILE_NAMES.map((name) => ({ name, description: PROFILES[name]!.description }));
  const scenarios = builtinScenarios().map((s) => ({
    name: s.name,
    seed: s.seed ?? null,
    intent: s.intent,
    profiles: s.profiles,
    expect: s.expect,
  }));
  if (json) return `${stableStringify({ profiles, scenarios })}\n`;
  const notClean = (s: (typeof scenarios)[number]) =>
    Object.entries(s.expect)
      .filter(([, v]) => v !== 'clean')
      .map(([p, v]) => `${p}: ${v}`)
      .join(', ') || 'clean everywhere';
  const lines = [
    'scenarios (the seed suite; dmalab matrix runs them all):',
    ...textTable(
      ['name', 'seed', 'expects', 'intent'],
      scenarios.map((s) => [s.name, s.seed ?? '', notClean(s), s.intent]),
      color,
    ).map((l) => `  ${l}`),
    '',
    'profiles:',
    ...textTable(
      ['name', 'description'],
      profiles.map((p) => [p.name, p.description]),
      color,
    ).map((l) => `  ${l}`),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Runs the command line and returns the exit code. Usage errors (commander's)
 * and input errors (`DmalabError`) print one line on stderr and give 2; help
 * and version give 0. Anything else is a bug in dmalab and propagates.
 */
export function runCli(argv: readonly string[], io: Io, version = '0.0.0'): number {
  const code = { value: EXIT_OK };
  const program = buildProgram(io, code, version);
  try {
    if (argv.length === 0) {
      io.err(program.helpInformation());
      return EXIT_USAGE;
    }
    program.parse(argv as string[], { from: 'user' });
    return code.value;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof DmalabError) {
      io.err(`dmalab: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}
