/**
 * Concurrent writers and readers (SPEC: lock file across processes, in-process
 * queue within one): nothing is lost or doubled, every line stays whole, the
 * last writer leaves a fresh index, and readers racing writers get well-formed
 * answers and finally exactly the full scan.
 */
import { existsSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { ExperienceStore, type ExperienceRecord } from '../src/index.js';
import { makeInput } from './support/inputs.js';
import { oracleCompare, oracleLines, oracleRecords, oracleTop } from './support/oracle.js';
import { ensureBuilt, killStrayChildren, runStoreWriters, WRITER_CHILD } from './support/spawn-child.js';
import { test } from './support/temp-dir.js';

const TASK = 'shared-task';
const DOMAINS = ['implementation', 'review', 'testing'];
// Generous: a writer waits for the others rather than fail (4 writers on 2 cores).
const PATIENT = { maxAttempts: 10_000, initialDelayMs: 1, backoffFactor: 1.5, maxDelayMs: 10 };

function dirs(dir: string) {
  const outDir = path.join(dir, 'out');
  const runsDir = path.join(dir, '.runs');
  return { outDir, runsDir, log: path.join(outDir, TASK, 'experiences.jsonl'), lock: path.join(runsDir, `${TASK}.experiences.lock`) };
}

/** Every line of the log is a whole record, and the records are exactly `runIds`, each once. */
async function expectExactlyWritten(log: string, runIds: readonly string[]): Promise<void> {
  const lines = await oracleLines(log);
  const records = await oracleRecords(log);
  expect(records.length, 'every line parses as a record (none torn or interleaved)').toBe(lines.length);
  expect(records.map((r) => r.runId).sort(), 'the log holds exactly the records written, each once').toEqual([...runIds].sort());
}

/** A fresh index: a new instance answers each domain from it, equal to the full scan. */
async function expectFreshIndex(outDir: string, runsDir: string): Promise<void> {
  const reader = new ExperienceStore({ outDir, runsDir });
  for (const domain of DOMAINS) {
    // limit 2: within the K of any index these tests build, so the index may answer.
    const q = { domain, limit: 2, taskId: TASK };
    const got = await reader.fetchTopDetailed(q);
    expect(got.stats, `${domain}: answered from the index`).toMatchObject({ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0 });
    expect(got.records).toEqual(await oracleTop(outDir, q));
  }
}

describe('concurrent writers and readers', () => {
  beforeAll(() => ensureBuilt());
  afterEach(() => killStrayChildren());

  test('writer processes on one task lose nothing, double nothing, and leave a fresh index', async ({ dir }) => {
    const { outDir, runsDir, log, lock } = dirs(dir);
    const script = WRITER_CHILD;
    const acknowledged = await runStoreWriters(
      script,
      path.join(dir, 'go'),
      [0, 1, 2, 3].map((w) => ({ outDir, runsDir, taskId: TASK, batches: 25, maxRecords: 6, pauseMs: 4, name: `writer-${w}`, lockRetry: PATIENT })),
    );
    const records = await oracleRecords(log);
    const ids = new Set(records.map((r) => r.id));
    expect(acknowledged.flat().filter((id) => !ids.has(id)), 'every acknowledged id is in the log').toEqual([]);
    // Each writer's run ids count up from 0, one per record it wrote.
    const runIds = acknowledged.flatMap((acks, w) => acks.map((_, n) => `writer-${w}-run-${n}`));
    await expectExactlyWritten(log, runIds);
    expect(existsSync(lock), 'the lock is released').toBe(false);
    await expectFreshIndex(outDir, runsDir);
    const writerOfLine = records.map((r) => r.runId.split('-run-')[0]);
    const switches = writerOfLine.filter((w, i) => i > 0 && w !== writerOfLine[i - 1]).length;
    console.info(`concurrency: 4 writers, ${records.length} records, the writer changes ${switches} times along the log`);
  });

  test('100 concurrent batches in one process across 3 instances all succeed without burning lock retries', async ({ dir }) => {
    const { outDir, runsDir, log, lock } = dirs(dir);
    // maxAttempts 1: one failed try on the lock file would be an EXP_LOCKED error.
    const stores = [0, 1, 2].map((i) => new ExperienceStore({ outDir, runsDir, indexTopK: 2 + i, lockRetry: { maxAttempts: 1 } }));
    const runIds: string[] = [];
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, b) => {
        const inputs = Array.from({ length: 1 + (b % 3) }, (_, i) => {
          runIds.push(`batch-${b}-${i}`);
          return makeInput({ taskId: TASK, runId: `batch-${b}-${i}`, domain: DOMAINS[(b + i) % 3], reward: { gtScore: (b % 5) / 4, relativeRank: i / 4 } });
        });
        return stores[b % 3]!.recordBatch(inputs, `batch-${b}/manifest.json`);
      }),
    );
    expect(results.flat()).toHaveLength(runIds.length);
    await expectExactlyWritten(log, runIds);
    expect(existsSync(lock)).toBe(false);
    await expectFreshIndex(outDir, runsDir);
    for (const store of stores) {
      for (const domain of DOMAINS) {
        for (const limit of [1, 3, 40]) {
          expect(await store.fetchTop({ domain, limit })).toEqual(await oracleTop(outDir, { domain, limit }));
        }
      }
    }
  });

  test('readers racing writers get ranked answers without repeats, and finally the full scan', async ({ dir }) => {
    const { outDir, runsDir, log } = dirs(dir);
    const script = WRITER_CHILD;
    const k = 4;
    const hot = new ExperienceStore({ outDir, runsDir, indexTopK: k });
    let writing = true;
    const writers = runStoreWriters(
      script,
      path.join(dir, 'go'),
      [0, 1].map((w) => ({ outDir, runsDir, taskId: TASK, batches: 40, maxRecords: 5, name: `writer-${w}`, lockRetry: PATIENT })),
    );
    // An older writer appends without the lock at the same time, valid lines and garbage.
    const older = (async () => {
      for (let i = 0; writing; i++) {
        const record = { ...(await oracleRecords(log))[0], id: `exp-older-${i}`, runId: `older-${i}`, domain: DOMAINS[i % 3] };
        if (record.createdAt !== undefined) await appendFile(log, `${JSON.stringify(record)}\nnot json ${i}\n`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const answers: Array<{ q: { domain: string; limit: number }; records: ExperienceRecord[] }> = [];
    const reads = (async () => {
      for (let i = 0; writing; i++) {
        const q = { domain: DOMAINS[i % 3]!, limit: [1, k, k + 1, 30][i % 4]! };
        // Alternate the hot instance (in-memory index) and new ones (index from disk).
        const reader = i % 2 === 0 ? hot : new ExperienceStore({ outDir, runsDir, indexTopK: k });
        answers.push({ q, records: await reader.fetchTop(q) });
        // A hot fetch may resolve without real I/O: let the writers' exit events in.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const acknowledged = await writers.finally(() => (writing = false));
    await Promise.all([older, reads]);

    const finalRecords = await oracleRecords(log);
    const finalIds = new Set(finalRecords.map((r) => `${r.id}/${r.runId}`));
    const inLog = new Set(finalRecords.map((r) => r.id));
    expect(acknowledged.flat().filter((id) => !inLog.has(id)), 'every acknowledged id is in the log').toEqual([]);
    for (const { q, records } of answers) {
      const keys = records.map((r) => `${r.id}/${r.runId}`);
      expect(records.length, JSON.stringify(q)).toBeLessThanOrEqual(q.limit);
      expect(records.every((r) => r.domain === q.domain), `${JSON.stringify(q)}: only the domain asked`).toBe(true);
      expect(new Set(keys).size, `${JSON.stringify(q)}: no record twice`).toBe(keys.length);
      for (let i = 1; i < records.length; i++) {
        expect(oracleCompare(records[i - 1]!, records[i]!), `${JSON.stringify(q)}: ranked`).toBeLessThanOrEqual(0);
      }
      expect(keys.filter((key) => !finalIds.has(key)), `${JSON.stringify(q)}: only records of the log`).toEqual([]);
    }
    console.info(`concurrency: ${answers.length} fetches raced ${acknowledged.flat().length} acknowledged records`);
    expect(answers.length).toBeGreaterThan(0);
    for (const store of [hot, new ExperienceStore({ outDir, runsDir, indexTopK: k })]) {
      for (const domain of DOMAINS) {
        for (const limit of [1, k, k + 1, 30]) {
          expect(await store.fetchTop({ domain, limit }), `final ${domain} ${limit}`).toEqual(await oracleTop(outDir, { domain, limit }));
        }
      }
    }
  });
});
