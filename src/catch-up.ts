/**
 * Bring an index up to the log as it is now: use it as is (fresh), read the
 * bytes appended since (tail), or scan the whole log (rescan). Any doubt (a
 * fingerprint, a bad section) costs a full scan, never a wrong answer.
 */
import type { Freshness, LogStat } from './freshness.js';
import { fingerprintAt, InvalidIndexError, logMatchesStampAt, type LoadedIndex } from './index-file.js';
import { unlimitedBudget, type ReadBudget } from './line-reader.js';
import { scanLog } from './scan.js';
import { cloneState, emptyState, type Caps, type Entry, type TopState } from './top-k.js';

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
  /** K of the state a full scan builds when there is no valid index (an index keeps its own K). */
  fullScanK: number;
  budget?: ReadBudget;
  /** A fetch keeps `limit` records (and selection slots) of the domain it answers; the rest keep k. */
  query?: { domain: string; limit: number };
  /** The caller already knows the index cannot be used (e.g. limit exceeds k). */
  forceRescan?: boolean;
  /** Every record of the query's domain, in log order, also goes here (a full scan only). */
  collect?: Entry[];
}

/**
 * The queried domain of a state from an index, parsed now: index sections are
 * parsed on first use (top-k.ts LazyDomain), and a bad one must cost a rescan
 * here, not surface later as an error. Other domains stay unparsed.
 */
function checked(state: TopState, options: CatchUpOptions): TopState {
  const d = options.query === undefined ? undefined : state.domains.get(options.query.domain);
  if (d !== undefined) void [d.top, d.pool];
  return state;
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
    if (q === undefined) return undefined;
    const asked: Caps = { top: Math.max(q.limit, k), pool: Math.max(q.limit, k) };
    const rest: Caps = { top: k, pool: k };
    return (d: string) => (d === q.domain ? asked : rest);
  };
  if (index !== undefined && !options.forceRescan && options.collect === undefined) {
    try {
      const stamp = index.header.log;
      if (decision.kind === 'fresh' && logMatchesStampAt(fd, stamp)) {
        return { state: checked(index.toState(), options), end: stamp.offset, truncated: false, how: 'index', bytesRead: 0, linesRead: 0 };
      }
      if (decision.kind === 'tail' && fingerprintAt(fd, decision.from) === stamp.fingerprint) {
        const scan = await scanLog(fd, decision.from, log.size, cloneState(index.toState()), {
          budget: options.budget,
          capsFor: capsFor(index.k),
        });
        return { ...scan, state: checked(scan.state, options), how: 'tail' };
      }
    } catch (err) {
      if (!(err instanceof InvalidIndexError)) throw err;
    }
  }
  // An index keeps the K it was built with, also when its log must be rescanned
  // (SPEC "Precise rules": K): a reader's own indexTopK applies only where none was valid.
  const k = index?.k ?? options.fullScanK;
  const q = options.query;
  const scan = await scanLog(fd, 0, log.size, emptyState(k), {
    budget: options.budget ?? unlimitedBudget(),
    capsFor: capsFor(k),
    collect: options.collect !== undefined && q !== undefined ? { domain: q.domain, into: options.collect } : undefined,
  });
  return { ...scan, how: 'full' };
}
