import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreLockError } from '../src/index.js';
import { DEFAULT_LOCK_RETRY, tryWithTaskLock, withTaskLock, type LockRetry } from '../src/lock.js';
import { taskPaths } from '../src/paths.js';
import { makeInput } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const FAST: LockRetry = { ...DEFAULT_LOCK_RETRY, maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 };

function lockOf(dir: string, taskId = 'task-a'): string {
  return taskPaths(path.join(dir, 'out'), path.join(dir, 'runs'), taskId).lock;
}

function holdLock(lockPath: string, content = '{"pid":1,"token":"someone-else"}'): void {
  mkdirSync(path.dirname(lockPath), { recursive: true });
  writeFileSync(lockPath, content, { flag: 'wx' });
}

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('withTaskLock', () => {
  test('holds <runsDir>/<taskId>.experiences.lock with an owner token while running, and removes it after', async ({ dir }) => {
    const lock = lockOf(dir);
    expect(lock).toBe(path.join(dir, 'runs', 'task-a.experiences.lock'));
    let seen: string | undefined;
    const result = await withTaskLock(lock, 'task-a', FAST, async () => {
      seen = readFileSync(lock, 'utf8');
      return 42;
    });
    expect(result).toBe(42);
    expect(JSON.parse(seen!)).toMatchObject({ pid: process.pid, host: hostname(), token: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(existsSync(lock)).toBe(false);
  });

  test('creates a missing runs directory', async ({ dir }) => {
    const lock = path.join(dir, 'deep', 'runs', 'task-a.experiences.lock');
    await withTaskLock(lock, 'task-a', FAST, async () => expect(existsSync(lock)).toBe(true));
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('releases the lock when the work throws, and passes the error on', async ({ dir }) => {
    const lock = lockOf(dir);
    const err = await rejection(withTaskLock(lock, 'task-a', FAST, async () => {
      throw new Error('boom');
    }));
    expect(err.message).toBe('boom');
    expect(existsSync(lock)).toBe(false);
  });

  test('fails with EXP_LOCKED naming the task and the lock path after maxAttempts, leaving the held lock alone', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    let ran = false;
    const err = await rejection(withTaskLock(lock, 'task-a', FAST, async () => {
      ran = true;
    }));
    expect(err).toBeInstanceOf(ExperienceStoreLockError);
    expect(err.code).toBe('EXP_LOCKED');
    expect(err.taskId).toBe('task-a');
    expect(err.message).toContain(lock);
    expect(err.message).toContain('3 attempt');
    expect(ran).toBe(false);
    expect(readFileSync(lock, 'utf8')).toBe('{"pid":1,"token":"someone-else"}');
  });

  test('takes the lock on a later attempt once its holder releases it', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    setTimeout(() => unlinkSync(lock), 20);
    const retry = { ...FAST, maxAttempts: 1000, initialDelayMs: 5, maxDelayMs: 5 };
    await expect(withTaskLock(lock, 'task-a', retry, async () => 'done')).resolves.toBe('done');
  });

  test('clears a lock whose mtime is older than staleMs (its owner was killed)', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    let content: string | undefined;
    await withTaskLock(lock, 'task-a', { ...FAST, maxAttempts: 1, staleMs: 30_000 }, async () => {
      content = readFileSync(lock, 'utf8');
    });
    expect(JSON.parse(content!).pid).toBe(process.pid);
    expect(readdirSync(path.dirname(lock))).toEqual([]); // no claimed ".stale-" file left behind
  });

  test('does not clear a lock younger than staleMs', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    const recent = new Date(Date.now() - 10_000);
    utimesSync(lock, recent, recent);
    const err = await rejection(withTaskLock(lock, 'task-a', { ...FAST, staleMs: 30_000 }, async () => undefined));
    expect(err.code).toBe('EXP_LOCKED');
    expect(readdirSync(path.dirname(lock))).toEqual(['task-a.experiences.lock']);
  });

  test('does not remove a lock that another owner took over while it ran', async ({ dir }) => {
    const lock = lockOf(dir);
    const theirs = '{"pid":2,"token":"took-over"}';
    await withTaskLock(lock, 'task-a', FAST, async () => {
      // Another writer judged us stale, cleared our file and took the lock.
      unlinkSync(lock);
      holdLock(lock, theirs);
    });
    expect(readFileSync(lock, 'utf8')).toBe(theirs);
  });

  test('runs many concurrent callers one at a time, in call order, without burning lock retries', async ({ dir }) => {
    const lock = lockOf(dir);
    const order: number[] = [];
    let inside = 0;
    let maxInside = 0;
    const calls = Array.from({ length: 25 }, (_, i) =>
      withTaskLock(lock, 'task-a', { ...FAST, maxAttempts: 1 }, async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await new Promise((r) => setImmediate(r));
        order.push(i);
        inside--;
      }),
    );
    await Promise.all(calls);
    expect(order).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(maxInside).toBe(1);
    expect(existsSync(lock)).toBe(false);
  });

  test('a failed caller does not block the callers queued behind it', async ({ dir }) => {
    const lock = lockOf(dir);
    const results = await Promise.allSettled([
      withTaskLock(lock, 'task-a', FAST, async () => 1),
      withTaskLock(lock, 'task-a', FAST, async () => {
        throw new Error('second fails');
      }),
      withTaskLock(lock, 'task-a', FAST, async () => 3),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(existsSync(lock)).toBe(false);
  });

  test('locks of different tasks do not wait for each other', async ({ dir }) => {
    let releaseA!: () => void;
    const a = withTaskLock(lockOf(dir, 'a'), 'a', FAST, () => new Promise<void>((r) => (releaseA = r)));
    await new Promise((r) => setImmediate(r));
    await expect(withTaskLock(lockOf(dir, 'b'), 'b', { ...FAST, maxAttempts: 1 }, async () => 'b')).resolves.toBe('b');
    releaseA();
    await a;
  });
});

describe('tryWithTaskLock', () => {
  test('runs the work when the lock is free and removes the lock after', async ({ dir }) => {
    const lock = lockOf(dir);
    mkdirSync(path.dirname(lock), { recursive: true });
    await expect(tryWithTaskLock(lock, async () => existsSync(lock))).resolves.toBe(true);
    expect(existsSync(lock)).toBe(false);
  });

  test('returns undefined at once when another process holds the lock file', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    let ran = false;
    await expect(tryWithTaskLock(lock, async () => (ran = true))).resolves.toBeUndefined();
    expect(ran).toBe(false);
    expect(existsSync(lock)).toBe(true);
  });

  test('returns undefined while a writer of this process holds or waits for the lock', async ({ dir }) => {
    const lock = lockOf(dir);
    let release!: () => void;
    const writer = withTaskLock(lock, 'task-a', FAST, () => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setImmediate(r));
    await expect(tryWithTaskLock(lock, async () => 'ran')).resolves.toBeUndefined();
    release();
    await writer;
    await expect(tryWithTaskLock(lock, async () => 'ran')).resolves.toBe('ran');
  });
});

describe('ExperienceStore and the lock', () => {
  test('recordBatch fails with EXP_LOCKED while another process holds the task lock, and writes nothing', async ({ dir }) => {
    const store = new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), lockRetry: FAST });
    const lock = lockOf(dir);
    holdLock(lock);
    const err = await rejection(store.recordBatch([makeInput()], 'm.json'));
    expect(err.code).toBe('EXP_LOCKED');
    expect(err.taskId).toBe('task-a');
    expect(err.message).toContain(lock);
    expect(existsSync(path.join(dir, 'out', 'task-a', 'experiences.jsonl'))).toBe(false);
  });

  test('concurrent batches from several store instances of one process all succeed with maxAttempts 1', async ({ dir }) => {
    const options = { outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), lockRetry: { maxAttempts: 1 } };
    const stores = [new ExperienceStore(options), new ExperienceStore(options), new ExperienceStore(options)];
    const batches = Array.from({ length: 30 }, (_, i) =>
      stores[i % 3]!.recordBatch([makeInput({ runId: `run-${i}` }), makeInput({ runId: `run-${i}b` })], 'm.json'),
    );
    await Promise.all(batches);
    const lines = readFileSync(path.join(dir, 'out', 'task-a', 'experiences.jsonl'), 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(60);
    expect(new Set(lines.map((l) => JSON.parse(l).runId)).size).toBe(60);
    expect(existsSync(lockOf(dir))).toBe(false);
  });
});
