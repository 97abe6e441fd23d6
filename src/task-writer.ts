/**
 * The write side of a task: appending a batch (all or nothing, the append its
 * commit point) and bringing the index up to date, and rebuilding the index.
 * Whatever scales with the log happens before the lock is taken; under the lock
 * only the bytes appended meanwhile are read. docs/index-format.md §7 argues
 * the order of the steps and what a crash at each one leaves.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { catchUp, type CaughtUp } from './catch-up.js';
import { ioError } from './errors.js';
import { decideFreshness, stampOf, type LogStat } from './freshness.js';
import type { IndexCache } from './index-cache.js';
import {
  fingerprintAt,
  indexFileIdOf,
  indexOfState,
  InvalidIndexError,
  logMatchesStampAt,
  prepareIndexWrites,
  readIndex,
  sameIndexFile,
  serializeIndexParts,
  writeIndex,
  type LoadedIndex,
} from './index-file.js';
import { withTaskLock, type LockRetry } from './lock.js';
import { appendToLog, closeQuietly, endsWithNewline, fstatLog, openLogForAppending, openLogForReading, statLog, withLog } from './log-file.js';
import { INDEX_FILE, type TaskPaths } from './paths.js';
import type { RebuildProgress } from './query.js';
import type { ExperienceRecord } from './record.js';
import { scanLog } from './scan.js';
import { addRecord, cloneState, emptyState, trimState, type TopState } from './top-k.js';

export class TaskWriter {
  readonly #cache: IndexCache;
  readonly #indexTopK: number;
  readonly #useIndex: boolean;
  readonly #lockRetry: LockRetry;

  constructor(cache: IndexCache, options: { indexTopK: number; useIndex: boolean; lockRetry: LockRetry }) {
    this.#cache = cache;
    this.#indexTopK = options.indexTopK;
    this.#useIndex = options.useIndex;
    this.#lockRetry = options.lockRetry;
  }

  /**
   * Append `lines` (one JSON record each) to the task's log under its lock, and
   * write the index. Throws EXP_LOCKED or EXP_IO only when the batch is not in
   * the log; once the append succeeded, it resolves whatever fails after.
   */
  async append(paths: TaskPaths, lines: string[]): Promise<void> {
    // Work that scales with the log happens before the lock: a log without a
    // usable index is scanned here, and caught up under the lock.
    const scanned = this.#useIndex ? await this.#scanUnindexed(paths) : undefined;
    if (this.#useIndex) await prepareIndexWrites();
    let committed = false;
    try {
      await withTaskLock(paths.lock, paths.taskId, this.#lockRetry, async () => {
        const fd = openLogForAppending(paths.log, paths.dir);
        try {
          await this.#append(paths, fd, lines, scanned, () => (committed = true));
        } finally {
          closeQuietly(fd);
        }
      });
    } catch (err) {
      // The append is the commit point: a failure after it (releasing the lock) is not the batch's.
      if (!committed) throw err;
    }
  }

  // Order under the lock: catch the index up, append (the commit point), read
  // back, write the index. A crash between any two steps leaves an index that is
  // stale, never wrong; a failure before the append leaves the log as it was.
  async #append(paths: TaskPaths, fd: number, lines: string[], scanned: LoadedIndex | undefined, commit: () => void): Promise<void> {
    const before = fstatLog(fd, paths.log);
    // A crashed writer may have left a partial last line: terminate it, so it
    // becomes one line instead of swallowing our first record.
    const terminated = endsWithNewline(fd, before.size, paths.log);
    const payload = Buffer.from((terminated ? '' : '\n') + lines.join('\n') + '\n');
    // This instance wrote the index after the last append (the stat proves no one appended
    // since), so no writer has left a temp file since, unless a rebuild was killed in
    // between: the next writer that finds the log changed sweeps that one.
    const isOurIndex = this.#cache.matchesStat(paths.index, before);
    const base = this.#useIndex ? await this.#catchUpUnderLock(paths, fd, before, scanned).catch(() => undefined) : undefined;
    appendToLog(fd, payload, before.size, paths.log);
    commit();
    if (base === undefined) return;
    try {
      const after = fstatLog(fd, paths.log);
      let state: TopState;
      let end: number;
      if (terminated && base.end === before.size && after.size === before.size + payload.length) {
        // The bytes after the caught-up state are exactly our lines: no need to read them back.
        state = cloneState(base.state);
        for (const line of lines) addRecord(state, JSON.parse(line) as ExperienceRecord, line, { top: state.k, pool: state.k });
        end = after.size;
      } else {
        // Someone else's bytes too (a remnant we terminated, a foreign append): read back as any reader would.
        const tail = await scanLog(fd, base.end, after.size, cloneState(base.state));
        state = tail.state;
        end = tail.end;
      }
      const trimmed = trimState(state);
      const stamp = stampOf(after, end, fingerprintAt(fd, end));
      const written = indexOfState(trimmed, stamp);
      this.#cache.remember(paths.index, after, written, 0);
      if (!isOurIndex) removeStrayTempFiles(paths.dir);
      await writeIndex(paths.index, serializeIndexParts(trimmed, stamp));
      written.fileId = indexFileIdOf(paths.index);
    } catch {
      // Best effort after the commit point: a read-only directory or a full disk
      // must not fail an append that already happened; readers catch up from the log.
    }
  }

  /**
   * Before a writer takes the lock: when neither memory nor the index file can
   * be caught up cheaply (fresh, or a tail whose fingerprint matches), scan the
   * log now, so the lock is held only for the bytes appended meanwhile (SPEC
   * "The lock": no O(N) work under the lock); when the index file can, return
   * it, so it is not read again under the lock. What remains under the lock: a
   * log replaced between this look and the lock, or an index section found bad
   * only when parsed; both rescan there.
   */
  async #scanUnindexed(paths: TaskPaths): Promise<LoadedIndex | undefined> {
    try {
      const log = statLog(paths.log);
      if (log === undefined || log.size === 0 || this.#cache.matchesStat(paths.index, log)) return undefined;
      const read = readIndex(paths.index, undefined, true);
      const index = read.kind === 'ok' ? read.index : undefined;
      const fd = openLogForReading(paths.log);
      if (fd === undefined) return undefined;
      return await withLog(fd, async () => {
        const opened = fstatLog(fd, paths.log);
        const decision = decideFreshness(index?.header.log, opened);
        // Cheap to catch up under the lock: hand over the index just read, so it is not read twice.
        if (index !== undefined && decision.kind === 'fresh' && logMatchesStampAt(fd, index.header.log)) return index;
        if (index !== undefined && decision.kind === 'tail' && fingerprintAt(fd, decision.from) === index.header.log.fingerprint) return index;
        const caught = await catchUp(fd, opened, index, { kind: 'rescan', reason: 'no-index' }, { fullScanK: this.#indexTopK });
        return indexOfState(trimState(caught.state), stampOf(opened, caught.end, fingerprintAt(fd, caught.end)));
      });
    } catch {
      // Only an optimisation: under the lock, the catch-up does whatever is left.
      return undefined;
    }
  }

  /** The index state of the log as `log` describes it: from memory, a pre-lock scan, the index file, a tail or a full scan. */
  async #catchUpUnderLock(paths: TaskPaths, fd: number, log: LogStat, scanned: LoadedIndex | undefined): Promise<CaughtUp> {
    // An index written since the state we hold was read (a rebuild with another K, a
    // heal) is what we continue from: never write back over it what we held before.
    const onDisk = indexFileIdOf(paths.index);
    const isCurrent = (index: LoadedIndex) => onDisk === undefined || sameIndexFile(index.fileId, onDisk);
    const cached = this.#cache.match(paths.index, log, fd);
    if (cached !== undefined && isCurrent(cached)) {
      try {
        return { state: cached.toState(), end: cached.header.log.offset, truncated: false, how: 'index', bytesRead: 0, linesRead: 0 };
      } catch (err) {
        if (!(err instanceof InvalidIndexError)) throw err;
      }
    }
    let index = scanned;
    if (index === undefined) {
      const read = readIndex(paths.index, undefined, true);
      index = read.kind === 'ok' ? read.index : undefined;
    }
    return catchUp(fd, log, index, decideFreshness(index?.header.log, log), { fullScanK: this.#indexTopK });
  }

  /**
   * Rebuild one task's index by a full scan with K = `k`, outside the lock; then,
   * under the lock, catch up with appends made meanwhile and write the index.
   * Undefined when the task has no log.
   */
  async rebuild(paths: TaskPaths, k: number, onProgress?: (p: RebuildProgress) => void): Promise<TopState | undefined> {
    const fd = openLogForReading(paths.log);
    if (fd === undefined) return undefined;
    const scanned = await withLog(
      fd,
      async () => {
        const log = fstatLog(fd, paths.log);
        let bytesDone = 0;
        const state = emptyState(k);
        const scan = await scanLog(fd, 0, log.size, state, {
          onProgress: (n) => {
            bytesDone += n;
            onProgress?.({ taskId: paths.taskId, bytesDone, bytesTotal: log.size, records: state.records });
          },
        });
        return indexOfState(trimState(state), stampOf(log, scan.end, fingerprintAt(fd, scan.end)));
      },
    );
    return withTaskLock(paths.lock, paths.taskId, this.#lockRetry, async () => {
      const again = openLogForReading(paths.log);
      if (again === undefined) return undefined;
      return withLog(
        again,
        async () => {
          // Catch up with appends made while we scanned, exactly as a tail would.
          const checkedAtMs = Date.now();
          const log = fstatLog(again, paths.log);
          const caught = await catchUp(again, log, scanned, decideFreshness(scanned.header.log, log), { fullScanK: this.#indexTopK });
          const state = trimState(caught.state);
          const stamp = stampOf(log, caught.end, fingerprintAt(again, caught.end));
          removeStrayTempFiles(paths.dir);
          try {
            await writeIndex(paths.index, serializeIndexParts(state, stamp));
          } catch (err) {
            throw ioError('write the index', paths.index, err);
          }
          const written = indexOfState(state, stamp);
          written.fileId = indexFileIdOf(paths.index);
          this.#cache.remember(paths.index, log, written, checkedAtMs);
          return state;
        },
      );
    });
  }
}

/**
 * Remove index temp files (`experiences.top.json.<n>`) that a killed writer left.
 * Called under the task's lock, where no writer of ours can be writing one.
 */
function removeStrayTempFiles(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.startsWith(`${INDEX_FILE}.`) && /^\d+$/.test(name.slice(INDEX_FILE.length + 1))) {
      try {
        unlinkSync(path.join(dir, name));
      } catch {
        // already gone
      }
    }
  }
}

