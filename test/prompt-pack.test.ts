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
import {
  resolveSelectionPolicy,
  selectCompetitive,
  type ExperienceSelectionDiagnostics,
  type SelectOptions,
  type SelectQuery,
} from '../src/selection.js';
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

/** Records of one group scoring 1.35, 1.30, 1.23 and another scoring 1.22 (issue 12's example). */
function groupRecords(): ExperienceRecord[] {
  const scored = (id: string, relativeRank: number, groupId: string) =>
    makeRecord({ id, groupId, domain: 'impl', reward: { gtScore: 1, relativeRank } });
  return [scored('a1', 0.35, 'A'), scored('a2', 0.3, 'A'), scored('a3', 0.23, 'A'), scored('b1', 0.22, 'B')];
}

describe('formatExperienceInjections with selection diagnostics', () => {
  const records = groupRecords();
  const { records: picked, diagnostics } = selectCompetitive(records, 3, resolveSelectionPolicy({}));

  it('adds source and competitive score after the reward, and anti-dom when a penalty applied', () => {
    expect(formatExperienceInjections(picked, 3, diagnostics)).toEqual([
      '[exp a1 | epoch n/a | reward 1.35 | source group_id:A | competitive 1.35] a record (stats: )',
      '[exp b1 | epoch n/a | reward 1.22 | source group_id:B | competitive 1.22] a record (stats: )',
      '[exp a2 | epoch n/a | reward 1.30 | source group_id:A | competitive 0.80 | anti-dom 0.50] a record (stats: )',
    ]);
  });

  it('keeps the stats part and the older format of everything else', () => {
    const r = record({ groupId: ' g ' });
    const { records: one, diagnostics: d } = selectCompetitive([r], 1, resolveSelectionPolicy({}));
    expect(formatExperienceInjections(one, 1, d)).toEqual([
      '[exp exp-lq2x3k-a1b2c3 | epoch 3 | reward 1.50 | source group_id:g | competitive 1.50] ' +
        'Replaced the retry loop with exponential backoff (stats: shell: 1840t/0.012usd/2310ms)',
    ]);
  });

  it('is byte-identical to the older format without diagnostics, or for records not selected', () => {
    const plain = formatExperienceInjections(records, 4);
    expect(plain[0]).toBe('[exp a1 | epoch n/a | reward 1.35] a record (stats: )');
    expect(formatExperienceInjections(records, 4, { selected: [] })).toEqual(plain);
    const other = record({ id: 'not-selected' });
    expect(formatExperienceInjections([other], 1, diagnostics)).toEqual(formatExperienceInjections([other], 1));
  });

  it('takes only the first `slots` records and entries', () => {
    expect(formatExperienceInjections(picked, 1, diagnostics)).toHaveLength(1);
    expect(formatExperienceInjections(picked, 0, diagnostics)).toEqual([]);
  });

  it('matches records to entries by position, so repeated ids keep their own sources', () => {
    const first = makeRecord({ id: 'dup', runId: 'r1', reward: { gtScore: 1, relativeRank: 0 } });
    const second = makeRecord({ id: 'dup', runId: 'r2', reward: { gtScore: 0.5, relativeRank: 0 } });
    const { records: both, diagnostics: d } = selectCompetitive([first, second], 2, resolveSelectionPolicy({}));
    const lines = formatExperienceInjections(both, 2, d);
    expect(lines.map((line) => line.match(/source (\S+)/)![1])).toEqual(['run_id:r1', 'run_id:r2']);
  });

  it('falls back to the n-th entry of an id when the records are not in slot order', () => {
    const reordered = [picked[2]!, picked[0]!];
    expect(formatExperienceInjections(reordered, 2, diagnostics).map((line) => line.slice(0, line.indexOf(']') + 1))).toEqual([
      '[exp a2 | epoch n/a | reward 1.30 | source group_id:A | competitive 0.80 | anti-dom 0.50]',
      '[exp a1 | epoch n/a | reward 1.35 | source group_id:A | competitive 1.35]',
    ]);
  });
});

type SelectCall = { query: SelectQuery; options: SelectOptions | undefined };

/** A store over fixed records per domain: plain fetches sort them, selections run selectCompetitive. */
function selecting(byDomain: Record<string, ExperienceRecord[]>, truncated = false) {
  const queries: FetchQuery[] = [];
  const selections: SelectCall[] = [];
  const source = {
    queries,
    selections,
    fetchTopDetailed: async (query: FetchQuery) => {
      queries.push(query);
      return { records: (byDomain[query.domain] ?? []).slice(0, query.limit), truncated };
    },
    selectTop: async (query: SelectQuery, options?: SelectOptions) => {
      selections.push({ query, options });
      const policy = resolveSelectionPolicy(query.policy, query.minScore);
      return { ...selectCompetitive(byDomain[query.domain] ?? [], query.limit, policy), truncated };
    },
  } satisfies ExperienceSource & Record<string, unknown>;
  return source;
}

describe('collectPromptPackExperiences with retrieval policies', () => {
  const DEFAULT = resolveSelectionPolicy({});

  it('runs one selection per distinct domain and resolved policy, with the largest slots of its packs', async () => {
    const source = selecting({ impl: groupRecords(), review: [] });
    const strong = resolveSelectionPolicy({ antiDominanceNormalization: { strength: 1 } });
    const result = await collectPromptPackExperiences(
      source,
      [
        { id: 'sel-small', domain: 'impl', experienceSlots: 1, retrievalPolicy: {} },
        // Spelled differently, resolves to the same policy: the same selection.
        { id: 'sel-large', domain: ' impl ', experienceSlots: 3, retrievalPolicy: { antiDominanceNormalization: { strength: 0.5 } } },
        { id: 'sel-strong', domain: 'impl', experienceSlots: 2, retrievalPolicy: { antiDominanceNormalization: { strength: 1 } } },
        { id: 'plain', domain: 'impl', experienceSlots: 2 },
        { id: 'plain-null', domain: 'impl', experienceSlots: 1, retrievalPolicy: null },
        { id: 'review', domain: 'review', experienceSlots: 2, retrievalPolicy: { minScore: 0.5 } },
        { id: 'off', domain: 'impl', experienceSlots: 0, retrievalPolicy: { scoreWeights: { gtScore: 3 } } },
      ],
      { taskId: 'task-a' },
    );
    expect(source.selections).toEqual([
      { query: { domain: 'impl', limit: 3, policy: DEFAULT, taskId: 'task-a' }, options: { diagnostics: 'summary' } },
      { query: { domain: 'impl', limit: 2, policy: strong, taskId: 'task-a' }, options: { diagnostics: 'summary' } },
      {
        query: { domain: 'review', limit: 2, policy: resolveSelectionPolicy({ minScore: 0.5 }), taskId: 'task-a' },
        options: { diagnostics: 'summary' },
      },
    ]);
    expect(source.queries).toEqual([{ domain: 'impl', limit: 2, taskId: 'task-a' }]);
    expect(result.map((p) => p.experiences.length)).toEqual([1, 3, 2, 2, 1, 0, 0]);
  });

  it('formats the lines from the selection and gives each pack its diagnostics', async () => {
    const source = selecting({ impl: groupRecords() });
    const [small, large] = await collectPromptPackExperiences(source, [
      { id: 'small', domain: 'impl', experienceSlots: 2, retrievalPolicy: { minScore: 0.1 } },
      { id: 'large', domain: 'impl', experienceSlots: 3, retrievalPolicy: { minScore: 0.1 } },
    ]);
    expect(large!.experiences).toEqual([
      '[exp a1 | epoch n/a | reward 1.35 | source group_id:A | competitive 1.35] a record (stats: )',
      '[exp b1 | epoch n/a | reward 1.22 | source group_id:B | competitive 1.22] a record (stats: )',
      '[exp a2 | epoch n/a | reward 1.30 | source group_id:A | competitive 0.80 | anti-dom 0.50] a record (stats: )',
    ]);
    // The first slots of a greedy do not depend on its limit: the small pack's lines are a prefix.
    expect(small!.experiences).toEqual(large!.experiences.slice(0, 2));
    const want = selectCompetitive(groupRecords(), 3, resolveSelectionPolicy({ minScore: 0.1 })).diagnostics;
    expect(large!.selection).toEqual(want);
    // Packs of one selection share its diagnostics, untrimmed.
    expect(small!.selection).toBe(large!.selection);
    expect(small!.selection!.selected_count).toBe(3);
  });

  it('gives plain packs no selection field, and leaves their lines in the older format', async () => {
    const source = selecting({ impl: groupRecords() });
    const [plain] = await collectPromptPackExperiences(source, [{ id: 'plain', domain: 'impl', experienceSlots: 1 }]);
    expect(plain).toEqual({ id: 'plain', experiences: ['[exp a1 | epoch n/a | reward 1.35] a record (stats: )'], truncated: false });
    expect('selection' in plain!).toBe(false);
  });

  it("carries the selection's truncated flag to its packs", async () => {
    const source = selecting({ impl: groupRecords() }, true);
    const [pack] = await collectPromptPackExperiences(source, [{ id: 'p', domain: 'impl', experienceSlots: 1, retrievalPolicy: {} }]);
    expect(pack!.truncated).toBe(true);
    expect(pack!.selection).toBeDefined();
  });

  it("folds minReward into the policy's minScore unless the policy sets one", async () => {
    const source = selecting({ impl: groupRecords() });
    await collectPromptPackExperiences(
      source,
      [
        { id: 'inherits', domain: 'impl', experienceSlots: 1, retrievalPolicy: {} },
        { id: 'own', domain: 'impl', experienceSlots: 1, retrievalPolicy: { minScore: 0.2 } },
      ],
      { minReward: 1.25 },
    );
    expect(source.selections.map((s) => s.query.policy!.minScore)).toEqual([1.25, 0.2]);
    expect(source.selections.every((s) => !('minScore' in s.query))).toBe(true);
  });

  async function rejection(source: ExperienceSource, packs: unknown[], options = {}) {
    const err = await collectPromptPackExperiences(source, packs as PromptPack[], options).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExperienceStoreError);
    expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
    return (err as ExperienceStoreError).message;
  }

  it('rejects a bad retrievalPolicy before any fetch, naming the pack and the policy field', async () => {
    const source = selecting({ impl: groupRecords() });
    const ok = { id: 'ok', domain: 'impl', experienceSlots: 1 };
    const message = await rejection(source, [
      ok,
      { ...ok, retrievalPolicy: {} },
      { ...ok, retrievalPolicy: { antiDominanceNormalization: { enabled: 'yes' } } },
    ]);
    expect(message).toMatch(/^packs\[2\]\.retrievalPolicy\.antiDominanceNormalization\.enabled \(selection\.policy\./);
    expect(message).toContain('(selection.policy.antiDominanceNormalization.enabled) must be a boolean, got "yes"');
    expect(await rejection(source, [{ ...ok, retrievalPolicy: 'competitive' }])).toMatch(
      /^packs\[0\]\.retrievalPolicy \(selection\.policy\) must be an object/,
    );
    expect(await rejection(source, [{ ...ok, retrievalPolicy: { minScore: Number.NaN } }])).toContain(
      'packs[0].retrievalPolicy.minScore (selection.policy.minScore)',
    );
    // A pack without slots is checked too: the instruction file is wrong either way.
    expect(await rejection(source, [{ ...ok, experienceSlots: 0, retrievalPolicy: { scoreWeights: { gtScore: -1 } } }])).toContain(
      'packs[0].retrievalPolicy.scoreWeights.gtScore',
    );
    expect(source.queries).toEqual([]);
    expect(source.selections).toEqual([]);
  });

  it('rejects a minReward that cannot be a selection threshold, naming it', async () => {
    const source = selecting({ impl: groupRecords() });
    const packs = [{ id: 'p', domain: 'impl', experienceSlots: 1, retrievalPolicy: {} }];
    const message = await rejection(source, packs, { minReward: -0.5 });
    expect(message).toContain('options.minReward');
    expect(message).toContain('packs[0]');
    expect(source.selections).toEqual([]);
  });

  it('rejects a pack with a retrievalPolicy when the store has no selectTop, before any fetch', async () => {
    const source = counting(selecting({ impl: groupRecords() }));
    const message = await rejection(source, [
      { id: 'plain', domain: 'impl', experienceSlots: 1 },
      { id: 'zero', domain: 'impl', experienceSlots: 0, retrievalPolicy: {} },
      { id: 'sel', domain: 'impl', experienceSlots: 1, retrievalPolicy: {} },
    ]);
    expect(message).toMatch(/^packs\[2\] has a retrievalPolicy, but the store given has no selectTop/);
    expect(source.queries).toEqual([]);
    // Without a pack needing it, a store without selectTop is fine.
    await collectPromptPackExperiences(source, [{ id: 'zero', domain: 'impl', experienceSlots: 0, retrievalPolicy: {} }]);
  });

  const hasSelectTop = typeof (ExperienceStore.prototype as unknown as Record<string, unknown>).selectTop === 'function';
  test.skipIf(!hasSelectTop)('selects through a real store as selectCompetitive does over its records', async ({ dir }) => {
    const store = new ExperienceStore({ outDir: `${dir}/out`, runsDir: `${dir}/runs` });
    const inputs = [0.9, 0.8, 0.7, 0.6, 0.5].map((gtScore, i) =>
      makeInput({ runId: i < 3 ? 'prolific' : `run-${i}`, reward: { gtScore, relativeRank: 0 }, summary: `s${i}` }),
    );
    const written = await store.recordBatch(inputs, 'runs/m.json');
    const [pack] = await collectPromptPackExperiences(store, [
      { id: 'p', domain: 'implementation', experienceSlots: 3, retrievalPolicy: { antiDominanceNormalization: { strength: 0.25 } } },
    ]);
    const want = selectCompetitive(written, 3, resolveSelectionPolicy({ antiDominanceNormalization: { strength: 0.25 } }));
    expect(pack!.experiences).toEqual(formatExperienceInjections(want.records, 3, want.diagnostics));
    expect(pack!.experiences[1]).toContain('| source run_id:run-3 | competitive 0.60]');
    expect((pack!.selection as ExperienceSelectionDiagnostics).selected_ids).toEqual(want.diagnostics.selected_ids);
  });
});
