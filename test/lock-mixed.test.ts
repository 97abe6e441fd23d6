/**
 * Writers of three generations share one task: the older design (an empty
 * O_EXCL lock file), ours, and the newer orchestrator (a JSON owner record
 * written after open, its mtime refreshed, a side lock around each try). Real
 * processes; the log shows whether any two of them ever interleaved.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, expect } from 'vitest';
import { ensureBuilt, PACKAGE_ENTRY, ROOT } from './support/build.js';
// @ts-expect-error plain JavaScript support file, no type declarations
import { killLockChildren, spawnLockChild as spawnUntyped } from './support/lock-child.mjs';
import { test } from './support/temp-dir.js';

interface LockChild {
  pid: number;
  process: ChildProcess;
  lines: string[];
  waitForLine(prefix: string | string[]): Promise<string>;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

const spawnLockChild = spawnUntyped as (config: Record<string, unknown>, hook?: object) => LockChild;

const LOCK_MODULE = path.join(ROOT, 'dist', 'src', 'lock.js');
const BATCHES = 20;
const RECORDS = 3;

beforeAll(() => {
  try {
    ensureBuilt();
  } catch (err) {
    if (statSync(LOCK_MODULE).mtimeMs < statSync(path.join(ROOT, 'src', 'lock.ts')).mtimeMs) throw err;
  }
});

afterEach(() => killLockChildren());

async function succeeded(child: LockChild): Promise<string[]> {
  const { code, stderr } = await child.exited;
  expect(code, stderr).toBe(0);
  return child.lines;
}

test('older, our and newer-orchestrator writers exclude each other: nothing lost, doubled or interleaved', async ({ dir }) => {
  const outDir = path.join(dir, 'out');
  const runsDir = path.join(dir, 'runs');
  const lockPath = path.join(runsDir, 'task-a.experiences.lock');
  const logPath = path.join(outDir, 'task-a', 'experiences.jsonl');
  const goFile = path.join(dir, 'go');
  // Foreign writers append line by line, slowly: a writer entering during their batch would split it.
  const common = { taskId: 'task-a', batches: BATCHES, records: RECORDS, goFile, pauseMs: 20, lineDelayMs: 2 };
  const writers = [
    spawnLockChild({ mode: 'older-writer', name: 'older', lockPath, logPath, ...common }),
    spawnLockChild({
      mode: 'writer',
      name: 'ours',
      entry: PACKAGE_ENTRY,
      outDir,
      runsDir,
      // Patient: this test is about exclusion, not the retry budget.
      lockRetry: { maxAttempts: 1000, initialDelayMs: 2, maxDelayMs: 20 },
      ...common,
    }),
    spawnLockChild({ mode: 'orchestrator-writer', name: 'newer', lockPath, logPath, staleMs: 60, holdMs: 40, ...common }),
  ];
  await Promise.all(writers.map((w) => w.waitForLine('ready')));
  writeFileSync(goFile, '');
  const acknowledged = (await Promise.all(writers.map(succeeded))).flat().filter((line) => line !== 'ready');

  const records = readFileSync(logPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { id: string; runId: string });
  // Each id once; each acknowledged id present.
  expect(new Set(records.map((r) => r.id)).size).toBe(records.length);
  const ids = new Set(records.map((r) => r.id));
  for (const id of acknowledged) expect(ids.has(id), id).toBe(true);
  expect(records).toHaveLength(3 * BATCHES * RECORDS);
  // Each batch is one contiguous run of lines: no writer appended inside another's batch.
  const batchOf = (r: { runId: string }) => {
    const [, name, n] = /^(.*)-run-(\d+)$/.exec(r.runId)!;
    return `${name}/${Math.floor(Number(n) / RECORDS)}`;
  };
  const runs = records.map(batchOf).filter((batch, i, all) => batch !== all[i - 1]);
  expect(runs).toHaveLength(3 * BATCHES);
  expect(new Set(runs).size).toBe(runs.length);
});

test('a live newer-orchestrator owner is never taken over, however old its mtime; once it is dead, its lock is judged by age', async ({ dir }) => {
  const lockPath = path.join(dir, 'runs', 'task-a.experiences.lock');
  const journal = path.join(dir, 'journal');
  const owner = spawnLockChild({ mode: 'orchestrator-hold', lockPath, taskId: 'task-a', staleMs: 600_000 });
  await owner.waitForLine('holding');
  const dayAgo = new Date(Date.now() - 86_400_000);
  utimesSync(lockPath, dayAgo, dayAgo);
  const record = readFileSync(lockPath, 'utf8');

  const retry = { maxAttempts: 3, initialDelayMs: 5, backoffFactor: 2, maxDelayMs: 20, staleMs: 1000 };
  const hold = (name: string) => spawnLockChild({ mode: 'hold', lockModule: LOCK_MODULE, lockPath, retry, journal, name });
  const refused = hold('refused');
  expect(await refused.waitForLine(['failed', 'holding'])).toBe('failed EXP_LOCKED');
  expect(readFileSync(lockPath, 'utf8')).toBe(record);

  owner.process.kill('SIGKILL');
  await owner.exited;
  // Its record names no boot or pid namespace: an absent pid is not proof, so the age rule decides.
  const now = new Date();
  utimesSync(lockPath, now, now);
  const young = hold('young');
  expect(await young.waitForLine(['failed', 'holding'])).toBe('failed EXP_LOCKED');
  utimesSync(lockPath, dayAgo, dayAgo);
  const old = hold('old');
  expect(await old.waitForLine(['failed', 'holding'])).toBe('holding');
  await old.exited;
});
