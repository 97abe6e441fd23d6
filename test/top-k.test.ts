/**
 * top-k.ts: the two bounded lists every path keeps per domain. The expected
 * values here are computed from scratch over every record so far, with
 * comparators written out in this file (not top-k's own), so that a wrong
 * comparator or a wrong incremental shortcut in top-k shows up as a difference.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ExperienceRecord } from '../src/record.js';
import { resolveSelectionPolicy, selectCompetitive, sourceOf } from '../src/selection.js';
import {
  addRecord,
  cloneState,
  emptyState,
  insertPool,
  insertTop,
  mergeRanked,
  newEntry,
  trimPool,
  trimState,
  type Caps,
  type Entry,
  type TopState,
} from '../src/top-k.js';
import { makeRecord, STAMP } from './support/inputs.js';

// ---- independent definitions (SPEC "Records" and "Competitive selection") ----

const scoreOf = (r: ExperienceRecord) => r.reward.gtScore + r.reward.relativeRank;
const round6 = (x: number) => (Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 + 0 : 0);
const bucket = (e: Entry) => sourceOf(e.record).bucket;

function byKeys(ka: number, kb: number, a: ExperienceRecord, b: ExperienceRecord): number {
  if (ka !== kb) return ka > kb ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}
/** Plain order, then log order. */
const plainOrder = (a: Entry, b: Entry) => byKeys(scoreOf(a.record), scoreOf(b.record), a.record, b.record) || a.seq - b.seq;
/** Selection order: round6 score desc, createdAt desc, id asc, seq asc. */
const selectionOrder = (a: Entry, b: Entry) =>
  byKeys(round6(scoreOf(a.record)), round6(scoreOf(b.record)), a.record, b.record) || a.seq - b.seq;

/** The pool by its definition: entries r with D(r) < cap, in selection order. */
function bruteForcePool(entries: readonly Entry[], cap: number): Entry[] {
  const best = new Map<string, Entry>();
  for (const e of entries) {
    const b = best.get(bucket(e));
    if (b === undefined || selectionOrder(e, b) < 0) best.set(bucket(e), e);
  }
  return entries
    .filter((r) => {
      let d = 0;
      for (const [key, b] of best) if (key !== bucket(r) && selectionOrder(b, r) < 0) d++;
      for (const e of entries) if (bucket(e) === bucket(r) && selectionOrder(e, r) < 0) d++;
      return d < cap;
    })
    .sort(selectionOrder);
}

const seqs = (list: readonly Entry[]) => list.map((e) => e.seq);

// ---- generators ----

/** [gtScore, relativeRank] pairs: equal sums, sums that tie only after round6, negatives. */
const REWARDS: Array<[number, number]> = [
  [0, 0],
  [1, 0],
  [0.5, 0],
  [0.25, 0.25],
  [0.1234564, 0],
  [0.1234561, 0],
  [0.1, 0.0234562],
  [0.1234566, 0],
  [-0.25, 0],
];

/** Source fields, blank and padded variants included: `run_id:x` and `manifest_path:x` are different sources. */
const sourceArb = fc.record({
  groupId: fc.constantFrom<string | null>(null, '', '  ', 'g1', ' g1 ', 'g2'),
  runId: fc.constantFrom('', ' ', 'x', 'r1', 'r1 '),
  manifestPath: fc.constantFrom('', '  ', 'x', 'm1'),
  stampSignature: fc.constantFrom(STAMP, 'cd'.repeat(32)),
});

const specArb = fc.record({
  reward: fc.constantFrom(...REWARDS),
  createdAt: fc.constantFrom('2024-01-01T00:00:00.000Z', '2024-01-02T00:00:00.000Z'),
  id: fc.constantFrom('exp-a', 'exp-b', 'exp-B'),
  source: fc.nat(),
  domain: fc.constantFrom('a', 'a', 'a', 'b'),
});

const logArb = fc.record({
  sources: fc.array(sourceArb, { minLength: 1, maxLength: 8 }),
  specs: fc.array(specArb, { maxLength: 28 }),
});

interface Log {
  sources: Array<Pick<ExperienceRecord, 'groupId' | 'runId' | 'manifestPath' | 'stampSignature'>>;
  specs: Array<{ reward: [number, number]; createdAt: string; id: string; source: number; domain: string }>;
}

let serial = 0;
function recordsOf(log: Log): ExperienceRecord[] {
  return log.specs.map((s) =>
    makeRecord({
      ...log.sources[s.source % log.sources.length]!,
      id: s.id,
      domain: s.domain,
      createdAt: s.createdAt,
      summary32: `#${serial++}`,
      reward: { gtScore: s.reward[0], relativeRank: s.reward[1] },
    }),
  );
}

function build(records: readonly ExperienceRecord[], k: number, caps: Caps = { top: k, pool: k }): TopState {
  const state = emptyState(k);
  for (const r of records) addRecord(state, r, JSON.stringify(r), caps);
  return state;
}

/** A record scoring `score`, from source group `g`. */
function rec(score: number, g: string | null = null, overrides: Partial<ExperienceRecord> = {}): ExperienceRecord {
  return makeRecord({ groupId: g, summary32: `#${serial++}`, reward: { gtScore: score, relativeRank: 0 }, ...overrides });
}

const entries = (records: ExperienceRecord[]) => records.map((r, seq) => newEntry(r, JSON.stringify(r), seq));
const insertAll = (list: readonly Entry[], cap: number) => list.reduce<readonly Entry[]>((top, e) => insertTop(top, e, cap), []);
const poolAll = (list: readonly Entry[], cap: number) => list.reduce<readonly Entry[]>((pool, e) => insertPool(pool, e, cap), []);

describe('insertTop', () => {
  it('keeps the best `cap` records in plain order, best first', () => {
    const top = insertAll(entries([rec(1), rec(5), rec(3), rec(4), rec(2)]), 3);
    expect(top.map((e) => e.record.reward.gtScore)).toEqual([5, 4, 3]);
  });

  it('keeps records that tie on score, createdAt and id in log order', () => {
    const es = entries([rec(1), rec(1), rec(2), rec(1)]);
    expect(seqs(insertAll(es, 3))).toEqual([2, 0, 1]);
  });

  it('ranks scores that tie only after rounding by their exact value', () => {
    const es = entries([rec(0.1234561), rec(0.1234564)]);
    expect(seqs(insertAll(es, 2))).toEqual([1, 0]);
  });

  it('returns the very array it was given, untouched, when the record does not make the cut', () => {
    const top = insertAll(entries([rec(5), rec(4)]), 2);
    const before = [...top];
    expect(insertTop(top, newEntry(rec(1), '', 7), 2)).toBe(top);
    expect(insertTop(top, newEntry(top[1]!.record, '', 8), 2)).toBe(top); // a full tie ranks after the one kept
    expect(top).toEqual(before);
  });

  it('never mutates the list it is given (the index writer caches sections by list identity)', () => {
    const top = insertAll(entries([rec(5), rec(3)]), 3);
    const before = [...top];
    const next = insertTop(top, newEntry(rec(4), '', 9), 3);
    expect(next).not.toBe(top);
    expect(top).toEqual(before);
  });

  it('keeps nothing with a cap of 0', () => {
    expect(insertAll(entries([rec(1), rec(2)]), 0)).toEqual([]);
  });

  it('equals a stable sort of everything inserted, cut to the cap', () => {
    fc.assert(
      fc.property(logArb, fc.integer({ min: 0, max: 8 }), (log, cap) => {
        const es = entries(recordsOf(log));
        expect(seqs(insertAll(es, cap))).toEqual(seqs([...es].sort(plainOrder).slice(0, cap)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('the selection pool', () => {
  it('keeps the best record of another source that a prolific source outranks in plain order', () => {
    // k = 2: A's third record has two A records before it (D = 2), B's only record only A's best (D = 1).
    const state = build([rec(5, 'A'), rec(4, 'A'), rec(3, 'A'), rec(1, 'B')], 2);
    const d = state.domains.get('d')!;
    expect(seqs(d.top)).toEqual([0, 1]);
    expect(seqs(d.pool)).toEqual([0, 1, 3]);
  });

  it('keeps at most `cap` sources', () => {
    const state = build([rec(4, 'A'), rec(3, 'B'), rec(2, 'C'), rec(5, 'D')], 3);
    expect(seqs(state.domains.get('d')!.pool)).toEqual([3, 0, 1]);
  });

  it('returns the very pool it was given when the record is not pooled, and never mutates it', () => {
    const pool = poolAll(entries([rec(5, 'A'), rec(4, 'B')]), 2);
    const before = [...pool];
    expect(insertPool(pool, newEntry(rec(1, 'A'), '', 5), 2)).toBe(pool); // D = 2: B's best and A's 5
    expect(insertPool(pool, newEntry(rec(1, 'C'), '', 6), 2)).toBe(pool); // D = 2: two other sources
    expect(insertPool(pool, newEntry(rec(9, 'C'), '', 6), 0)).toBe(pool);
    const next = insertPool(pool, newEntry(rec(9, 'C'), '', 7), 2);
    expect(seqs(next)).toEqual([7, 0]);
    expect(pool).toEqual(before);
  });

  // src bug: with fewer than `cap` sources pooled there is no early exit, and
  // trimPool drops the new entry from a fresh copy, so an equal but new list
  // comes back (the index writer then re-encodes an unchanged section).
  it('returns the very pool it was given for an unpooled record also when fewer than cap sources are pooled', () => {
    const pool = poolAll(entries([rec(5, 'A'), rec(4, 'A')]), 2);
    const next = insertPool(pool, newEntry(rec(1, 'A'), '', 5), 2); // D = 2: A's 5 and 4
    expect(seqs(next)).toEqual([0, 1]);
    expect(next).toBe(pool);
  });

  it('equals, after every record, the entries with dominance below cap computed from scratch over all records so far', () => {
    fc.assert(
      fc.property(logArb, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), (log, poolCap, topCap) => {
        const records = recordsOf(log);
        const state = emptyState(poolCap);
        const all = new Map<string, Entry[]>();
        records.forEach((r, i) => {
          addRecord(state, r, JSON.stringify(r), { top: topCap, pool: poolCap });
          const list = all.get(r.domain) ?? [];
          list.push(newEntry(r, JSON.stringify(r), i));
          all.set(r.domain, list);
          for (const [domain, so] of all) {
            const d = state.domains.get(domain)!;
            const at = `after record ${i}, domain ${domain}`;
            expect(d.count, at).toBe(so.length);
            expect(seqs(d.pool), at).toEqual(seqs(bruteForcePool(so, poolCap)));
            expect(seqs(d.top), at).toEqual(seqs([...so].sort(plainOrder).slice(0, topCap)));
          }
        });
        expect(state.records).toBe(records.length);
      }),
      { numRuns: 300 },
    );
  });

  it('holds everything default-weight selection picks within cap slots: selecting from the pool equals selecting from all records', () => {
    fc.assert(
      fc.property(
        logArb,
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(0, 0.0000004, 0.1, 0.25, 0.5, 1, 3),
        fc.boolean(),
        fc.option(fc.constantFrom(0, 0.1234561, 0.123457, 0.25, 0.5, 0.75, 1), { nil: undefined }),
        (log, cap, strength, enabled, minScore) => {
          const records = recordsOf(log).filter((r) => r.domain === 'a');
          const policy = resolveSelectionPolicy({ antiDominanceNormalization: { strength, enabled } }, minScore);
          const pool = build(records, cap).domains.get('a')?.pool ?? [];
          const fromPool = [...pool].sort((x, y) => x.seq - y.seq).map((e) => e.record);
          const seqOf = new Map(records.map((r, i) => [r, i]));
          for (let limit = 0; limit <= cap; limit++) {
            const want = selectCompetitive(records, limit, policy);
            const got = selectCompetitive(fromPool, limit, policy);
            const at = `limit ${limit}`;
            expect(got.records.map((r) => seqOf.get(r)), at).toEqual(want.records.map((r) => seqOf.get(r)));
            expect(got.diagnostics.selected, at).toEqual(want.diagnostics.selected);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('trimPool and trimState', () => {
  it('trimming a state built with larger caps gives the state built with k', () => {
    fc.assert(
      fc.property(logArb, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 6 }), (log, k, extra) => {
        const records = recordsOf(log);
        const big = build(records, k, { top: k + extra, pool: k + extra });
        const small = build(records, k);
        const trimmed = trimState(big);
        expect(trimmed.k).toBe(k);
        expect(trimmed.records).toBe(small.records);
        expect([...trimmed.domains.keys()]).toEqual([...small.domains.keys()]);
        for (const [domain, d] of small.domains) {
          const t = trimmed.domains.get(domain)!;
          expect(t.count).toBe(d.count);
          expect(seqs(t.top), domain).toEqual(seqs(d.top));
          expect(seqs(t.pool), domain).toEqual(seqs(d.pool));
          expect(seqs(trimPool(big.domains.get(domain)!.pool, k)), domain).toEqual(seqs(d.pool));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('returns a pool whose entries all have dominance below cap as it is', () => {
    const pool = build([rec(5, 'A'), rec(4, 'B')], 2).domains.get('d')!.pool;
    expect(trimPool(pool, 2)).toBe(pool);
  });

  it('leaves the state it trims unchanged', () => {
    const state = build([rec(1), rec(2), rec(3), rec(4)], 2, { top: 4, pool: 4 });
    trimState(state);
    expect(state.domains.get('d')!.top).toHaveLength(4);
    expect(state.domains.get('d')!.pool).toHaveLength(4);
  });
});

describe('addRecord and cloneState', () => {
  it('counts every record of a domain even when its caps are 0', () => {
    const state = emptyState(2);
    addRecord(state, rec(1, null, { domain: 'other' }), '{}', { top: 0, pool: 0 });
    addRecord(state, rec(2, null, { domain: 'other' }), '{}', { top: 0, pool: 0 });
    expect(state.domains.get('other')).toEqual({ count: 2, extreme: 0, top: [], pool: [] });
    expect(state.records).toBe(2);
  });

  it('numbers records in log order across domains and keeps the exact line text', () => {
    const state = emptyState(2);
    addRecord(state, rec(1, null, { domain: 'x' }), 'line 0', { top: 2, pool: 2 });
    addRecord(state, rec(1, null, { domain: 'y' }), 'line 1', { top: 2, pool: 2 });
    const y = state.domains.get('y')!.top[0]!;
    expect([y.seq, y.raw]).toEqual([1, 'line 1']);
  });

  it('lets a clone grow without changing the original', () => {
    const state = build([rec(1)], 2);
    const clone = cloneState(state);
    addRecord(clone, rec(2), '{}', { top: 2, pool: 2 });
    expect(state.records).toBe(1);
    expect(state.domains.get('d')!.count).toBe(1);
    expect(state.domains.get('d')!.top).toHaveLength(1);
    expect(clone.domains.get('d')!.top).toHaveLength(2);
    expect(clone.domains.get('d')!.count).toBe(2);
  });
});

describe('mergeRanked', () => {
  it('merges per-task lists cut to the limit, full ties in task order', () => {
    const t1 = entries([rec(3), rec(1)]);
    const t2 = entries([rec(3), rec(2)]);
    expect(mergeRanked([t1, t2], 3)).toEqual([t1[0], t2[0], t2[1]]);
    expect(mergeRanked([t2, t1], 3)).toEqual([t2[0], t1[0], t2[1]]);
  });

  it('returns a copy of a single list cut to the limit, and [] for no lists', () => {
    const only = entries([rec(2), rec(1)]);
    const merged = mergeRanked([only], 1);
    expect(merged).toEqual([only[0]]);
    expect(merged).not.toBe(only);
    expect(mergeRanked([], 5)).toEqual([]);
  });

  it('equals a sort of all tasks by plain order, then task order, then log order', () => {
    fc.assert(
      fc.property(fc.array(logArb, { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 10 }), (logs, limit) => {
        const tasks = logs.map((log) => insertAll(entries(recordsOf(log)), 6));
        const ranked = tasks
          .flatMap((list, task) => list.map((e) => ({ e, task })))
          .sort((a, b) => byKeys(scoreOf(a.e.record), scoreOf(b.e.record), a.e.record, b.e.record) || a.task - b.task || a.e.seq - b.e.seq)
          .slice(0, limit)
          .map((x) => x.e);
        const merged = mergeRanked(tasks, limit);
        expect(merged).toHaveLength(ranked.length);
        merged.forEach((e, i) => expect(e).toBe(ranked[i]));
      }),
      { numRuns: 300 },
    );
  });
});

describe('extreme scores', () => {
  it('counts the records of a domain whose score is beyond ±1e300, where selection arithmetic overflows', () => {
    const state = emptyState(2);
    addRecord(state, rec(1, null, { domain: 'd' }), '{}', { top: 2, pool: 2 });
    addRecord(state, makeRecord({ domain: 'd', reward: { gtScore: 1e301, relativeRank: 0 } }), '{}', { top: 2, pool: 2 });
    addRecord(state, makeRecord({ domain: 'd', reward: { gtScore: -1e308, relativeRank: -1e308 } }), '{}', { top: 2, pool: 2 });
    expect(state.domains.get('d')!.extreme).toBe(2);
    expect(state.domains.get('d')!.count).toBe(3);
  });
});
