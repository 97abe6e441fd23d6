/**
 * Every benchmark case at one log size, on a fresh temp store holding a copy of
 * the cached log. Cases that only read run first; cases that append run last.
 * Cases whose ratios SPEC states run interleaved in one group.
 *
 * Tasks of the temp store (each its own copy of the log, so that one case's
 * appends never show up as another's foreign tail):
 *   bench-task    reads, tails, then recordBatch through one long-lived store
 *   bench-fresh   writes through a new store per call (in-process and one-shot)
 *   bench-older   the older design's writes (in-process and one-shot)
 */
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import writeFileAtomic from 'write-file-atomic';
import { ExperienceStore, type ExperienceRecord } from '../src/index.js';
import { floorScan, indexFloor } from './baselines.js';
import { BENCH_TASK, cachedLog, DOMAINS, fileBytes, logText, makeBatch, prng, type Shape } from './dataset.js';
import { measureInterleaved, measureProcesses, REPORT_CPU, summarize, type Entry, type Measurement, type ProcessEntry } from './measure.js';
import { OlderExperienceStore } from './older-store.js';

export const CASES = {
  cold: 'cold indexed fetch',
  hot: 'hot indexed fetch',
  indexFloor: 'floor: open index, read + parse K records',
  indexFloor5: 'floor: open index, read + parse 5 records',
  selectCold: 'selectTop cold (index)',
  selectHot: 'selectTop hot (index)',
  selectFullScan: 'selectTop full scan',
  tail: 'tail fetch, 100 appended',
  tail1000: 'tail fetch, 1,000 appended',
  fullScan: 'full-scan fetch',
  naive: 'older design: readline scan',
  floor: 'floor: chunks + JSON.parse',
  recordBatch: 'recordBatch of 8, long-lived store',
  recordBatchNew: 'recordBatch of 8, new store per call',
  appendOnly: 'older design: recordBatch of 8',
  indexWrite: 'index write alone (write-file-atomic)',
  rebuild: 'rebuildIndex (child process)',
  procBare: 'process: bare node -e',
  procImport: 'process: import',
  procImportOlder: 'process: import, older design',
  procFetch: 'process: import + fetch',
  procFetchOlder: 'process: import + fetch, older design',
  procFetchWrite: 'process: import + fetch + write 8',
  procFetchWriteOlder: 'process: import + fetch + write 8, older design',
} as const;
export type CaseId = keyof typeof CASES;

export interface SizeResult {
  records: number;
  logBytes: number;
  /** Size of bench-task's index after the rebuild, and the domains it covers. */
  indexBytes?: number;
  domains: number;
  cases: Partial<Record<CaseId, Measurement>>;
  /** CPU time (user + system) of the fresh-process cases, as each child reports it. */
  cpu: Partial<Record<CaseId, Measurement>>;
  /** Log bytes each tail fetch read, by case: every iteration must read exactly its own append. */
  tailBytes: Partial<Record<'tail' | 'tail1000', number>>;
  rebuildMaxRssBytes?: number;
  /** Things the reader of the results must know, e.g. cases this build could not run. */
  notes: string[];
}

export interface SizeOptions {
  seed: number;
  shape: Shape;
  /** Time budget per in-process case, ms. */
  budgetMs: number;
  /** Time budget per fresh-process case, ms, and its sample count bounds. */
  process: { budgetMs: number; minSamples: number; maxSamples: number };
  /** Rounds each group of compared cases alternates in. */
  rounds: number;
  rebuildRuns: number;
  /** Fewest calls of a full scan (readline, floor, selection): each is 1 s at 100k, 10 s at 1M. */
  scanMinIterations: number;
  only?: ReadonlySet<CaseId>;
  log?: (line: string) => void;
}

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FRESH_TASK = 'bench-fresh';
const OLDER_TASK = 'bench-older';
const LIMIT = 5;
// docs/index-format.md, "The racy case": a log changed less than 2 s ago has a
// racy stamp, confirmed by reading 4 KiB of it. Kept here rather than imported,
// so that the bench builds against any src/ layout.
const RACY_WINDOW_MS = 2_000;

type Opts = { outDir: string; runsDir: string };
type Query = { domain: string; limit: number; taskId: string };
type SelectTop = (q: Query, options?: { diagnostics?: 'summary' | 'full' }) => Promise<{ records: ExperienceRecord[] }>;

/** `store.selectTop`, when this build has it (issue 12 adds it). */
function selectTopOf(store: ExperienceStore): SelectTop | undefined {
  const fn = (store as unknown as { selectTop?: unknown }).selectTop;
  return typeof fn === 'function' ? (fn as SelectTop).bind(store) : undefined;
}

export async function runSize(records: number, options: SizeOptions): Promise<SizeResult> {
  const { seed, budgetMs, shape } = options;
  const wanted = (id: CaseId) => options.only === undefined || options.only.has(id);
  const say = options.log ?? (() => undefined);
  const source = await cachedLog(records, seed, shape);

  const root = mkdtempSync(path.join(os.tmpdir(), 'experience-store-bench-'));
  const opts: Opts = { outDir: path.join(root, 'out'), runsDir: path.join(root, 'runs') };
  const paths = taskFiles(opts, BENCH_TASK);
  mkdirSync(opts.runsDir, { recursive: true });
  copyLog(source, paths);

  const result: SizeResult = { records, logBytes: fileBytes(paths.log), domains: DOMAINS.length, cases: {}, cpu: {}, tailBytes: {}, notes: [] };
  const query: Query = { domain: DOMAINS[0], limit: LIMIT, taskId: BENCH_TASK };
  const budget = { budgetMs };
  const scanBudget = { budgetMs: budgetMs * 2, minIterations: options.scanMinIterations };
  const group = async (entries: Entry<CaseId>[]) => {
    const chosen = entries.filter((e) => wanted(e.id));
    if (chosen.length === 0) return;
    const start = performance.now();
    for (const [id, m] of await measureInterleaved(chosen, options.rounds)) result.cases[id] = m;
    say(`  ${chosen.map((e) => CASES[e.id]).join(' | ')} (${seconds(start)})`);
  };

  try {
    // Rebuild first: it measures the rebuild in a child process and leaves the index the fetches use.
    await rebuildInChild(result, opts, options, wanted('rebuild'), say);
    result.indexBytes = fileBytes(paths.index);
    const older = new OlderExperienceStore(opts);
    const expected = await checkPathsAgree(opts, older, query);
    await waitOutRacyWindow(paths.log);

    // What the floor of a cold fetch parses: the domain's top K (K = 16, the
    // default) and the answer's 5 records, as JSON text, whatever the index format.
    const topK = await older.fetchTop({ ...query, limit: 16 });
    const topKText = Buffer.from(JSON.stringify(topK));
    const top5Text = Buffer.from(JSON.stringify(topK.slice(0, LIMIT)));

    const hot = new ExperienceStore(opts);
    await hot.fetchTop(query);
    const noIndex = new ExperienceStore({ ...opts, useIndex: false });
    const selectEntries = await selectionEntries(opts, query, noIndex, budget, scanBudget, result, say);
    await group([
      { id: 'cold', fn: () => new ExperienceStore(opts).fetchTop(query), options: budget },
      { id: 'hot', fn: () => hot.fetchTop(query), options: budget },
      { id: 'indexFloor', fn: () => indexFloor(paths.index, topKText), options: budget },
      { id: 'indexFloor5', fn: () => indexFloor(paths.index, top5Text), options: budget },
      ...selectEntries,
      { id: 'fullScan', fn: () => noIndex.fetchTop(query), options: scanBudget },
      { id: 'naive', fn: () => older.fetchTop(query), options: scanBudget },
      { id: 'floor', fn: () => floorScan(paths.log), options: scanBudget },
    ]);

    // Fresh processes, before anything appends to bench-task: its index is fresh
    // and its stamp no longer racy, as a run that starts minutes after the last sees it.
    const fresh = taskFiles(opts, FRESH_TASK);
    const olderTask = taskFiles(opts, OLDER_TASK);
    copyLog(source, fresh);
    copyLog(source, olderTask);
    // Index bench-fresh now, so that every timed run of ours finds an index, as a run of a task with a history does.
    await new ExperienceStore(opts).fetchTop({ ...query, taskId: FRESH_TASK });
    await processGroup(result, opts, query, expected, options, wanted, say);

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
            const text = logText(count, appendSeed++, clock, shape);
            appended = Buffer.byteLength(text);
            appendFileSync(paths.log, text);
          },
        },
      };
    };
    await group([await tailEntry('tail', 100), await tailEntry('tail1000', 1_000)]);

    // Writes: the same sequence of batches for each case (same seed), each case on
    // a task of its own. The new-store task gets its index before timing starts.
    const batches = (taskId: string) => {
      const rand = prng(seed * 104_729);
      return () => makeBatch(rand, 8, shape, taskId);
    };
    const nextLong = batches(BENCH_TASK);
    const nextNew = batches(FRESH_TASK);
    const nextOlder = batches(OLDER_TASK);
    let long = nextLong();
    let perCall = nextNew();
    let olderBatch = nextOlder();
    const writer = new ExperienceStore(opts);
    await writer.recordBatch(long.inputs, long.manifestPath);
    await new ExperienceStore(opts).recordBatch(perCall.inputs, perCall.manifestPath);
    // What recordBatch pays for the index write itself: the same bytes, replacing a file.
    const indexBytes = readFileSync(paths.index);
    const scratchIndex = path.join(root, 'scratch.top.json');
    const writes = { budgetMs, maxIterations: 1_000 };
    await group([
      {
        id: 'recordBatch',
        fn: () => writer.recordBatch(long.inputs, long.manifestPath),
        options: { ...writes, beforeEach: () => void (long = nextLong()) },
      },
      {
        id: 'recordBatchNew',
        fn: () => new ExperienceStore(opts).recordBatch(perCall.inputs, perCall.manifestPath),
        options: { ...writes, beforeEach: () => void (perCall = nextNew()) },
      },
      {
        id: 'appendOnly',
        fn: () => new OlderExperienceStore(opts).recordBatch(olderBatch.inputs, olderBatch.manifestPath),
        options: { ...writes, beforeEach: () => void (olderBatch = nextOlder()) },
      },
      {
        id: 'indexWrite',
        fn: () => writeFileAtomic.sync(scratchIndex, indexBytes, { fsync: false }),
        options: writes,
      },
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return result;
}

/** selectTop from the index (cold, hot) and by full scan, once they are checked to agree; none when absent. */
async function selectionEntries(
  opts: Opts,
  query: Query,
  noIndex: ExperienceStore,
  budget: { budgetMs: number },
  scanBudget: { budgetMs: number; minIterations: number },
  result: SizeResult,
  say: (line: string) => void,
): Promise<Entry<CaseId>[]> {
  const hot = new ExperienceStore(opts);
  const hotSelect = selectTopOf(hot);
  const fullSelect = selectTopOf(noIndex);
  if (hotSelect === undefined || fullSelect === undefined) {
    const note = 'store.selectTop is not in this build: the selectTop cases were skipped';
    say(`  ${note}`);
    result.notes.push(note);
    return [];
  }
  const ids = (r: { records: ExperienceRecord[] }) => r.records.map((x) => x.id).join(',');
  const fromIndex = await selectTopOf(new ExperienceStore(opts))!(query);
  const full = await fullSelect(query);
  if (ids(fromIndex) !== ids(full)) throw new Error(`selectTop answers differ: index ${ids(fromIndex)}, full scan ${ids(full)}`);
  await hotSelect(query);
  return [
    { id: 'selectCold', fn: () => selectTopOf(new ExperienceStore(opts))!(query), options: budget },
    { id: 'selectHot', fn: () => hotSelect(query), options: budget },
    { id: 'selectFullScan', fn: () => fullSelect(query), options: scanBudget },
  ];
}

/**
 * What a run pays, end to end: fresh node processes timed from the parent, ours
 * (the built package, dist/src/index.js) beside the older design and bare node.
 * Fetch-only runs read bench-task; fetch + write runs write bench-fresh (ours)
 * and bench-older, the same batches in the same order.
 */
async function processGroup(
  result: SizeResult,
  opts: Opts,
  query: Query,
  expected: string,
  options: SizeOptions,
  wanted: (id: CaseId) => boolean,
  say: (line: string) => void,
): Promise<void> {
  const node = process.execPath;
  const ours = path.join(HERE, 'one-shot-ours.js');
  const older = path.join(HERE, 'one-shot-older.js');
  const fetchArgs = (script: string, taskId: string) => [node, script, 'fetch', opts.outDir, opts.runsDir, taskId, query.domain];
  const writeArgs = (script: string, taskId: string) => {
    const rand = prng(options.seed * 15_485_863);
    return () => {
      const batch = makeBatch(rand, 8, options.shape, taskId);
      return [node, script, 'fetch-write', opts.outDir, opts.runsDir, taskId, query.domain, JSON.stringify(batch.inputs), batch.manifestPath];
    };
  };
  const entries: ProcessEntry<CaseId>[] = [
    // Bare node: `node -e 0`, plus the exit handler that reports its CPU time.
    { id: 'procBare', argv: [node, '-e', REPORT_CPU] },
    { id: 'procImport', argv: [node, ours, 'import'] },
    { id: 'procImportOlder', argv: [node, older, 'import'] },
    { id: 'procFetch', argv: fetchArgs(ours, BENCH_TASK) },
    { id: 'procFetchOlder', argv: fetchArgs(older, BENCH_TASK) },
    { id: 'procFetchWrite', argv: writeArgs(ours, FRESH_TASK) },
    { id: 'procFetchWriteOlder', argv: writeArgs(older, OLDER_TASK) },
  ];
  const chosen = entries.filter((e) => wanted(e.id));
  if (chosen.length === 0) return;
  const start = performance.now();
  const check = (id: string, stdout: string) => {
    const printed = stdout.trim();
    const ok = id === 'procFetch' || id === 'procFetchOlder' ? printed === expected : id.startsWith('procFetchWrite') ? printed.split(',').length === LIMIT : true;
    if (!ok) throw new Error(`${CASES[id as CaseId]}: printed "${printed}", expected ${id.startsWith('procFetchWrite') ? `${LIMIT} ids` : expected}`);
  };
  for (const [id, m] of await measureProcesses(chosen, { ...options.process, check })) {
    result.cases[id] = m.wall;
    if (m.cpu) result.cpu[id] = m.cpu;
  }
  say(`  ${chosen.map((e) => CASES[e.id]).join(' | ')} (${seconds(start)})`);
}

const seconds = (since: number): string => `${((performance.now() - since) / 1000).toFixed(1)} s`;

/**
 * Whether the package imports in a process limited to 64 open files (SPEC: a
 * run may start with a low `ulimit -n`); the failure's first stderr line otherwise.
 */
export async function importsUnderUlimit64(): Promise<{ ok: boolean; detail: string }> {
  const script = path.join(HERE, 'one-shot-ours.js');
  try {
    await run('/bin/sh', ['-c', 'ulimit -n 64 && exec "$0" "$1" import', process.execPath, script]);
    return { ok: true, detail: 'imports' };
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? err);
    return { ok: false, detail: stderr.split('\n').find((l) => /error/i.test(l))?.trim() ?? stderr.trim().split('\n')[0] ?? 'failed' };
  }
}

interface TaskFiles {
  dir: string;
  log: string;
  index: string;
}

/** SPEC's layout of a task: <outDir>/<taskId>/experiences.jsonl and its sidecar experiences.top.json. */
function taskFiles(opts: Opts, taskId: string): TaskFiles {
  const dir = path.join(opts.outDir, taskId);
  return { dir, log: path.join(dir, 'experiences.jsonl'), index: path.join(dir, 'experiences.top.json') };
}

/** Copy the cached log into a task directory. */
function copyLog(source: string, files: TaskFiles): void {
  mkdirSync(files.dir, { recursive: true });
  copyFileSync(source, files.log);
}

/**
 * Wait until the log's last change is RACY_WINDOW_MS old: the steady state a
 * fetch sees. Until then its stamp is "racy" and a fetch also reads 4 KiB of the
 * log to confirm it (docs/index-format.md, "The racy case").
 */
async function waitOutRacyWindow(log: string): Promise<void> {
  const ctimeMs = statSync(log).ctimeMs;
  const waitMs = ctimeMs + RACY_WINDOW_MS + 50 - Date.now();
  if (waitMs > 0) await sleep(waitMs);
}

/** Rebuild `rebuildRuns` times, each in a fresh node process; the median time and the largest peak RSS. */
async function rebuildInChild(result: SizeResult, opts: Opts, options: SizeOptions, measureIt: boolean, say: (line: string) => void): Promise<void> {
  const runs = measureIt ? options.rebuildRuns : 1;
  const start = performance.now();
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
  say(`  ${CASES.rebuild} (${seconds(start)})`);
  result.cases.rebuild = summarize(times);
  result.rebuildMaxRssBytes = maxRss;
}

/**
 * Before timing anything: the index, a full scan and the older design must give
 * the same answer. Returns it, as the one-shot children print it (ids, comma-separated).
 */
async function checkPathsAgree(opts: Opts, older: OlderExperienceStore, query: Query): Promise<string> {
  const ids = (records: Array<{ id: string }>) => records.map((r) => r.id).join(',');
  const cold = await new ExperienceStore(opts).fetchTopDetailed(query);
  if (cold.stats.indexHits !== 1 || cold.stats.bytesRead !== 0) {
    throw new Error(`expected a fresh index after the rebuild, got ${JSON.stringify(cold.stats)}`);
  }
  const full = await new ExperienceStore({ ...opts, useIndex: false }).fetchTop(query);
  const naive = await older.fetchTop(query);
  if (ids(cold.records) !== ids(full) || ids(full) !== ids(naive)) {
    throw new Error(`answers differ: index ${ids(cold.records)}, full scan ${ids(full)}, readline ${ids(naive)}`);
  }
  return ids(full);
}
