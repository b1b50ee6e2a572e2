/**
 * `npm run bench [group]`: the benchmarks, printing one JSON line per metric
 * on stdout and a readable line on stderr. Not part of `npm test`.
 *
 * Without a group, each group runs in a fresh Node process, one after the
 * other: in one process the JIT state an earlier group leaves behind (call
 * sites grown polymorphic over every profile) slows later groups unevenly —
 * the checker's parisc ratio measured 0.16 after the other groups and 0.50
 * alone — so the figures would depend on the order of the groups.
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { boBenchmarks } from './bo.bench.js';
import { debugBenchmarks } from './debug.bench.js';
import { dmaBenchmarks } from './dma.bench.js';
import { fenceBenchmarks } from './fence.bench.js';
import { allResults, type Metric } from './lib.js';
import { machineBenchmarks } from './machine.bench.js';
import { mmBenchmarks } from './mm.bench.js';
import { scatterlistBenchmarks } from './scatterlist.bench.js';

const GROUPS: Record<string, { title: string; run: () => Promise<void> }> = {
  machine: { title: 'machine layer', run: machineBenchmarks },
  dma: { title: 'DMA API', run: dmaBenchmarks },
  mm: { title: 'mm layer', run: mmBenchmarks },
  debug: { title: 'checker', run: debugBenchmarks },
  scatterlist: { title: 'scatterlist', run: scatterlistBenchmarks },
  fence: { title: 'fences', run: fenceBenchmarks },
  bo: { title: 'buffer objects', run: boBenchmarks },
};

function summary(missed: readonly string[]): void {
  process.stderr.write(missed.length === 0 ? 'all goals met\n' : `goals missed: ${missed.join('; ')}\n`);
}

const only = process.argv[2];
const child = process.env.DMALAB_BENCH_CHILD === '1';
if (only !== undefined && GROUPS[only] === undefined) {
  process.stderr.write(`bench: unknown group '${only}' (groups: ${Object.keys(GROUPS).join(', ')})\n`);
  process.exit(2);
}

if (only !== undefined) {
  const g = GROUPS[only]!;
  process.stderr.write(`${g.title}\n`);
  await g.run();
  if (!child)
    summary(
      allResults()
        .filter((r) => r.pass === false)
        .map((r) => r.metric),
    );
} else {
  const missed: string[] = [];
  let failed = false;
  for (const name of Object.keys(GROUPS)) {
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), name], {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      env: { ...process.env, DMALAB_BENCH_CHILD: '1' },
      maxBuffer: 64 * 1024 * 1024,
    });
    process.stdout.write(r.stdout ?? '');
    for (const line of (r.stdout ?? '').split('\n')) {
      if (line === '') continue;
      const m = JSON.parse(line) as Metric;
      if (m.pass === false) missed.push(m.metric);
    }
    if (r.status !== 0) {
      failed = true;
      process.stderr.write(`bench: group '${name}' failed (exit ${r.status ?? r.signal})\n`);
    }
  }
  summary(missed);
  if (failed) process.exit(1);
}
