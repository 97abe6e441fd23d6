/**
 * record.ts: the hand-written guards must decide exactly as the zod schemas of
 * src/schemas.ts (the source of truth), checked on random near-valid values;
 * plus what a writer turns an input into, the ranking, and record copies.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExperienceStoreError } from '../src/errors.js';
import {
  compareRecords,
  copyRecord,
  isExperienceInput,
  isExperienceRecord,
  MAX_TASK_ID_BYTES,
  newRecordId,
  normalizeInput,
  parseRecordLine,
  score,
  validateBatch,
  verifyStamp,
  type ExperienceInput,
  type ExperienceRecord,
} from '../src/record.js';
import * as schemas from '../src/schemas.js';
import { makeInput, makeRecord, STAMP } from './support/inputs.js';

const NOW = new Date('2024-05-01T12:34:56.789Z');

async function normalize(overrides: Partial<ExperienceInput>, maxSummaryWords = 32): Promise<ExperienceRecord> {
  const [valid] = await validateBatch([makeInput(overrides)]);
  return normalizeInput(valid!, { maxSummaryWords, now: NOW, manifestPath: 'runs/m.json' });
}

/** The EXP_INVALID_INPUT error validateBatch rejects `inputs` with. */
async function rejection(inputs: unknown): Promise<ExperienceStoreError> {
  const err = await validateBatch(inputs).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ExperienceStoreError);
  expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
  return err as ExperienceStoreError;
}

function record(overrides: Partial<ExperienceRecord> & { gt?: number; rank?: number } = {}): ExperienceRecord {
  const { gt = 0.5, rank = 0, ...rest } = overrides;
  return makeRecord({ id: 'exp-1-000000', summary32: 's', reward: { gtScore: gt, relativeRank: rank }, ...rest });
}

// Values a broken writer, a hand edit or a careless caller could leave where a field should be.
class Box {
  tool = 'x';
}
const oddValue = fc.constantFrom<unknown>(
  undefined,
  null,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  0,
  -0,
  -1.5,
  '',
  ' ',
  'x',
  '1',
  true,
  [],
  [1],
  {},
  { tool: 'x' },
  new Date(0),
  new Box(),
  Object.create(null),
  Object.create({ gtScore: 1, relativeRank: 2 }),
  new String('x'),
  1n,
);

type Mutation = (v: Record<string, unknown>) => unknown;
const fieldsOf = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});
const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Mutations of one near-valid value: odd or missing fields, at the top, in `reward` and in a tool stat. */
function mutations(fields: string[], rewardFields: string[], statFields: string[], fieldValue: fc.Arbitrary<unknown>): fc.Arbitrary<Mutation> {
  return fc.oneof(
    fc.constant<Mutation>((v) => v),
    fc.tuple(fc.constantFrom(...fields), fieldValue).map(([k, x]): Mutation => (v) => ({ ...v, [k]: x })),
    fc.constantFrom(...fields).map((k): Mutation => (v) => {
      const copy = { ...v };
      delete copy[k];
      return copy;
    }),
    fc.tuple(fc.constantFrom(...rewardFields), fieldValue).map(([k, x]): Mutation => (v) => ({ ...v, reward: { ...fieldsOf(v.reward), [k]: x } })),
    fc.constantFrom(...rewardFields).map((k): Mutation => (v) => {
      const reward = { ...fieldsOf(v.reward) };
      delete reward[k];
      return { ...v, reward };
    }),
    fc.tuple(fc.constantFrom(...statFields), fieldValue).map(([k, x]): Mutation => (v) => ({
      ...v,
      toolStats: [...listOf(v.toolStats), { tool: 't', tokens: 1, latencyMs: 1, costUsd: 1, [k]: x }],
    })),
    fieldValue.map((x): Mutation => (v) => ({ ...v, toolStats: [x] })),
    fieldValue.map((x): Mutation => (v) => ({ ...v, extra: x })),
    oddValue.map((x): Mutation => () => x),
  );
}

const anyDouble = fc.double();
const finiteDouble = fc.double({ noNaN: true, noDefaultInfinity: true });
const RECORD_FIELDS = ['id', 'runId', 'taskId', 'epoch', 'groupId', 'summary32', 'reward', 'toolStats', 'stampSignature', 'domain', 'createdAt', 'manifestPath'];
const INPUT_FIELDS = ['runId', 'taskId', 'epoch', 'groupId', 'summary', 'reward', 'toolStats', 'stampSignature', 'domain'];
const STAT_FIELDS = ['tool', 'tokens', 'latencyMs', 'costUsd'];

describe('isExperienceRecord', () => {
  const validRecord = fc.record({
    id: fc.string(),
    runId: fc.string(),
    taskId: fc.string(),
    epoch: fc.option(finiteDouble, { nil: null }),
    groupId: fc.option(fc.string(), { nil: null }),
    summary32: fc.string(),
    reward: fc.record({ gtScore: finiteDouble, relativeRank: fc.integer() }),
    toolStats: fc.array(fc.record({ tool: fc.string(), tokens: fc.nat(), latencyMs: finiteDouble, costUsd: finiteDouble }), { maxLength: 3 }),
    stampSignature: fc.string(),
    domain: fc.string({ minLength: 1 }),
    createdAt: fc.string(),
    manifestPath: fc.string(),
  });

  it('agrees with the zod schema ExperienceRecord on random near-record values', () => {
    const mutation = mutations(RECORD_FIELDS, ['gtScore', 'relativeRank'], STAT_FIELDS, oddValue);
    fc.assert(
      fc.property(validRecord, fc.array(mutation, { maxLength: 3 }), (base, ms) => {
        const value = ms.reduce<unknown>((v, m) => m(fieldsOf(v)), base);
        expect(isExperienceRecord(value)).toBe(schemas.ExperienceRecord.safeParse(value).success);
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts unknown extra fields, also inside reward and tool stats, and keeps them', () => {
    const line = JSON.stringify({ ...record(), reviewer: 'kept', reward: { gtScore: 1, relativeRank: 0, bonus: 2 }, toolStats: [{ tool: 't', tokens: 1, latencyMs: 1, costUsd: 1, model: 'm' }] });
    expect(parseRecordLine(line)).toMatchObject({ reviewer: 'kept', reward: { bonus: 2 }, toolStats: [{ model: 'm' }] });
  });

  it('rejects an empty domain but not a blank one (log lines are checked for types only)', () => {
    expect(isExperienceRecord(record({ domain: '' }))).toBe(false);
    expect(isExperienceRecord(record({ domain: ' ' }))).toBe(true);
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

  it('never throws on lines JSON.parse accepts: 100,000-deep nesting, huge numbers, a long string', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const base = JSON.stringify(record()).slice(0, -1);
    expect(parseRecordLine(`${base},"deep":${deep}}`)?.id).toBe('exp-1-000000');
    expect(parseRecordLine(deep)).toBeUndefined();
    expect(parseRecordLine(`${base},"reward":{"gtScore":1e309,"relativeRank":0}}`)).toBeUndefined(); // Infinity is not a record
    expect(parseRecordLine(`${base},"reward":{"gtScore":1e308,"relativeRank":0}}`)?.reward.gtScore).toBe(1e308);
    expect(parseRecordLine(`${base},"summary32":"${'x'.repeat(1 << 20)}"}`)?.summary32).toHaveLength(1 << 20);
    expect(parseRecordLine('{"id":')).toBeUndefined();
  });
});

// Task ids around every rule: separators, dots, control and reserved characters, and the 128-byte limit.
const taskIdArb = fc.oneof(
  fc.constantFrom(
    'task-a',
    'a.b',
    'a..b',
    ' ',
    '',
    '.',
    '..',
    '.hidden',
    'a/b',
    '/',
    'a\\b',
    'a\u0000b',
    'a\u001fb',
    'a\u007f',
    'a\nb',
    'a\u0080b', // C1, not a control character by the rule
    ...'<>:"|?*'.split('').map((c) => `a${c}b`),
    'a'.repeat(MAX_TASK_ID_BYTES),
    'a'.repeat(MAX_TASK_ID_BYTES + 1),
    'é'.repeat(64), // 128 bytes
    'é'.repeat(65), // 65 characters, 130 bytes
    '🚀'.repeat(32), // 64 UTF-16 units, 128 bytes
    '🚀'.repeat(33),
    '修'.repeat(42), // 126 bytes
    '修'.repeat(43), // 129 bytes
  ),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
);

const stampArb = fc.oneof(
  fc.constant(STAMP),
  fc.constant('AbCdEf'.padEnd(64, '0')),
  fc.constant(STAMP.slice(1)),
  fc.constant(`${STAMP}0`),
  fc.constant(`${'g'}${STAMP.slice(1)}`),
  fc.constant(` ${STAMP.slice(1)}`),
  fc.constant(''),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEFx'), minLength: 62, maxLength: 66 }),
);

describe('isExperienceInput', () => {
  // Inputs may carry NaN and ±Infinity (normalizeInput makes them 0): every double is valid here.
  const validInput = fc.record({
    runId: fc.string(),
    taskId: fc.oneof({ arbitrary: fc.constantFrom('task-a', 'é'.repeat(64), 'a.b'), weight: 3 }, { arbitrary: taskIdArb, weight: 1 }),
    epoch: fc.option(anyDouble, { nil: null }),
    groupId: fc.option(fc.string(), { nil: null }),
    summary: fc.string(),
    reward: fc.record({ gtScore: anyDouble, relativeRank: anyDouble }),
    toolStats: fc.array(fc.record({ tool: fc.string(), tokens: anyDouble, latencyMs: anyDouble, costUsd: anyDouble }), { maxLength: 3 }),
    stampSignature: fc.oneof({ arbitrary: fc.constant(STAMP), weight: 4 }, { arbitrary: stampArb, weight: 1 }),
    domain: fc.constantFrom('implementation', ' review ', 'x', 'y', '', ' ', '\t\n'),
  });
  const fieldValue = fc.oneof(oddValue, taskIdArb, stampArb);
  const mutation = mutations(INPUT_FIELDS, ['gtScore', 'relativeRank'], STAT_FIELDS, fieldValue);
  const nearInput = fc.tuple(validInput, fc.array(mutation, { maxLength: 3 })).map(([base, ms]) => ms.reduce<unknown>((v, m) => m(fieldsOf(v)), base));

  it('agrees with ExperienceInput.safeParse of the zod schema on random near-input values', () => {
    fc.assert(
      fc.property(nearInput, (value) => {
        expect(isExperienceInput(value)).toBe(schemas.ExperienceInput.safeParse(value).success);
      }),
      { numRuns: 4000 },
    );
  });

  it('is what validateBatch goes by: it accepts what the guard accepts, else names a field of the bad input', async () => {
    await fc.assert(
      fc.asyncProperty(nearInput, async (value) => {
        const taskId = fieldsOf(value).taskId;
        const batch = [makeInput(typeof taskId === 'string' ? { taskId } : {}), value];
        const at = isExperienceInput(batch[0]) ? 1 : 0;
        if (at === 1 && isExperienceInput(value)) {
          await expect(validateBatch(batch)).resolves.toEqual(batch);
        } else {
          const err = await rejection(batch);
          expect(err.message.startsWith(`inputs[${at}]`), err.message).toBe(true);
          expect(err.message).toMatch(/; nothing was written$/);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('validateBatch', () => {
  it('names the field and its problem, with code EXP_INVALID_INPUT', async () => {
    const err = await rejection([makeInput(), makeInput({ stampSignature: STAMP.slice(1) })]);
    expect(err.message).toBe('inputs[1].stampSignature must be 64 hex characters, got 63 character(s); nothing was written');
    expect((await rejection([makeInput({ stampSignature: '' })])).message).toMatch(/^inputs\[0\]\.stampSignature must be 64 hex characters, got an empty string/);
  });

  it.each<[string, Partial<Record<keyof ExperienceInput, unknown>>, RegExp]>([
    ['a nested tool stat field', { toolStats: [{ tool: 't', tokens: 'many', latencyMs: 1, costUsd: 1 }] }, /^inputs\[0\]\.toolStats\[0\]\.tokens must be a number/],
    ['a reward field', { reward: { gtScore: 1 } }, /^inputs\[0\]\.reward\.relativeRank /],
    ['a blank domain', { domain: ' \t' }, /^inputs\[0\]\.domain must not be empty/],
    ['an epoch of the wrong type', { epoch: '3' }, /^inputs\[0\]\.epoch must be a number or null/],
    ['a groupId of the wrong type', { groupId: 5 }, /^inputs\[0\]\.groupId must be a string or null/],
    ['a missing runId', { runId: undefined }, /^inputs\[0\]\.runId must be a string/],
  ])('names %s', async (_what, overrides, message) => {
    expect((await rejection([{ ...makeInput(), ...overrides }])).message).toMatch(message);
  });

  it.each([
    ['', /must not be empty/],
    ['a/b', /slash/],
    ['a\\b', /slash/],
    ['.hidden', /must not start with "."/],
    ['..', /must not start with "."/],
    ['a\u0001b', /control characters/],
    ['a\u007fb', /control characters/],
    ...'<>:"|?*'.split('').map((c): [string, RegExp] => [`a${c}b`, /any of < > : " \| \? \*/]),
  ])('rejects the taskId %j, naming inputs[0].taskId', async (taskId, problem) => {
    const err = await rejection([makeInput({ taskId: taskId as string })]);
    expect(err.message).toMatch(/^inputs\[0\]\.taskId /);
    expect(err.message).toMatch(problem as RegExp);
  });

  it('counts a taskId in UTF-8 bytes: 128 are fine, more are rejected even in fewer characters', async () => {
    for (const taskId of ['a'.repeat(128), 'é'.repeat(64), '🚀'.repeat(32)]) {
      await expect(validateBatch([makeInput({ taskId })])).resolves.toHaveLength(1);
    }
    for (const [taskId, bytes] of [['a'.repeat(129), 129], ['é'.repeat(65), 130], ['🚀'.repeat(33), 132]] as const) {
      const err = await rejection([makeInput({ taskId })]);
      expect(err.message).toMatch(new RegExp(`^inputs\\[0\\]\\.taskId must be at most 128 UTF-8 bytes, got ${bytes};`));
    }
  });

  it('rejects a batch whose taskIds differ, naming both', async () => {
    const err = await rejection([makeInput(), makeInput(), makeInput({ taskId: 'task-b' })]);
    expect(err.message).toMatch(/^inputs\[2\]\.taskId is "task-b" but inputs\[0\]\.taskId is "task-a"/);
  });

  it('rejects what is not an array of objects', async () => {
    expect((await rejection('nope')).message).toMatch(/^inputs must be an array/);
    expect((await rejection([makeInput(), null])).message).toMatch(/^inputs\[1\] must be an object/);
    expect((await rejection([[makeInput()]])).message).toMatch(/^inputs\[0\] must be an object/);
  });

  it('accepts NaN and infinite numbers, and resolves to the inputs themselves; [] for an empty batch', async () => {
    const input = makeInput({ epoch: Number.NaN, reward: { gtScore: Number.POSITIVE_INFINITY, relativeRank: Number.NaN } });
    const valid = await validateBatch([input]);
    expect(valid[0]).toBe(input);
    await expect(validateBatch([])).resolves.toEqual([]);
  });
});

describe('normalizeInput', () => {
  it('cuts the summary to maxSummaryWords words and collapses every kind of whitespace to one space', async () => {
    expect((await normalize({ summary: '  one\ttwo\n\nthree \u00a0 four\r\nfive  six  ' }, 4)).summary32).toBe('one two three four');
    expect((await normalize({ summary: ' 修复 了  上传器 🚀 ' })).summary32).toBe('修复 了 上传器 🚀');
    expect((await normalize({ summary: ' \t\n ' })).summary32).toBe('');
  });

  it('turns non-finite reward and toolStats numbers into 0, -0 into 0, and keeps finite ones', async () => {
    const r = await normalize({
      reward: { gtScore: Number.NaN, relativeRank: -0 },
      toolStats: [
        { tool: 'a', tokens: Number.NEGATIVE_INFINITY, latencyMs: Number.NaN, costUsd: Number.POSITIVE_INFINITY },
        { tool: 'b', tokens: -0, latencyMs: -1.5, costUsd: 0.25 },
      ],
    });
    expect(r.reward).toEqual({ gtScore: 0, relativeRank: 0 });
    expect(Object.is(r.reward.relativeRank, 0)).toBe(true);
    expect(Object.is(r.toolStats[1]!.tokens, 0)).toBe(true);
    expect(r.toolStats).toEqual([
      { tool: 'a', tokens: 0, latencyMs: 0, costUsd: 0 },
      { tool: 'b', tokens: 0, latencyMs: -1.5, costUsd: 0.25 },
    ]);
    expect(isExperienceRecord(JSON.parse(JSON.stringify(r)))).toBe(true);
  });

  it('turns a non-finite epoch into null and -0 into 0, and keeps 0 and null', async () => {
    expect((await normalize({ epoch: Number.NaN })).epoch).toBeNull();
    expect((await normalize({ epoch: Number.NEGATIVE_INFINITY })).epoch).toBeNull();
    expect(Object.is((await normalize({ epoch: -0 })).epoch, 0)).toBe(true);
    expect((await normalize({ epoch: null })).epoch).toBeNull();
  });

  it('trims the domain', async () => {
    expect((await normalize({ domain: '  review\t' })).domain).toBe('review');
  });

  it('writes exactly the fields existing logs hold, in their order, from the clock and the manifest path', async () => {
    const r = await normalize({ groupId: 'g' });
    expect(Object.keys(r)).toEqual(['id', 'runId', 'taskId', 'epoch', 'groupId', 'summary32', 'reward', 'toolStats', 'stampSignature', 'domain', 'createdAt', 'manifestPath']);
    expect(r.id.split('-')[1]).toBe(NOW.getTime().toString(36));
    expect([r.createdAt, r.manifestPath, r.groupId]).toEqual(['2024-05-01T12:34:56.789Z', 'runs/m.json', 'g']);
  });
});

describe('newRecordId', () => {
  it('is exp-<base36 ms>-<6 hex>, and differs between calls', () => {
    const ids = new Set(Array.from({ length: 200 }, () => newRecordId(NOW)));
    for (const id of ids) expect(id).toMatch(new RegExp(`^exp-${NOW.getTime().toString(36)}-[0-9a-f]{6}$`));
    expect(ids.size).toBeGreaterThan(190);
    expect(newRecordId(new Date(0))).toMatch(/^exp-0-[0-9a-f]{6}$/);
  });
});

/** Walk two JSON trees without recursion: equal values, and no object shared between them. */
function expectEqualAndIndependent(copy: unknown, original: unknown): void {
  const stack: Array<[unknown, unknown, number]> = [[copy, original, 0]];
  let nodes = 0;
  while (stack.length > 0) {
    const [a, b, depth] = stack.pop()!;
    nodes++;
    if (typeof b !== 'object' || b === null) {
      if (!Object.is(a, b)) throw new Error(`values differ at depth ${depth}`);
      continue;
    }
    if (typeof a !== 'object' || a === null || Array.isArray(a) !== Array.isArray(b)) throw new Error(`kinds differ at depth ${depth}`);
    if (a === b) throw new Error(`object shared at depth ${depth}`);
    if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) throw new Error(`prototypes differ at depth ${depth}`);
    const keys = Object.keys(b);
    if (Object.keys(a).join('\u0000') !== keys.join('\u0000')) throw new Error(`keys differ at depth ${depth}`);
    for (const key of keys) stack.push([(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], depth + 1]);
  }
  expect(nodes).toBeGreaterThan(1);
}

describe('copyRecord', () => {
  it('returns an equal copy the caller may change without touching the original', () => {
    const original = record({ toolStats: [{ tool: 't', tokens: 1, latencyMs: 2, costUsd: 3 }], reviewer: { name: 'kept' } } as Partial<ExperienceRecord>);
    const raw = JSON.stringify(original);
    const copy = copyRecord(original, raw);
    expect(copy).toEqual(original);
    expectEqualAndIndependent(copy, original);
    copy.reward.gtScore = 99;
    copy.toolStats[0]!.tool = 'changed';
    (copy.reviewer as { name: string }).name = 'changed';
    expect(JSON.stringify(original)).toBe(raw);
  });

  it('copies a record with a 100,000-deep field exactly, without recursing through it', () => {
    const raw = `${JSON.stringify(record()).slice(0, -1)},"deep":${'['.repeat(100_000)}{"leaf":-0}${']'.repeat(100_000)}}`;
    const original = JSON.parse(raw) as ExperienceRecord;
    expectEqualAndIndependent(copyRecord(original, raw), original);
  });

  it('copies nesting around the depth where it switches to re-parsing exactly', () => {
    for (const pairs of [14, 15, 16, 17, 18]) {
      const raw = `${JSON.stringify(record()).slice(0, -1)},"nest":${'{"a":['.repeat(pairs)}1${']}'.repeat(pairs)}}`;
      const original = JSON.parse(raw) as ExperienceRecord;
      expectEqualAndIndependent(copyRecord(original, raw), original);
    }
  });

  it('keeps an own "__proto__" key as an own key, at the top and nested, without changing the prototype', () => {
    const raw = `${JSON.stringify({ ...record(), reward: undefined }).slice(0, -1)},"__proto__":{"polluted":true},"reward":{"gtScore":1,"relativeRank":0,"__proto__":[1]}}`;
    const original = JSON.parse(raw) as ExperienceRecord;
    const copy = copyRecord(original, raw);
    expect(Object.hasOwn(copy, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect((copy as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(copy.reward, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(copy.reward)).toBe(Object.prototype);
    expectEqualAndIndependent(copy, original);
    expect(JSON.stringify(copy)).toBe(raw);
  });
});

describe('compareRecords', () => {
  it('ranks by score descending, then createdAt descending, then id ascending', () => {
    const high = record({ id: 'exp-z', gt: 0.5, rank: 0.5 });
    const newer = record({ id: 'exp-z', gt: 0.25, rank: 0.5, createdAt: '2024-01-02T00:00:00.000Z' });
    const lowId = record({ id: 'exp-a', gt: 0.5, rank: 0.25 });
    const highId = record({ id: 'exp-b', gt: 0.75, rank: 0 });
    expect([highId, lowId, newer, high].sort(compareRecords)).toEqual([high, newer, lowId, highId]);
  });

  it('compares ids and dates by code unit, not by locale', () => {
    expect(compareRecords(record({ id: 'exp-B' }), record({ id: 'exp-a' }))).toBeLessThan(0);
    // An astral character is a surrogate pair (0xD83D...), which sorts below U+FF5E by code unit.
    expect(compareRecords(record({ id: 'exp-\u{1F600}' }), record({ id: 'exp-\uFF5E' }))).toBeLessThan(0);
    expect(compareRecords(record({ createdAt: 'b' }), record({ createdAt: 'B' }))).toBeLessThan(0);
  });

  it('returns 0 only for records equal on score, createdAt and id, whatever else differs', () => {
    const a = record({ summary32: 'first', gt: 0.75, rank: 0.25, runId: 'x' });
    const b = record({ summary32: 'second', gt: 0.5, rank: 0.5, runId: 'y' });
    expect(score(a)).toBe(score(b));
    expect(compareRecords(a, b)).toBe(0);
    // Scores that tie only after rounding to 6 decimals are not a tie here.
    expect(compareRecords(record({ gt: 0.1234564 }), record({ gt: 0.1234561 }))).toBeLessThan(0);
  });

  it('is a total order: antisymmetric, transitive and consistent with its keys', () => {
    const arb = fc.record({
      gt: fc.constantFrom(0, 0.25, 0.5, 1, -1, 0.1234564, 0.1234561),
      rank: fc.constantFrom(0, 0.25, 0.5),
      createdAt: fc.constantFrom('2024-01-01', '2024-01-02', 'B', 'a'),
      id: fc.string({ maxLength: 3, unit: 'binary' }),
    });
    fc.assert(
      fc.property(arb, arb, arb, (x, y, z) => {
        const [a, b, c] = [record(x), record(y), record(z)];
        const ab = Math.sign(compareRecords(a, b));
        expect(ab).toBe(-Math.sign(compareRecords(b, a)) || 0);
        expect(ab === 0).toBe(score(a) === score(b) && a.createdAt === b.createdAt && a.id === b.id);
        if (ab <= 0 && compareRecords(b, c) <= 0) expect(compareRecords(a, c)).toBeLessThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('verifyStamp', () => {
  it('accepts exactly 64 hex characters, in either case', () => {
    expect(verifyStamp({ stampSignature: STAMP })).toBe(true);
    expect(verifyStamp({ stampSignature: 'AbCdEf'.padEnd(64, '0') })).toBe(true);
    expect(verifyStamp({ stampSignature: STAMP.slice(1) })).toBe(false);
    expect(verifyStamp({ stampSignature: `${STAMP}0` })).toBe(false);
    expect(verifyStamp({ stampSignature: `${STAMP}\n` })).toBe(false);
    expect(verifyStamp({ stampSignature: 'g'.repeat(64) })).toBe(false);
    expect(verifyStamp({ stampSignature: 42 })).toBe(false);
    expect(verifyStamp(null)).toBe(false);
  });
});
