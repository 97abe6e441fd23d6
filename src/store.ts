/**
 * ExperienceStore: the append-only log of each task plus its sidecar index.
 * Reads answer from the index when it is fresh, read only the new bytes when the
 * log grew, and fall back to a full scan otherwise; every answer equals a plain
 * full scan of the logs on disk. See docs/index-format.md for the argument.
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { errorCode, ExperienceStoreError, ioError } from './errors.js';
import { IndexCache } from './index-cache.js';
import { statsOfStore, verifyStore, type StatsOptions, type TaskReport, type TaskStats, type VerifyOptions } from './inspect.js';
import { resolveLockRetry, type LockRetry } from './lock.js';
import { isValidTaskId, resolveStoreDirs, taskPaths } from './paths.js';
import { checkQuery, checkSelectQuery, checkTaskId, type FetchQuery, type FetchStats, type RebuildProgress } from './query.js';
import { copyRecord, newRecordId, normalizeInput, score, validateBatch, verifyStamp, type ExperienceInput, type ExperienceRecord } from './record.js';
import { budgetForFetch, resolveScanBudget, type ScanBudget } from './scan-budget.js';
import {
  isDefaultWeights,
  resolveSelectionPolicy,
  selectCompetitive,
  type ExperienceSelectionResult,
  type SelectOptions,
  type SelectQuery,
} from './selection.js';
import { TaskReader, type ReadRequest, type TaskView } from './task-reader.js';
import { TaskWriter } from './task-writer.js';
import { EXTREME_SCORE, mergeRanked, type Entry, type TopState } from './top-k.js';

export type { FetchQuery } from './query.js';
export type { FetchStats } from './query.js';
export type { RebuildProgress } from './query.js';

/** Options of `new ExperienceStore(options)`. A field given as `undefined` keeps its default. */
export interface ExperienceStoreOptions {
  /**
   * Where task logs live: `<outDir>/<taskId>/experiences.jsonl`. Default
   * `$CODEX_ORCHESTRATOR_OUT_DIR`, else `out`, resolved against
   * `$CODEX_ORCHESTRATOR_ROOT`, else the working directory.
   */
  outDir?: string;
  /**
   * Where writers' lock files live: `<runsDir>/<taskId>.experiences.lock`. Default
   * `$CODEX_ORCHESTRATOR_RUNS_DIR`, else `.runs`, resolved like `outDir`. Created
   * by writers only; readers never create it.
   */
  runsDir?: string;
  /** Summaries are cut to this many whitespace-separated words. Default 32. */
  maxSummaryWords?: number;
  /**
   * Lock retries across processes: `maxAttempts` (5, counting the first try),
   * `initialDelayMs` (100), `backoffFactor` (2), `maxDelayMs` (1000), `staleMs`
   * (300000: a lock whose owner cannot be judged alive or dead is stale after
   * this long). Out-of-range values throw EXP_INVALID_INPUT at construction.
   */
  lockRetry?: Partial<LockRetry>;
  /** The clock for `createdAt` and record ids. Default `() => new Date()`. */
  now?: () => Date;
  /**
   * Records kept per domain in an index built where none was valid (an existing
   * index keeps its own K; `rebuildIndex` sets it). A query with `limit <= K` is
   * answered from the index. Default 16.
   */
  indexTopK?: number;
  /** false: never read or write the index; every fetch is a full scan. Default true. */
  useIndex?: boolean;
  /**
   * Cap on the log lines/bytes one fetch reads, across all tasks it reads. Default
   * from `$CODEX_EXPERIENCE_FETCH_MAX_LINES` / `$CODEX_EXPERIENCE_FETCH_MAX_BYTES`
   * (positive decimal integers; a malformed value throws EXP_BAD_ENV), else unlimited.
   */
  scanBudget?: ScanBudget;
  /**
   * `'plain'` (default): `fetchTop` returns the plain top records. `'competitive_scoring_v1'`:
   * `fetchTop(q)` returns `selectTop({ domain, limit, minScore: q.minReward, taskId }).records`,
   * as the newer orchestrator's store does.
   */
  fetchPolicy?: 'plain' | 'competitive_scoring_v1';
}

/** What `fetchTopDetailed` resolves with. */
export interface FetchResult {
  /** The same records `fetchTop` gives. */
  records: ExperienceRecord[];
  /** A scan budget stopped reading before the end of the data: these are the best of what was read. */
  truncated: boolean;
  stats: FetchStats;
}

/** What `rebuildIndex` resolves with. */
export interface RebuildResult {
  /** Tasks whose index was rebuilt (tasks without a log are skipped). */
  tasks: number;
  /** Valid records read, all of them (not only those kept in the index). */
  records: number;
  malformed: number;
}

/** What `selectTop` resolves with: the selection, and how its candidates were read (as `fetchTopDetailed` reports). */
export interface SelectResult extends ExperienceSelectionResult {
  stats: FetchStats;
}

const DEFAULT_TOP_K = 16;

/**
 * The experience log of every task under `outDir`, with its sidecar index.
 * Every method's answer equals a plain full scan of the logs on disk. Errors
 * are `ExperienceStoreError`s with a stable `code`.
 */
export class ExperienceStore {
  readonly outDir: string;
  readonly runsDir: string;
  readonly maxSummaryWords: number;
  readonly lockRetry: LockRetry;
  readonly indexTopK: number;
  readonly useIndex: boolean;
  readonly scanBudget: ScanBudget;
  readonly fetchPolicy: 'plain' | 'competitive_scoring_v1';
  readonly #now: () => Date;
  readonly #cache = new IndexCache();
  readonly #reader: TaskReader;
  readonly #writer: TaskWriter;
  /** Task directories this instance created or found: a batch then skips the mkdir. */
  readonly #taskDirs = new Set<string>();

  /** Throws EXP_INVALID_INPUT naming a bad option, EXP_BAD_ENV naming a bad environment variable. */
  constructor(options: ExperienceStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) throw invalidOption('options must be an object');
    const dirs = resolveStoreDirs(options);
    this.outDir = dirs.outDir;
    this.runsDir = dirs.runsDir;
    this.maxSummaryWords = positiveInteger('maxSummaryWords', options.maxSummaryWords ?? 32);
    this.lockRetry = resolveLockRetry(options.lockRetry);
    this.indexTopK = positiveInteger('indexTopK', options.indexTopK ?? DEFAULT_TOP_K);
    const useIndex = options.useIndex ?? true;
    if (typeof useIndex !== 'boolean') throw invalidOption(`options.useIndex must be a boolean, got ${String(useIndex)}`);
    this.useIndex = useIndex;
    this.scanBudget = resolveScanBudget(options.scanBudget);
    const fetchPolicy = options.fetchPolicy ?? 'plain';
    if (fetchPolicy !== 'plain' && fetchPolicy !== 'competitive_scoring_v1') {
      throw invalidOption(`options.fetchPolicy must be 'plain' or 'competitive_scoring_v1', got ${JSON.stringify(fetchPolicy)}`);
    }
    this.fetchPolicy = fetchPolicy;
    const now = options.now ?? (() => new Date());
    if (typeof now !== 'function') throw invalidOption('options.now must be a function returning a Date');
    this.#now = now;
    this.#reader = new TaskReader(this.#cache, this.indexTopK, this.lockRetry.staleMs);
    this.#writer = new TaskWriter(this.#cache, { indexTopK: this.indexTopK, useIndex: this.useIndex, lockRetry: this.lockRetry });
  }

  /** Whether `record.stampSignature` is 64 hex characters. */
  verifyStamp(record: ExperienceRecord): boolean {
    return verifyStamp(record);
  }

  /**
   * Append a batch to its task's log and bring the index up to date; resolves
   * with the records as written. All or nothing: the whole batch is validated
   * first (bad input: EXP_INVALID_INPUT, no byte written), and a batch that
   * fails (EXP_LOCKED, EXP_IO) leaves no part of itself in the log. Once the
   * append succeeded, the batch is acknowledged whatever happens after.
   */
  async recordBatch(inputs: ExperienceInput[], manifestPath: string): Promise<ExperienceRecord[]> {
    if (Array.isArray(inputs) && inputs.length === 0) return [];
    const valid = await validateBatch(inputs);
    if (typeof manifestPath !== 'string') {
      throw new ExperienceStoreError('EXP_INVALID_INPUT', 'manifestPath must be a string; nothing was written');
    }
    const now = this.#now();
    if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
      throw new ExperienceStoreError('EXP_INVALID_INPUT', `options.now must return a valid Date, got ${String(now)}; nothing was written`);
    }
    const records = valid.map((input) => normalizeInput(input, { maxSummaryWords: this.maxSummaryWords, now, manifestPath }));
    // One batch shares a millisecond, so ids differ only in 24 random bits: redraw
    // the rare collision (a 300-record batch would otherwise repeat an id 0.3% of the time).
    const ids = new Set<string>();
    for (const record of records) {
      while (ids.has(record.id)) record.id = newRecordId(now);
      ids.add(record.id);
    }
    const lines = records.map((r) => JSON.stringify(r));
    const paths = taskPaths(this.outDir, this.runsDir, records[0]!.taskId);
    if (!this.#taskDirs.has(paths.dir)) {
      try {
        mkdirSync(paths.dir, { recursive: true });
      } catch (err) {
        throw ioError('create the task directory', paths.dir, err);
      }
      this.#taskDirs.add(paths.dir);
    }
    await this.#writer.append(paths, lines);
    return records;
  }

  /**
   * The answer `fetchTop` gives, with how it was obtained. Throws
   * EXP_INVALID_INPUT for a malformed query, EXP_IO when a log cannot be read.
   */
  async fetchTopDetailed(query: FetchQuery): Promise<FetchResult> {
    if (this.fetchPolicy === 'competitive_scoring_v1') {
      const q = checkQuery(query);
      const { records, truncated, stats } = await this.#select(
        { domain: q.domain, limit: q.limit, minScore: q.minReward, taskId: q.taskId },
        {},
      );
      return { records, truncated, stats };
    }
    const q = checkQuery(query);
    const stats = newStats();
    if (q.domain === '' || !(q.limit > 0)) return { records: [], truncated: false, stats };
    const views = await this.#readTasks(q.taskId, { domain: q.domain, limit: q.limit, need: 'top', stats, budget: budgetForFetch(this.scanBudget) });
    const ranked = mergeRanked(
      views.map((v) => v.top),
      q.limit,
    );
    const kept = q.minReward === undefined ? ranked : ranked.filter((e) => score(e.record) >= q.minReward!);
    // Callers own what they get: never hand out the cached objects themselves.
    return { records: kept.map((e) => copyRecord(e.record, e.raw)), truncated: views.some((v) => v.truncated), stats };
  }

  /**
   * The first `limit` records of `domain` (trimmed; all tasks, or `taskId`) with
   * score >= `minReward`, best first: score desc, createdAt desc, id asc. `[]`
   * for an empty domain or `limit <= 0`. See `fetchPolicy` for the competitive variant.
   */
  async fetchTop(query: FetchQuery): Promise<ExperienceRecord[]> {
    return (await this.fetchTopDetailed(query)).records;
  }

  /**
   * Competitive selection (`competitive_scoring_v1`): spreads `limit` slots across
   * sources so one prolific run cannot fill them all, and explains every choice.
   * Exact on every path: equal to the greedy over a full scan. With the default
   * weights and `limit <= K` it is answered from the index; `diagnostics: 'full'`
   * lists every candidate (a scan unless the index holds them all). Throws
   * EXP_INVALID_INPUT naming `selection.policy.<field>` for a bad policy.
   */
  async selectTop(query: SelectQuery, options: SelectOptions = {}): Promise<SelectResult> {
    return this.#select(query, options);
  }

  async #select(query: SelectQuery, options: SelectOptions): Promise<SelectResult> {
    const q = checkSelectQuery(query);
    const policy = resolveSelectionPolicy(q.policy, q.minScore);
    const full = checkDiagnostics(options);
    const stats = newStats();
    if (q.domain === '' || !(q.limit > 0)) {
      return { ...selectCompetitive([], q.limit, policy), truncated: false, stats };
    }
    // The pool answers for the default weights while selection's arithmetic
    // stays finite (docs/index-format.md, "The selection pool"); other weights,
    // extreme scores or strengths, and full diagnostics over a domain the pool
    // does not hold whole, need every record of the domain.
    const anti = policy.antiDominanceNormalization;
    const poolCanAnswer = isDefaultWeights(policy) && (!anti.enabled || anti.strength * q.limit < EXTREME_SCORE);
    // Without an index there is nothing to answer from: every candidate is read (and listed).
    const need = poolCanAnswer && this.useIndex ? 'pool' : 'all';
    const request: ReadRequest = { domain: q.domain, limit: q.limit, need, stats, budget: budgetForFetch(this.scanBudget) };
    let views = await this.#readTasks(q.taskId, request);
    if (request.need === 'pool' && views.some((v) => v.extreme > 0 || (full && v.pool.length < v.count))) {
      // Read again, on what is left of the same budget: a budget caps the whole call.
      request.need = 'all';
      views = await this.#readTasks(q.taskId, request);
    }
    const candidates: Entry[] = [];
    let complete = true;
    for (const v of views) {
      // Input order is the greedy's last tie-break: task order, then log order.
      // A loop, not push(...list): a domain of a large log has more candidates than a call has arguments.
      const list = v.all ?? [...v.pool].sort((a, b) => a.seq - b.seq);
      for (const entry of list) candidates.push(entry);
      if (v.all === undefined) complete &&= v.pool.length === v.count;
    }
    const entryOf = new Map(candidates.map((e) => [e.record, e]));
    const candidateCount = views.reduce((n, v) => n + v.count, 0);
    const result = selectCompetitive(
      candidates.map((e) => e.record),
      q.limit,
      policy,
      { candidateCount, complete },
    );
    const records = result.records.map((r) => copyRecord(r, entryOf.get(r)!.raw));
    return { records, diagnostics: result.diagnostics, truncated: views.some((v) => v.truncated), stats };
  }

  /** Each task's view of the domain (every task under outDir, or one), in task order. */
  async #readTasks(taskId: string | undefined, request: ReadRequest): Promise<TaskView[]> {
    const views: TaskView[] = [];
    for (const id of taskId !== undefined ? [taskId] : this.listTasks()) {
      const paths = taskPaths(this.outDir, this.runsDir, id);
      views.push(this.useIndex ? await this.#reader.read(paths, request) : await this.#reader.scan(paths, request));
    }
    return views;
  }

  /**
   * Rebuild the index of one task, or of every task, by a full scan with
   * `indexTopK` (this sets the index's K). The scan runs without the lock; the
   * lock is taken only to catch up with appends made meanwhile and to write the index.
   */
  async rebuildIndex(
    taskId?: string,
    options: { onProgress?: (progress: RebuildProgress) => void } = {},
  ): Promise<RebuildResult> {
    if (taskId !== undefined) checkTaskId('taskId', taskId);
    const result: RebuildResult = { tasks: 0, records: 0, malformed: 0 };
    for (const id of taskId !== undefined ? [taskId] : this.listTasks()) {
      const paths = taskPaths(this.outDir, this.runsDir, id);
      let state: TopState | undefined;
      try {
        state = await this.#writer.rebuild(paths, this.indexTopK, options.onProgress);
      } catch (err) {
        throw err instanceof ExperienceStoreError ? err : ioError('rebuild the index from', paths.log, err);
      }
      if (state === undefined) continue;
      result.tasks++;
      result.records += state.records;
      result.malformed += state.malformed;
    }
    return result;
  }

  /** Task ids under outDir: subdirectories whose names are valid task ids, in code-unit order. */
  listTasks(): string[] {
    let entries;
    try {
      entries = readdirSync(this.outDir, { withFileTypes: true });
    } catch (err) {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return [];
      throw ioError('list the task directories in', this.outDir, err);
    }
    const ids: string[] = [];
    for (const entry of entries) {
      if (!isValidTaskId(entry.name)) continue;
      if (entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(path.join(this.outDir, entry.name)))) ids.push(entry.name);
    }
    return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * Check each task's index against a full scan of the log prefix it covers
   * (what `experience-store verify` prints). Reads only, creating nothing, unless
   * `fix` is set: then each failing index is rebuilt under the task's lock (with
   * the K it was built with, when its header is readable) and checked again.
   * Throws EXP_INVALID_INPUT for a bad `taskId`, EXP_IO when a log cannot be read.
   */
  async verify(options: VerifyOptions = {}): Promise<TaskReport[]> {
    return verifyStore(this, options, (taskId, k) =>
      new ExperienceStore({ outDir: this.outDir, runsDir: this.runsDir, lockRetry: this.lockRetry, indexTopK: k ?? this.indexTopK }).rebuildIndex(taskId),
    );
  }

  /**
   * Per task: log bytes, records, malformed lines and domains (by a streamed
   * full scan) and the index state (what `experience-store stats` prints). Reads
   * only, creating nothing. Throws EXP_INVALID_INPUT for a bad `taskId`.
   */
  async stats(options: StatsOptions = {}): Promise<TaskStats[]> {
    return statsOfStore(this, options);
  }
}

function newStats(): FetchStats {
  return { indexHits: 0, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 };
}

function checkDiagnostics(options: SelectOptions): boolean {
  if (typeof options !== 'object' || options === null) throw invalidOption("selectTop options must be an object { diagnostics?: 'summary' | 'full' }");
  const d = options.diagnostics ?? 'summary';
  if (d !== 'summary' && d !== 'full') throw invalidOption(`options.diagnostics must be 'summary' or 'full', got ${JSON.stringify(d)}`);
  return d === 'full';
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function invalidOption(message: string): ExperienceStoreError {
  return new ExperienceStoreError('EXP_INVALID_INPUT', message);
}

function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw invalidOption(`options.${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
