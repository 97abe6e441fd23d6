import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore, type ExperienceInput } from '../src/index.js';
import { makeInput, STAMP } from './support/inputs.js';
import { test } from './support/temp-dir.js';

function storeIn(dir: string): ExperienceStore {
  return new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') });
}

/** Every file under dir with the sha256 of its bytes: what "nothing was written" means. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = createHash('sha256').update(readFileSync(file)).digest('hex');
  }
  return out;
}

/** The error a call rejects with; fails the test when it resolves. */
async function rejection(call: () => Promise<unknown>): Promise<any> {
  try {
    await call();
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to reject');
}

/** A store with one valid batch already written, so both the log and the index exist. */
async function seeded(dir: string): Promise<{ store: ExperienceStore; before: Record<string, string> }> {
  const store = storeIn(dir);
  await store.recordBatch([makeInput(), makeInput({ domain: 'review' })], 'manifest.json');
  const before = snapshot(dir);
  expect(Object.keys(before).sort()).toEqual([
    path.join('out', 'task-a', 'experiences.jsonl'),
    path.join('out', 'task-a', 'experiences.top.json'),
  ]);
  return { store, before };
}

const BAD_TASK_IDS: Array<[string, string]> = [
  ['empty', ''],
  ['a slash', 'a/b'],
  ['a backslash', 'a\\b'],
  ['a leading dot', '.hidden'],
  ['dot-dot', '..'],
  ['a control character', 'a\u0001b'],
  ['a newline', 'a\nb'],
  ...[...'<>:"|?*'].map((c): [string, string] => [`"${c}"`, `a${c}b`]),
];

/** A field set to a value, or removed when the value is `undefined`. */
function withField(field: string, value: unknown): ExperienceInput {
  const input: Record<string, unknown> = { ...makeInput() };
  if (value === undefined) delete input[field];
  else input[field] = value;
  return input as unknown as ExperienceInput;
}

const tool = (overrides: Record<string, unknown>) => ({ tool: 'shell', tokens: 1, latencyMs: 1, costUsd: 1, ...overrides });

// [what is wrong, the bad second input of a batch, the field the message must name]
const BAD_SECOND_INPUT: Array<[string, unknown, string]> = [
  ['a taskId differing from inputs[0]', makeInput({ taskId: 'task-b' }), 'inputs[1].taskId'],
  ...BAD_TASK_IDS.map(([what, taskId]): [string, unknown, string] => [`a taskId with ${what}`, makeInput({ taskId }), 'inputs[1].taskId']),
  ['a stampSignature of 63 hex', makeInput({ stampSignature: STAMP.slice(1) }), 'inputs[1].stampSignature'],
  ['a stampSignature of 65 hex', makeInput({ stampSignature: `${STAMP}a` }), 'inputs[1].stampSignature'],
  ['a stampSignature that is not hex', makeInput({ stampSignature: 'g'.repeat(64) }), 'inputs[1].stampSignature'],
  ['an empty stampSignature', makeInput({ stampSignature: '' }), 'inputs[1].stampSignature'],
  ['an empty domain', makeInput({ domain: '' }), 'inputs[1].domain'],
  ['a blank domain', makeInput({ domain: ' \t ' }), 'inputs[1].domain'],
  ['runId as a number', withField('runId', 5), 'inputs[1].runId'],
  ['runId missing', withField('runId', undefined), 'inputs[1].runId'],
  ['taskId as a number', withField('taskId', 5), 'inputs[1].taskId'],
  ['epoch as a string', withField('epoch', '1'), 'inputs[1].epoch'],
  ['epoch missing', withField('epoch', undefined), 'inputs[1].epoch'],
  ['groupId as a number', withField('groupId', 5), 'inputs[1].groupId'],
  ['summary as null', withField('summary', null), 'inputs[1].summary'],
  ['reward as null', withField('reward', null), 'inputs[1].reward'],
  ['reward as a number', withField('reward', 1), 'inputs[1].reward'],
  ['reward.gtScore as a string', withField('reward', { gtScore: '1', relativeRank: 0 }), 'inputs[1].reward.gtScore'],
  ['reward.relativeRank missing', withField('reward', { gtScore: 1 }), 'inputs[1].reward.relativeRank'],
  ['toolStats as an object', withField('toolStats', {}), 'inputs[1].toolStats'],
  ['toolStats missing', withField('toolStats', undefined), 'inputs[1].toolStats'],
  ['a toolStats entry as null', withField('toolStats', [tool({}), null]), 'inputs[1].toolStats[1]'],
  ['toolStats[0].tool as a number', withField('toolStats', [tool({ tool: 5 })]), 'inputs[1].toolStats[0].tool'],
  ['toolStats[0].tokens as a string', withField('toolStats', [tool({ tokens: '120' })]), 'inputs[1].toolStats[0].tokens'],
  ['toolStats[0].latencyMs as null', withField('toolStats', [tool({ latencyMs: null })]), 'inputs[1].toolStats[0].latencyMs'],
  ['toolStats[0].costUsd missing', withField('toolStats', [{ tool: 'shell', tokens: 1, latencyMs: 1 }]), 'inputs[1].toolStats[0].costUsd'],
  ['stampSignature as a number', withField('stampSignature', 5), 'inputs[1].stampSignature'],
  ['domain as an array', withField('domain', ['implementation']), 'inputs[1].domain'],
  ['an input that is null', null, 'inputs[1]'],
  ['an input that is an array', [makeInput()], 'inputs[1]'],
  ['an input that is a string', 'experience', 'inputs[1]'],
];

describe('recordBatch rejects bad input and writes nothing', () => {
  test.for(BAD_SECOND_INPUT)('rejects %s', async ([, bad, field], { dir }) => {
    const { store, before } = await seeded(dir);
    const batch = [makeInput({ runId: 'valid-first' }), bad, makeInput({ runId: 'valid-last' })] as ExperienceInput[];
    const err = await rejection(() => store.recordBatch(batch, 'manifest.json'));
    expect(err.code).toBe('EXP_INVALID_INPUT');
    expect(err.message.startsWith(`${field} `), err.message).toBe(true);
    expect(snapshot(dir)).toEqual(before);
  });

  test.for([
    ['a string', 'not an array'],
    ['an object', { 0: makeInput(), length: 1 }],
    ['null', null],
    ['undefined', undefined],
  ] as Array<[string, unknown]>)('rejects inputs that are %s', async ([, inputs], { dir }) => {
    const { store, before } = await seeded(dir);
    const err = await rejection(() => store.recordBatch(inputs as ExperienceInput[], 'manifest.json'));
    expect(err.code).toBe('EXP_INVALID_INPUT');
    expect(err.message).toMatch(/^inputs must be an array/);
    expect(snapshot(dir)).toEqual(before);
  });

  test('rejects a manifestPath that is not a string', async ({ dir }) => {
    const { store, before } = await seeded(dir);
    const err = await rejection(() => store.recordBatch([makeInput()], 42 as unknown as string));
    expect(err.code).toBe('EXP_INVALID_INPUT');
    expect(err.message).toMatch(/^manifestPath /);
    expect(snapshot(dir)).toEqual(before);
  });

  test('names the problem and says nothing was written', async ({ dir }) => {
    const { store } = await seeded(dir);
    const err = await rejection(() => store.recordBatch([makeInput({ stampSignature: STAMP.slice(1) })], 'm.json'));
    expect(err.message).toBe('inputs[0].stampSignature must be 64 hex characters, got 63 character(s); nothing was written');
  });

  test('creates no directory for the task of a rejected first input', async ({ dir }) => {
    const { store, before } = await seeded(dir);
    await rejection(() => store.recordBatch([makeInput({ taskId: 'task-new' }), makeInput({ taskId: 'task-a' })], 'm.json'));
    await rejection(() => store.recordBatch([makeInput({ taskId: 'task-new', domain: '' })], 'm.json'));
    expect(readdirSync(path.join(dir, 'out'))).toEqual(['task-a']);
    expect(snapshot(dir)).toEqual(before);
  });

  test('writes an empty batch as nothing at all', async ({ dir }) => {
    const { store, before } = await seeded(dir);
    await expect(store.recordBatch([], 'm.json')).resolves.toEqual([]);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('fetchTop and rebuildIndex reject a bad taskId', () => {
  test.for(BAD_TASK_IDS)('rejects a query taskId with %s', async ([, taskId], { dir }) => {
    const { store, before } = await seeded(dir);
    const err = await rejection(() => store.fetchTop({ domain: 'implementation', limit: 5, taskId }));
    expect(err.code).toBe('EXP_INVALID_INPUT');
    expect(err.message).toMatch(/^query\.taskId /);
    const rebuild = await rejection(() => store.rebuildIndex(taskId));
    expect(rebuild.code).toBe('EXP_INVALID_INPUT');
    expect(snapshot(dir)).toEqual(before);
  });

  test.for([
    ['a taskId that is not a string', { domain: 'd', limit: 1, taskId: 5 }, /^query\.taskId /],
    ['a domain that is not a string', { domain: 5, limit: 1 }, /^query\.domain /],
    ['a limit that is not a number', { domain: 'd', limit: '5' }, /^query\.limit /],
    ['a limit that is NaN', { domain: 'd', limit: Number.NaN }, /^query\.limit /],
    ['a minReward that is not a number', { domain: 'd', limit: 1, minReward: '0.5' }, /^query\.minReward /],
    ['a query that is null', null, /^query /],
  ] as Array<[string, unknown, RegExp]>)('rejects %s', async ([, q, message], { dir }) => {
    const err = await rejection(() => storeIn(dir).fetchTop(q as never));
    expect(err.code).toBe('EXP_INVALID_INPUT');
    expect(err.message).toMatch(message);
  });
});
