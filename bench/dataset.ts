/**
 * Deterministic benchmark data in the shape existing logs hold: one
 * JSON.stringify'd ExperienceRecord per line, 8 domains with a Zipf-like skew.
 * Two shapes:
 *
 * - `orchestrator` (the default; SPEC "Performance", issue 10): what the older
 *   orchestrator's logs hold. Runs of 1-8 records that share runId, manifestPath
 *   and createdAt (one recordBatch each; groupId null), summaries of 20-32 words,
 *   1-4 toolStats, full-precision scores (Math.random-like doubles), lines of
 *   ~800 bytes.
 * - `classic`: the first benchmark data: one run per record, groupIds, summaries
 *   of 8-32 words, scores rounded to 4 decimals, lines of ~500-800 bytes.
 *
 * The same (shape, count, seed) always gives the same bytes, so a log is generated
 * once and cached under bench/.cache/; each run copies it into a fresh temp store.
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExperienceInput, ExperienceRecord } from '../src/index.js';

/** The repository root, whether this file runs from bench/ or from dist/bench/. */
export const REPO_ROOT = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));
export const CACHE_DIR = path.join(REPO_ROOT, 'bench', '.cache');

export const BENCH_TASK = 'bench-task';

export const SHAPES = ['orchestrator', 'classic'] as const;
export type Shape = (typeof SHAPES)[number];
export const DEFAULT_SHAPE: Shape = 'orchestrator';

/** Bump when a shape's output changes: cached logs are keyed by it, the shape, the size and the seed. */
const DATASET_VERSION: Record<Shape, number> = { classic: 1, orchestrator: 1 };

/** Eight domains, most common first: domain i is drawn with weight 1 / (i + 1). */
export const DOMAINS = [
  'implementation',
  'debugging',
  'testing',
  'refactoring',
  'performance',
  'documentation',
  'security',
  'infrastructure',
] as const;

const DOMAIN_CDF = cumulative(DOMAINS.map((_, i) => 1 / (i + 1)));

const TOOLS = ['shell', 'editor', 'search', 'browser', 'python', 'git', 'test-runner', 'linter'];
const VERBS = ['fixed', 'added', 'removed', 'rewrote', 'profiled', 'cached', 'split', 'merged', 'traced', 'retried',
  'validated', 'documented', 'simplified', 'batched', 'inlined', 'guarded', 'renamed', 'bisected', 'pinned', 'migrated'];
const ADJECTIVES = ['flaky', 'slow', 'stale', 'racy', 'missing', 'duplicate', 'nested', 'unbounded', 'partial',
  'corrupt', 'legacy', 'noisy', 'silent', 'expensive', 'fragile', 'optional', 'recursive', 'blocking'];
const NOUNS = ['retry loop', 'lock file', 'index', 'parser', 'cache', 'config loader', 'upload queue', 'schema',
  'migration', 'test fixture', 'error message', 'timeout', 'connection pool', 'log rotation', 'prompt template',
  'token budget', 'file watcher', 'checksum', 'CLI flag', 'build step', 'query planner', 'rate limiter'];
const PLACES = ['the uploader', 'the scheduler', 'the orchestrator', 'the API client', 'the worker pool',
  'the storage layer', 'the CI pipeline', 'the release script', 'the auth middleware', 'the metrics exporter'];
const CLAUSES = ['so that reruns stop timing out', 'after reproducing it with a seeded fixture',
  'which halved the p95 latency', 'without touching the public API', 'because the old path leaked handles',
  'and added a regression test for it', 'then verified it against the nightly logs',
  'to keep memory flat on large inputs', 'and wrote down why in the changelog', 'before the next release cut'];

/** mulberry32: small, fast, and good enough to make benchmark data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;

const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
const int = (rand: Rand, min: number, max: number): number => min + Math.floor(rand() * (max - min + 1));
const hex = (rand: Rand, digits: number): string => {
  let out = '';
  for (let i = 0; i < digits; i++) out += Math.floor(rand() * 16).toString(16);
  return out;
};
const round = (n: number, decimals: number): number => Math.round(n * 10 ** decimals) / 10 ** decimals;

export function pickDomain(rand: Rand): string {
  const u = rand();
  const i = DOMAIN_CDF.findIndex((c) => u < c);
  return DOMAINS[i < 0 ? DOMAINS.length - 1 : i]!;
}

/** A summary of 8 to 32 words: one or two "verb the adjective noun in place" sentences. */
function summary(rand: Rand): string {
  let words = `${sentence(rand)} ${pick(rand, CLAUSES)}`.split(' ');
  if (rand() < 0.5) words = words.concat(sentence(rand).split(' '));
  return words.slice(0, 32).join(' ');
}

/** A summary of exactly 20 to 32 words, sentences and clauses until it is long enough. */
function longSummary(rand: Rand): string {
  const target = int(rand, 20, 32);
  let words: string[] = [];
  while (words.length < target) words = words.concat(`${sentence(rand)} ${pick(rand, CLAUSES)}`.split(' '));
  return words.slice(0, target).join(' ');
}

function sentence(rand: Rand): string {
  return `${pick(rand, VERBS)} the ${pick(rand, ADJECTIVES)} ${pick(rand, NOUNS)} in ${pick(rand, PLACES)}`;
}

function toolStats(rand: Rand): ExperienceInput['toolStats'] {
  return Array.from({ length: int(rand, 1, 4) }, () => ({
    tool: pick(rand, TOOLS),
    tokens: int(rand, 40, 24_000),
    latencyMs: round(50 + rand() * 9_000, 1),
    costUsd: round(rand() * 0.2, 5),
  }));
}

/** Tool stats as the orchestrator measured them: integer latencies, costs as computed (unrounded). */
function measuredToolStats(rand: Rand): ExperienceInput['toolStats'] {
  return Array.from({ length: int(rand, 1, 4) }, () => {
    const tokens = int(rand, 40, 24_000);
    return { tool: pick(rand, TOOLS), tokens, latencyMs: int(rand, 50, 90_000), costUsd: tokens * 0.000_003 * (0.5 + rand()) };
  });
}

/** A classic-shape recordBatch input; `taskId` defaults to the bench task. */
export function makeInput(rand: Rand, taskId = BENCH_TASK): ExperienceInput {
  return {
    runId: `run-${hex(rand, 10)}`,
    taskId,
    epoch: rand() < 0.1 ? null : int(rand, 0, 40),
    groupId: rand() < 0.3 ? null : `grp-${hex(rand, 8)}`,
    summary: summary(rand),
    reward: { gtScore: round(rand(), 4), relativeRank: round(rand(), 4) },
    toolStats: toolStats(rand),
    stampSignature: hex(rand, 64),
    domain: pickDomain(rand),
  };
}

/** One run of an orchestrator: the runId, epoch and (derived) manifestPath its records share. */
interface Run {
  runId: string;
  epoch: number | null;
  manifestPath: string;
}

function newRun(rand: Rand, ms: number, taskId: string): Run {
  const runId = `${new Date(ms).toISOString().replace(/[:.]/g, '-')}-${hex(rand, 8)}`;
  return { runId, epoch: rand() < 0.1 ? null : int(rand, 0, 40), manifestPath: `.runs/${taskId}/cli/${runId}/manifest.json` };
}

function orchestratorInput(rand: Rand, run: Run, taskId: string): ExperienceInput {
  return {
    runId: run.runId,
    taskId,
    epoch: run.epoch,
    groupId: null,
    summary: longSummary(rand),
    reward: { gtScore: rand(), relativeRank: rand() },
    toolStats: measuredToolStats(rand),
    stampSignature: hex(rand, 64),
    domain: pickDomain(rand),
  };
}

/**
 * One recordBatch's inputs, as a run of `shape` writes them: in the orchestrator
 * shape one run's records (shared runId); in the classic shape unrelated ones.
 * Pass the batch's manifestPath to recordBatch as `batch.manifestPath`.
 */
export function makeBatch(
  rand: Rand,
  size: number,
  shape: Shape = DEFAULT_SHAPE,
  taskId = BENCH_TASK,
): { inputs: ExperienceInput[]; manifestPath: string } {
  if (shape === 'classic') return { inputs: Array.from({ length: size }, () => makeInput(rand, taskId)), manifestPath: '.runs/bench/manifest.json' };
  const run = newRun(rand, START_MS, taskId);
  return { inputs: Array.from({ length: size }, () => orchestratorInput(rand, run, taskId)), manifestPath: run.manifestPath };
}

// 2025-01-01T00:00:00Z; records are ~20 s apart on average, in log order.
const START_MS = Date.UTC(2025, 0, 1);

/** A record as an older writer appended it from `input`. */
function recordOf(input: ExperienceInput, rand: Rand, ms: number, manifestPath: string): ExperienceRecord {
  const { summary: summary32, ...rest } = input;
  return {
    id: `exp-${ms.toString(36)}-${hex(rand, 6)}`,
    runId: rest.runId,
    taskId: rest.taskId,
    epoch: rest.epoch,
    groupId: rest.groupId,
    summary32,
    reward: rest.reward,
    toolStats: rest.toolStats,
    stampSignature: rest.stampSignature,
    domain: rest.domain,
    createdAt: new Date(ms).toISOString(),
    manifestPath,
  };
}

/**
 * Records as older writers would have appended them. `clock` carries the
 * createdAt of the previous batch so that appends made later keep time moving.
 */
export function* makeRecords(count: number, seed: number, clock = { ms: START_MS }, taskId = BENCH_TASK, shape: Shape = DEFAULT_SHAPE): Generator<ExperienceRecord> {
  const rand = prng(seed);
  for (let made = 0; made < count; ) {
    if (shape === 'classic') {
      clock.ms += int(rand, 1_000, 40_000);
      const input = makeInput(rand, taskId);
      yield recordOf(input, rand, clock.ms, `.runs/${input.runId}/manifest.json`);
      made++;
      continue;
    }
    // One run: 1-8 records written by one recordBatch, so they share its createdAt.
    clock.ms += int(rand, 8_000, 320_000);
    const run = newRun(rand, clock.ms, taskId);
    const size = Math.min(int(rand, 1, 8), count - made);
    for (let i = 0; i < size; i++) yield recordOf(orchestratorInput(rand, run, taskId), rand, clock.ms, run.manifestPath);
    made += size;
  }
}

/** `count` log lines (each ending in "\n") for `seed`, in 4 MiB-ish blocks. */
export function* logBlocks(
  count: number,
  seed: number,
  clock = { ms: START_MS },
  taskId = BENCH_TASK,
  shape: Shape = DEFAULT_SHAPE,
): Generator<string> {
  let block = '';
  for (const record of makeRecords(count, seed, clock, taskId, shape)) {
    block += JSON.stringify(record) + '\n';
    if (block.length >= 4 << 20) {
      yield block;
      block = '';
    }
  }
  if (block !== '') yield block;
}

/** The whole text of `count` lines: for small appends (a foreign writer's batch). */
export function logText(count: number, seed: number, clock = { ms: START_MS }, shape: Shape = DEFAULT_SHAPE): string {
  return [...logBlocks(count, seed, clock, BENCH_TASK, shape)].join('');
}

/** Path of the cached log of `count` records for `seed`, generating it on first use. */
export async function cachedLog(count: number, seed: number, shape: Shape = DEFAULT_SHAPE): Promise<string> {
  // Classic logs keep their first name, so caches made before the second shape stay valid.
  const name = shape === 'classic' ? `log-v1-${count}-seed${seed}.jsonl` : `log-${shape}-v${DATASET_VERSION[shape]}-${count}-seed${seed}.jsonl`;
  const file = path.join(CACHE_DIR, name);
  if (existsSync(file)) return file;
  mkdirSync(CACHE_DIR, { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const out = createWriteStream(temp);
  for (const block of logBlocks(count, seed, undefined, BENCH_TASK, shape)) {
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  renameSync(temp, file);
  return file;
}

export function fileBytes(file: string): number {
  return statSync(file).size;
}

function cumulative(weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  let sum = 0;
  return weights.map((w) => (sum += w / total));
}

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
