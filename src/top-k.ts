/**
 * Bounded per-domain top K. Every path (index, tail, full scan, cross-task
 * merge) ranks through compareRecords and inserts stably, so records that tie
 * on all keys keep log order and every path returns the same list.
 */
import { compareRecords, type ExperienceRecord } from './record.js';

export interface DomainTop {
  /** Valid records of this domain in the covered log prefix. */
  count: number;
  /** The best min(count, cap) records, best first. Never mutated: replaced on change. */
  top: readonly ExperienceRecord[];
}

/** What a scan of a log prefix knows: the input of an index, and of an answer. */
export interface TopState {
  /** Records kept per domain when the state is persisted. */
  k: number;
  records: number;
  malformed: number;
  domains: Map<string, DomainTop>;
}

export function emptyState(k: number): TopState {
  return { k, records: 0, malformed: 0, domains: new Map() };
}

/** A copy that can be added to without touching `state` (tops are shared until replaced). */
export function cloneState(state: TopState): TopState {
  const domains = new Map<string, DomainTop>();
  for (const [name, d] of state.domains) domains.set(name, { count: d.count, top: d.top });
  return { k: state.k, records: state.records, malformed: state.malformed, domains };
}

/**
 * Insert `record` after every record that ranks before or equal to it, keeping at
 * most `cap`. Returns `top` itself when the record does not make the cut.
 */
export function insertTop(
  top: readonly ExperienceRecord[],
  record: ExperienceRecord,
  cap: number,
): readonly ExperienceRecord[] {
  // Most records of a long log lose to the current last place: one comparison.
  if (top.length >= cap && (cap <= 0 || compareRecords(top[top.length - 1]!, record) <= 0)) return top;
  let lo = 0;
  let hi = top.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareRecords(top[mid]!, record) <= 0) lo = mid + 1;
    else hi = mid;
  }
  const next = top.slice(0, Math.min(top.length, cap));
  next.splice(lo, 0, record);
  if (next.length > cap) next.length = cap;
  return next;
}

/** Count `record` and keep it if it ranks within `cap` of its domain. */
export function addRecord(state: TopState, record: ExperienceRecord, cap: number): void {
  state.records++;
  const d = state.domains.get(record.domain);
  if (d === undefined) {
    state.domains.set(record.domain, { count: 1, top: cap > 0 ? [record] : [] });
    return;
  }
  d.count++;
  d.top = insertTop(d.top, record, cap);
}

/** The state as it is persisted: at most `k` records per domain. */
export function trimState(state: TopState): TopState {
  const domains = new Map<string, DomainTop>();
  for (const [name, d] of state.domains) {
    domains.set(name, { count: d.count, top: d.top.length > state.k ? d.top.slice(0, state.k) : d.top });
  }
  return { k: state.k, records: state.records, malformed: state.malformed, domains };
}

/**
 * Merge per-task answers, given in task order, into one ranked list. The sort is
 * stable, so ties keep task order and then log order.
 */
export function mergeRanked(lists: ReadonlyArray<readonly ExperienceRecord[]>, limit: number): ExperienceRecord[] {
  if (lists.length === 1) return lists[0]!.slice(0, limit);
  return lists.flat().sort(compareRecords).slice(0, limit);
}
