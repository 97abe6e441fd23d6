/**
 * The benchmark entry point (run from dist/bench after `npm run build`).
 *
 *   npm run bench      all sizes (1k, 10k, 100k, 1M); writes docs/benchmarks.md and its chart
 *   npm run bench:ci   quick sizes (1k, 10k, 100k); exits 1 with one line per broken gate
 *
 * Options: --sizes 1000,100000  --cases cold,hot,...  --seed N  --budget MS (per case)
 *          --dataset orchestrator|classic (default orchestrator)  --no-write
 * Runs with --sizes, --cases or --dataset print and never write docs/.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CASES, importsUnderUlimit64, runSize, type CaseId, type SizeResult } from './cases.js';
import { DEFAULT_SHAPE, REPO_ROOT, SHAPES, type Shape } from './dataset.js';
import { ciFailures, consoleTable, evaluateTargets, latencySvg, loadText, machine, markdown, sizeLabel, targetsTable, type Run } from './report.js';

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    cases: { type: 'string' },
    seed: { type: 'string', default: '42' },
    budget: { type: 'string' },
    dataset: { type: 'string', default: DEFAULT_SHAPE },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
});

const ci = values.ci;
const sizes = values.sizes?.split(',').map(Number) ?? (ci ? [1_000, 10_000, 100_000] : [1_000, 10_000, 100_000, 1_000_000]);
const seed = Number(values.seed);
const budgetMs = Number(values.budget ?? (ci ? 400 : 1_500));
const only = values.cases === undefined ? undefined : new Set(values.cases.split(',') as CaseId[]);
for (const id of only ?? []) if (!(id in CASES)) fail(`unknown case "${id}"; known: ${Object.keys(CASES).join(', ')}`);
if (sizes.some((n) => !Number.isSafeInteger(n) || n <= 0)) fail(`--sizes must be positive integers, got ${values.sizes}`);
const shape = values.dataset as Shape;
if (!SHAPES.includes(shape)) fail(`--dataset must be one of ${SHAPES.join(', ')}, got "${values.dataset}"`);
// Fresh processes take 50 ms to seconds each: a budget per case, and at least 5 runs of each.
const processOptions = ci ? { budgetMs: 1_500, minSamples: 5, maxSamples: 12 } : { budgetMs: 4_000, minSamples: 5, maxSamples: 25 };

const started = performance.now();
const loadAtStart = os.loadavg()[0]!;
const ulimit64 = await importsUnderUlimit64();
const results: SizeResult[] = [];
for (const records of sizes) {
  console.error(`N = ${sizeLabel(records)}`);
  results.push(
    await runSize(records, {
      seed,
      shape,
      budgetMs,
      process: processOptions,
      rounds: ci ? 3 : 4,
      rebuildRuns: ci || records >= 1_000_000 ? 3 : 5,
      // CI keeps its gates' margins with fewer full scans; they are most of its time at 100k.
      scanMinIterations: ci ? 3 : 5,
      only,
      log: (line) => console.error(line),
    }),
  );
}

const custom = values.sizes !== undefined || values.cases !== undefined || shape !== DEFAULT_SHAPE;
const command = ci ? 'npm run bench:ci' : custom ? `node dist/bench/run.js ${process.argv.slice(2).join(' ')}` : 'npm run bench';
const run: Run = { sizes: results, command, seed, shape, ulimit64, date: new Date(), elapsedMs: performance.now() - started, load: { start: loadAtStart, end: os.loadavg()[0]! } };
const targets = evaluateTargets(run);
const targetsTitle = ci ? 'SPEC targets (for information: the CI gate is the three checks of bench:ci)' : 'SPEC targets';
console.log(`\n${consoleTable(run)}\n\n${targetsTitle}\n${targetsTable(targets)}\n\n${machine()}; ${loadText(run)}\n`);

const writeDocs = !ci && !values['no-write'] && !custom;
if (writeDocs) {
  const svgFile = 'benchmarks-latency.svg';
  writeFileSync(path.join(REPO_ROOT, 'docs', svgFile), latencySvg(run));
  writeFileSync(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), markdown(run, targets, svgFile));
  console.log('wrote docs/benchmarks.md and docs/benchmarks-latency.svg');
}

if (ci) {
  const failures = ciFailures(run);
  if (failures.length > 0) {
    console.error(`bench:ci failed: ${failures.join('; ')}`);
    process.exit(1);
  }
  console.log(`bench:ci passed (${((performance.now() - started) / 1000).toFixed(0)} s)`);
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}
