/**
 * store.verify() and store.stats(): what a maintainer (or an orchestrator, in
 * process) learns about each task's log and index, as plain JSON-able reports.
 * Only `verify({ fix: true })` writes (through rebuildIndex, under the lock);
 * everything else opens files for reading and creates nothing.
 *
 * Same order as a fetch: read the index, then stat the log (a log seen after its
 * index is never shorter than the index's offset unless it was truncated or
 * replaced). The comparison with the log goes through the LoadedIndex accessors
 * only (header, k, count, top, pool), so it follows the index format.
 */
import { readdirSync } from 'node:fs';
import { errorCode, ExperienceStoreError, ioError } from './errors.js';
import { decideFreshness, type LogStat } from './freshness.js';
import { fingerprintAt, InvalidIndexError, logMatchesStampAt, readIndex, type IndexReadResult, type LoadedIndex } from './index-file.js';
import { fstatLog, openLogForReading, withLog } from './log-file.js';
import { INDEX_FILE, taskPaths, type TaskPaths } from './paths.js';
import { checkTaskId } from './query.js';
import { scanLog } from './scan.js';
import { emptyState, type Entry, type TopState } from './top-k.js';

/**
 * Where a task's index stands against its log as it is now.
 * - `missing`: no index file; the next write or fetch builds one.
 * - `invalid`: unreadable, bad checksum, schema or version (`reason` says which); a fetch rescans.
 * - `no-log`: a valid index beside no log; fetches return nothing.
 * - `fresh`: the index covers the whole log.
 * - `stale`: the log grew by `staleBytes` past the index's offset; a fetch reads only those.
 * - `stale-replaced`: the log was truncated, replaced or rewritten (`reason`); a fetch rescans.
 */
export type IndexStateKind = 'missing' | 'invalid' | 'no-log' | 'fresh' | 'stale' | 'stale-replaced';

/** An index's state, and what its header says when it is valid. */
export interface IndexReport {
  state: IndexStateKind;
  /** `invalid`: why; `stale-replaced`: the rescan reason (`shrunk`, `file-replaced`, ...). */
  reason?: string;
  /** `stale`: log bytes past the index's offset. */
  staleBytes?: number;
  /** Valid index: records kept per domain. */
  k?: number;
  /** Valid index: bytes of the log it covers. */
  offset?: number;
  /** Valid index: records in the log prefix it covers. */
  records?: number;
  /** Valid index: domains it lists. */
  domainCount?: number;
}

/** One difference between an index and the log prefix it covers. */
export interface Problem {
  /** The domain it concerns; absent for task-wide problems (counts, an invalid index). */
  domain?: string;
  message: string;
}

/** What `store.verify()` says about one task. */
export interface TaskReport {
  taskId: string;
  /**
   * The task's index is sound now: no problems found, or, with `fix`, none left
   * after the rebuild. A missing or stale index is sound (a fetch heals it).
   */
  ok: boolean;
  /** The index as the check found it. */
  index: IndexReport;
  /** What the check found (before any rebuild). Empty when the index matches its log. */
  problems: Problem[];
  /** Present when `fix` rebuilt this task's index: the check run again on the rebuilt index. */
  fix?: { rebuilt: true; index: IndexReport; problems: Problem[] };
}

/** What `store.stats()` says about one task. */
export interface TaskStats {
  taskId: string;
  /** Size of the log in bytes; 0 when there is none. */
  logBytes: number;
  /** Valid records in the log (complete lines only), by a streamed full scan. */
  records: number;
  /** Non-blank complete lines that are not records. */
  malformed: number;
  /** Records per domain, domains in code-unit order. */
  domains: Array<{ domain: string; count: number }>;
  index: IndexReport;
  /** write-file-atomic temp files (`experiences.top.json.<n>`) a killed writer left; readers ignore them. */
  strayTempFiles: string[];
}

export interface VerifyOptions {
  /** Only this task (validated like a written task id); default every task. */
  taskId?: string;
  /** Rebuild each failing index (with the K it was built with, when its header is readable), then check it again. */
  fix?: boolean;
}

export interface StatsOptions {
  /** Only this task (validated like a written task id); default every task. */
  taskId?: string;
}

/** What the checks need of the store. */
export interface InspectedStore {
  readonly outDir: string;
  readonly runsDir: string;
  listTasks(): string[];
}

/** Rebuilds one task's index with `k` (undefined: the store's indexTopK). */
export type RebuildTask = (taskId: string, k: number | undefined) => Promise<unknown>;

export async function verifyStore(store: InspectedStore, options: VerifyOptions, rebuild: RebuildTask): Promise<TaskReport[]> {
  const reports: TaskReport[] = [];
  for (const taskId of tasksOf(store, options.taskId)) {
    const paths = taskPaths(store.outDir, store.runsDir, taskId);
    const found = await funnel(paths, () => verifyTask(paths));
    if (found.problems.length === 0 || options.fix !== true) {
      reports.push({ taskId, ok: found.problems.length === 0, index: found.index, problems: found.problems });
      continue;
    }
    await rebuild(taskId, found.index.k);
    const after = await funnel(paths, () => verifyTask(paths));
    reports.push({
      taskId,
      ok: after.problems.length === 0,
      index: found.index,
      problems: found.problems,
      fix: { rebuilt: true, index: after.index, problems: after.problems },
    });
  }
  return reports;
}

export async function statsOfStore(store: InspectedStore, options: StatsOptions): Promise<TaskStats[]> {
  const all: TaskStats[] = [];
  for (const taskId of tasksOf(store, options.taskId)) {
    const paths = taskPaths(store.outDir, store.runsDir, taskId);
    all.push(await funnel(paths, () => statsOfTask(paths)));
  }
  return all;
}

/** Errors leave as ExperienceStoreErrors: an fs failure is EXP_IO naming the task's log, the fs error as its cause. */
async function funnel<T>(paths: TaskPaths, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof ExperienceStoreError ? err : ioError('read the log', paths.log, err);
  }
}

function tasksOf(store: InspectedStore, taskId: string | undefined): string[] {
  return taskId !== undefined ? [checkTaskId('taskId', taskId)] : store.listTasks();
}

/**
 * Check that the index equals a full scan of the log prefix it names,
 * [0, offset), scanned with the index's own K. Only an index a fetch would use
 * (fresh, or stale by appended bytes) is compared; an invalid one is a problem
 * (also beside no log: it is garbage a reader would trip over); a missing one,
 * or one whose log was truncated or replaced (a fetch rescans), is not.
 */
async function verifyTask(paths: TaskPaths): Promise<{ index: IndexReport; problems: Problem[] }> {
  const read = readIndex(paths.index);
  return withOpenLog(paths, async (fd, log) => {
    const index = indexReport(read, fd, log);
    if (read.kind === 'invalid') {
      const where = log === undefined ? ' (beside no log)' : '';
      return { index, problems: [{ message: `index invalid: ${read.reason}${where}` }] };
    }
    if ((index.state !== 'fresh' && index.state !== 'stale') || read.kind !== 'ok' || fd === undefined) return { index, problems: [] };
    const scanned = await scanPrefix(fd, read.index.header.log.offset, read.index.k);
    return { index, problems: compareIndex(read.index, scanned.state, scanned.end) };
  });
}

async function statsOfTask(paths: TaskPaths): Promise<TaskStats> {
  const read = readIndex(paths.index);
  return withOpenLog(paths, async (fd, log) => {
    const index = indexReport(read, fd, log);
    const scanned = fd === undefined || log === undefined ? undefined : await scanPrefix(fd, log.size, 0);
    const domains = [...(scanned?.state.domains ?? [])]
      .map(([domain, d]) => ({ domain, count: d.count }))
      .sort((a, b) => compareStrings(a.domain, b.domain));
    return {
      taskId: paths.taskId,
      logBytes: log?.size ?? 0,
      records: scanned?.state.records ?? 0,
      malformed: scanned?.state.malformed ?? 0,
      domains,
      index,
      strayTempFiles: strayTempFiles(paths.dir),
    };
  });
}

/** Run `fn` with the log open (fd and stat), or with undefined for both when there is no log. */
async function withOpenLog<T>(paths: TaskPaths, fn: (fd: number | undefined, log: LogStat | undefined) => Promise<T>): Promise<T> {
  const fd = openLogForReading(paths.log);
  if (fd === undefined) return fn(undefined, undefined);
  return withLog(fd, () => fn(fd, fstatLog(fd, paths.log)));
}

/**
 * The index's state by the store's own decision table; "fresh" and "stale" also
 * need the fingerprint of the covered prefix to match, exactly as a fetch checks
 * before it trusts the index.
 */
function indexReport(read: IndexReadResult, fd: number | undefined, log: LogStat | undefined): IndexReport {
  if (read.kind === 'missing') return { state: 'missing' };
  if (read.kind === 'invalid') return { state: 'invalid', reason: read.reason };
  const { header } = read.index;
  const valid = { k: header.k, offset: header.log.offset, records: header.records, domainCount: header.domains.length };
  if (fd === undefined || log === undefined) return { state: 'no-log', ...valid };
  const stamp = header.log;
  const decision = decideFreshness(stamp, log);
  try {
    if (decision.kind === 'fresh' && logMatchesStampAt(fd, stamp)) return { state: 'fresh', ...valid };
    if (decision.kind === 'tail' && fingerprintAt(fd, stamp.offset) === stamp.fingerprint) {
      return { state: 'stale', staleBytes: log.size - stamp.offset, ...valid };
    }
  } catch (err) {
    if (!(err instanceof InvalidIndexError)) throw err;
  }
  return { state: 'stale-replaced', reason: decision.kind === 'rescan' ? decision.reason : 'fingerprint-mismatch', ...valid };
}

/**
 * Every record of [0, to) counted, keeping the best `k` of each domain (k = 0:
 * counts only). Streamed in chunks: a log of any size costs the same memory.
 */
async function scanPrefix(fd: number, to: number, k: number): Promise<{ state: TopState; end: number }> {
  const scan = await scanLog(fd, 0, to, emptyState(k));
  return { state: scan.state, end: scan.end };
}

/** Every way `index` differs from `scanned`, the state of [0, end) of its log. */
function compareIndex(index: LoadedIndex, scanned: TopState, end: number): Problem[] {
  const { header } = index;
  const offset = header.log.offset;
  const problems: Problem[] = [];
  if (end !== offset) {
    problems.push({ message: `the index covers ${offset} bytes, but the last line in them ends at byte ${end}` });
  }
  const prefix = `the log's first ${offset.toLocaleString('en-US')} bytes`;
  if (header.records !== scanned.records) {
    problems.push({ message: `records: the index says ${header.records}, ${prefix} hold ${scanned.records}` });
  }
  if (header.malformed !== scanned.malformed) {
    problems.push({ message: `malformed lines: the index says ${header.malformed}, ${prefix} hold ${scanned.malformed}` });
  }

  const names = new Set([...header.domains.map((d) => d.domain), ...scanned.domains.keys()]);
  for (const domain of [...names].sort(compareStrings)) {
    const want = scanned.domains.get(domain);
    const count = index.count(domain);
    if (want === undefined) {
      problems.push({ domain, message: `the index lists ${count} record(s), ${prefix} hold none` });
      continue;
    }
    if (count === 0) {
      problems.push({ domain, message: `${prefix} hold ${want.count} record(s), the index has no such domain` });
      continue;
    }
    if (count !== want.count) problems.push({ domain, message: `count: the index says ${count}, ${prefix} hold ${want.count}` });
    try {
      const difference = compareTops(index.top(domain), want.top) ?? comparePools(index.pool(domain), want.pool);
      if (difference !== undefined) problems.push({ domain, message: difference });
    } catch (err) {
      if (!(err instanceof InvalidIndexError)) throw err;
      problems.push({ domain, message: `index invalid: ${err.message}` });
    }
  }
  return problems;
}

/** The first place two ranked lists differ, in words; undefined when they are equal. */
function compareTops(got: readonly Entry[], want: readonly Entry[]): string | undefined {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const a = got[i]?.record;
    const b = want[i]?.record;
    if (a === undefined || b === undefined) {
      return `the index keeps ${got.length} top record(s), a full scan ranks ${want.length}`;
    }
    if (a.id !== b.id) return `top[${i}] is ${a.id} in the index but ${b.id} in the log`;
    // The index holds each record's log line byte for byte: compare the text, which also
    // works for records nested deeper than any recursive comparison could walk.
    if (got[i]!.raw !== want[i]!.raw) {
      const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((key) => !sameJson(a[key], b[key]));
      return `top[${i}] (${a.id}) differs from the log in ${fields.join(', ') || 'its text'}`;
    }
  }
  return undefined;
}

/** Whether two values have the same JSON; values too deep to serialise count as differing. */
function sameJson(x: unknown, y: unknown): boolean {
  try {
    return JSON.stringify(x) === JSON.stringify(y);
  } catch {
    return false;
  }
}

/** The first place two selection pools differ: records (by id and log position), in selection order. */
function comparePools(got: readonly Entry[], want: readonly Entry[]): string | undefined {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const a = got[i];
    const b = want[i];
    if (a === undefined || b === undefined) {
      return `the index pools ${got.length} record(s) for selection, a full scan pools ${want.length}`;
    }
    if (a.record.id !== b.record.id || a.seq !== b.seq) {
      return `pool[${i}] is ${a.record.id} (record #${a.seq}) in the index but ${b.record.id} (record #${b.seq}) in the log`;
    }
    if (a.raw !== b.raw) return `pool[${i}] (${a.record.id}) differs from the log`;
  }
  return undefined;
}

/** write-file-atomic temp files beside the index (`experiences.top.json.<n>`), left by a killed writer. */
function strayTempFiles(taskDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(taskDir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return [];
    throw ioError('list', taskDir, err);
  }
  return names.filter((name) => name.startsWith(`${INDEX_FILE}.`)).sort(compareStrings);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
