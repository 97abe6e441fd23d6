/**
 * tinybench, sized per case: one pilot call says how long a call takes, and the
 * iteration count is chosen to fit a time budget, so a 3 s full scan at 1M runs
 * a handful of times and a 10 µs hot fetch a few thousand. Cases that are
 * compared with each other run interleaved.
 */
import { performance } from 'node:perf_hooks';
import { Bench } from 'tinybench';

export interface Measurement {
  /** Latency samples in ms, sorted ascending. */
  samples: number[];
  medianMs: number;
  p25Ms: number;
  p75Ms: number;
}

export interface MeasureOptions {
  /** Time to spend measuring, in ms (warm-up gets up to a fifth more). */
  budgetMs: number;
  minIterations?: number;
  maxIterations?: number;
  /** Runs before each call, outside the timed window. */
  beforeEach?: () => unknown;
}

export interface Entry<Id extends string> {
  id: Id;
  fn: () => unknown;
  options: MeasureOptions;
}

/**
 * Measure several cases in alternating rounds (A B C A B C ...), so that a burst
 * of noise on a shared machine lands on all of them instead of skewing a ratio.
 * Each round is one tinybench run per case; samples are pooled across rounds.
 */
export async function measureInterleaved<Id extends string>(
  entries: Entry<Id>[],
  rounds: number,
): Promise<Map<Id, Measurement>> {
  const plans = [];
  for (const entry of entries) {
    const { budgetMs, minIterations = 5, maxIterations = 5_000, beforeEach } = entry.options;
    await beforeEach?.();
    const start = performance.now();
    const pilot = entry.fn();
    const isAsync = pilot instanceof Promise;
    await pilot;
    const pilotMs = Math.max(performance.now() - start, 0.001);
    const iterations = clamp(Math.round(budgetMs / pilotMs), minIterations, maxIterations);
    const caseRounds = Math.min(rounds, iterations);
    plans.push({
      entry,
      isAsync,
      rounds: caseRounds,
      perRound: Math.ceil(iterations / caseRounds),
      // Slow cases are warm after the pilot; fast ones get a fifth of the budget.
      warmupPerRound: Math.ceil(clamp(Math.round(budgetMs / 5 / pilotMs), 0, maxIterations / 5) / caseRounds),
      samples: [] as number[],
    });
  }
  for (let round = 0; round < rounds; round++) {
    for (const plan of plans) {
      if (round >= plan.rounds) continue;
      plan.samples.push(...(await runOnce(plan.entry, plan.isAsync, plan.perRound, plan.warmupPerRound)));
    }
  }
  return new Map(plans.map((p) => [p.entry.id, summarize(p.samples)]));
}

async function runOnce(entry: Entry<string>, isAsync: boolean, iterations: number, warmupIterations: number): Promise<number[]> {
  const bench = new Bench({
    name: entry.id,
    time: 0,
    iterations,
    warmup: warmupIterations > 0,
    warmupTime: 0,
    warmupIterations,
    retainSamples: true,
    throws: true,
  });
  const { beforeEach } = entry.options;
  // Say whether fn is async: tinybench would otherwise call it once more, untimed, to find out.
  bench.add(entry.id, entry.fn, { async: isAsync, ...(beforeEach && { beforeEach: async () => void (await beforeEach()) }) });
  const [task] = await bench.run();
  const result = task!.result;
  if (result.state !== 'completed') throw new Error(`${entry.id}: benchmark ${result.state}`);
  return [...(result.latency.samples ?? [])];
}

/** Median and quartiles of raw samples (ms), by linear interpolation. */
export function summarize(raw: number[]): Measurement {
  const samples = [...raw].sort((a, b) => a - b);
  return { samples, medianMs: quantile(samples, 0.5), p25Ms: quantile(samples, 0.25), p75Ms: quantile(samples, 0.75) };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}

/** "12.3 µs", "4.56 ms", "3.21 s": three significant digits. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1) return `${sig(ms * 1000)} µs`;
  if (ms < 1000) return `${sig(ms)} ms`;
  return `${sig(ms / 1000)} s`;
}

function sig(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}
