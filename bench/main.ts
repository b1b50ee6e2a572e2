/**
 * `npm run bench`: every benchmark, printing one JSON line per metric on
 * stdout and a readable line on stderr. Not part of `npm test`.
 */

import { boBenchmarks } from './bo.bench.js';
import { debugBenchmarks } from './debug.bench.js';
import { dmaBenchmarks } from './dma.bench.js';
import { fenceBenchmarks } from './fence.bench.js';
import { allResults } from './lib.js';
import { machineBenchmarks } from './machine.bench.js';
import { mmBenchmarks } from './mm.bench.js';
import { scatterlistBenchmarks } from './scatterlist.bench.js';

const only = process.argv[2];
if (only === undefined || only === 'machine') {
  process.stderr.write('machine layer\n');
  await machineBenchmarks();
}
if (only === undefined || only === 'dma') {
  process.stderr.write('DMA API\n');
  await dmaBenchmarks();
}
if (only === undefined || only === 'mm') {
  process.stderr.write('mm layer\n');
  await mmBenchmarks();
}
if (only === undefined || only === 'debug') {
  process.stderr.write('checker\n');
  await debugBenchmarks();
}
if (only === undefined || only === 'scatterlist') {
  process.stderr.write('scatterlist\n');
  await scatterlistBenchmarks();
}
if (only === undefined || only === 'fence') {
  process.stderr.write('fences\n');
  await fenceBenchmarks();
}
if (only === undefined || only === 'bo') {
  process.stderr.write('buffer objects\n');
  await boBenchmarks();
}
const missed = allResults().filter((r) => r.pass === false);
process.stderr.write(
  missed.length === 0 ? 'all goals met\n' : `goals missed: ${missed.map((r) => r.metric).join('; ')}\n`,
);
