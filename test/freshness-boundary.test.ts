/**
 * What freshness can and cannot see (SPEC "The sidecar index"; docs/index-format.md,
 * "What freshness cannot see"), pinned on both sides of the boundary: an edit
 * inside the fingerprinted 4 KiB before the index's offset, or one that changes
 * the size, mtime or ctime, costs a rescan; a same-length edit further back,
 * followed by an append, passes as an append alone would — a fetch then answers
 * from the old content, and only `verify` (a full comparison) notices.
 */
import { appendFileSync, openSync, closeSync, writeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore } from '../src/index.js';
import { makeInput } from './support/inputs.js';
import { oracleTop } from './support/oracle.js';
import { test } from './support/temp-dir.js';

const TASK = 'task-a';
const FINGERPRINT_BYTES = 4096;

/** A log of ~40 records (> 4 KiB), the first one the best of its domain, with a fresh index. */
async function setup(dir: string) {
  const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), indexTopK: 4 };
  const store = new ExperienceStore(options);
  await store.recordBatch([makeInput({ taskId: TASK, runId: 'first', reward: { gtScore: 0.9, relativeRank: 0 } })], 'm');
  for (let i = 0; i < 4; i++) {
    await store.recordBatch(
      Array.from({ length: 10 }, (_, j) => makeInput({ taskId: TASK, runId: `r${i}-${j}`, reward: { gtScore: 0.1, relativeRank: j / 100 } })),
      'm',
    );
  }
  const log = path.join(options.outDir, TASK, 'experiences.jsonl');
  expect(readFileSync(log).length).toBeGreaterThan(3 * FINGERPRINT_BYTES);
  return { options, log };
}

/** Overwrite `from` with `to` (same length) at its first occurrence at or after `start`, in place: same inode. */
function editInPlace(log: string, from: string, to: string, start = 0): number {
  expect(to.length).toBe(from.length);
  const at = readFileSync(log).indexOf(from, start);
  expect(at).toBeGreaterThanOrEqual(0);
  const fd = openSync(log, 'r+');
  try {
    writeSync(fd, Buffer.from(to), 0, to.length, at);
  } finally {
    closeSync(fd);
  }
  return at;
}

const query = { domain: 'implementation', limit: 2, taskId: TASK };

describe('the freshness boundary', () => {
  test('an in-place edit inside the fingerprinted 4 KiB, then an append: the tail is refused and the log rescanned', async ({ dir }) => {
    const { options, log } = await setup(dir);
    const size = readFileSync(log).length;
    // The last record's score, within the last 4 KiB before the index's offset.
    editInPlace(log, '"gtScore":0.1,', '"gtScore":0.7,', size - 600);
    appendFileSync(log, JSON.stringify({ ...JSON.parse(readFileSync(log, 'utf8').split('\n')[1]!), id: 'exp-appended' }) + '\n');
    const got = await new ExperienceStore(options).fetchTopDetailed(query);
    expect(got.stats).toMatchObject({ fullScans: 1, tails: 0 });
    expect(got.records).toEqual(await oracleTop(options.outDir, query));
  });

  test('a same-size rewrite that restores the mtime still moves ctime: a rescan, not the stale index', async ({ dir }) => {
    const { options, log } = await setup(dir);
    editInPlace(log, '"gtScore":0.9,', '"gtScore":0.0,');
    const got = await new ExperienceStore(options).fetchTopDetailed(query);
    expect(got.stats.indexHits).toBe(0);
    expect(got.records).toEqual(await oracleTop(options.outDir, query));
  });

  test('a same-length edit more than 4 KiB before the offset, then an append, passes as an append: fetches answer the old content until verify or a rebuild', async ({ dir }) => {
    const { options, log } = await setup(dir);
    const size = readFileSync(log).length;
    // The best record, at the start of the log, far outside the fingerprinted bytes.
    const at = editInPlace(log, '"gtScore":0.9,', '"gtScore":0.0,');
    expect(size - at).toBeGreaterThan(FINGERPRINT_BYTES);
    appendFileSync(log, readFileSync(log, 'utf8').split('\n')[3]!.replace('"runId":"r0-2"', '"runId":"tail"') + '\n');

    const stale = await new ExperienceStore(options).fetchTopDetailed(query);
    const truth = await oracleTop(options.outDir, query);
    // The boundary: stat and fingerprint look exactly as after an append, so the tail path is taken...
    expect(stale.stats).toMatchObject({ tails: 1, fullScans: 0 });
    // ...and the answer still holds the edited record with its old score: not what the log now says.
    expect(stale.records[0]!.runId).toBe('first');
    expect(stale.records[0]!.reward.gtScore).toBe(0.9);
    expect(stale.records).not.toEqual(truth);
    // A full scan (useIndex: false, or a rebuild) sees the edit, and verify names it.
    expect(await new ExperienceStore({ ...options, useIndex: false }).fetchTop(query)).toEqual(truth);
    const [report] = await new ExperienceStore(options).verify({ taskId: TASK });
    expect(report!.ok).toBe(false);
    expect(report!.problems.map((p) => p.domain)).toContain('implementation');
    await new ExperienceStore(options).rebuildIndex(TASK);
    expect(await new ExperienceStore(options).fetchTop(query)).toEqual(truth);
  });
});
