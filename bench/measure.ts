/**
 * tinybench, sized per case: one pilot call says how long a call takes, and the
 * iteration count is chosen to fit a time budget, so a 3 s full scan at 1M runs
 * a handful of times and a 10 µs hot fetch a few thousand. Cases that are
 * compared with each other run interleaved.
 */
import { spawn } from 'node:child_process';
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

export interface ProcessEntry<Id extends string> {
  id: Id;
  /** The command line, argv[0] first; a function when each run needs fresh arguments. */
  argv: readonly string[] | (() => readonly string[]);
}

export interface ProcessOptions {
  /** Time to spend per case, in ms: it sets the sample count, within [minSamples, maxSamples]. */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** Checks a run's stdout (the pilot's and every sample's); throws to stop the benchmark. */
  check?: (id: string, stdout: string) => void;
}

export interface ProcessMeasurement {
  /** Spawn to exit, as the parent sees it. */
  wall: Measurement;
  /** The child's own user + system CPU time, from its `cpu-us <n>` stdout line; absent if it printed none. */
  cpu?: Measurement;
}

/** The line a child prints at exit for ProcessMeasurement.cpu: `node -e` code, or the body of an exit handler. */
export const REPORT_CPU = "process.on('exit',()=>{const u=process.cpuUsage();process.stdout.write('cpu-us '+(u.user+u.system)+'\\n')})";

/**
 * Fresh processes, timed from the parent: spawn to exit, wall time, and the CPU
 * time the child reports (wall time is what a run waits for; CPU time barely
 * moves with the load other work puts on a shared machine). One untimed pilot
 * per case (it warms the page cache and sets the sample count), then the cases
 * take turns one run at a time (A B C A B C ...), so that a burst of load lands
 * on all of them. tinybench adds nothing at this scale (tens of ms to seconds
 * per run, a handful of runs), hence a plain loop.
 */
export async function measureProcesses<Id extends string>(
  entries: ProcessEntry<Id>[],
  options: ProcessOptions,
): Promise<Map<Id, ProcessMeasurement>> {
  const plans = [];
  for (const entry of entries) {
    const pilot = await timeProcess(entry, options.check);
    const runs = clamp(Math.round(options.budgetMs / pilot.wallMs), options.minSamples, options.maxSamples);
    plans.push({ entry, runs, wall: [] as number[], cpu: [] as number[] });
  }
  const rounds = Math.max(...plans.map((p) => p.runs));
  for (let round = 0; round < rounds; round++) {
    for (const plan of plans) {
      if (round >= plan.runs) continue;
      const { wallMs, cpuMs } = await timeProcess(plan.entry, options.check);
      plan.wall.push(wallMs);
      if (cpuMs !== undefined) plan.cpu.push(cpuMs);
    }
  }
  return new Map(
    plans.map((p) => [p.entry.id, { wall: summarize(p.wall), ...(p.cpu.length === p.wall.length && { cpu: summarize(p.cpu) }) }]),
  );
}

async function timeProcess(
  entry: ProcessEntry<string>,
  check?: (id: string, stdout: string) => void,
): Promise<{ wallMs: number; cpuMs: number | undefined }> {
  const [command, ...args] = typeof entry.argv === 'function' ? entry.argv() : entry.argv;
  const start = performance.now();
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // Time to 'exit'; the pipes may deliver their last bytes after it, by 'close'.
  let ms = NaN;
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => void (ms = performance.now() - start));
    child.once('close', (exitCode) => resolve(exitCode));
  });
  if (code !== 0) throw new Error(`${entry.id}: ${command} ${args.slice(0, 2).join(' ')} exited with ${code}: ${stderr.trim().slice(0, 500)}`);
  const cpuLine = /^cpu-us (\d+)$/m.exec(stdout);
  check?.(entry.id, stdout.replace(/^cpu-us \d+\n?/m, ''));
  return { wallMs: ms, cpuMs: cpuLine ? Number(cpuLine[1]) / 1000 : undefined };
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
  const size = Math.abs(ms);
  if (size < 1) return `${sig(ms * 1000)} µs`;
  if (size < 1000) return `${sig(ms)} ms`;
  return `${sig(ms / 1000)} s`;
}

function sig(n: number): string {
  const size = Math.abs(n);
  return size >= 100 ? n.toFixed(0) : size >= 10 ? n.toFixed(1) : n.toFixed(2);
}
