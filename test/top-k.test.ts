import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareRecords, type ExperienceRecord } from '../src/record.js';
import { addRecord, cloneState, emptyState, insertTop, mergeRanked, trimState } from '../src/top-k.js';
import { makeRecord } from './support/inputs.js';

let serial = 0;
/** A record whose summary32 tells instances apart when they tie on every ranking key. */
function rec(score: number, createdAt = '2024-01-01', id = 'exp-a', domain = 'd'): ExperienceRecord {
  return makeRecord({ id, domain, createdAt, summary32: `#${serial++}`, reward: { gtScore: score, relativeRank: 0 } });
}

const insertAll = (records: ExperienceRecord[], cap: number) =>
  records.reduce<readonly ExperienceRecord[]>((top, r) => insertTop(top, r, cap), []);

describe('insertTop', () => {
  it('keeps the best `cap` records, best first', () => {
    const rs = [rec(1), rec(5), rec(3), rec(4), rec(2)];
    expect(insertAll(rs, 3).map((r) => r.reward.gtScore)).toEqual([5, 4, 3]);
  });

  it('keeps records that tie on every key in insertion order', () => {
    const [a, b, c] = [rec(1), rec(1), rec(1)];
    expect(insertAll([a!, b!, c!], 3)).toEqual([a, b, c]);
    expect(insertAll([rec(2), a!, b!, c!], 3)).toEqual([expect.objectContaining({ reward: { gtScore: 2, relativeRank: 0 } }), a, b]);
  });

  it('returns the same array, untouched, when the record does not make the cut', () => {
    const top = insertAll([rec(5), rec(4)], 2);
    const copy = [...top];
    expect(insertTop(top, rec(1), 2)).toBe(top);
    expect(insertTop(top, rec(4), 2)).toBe(top); // a tie ranks after the one already kept
    expect(top).toEqual(copy);
  });

  it('never mutates the array it is given', () => {
    const top = insertAll([rec(5), rec(3)], 3);
    const copy = [...top];
    const next = insertTop(top, rec(4), 3);
    expect(top).toEqual(copy);
    expect(next).not.toBe(top);
  });

  it('keeps nothing with a cap of 0', () => {
    expect(insertAll([rec(1), rec(2)], 0)).toEqual([]);
  });

  it('equals a stable sort of everything inserted, cut to the cap', () => {
    const arb = fc.record({
      score: fc.constantFrom(0, 0.5, 1, -1, 2),
      createdAt: fc.constantFrom('2024-01-01', '2024-01-02', 'B', 'a'),
      id: fc.constantFrom('exp-a', 'exp-B', 'exp-b', 'exp-\u{1F600}', 'exp-\uFF5E'),
    });
    fc.assert(
      fc.property(fc.array(arb, { maxLength: 40 }), fc.integer({ min: 0, max: 12 }), (specs, cap) => {
        const records = specs.map((s) => rec(s.score, s.createdAt, s.id));
        const want = [...records].sort(compareRecords).slice(0, cap);
        expect(insertAll(records, cap)).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });
});

describe('addRecord', () => {
  it('counts every record per domain while keeping at most the cap', () => {
    const state = emptyState(2);
    for (const s of [1, 2, 3]) addRecord(state, rec(s, undefined, undefined, 'x'), 2);
    addRecord(state, rec(9, undefined, undefined, 'y'), 2);
    expect(state.records).toBe(4);
    expect(state.domains.get('x')!.count).toBe(3);
    expect(state.domains.get('x')!.top.map((r) => r.reward.gtScore)).toEqual([3, 2]);
    expect(state.domains.get('y')!.count).toBe(1);
  });

  it('counts a domain even when its cap is 0', () => {
    const state = emptyState(2);
    addRecord(state, rec(1, undefined, undefined, 'other'), 0);
    expect(state.domains.get('other')).toEqual({ count: 1, top: [] });
  });
});

describe('cloneState and trimState', () => {
  it('lets a clone grow without changing the original', () => {
    const state = emptyState(2);
    addRecord(state, rec(1), 2);
    const clone = cloneState(state);
    addRecord(clone, rec(2), 2);
    expect(state.records).toBe(1);
    expect(state.domains.get('d')!.top).toHaveLength(1);
    expect(clone.domains.get('d')!.top).toHaveLength(2);
  });

  it('cuts each domain back to k without changing counts', () => {
    const state = emptyState(2);
    for (const s of [1, 2, 3, 4]) addRecord(state, rec(s), 4);
    const trimmed = trimState(state);
    expect(trimmed.domains.get('d')!.top.map((r) => r.reward.gtScore)).toEqual([4, 3]);
    expect(trimmed.domains.get('d')!.count).toBe(4);
    expect(state.domains.get('d')!.top).toHaveLength(4);
  });
});

describe('mergeRanked', () => {
  it('merges per-task lists into one ranked list cut to the limit, ties in task order', () => {
    const t1 = [rec(3), rec(1)];
    const t2 = [rec(3), rec(2)];
    expect(mergeRanked([t1, t2], 3)).toEqual([t1[0], t2[0], t2[1]]);
  });

  it('returns a copy of a single list cut to the limit', () => {
    const only = [rec(2), rec(1)];
    const merged = mergeRanked([only], 1);
    expect(merged).toEqual([only[0]]);
    expect(merged).not.toBe(only);
    expect(mergeRanked([], 5)).toEqual([]);
  });
});
