/**
 * Crash safety with real processes and real SIGKILL (docs/index-format.md,
 * "Write protocol and crash safety"): no acknowledged record is lost, every
 * answer after a crash equals a full scan, a lock left by a killed writer is
 * cleared once stale, and the next write terminates a partial last line.
 */
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, utimes } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreError, type ExperienceRecord } from '../src/index.js';
import { makeInput } from './support/inputs.js';
import { oracleRecords, oracleTop } from './support/oracle.js';
import { ensureBuilt, killStrayChildren, PACKAGE_ENTRY, spawnChild, startOlderWriter, WRITER_CHILD } from './support/spawn-child.js';
import { test } from './support/temp-dir.js';

const TASK = 'crash-task';
const DOMAINS = ['implementation', 'review', 'testing'];
const ROUNDS = 12;

interface Layout {
  outDir: string;
  runsDir: string;
  log: string;
  lock: string;
  index: string;
}

function layout(dir: string): Layout {
  const outDir = path.join(dir, 'out');
  const runsDir = path.join(dir, '.runs');
  return {
    outDir,
    runsDir,
    log: path.join(outDir, TASK, 'experiences.jsonl'),
    lock: path.join(runsDir, `${TASK}.experiences.lock`),
    index: path.join(outDir, TASK, 'experiences.top.json'),
  };
}

/** Every query a user may ask, from a new instance (index on disk) and without the index. */
async function expectAnswersEqualFullScan(l: Layout, when: string, longLived?: ExperienceStore): Promise<void> {
  const indexed = new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir });
  const scanning = new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir, useIndex: false });
  const stores = { indexed, scanning, ...(longLived ? { longLived } : {}) };
  for (const domain of DOMAINS) {
    for (const taskId of [TASK, undefined]) {
      // The first n of the top 50 are the top n: one read of the log per domain.
      const top50 = await oracleTop(l.outDir, { domain, limit: 50, taskId });
      for (const limit of [1, 16, 17, 50]) {
        const q = { domain, limit, taskId };
        for (const [name, store] of Object.entries(stores)) {
          expect(await store.fetchTop(q), `${when}, ${name} store: ${JSON.stringify(q)}`).toEqual(top50.slice(0, limit));
        }
      }
    }
  }
}

/**
 * The next writer after a crash: it clears a stale lock (staleMs 200), appends
 * after the old bytes, untouched, and terminates a partial last line first.
 */
async function expectNextWriteRepairs(l: Layout, when: string): Promise<ExperienceRecord[]> {
  const runId = when.replaceAll(' ', '-');
  const before = await readFile(l.log);
  const writer = new ExperienceStore({
    outDir: l.outDir,
    runsDir: l.runsDir,
    lockRetry: { staleMs: 200, maxAttempts: 3, initialDelayMs: 20 },
  });
  const records = await writer.recordBatch(
    [makeInput({ taskId: TASK, runId: `${runId}-1` }), makeInput({ taskId: TASK, runId: `${runId}-2`, domain: 'review' })],
    'after-crash/manifest.json',
  );
  const after = await readFile(l.log);
  expect(after.subarray(0, before.length).equals(before), `${when}: the old bytes are intact`).toBe(true);
  const terminator = before.length === 0 || before[before.length - 1] === 0x0a ? '' : '\n';
  expect(after.subarray(before.length).toString('utf8'), `${when}: one newline, then the batch`).toBe(
    terminator + records.map((r) => JSON.stringify(r) + '\n').join(''),
  );
  expect(existsSync(l.lock), `${when}: the lock is released`).toBe(false);
  // The write left a fresh index: a new instance answers without reading the log.
  const fresh = await new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir }).fetchTopDetailed({ domain: 'review', limit: 5, taskId: TASK });
  expect(fresh.stats, `${when}: the index is fresh after the write`).toMatchObject({ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0 });
  expect(fresh.records).toEqual(await oracleTop(l.outDir, { domain: 'review', limit: 5, taskId: TASK }));
  return records;
}

/** Make a lock left by a killed writer old enough to be stale for staleMs 200. */
async function ageLock(lock: string): Promise<boolean> {
  if (!existsSync(lock)) return false;
  const past = new Date(Date.now() - 10_000);
  await utimes(lock, past, past);
  return true;
}

describe('a writer killed with SIGKILL', () => {
  beforeAll(() => ensureBuilt());
  afterEach(() => killStrayChildren());

  test('at random moments loses no acknowledged record and the next writer recovers', async ({ dir }) => {
    const script = WRITER_CHILD;
    const l = layout(dir);
    const acknowledged = new Set<string>();
    // Lives across the rounds: its in-memory index predates each crash.
    const longLived = new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir });
    const seen = { rounds: 0, staleLocks: 0, partialLines: 0, indexTempFiles: 0 };

    for (let round = 0; round < ROUNDS; round++) {
      const when = `after kill ${round + 1}`;
      const child = spawnChild(script, {
        mode: 'store',
        entry: PACKAGE_ENTRY,
        outDir: l.outDir,
        runsDir: l.runsDir,
        taskId: TASK,
        batches: null,
        maxRecords: 8,
        bigEvery: 6, // ~300 records, ~200 KB
        bigRecords: 300,
        name: `writer-${round}`,
        lockRetry: { maxAttempts: 50, initialDelayMs: 5, maxDelayMs: 20 },
      });
      // Past start-up, so the kill lands among writes: within a batch, between them.
      await child.waitForLines(1);
      await sleep(randomInt(0, 80));
      child.process.kill('SIGKILL');
      const exit = await child.exited;
      expect(exit.signal, exit.stderr).toBe('SIGKILL');
      for (const id of child.lines) acknowledged.add(id);

      const inLog = new Set((await oracleRecords(l.log)).map((r) => r.id));
      expect([...acknowledged].filter((id) => !inLog.has(id)), `${when}: acknowledged ids missing from the log`).toEqual([]);

      const bytes = await readFile(l.log);
      if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) seen.partialLines++;
      seen.indexTempFiles += readdirSync(path.dirname(l.log)).filter((f) => f.startsWith('experiences.top.json.')).length;
      await expectAnswersEqualFullScan(l, when, longLived);

      if (await ageLock(l.lock)) seen.staleLocks++;
      for (const r of await expectNextWriteRepairs(l, when)) acknowledged.add(r.id);
      seen.rounds++;
    }

    // Run ids are unique per writer (ids may collide: 6 random hex digits per millisecond).
    const inLog = (await oracleRecords(l.log)).map((r) => r.runId);
    expect(new Set(inLog).size, 'no record was written twice').toBe(inLog.length);
    console.info(`crash: ${JSON.stringify(seen)}, ${acknowledged.size} acknowledged records, ${inLog.length} in the log`);
    expect(seen.rounds).toBe(ROUNDS);
  });

  test('while holding the lock mid-line: the lock blocks until stale, then the next writer clears it and terminates the line', async ({ dir }) => {
    const script = WRITER_CHILD;
    const l = layout(dir);
    const store = new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir });
    await store.recordBatch([makeInput({ taskId: TASK, runId: 'before-1' }), makeInput({ taskId: TASK, runId: 'before-2', domain: 'testing' })], 'm.json');

    // An older writer: lock taken with O_EXCL, half a record appended, then SIGKILL.
    const half = JSON.stringify({ ...(await oracleRecords(l.log))[0]!, id: 'exp-half' }).slice(0, 120);
    const older = await startOlderWriter(script, { logPath: l.log, lockPath: l.lock, text: half });
    older.process.kill('SIGKILL');
    expect((await older.exited).signal).toBe('SIGKILL');
    expect(existsSync(l.lock)).toBe(true);
    expect((await readFile(l.log, 'utf8')).endsWith(half)).toBe(true);

    // Readers: the partial line is neither a record nor malformed; answers equal a full scan.
    await expectAnswersEqualFullScan(l, 'after the kill');

    // A lock younger than staleMs is respected: EXP_LOCKED, and not a byte changes.
    const logBefore = await readFile(l.log);
    const patient = new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir, lockRetry: { maxAttempts: 2, initialDelayMs: 10 } });
    const err = await patient.recordBatch([makeInput({ taskId: TASK })], 'm.json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExperienceStoreError);
    expect((err as ExperienceStoreError).code).toBe('EXP_LOCKED');
    expect((await readFile(l.log)).equals(logBefore)).toBe(true);

    expect(await ageLock(l.lock)).toBe(true);
    await expectNextWriteRepairs(l, 'after the stale lock');
    // The terminated remnant is one malformed line; both records before it survive.
    const rebuilt = await new ExperienceStore({ outDir: l.outDir, runsDir: l.runsDir }).rebuildIndex(TASK);
    expect(rebuilt).toEqual({ tasks: 1, records: 4, malformed: 1 });
    await expectAnswersEqualFullScan(l, 'after the repair');
  });
});
