/**
 * Benchmark helpers: ratios measured in one process and harness, alternating
 * the order of baseline and candidate every round, median of 7 rounds
 * (reference/stack.md: absolute times differ by harness, ratios do not).
 * Each metric prints one JSON line and a human line.
 */

import { Bench } from 'tinybench';

export interface Metric {
  metric: string;
  median: number;
  min: number;
  max: number;
  unit: string;
  goal?: string;
  pass?: boolean;
}

const results: Metric[] = [];

async function p50(fn: () => void, timeMs: number): Promise<number> {
  const bench = new Bench({ time: timeMs, warmupTime: 50 });
  bench.add('x', fn);
  await bench.run();
  const r = bench.tasks[0]!.result;
  if (r.state !== 'completed') throw new Error(`benchmark did not complete: ${r.state}`);
  return r.latency.p50;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Speed of `candidate` relative to `baseline` (1.0 = as fast; 0.5 = half the speed). */
export async function ratio(
  metric: string,
  baseline: () => void,
  candidate: () => void,
  goal?: { min: number; text: string },
  rounds = 7,
  timeMs = 150,
): Promise<Metric> {
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let b: number;
    let c: number;
    if (r % 2 === 0) {
      b = await p50(baseline, timeMs);
      c = await p50(candidate, timeMs);
    } else {
      c = await p50(candidate, timeMs);
      b = await p50(baseline, timeMs);
    }
    ratios.push(b / c);
  }
  return record({
    metric,
    median: median(ratios),
    min: Math.min(...ratios),
    max: Math.max(...ratios),
    unit: 'x baseline speed',
    ...(goal ? { goal: goal.text, pass: median(ratios) >= goal.min } : {}),
  });
}

/** Operations per second of `fn`, median of rounds. */
export async function rate(
  metric: string,
  fn: () => void,
  goal?: { min: number; text: string },
  rounds = 5,
  timeMs = 200,
): Promise<Metric> {
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) rates.push(1000 / (await p50(fn, timeMs)));
  return record({
    metric,
    median: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    unit: 'per second',
    ...(goal ? { goal: goal.text, pass: median(rates) >= goal.min } : {}),
  });
}

/** Records a figure measured some other way (memory, a one-off time). */
export function record(m: Metric): Metric {
  results.push(m);
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  const verdict = m.pass === undefined ? '' : m.pass ? '  [goal met]' : '  [GOAL MISSED]';
  process.stdout.write(`${JSON.stringify(m)}\n`);
  process.stderr.write(
    `  ${m.metric}: ${fmt(m.median)} ${m.unit} (min ${fmt(m.min)}, max ${fmt(m.max)})${m.goal ? `; goal ${m.goal}` : ''}${verdict}\n`,
  );
  return m;
}

export function allResults(): readonly Metric[] {
  return results;
}
