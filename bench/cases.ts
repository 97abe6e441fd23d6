/**
 * Every benchmark case at one log size, on a fresh temp store holding a copy of
 * the cached log. Cases that only read run first; cases that append run last.
 * Cases whose ratios SPEC states run interleaved in one group.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import writeFileAtomic from 'write-file-atomic';
import { ExperienceStore, type ExperienceRecord, type FetchQuery } from '../src/index.js';
import { RACY_WINDOW_MS } from '../src/freshness.js';
import { taskPaths, type TaskPaths } from '../src/paths.js';
import { appendOnlyWrite, floorScan, naiveFullScan } from './baselines.js';
import { BENCH_TASK, cachedLog, DOMAINS, fileBytes, logText, makeInput, prng } from './dataset.js';
import { measureInterleaved, summarize, type Entry, type Measurement } from './measure.js';

export const CASES = {
  cold: 'cold indexed fetch',
  hot: 'hot indexed fetch',
  tail: 'tail fetch, 100 appended',
  tail1000: 'tail fetch, 1,000 appended',
  fullScan: 'full-scan fetch',
  naive: 'older design: readline scan',
  floor: 'floor: chunks + JSON.parse',
  recordBatch: 'recordBatch of 8',
  appendOnly: 'older design: append-only write',
  indexWrite: 'index write alone (write-file-atomic)',
  rebuild: 'rebuildIndex (child process)',
} as const;
export type CaseId = keyof typeof CASES;

export interface SizeResult {
  records: number;
  logBytes: number;
  cases: Partial<Record<CaseId, Measurement>>;
  /** Log bytes each tail fetch read, by case: every iteration must read exactly its own append. */
  tailBytes: Partial<Record<'tail' | 'tail1000', number>>;
  rebuildMaxRssBytes?: number;
}

export interface SizeOptions {
  seed: number;
  /** Time budget per case, ms. */
  budgetMs: number;
  /** Rounds each group of compared cases alternates in. */
  rounds: number;
  rebuildRuns: number;
  only?: ReadonlySet<CaseId>;
  log?: (line: string) => void;
}

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const APPEND_TASK = 'bench-append';
const MANIFEST = '.runs/bench/manifest.json';

export async function runSize(records: number, options: SizeOptions): Promise<SizeResult> {
  const { seed, budgetMs } = options;
  const wanted = (id: CaseId) => options.only === undefined || options.only.has(id);
  const say = options.log ?? (() => undefined);
  const source = await cachedLog(records, seed);

  const root = mkdtempSync(path.join(os.tmpdir(), 'experience-store-bench-'));
  const opts = { outDir: path.join(root, 'out'), runsDir: path.join(root, 'runs') };
  const paths = taskPaths(opts.outDir, opts.runsDir, BENCH_TASK);
  mkdirSync(opts.runsDir, { recursive: true });
  copyLog(source, paths);

  const result: SizeResult = { records, logBytes: fileBytes(paths.log), cases: {}, tailBytes: {} };
  const query: FetchQuery = { domain: DOMAINS[0], limit: 5, taskId: BENCH_TASK };
  const budget = { budgetMs };
  const scanBudget = { budgetMs: budgetMs * 2, minIterations: 5 };
  const group = async (entries: Entry<CaseId>[]) => {
    const chosen = entries.filter((e) => wanted(e.id));
    if (chosen.length === 0) return;
    say(`  ${chosen.map((e) => CASES[e.id]).join(' | ')}`);
    for (const [id, m] of await measureInterleaved(chosen, options.rounds)) result.cases[id] = m;
  };

  try {
    // Rebuild first: it measures the rebuild in a child process and leaves the index the fetches use.
    await rebuildInChild(result, opts, options, wanted('rebuild'), say);
    await checkPathsAgree(opts, paths.log, query);
    await waitOutRacyWindow(paths.log);

    const hot = new ExperienceStore(opts);
    await hot.fetchTop(query);
    const noIndex = new ExperienceStore({ ...opts, useIndex: false });
    await group([
      { id: 'cold', fn: () => new ExperienceStore(opts).fetchTop(query), options: budget },
      { id: 'hot', fn: () => hot.fetchTop(query), options: budget },
      { id: 'fullScan', fn: () => noIndex.fetchTop(query), options: scanBudget },
      { id: 'naive', fn: () => naiveFullScan(paths.log, query.domain, query.limit), options: scanBudget },
      { id: 'floor', fn: () => floorScan(paths.log), options: scanBudget },
    ]);

    // Appends from here on. Before each tail fetch another writer appends; the
    // fetch heals the index, so the next fetch again sees exactly its own append.
    const clock = { ms: Date.UTC(2030, 0, 1) };
    let appendSeed = seed * 7919;
    const tailEntry = async (id: 'tail' | 'tail1000', count: number): Promise<Entry<CaseId>> => {
      const reader = new ExperienceStore(opts);
      await reader.fetchTop(query);
      let appended = 0;
      return {
        id,
        fn: async () => {
          const { stats } = await reader.fetchTopDetailed(query);
          if (stats.tails !== 1 || stats.linesRead !== count || stats.bytesRead !== appended) {
            throw new Error(`${CASES[id]}: expected one tail of ${count} lines, got ${JSON.stringify(stats)}`);
          }
          result.tailBytes[id] = stats.bytesRead;
        },
        options: {
          budgetMs,
          maxIterations: 200,
          beforeEach: () => {
            const text = logText(count, appendSeed++, clock);
            appended = Buffer.byteLength(text);
            appendFileSync(paths.log, text);
          },
        },
      };
    };
    await group([await tailEntry('tail', 100), await tailEntry('tail1000', 1_000)]);

    // The append-only baseline writes to its own copy of the log: its appends
    // would otherwise show up as a foreign tail in the next recordBatch.
    const other = taskPaths(opts.outDir, opts.runsDir, APPEND_TASK);
    if (wanted('appendOnly')) copyLog(source, other);
    const rand = prng(seed * 104_729);
    const newBatch = () => Array.from({ length: 8 }, () => makeInput(rand));
    let batch = newBatch();
    let otherBatch = newBatch().map((input) => ({ ...input, taskId: APPEND_TASK }));
    const writer = new ExperienceStore(opts);
    await writer.recordBatch(batch, MANIFEST);
    // What recordBatch pays for the index write itself: the same bytes, replacing a file.
    const indexBytes = readFileSync(paths.index);
    const scratchIndex = path.join(root, 'scratch.top.json');
    await group([
      {
        id: 'recordBatch',
        fn: () => writer.recordBatch(batch, MANIFEST),
        options: { budgetMs, maxIterations: 1_000, beforeEach: () => void (batch = newBatch()) },
      },
      {
        id: 'appendOnly',
        fn: () => appendOnlyWrite(other.log, other.lock, otherBatch, MANIFEST),
        options: {
          budgetMs,
          maxIterations: 1_000,
          beforeEach: () => void (otherBatch = newBatch().map((input) => ({ ...input, taskId: APPEND_TASK }))),
        },
      },
      {
        id: 'indexWrite',
        fn: () => writeFileAtomic.sync(scratchIndex, indexBytes, { fsync: false }),
        options: { budgetMs, maxIterations: 1_000 },
      },
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return result;
}

/** Copy the cached log into a task directory. */
function copyLog(source: string, paths: TaskPaths): void {
  mkdirSync(paths.dir, { recursive: true });
  copyFileSync(source, paths.log);
}

/**
 * Wait until the log's last change is RACY_WINDOW_MS old: the steady state a
 * fetch sees. Until then its stamp is "racy" and a hot fetch also reads 4 KiB of
 * the log to confirm it (docs/index-format.md, "The racy case").
 */
async function waitOutRacyWindow(log: string): Promise<void> {
  const ctimeMs = statSync(log).ctimeMs;
  const waitMs = ctimeMs + RACY_WINDOW_MS + 50 - Date.now();
  if (waitMs > 0) await sleep(waitMs);
}

/** Rebuild `rebuildRuns` times, each in a fresh node process; the median time and the largest peak RSS. */
async function rebuildInChild(
  result: SizeResult,
  opts: { outDir: string; runsDir: string },
  options: SizeOptions,
  measureIt: boolean,
  say: (line: string) => void,
): Promise<void> {
  const runs = measureIt ? options.rebuildRuns : 1;
  if (measureIt) say(`  ${CASES.rebuild}`);
  const times: number[] = [];
  let maxRss = 0;
  for (let i = 0; i < runs; i++) {
    const { stdout } = await run(process.execPath, [path.join(HERE, 'rebuild-child.js'), opts.outDir, opts.runsDir, BENCH_TASK]);
    const child = JSON.parse(stdout) as { ms: number; maxRssBytes: number; records: number };
    if (child.records !== result.records) throw new Error(`rebuild read ${child.records} records, expected ${result.records}`);
    times.push(child.ms);
    maxRss = Math.max(maxRss, child.maxRssBytes);
  }
  if (!measureIt) return;
  result.cases.rebuild = summarize(times);
  result.rebuildMaxRssBytes = maxRss;
}

/** Before timing anything: the index, a full scan and the older design must give the same answer. */
async function checkPathsAgree(opts: { outDir: string; runsDir: string }, log: string, query: FetchQuery): Promise<void> {
  const ids = (records: ExperienceRecord[]) => records.map((r) => r.id).join(',');
  const cold = await new ExperienceStore(opts).fetchTopDetailed(query);
  if (cold.stats.indexHits !== 1 || cold.stats.bytesRead !== 0) {
    throw new Error(`expected a fresh index after the rebuild, got ${JSON.stringify(cold.stats)}`);
  }
  const full = await new ExperienceStore({ ...opts, useIndex: false }).fetchTop(query);
  const naive = await naiveFullScan(log, query.domain, query.limit);
  if (ids(cold.records) !== ids(full) || ids(full) !== ids(naive)) {
    throw new Error(`answers differ: index ${ids(cold.records)}, full scan ${ids(full)}, readline ${ids(naive)}`);
  }
}
