import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExperienceStoreError } from '../src/errors.js';
import type { ExperienceRecord } from '../src/record.js';
import {
  compareBySelectionOrder,
  isDefaultWeights,
  rawScore,
  resolveSelectionPolicy,
  round6,
  selectCompetitive,
  sourceOf,
  type ExperienceSelectionPolicy,
} from '../src/selection.js';
import { makeRecord } from './support/inputs.js';
import { oracleSelect } from './support/select-oracle.js';

const DEFAULT: ExperienceSelectionPolicy = {
  kind: 'competitive_scoring_v1',
  minScore: null,
  scoreWeights: { gtScore: 1, relativeRank: 1 },
  antiDominanceNormalization: { enabled: true, strength: 0.5, sourceGrouping: 'provenance_fallback_v1' },
};

function policyError(policy: unknown, queryMinScore?: unknown): ExperienceStoreError {
  try {
    resolveSelectionPolicy(policy, queryMinScore);
  } catch (err) {
    expect(err).toBeInstanceOf(ExperienceStoreError);
    expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
    return err as ExperienceStoreError;
  }
  throw new Error(`resolveSelectionPolicy accepted ${JSON.stringify(policy)}`);
}

/** A record scoring `score` (gtScore 1, the rest as relativeRank). */
function scored(id: string, score: number, overrides: Partial<ExperienceRecord> = {}): ExperienceRecord {
  return makeRecord({ id, reward: { gtScore: 1, relativeRank: score - 1 }, ...overrides });
}

describe('resolveSelectionPolicy', () => {
  it('fills every default for no policy, an empty one and null sections', () => {
    expect(resolveSelectionPolicy(undefined)).toEqual(DEFAULT);
    expect(resolveSelectionPolicy({})).toEqual(DEFAULT);
    expect(resolveSelectionPolicy({ minScore: null, scoreWeights: null, antiDominanceNormalization: null })).toEqual(DEFAULT);
    expect(
      resolveSelectionPolicy({
        scoreWeights: { gtScore: null, relativeRank: undefined },
        antiDominanceNormalization: { enabled: null, strength: null },
      }),
    ).toEqual(DEFAULT);
  });

  it('forces kind and sourceGrouping to their only values', () => {
    const resolved = resolveSelectionPolicy({ kind: 'plain', antiDominanceNormalization: { sourceGrouping: 'by_run' } });
    expect(resolved.kind).toBe('competitive_scoring_v1');
    expect(resolved.antiDominanceNormalization.sourceGrouping).toBe('provenance_fallback_v1');
  });

  it('keeps every valid value given, and ignores unknown fields', () => {
    expect(
      resolveSelectionPolicy({
        minScore: 0.25,
        scoreWeights: { gtScore: 2, relativeRank: 0 },
        antiDominanceNormalization: { enabled: false, strength: 0 },
        extra: true,
      } as object),
    ).toEqual({
      kind: 'competitive_scoring_v1',
      minScore: 0.25,
      scoreWeights: { gtScore: 2, relativeRank: 0 },
      antiDominanceNormalization: { enabled: false, strength: 0, sourceGrouping: 'provenance_fallback_v1' },
    });
  });

  it("takes minScore from the policy, else from the query's, else none", () => {
    expect(resolveSelectionPolicy({ minScore: 0.3 }, 0.9).minScore).toBe(0.3);
    expect(resolveSelectionPolicy({ minScore: null }, 0.9).minScore).toBe(0.9);
    expect(resolveSelectionPolicy({}, 0).minScore).toBe(0);
    expect(resolveSelectionPolicy(undefined, 0.9).minScore).toBe(0.9);
    expect(resolveSelectionPolicy({}, null).minScore).toBeNull();
    expect(resolveSelectionPolicy({}, undefined).minScore).toBeNull();
    // A bad query value does not matter when the policy sets its own.
    expect(resolveSelectionPolicy({ minScore: 0.5 }, Number.NaN).minScore).toBe(0.5);
  });

  it('turns -0 into 0 so that the resolved policy compares equal to its JSON', () => {
    const resolved = resolveSelectionPolicy({
      minScore: -0,
      scoreWeights: { gtScore: -0 },
      antiDominanceNormalization: { strength: -0 },
    });
    expect(Object.is(resolved.minScore, 0)).toBe(true);
    expect(Object.is(resolved.scoreWeights.gtScore, 0)).toBe(true);
    expect(Object.is(resolved.antiDominanceNormalization.strength, 0)).toBe(true);
  });

  it('is idempotent: a resolved policy resolves to an equal one', () => {
    const resolved = resolveSelectionPolicy({ minScore: 0.1, antiDominanceNormalization: { strength: 2 } });
    expect(resolveSelectionPolicy(resolved)).toEqual(resolved);
    expect(resolveSelectionPolicy(resolved, 0.7)).toEqual(resolved);
  });

  it('names the field and the value when enabled is not a boolean', () => {
    expect(policyError({ antiDominanceNormalization: { enabled: 'yes' } }).message).toMatch(
      /^selection\.policy\.antiDominanceNormalization\.enabled must be a boolean, got "yes"; /,
    );
  });

  it('rejects a NaN minScore naming it, and says when it came from the query', () => {
    expect(policyError({ minScore: Number.NaN }).message).toMatch(/^selection\.policy\.minScore must be .* got NaN; /);
    expect(policyError({}, Number.NaN).message).toMatch(/^selection\.policy\.minScore \(from query\.minScore\) must be .* got NaN/);
  });

  const BAD_NUMBERS: unknown[] = [Number.NaN, Infinity, -Infinity, -1, -1e-9, '1', true, {}, []];
  const NUMBER_FIELDS: Array<[string, (v: unknown) => unknown]> = [
    ['selection.policy.minScore', (v) => ({ minScore: v })],
    ['selection.policy.scoreWeights.gtScore', (v) => ({ scoreWeights: { gtScore: v } })],
    ['selection.policy.scoreWeights.relativeRank', (v) => ({ scoreWeights: { relativeRank: v } })],
    ['selection.policy.antiDominanceNormalization.strength', (v) => ({ antiDominanceNormalization: { strength: v } })],
  ];
  for (const [field, wrap] of NUMBER_FIELDS) {
    it(`rejects every value of ${field} that is not a finite number >= 0`, () => {
      for (const bad of BAD_NUMBERS) {
        const message = policyError(wrap(bad)).message;
        expect(message, String(bad)).toContain(`${field} must be a finite number >= 0`);
        expect(message, String(bad)).toContain(', got ');
      }
    });
  }

  it('rejects every non-boolean enabled', () => {
    for (const bad of ['yes', 'true', 1, 0, {}, [], Number.NaN]) {
      expect(policyError({ antiDominanceNormalization: { enabled: bad } }).message).toContain(
        'selection.policy.antiDominanceNormalization.enabled must be a boolean',
      );
    }
  });

  it('rejects a policy or a section that is not an object, naming it', () => {
    for (const bad of [null, 'competitive', 3, true, [], () => 1]) {
      expect(policyError(bad).message, String(bad)).toMatch(/^selection\.policy must be an object, got /);
    }
    expect(policyError({ scoreWeights: 1 }).message).toMatch(/^selection\.policy\.scoreWeights must be an object, got 1/);
    expect(policyError({ antiDominanceNormalization: [] }).message).toMatch(
      /^selection\.policy\.antiDominanceNormalization must be an object, got an array/,
    );
  });
});

describe('round6, rawScore, isDefaultWeights', () => {
  it('rounds to six decimals and gives 0 for non-finite input', () => {
    expect(round6(0.1 + 0.2)).toBe(0.3);
    expect(round6(1.2345674)).toBe(1.234567);
    expect(round6(7.5e-7)).toBe(0.000001);
    expect(round6(2.5e-7)).toBe(0);
    expect(round6(-1.5)).toBe(-1.5);
    expect(round6(Number.NaN)).toBe(0);
    expect(round6(Infinity)).toBe(0);
    expect(round6(-Infinity)).toBe(0);
    expect(Object.is(round6(-1e-7), 0)).toBe(true);
  });

  it('weights gtScore and relativeRank, then rounds', () => {
    const record = makeRecord({ reward: { gtScore: 0.1, relativeRank: 0.2 } });
    expect(rawScore(record, DEFAULT)).toBe(0.3);
    expect(rawScore(record, resolveSelectionPolicy({ scoreWeights: { gtScore: 2, relativeRank: 0 } }))).toBe(0.2);
    expect(rawScore(makeRecord({ reward: { gtScore: 1 / 3, relativeRank: 0 } }), DEFAULT)).toBe(0.333333);
  });

  it('says whether both weights are exactly 1', () => {
    expect(isDefaultWeights(DEFAULT)).toBe(true);
    expect(isDefaultWeights(resolveSelectionPolicy({ scoreWeights: { gtScore: 1, relativeRank: 1 } }))).toBe(true);
    expect(isDefaultWeights(resolveSelectionPolicy({ scoreWeights: { relativeRank: 0.5 } }))).toBe(false);
    expect(isDefaultWeights(resolveSelectionPolicy({ scoreWeights: { gtScore: 0 } }))).toBe(false);
  });
});

describe('sourceOf', () => {
  it('takes the first non-blank of groupId, runId, manifestPath, trimmed', () => {
    expect(sourceOf(makeRecord({ groupId: ' g ', runId: 'r', manifestPath: 'm' }))).toEqual({
      kind: 'group_id',
      key: 'g',
      bucket: 'group_id:g',
    });
    expect(sourceOf(makeRecord({ groupId: null, runId: '\tr\n', manifestPath: 'm' })).bucket).toBe('run_id:r');
    expect(sourceOf(makeRecord({ groupId: '   ', runId: '', manifestPath: ' m ' })).bucket).toBe('manifest_path:m');
  });

  it('falls back to the stampSignature as is when every other field is blank', () => {
    expect(sourceOf(makeRecord({ groupId: '', runId: ' ', manifestPath: '\t', stampSignature: ' s ' }))).toEqual({
      kind: 'stamp_signature',
      key: ' s ',
      bucket: 'stamp_signature: s ',
    });
  });

  it('keeps one key in different kinds apart', () => {
    const run = sourceOf(makeRecord({ runId: 'shared', manifestPath: 'x' }));
    const manifest = sourceOf(makeRecord({ runId: '', manifestPath: 'shared' }));
    expect(run.key).toBe(manifest.key);
    expect(run.bucket).not.toBe(manifest.bucket);
  });

  it('skips fields that are not strings, as records from foreign writers may hold', () => {
    const odd = makeRecord({ groupId: 5 as unknown as string, runId: null as unknown as string, manifestPath: 'm' });
    expect(sourceOf(odd).bucket).toBe('manifest_path:m');
  });
});

describe('compareBySelectionOrder', () => {
  it('orders by raw desc, createdAt desc, then id asc in code-unit order', () => {
    const high = scored('z', 1.5);
    const newer = scored('y', 1.2, { createdAt: '2024-02-01T00:00:00.000Z' });
    const upper = scored('B', 1.2);
    const lower = scored('a', 1.2);
    expect([lower, upper, newer, high].sort(compareBySelectionOrder)).toEqual([high, newer, upper, lower]);
    expect(compareBySelectionOrder(lower, { ...lower })).toBe(0);
  });

  it('compares rounded raw scores, so scores a millionth apart tie and createdAt decides', () => {
    const a = makeRecord({ id: 'a', reward: { gtScore: 1.0000002, relativeRank: 0 } });
    const b = makeRecord({ id: 'b', reward: { gtScore: 1.0000001, relativeRank: 0 }, createdAt: '2024-06-01T00:00:00.000Z' });
    expect(compareBySelectionOrder(b, a)).toBeLessThan(0);
  });

  it("uses the policy's weights", () => {
    const a = makeRecord({ id: 'a', reward: { gtScore: 1, relativeRank: 0 } });
    const b = makeRecord({ id: 'b', reward: { gtScore: 0, relativeRank: 0.5 } });
    const rankOnly = resolveSelectionPolicy({ scoreWeights: { gtScore: 0 } });
    expect(compareBySelectionOrder(a, b)).toBeLessThan(0);
    expect(compareBySelectionOrder(a, b, rankOnly)).toBeGreaterThan(0);
  });
});

describe('selectCompetitive', () => {
  const A = { groupId: 'A' };
  const groups = () => [
    scored('a1', 1.35, A),
    scored('a2', 1.3, A),
    scored('a3', 1.23, A),
    scored('b1', 1.22, { groupId: 'B' }),
  ];
  const withMin = resolveSelectionPolicy({ minScore: 0.1 });

  it('spreads two slots across groups: A 1.35 then B 1.22 (issue 12, first example)', () => {
    const candidates = groups();
    const { records, diagnostics } = selectCompetitive(candidates, 2, withMin);
    expect(records).toEqual([candidates[0], candidates[3]]);
    expect(records[0]).toBe(candidates[0]);
    const entry = (id: string, key: string, raw: number, competitive: number, penalty: number) => ({
      id,
      source_key: key,
      source_kind: 'group_id',
      raw_score: raw,
      competitive_score: competitive,
      dominance_penalty: penalty,
    });
    expect(diagnostics).toEqual({
      policy: withMin,
      candidate_count: 4,
      selected_count: 2,
      selected_ids: ['a1', 'b1'],
      suppressed_source_keys: ['group_id:A'],
      selected: [entry('a1', 'A', 1.35, 1.35, 0), entry('b1', 'B', 1.22, 1.22, 0)],
      candidates: [
        { ...entry('a1', 'A', 1.35, 1.35, 0), selected: true, selected_slot: 1, exclusion_reason: null },
        { ...entry('b1', 'B', 1.22, 1.22, 0), selected: true, selected_slot: 2, exclusion_reason: null },
        { ...entry('a2', 'A', 1.3, 0.8, 0.5), selected: false, selected_slot: null, exclusion_reason: 'outcompeted' },
        { ...entry('a3', 'A', 1.23, 0.73, 0.5), selected: false, selected_slot: null, exclusion_reason: 'outcompeted' },
      ],
      candidates_complete: true,
    });
  });

  it('takes A again in the third slot where a plain top 3 would take only A (issue 12, second example)', () => {
    const { records, diagnostics } = selectCompetitive(groups(), 3, withMin);
    expect(records.map((r) => r.id)).toEqual(['a1', 'b1', 'a2']);
    expect(diagnostics.selected[2]).toMatchObject({ id: 'a2', competitive_score: 0.8, dominance_penalty: 0.5 });
    // a3 keeps the values of slot 3, computed before a2's pick raised A's penalty.
    expect(diagnostics.candidates[3]).toMatchObject({ id: 'a3', dominance_penalty: 0.5, competitive_score: 0.73 });
    expect(diagnostics.suppressed_source_keys).toEqual(['group_id:A']);
  });

  it('buckets by kind and key when groupId is null (issue 12, third example)', () => {
    const candidates = [
      scored('s1', 0.95, { groupId: null, runId: 'shared' }),
      scored('s2', 0.91, { groupId: null, runId: '  ', manifestPath: 'shared' }),
      scored('o1', 0.75, { groupId: null, runId: 'other' }),
    ];
    const { records, diagnostics } = selectCompetitive(candidates, 2, DEFAULT);
    expect(records).toEqual(candidates.slice(0, 2));
    expect(diagnostics.selected.map((s) => `${s.source_kind}:${s.source_key}`)).toEqual(['run_id:shared', 'manifest_path:shared']);
    expect(diagnostics.suppressed_source_keys).toEqual(['run_id:other']);
    expect(diagnostics.candidates[2]).toMatchObject({ id: 'o1', exclusion_reason: 'outcompeted', dominance_penalty: 0 });
  });

  it('leaves out records below the raw threshold without considering them: penalty 0, competitive = raw', () => {
    const candidates = [scored('hi', 1), scored('lo', 0.2, { runId: 'other' })];
    const { records, diagnostics } = selectCompetitive(candidates, 5, resolveSelectionPolicy({ minScore: 0.5 }));
    expect(records.map((r) => r.id)).toEqual(['hi']);
    expect(diagnostics.candidate_count).toBe(2);
    expect(diagnostics.candidates[1]).toEqual({
      id: 'lo',
      source_key: 'other',
      source_kind: 'run_id',
      raw_score: 0.2,
      competitive_score: 0.2,
      dominance_penalty: 0,
      selected: false,
      selected_slot: null,
      exclusion_reason: 'raw_score_below_min_score',
    });
    // Suppressed counts every candidate, also those below the threshold.
    expect(diagnostics.suppressed_source_keys).toEqual(['run_id:other']);
  });

  it('stops when the best competitive score falls below the threshold, excluding every candidate left', () => {
    const candidates = [scored('r1', 0.8), scored('r2', 0.7), scored('r3', 0.65)];
    const policy = resolveSelectionPolicy({ minScore: 0.5, antiDominanceNormalization: { strength: 0.25 } });
    const { records, diagnostics } = selectCompetitive(candidates, 10, policy);
    // Slot 2: r2 competes at 0.7 - 0.25 = 0.45 < 0.5.
    expect(records.map((r) => r.id)).toEqual(['r1']);
    const below = 'competitive_score_below_min_score';
    expect(diagnostics.candidates.slice(1)).toEqual([
      expect.objectContaining({ id: 'r2', competitive_score: 0.45, dominance_penalty: 0.25, exclusion_reason: below }),
      expect.objectContaining({ id: 'r3', competitive_score: 0.4, dominance_penalty: 0.25, exclusion_reason: below }),
    ]);
  });

  it('selects in plain raw order when anti-dominance is disabled or its strength is 0', () => {
    const candidates = groups();
    for (const anti of [{ enabled: false }, { strength: 0 }]) {
      const { records, diagnostics } = selectCompetitive(candidates, 3, resolveSelectionPolicy({ antiDominanceNormalization: anti }));
      expect(records.map((r) => r.id)).toEqual(['a1', 'a2', 'a3']);
      expect(diagnostics.selected.every((s) => s.dominance_penalty === 0)).toBe(true);
    }
  });

  it('keeps input order among records equal on raw, createdAt and id', () => {
    const first = scored('same', 1, { runId: 'x' });
    const second = scored('same', 1, { runId: 'y' });
    const third = scored('same', 1, { runId: 'x' });
    const { records, diagnostics } = selectCompetitive([first, second, third], 3, DEFAULT);
    expect(records[0]).toBe(first);
    expect(records[1]).toBe(second);
    expect(records[2]).toBe(third);
    expect(diagnostics.selected_ids).toEqual(['same', 'same', 'same']);
  });

  it('selects nothing for a limit below 1 or no candidates, and still gives the resolved policy', () => {
    const zero = selectCompetitive(groups(), 0, withMin);
    expect(zero.records).toEqual([]);
    expect(zero.diagnostics.policy).toEqual(withMin);
    expect(zero.diagnostics.candidate_count).toBe(4);
    expect(zero.diagnostics.candidates.map((c) => [c.exclusion_reason, c.dominance_penalty])).toEqual(
      Array(4).fill(['outcompeted', 0]),
    );
    expect(selectCompetitive([], 5, withMin)).toEqual({
      records: [],
      diagnostics: {
        policy: withMin,
        candidate_count: 0,
        selected_count: 0,
        selected_ids: [],
        suppressed_source_keys: [],
        selected: [],
        candidates: [],
        candidates_complete: true,
      },
    });
  });

  it('reports a partial candidate list as the caller describes it', () => {
    const { diagnostics } = selectCompetitive(groups(), 1, DEFAULT, {
      candidateCount: 40,
      complete: false,
      bucketCounts: new Map([
        ['group_id:A', 30],
        ['group_id:B', 9],
        ['group_id:C', 1],
      ]),
    });
    expect(diagnostics.candidate_count).toBe(40);
    expect(diagnostics.candidates_complete).toBe(false);
    expect(diagnostics.suppressed_source_keys).toEqual(['group_id:A', 'group_id:B', 'group_id:C']);
  });

  it('does not share the policy object with its diagnostics', () => {
    const policy = resolveSelectionPolicy({});
    const { diagnostics } = selectCompetitive(groups(), 1, policy);
    diagnostics.policy.antiDominanceNormalization.strength = 9;
    expect(policy.antiDominanceNormalization.strength).toBe(0.5);
  });

  it('agrees with the naive greedy on a large domain: one prolific source among thousands of single ones', () => {
    const candidates: ExperienceRecord[] = [];
    for (let i = 0; i < 3000; i++) {
      candidates.push(scored(`p${i}`, 1 + (i % 97) / 100, { groupId: 'prolific' }));
      candidates.push(scored(`s${i}`, (i % 89) / 50, { runId: `run-${i}` }));
    }
    for (const policy of [DEFAULT, resolveSelectionPolicy({ minScore: 0.5, antiDominanceNormalization: { strength: 0.05 } })]) {
      const got = selectCompetitive(candidates, 30, policy);
      const want = oracleSelect(candidates, 30, policy);
      expect(got.records).toEqual(want.records);
      expect(got.diagnostics).toEqual(want.diagnostics);
    }
  });
});

describe('selectCompetitive against the naive greedy of the newer orchestrator', () => {
  const runIds = fc.oneof(
    fc.constantFrom('', ' ', 'r1', 'r2', 'shared', '\tshared '),
    fc.integer({ min: 0, max: 15 }).map((i) => `run-${i}`),
  );
  const record = fc
    .record({
      id: fc.constantFrom('a', 'b', 'B', 'c', 'exp-1'),
      groupId: fc.constantFrom(null, '', '  ', 'g1', 'g2', 'shared', ' g1 '),
      runId: runIds,
      manifestPath: fc.constantFrom('', '  ', 'm1', 'shared'),
      stampSignature: fc.constantFrom('s1', 's2', ''),
      gtScore: fc.constantFrom(0, 0.1, 0.2, 0.3, 0.5, 1, -0.5, 1e-7, 0.3333333),
      relativeRank: fc.constantFrom(0, 0.1, 0.25, 0.7, -0.2, 2e-7),
      createdAt: fc.constantFrom('2024-01-01T00:00:00.000Z', '2024-01-02T00:00:00.000Z', '2024-01-03T00:00:00.000Z'),
    })
    .map(({ gtScore, relativeRank, ...rest }) => makeRecord({ ...rest, reward: { gtScore, relativeRank } }));
  const policy = fc
    .record({
      minScore: fc.constantFrom(null, 0, 0.1, 0.3, 0.5, 1),
      gtScore: fc.constantFrom(0, 0.5, 1, 2, 1 / 3),
      relativeRank: fc.constantFrom(0, 0.5, 1, 3),
      enabled: fc.boolean(),
      strength: fc.constantFrom(0, 0.1, 0.25, 0.5, 1, 3, 1 / 7),
    })
    .map(({ minScore, gtScore, relativeRank, enabled, strength }) =>
      resolveSelectionPolicy({
        minScore,
        scoreWeights: { gtScore, relativeRank },
        antiDominanceNormalization: { enabled, strength },
      }),
    );

  it('gives the same records (the same objects, in slot order) and the same diagnostics', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 60 }), fc.integer({ min: 0, max: 30 }), policy, (candidates, limit, p) => {
        const got = selectCompetitive(candidates, limit, p);
        const want = oracleSelect(candidates, limit, p);
        expect(got.records).toHaveLength(want.records.length);
        got.records.forEach((r, i) => expect(r).toBe(want.records[i]));
        expect(got.diagnostics).toEqual(want.diagnostics);
      }),
      { numRuns: 1500 },
    );
  });
});
