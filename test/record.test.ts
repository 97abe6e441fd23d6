import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareRecords,
  ExperienceRecord,
  isExperienceRecord,
  normalizeInput,
  parseRecordLine,
  score,
  validateBatch,
  verifyStamp,
} from '../src/record.js';
import { makeInput, makeRecord, STAMP } from './support/inputs.js';

const NOW = new Date('2024-05-01T12:34:56.789Z');

function normalize(overrides: Parameters<typeof makeInput>[0], maxSummaryWords = 32) {
  const [valid] = validateBatch([makeInput(overrides)]);
  return normalizeInput(valid!, { maxSummaryWords, now: NOW, manifestPath: 'runs/m.json' });
}

function record(overrides: Partial<ExperienceRecord> & { gt?: number; rank?: number } = {}): ExperienceRecord {
  const { gt = 0.5, rank = 0, ...rest } = overrides;
  return makeRecord({ id: 'exp-1-000000', runId: 'run-1', taskId: 'task-a', epoch: 1, summary32: 's', reward: { gtScore: gt, relativeRank: rank }, ...rest });
}

describe('normalizeInput', () => {
  it('cuts the summary to maxSummaryWords words and collapses every kind of whitespace to one space', () => {
    const r = normalize({ summary: '  one\ttwo\n\nthree \u00a0 four\r\nfive  six  ' }, 4);
    expect(r.summary32).toBe('one two three four');
  });

  it('keeps a summary shorter than the limit whole, trimmed, and turns a blank one into ""', () => {
    expect(normalize({ summary: ' 修复 了  上传器 🚀 ' }).summary32).toBe('修复 了 上传器 🚀');
    expect(normalize({ summary: ' \t\n ' }).summary32).toBe('');
  });

  it('turns non-finite reward and toolStats numbers into 0 and keeps finite ones', () => {
    const r = normalize({
      reward: { gtScore: Number.NaN, relativeRank: Number.POSITIVE_INFINITY },
      toolStats: [
        { tool: 'a', tokens: Number.NEGATIVE_INFINITY, latencyMs: Number.NaN, costUsd: Number.POSITIVE_INFINITY },
        { tool: 'b', tokens: 7, latencyMs: -1.5, costUsd: 0.25 },
      ],
    });
    expect(r.reward).toEqual({ gtScore: 0, relativeRank: 0 });
    expect(r.toolStats).toEqual([
      { tool: 'a', tokens: 0, latencyMs: 0, costUsd: 0 },
      { tool: 'b', tokens: 7, latencyMs: -1.5, costUsd: 0.25 },
    ]);
    expect(isExperienceRecord(JSON.parse(JSON.stringify(r)))).toBe(true);
  });

  it('turns a non-finite epoch into null and keeps 0 and null', () => {
    expect(normalize({ epoch: Number.NaN }).epoch).toBeNull();
    expect(normalize({ epoch: Number.NEGATIVE_INFINITY }).epoch).toBeNull();
    expect(normalize({ epoch: 0 }).epoch).toBe(0);
    expect(normalize({ epoch: null }).epoch).toBeNull();
  });

  it('trims the domain', () => {
    expect(normalize({ domain: '  review\t' }).domain).toBe('review');
  });

  it('builds an id exp-<base36 ms>-<6 hex> and an ISO createdAt from the clock', () => {
    const r = normalize({});
    expect(r.id).toMatch(/^exp-[0-9a-z]+-[0-9a-f]{6}$/);
    expect(r.id.split('-')[1]).toBe(NOW.getTime().toString(36));
    expect(r.createdAt).toBe('2024-05-01T12:34:56.789Z');
    expect(r.manifestPath).toBe('runs/m.json');
  });

  it('writes exactly the fields existing logs hold, in their order', () => {
    expect(Object.keys(normalize({ groupId: 'g' }))).toEqual([
      'id',
      'runId',
      'taskId',
      'epoch',
      'groupId',
      'summary32',
      'reward',
      'toolStats',
      'stampSignature',
      'domain',
      'createdAt',
      'manifestPath',
    ]);
  });
});

describe('compareRecords', () => {
  it('ranks by score descending, then createdAt descending, then id ascending', () => {
    const high = record({ id: 'exp-z', gt: 0.5, rank: 0.5 });
    const newer = record({ id: 'exp-z', gt: 0.25, rank: 0.5, createdAt: '2024-01-02T00:00:00.000Z' });
    const lowId = record({ id: 'exp-a', gt: 0.5, rank: 0.25 });
    const highId = record({ id: 'exp-b', gt: 0.75, rank: 0 });
    const shuffled = [highId, lowId, newer, high];
    expect(shuffled.sort(compareRecords)).toEqual([high, newer, lowId, highId]);
  });

  it('compares ids and dates by code unit, not by locale', () => {
    // A locale compare puts "a" before "B"; code units put "B" (0x42) first.
    expect(compareRecords(record({ id: 'exp-B' }), record({ id: 'exp-a' }))).toBeLessThan(0);
    // An astral character is a surrogate pair (0xD83D...), which sorts below U+FF5E by code unit.
    expect(compareRecords(record({ id: 'exp-\u{1F600}' }), record({ id: 'exp-\uFF5E' }))).toBeLessThan(0);
    expect(compareRecords(record({ createdAt: 'b' }), record({ createdAt: 'B' }))).toBeLessThan(0);
  });

  it('returns 0 only for records equal on score, createdAt and id', () => {
    const a = record({ summary32: 'first', gt: 0.75, rank: 0.25 });
    const b = record({ summary32: 'second', gt: 0.5, rank: 0.5 });
    expect(score(a)).toBe(score(b));
    expect(compareRecords(a, b)).toBe(0);
  });

  it('is a total order: antisymmetric and consistent with its keys', () => {
    const arb = fc.record({
      gt: fc.constantFrom(0, 0.25, 0.5, 1, -1),
      rank: fc.constantFrom(0, 0.25, 0.5),
      createdAt: fc.constantFrom('2024-01-01', '2024-01-02', 'B', 'a'),
      id: fc.string({ maxLength: 3, unit: 'binary' }),
    });
    fc.assert(
      fc.property(arb, arb, (x, y) => {
        const a = record(x);
        const b = record(y);
        const ab = Math.sign(compareRecords(a, b));
        expect(ab).toBe(-Math.sign(compareRecords(b, a)) || 0);
        const sameKeys = score(a) === score(b) && a.createdAt === b.createdAt && a.id === b.id;
        expect(ab === 0).toBe(sameKeys);
      }),
    );
  });
});

describe('isExperienceRecord', () => {
  const validRecord = fc.record({
    id: fc.string(),
    runId: fc.string(),
    taskId: fc.string(),
    epoch: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: null }),
    groupId: fc.option(fc.string(), { nil: null }),
    summary32: fc.string(),
    reward: fc.record({ gtScore: fc.double({ noNaN: true, noDefaultInfinity: true }), relativeRank: fc.integer() }),
    toolStats: fc.array(
      fc.record({ tool: fc.string(), tokens: fc.nat(), latencyMs: fc.double({ noNaN: true, noDefaultInfinity: true }), costUsd: fc.double({ noNaN: true, noDefaultInfinity: true }) }),
      { maxLength: 3 },
    ),
    stampSignature: fc.string(),
    domain: fc.string({ minLength: 1 }),
    createdAt: fc.string(),
    manifestPath: fc.string(),
  });
  // Values a broken writer or a hand edit could leave where a field should be.
  const oddValue = fc.constantFrom<unknown>(
    undefined,
    null,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    0,
    -1.5,
    '',
    'x',
    '1',
    true,
    [],
    [1],
    {},
    { tool: 'x' },
  );
  type Mutation = (v: Record<string, unknown>) => unknown;
  const fieldsOf = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});
  const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.constant<Mutation>((v) => v),
    fc.tuple(fc.constantFrom(...Object.keys(validRecord)), oddValue).map(([k, x]): Mutation => (v) => ({ ...v, [k]: x })),
    fc.constantFrom(...Object.keys(validRecord)).map((k): Mutation => (v) => {
      const copy = { ...v };
      delete copy[k];
      return copy;
    }),
    fc.tuple(fc.constantFrom('gtScore', 'relativeRank'), oddValue).map(
      ([k, x]): Mutation => (v) => ({ ...v, reward: { ...fieldsOf(v.reward), [k]: x } }),
    ),
    fc.tuple(fc.constantFrom('tool', 'tokens', 'latencyMs', 'costUsd'), oddValue).map(
      ([k, x]): Mutation => (v) => ({
        ...v,
        toolStats: [...listOf(v.toolStats), { tool: 't', tokens: 1, latencyMs: 1, costUsd: 1, [k]: x }],
      }),
    ),
    oddValue.map((x): Mutation => (v) => ({ ...v, toolStats: [x] })),
    oddValue.map((x): Mutation => (v) => ({ ...v, extra: x })),
    oddValue.map((x): Mutation => () => x),
  );

  it('agrees with ExperienceRecord.safeParse on random near-record values', () => {
    fc.assert(
      fc.property(validRecord, fc.array(mutation, { maxLength: 3 }), (base, mutations) => {
        const value = mutations.reduce<unknown>((v, m) => m(fieldsOf(v)), base);
        expect(isExperienceRecord(value)).toBe(ExperienceRecord.safeParse(value).success);
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts records with unknown extra fields and keeps them', () => {
    const line = JSON.stringify({ ...record(), reviewer: 'kept', reward: { gtScore: 1, relativeRank: 0, bonus: 2 } });
    expect(parseRecordLine(line)).toMatchObject({ reviewer: 'kept', reward: { bonus: 2 } });
  });
});

describe('parseRecordLine', () => {
  it('classifies each line of the basic fixture as fixtures/README.md says', () => {
    const text = readFileSync(new URL('../fixtures/basic/experiences.jsonl', import.meta.url), 'utf8');
    const lines = text.slice(0, text.lastIndexOf('\n')).split('\n').map((l) => l.replace(/\r$/, ''));
    const nonBlank = lines.filter((l) => l.trim() !== '');
    const records = nonBlank.map(parseRecordLine).filter((r) => r !== undefined);
    expect(lines).toHaveLength(15);
    expect(records.map((r) => r.id.slice(-6))).toEqual(['000001', '000002', '000003', '000004', '000005', '000006', '000007']);
    expect(nonBlank.length - records.length).toBe(6);
  });
});

describe('verifyStamp', () => {
  it('accepts exactly 64 hex characters, in either case', () => {
    expect(verifyStamp({ stampSignature: STAMP })).toBe(true);
    expect(verifyStamp({ stampSignature: 'AbCdEf'.padEnd(64, '0') })).toBe(true);
    expect(verifyStamp({ stampSignature: STAMP.slice(1) })).toBe(false);
    expect(verifyStamp({ stampSignature: `${STAMP}0` })).toBe(false);
    expect(verifyStamp({ stampSignature: 'g'.repeat(64) })).toBe(false);
    expect(verifyStamp({ stampSignature: 42 })).toBe(false);
    expect(verifyStamp(null)).toBe(false);
  });
});
