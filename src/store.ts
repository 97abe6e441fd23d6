/**
 * ExperienceStore: the append-only log of each task plus its sidecar top-K index.
 * Reads answer from the index when it is fresh, read only the new bytes when the
 * log grew, and fall back to a full scan otherwise; every answer equals a plain
 * full scan of the logs on disk. See docs/index-format.md for the argument.
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { catchUp, type CaughtUp } from './catch-up.js';
import { errorCode, ExperienceStoreError, ioError } from './errors.js';
import { decideFreshness, stampOf, statKeyEquals, type LogStat } from './freshness.js';
import { IndexCache } from './index-cache.js';
import { fingerprintAt, indexOfState, InvalidIndexError, logMatchesStamp, readIndex, writeIndex, type LoadedIndex } from './index-file.js';
import type { ReadBudget } from './line-reader.js';
import { DEFAULT_LOCK_RETRY, tryWithTaskLock, withTaskLock, type LockRetry } from './lock.js';
import {
  appendToLog,
  endsWithNewline,
  fstatLog,
  openLogForAppending,
  openLogForReading,
  statLog,
  withLog,
} from './log-file.js';
import { isValidTaskId, resolveStoreDirs, taskPaths, type TaskPaths } from './paths.js';
import { checkQuery, checkTaskId, type FetchQuery } from './query.js';
import { cloneJson, newRecordId, normalizeInput, score, validateBatch, verifyStamp, type ExperienceInput, type ExperienceRecord } from './record.js';
import { budgetForFetch, resolveScanBudget, type ScanBudget } from './scan-budget.js';
import { scanLog } from './scan.js';
import { cloneState, emptyState, mergeRanked, trimState, type TopState } from './top-k.js';

export type { FetchQuery } from './query.js';

export interface ExperienceStoreOptions {
  outDir?: string;
  runsDir?: string;
  maxSummaryWords?: number;
  lockRetry?: Partial<LockRetry>;
  now?: () => Date;
  indexTopK?: number;
  useIndex?: boolean;
  scanBudget?: ScanBudget;
}

export interface FetchStats {
  indexHits: number;
  tails: number;
  fullScans: number;
  bytesRead: number;
  linesRead: number;
}

export interface FetchResult {
  records: ExperienceRecord[];
  truncated: boolean;
  stats: FetchStats;
}

export interface RebuildResult {
  tasks: number;
  records: number;
  malformed: number;
}

export interface RebuildProgress {
  taskId: string;
  bytesDone: number;
  bytesTotal: number;
  records: number;
}

/** One task's part of an answer: its best records of the domain, before the cross-task merge. */
interface TaskAnswer {
  top: readonly ExperienceRecord[];
  truncated: boolean;
}

const NO_ANSWER: TaskAnswer = { top: [], truncated: false };
const DEFAULT_TOP_K = 16;

export class ExperienceStore {
  readonly outDir: string;
  readonly runsDir: string;
  readonly maxSummaryWords: number;
  readonly lockRetry: LockRetry;
  readonly indexTopK: number;
  readonly useIndex: boolean;
  readonly scanBudget: ScanBudget;
  readonly #now: () => Date;
  readonly #cache = new IndexCache();

  constructor(options: ExperienceStoreOptions = {}) {
    const dirs = resolveStoreDirs(options);
    this.outDir = dirs.outDir;
    this.runsDir = dirs.runsDir;
    this.maxSummaryWords = positiveInteger('maxSummaryWords', options.maxSummaryWords ?? 32);
    this.lockRetry = { ...DEFAULT_LOCK_RETRY, ...options.lockRetry };
    this.indexTopK = positiveInteger('indexTopK', options.indexTopK ?? DEFAULT_TOP_K);
    this.useIndex = options.useIndex ?? true;
    this.scanBudget = resolveScanBudget(options.scanBudget);
    this.#now = options.now ?? (() => new Date());
  }

  verifyStamp(record: ExperienceRecord): boolean {
    return verifyStamp(record);
  }

  /**
   * Append a batch to its task's log and bring the index up to date. The whole
   * batch is validated first: on bad input nothing is written.
   */
  async recordBatch(inputs: ExperienceInput[], manifestPath: string): Promise<ExperienceRecord[]> {
    if (Array.isArray(inputs) && inputs.length === 0) return [];
    const valid = validateBatch(inputs);
    if (typeof manifestPath !== 'string') {
      throw new ExperienceStoreError('EXP_INVALID_INPUT', 'manifestPath must be a string; nothing was written');
    }
    const now = this.#now();
    const records = valid.map((input) => normalizeInput(input, { maxSummaryWords: this.maxSummaryWords, now, manifestPath }));
    // One batch shares a millisecond, so ids differ only in 24 random bits: redraw
    // the rare collision (a 300-record batch would otherwise repeat an id 0.3% of the time).
    const ids = new Set<string>();
    for (const record of records) {
      while (ids.has(record.id)) record.id = newRecordId(now);
      ids.add(record.id);
    }
    const paths = taskPaths(this.outDir, this.runsDir, records[0]!.taskId);
    try {
      mkdirSync(paths.dir, { recursive: true });
    } catch (err) {
      throw ioError('create the task directory', paths.dir, err);
    }
    const payload = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
    await withTaskLock(paths.lock, paths.taskId, this.lockRetry, () =>
      withLog(openLogForAppending(paths.log), (fd) => this.#append(paths, fd, payload)),
    );
    return records;
  }

  // Order under the lock: catch the index up, append, write the index, unlock.
  // A crash between any two steps leaves an index that is stale, never wrong.
  async #append(paths: TaskPaths, fd: number, payload: string): Promise<void> {
    const before = fstatLog(fd);
    // A crashed writer may have left a partial last line: terminate it, so it
    // becomes one malformed line instead of swallowing our first record.
    const bytes = Buffer.from(endsWithNewline(fd, before.size) ? payload : '\n' + payload);
    const base = this.useIndex ? await this.#catchUpUnderLock(paths, fd, before).catch(() => undefined) : undefined;
    appendToLog(fd, bytes, paths.log);
    if (base === undefined) return;

    // Index = the caught-up state + the bytes since its end, read back as any
    // reader would read them (our records, and a terminated partial line).
    const after = fstatLog(fd);
    const tail = await scanLog(fd, base.end, after.size, cloneState(base.state));
    const state = trimState(tail.state);
    const stamp = stampOf(after, tail.end, fingerprintAt(fd, tail.end));
    this.#cache.remember(paths.index, after, indexOfState(state, stamp), 0);
    // Best effort: a read-only directory or a full disk must not fail an append
    // that already happened; readers catch up from the log.
    await writeIndex(paths.index, state, stamp).catch(() => undefined);
  }

  async fetchTop(query: FetchQuery): Promise<ExperienceRecord[]> {
    return (await this.fetchTopDetailed(query)).records;
  }

  async fetchTopDetailed(query: FetchQuery): Promise<FetchResult> {
    const q = checkQuery(query);
    const stats: FetchStats = { indexHits: 0, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 };
    if (q.domain === '' || !(q.limit > 0)) return { records: [], truncated: false, stats };

    const budget = budgetForFetch(this.scanBudget);
    const perTask: (readonly ExperienceRecord[])[] = [];
    let truncated = false;
    for (const taskId of q.taskId !== undefined ? [q.taskId] : this.listTasks()) {
      const paths = taskPaths(this.outDir, this.runsDir, taskId);
      const answer = this.useIndex
        ? await this.#readTask(paths, q.domain, q.limit, budget, stats)
        : await this.#scanTask(paths, q.domain, q.limit, budget, stats);
      truncated ||= answer.truncated;
      if (answer.top.length > 0) perTask.push(answer.top);
    }
    const ranked = mergeRanked(perTask, q.limit);
    const kept = q.minReward === undefined ? ranked : ranked.filter((r) => score(r) >= q.minReward!);
    // Callers own what they get: never hand out the cached objects themselves.
    return { records: cloneJson(kept), truncated, stats };
  }

  /**
   * Rebuild the index of one task, or of every task, by a full scan with
   * `indexTopK`. The scan runs without the lock; the lock is taken only to catch
   * up with appends made meanwhile and to write the index.
   */
  async rebuildIndex(
    taskId?: string,
    options: { onProgress?: (progress: RebuildProgress) => void } = {},
  ): Promise<RebuildResult> {
    if (taskId !== undefined) checkTaskId('taskId', taskId);
    const result: RebuildResult = { tasks: 0, records: 0, malformed: 0 };
    for (const id of taskId !== undefined ? [taskId] : this.listTasks()) {
      const state = await this.#rebuildTask(taskPaths(this.outDir, this.runsDir, id), options.onProgress);
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
      if (entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(`${this.outDir}/${entry.name}`))) ids.push(entry.name);
    }
    return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** One task's answer through the index: from memory, from the index file, a tail or a full scan. */
  async #readTask(paths: TaskPaths, domain: string, limit: number, budget: ReadBudget, stats: FetchStats): Promise<TaskAnswer> {
    // Hot: the index this instance last parsed or built, if the log has not changed since.
    if (this.#cache.peek(paths.index)?.canAnswer(domain, limit)) {
      const log = statLog(paths.log);
      if (log === undefined) return NO_ANSWER;
      const cached = this.#cache.match(paths.index, log, paths.log);
      const top = cached && topOrUndefined(cached, domain);
      if (top !== undefined) {
        stats.indexHits++;
        return { top, truncated: false };
      }
    }

    // Cold: read the index first, then stat the log (see docs: a log seen after
    // its index is never shorter than the index's offset unless it was replaced).
    const read = readIndex(paths.index);
    const index = read.kind === 'ok' ? read.index : undefined;
    const log = statLog(paths.log);
    const decision = decideFreshness(index?.header.log, log);
    if (decision.kind === 'no-log') return NO_ANSWER;
    const canAnswer = index?.canAnswer(domain, limit) ?? false;
    if (decision.kind === 'fresh' && canAnswer) {
      // Size, mtime and ctime say fresh; confirm by content (a same-size rewrite
      // within one clock tick is invisible to stat). Reads at most 4 KiB, not counted.
      const top = logMatchesStamp(paths.log, index!.header.log) ? topOrUndefined(index!, domain) : undefined;
      if (top !== undefined) {
        this.#cache.remember(paths.index, log!, index!, Date.now());
        stats.indexHits++;
        return { top, truncated: false };
      }
    }

    const fd = openLogForReading(paths.log);
    if (fd === undefined) return NO_ANSWER;
    return withLog(fd, async () => {
      const opened = fstatLog(fd);
      const caught = await catchUp(fd, opened, index, decideFreshness(index?.header.log, opened), {
        fullScanK: this.indexTopK,
        budget,
        query: { domain, limit },
        // The index could not answer from the stat above: do not let a second look use it.
        forceRescan: !canAnswer || decision.kind === 'fresh' || decision.kind === 'rescan',
      });
      if (caught.how === 'tail') stats.tails++;
      if (caught.how === 'full') stats.fullScans++;
      stats.bytesRead += caught.bytesRead;
      stats.linesRead += caught.linesRead;
      // Never persist or cache what a budget cut short: it is not a function of a log prefix.
      if (!caught.truncated) await this.#heal(paths, fd, opened, caught);
      return { top: caught.state.domains.get(domain)?.top ?? [], truncated: caught.truncated };
    });
  }

  /** One task's answer by a full scan that keeps only `limit` records of `domain` (useIndex: false). */
  async #scanTask(paths: TaskPaths, domain: string, limit: number, budget: ReadBudget, stats: FetchStats): Promise<TaskAnswer> {
    const fd = openLogForReading(paths.log);
    if (fd === undefined) return NO_ANSWER;
    return withLog(fd, async () => {
      const { size } = fstatLog(fd);
      if (size === 0) return NO_ANSWER;
      const scan = await scanLog(fd, 0, size, emptyState(limit), { budget, capFor: (d) => (d === domain ? limit : 0) });
      stats.fullScans++;
      stats.bytesRead += scan.bytesRead;
      stats.linesRead += scan.linesRead;
      return { top: scan.state.domains.get(domain)?.top ?? [], truncated: scan.truncated };
    });
  }

  /** The index state of the log as `log` describes it: from memory, the index file, a tail or a full scan. */
  async #catchUpUnderLock(paths: TaskPaths, fd: number, log: LogStat): Promise<CaughtUp> {
    const cached = this.#cache.match(paths.index, log, fd);
    if (cached !== undefined) {
      try {
        const state = cached.toState();
        return { state, end: cached.header.log.offset, truncated: false, how: 'index', bytesRead: 0, linesRead: 0 };
      } catch (err) {
        if (!(err instanceof InvalidIndexError)) throw err;
      }
    }
    const read = readIndex(paths.index);
    const index = read.kind === 'ok' ? read.index : undefined;
    return catchUp(fd, log, index, decideFreshness(index?.header.log, log), { fullScanK: this.indexTopK });
  }

  /**
   * Write back what a fetch learned, if the task's lock is free right now and
   * the log is still exactly what was read. Best effort: never fails the fetch.
   */
  async #heal(paths: TaskPaths, fd: number, log: LogStat, caught: CaughtUp): Promise<void> {
    const state = trimState(caught.state);
    const stamp = stampOf(log, caught.end, fingerprintAt(fd, caught.end));
    this.#cache.remember(paths.index, log, indexOfState(state, stamp), Date.now());
    if (caught.how === 'index') return;
    try {
      await tryWithTaskLock(paths.lock, async () => {
        const now = statLog(paths.log);
        if (now !== undefined && statKeyEquals(now, log)) await writeIndex(paths.index, state, stamp);
      });
    } catch {
      // The index is a cache: an unwritable directory only costs the next reader a scan.
    }
  }

  async #rebuildTask(paths: TaskPaths, onProgress?: (p: RebuildProgress) => void): Promise<TopState | undefined> {
    const fd = openLogForReading(paths.log);
    if (fd === undefined) return undefined;
    const scanned = await withLog(fd, async () => {
      const log = fstatLog(fd);
      let bytesDone = 0;
      const state = emptyState(this.indexTopK);
      const scan = await scanLog(fd, 0, log.size, state, {
        onProgress: (n) => {
          bytesDone += n;
          onProgress?.({ taskId: paths.taskId, bytesDone, bytesTotal: log.size, records: state.records });
        },
      });
      return { state, stamp: stampOf(log, scan.end, fingerprintAt(fd, scan.end)) };
    });
    return withTaskLock(paths.lock, paths.taskId, this.lockRetry, async () => {
      const again = openLogForReading(paths.log);
      if (again === undefined) return undefined;
      return withLog(again, async () => {
        // Catch up with appends made while we scanned, exactly as a tail would.
        const log = fstatLog(again);
        const caught = await catchUp(again, log, indexOfState(scanned.state, scanned.stamp), decideFreshness(scanned.stamp, log), {
          fullScanK: this.indexTopK,
        });
        const state = trimState(caught.state);
        const stamp = stampOf(log, caught.end, fingerprintAt(again, caught.end));
        try {
          await writeIndex(paths.index, state, stamp);
        } catch (err) {
          throw ioError('write the index', paths.index, err);
        }
        this.#cache.remember(paths.index, log, indexOfState(state, stamp), Date.now());
        return state;
      });
    });
  }
}

function topOrUndefined(index: LoadedIndex, domain: string): readonly ExperienceRecord[] | undefined {
  try {
    return index.top(domain);
  } catch (err) {
    if (err instanceof InvalidIndexError) return undefined;
    throw err;
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `options.${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
