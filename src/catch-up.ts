/**
 * Bring an index up to the log as it is now: use it as is (fresh), read the
 * bytes appended since (tail), or scan the whole log (rescan). Any doubt (a
 * fingerprint, a bad domain line) costs a full scan, never a wrong answer.
 */
import type { Freshness, LogStat } from './freshness.js';
import { fingerprintAt, InvalidIndexError, logMatchesStampAt, type LoadedIndex } from './index-file.js';
import { unlimitedBudget, type ReadBudget } from './line-reader.js';
import { scanLog } from './scan.js';
import { cloneState, emptyState, type TopState } from './top-k.js';

/** A log prefix brought up to date: the state of [0, end) and how it was obtained. */
export interface CaughtUp {
  state: TopState;
  end: number;
  truncated: boolean;
  how: 'index' | 'tail' | 'full';
  bytesRead: number;
  linesRead: number;
}

export interface CatchUpOptions {
  /** K of the state a full scan builds. */
  fullScanK: number;
  budget?: ReadBudget;
  /** A fetch keeps `limit` records of the domain it answers; the rest keep k. */
  query?: { domain: string; limit: number };
  /** The caller already knows the index cannot be used (e.g. limit exceeds k). */
  forceRescan?: boolean;
}

/** Apply `decision` (from decideFreshness of `index` and `log`) to the open log. */
export async function catchUp(
  fd: number,
  log: LogStat,
  index: LoadedIndex | undefined,
  decision: Freshness,
  options: CatchUpOptions,
): Promise<CaughtUp> {
  const capsFor = (k: number) => {
    const q = options.query;
    return q === undefined ? undefined : (d: string) => (d === q.domain ? Math.max(q.limit, k) : k);
  };
  if (index !== undefined && !options.forceRescan) {
    try {
      const stamp = index.header.log;
      if (decision.kind === 'fresh' && logMatchesStampAt(fd, stamp)) {
        return { state: index.toState(), end: stamp.offset, truncated: false, how: 'index', bytesRead: 0, linesRead: 0 };
      }
      if (decision.kind === 'tail' && fingerprintAt(fd, decision.from) === stamp.fingerprint) {
        const scan = await scanLog(fd, decision.from, log.size, cloneState(index.toState()), {
          budget: options.budget,
          capFor: capsFor(index.k),
        });
        return { ...scan, how: 'tail' };
      }
    } catch (err) {
      if (!(err instanceof InvalidIndexError)) throw err;
    }
  }
  const scan = await scanLog(fd, 0, log.size, emptyState(options.fullScanK), {
    budget: options.budget ?? unlimitedBudget(),
    capFor: capsFor(options.fullScanK),
  });
  return { ...scan, how: 'full' };
}
