/**
 * One task's part of an answer: the domain's ranked lists from memory, from the
 * index file, from a tail or from a full scan, in the order of the freshness
 * table (docs/index-format.md), healing the index afterwards when it learned
 * something. Every path gives the lists a full scan of the log would.
 */
import { catchUp, type CaughtUp } from './catch-up.js';
import { ExperienceStoreError, ioError } from './errors.js';
import { decideFreshness, stampOf, statKeyEquals, type LogStat } from './freshness.js';
import { IndexCache } from './index-cache.js';
import {
  fingerprintAt,
  indexFileIdOf,
  indexOfState,
  InvalidIndexError,
  logMatchesStamp,
  readIndex,
  sameIndexFile,
  serializeIndexParts,
  writeIndex,
  type IndexFileId,
  type LoadedIndex,
} from './index-file.js';
import type { ReadBudget } from './line-reader.js';
import { tryWithTaskLock } from './lock.js';
import { fstatLog, openLogForReading, statLog, withLog } from './log-file.js';
import type { TaskPaths } from './paths.js';
import type { FetchStats } from './query.js';
import { scanLog } from './scan.js';
import { emptyState, trimState, type Entry } from './top-k.js';

/** What one task contributes to an answer. */
export interface TaskView {
  /** Valid records of the domain in what was read. */
  count: number;
  /** Of those, records whose score is extreme (see top-k.ts): the pool cannot answer for them. */
  extreme: number;
  /** The best records in the plain order (at least `limit` of them when there are). */
  top: readonly Entry[];
  /** The selection pool for `limit` slots with the default weights, in selection order. */
  pool: readonly Entry[];
  /** With `collect`: every record of the domain, in log order. */
  all?: Entry[];
  truncated: boolean;
}

export interface ReadRequest {
  domain: string;
  limit: number;
  budget: ReadBudget;
  stats: FetchStats;
  /**
   * What the answer needs: the plain top (fetchTop), the selection pool
   * (selectTop with the default weights), or every record of the domain in log
   * order (selection with other weights, or full diagnostics: a full scan).
   */
  need: 'top' | 'pool' | 'all';
}

const NO_VIEW: TaskView = { count: 0, extreme: 0, top: [], pool: [], truncated: false };

export class TaskReader {
  readonly #cache: IndexCache;
  readonly #indexTopK: number;
  readonly #staleMs: number;

  constructor(cache: IndexCache, indexTopK: number, staleMs: number) {
    this.#cache = cache;
    this.#indexTopK = indexTopK;
    this.#staleMs = staleMs;
  }

  /** One task through the index: from memory, from the index file, a tail or a full scan. Throws EXP_IO naming the log. */
  async read(paths: TaskPaths, req: ReadRequest): Promise<TaskView> {
    return asStoreError(paths, () => this.#read(paths, req));
  }

  /** One task by a full scan that keeps only what the query needs (useIndex: false). Throws EXP_IO naming the log. */
  async scan(paths: TaskPaths, req: ReadRequest): Promise<TaskView> {
    return asStoreError(paths, () => this.#scan(paths, req));
  }

  async #read(paths: TaskPaths, req: ReadRequest): Promise<TaskView> {
    const { domain, limit } = req;
    const collect = req.need === 'all';
    if (!collect) {
      // Hot: the index this instance last parsed or built, if the log has not changed since.
      if (this.#cache.peek(paths.index)?.canAnswer(domain, limit)) {
        const log = statLog(paths.log);
        if (log === undefined) return NO_VIEW;
        const cached = this.#cache.match(paths.index, log, paths.log);
        const view = cached && viewOf(cached, req);
        if (view !== undefined) {
          req.stats.indexHits++;
          return view;
        }
      }
    }

    // Cold: read the index first, then stat the log (see docs: a log seen after
    // its index is never shorter than the index's offset unless it was replaced).
    const read = readIndex(paths.index, domain);
    const index = read.kind === 'ok' ? read.index : undefined;
    const log = statLog(paths.log);
    const decision = decideFreshness(index?.header.log, log);
    if (decision.kind === 'no-log') return NO_VIEW;
    const canAnswer = !collect && (index?.canAnswer(domain, limit) ?? false);
    if (decision.kind === 'fresh' && canAnswer) {
      // Size, mtime and ctime say fresh; confirm by content (a same-size rewrite
      // within one clock tick is invisible to stat). Reads at most 4 KiB, not counted.
      // The confirmation holds as of before the read (see isRacy).
      const checkedAtMs = Date.now();
      const view = logMatchesStamp(paths.log, index!.header.log) ? viewOf(index!, req) : undefined;
      if (view !== undefined) {
        this.#cache.remember(paths.index, log!, index!, checkedAtMs);
        req.stats.indexHits++;
        return view;
      }
    }

    const fd = openLogForReading(paths.log);
    if (fd === undefined) return NO_VIEW;
    return withLog(
      fd,
      async () => {
        const checkedAtMs = Date.now();
        // The index file this read starts from (or the invalid one it found): a heal
        // writes only over that very file, never over a newer one (a rebuild with another K).
        const startedFrom = index?.fileId ?? (read.kind === 'invalid' ? indexFileIdOf(paths.index) : undefined);
        const opened = fstatLog(fd, paths.log);
        const all: Entry[] | undefined = collect ? [] : undefined;
        const caught = await catchUp(fd, opened, index, decideFreshness(index?.header.log, opened), {
          fullScanK: this.#indexTopK,
          budget: req.budget,
          query: { domain, limit },
          // The index could not answer from the stat above: do not let a second look use it.
          forceRescan: !canAnswer || decision.kind === 'fresh' || decision.kind === 'rescan',
          collect: all,
        });
        if (caught.how === 'tail') req.stats.tails++;
        if (caught.how === 'full') req.stats.fullScans++;
        req.stats.bytesRead += caught.bytesRead;
        req.stats.linesRead += caught.linesRead;
        // Never persist or cache what a budget cut short: it is not a function of a log prefix.
        if (!caught.truncated) await this.#heal(paths, fd, opened, caught, checkedAtMs, startedFrom);
        const d = caught.state.domains.get(domain);
        return { count: d?.count ?? 0, extreme: d?.extreme ?? 0, top: d?.top ?? [], pool: d?.pool ?? [], all, truncated: caught.truncated };
      },
    );
  }

  async #scan(paths: TaskPaths, req: ReadRequest): Promise<TaskView> {
    const fd = openLogForReading(paths.log);
    if (fd === undefined) return NO_VIEW;
    return withLog(
      fd,
      async () => {
        const { size } = fstatLog(fd, paths.log);
        if (size === 0) return NO_VIEW;
        const caps = { top: req.need === 'top' ? req.limit : 0, pool: req.need === 'pool' ? req.limit : 0 };
        const none = { top: 0, pool: 0 };
        const all: Entry[] | undefined = req.need === 'all' ? [] : undefined;
        const scan = await scanLog(fd, 0, size, emptyState(req.limit), {
          budget: req.budget,
          capsFor: (d) => (d === req.domain ? caps : none),
          collect: all && { domain: req.domain, into: all },
        });
        req.stats.fullScans++;
        req.stats.bytesRead += scan.bytesRead;
        req.stats.linesRead += scan.linesRead;
        const d = scan.state.domains.get(req.domain);
        return { count: d?.count ?? 0, extreme: d?.extreme ?? 0, top: d?.top ?? [], pool: d?.pool ?? [], all, truncated: scan.truncated };
      },
    );
  }

  /**
   * Write back what a fetch learned, if the task's lock is free right now and
   * the log is still exactly what was read. Best effort: never fails the fetch.
   */
  async #heal(paths: TaskPaths, fd: number, log: LogStat, caught: CaughtUp, checkedAtMs: number, startedFrom: IndexFileId | undefined): Promise<void> {
    try {
      const state = trimState(caught.state);
      const stamp = stampOf(log, caught.end, fingerprintAt(fd, caught.end));
      this.#cache.remember(paths.index, log, indexOfState(state, stamp), checkedAtMs);
      if (caught.how === 'index') return;
      await tryWithTaskLock(
        paths.lock,
        async () => {
          const now = statLog(paths.log);
          const onDisk = indexFileIdOf(paths.index);
          const isSameIndex = onDisk === undefined ? startedFrom === undefined : sameIndexFile(startedFrom, onDisk);
          if (now !== undefined && statKeyEquals(now, log) && isSameIndex) await writeIndex(paths.index, serializeIndexParts(state, stamp));
        },
        { taskId: paths.taskId, staleMs: this.#staleMs },
      );
    } catch {
      // The index is a cache: an unwritable directory only costs the next reader a scan.
    }
  }
}

/** The one funnel of read errors: an fs failure leaves as EXP_IO naming the task's log, the fs error as its cause. */
async function asStoreError<T>(paths: TaskPaths, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof ExperienceStoreError ? err : ioError('read the log', paths.log, err);
  }
}

/**
 * What an index holds of the domain for the request, parsing only that (a
 * fetchTop never parses the pool), or undefined when a section turns out bad
 * (then: rescan).
 */
function viewOf(index: LoadedIndex, req: ReadRequest): TaskView | undefined {
  try {
    const count = index.count(req.domain);
    const extreme = index.extreme(req.domain);
    if (req.need === 'pool') return { count, extreme, top: [], pool: index.pool(req.domain), truncated: false };
    return { count, extreme, top: index.top(req.domain, req.limit), pool: [], truncated: false };
  } catch (err) {
    if (err instanceof InvalidIndexError) return undefined;
    throw err;
  }
}
