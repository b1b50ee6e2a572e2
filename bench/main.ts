/**
 * `npm run bench`: every benchmark, printing one JSON line per metric on
 * stdout and a readable line on stderr. Not part of `npm test`.
 */

import { allResults } from './lib.js';
import { machineBenchmarks } from './machine.bench.js';
import { scatterlistBenchmarks } from './scatterlist.bench.js';

process.stderr.write('machine layer\n');
await machineBenchmarks();
process.stderr.write('scatterlist\n');
await scatterlistBenchmarks();
const missed = allResults().filter((r) => r.pass === false);
process.stderr.write(
  missed.length === 0 ? 'all goals met\n' : `goals missed: ${missed.map((r) => r.metric).join('; ')}\n`,
);
