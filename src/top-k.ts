/**
 * What a scan of a log prefix keeps per domain, and the two bounded lists every
 * path (index, tail, full scan, cross-task merge) builds the same way:
 *
 * - `top`: the best K records in the plain order of compareRecords (fetchTop);
 * - `pool`: every record that competitive selection with the default weights can
 *   pick within K slots, in selection order (selectTop). docs/index-format.md
 *   ("The selection pool") proves which records those are.
 *
 * Lists are never mutated, only replaced: the index writer caches encoded
 * sections by list identity.
 */
import { compareRecords, score, type ExperienceRecord } from './record.js';
import { round6, sourceOf } from './selection.js';

/** A record as read from the log: parsed, its exact line text, and its ordinal among the log's records. */
export interface Entry {
  readonly record: ExperienceRecord;
  /** The log line (a trailing "\r" removed): what the index stores, byte for byte. */
  raw: string;
  /** 0 for the log's first valid record, 1 for the next, ...; -1 when unknown (not needed). */
  seq: number;
  /** round6(score): the raw score of competitive selection with the default weights. */
  readonly score6: number;
  /** `<source_kind>:<source_key>`, computed when first needed. */
  bucket?: string;
}

export interface DomainTop {
  /** Valid records of this domain in the covered log prefix. */
  count: number;
  /**
   * Records whose score is beyond ±EXTREME_SCORE. There round6's arithmetic
   * overflows (SPEC: non-finite → 0), so competitive scores stop following raw
   * ones and the pool's argument does not hold: selection over such a domain scans.
   */
  extreme: number;
  /** The best min(count, cap) records, best first. */
  top: readonly Entry[];
  /** The records selection can pick within `cap` slots, in selection order. */
  pool: readonly Entry[];
}

/** An index's sections of one domain, checked, as they are in the file. */
export interface EncodedDomain {
  top: Buffer;
  topCrc: string;
  pool: Buffer;
  poolCrc: string;
}

/**
 * A domain as an index file holds it, parsed on first use: a writer whose batch
 * touches one domain of eight parses one, and copies the other seven's bytes.
 */
export class LazyDomain implements DomainTop {
  count: number;
  extreme: number;
  readonly #source: { top(): readonly Entry[]; pool(): readonly Entry[]; encoded(): EncodedDomain };
  #top: readonly Entry[] | undefined;
  #pool: readonly Entry[] | undefined;

  constructor(source: LazyDomain['source'], count: number, extreme: number) {
    this.#source = source;
    this.count = count;
    this.extreme = extreme;
  }

  get source(): { top(): readonly Entry[]; pool(): readonly Entry[]; encoded(): EncodedDomain } {
    return this.#source;
  }
  get top(): readonly Entry[] {
    return (this.#top ??= this.#source.top());
  }
  set top(top: readonly Entry[]) {
    this.#top = top;
  }
  get pool(): readonly Entry[] {
    return (this.#pool ??= this.#source.pool());
  }
  set pool(pool: readonly Entry[]) {
    this.#pool = pool;
  }

  /** The file's bytes, while nothing was parsed or changed (else undefined). */
  encoded(): EncodedDomain | undefined {
    return this.#top === undefined && this.#pool === undefined ? this.#source.encoded() : undefined;
  }

  /** A copy that parses nothing yet. */
  copy(): DomainTop {
    return this.#top === undefined && this.#pool === undefined
      ? new LazyDomain(this.#source, this.count, this.extreme)
      : { count: this.count, extreme: this.extreme, top: this.top, pool: this.pool };
  }
}

/** What a scan of a log prefix knows: the input of an index, and of an answer. */
export interface TopState {
  /** Records kept per domain (and selection slots answered) when the state is persisted. */
  k: number;
  records: number;
  malformed: number;
  domains: Map<string, DomainTop>;
}

/** Scores beyond this (either sign) count as extreme: see DomainTop.extreme. */
export const EXTREME_SCORE = 1e300;

/** How many records a scan keeps of a domain, per list; 0 keeps none. */
export interface Caps {
  top: number;
  pool: number;
}

export function newEntry(record: ExperienceRecord, raw: string, seq: number): Entry {
  return { record, raw, seq, score6: round6(score(record)) };
}

export function bucketOf(entry: Entry): string {
  return (entry.bucket ??= sourceOf(entry.record).bucket);
}

export function emptyState(k: number): TopState {
  return { k, records: 0, malformed: 0, domains: new Map() };
}

/** A copy that can be added to without touching `state` (lists are shared until replaced). */
export function cloneState(state: TopState): TopState {
  const domains = new Map<string, DomainTop>();
  for (const [name, d] of state.domains) {
    domains.set(name, d instanceof LazyDomain ? d.copy() : { count: d.count, extreme: d.extreme, top: d.top, pool: d.pool });
  }
  return { k: state.k, records: state.records, malformed: state.malformed, domains };
}

function comparePlain(a: Entry, b: Entry): number {
  return compareRecords(a.record, b.record);
}

/**
 * Selection order with the default weights: raw score desc, createdAt desc, id
 * asc, then log order. Within one source the greedy picks in exactly this order.
 */
export function compareSelection(a: Entry, b: Entry): number {
  if (a.score6 !== b.score6) return a.score6 > b.score6 ? -1 : 1;
  const ra = a.record;
  const rb = b.record;
  if (ra.createdAt !== rb.createdAt) return ra.createdAt > rb.createdAt ? -1 : 1;
  if (ra.id !== rb.id) return ra.id < rb.id ? -1 : 1;
  return a.seq - b.seq;
}

/**
 * Insert `entry` after every entry that ranks before or equal to it, keeping at
 * most `cap`. Returns `top` itself when the entry does not make the cut.
 */
export function insertTop(top: readonly Entry[], entry: Entry, cap: number): readonly Entry[] {
  // Most records of a long log lose to the current last place: one comparison.
  if (top.length >= cap && (cap <= 0 || comparePlain(top[top.length - 1]!, entry) <= 0)) return top;
  const at = upperBound(top, entry, comparePlain);
  const next = top.slice(0, Math.min(top.length, cap));
  next.splice(at, 0, entry);
  if (next.length > cap) next.length = cap;
  return next;
}

/**
 * The selection pool: the entries whose dominance D is below `cap`, where D(r) =
 * (sources other than r's whose best entry ranks before r) + (entries of r's
 * source that rank before r). Selection with any strength or threshold picks a
 * record only after every one of those, so a record with D >= cap is never
 * picked within `cap` slots; every entry that dominates a pooled entry is
 * pooled too, so D computed within the pool is exact (docs/index-format.md).
 * Returns `pool` itself when the entry is not pooled.
 */
export function insertPool(pool: readonly Entry[], entry: Entry, cap: number): readonly Entry[] {
  if (cap <= 0) return pool;
  // At most `cap` sources are pooled (the best of the (cap+1)-th has D = cap).
  // An entry that ranks after the best of the cap-th pooled source has D >= cap.
  const last = lastSourceBest(pool, cap);
  if (last !== undefined && compareSelection(last, entry) < 0) return pool;
  const at = upperBound(pool, entry, compareSelection);
  const next = pool.slice();
  next.splice(at, 0, entry);
  const trimmed = trimPool(next, cap);
  // Not pooled after all: then no other entry's D changed either.
  return trimmed.includes(entry) ? trimmed : pool;
}

/** The entries of `pool` (in selection order) whose D is below `cap`. Returns `pool` itself when all are. */
export function trimPool(pool: readonly Entry[], cap: number): readonly Entry[] {
  const seen = new Map<string, number>(); // entries so far per source
  let kept: Entry[] | undefined;
  for (let i = 0; i < pool.length; i++) {
    const e = pool[i]!;
    const bucket = bucketOf(e);
    const same = seen.get(bucket) ?? 0;
    // Sources seen so far, other than e's own, each have their best before e.
    const dominance = seen.size - (same > 0 ? 1 : 0) + same;
    seen.set(bucket, same + 1);
    if (dominance >= cap) {
      kept ??= pool.slice(0, i);
    } else if (kept !== undefined) {
      kept.push(e);
    }
  }
  return kept ?? pool;
}

// The best entry of the cap-th source in pool order, by pool identity: pools
// change rarely once a log is long, and most records are rejected against it.
const sourceBests = new WeakMap<readonly Entry[], Entry | null>();

function lastSourceBest(pool: readonly Entry[], cap: number): Entry | undefined {
  let cached = sourceBests.get(pool);
  if (cached === undefined) {
    cached = null;
    const seen = new Set<string>();
    for (const e of pool) {
      const bucket = bucketOf(e);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      if (seen.size === cap) {
        cached = e;
        break;
      }
    }
    sourceBests.set(pool, cached);
  }
  return cached ?? undefined;
}

function upperBound(list: readonly Entry[], entry: Entry, compare: (a: Entry, b: Entry) => number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(list[mid]!, entry) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Count `record` (the log's record number `state.records`) and keep it where it ranks within `caps`. */
export function addRecord(state: TopState, record: ExperienceRecord, raw: string, caps: Caps): void {
  const entry = newEntry(record, raw, state.records);
  state.records++;
  const extreme = Math.abs(score(record)) < EXTREME_SCORE ? 0 : 1;
  const d = state.domains.get(record.domain);
  if (d === undefined) {
    if (caps.top > 0 || caps.pool > 0) entry.raw = ownCopy(raw);
    state.domains.set(record.domain, {
      count: 1,
      extreme,
      top: caps.top > 0 ? [entry] : [],
      pool: caps.pool > 0 ? [entry] : [],
    });
    return;
  }
  d.count++;
  d.extreme += extreme;
  const { top, pool } = d;
  d.top = insertTop(top, entry, caps.top);
  d.pool = insertPool(pool, entry, caps.pool);
  if (d.top !== top || d.pool !== pool) entry.raw = ownCopy(raw);
}

/**
 * A string that holds only its own characters. A line split from a 1 MiB chunk
 * is a slice that keeps the whole chunk alive: kept in a top list, each one
 * would pin a chunk, and a rebuild of a large log would hold hundreds of them.
 */
export function ownCopy(text: string): string {
  return (' ' + text).slice(1);
}

/** The state as it is persisted: `top` cut to `k`, `pool` to what `k` slots can pick. */
export function trimState(state: TopState): TopState {
  const domains = new Map<string, DomainTop>();
  for (const [name, d] of state.domains) {
    // An untouched domain of an index is already trimmed to the K it keeps.
    if (d instanceof LazyDomain && d.encoded() !== undefined) {
      domains.set(name, d.copy());
      continue;
    }
    domains.set(name, {
      count: d.count,
      extreme: d.extreme,
      top: d.top.length > state.k ? d.top.slice(0, state.k) : d.top,
      pool: trimPool(d.pool, state.k),
    });
  }
  return { k: state.k, records: state.records, malformed: state.malformed, domains };
}

/**
 * Merge per-task answers, given in task order, into one ranked list. The sort is
 * stable, so ties keep task order and then log order.
 */
export function mergeRanked(lists: ReadonlyArray<readonly Entry[]>, limit: number): Entry[] {
  if (lists.length === 1) return lists[0]!.slice(0, limit);
  return lists.flat().sort(comparePlain).slice(0, limit);
}
