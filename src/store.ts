/**
 * ExperienceStore: the append-only log of each task plus its sidecar top-K index.
 * Reads answer from the index when it is fresh, read only the new bytes when the
 * log grew, and fall back to a full scan otherwise; every answer equals a plain
 * full scan of the logs on disk. See docs/index-format.md for the argument.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeSync, type BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { errorCode, ExperienceStoreError, ioError } from './errors.js';
import { decideFreshness, isRacy, stampOf, statKeyEquals, type Freshness, type LogStat } from './freshness.js';
import {
  fingerprintAt,
  indexOfState,
  InvalidIndexError,
  logMatchesStamp,
  logMatchesStampAt,
  readIndex,
  writeIndex,
  type LoadedIndex,
} from './index-file.js';
import { fdOf, unlimitedBudget, type LogFile, type ReadBudget } from './line-reader.js';
import { DEFAULT_LOCK_RETRY, tryWithTaskLock, withTaskLock, type LockRetry } from './lock.js';
import { isValidTaskId, resolveStoreDirs, taskIdProblem, taskPaths, type TaskPaths } from './paths.js';
import { cloneJson, newRecordId, normalizeInput, score, validateBatch, verifyStamp, type ExperienceInput, type ExperienceRecord } from './record.js';
import { budgetForFetch, resolveScanBudget, type ScanBudget } from './scan-budget.js';
import { scanLog } from './scan.js';
import { cloneState, emptyState, mergeRanked, trimState, type TopState } from './top-k.js';

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

export interface FetchQuery {
  domain: string;
  limit: number;
  minReward?: number;
  taskId?: string;
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

/** An index this instance has parsed or built, and the log stat it describes. */
interface CachedIndex {
  log: LogStat;
  /** When the log was last confirmed to match by content (see isRacy). */
  checkedAtMs: number;
  index: LoadedIndex;
}

/** A log prefix brought up to date: the state of [0, end) and how it was obtained. */
interface CaughtUp {
  state: TopState;
  end: number;
  truncated: boolean;
  how: 'index' | 'tail' | 'full';
}

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
  readonly #cache = new Map<string, CachedIndex>();

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
    await withTaskLock(paths.lock, paths.taskId, this.lockRetry, () => this.#append(paths, payload));
    return records;
  }

  // Order under the lock: catch the index up, append, write the index, unlock.
  // A crash between any two steps leaves an index that is stale, never wrong.
  async #append(paths: TaskPaths, payload: string): Promise<void> {
    let fd: number;
    try {
      fd = openSync(paths.log, 'a+');
    } catch (err) {
      throw ioError('open the log', paths.log, err);
    }
    try {
      const before = fstatLog(fd);
      // A crashed writer may have left a partial last line: terminate it, so it
      // becomes one malformed line instead of swallowing our first record.
      const needsNewline = before.size > 0 && lastByte(fd, before.size) !== 0x0a;
      let base: CaughtUp | undefined;
      if (this.useIndex) base = await this.#catchUp(paths, fd, before).catch(() => undefined);

      // One write of the whole payload on an O_APPEND descriptor: concurrent
      // appenders (older writers that skip the lock) can never interleave inside it.
      const bytes = Buffer.from(needsNewline ? '\n' + payload : payload);
      try {
        let written = 0;
        while (written < bytes.length) {
          written += writeSync(fd, bytes, written, bytes.length - written);
        }
      } catch (err) {
        throw ioError('append to the log', paths.log, err);
      }

      if (base !== undefined) {
        // Index = the caught-up state + the bytes since its end, read back as any
        // reader would read them (our records, and a terminated partial line).
        const after = fstatLog(fd);
        const tail = await scanLog(fd, base.end, after.size, cloneState(base.state));
        const stamp = stampOf(after, tail.end, fingerprintAt(fd, tail.end));
        const state = trimState(tail.state);
        this.#cache.set(paths.index, { log: after, checkedAtMs: 0, index: indexOfState(state, stamp) });
        // Best effort: a read-only directory or a full disk must not fail an append
        // that already happened; readers catch up from the log.
        await writeIndex(paths.index, state, stamp).catch(() => undefined);
      }
    } finally {
      closeSync(fd);
    }
  }

  async fetchTop(query: FetchQuery): Promise<ExperienceRecord[]> {
    return (await this.fetchTopDetailed(query)).records;
  }

  async fetchTopDetailed(query: FetchQuery): Promise<FetchResult> {
    const q = checkQuery(query);
    const stats: FetchStats = { indexHits: 0, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 };
    if (q.domain === '' || !(q.limit > 0)) return { records: [], truncated: false, stats };

    const budget = budgetForFetch(this.scanBudget);
    const taskIds = q.taskId !== undefined ? [q.taskId] : this.listTasks();
    const perTask: (readonly ExperienceRecord[])[] = [];
    let truncated = false;
    for (const taskId of taskIds) {
      const paths = taskPaths(this.outDir, this.runsDir, taskId);
      const answer = this.useIndex
        ? await this.#readTask(paths, q.domain, q.limit, budget, stats)
        : await this.#scanTaskWithoutIndex(paths, q.domain, q.limit, budget, stats);
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
    const taskIds = taskId !== undefined ? [taskId] : this.listTasks();
    const result: RebuildResult = { tasks: 0, records: 0, malformed: 0 };
    for (const id of taskIds) {
      const paths = taskPaths(this.outDir, this.runsDir, id);
      const state = await this.#rebuildTask(paths, options.onProgress);
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

  async #readTask(
    paths: TaskPaths,
    domain: string,
    limit: number,
    budget: ReadBudget,
    stats: FetchStats,
  ): Promise<{ top: readonly ExperienceRecord[]; truncated: boolean }> {
    // Hot: the index this instance last parsed or built, if the log has not changed since.
    const cached = this.#cache.get(paths.index);
    if (cached !== undefined && cached.index.canAnswer(domain, limit)) {
      const log = statLog(paths.log);
      if (log === undefined) return { top: [], truncated: false };
      if (statKeyEquals(log, cached.log) && this.#confirmCached(cached, paths.log)) {
        const top = topOrUndefined(cached.index, domain);
        if (top !== undefined) {
          stats.indexHits++;
          return { top, truncated: false };
        }
      }
    }

    // Cold: read the index first, then stat the log (see docs: a log seen after
    // its index is never shorter than the index's offset unless it was replaced).
    const read = readIndex(paths.index);
    const index = read.kind === 'ok' ? read.index : undefined;
    const log = statLog(paths.log);
    let decision = decideFreshness(index?.header.log, log);
    if (decision.kind === 'no-log') return { top: [], truncated: false };
    if (index !== undefined && !index.canAnswer(domain, limit)) decision = { kind: 'rescan', reason: 'limit-exceeds-k' };
    if (decision.kind === 'fresh' && index !== undefined) {
      // Size and mtime say fresh; confirm by content (a same-size rewrite within
      // one mtime tick is invisible to stat). Reads at most 4 KiB, not counted.
      const top = logMatchesStamp(paths.log, index.header.log) ? topOrUndefined(index, domain) : undefined;
      if (top !== undefined) {
        this.#cache.set(paths.index, { log: log!, checkedAtMs: Date.now(), index });
        stats.indexHits++;
        return { top, truncated: false };
      }
      decision = { kind: 'rescan', reason: 'fingerprint-mismatch' };
    }

    // A descriptor, not a FileHandle: its async open and close were a third of a tail fetch.
    let fd: number;
    try {
      fd = openSync(paths.log, 'r');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return { top: [], truncated: false };
      throw ioError('open the log', paths.log, err);
    }
    try {
      const opened = fstatLog(fd);
      const caught = await this.#bringUpToDate(fd, opened, index, decideFreshness(index?.header.log, opened), {
        budget,
        query: { domain, limit },
        forceRescan: decision.kind === 'rescan',
      });
      if (caught.how === 'tail') stats.tails++;
      if (caught.how === 'full') stats.fullScans++;
      stats.bytesRead += caught.bytesRead;
      stats.linesRead += caught.linesRead;
      const top = caught.state.domains.get(domain)?.top ?? [];
      // Never persist or cache what a budget cut short: it is not a function of a log prefix.
      if (!caught.truncated) await this.#heal(paths, fd, opened, caught);
      return { top, truncated: caught.truncated };
    } finally {
      closeSync(fd);
    }
  }

  async #scanTaskWithoutIndex(
    paths: TaskPaths,
    domain: string,
    limit: number,
    budget: ReadBudget,
    stats: FetchStats,
  ): Promise<{ top: readonly ExperienceRecord[]; truncated: boolean }> {
    let fd: number;
    try {
      fd = openSync(paths.log, 'r');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return { top: [], truncated: false };
      throw ioError('open the log', paths.log, err);
    }
    try {
      const { size } = fstatSync(fd);
      if (size === 0) return { top: [], truncated: false };
      const scan = await scanLog(fd, 0, size, emptyState(limit), { budget, capFor: (d) => (d === domain ? limit : 0) });
      stats.fullScans++;
      stats.bytesRead += scan.bytesRead;
      stats.linesRead += scan.linesRead;
      return { top: scan.state.domains.get(domain)?.top ?? [], truncated: scan.truncated };
    } finally {
      closeSync(fd);
    }
  }

  /** The index state of the log as `log` describes it: from cache, index, tail or full scan. Under the lock. */
  async #catchUp(paths: TaskPaths, file: LogFile, log: LogStat): Promise<CaughtUp> {
    const cached = this.#cache.get(paths.index);
    if (cached !== undefined && statKeyEquals(cached.log, log) && this.#confirmCached(cached, file)) {
      try {
        return { state: cached.index.toState(), end: cached.index.header.log.offset, truncated: false, how: 'index' };
      } catch {
        // fall through to the index on disk
      }
    }
    const read = readIndex(paths.index);
    const index = read.kind === 'ok' ? read.index : undefined;
    return this.#bringUpToDate(file, log, index, decideFreshness(index?.header.log, log), {});
  }

  /**
   * Apply a freshness decision: use the index as is, read its tail, or scan the
   * whole log. Any doubt (fingerprint, a bad domain line) costs a full scan.
   */
  async #bringUpToDate(
    file: LogFile,
    log: LogStat,
    index: LoadedIndex | undefined,
    decision: Freshness,
    options: { budget?: ReadBudget; query?: { domain: string; limit: number }; forceRescan?: boolean },
  ): Promise<CaughtUp & { bytesRead: number; linesRead: number }> {
    // A fetch keeps `limit` records of the domain it answers (the index keeps k);
    // a persisted state is trimmed back to k.
    const capsFor = (k: number) => {
      const q = options.query;
      return q === undefined ? undefined : (d: string) => (d === q.domain ? Math.max(q.limit, k) : k);
    };
    if (index !== undefined && !options.forceRescan) {
      try {
        const stamp = index.header.log;
        if (decision.kind === 'fresh' && logMatchesStampAt(fdOf(file), stamp)) {
          return { state: index.toState(), end: stamp.offset, truncated: false, how: 'index', bytesRead: 0, linesRead: 0 };
        }
        if (decision.kind === 'tail' && fingerprintAt(fdOf(file), decision.from) === stamp.fingerprint) {
          const scan = await scanLog(file, decision.from, log.size, cloneState(index.toState()), {
            budget: options.budget,
            capFor: capsFor(index.k),
          });
          return { ...scan, how: 'tail' };
        }
      } catch (err) {
        if (!(err instanceof InvalidIndexError)) throw err;
      }
    }
    const scan = await scanLog(file, 0, log.size, emptyState(this.indexTopK), {
      budget: options.budget ?? unlimitedBudget(),
      capFor: capsFor(this.indexTopK),
    });
    return { ...scan, how: 'full' };
  }

  /**
   * Write back what a fetch learned, if the task's lock is free right now and
   * the log is still exactly what was read. Best effort: never fails the fetch.
   */
  async #heal(paths: TaskPaths, fd: number, log: LogStat, caught: CaughtUp): Promise<void> {
    const state = trimState(caught.state);
    const stamp = stampOf(log, caught.end, fingerprintAt(fd, caught.end));
    this.#cache.set(paths.index, { log, checkedAtMs: Date.now(), index: indexOfState(state, stamp) });
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

  /** A cached index may answer without reading the log unless its stamp is racy; then check content. */
  #confirmCached(cached: CachedIndex, log: string | LogFile): boolean {
    if (!isRacy(cached.log.ctimeNs, cached.checkedAtMs)) return true;
    const checkedAtMs = Date.now();
    const stamp = cached.index.header.log;
    if (!(typeof log === 'string' ? logMatchesStamp(log, stamp) : logMatchesStampAt(fdOf(log), stamp))) return false;
    cached.checkedAtMs = checkedAtMs;
    return true;
  }

  async #rebuildTask(paths: TaskPaths, onProgress?: (p: RebuildProgress) => void): Promise<TopState | undefined> {
    let file: FileHandle;
    try {
      file = await open(paths.log, 'r');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw ioError('open the log', paths.log, err);
    }
    let scanned: { log: LogStat; end: number; state: TopState; fingerprint: string };
    try {
      const log = fstatLog(file.fd);
      let bytesDone = 0;
      const state = emptyState(this.indexTopK);
      const scan = await scanLog(file, 0, log.size, state, {
        onProgress: (n) => {
          bytesDone += n;
          onProgress?.({ taskId: paths.taskId, bytesDone, bytesTotal: log.size, records: state.records });
        },
      });
      scanned = { log, end: scan.end, state, fingerprint: fingerprintAt(file.fd, scan.end) };
    } finally {
      await file.close();
    }
    return withTaskLock(paths.lock, paths.taskId, this.lockRetry, async () => {
      const file = await open(paths.log, 'r');
      try {
        const log = fstatLog(file.fd);
        // Catch up with appends made while we scanned, exactly as a tail would.
        const stamp = stampOf(scanned.log, scanned.end, scanned.fingerprint);
        const index = indexOfState(scanned.state, stamp);
        const caught = await this.#bringUpToDate(file, log, index, decideFreshness(stamp, log), {});
        const state = trimState(caught.state);
        const finalStamp = stampOf(log, caught.end, fingerprintAt(file.fd, caught.end));
        try {
          await writeIndex(paths.index, state, finalStamp);
        } catch (err) {
          throw ioError('write the index', paths.index, err);
        }
        this.#cache.set(paths.index, { log, checkedAtMs: Date.now(), index: indexOfState(state, finalStamp) });
        return state;
      } finally {
        await file.close();
      }
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

function toLogStat(s: BigIntStats): LogStat {
  return { dev: s.dev, ino: s.ino, size: Number(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
}

/** A bigint stat of the log, or undefined when there is none (no log yet is an answer). */
function statLog(logPath: string): LogStat | undefined {
  try {
    return toLogStat(statSync(logPath, { bigint: true }));
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return undefined;
    throw ioError('stat the log', logPath, err);
  }
}

// Synchronous, as are the other small reads and writes under the lock: each is
// microseconds, where a round trip through libuv's pool costs tens of them.
function fstatLog(fd: number): LogStat {
  return toLogStat(fstatSync(fd, { bigint: true }));
}

function lastByte(fd: number, size: number): number | undefined {
  const buffer = Buffer.alloc(1);
  return readSync(fd, buffer, 0, 1, size - 1) === 1 ? buffer[0] : undefined;
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

function checkTaskId(field: string, taskId: unknown): string {
  if (typeof taskId !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} must be a string`);
  const problem = taskIdProblem(taskId);
  if (problem) throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} ${problem}`);
  return taskId;
}

function checkQuery(query: FetchQuery): Required<Pick<FetchQuery, 'domain' | 'limit'>> & FetchQuery {
  if (typeof query !== 'object' || query === null) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', 'query must be an object { domain, limit, minReward?, taskId? }');
  }
  if (typeof query.domain !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', 'query.domain must be a string');
  if (typeof query.limit !== 'number' || Number.isNaN(query.limit)) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.limit must be a number, got ${String(query.limit)}`);
  }
  if (query.minReward !== undefined && (typeof query.minReward !== 'number' || Number.isNaN(query.minReward))) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.minReward must be a number, got ${String(query.minReward)}`);
  }
  return {
    domain: query.domain.trim(),
    limit: Math.floor(query.limit),
    minReward: query.minReward,
    taskId: query.taskId === undefined ? undefined : checkTaskId('query.taskId', query.taskId),
  };
}
