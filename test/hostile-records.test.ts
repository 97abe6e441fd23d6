/**
 * Any line JSON.parse accepts is safe on every path (SPEC "Precise rules"):
 * deep nesting, long strings and huge numbers are a record or malformed by the
 * schema, never a crash, and a returned record is the one in the log. Also the
 * index's K across heals, and task ids too long for the names derived from them.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreError } from '../src/index.js';
import { makeInput, makeRecord } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const TASK = 'task-a';
const DEPTH = 100_000;

/** Depth of the `nested` chain, walked without recursion. */
function depthOf(value: unknown): number {
  let depth = 0;
  let at = value as { a?: unknown } | undefined;
  while (typeof at === 'object' && at !== null && 'a' in at) {
    depth++;
    at = at.a as { a?: unknown };
  }
  return depth;
}

function deepLine(): string {
  const base = JSON.stringify(makeRecord({ id: 'exp-deep', taskId: TASK, domain: 'implementation', reward: { gtScore: 5, relativeRank: 0 } }));
  return `${base.slice(0, -1)},"nested":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`;
}

describe('hostile but valid records', () => {
  test('a record with a 100,000-deep extra field comes back intact from every path, and does not stop the index', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), indexTopK: 4 };
    const log = path.join(options.outDir, TASK, 'experiences.jsonl');
    mkdirSync(path.dirname(log), { recursive: true });
    writeFileSync(log, deepLine() + '\n');
    const query = { domain: 'implementation', limit: 3, taskId: TASK };
    const check = (records: Array<Record<string, unknown>>) => {
      expect(records[0]!.id).toBe('exp-deep');
      expect(depthOf(records[0]!.nested)).toBe(DEPTH);
    };

    // Full scan without the index, then the full scan that builds it, then a batch that keeps it.
    check(await new ExperienceStore({ ...options, useIndex: false }).fetchTop(query));
    const first = await new ExperienceStore(options).fetchTopDetailed(query);
    expect(first.stats.fullScans).toBe(1);
    check(first.records);
    await new ExperienceStore(options).recordBatch([makeInput({ taskId: TASK })], 'm');
    expect(readFileSync(path.join(options.outDir, TASK, 'experiences.top.json'), 'utf8')).toContain('"nested":{"a":{"a":');
    // Cold from the index file, hot from memory, a tail, and selection.
    const store = new ExperienceStore(options);
    const cold = await store.fetchTopDetailed(query);
    expect(cold.stats).toMatchObject({ indexHits: 1, bytesRead: 0 });
    check(cold.records);
    check(await store.fetchTop(query));
    appendFileSync(log, deepLine().replace('exp-deep', 'exp-deep2').replace('"gtScore":5', '"gtScore":1') + '\n');
    const tail = await store.fetchTopDetailed(query);
    expect(tail.stats.tails).toBe(1);
    check(tail.records);
    check((await new ExperienceStore(options).selectTop(query)).records);
    check((await new ExperienceStore(options).selectTop(query, { diagnostics: 'full' })).records);
    // The copy handed out is the caller's: mutating it changes nothing the store holds.
    (tail.records[0] as Record<string, unknown>).nested = null;
    check(await store.fetchTop(query));
  });

  test('long strings, huge numbers and -0 in extra fields come back exactly as the log has them', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), indexTopK: 2 };
    const log = path.join(options.outDir, TASK, 'experiences.jsonl');
    mkdirSync(path.dirname(log), { recursive: true });
    const long = 'x'.repeat(1 << 20);
    const line = JSON.stringify(makeRecord({ id: 'exp-odd', taskId: TASK, domain: 'd', summary32: long })).replace(/}$/, ',"huge":1e308,"negZero":-0,"big":123456789012345678901234567890}');
    writeFileSync(log, line + '\n');
    const store = new ExperienceStore(options);
    await store.fetchTop({ domain: 'd', limit: 1 }); // builds and writes the index
    for (const reader of [store, new ExperienceStore(options), new ExperienceStore({ ...options, useIndex: false })]) {
      const [record] = await reader.fetchTop({ domain: 'd', limit: 1 });
      expect(record!.summary32).toBe(long);
      expect(record!.huge).toBe(1e308);
      expect(Object.is(record!.negZero, -0)).toBe(true);
      expect(record!.big).toBe(123456789012345678901234567890);
    }
  });
});

describe('K of an index', () => {
  test('a fetch with limit > K answers by scan and keeps the index K (rebuilt with 64, read by a store whose indexTopK is 16)', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') };
    const writer = new ExperienceStore(options);
    for (let b = 0; b < 10; b++) {
      await writer.recordBatch(Array.from({ length: 10 }, (_, i) => makeInput({ taskId: TASK, runId: `r${b}-${i}`, reward: { gtScore: b / 10, relativeRank: i / 100 } })), 'm');
    }
    await new ExperienceStore({ ...options, indexTopK: 64 }).rebuildIndex(TASK);
    const reader = new ExperienceStore(options); // indexTopK 16
    const wide = await reader.fetchTopDetailed({ domain: 'implementation', limit: 80, taskId: TASK });
    expect(wide.stats.fullScans).toBe(1);
    expect(wide.records).toHaveLength(80);
    // The heal after that scan kept k 64: a later fetch of 17..64 records is answered from the index.
    const index = readFileSync(path.join(options.outDir, TASK, 'experiences.top.json'), 'utf8').split('\n')[1]!;
    expect(JSON.parse(index).k).toBe(64);
    const again = await new ExperienceStore(options).fetchTopDetailed({ domain: 'implementation', limit: 40, taskId: TASK });
    expect(again.stats).toMatchObject({ indexHits: 1, bytesRead: 0 });
    // And a writer with the default indexTopK keeps it too.
    await new ExperienceStore(options).recordBatch([makeInput({ taskId: TASK })], 'm');
    expect(JSON.parse(readFileSync(path.join(options.outDir, TASK, 'experiences.top.json'), 'utf8').split('\n')[1]!).k).toBe(64);
  });
});

describe('task ids and the names derived from them', () => {
  test('a task id over 128 UTF-8 bytes is rejected before anything is created', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') };
    const store = new ExperienceStore(options);
    for (const taskId of ['t'.repeat(129), 'é'.repeat(65), 'x'.repeat(240)]) {
      const err = await store.recordBatch([makeInput({ taskId })], 'm').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ExperienceStoreError);
      expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
      expect((err as Error).message).toMatch(/inputs\[0\]\.taskId must be at most 128 UTF-8 bytes/);
    }
    expect(existsSync(options.outDir)).toBe(false);
    expect(existsSync(options.runsDir)).toBe(false);
    // 128 bytes is fine, and every derived name fits NAME_MAX.
    await store.recordBatch([makeInput({ taskId: 'é'.repeat(64) })], 'm');
    expect(readdirSync(options.outDir)).toEqual(['é'.repeat(64)]);
  });
});

describe('an index rebuilt with another K while a writer holds an older one', () => {
  test('the writer continues from the rebuilt index (its K), not from the state it held', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') };
    const indexPath = path.join(options.outDir, TASK, 'experiences.top.json');
    const kOf = () => JSON.parse(readFileSync(indexPath, 'utf8').split('\n')[1]!).k as number;
    const writer = new ExperienceStore(options); // indexTopK 16
    await writer.recordBatch([makeInput({ taskId: TASK })], 'm');
    expect(kOf()).toBe(16);
    await new ExperienceStore({ ...options, indexTopK: 4 }).rebuildIndex(TASK);
    expect(kOf()).toBe(4);
    await writer.recordBatch([makeInput({ taskId: TASK, runId: 'after' })], 'm');
    expect(kOf()).toBe(4);
    const fresh = await new ExperienceStore(options).fetchTopDetailed({ domain: 'implementation', limit: 4, taskId: TASK });
    expect(fresh.stats).toMatchObject({ indexHits: 1, bytesRead: 0 });
  });
});

describe('review findings, pinned', () => {
  test('stats turns a file-system failure into EXP_IO naming the log', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') };
    mkdirSync(path.join(options.outDir, TASK, 'experiences.jsonl'), { recursive: true }); // a directory where the log goes
    const store = new ExperienceStore(options);
    for (const call of [() => store.stats()]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ExperienceStoreError);
      expect((err as ExperienceStoreError).code).toBe('EXP_IO');
      expect((err as Error).message).toContain('experiences.jsonl');
    }
  });

  test('a clock that returns an invalid Date is EXP_INVALID_INPUT naming options.now, and nothing is written', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), now: () => new Date(Number.NaN) };
    const err = await new ExperienceStore(options).recordBatch([makeInput({ taskId: TASK })], 'm').catch((e: unknown) => e);
    expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
    expect((err as Error).message).toContain('options.now');
    expect(existsSync(options.outDir)).toBe(false);
  });

  test('a selection that must read every candidate stays within one scan budget', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), indexTopK: 2, scanBudget: { maxLines: 6 } };
    const log = path.join(options.outDir, TASK, 'experiences.jsonl');
    mkdirSync(path.dirname(log), { recursive: true });
    const lines = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify(makeRecord({ id: `exp-${i}`, runId: `r${i}`, taskId: TASK, domain: 'd', reward: { gtScore: i === 3 ? 1e301 : i / 10, relativeRank: 0 } })),
    );
    writeFileSync(log, lines.join('\n') + '\n');
    const result = await new ExperienceStore(options).selectTop({ domain: 'd', limit: 2, taskId: TASK });
    expect(result.truncated).toBe(true);
    expect(result.stats.linesRead).toBeLessThanOrEqual(6);
  });

  test('a corrupt section of another domain is not copied into the index a batch writes', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs') };
    const indexPath = path.join(options.outDir, TASK, 'experiences.top.json');
    await new ExperienceStore(options).recordBatch([makeInput({ taskId: TASK, domain: 'a' }), makeInput({ taskId: TASK, domain: 'b' })], 'm');
    const bytes = readFileSync(indexPath);
    bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0x01; // inside the last section: domain b's pool or top
    writeFileSync(indexPath, bytes);
    await new ExperienceStore(options).recordBatch([makeInput({ taskId: TASK, domain: 'a', runId: 'again' })], 'm');
    const [report] = await new ExperienceStore(options).verify({ taskId: TASK });
    expect(report!.ok).toBe(true);
    expect(report!.index.state).toBe('fresh');
  });
});

describe('large domains', () => {
  test('a selection over 300,000 candidates of one domain (no index: every candidate is read and listed)', async ({ dir }) => {
    const log = path.join(dir, 'out', TASK, 'experiences.jsonl');
    mkdirSync(path.dirname(log), { recursive: true });
    const line = (i: number) =>
      JSON.stringify(makeRecord({ id: `e${i}`, runId: `r${i % 1000}`, taskId: TASK, domain: 'd', reward: { gtScore: (i % 997) / 997, relativeRank: 0 } }));
    writeFileSync(log, Array.from({ length: 300_000 }, (_, i) => line(i)).join('\n') + '\n');
    const store = new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), useIndex: false });
    const result = await store.selectTop({ domain: 'd', limit: 5, taskId: TASK });
    expect(result.records).toHaveLength(5);
    expect(result.diagnostics.candidate_count).toBe(300_000);
    expect(result.diagnostics.candidates_complete).toBe(true);
    expect(new Set(result.records.map((r) => r.runId)).size).toBe(5);
  }, 120_000);
});
