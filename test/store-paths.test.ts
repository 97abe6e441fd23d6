import { appendFile, chmod, copyFile, mkdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { existsSync, mkdirSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ExperienceStore, type ExperienceRecord, type ExperienceStoreOptions } from '../src/index.js';
import { makeInput, STAMP } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const FIXTURES = new URL('../fixtures/', import.meta.url);

/** A store whose runsDir exists, as an orchestrator's does: readers heal the index only there. */
function storeIn(dir: string, options: ExperienceStoreOptions = {}): ExperienceStore {
  mkdirSync(path.join(dir, 'runs'), { recursive: true });
  return new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), ...options });
}

function files(dir: string, taskId = 'task-a') {
  const taskDir = path.join(dir, 'out', taskId);
  return { taskDir, log: path.join(taskDir, 'experiences.jsonl'), index: path.join(taskDir, 'experiences.top.json') };
}

/** Copy a fixture log to <dir>/out/<taskId>/experiences.jsonl; fixtures themselves are never written. */
async function copyFixture(name: string, dir: string, taskId = name): Promise<string> {
  const { taskDir, log } = files(dir, taskId);
  await mkdir(taskDir, { recursive: true });
  await copyFile(new URL(`${name}/experiences.jsonl`, FIXTURES), log);
  return log;
}

let serial = 0;
/** A record line as an older writer appends it, bypassing this library. */
function foreignLine(score: number, domain = 'implementation'): string {
  const n = serial++;
  const record: ExperienceRecord = {
    id: `exp-foreign-${n.toString(16).padStart(6, '0')}`,
    runId: `foreign-${n}`,
    taskId: 'task-a',
    epoch: null,
    groupId: null,
    summary32: `appended by an older writer ${n}`,
    reward: { gtScore: score, relativeRank: 0 },
    toolStats: [],
    stampSignature: STAMP,
    domain,
    createdAt: '2030-01-01T00:00:00.000Z',
    manifestPath: 'legacy.json',
  };
  return `${JSON.stringify(record)}\n`;
}

/** Five records in "implementation" with scores 0.1 .. 0.5, two in "review". */
async function seed(dir: string, options: ExperienceStoreOptions = {}): Promise<ExperienceRecord[]> {
  const inputs = [0.1, 0.2, 0.3, 0.4, 0.5].map((gt, i) => makeInput({ runId: `run-${i}`, reward: { gtScore: gt, relativeRank: 0 } }));
  inputs.push(
    makeInput({ runId: 'rev-1', domain: 'review', reward: { gtScore: 0.9, relativeRank: 0 } }),
    makeInput({ runId: 'rev-2', domain: 'review', reward: { gtScore: 0.8, relativeRank: 0 } }),
  );
  return storeIn(dir, options).recordBatch(inputs, 'manifest.json');
}

const query = { domain: 'implementation', limit: 3, taskId: 'task-a' };
const runIds = (records: ExperienceRecord[]) => records.map((r) => r.runId);

describe('answering from the index', () => {
  test('answers from a fresh index without reading the log', async ({ dir }) => {
    await seed(dir);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(runIds(r.records)).toEqual(['run-4', 'run-3', 'run-2']);
    expect(r.stats).toEqual({ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 });
    expect(r.truncated).toBe(false);
  });

  test('answers a repeated fetch on the same instance from the index', async ({ dir }) => {
    await seed(dir);
    const store = storeIn(dir);
    await store.fetchTopDetailed(query);
    const again = await store.fetchTopDetailed(query);
    expect(again.stats).toMatchObject({ indexHits: 1, bytesRead: 0 });
    expect(runIds(again.records)).toEqual(['run-4', 'run-3', 'run-2']);
  });

  test('hands out copies: editing a returned record does not change the next answer', async ({ dir }) => {
    await seed(dir);
    const store = storeIn(dir);
    const first = await store.fetchTop(query);
    first[0]!.reward.gtScore = -100;
    first[0]!.summary32 = 'edited';
    const second = await store.fetchTop(query);
    expect(second[0]!.reward.gtScore).toBe(0.5);
    expect(second[0]!.summary32).not.toBe('edited');
  });
});

describe('a log that grew since its index', () => {
  test('reads only the bytes a foreign writer appended, then heals the index', async ({ dir }) => {
    await seed(dir);
    const { log } = files(dir);
    const appended = foreignLine(9) + foreignLine(0.01) + foreignLine(7, 'review');
    await appendFile(log, appended);

    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toEqual({ indexHits: 0, tails: 1, fullScans: 0, bytesRead: Buffer.byteLength(appended), linesRead: 3 });
    expect(runIds(r.records)).toEqual(['foreign-' + (serial - 3), 'run-4', 'run-3']);

    const next = await storeIn(dir).fetchTopDetailed(query);
    expect(next.stats).toMatchObject({ indexHits: 1, bytesRead: 0 });
    expect(next.records).toEqual(r.records);
  });

  test('the instance that wrote the index also reads just the tail', async ({ dir }) => {
    const store = storeIn(dir);
    await store.recordBatch([makeInput({ runId: 'mine' })], 'm.json');
    const appended = foreignLine(5);
    await appendFile(files(dir).log, appended);
    const r = await store.fetchTopDetailed(query);
    expect(r.stats).toMatchObject({ tails: 1, fullScans: 0, bytesRead: Buffer.byteLength(appended) });
    expect(r.records.map((x) => x.summary32)).toHaveLength(2);
  });

  test('leaves an unterminated appended line for later: not a record, not counted', async ({ dir }) => {
    await seed(dir);
    const { log } = files(dir);
    const whole = foreignLine(9);
    const half = foreignLine(8).slice(0, 40);
    await appendFile(log, whole + half);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toMatchObject({ tails: 1, linesRead: 1 });
    expect(r.records[0]!.reward.gtScore).toBe(9);
    // The writer finishes its line: the next reader picks it up from the healed index's offset.
    await appendFile(log, foreignLine(8).slice(40));
    const later = await storeIn(dir).fetchTopDetailed(query);
    expect(later.stats).toMatchObject({ tails: 1, linesRead: 1 });
    expect(later.records.map((x) => x.reward.gtScore)).toEqual([9, 8, 0.5]);
  });
});

describe('falling back to a full scan, and healing', () => {
  /** The version lives in the prefix line, which no checksum covers: only the version check can reject it. */
  async function withVersion(index: string, version: number): Promise<void> {
    const text = await readFile(index, 'utf8');
    const end = text.indexOf('\n');
    const prefix = JSON.parse(text.slice(0, end));
    prefix.version = version;
    await writeFile(index, JSON.stringify(prefix) + text.slice(end));
  }

  const breakages: Array<[string, (index: string) => Promise<void>]> = [
    ['deleted', (index) => rm(index)],
    ['emptied', (index) => writeFile(index, '')],
    ['not JSON', (index) => writeFile(index, 'garbage\n')],
    ['cut in half', async (index) => {
      const bytes = await readFile(index);
      await writeFile(index, bytes.subarray(0, bytes.length >> 1));
    }],
    ['one byte flipped', async (index) => {
      const bytes = await readFile(index);
      bytes[40] = bytes[40]! ^ 0x01;
      await writeFile(index, bytes);
    }],
    ['of another version', (index) => withVersion(index, 3)],
    ['of the previous version', (index) => withVersion(index, 1)],
  ];

  test.for(breakages)('scans the whole log when the index is %s, then heals it', async ([, breakIndex], { dir }) => {
    await seed(dir);
    const { log, index } = files(dir);
    await breakIndex(index);
    const logSize = (await stat(log)).size;

    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toEqual({ indexHits: 0, tails: 0, fullScans: 1, bytesRead: logSize, linesRead: 7 });
    expect(runIds(r.records)).toEqual(['run-4', 'run-3', 'run-2']);

    const next = await storeIn(dir).fetchTopDetailed(query);
    expect(next.stats).toMatchObject({ indexHits: 1, fullScans: 0, bytesRead: 0 });
    expect(next.records).toEqual(r.records);
  });

  test('scans the whole log when it was truncated, and answers from what is left', async ({ dir }) => {
    await seed(dir);
    const { log } = files(dir);
    const lines = (await readFile(log, 'utf8')).split('\n');
    const kept = lines.slice(0, 2).join('\n') + '\n'; // run-0 and run-1
    await writeFile(log, kept);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toMatchObject({ fullScans: 1, bytesRead: Buffer.byteLength(kept) });
    expect(runIds(r.records)).toEqual(['run-1', 'run-0']);
  });

  test('scans the whole log when it was replaced by a rename, even with the same size', async ({ dir }) => {
    await seed(dir);
    const { log, taskDir } = files(dir);
    const original = await readFile(log, 'utf8');
    // Same length, other content: run-0 now has the best score (0.1 -> 0.9).
    const replaced = original.replace('"gtScore":0.1', '"gtScore":0.9');
    expect(replaced.length).toBe(original.length);
    const tmp = path.join(taskDir, 'experiences.jsonl.tmp');
    await writeFile(tmp, replaced);
    await rename(tmp, log);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toMatchObject({ fullScans: 1, tails: 0, indexHits: 0 });
    expect(runIds(r.records)).toEqual(['run-0', 'run-4', 'run-3']);
  });

  test('scans the whole log when its mtime changed but its size did not', async ({ dir }) => {
    await seed(dir);
    const { log } = files(dir);
    const later = new Date(Date.now() + 60_000);
    await utimes(log, later, later);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.stats).toMatchObject({ fullScans: 1, indexHits: 0 });
    expect(runIds(r.records)).toEqual(['run-4', 'run-3', 'run-2']);
  });

  test('scans the whole log when the limit exceeds K and the domain holds more than K records', async ({ dir }) => {
    await seed(dir, { indexTopK: 2 });
    const store = storeIn(dir, { indexTopK: 2 });
    const small = await store.fetchTopDetailed({ ...query, limit: 2 });
    expect(small.stats).toMatchObject({ indexHits: 1 });
    const big = await store.fetchTopDetailed({ ...query, limit: 4 });
    expect(big.stats).toMatchObject({ indexHits: 0, fullScans: 1 });
    expect(runIds(big.records)).toEqual(['run-4', 'run-3', 'run-2', 'run-1']);
    // "review" holds 2 records, no more than K: the index answers any limit.
    const review = await store.fetchTopDetailed({ domain: 'review', limit: 10, taskId: 'task-a' });
    expect(review.stats).toMatchObject({ indexHits: 1 });
    expect(runIds(review.records)).toEqual(['rev-1', 'rev-2']);
  });

  test('answers nothing, reading nothing, once the log is deleted', async ({ dir }) => {
    await seed(dir);
    await rm(files(dir).log);
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(r.records).toEqual([]);
    expect(r.stats).toEqual({ indexHits: 0, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 });
  });
});

describe('writing when the index cannot be written', () => {
  /** Whether permissions bind in this process (they do not for root). */
  async function permissionsBind(dir: string): Promise<boolean> {
    const probe = path.join(dir, 'probe');
    await mkdir(probe);
    await chmod(probe, 0o555);
    try {
      await writeFile(path.join(probe, 'x'), '');
      return false;
    } catch {
      return true;
    } finally {
      await chmod(probe, 0o755);
    }
  }

  test('recordBatch still appends when the task directory is read-only', async ({ dir, skip }) => {
    if (!(await permissionsBind(dir))) skip('file permissions do not bind for this user (root)');
    await seed(dir);
    const { taskDir, log, index } = files(dir);
    const indexBefore = await readFile(index);
    await chmod(taskDir, 0o555);
    try {
      const written = await storeIn(dir).recordBatch([makeInput({ runId: 'while-read-only', reward: { gtScore: 5, relativeRank: 0 } })], 'm.json');
      expect(written).toHaveLength(1);
      expect((await readFile(index)).equals(indexBefore)).toBe(true);
      const r = await storeIn(dir).fetchTopDetailed(query);
      expect(runIds(r.records)).toEqual(['while-read-only', 'run-4', 'run-3']);
      expect(r.stats).toMatchObject({ tails: 1 });
    } finally {
      await chmod(taskDir, 0o755);
    }
    expect((await readFile(log, 'utf8')).trimEnd().split('\n')).toHaveLength(8);
  });

  test('recordBatch still appends when a directory sits where the index file belongs', async ({ dir }) => {
    const { index } = files(dir);
    await mkdir(index, { recursive: true });
    const store = storeIn(dir);
    await store.recordBatch([makeInput({ runId: 'a' })], 'm.json');
    await store.recordBatch([makeInput({ runId: 'b', reward: { gtScore: 2, relativeRank: 0 } })], 'm.json');
    const r = await storeIn(dir).fetchTopDetailed(query);
    expect(runIds(r.records)).toEqual(['b', 'a']);
    expect(r.stats).toMatchObject({ fullScans: 1 });
  });
});

describe('a log a crashed writer left without a final newline', () => {
  test('recordBatch terminates the partial line first: it becomes one malformed line, the new records stay readable', async ({ dir }) => {
    const log = await copyFixture('basic', dir, 'task-a');
    const before = await readFile(log);
    expect(before[before.length - 1]).not.toBe(0x0a);

    const store = storeIn(dir);
    await store.recordBatch(
      [makeInput({ runId: 'new-1', reward: { gtScore: 3, relativeRank: 0 } }), makeInput({ runId: 'new-2', reward: { gtScore: 2, relativeRank: 0 } })],
      'm.json',
    );
    const after = await readFile(log);
    expect(after.subarray(0, before.length).equals(before)).toBe(true);
    expect(after[before.length]).toBe(0x0a);

    const r = await storeIn(dir).fetchTopDetailed({ ...query, limit: 10 });
    expect(runIds(r.records)).toEqual(['new-1', 'new-2', 'run-000001', 'run-000006', 'run-000002']);
    expect(await storeIn(dir).rebuildIndex('task-a')).toEqual({ tasks: 1, records: 9, malformed: 7 });
  });
});

describe('fixtures through every path', () => {
  const BASIC = {
    implementation: ['exp-m0a1b2c3-000001', 'exp-m0a1b2c3-000006', 'exp-m0a1b2c3-000002'],
    review: ['exp-m0a1b2c3-000003', 'exp-m0a1b2c3-000004'],
    planning: ['exp-m0a1b2c3-000005', 'exp-m0a1b2c3-000007'],
  };
  const TIES = ['exp-y', 'exp-c', 'exp-B', 'exp-a', 'exp-a', 'exp-b', 'exp-z'];

  test('rebuildIndex counts every task, record and malformed line', async ({ dir }) => {
    await copyFixture('basic', dir);
    await copyFixture('ties', dir);
    const store = storeIn(dir, { indexTopK: 2 });
    expect(await store.rebuildIndex()).toEqual({ tasks: 2, records: 14, malformed: 6 });
    expect(await store.rebuildIndex('ties')).toEqual({ tasks: 1, records: 7, malformed: 0 });
    expect(await store.rebuildIndex('no-such-task')).toEqual({ tasks: 0, records: 0, malformed: 0 });
    const header = JSON.parse((await readFile(files(dir, 'basic').index, 'utf8')).split('\n')[1]!);
    expect(header).toMatchObject({ k: 2, records: 7, malformed: 6, log: { offset: 4870, size: 4960 } });
  });

  test('gives the answers fixtures/README.md lists, by full scan and then from the index', async ({ dir }) => {
    await copyFixture('basic', dir);
    await copyFixture('ties', dir);
    for (const [domain, ids] of Object.entries(BASIC)) {
      const scan = await storeIn(dir).fetchTopDetailed({ domain, limit: 10, taskId: 'basic' });
      expect(scan.records.map((r) => r.id), domain).toEqual(ids);
      const fromIndex = await storeIn(dir).fetchTopDetailed({ domain, limit: 10, taskId: 'basic' });
      expect(fromIndex.stats.indexHits, domain).toBe(1);
      expect(fromIndex.records).toEqual(scan.records);
    }
    const ties = await storeIn(dir).fetchTop({ domain: 'ties', limit: 10 });
    expect(ties.map((r) => r.id)).toEqual(TIES);
    // The two "exp-a" records tie on every key: log order decides (gtScore 0.75 first).
    expect(ties.filter((r) => r.id === 'exp-a').map((r) => r.reward.gtScore)).toEqual([0.75, 0.5]);
  });

  test('keeps unknown fields and unicode of a record exactly as the log holds them', async ({ dir }) => {
    await copyFixture('basic', dir);
    const [planning] = await storeIn(dir).fetchTop({ domain: 'planning', limit: 1 });
    expect(planning).toMatchObject({ reviewer: 'kept-unknown-field' });
    const review = await storeIn(dir).fetchTop({ domain: 'review', limit: 2 });
    expect(review[1]!.summary32).toBe('修复了上传器中的重试循环 🚀 emoji and 日本語');
    expect(review[0]!.epoch).toBeNull();
  });

  test('reads every task directory without a taskId, but not dot-directories or stray files', async ({ dir }) => {
    await copyFixture('basic', dir);
    await copyFixture('basic', dir, 'copy');
    await copyFixture('basic', dir, '.hidden');
    await writeFile(path.join(dir, 'out', 'stray-file'), 'not a task');
    const r = await storeIn(dir).fetchTop({ domain: 'planning', limit: 10, minReward: 0 });
    expect(r.map((x) => x.id)).toEqual(['exp-m0a1b2c3-000005', 'exp-m0a1b2c3-000005']);
  });

  test('trims the queried domain and answers [] for an empty domain or a limit <= 0', async ({ dir }) => {
    await copyFixture('basic', dir);
    const store = storeIn(dir);
    expect((await store.fetchTop({ domain: '  review\t', limit: 1 })).map((r) => r.id)).toEqual(['exp-m0a1b2c3-000003']);
    expect(await store.fetchTop({ domain: '   ', limit: 5 })).toEqual([]);
    expect(await store.fetchTop({ domain: 'review', limit: 0 })).toEqual([]);
    expect(await store.fetchTop({ domain: 'review', limit: -1 })).toEqual([]);
  });
});

describe('changes that stat alone could miss', () => {
  test('notices a same-size rewrite whose mtime was set back, even long after the last write', async ({ dir }) => {
    await seed(dir);
    // Push the line we will change out of the 4 KiB the fingerprint covers:
    // then neither the fingerprint nor size and mtime can tell the change, only ctime.
    const filler = Array.from({ length: 20 }, (_, i) => makeInput({ runId: `filler-${i}`, domain: 'filler' }));
    await storeIn(dir).recordBatch(filler, 'manifest.json');
    const { log } = files(dir);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(log, anHourAgo, anHourAgo);
    const store = storeIn(dir);
    expect(runIds(await store.fetchTop(query))).toEqual(['run-4', 'run-3', 'run-2']);
    const before = await stat(log, { bigint: true });

    const text = await readFile(log, 'utf8');
    await writeFile(log, text.replace('"gtScore":0.1,', '"gtScore":0.9,'));
    await utimes(log, anHourAgo, anHourAgo);
    const after = await stat(log, { bigint: true });
    expect([after.size, after.mtimeNs]).toEqual([before.size, before.mtimeNs]);

    const r = await store.fetchTopDetailed(query);
    expect(r.stats.fullScans).toBe(1);
    expect(runIds(r.records)).toEqual(['run-0', 'run-4', 'run-3']);
    expect(runIds(await storeIn(dir).fetchTop(query))).toEqual(['run-0', 'run-4', 'run-3']);
  });

  test('a literal -0 in a log line comes back as -0 from the index, as from a full scan', async ({ dir }) => {
    await seed(dir);
    const { log } = files(dir);
    const line = foreignLine(1).replace('"relativeRank":0', '"relativeRank":-0').replace('"epoch":null', '"epoch":-0');
    await appendFile(log, line);
    const want = await storeIn(dir, { useIndex: false }).fetchTop(query);
    expect(Object.is(want[0]!.reward.relativeRank, -0)).toBe(true);

    await storeIn(dir).fetchTop(query); // tail, then heal: the record is now in the index
    const fromIndex = await storeIn(dir).fetchTopDetailed(query);
    expect(fromIndex.stats.indexHits).toBe(1);
    expect(fromIndex.records).toEqual(want);
    expect(Object.is(fromIndex.records[0]!.reward.relativeRank, -0)).toBe(true);
    expect(Object.is(fromIndex.records[0]!.epoch, -0)).toBe(true);
  });

  test('recordBatch writes -0 input as 0 and returns what the log holds', async ({ dir }) => {
    const [written] = await storeIn(dir).recordBatch(
      [makeInput({ epoch: -0, reward: { gtScore: -0, relativeRank: 0 } })],
      'manifest.json',
    );
    const [read] = await storeIn(dir, { useIndex: false }).fetchTop(query);
    expect(read).toEqual(written);
    expect(Object.is(written!.reward.gtScore, 0)).toBe(true);
    expect(Object.is(written!.epoch, 0)).toBe(true);
  });

  test('gives every record of a large batch its own id', async ({ dir }) => {
    const inputs = Array.from({ length: 3000 }, (_, i) => makeInput({ runId: `run-${i}` }));
    const records = await storeIn(dir, { now: () => new Date(1_800_000_000_000) }).recordBatch(inputs, 'manifest.json');
    expect(new Set(records.map((r) => r.id)).size).toBe(3000);
  });
});

describe('readers create nothing', () => {
  test('a fetch in a store whose runsDir does not exist answers by scan, creates no directory, and leaves the index to writers', async ({ dir }) => {
    await copyFixture('basic', dir);
    const runsDir = path.join(dir, 'no-runs-here');
    const store = new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir });
    const first = await store.fetchTopDetailed({ domain: 'implementation', limit: 2, taskId: 'basic' });
    expect(first.stats.fullScans).toBe(1);
    expect((await store.selectTop({ domain: 'implementation', limit: 2, taskId: 'basic' })).records).toHaveLength(2);
    expect(existsSync(runsDir)).toBe(false);
    expect(existsSync(files(dir, 'basic').index)).toBe(false);
  });
});
