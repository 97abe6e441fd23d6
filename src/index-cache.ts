/**
 * The indexes one store instance has read or built, keyed by the log stat they
 * describe. A fetch whose stat of the log equals the key answers from memory:
 * one stat, no file read (the "hot" fetch of docs/benchmarks.md).
 */
import { isRacy, statKeyEquals, type LogStat } from './freshness.js';
import { logMatchesStamp, logMatchesStampAt, type LoadedIndex } from './index-file.js';

interface CachedIndex {
  log: LogStat;
  /** When the log was last confirmed to match by content (see isRacy). */
  checkedAtMs: number;
  index: LoadedIndex;
}

export class IndexCache {
  readonly #entries = new Map<string, CachedIndex>();

  /**
   * Remember `index` as describing the log with stat `log`. `checkedAtMs` is when
   * that was last confirmed: 0 for a stamp taken right after our own write.
   */
  remember(indexPath: string, log: LogStat, index: LoadedIndex, checkedAtMs: number): void {
    this.#entries.set(indexPath, { log, checkedAtMs, index });
  }

  /** Whether the cached index was stamped with exactly this stat (no content check: a hint, not an answer). */
  matchesStat(indexPath: string, log: LogStat): boolean {
    const cached = this.#entries.get(indexPath);
    return cached !== undefined && statKeyEquals(cached.log, log);
  }

  /** What is cached for this index, whatever the log looks like now (to decide whether to stat). */
  peek(indexPath: string): LoadedIndex | undefined {
    return this.#entries.get(indexPath)?.index;
  }

  /**
   * The cached index, if it still describes the log as `log` shows it. A racy
   * stamp (the log changed less than 2 s before it was taken) is confirmed by
   * content first, reading the log at `file` (its path or an open descriptor).
   */
  match(indexPath: string, log: LogStat, file: string | number): LoadedIndex | undefined {
    const cached = this.#entries.get(indexPath);
    if (cached === undefined || !statKeyEquals(cached.log, log)) return undefined;
    if (isRacy(cached.log.ctimeNs, cached.checkedAtMs)) {
      const checkedAtMs = Date.now();
      const stamp = cached.index.header.log;
      if (!(typeof file === 'string' ? logMatchesStamp(file, stamp) : logMatchesStampAt(file, stamp))) return undefined;
      cached.checkedAtMs = checkedAtMs;
    }
    return cached.index;
  }
}
