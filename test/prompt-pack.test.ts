import { describe, expect, it } from 'vitest';
import {
  collectPromptPackExperiences,
  ExperienceStore,
  ExperienceStoreError,
  formatExperienceInjections,
  type ExperienceRecord,
  type ExperienceSource,
  type FetchQuery,
  type FetchResult,
  type PromptPack,
} from '../src/index.js';
import { makeInput, makeRecord } from './support/inputs.js';
import { test } from './support/temp-dir.js';

function record(overrides: Partial<ExperienceRecord> = {}): ExperienceRecord {
  return makeRecord({
    id: 'exp-lq2x3k-a1b2c3',
    runId: 'run-1',
    taskId: 'task-a',
    epoch: 3,
    summary32: 'Replaced the retry loop with exponential backoff',
    reward: { gtScore: 0.9, relativeRank: 0.6 },
    toolStats: [{ tool: 'shell', tokens: 1840, latencyMs: 2310.4, costUsd: 0.0121 }],
    domain: 'implementation',
    createdAt: '2024-05-01T12:00:00.000Z',
    ...overrides,
  });
}

describe('formatExperienceInjections', () => {
  it('formats a record exactly as the older orchestrator did', () => {
    expect(formatExperienceInjections([record()], 1)).toEqual([
      '[exp exp-lq2x3k-a1b2c3 | epoch 3 | reward 1.50] Replaced the retry loop with exponential backoff ' +
        '(stats: shell: 1840t/0.012usd/2310ms)',
    ]);
  });

  it('joins several tools with "; " in the order they were recorded', () => {
    const r = record({
      toolStats: [
        { tool: 'search', tokens: 12, latencyMs: 99.5, costUsd: 0.0125 },
        { tool: 'shell', tokens: 0, latencyMs: 0, costUsd: 0 },
        { tool: 'edit', tokens: 7.5, latencyMs: -2.5, costUsd: 1.2345 },
      ],
    });
    expect(formatExperienceInjections([r], 1)[0]).toBe(
      '[exp exp-lq2x3k-a1b2c3 | epoch 3 | reward 1.50] Replaced the retry loop with exponential backoff ' +
        '(stats: search: 12t/0.013usd/100ms; shell: 0t/0.000usd/0ms; edit: 7.5t/1.234usd/-2ms)',
    );
  });

  it('writes "(stats: )" for a record without tool stats', () => {
    expect(formatExperienceInjections([record({ toolStats: [] })], 1)).toEqual([
      '[exp exp-lq2x3k-a1b2c3 | epoch 3 | reward 1.50] Replaced the retry loop with exponential backoff (stats: )',
    ]);
  });

  it('writes "epoch n/a" for a null epoch and keeps epoch 0 as 0', () => {
    const [none, zero] = formatExperienceInjections([record({ epoch: null }), record({ epoch: 0 })], 2);
    expect(none).toContain('| epoch n/a |');
    expect(zero).toContain('| epoch 0 |');
  });

  it('rounds the score with toFixed(2) of gtScore + relativeRank, as floating point gives it', () => {
    const reward = (gtScore: number, relativeRank: number) =>
      formatExperienceInjections([record({ reward: { gtScore, relativeRank } })], 1)[0]!.match(/\| reward (\S+)\]/)![1];
    expect(reward(2.345, 0)).toBe('2.35');
    // 2 + 0.345 is 2.3449999999999998 in binary floating point.
    expect(reward(2, 0.345)).toBe('2.34');
    expect(reward(1, 0)).toBe('1.00');
    expect(reward(-1, 0.25)).toBe('-0.75');
    // toFixed rounds a negative tie away from zero (Math.round would give -0.12).
    expect(reward(-0.125, 0)).toBe('-0.13');
  });

  it('formats only the first `slots` records, in the order given', () => {
    const records = ['a', 'b', 'c'].map((id) => record({ id }));
    expect(formatExperienceInjections(records, 2).map((line) => line.slice(0, 6))).toEqual(['[exp a', '[exp b']);
    expect(formatExperienceInjections(records, 5)).toHaveLength(3);
    expect(formatExperienceInjections(records, 0)).toEqual([]);
    expect(formatExperienceInjections(records, -1)).toEqual([]);
    expect(formatExperienceInjections([], 3)).toEqual([]);
  });
});

/** A store wrapper that records every query it forwards. */
function counting(store: ExperienceSource): ExperienceSource & { queries: FetchQuery[] } {
  const queries: FetchQuery[] = [];
  return {
    queries,
    fetchTopDetailed: (query) => {
      queries.push(query);
      return store.fetchTopDetailed(query);
    },
  };
}

/** A store that answers from fixed per-domain results, for what a real log cannot easily produce. */
function fixed(answers: Record<string, Pick<FetchResult, 'records' | 'truncated'>>): ExperienceSource {
  return {
    fetchTopDetailed: async (query) => {
      const answer = answers[query.domain] ?? { records: [], truncated: false };
      return { records: answer.records.slice(0, query.limit), truncated: answer.truncated };
    },
  };
}

async function seed(dir: string, options: ConstructorParameters<typeof ExperienceStore>[0] = {}) {
  const store = new ExperienceStore({ outDir: `${dir}/out`, runsDir: `${dir}/runs`, ...options });
  const inputs = [];
  for (let i = 0; i < 6; i++) {
    inputs.push(makeInput({ domain: 'implementation', summary: `impl ${i}`, reward: { gtScore: i / 10, relativeRank: 0 } }));
    inputs.push(makeInput({ domain: 'review', summary: `review ${i}`, reward: { gtScore: i / 10, relativeRank: 0.5 } }));
  }
  const written = await store.recordBatch(inputs, 'runs/m.json');
  return { store, written };
}

const PACKS: PromptPack[] = [
  { id: 'impl-small', domain: 'implementation', experienceSlots: 1 },
  { id: 'review', domain: 'review', experienceSlots: 2 },
  { id: 'impl-large', domain: ' implementation ', experienceSlots: 4 },
  { id: 'impl-mid', domain: 'implementation', experienceSlots: 3 },
  { id: 'review-mid', domain: 'review\n', experienceSlots: 3 },
];

describe('collectPromptPackExperiences', () => {
  test('fetches each distinct domain once, asking for the most slots any of its packs has', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    await collectPromptPackExperiences(source, PACKS, { taskId: 'task-a' });
    expect(source.queries).toHaveLength(2);
    expect(source.queries).toEqual(
      expect.arrayContaining([
        { domain: 'implementation', limit: 4, taskId: 'task-a' },
        { domain: 'review', limit: 3, taskId: 'task-a' },
      ]),
    );
  });

  test('gives each pack its own slots of its domain, best first, in pack order', async ({ dir }) => {
    const { store } = await seed(dir);
    const result = await collectPromptPackExperiences(store, PACKS, { taskId: 'task-a' });
    expect(result.map((p) => p.id)).toEqual(PACKS.map((p) => p.id));
    for (const [i, pack] of PACKS.entries()) {
      const best = await store.fetchTop({ domain: pack.domain, limit: pack.experienceSlots, taskId: 'task-a' });
      expect(result[i], pack.id).toEqual({
        id: pack.id,
        experiences: formatExperienceInjections(best, pack.experienceSlots),
        truncated: false,
      });
      expect(result[i]!.experiences, pack.id).toHaveLength(pack.experienceSlots);
    }
    // The best implementation record is "impl 5" (score 0.5); the best review one "review 5" (1.0).
    expect(result[0]!.experiences[0]).toMatch(/\| reward 0\.50\] impl 5 \(stats: shell: 120t\/0\.012usd\/340ms\)$/);
    expect(result[1]!.experiences.map((line) => line.match(/\] (review \d)/)![1])).toEqual(['review 5', 'review 4']);
  });

  test('formats records read through the store to the exact injection line', async ({ dir }) => {
    const store = new ExperienceStore({ outDir: `${dir}/out`, runsDir: `${dir}/runs` });
    const [written] = await store.recordBatch([makeInput({ epoch: null })], 'runs/m.json');
    const [pack] = await collectPromptPackExperiences(store, [{ id: 'p', domain: 'implementation', experienceSlots: 2 }], {});
    expect(pack).toEqual({
      id: 'p',
      experiences: [
        `[exp ${written!.id} | epoch n/a | reward 0.75] fixed the flaky retry loop in the uploader ` +
          '(stats: shell: 120t/0.012usd/340ms)',
      ],
      truncated: false,
    });
  });

  test('never fetches for packs with zero or negative slots, and gives them no experiences', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    const result = await collectPromptPackExperiences(source, [
      { id: 'off', domain: 'review', experienceSlots: 0 },
      { id: 'negative', domain: 'review', experienceSlots: -3 },
      { id: 'not-a-number', domain: 'review', experienceSlots: Number.NaN },
      { id: 'on', domain: 'implementation', experienceSlots: 1 },
    ]);
    expect(source.queries).toEqual([{ domain: 'implementation', limit: 1 }]);
    expect(result.slice(0, 3)).toEqual([
      { id: 'off', experiences: [], truncated: false },
      { id: 'negative', experiences: [], truncated: false },
      { id: 'not-a-number', experiences: [], truncated: false },
    ]);
    expect(result[3]!.experiences).toHaveLength(1);
  });

  test('does not let a zero-slot pack lower or raise the limit of its domain', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    const result = await collectPromptPackExperiences(source, [
      { id: 'off', domain: 'review', experienceSlots: 0 },
      { id: 'on', domain: 'review', experienceSlots: 2 },
    ]);
    expect(source.queries).toEqual([{ domain: 'review', limit: 2 }]);
    expect(result.map((p) => p.experiences.length)).toEqual([0, 2]);
  });

  test('treats a pack without a slot count as having none, as the older orchestrator did', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    const untyped = [
      { id: 'no-slots', domain: 'review' },
      { id: 'null-slots', experienceSlots: null },
    ] as unknown as PromptPack[];
    expect(await collectPromptPackExperiences(source, untyped)).toEqual([
      { id: 'no-slots', experiences: [], truncated: false },
      { id: 'null-slots', experiences: [], truncated: false },
    ]);
    expect(source.queries).toEqual([]);
  });

  test.for([
    [[null], 'packs[0]'],
    [[{ id: 'a', domain: 'review', experienceSlots: 1 }, { id: 'b', experienceSlots: 2 }], 'packs[1].domain'],
    [[{ id: 'a', domain: 'review', experienceSlots: '3' }], 'packs[0].experienceSlots'],
  ] as const)('rejects a malformed pack naming it, before any fetch: %j', async ([packs, field], { dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    const err = await collectPromptPackExperiences(source, packs as unknown as PromptPack[]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExperienceStoreError);
    expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
    expect((err as ExperienceStoreError).message).toContain(field);
    expect(source.queries).toEqual([]);
  });

  test('makes no fetch at all for no packs', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    expect(await collectPromptPackExperiences(source, [], { taskId: 'task-a' })).toEqual([]);
    expect(source.queries).toEqual([]);
  });

  test('passes minReward to the fetch and leaves out records below it', async ({ dir }) => {
    const { store } = await seed(dir);
    const source = counting(store);
    const [pack] = await collectPromptPackExperiences(source, [{ id: 'p', domain: 'implementation', experienceSlots: 6 }], {
      minReward: 0.35,
    });
    expect(source.queries).toEqual([{ domain: 'implementation', limit: 6, minReward: 0.35 }]);
    expect(pack!.experiences.map((line) => line.match(/\] (impl \d)/)![1])).toEqual(['impl 5', 'impl 4']);
  });

  it('carries a domain\'s truncated flag to every pack of that domain, and only to those', async () => {
    const source = fixed({
      cut: { records: [record({ id: 'c1' }), record({ id: 'c2' })], truncated: true },
      whole: { records: [record({ id: 'w1' })], truncated: false },
    });
    const result = await collectPromptPackExperiences(source, [
      { id: 'a', domain: 'cut', experienceSlots: 1 },
      { id: 'b', domain: 'whole', experienceSlots: 1 },
      { id: 'c', domain: ' cut', experienceSlots: 2 },
      { id: 'd', domain: 'cut', experienceSlots: 0 },
    ]);
    expect(result.map((p) => [p.id, p.truncated, p.experiences.length])).toEqual([
      ['a', true, 1],
      ['b', false, 1],
      ['c', true, 2],
      ['d', false, 0],
    ]);
  });

  test('reports truncated from a real store whose scan budget cut the read short', async ({ dir }) => {
    const { written } = await seed(dir);
    // Without an index every fetch is a full scan: two lines are the first two records written.
    const store = new ExperienceStore({
      outDir: `${dir}/out`,
      runsDir: `${dir}/runs`,
      useIndex: false,
      scanBudget: { maxLines: 2 },
    });
    const result = await collectPromptPackExperiences(store, [
      { id: 'impl', domain: 'implementation', experienceSlots: 3 },
      { id: 'review', domain: 'review', experienceSlots: 3 },
    ]);
    expect(result).toEqual([
      { id: 'impl', experiences: formatExperienceInjections([written[0]!], 3), truncated: true },
      { id: 'review', experiences: formatExperienceInjections([written[1]!], 3), truncated: true },
    ]);
  });
});
