import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreLockError } from '../src/index.js';
import { DEFAULT_LOCK_RETRY, resolveLockRetry, tryWithTaskLock, withTaskLock, type LockRetry } from '../src/lock.js';
import { localIdentity } from '../src/lock-owner.js';
import { taskPaths } from '../src/paths.js';
import { makeInput } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const FAST: LockRetry = { ...DEFAULT_LOCK_RETRY, maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 2 };
const ONCE: LockRetry = { ...FAST, maxAttempts: 1 };
const HOUR_MS = 3_600_000;

function lockOf(dir: string, taskId = 'task-a'): string {
  return taskPaths(path.join(dir, 'out'), path.join(dir, 'runs'), taskId).lock;
}

function holdLock(lockPath: string, content = '{"pid":1,"token":"someone-else"}', ageMs = 0): void {
  mkdirSync(path.dirname(lockPath), { recursive: true });
  writeFileSync(lockPath, content, { flag: 'wx' });
  if (ageMs !== 0) setAge(lockPath, ageMs);
}

function setAge(file: string, ageMs: number): void {
  const when = new Date(Date.now() - ageMs);
  utimesSync(file, when, when);
}

function procStart(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

/** An owner record as this library writes it, for `pid`, with overrides. */
function ourRecord(pid: number, overrides: Record<string, unknown> = {}): string {
  const me = localIdentity();
  return (
    JSON.stringify({
      schema_version: 1,
      kind: 'codex-lock-owner',
      token: `token-of-${pid}`,
      task_id: 'task-a',
      pid,
      host: hostname(),
      acquired_at: new Date().toISOString(),
      stale_ms: 300_000,
      boot_id: me.bootId,
      pid_ns: me.pidNs,
      proc_start: existsSync(`/proc/${pid}`) ? procStart(pid) : '12345',
      ...overrides,
    }) + '\n'
  );
}

/** An owner record as the newer orchestrator writes it: no boot id, pid namespace or start time. */
function orchestratorRecord(pid: number, overrides: Record<string, unknown> = {}): string {
  return (
    JSON.stringify({
      schema_version: 1,
      kind: 'codex-lock-owner',
      token: 'orchestrator-token',
      task_id: 'task-a',
      pid,
      host: hostname(),
      acquired_at: new Date().toISOString(),
      stale_ms: 300_000,
      ...overrides,
    }) + '\n'
  );
}

async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

// A live process that is not us, and the pid of one that has exited.
let sleeper: ChildProcess;
let deadPid: number;

beforeAll(async () => {
  sleeper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], { stdio: 'ignore' });
  const gone = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => gone.on('exit', resolve));
  deadPid = gone.pid!;
});

afterAll(() => {
  sleeper.kill('SIGKILL');
});

describe('withTaskLock', () => {
  test('holds <runsDir>/<taskId>.experiences.lock with an owner record in the shared format while running, and leaves nothing after', async ({ dir }) => {
    const lock = lockOf(dir);
    expect(lock).toBe(path.join(dir, 'runs', 'task-a.experiences.lock'));
    let seen: string | undefined;
    const result = await withTaskLock(lock, 'task-a', FAST, async () => {
      seen = readFileSync(lock, 'utf8');
      return 42;
    });
    expect(result).toBe(42);
    expect(seen!.endsWith('\n')).toBe(true);
    expect(JSON.parse(seen!)).toMatchObject({
      schema_version: 1,
      kind: 'codex-lock-owner',
      token: expect.stringMatching(/^[0-9a-f]{32}$/),
      task_id: 'task-a',
      pid: process.pid,
      host: hostname(),
      acquired_at: expect.any(String),
      stale_ms: FAST.staleMs,
      boot_id: localIdentity().bootId,
      pid_ns: localIdentity().pidNs,
      proc_start: procStart(process.pid),
    });
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('creates a missing runs directory', async ({ dir }) => {
    const lock = path.join(dir, 'deep', 'runs', 'task-a.experiences.lock');
    await withTaskLock(lock, 'task-a', FAST, async () => expect(existsSync(lock)).toBe(true));
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('releases the lock when the work throws, and passes the error on', async ({ dir }) => {
    const lock = lockOf(dir);
    const err = await rejection(
      withTaskLock(lock, 'task-a', FAST, async () => {
        throw new Error('boom');
      }),
    );
    expect(err.message).toBe('boom');
    expect(existsSync(lock)).toBe(false);
  });

  test('fails with EXP_LOCKED after maxAttempts, naming the lock path, the owner and how to clear it, leaving the lock alone', async ({ dir }) => {
    const lock = lockOf(dir);
    const record = ourRecord(sleeper.pid!);
    holdLock(lock, record, 42_000);
    let ran = false;
    const err = await rejection(withTaskLock(lock, 'task-a', FAST, async () => (ran = true)));
    expect(err).toBeInstanceOf(ExperienceStoreLockError);
    expect(err.code).toBe('EXP_LOCKED');
    expect(err.taskId).toBe('task-a');
    expect(err.lockPath).toBe(lock);
    expect(err.message).toContain(lock);
    expect(err.message).toContain('3 attempt');
    expect(err.message).toContain(`pid ${sleeper.pid}`);
    expect(err.message).toContain(`host ${hostname()}`);
    expect(err.message).toContain('42 s ago');
    expect(err.message).toContain(`delete ${lock} by hand`);
    expect(ran).toBe(false);
    expect(readFileSync(lock, 'utf8')).toBe(record);
  });

  test('counts the first try in maxAttempts', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, '');
    const err = await rejection(withTaskLock(lock, 'task-a', ONCE, async () => undefined));
    expect(err.message).toContain('after 1 attempt');
  });

  test('takes the lock on a later attempt once its holder releases it', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock);
    setTimeout(() => unlinkSync(lock), 20);
    const retry = { ...FAST, maxAttempts: 1000, initialDelayMs: 5, maxDelayMs: 5 };
    await expect(withTaskLock(lock, 'task-a', retry, async () => 'done')).resolves.toBe('done');
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

  test('refreshes the mtime of the lock it holds every staleMs/2', async ({ dir }) => {
    const lock = lockOf(dir);
    await withTaskLock(lock, 'task-a', { ...FAST, staleMs: 40 }, async () => {
      setAge(lock, HOUR_MS);
      while (Date.now() - statSync(lock).mtimeMs > 1000) await new Promise((r) => setTimeout(r, 5));
    });
    expect(existsSync(lock)).toBe(false);
  });

  test('runs many concurrent callers one at a time, in call order, without burning lock retries', async ({ dir }) => {
    const lock = lockOf(dir);
    const order: number[] = [];
    let inside = 0;
    let maxInside = 0;
    const calls = Array.from({ length: 25 }, (_, i) =>
      withTaskLock(lock, 'task-a', ONCE, async () => {
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

  test('queues two spellings of one runs directory (a symlink) as one lock: no EXP_LOCKED with maxAttempts 1', async ({ dir }) => {
    mkdirSync(path.join(dir, 'runs'));
    symlinkSync(path.join(dir, 'runs'), path.join(dir, 'runs-link'));
    const spellings = [lockOf(dir), path.join(dir, 'runs-link', 'task-a.experiences.lock'), path.join(dir, 'runs-link', '..', 'runs', 'task-a.experiences.lock')];
    let inside = 0;
    let maxInside = 0;
    const calls = Array.from({ length: 30 }, (_, i) =>
      withTaskLock(spellings[i % 3]!, 'task-a', ONCE, async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await new Promise((r) => setTimeout(r, 1));
        inside--;
      }),
    );
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(maxInside).toBe(1);
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
    await expect(withTaskLock(lockOf(dir, 'b'), 'b', ONCE, async () => 'b')).resolves.toBe('b');
    releaseA();
    await a;
  });
});

describe('takeover', () => {
  const takes = (lock: string, staleMs = DEFAULT_LOCK_RETRY.staleMs) =>
    withTaskLock(lock, 'task-a', { ...ONCE, staleMs }, async () => JSON.parse(readFileSync(lock, 'utf8')).pid as number);
  const refuses = async (lock: string, staleMs = DEFAULT_LOCK_RETRY.staleMs) => {
    const before = readFileSync(lock, 'utf8');
    const err = await rejection(withTaskLock(lock, 'task-a', { ...FAST, staleMs }, async () => undefined));
    expect(err.code).toBe('EXP_LOCKED');
    expect(readFileSync(lock, 'utf8')).toBe(before);
  };

  test('takes a lock at once, with the default staleMs, when its owner on this host, boot and pid namespace is gone', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(deadPid));
    await expect(takes(lock)).resolves.toBe(process.pid);
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('takes a lock at once when its pid now names another process (another start time)', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(sleeper.pid!, { proc_start: '1' }));
    await expect(takes(lock)).resolves.toBe(process.pid);
  });

  test('never takes a lock whose owner is alive on this host, whatever its age', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(sleeper.pid!), 24 * HOUR_MS);
    await refuses(lock, 1);
  });

  test('never takes a live newer-orchestrator owner on this host, whatever its age', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, orchestratorRecord(sleeper.pid!), 24 * HOUR_MS);
    await refuses(lock, 1);
  });

  test('judges a newer-orchestrator record of a pid absent here by age: its owner may live in another pid namespace', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, orchestratorRecord(deadPid), 10_000);
    await refuses(lock, 60_000);
    setAge(lock, 120_000);
    await expect(takes(lock, 60_000)).resolves.toBe(process.pid);
  });

  test('judges a newer-orchestrator record by age when its pid started after acquired_at (reused)', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, orchestratorRecord(sleeper.pid!, { acquired_at: '2001-01-01T00:00:00.000Z' }), 120_000);
    await expect(takes(lock, 60_000)).resolves.toBe(process.pid);
  });

  test.for([
    ['an empty file (older writers)', (): string => ''],
    ['an unknown format', (): string => 'locked by someone\n'],
    ['JSON of another shape', (): string => '{"pid":1,"token":"someone-else"}'],
    ['an owner on another host', (): string => ourRecord(sleeper.pid!, { host: 'elsewhere' })],
    ['an owner of another boot', (): string => ourRecord(deadPid, { boot_id: 'another-boot' })],
    ['an owner in another pid namespace', (): string => ourRecord(deadPid, { pid_ns: 'pid:[1]' })],
  ] as const)('judges %s by age: kept while younger than staleMs, taken once older', async ([, content], { dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, content(), 10_000);
    await refuses(lock, 60_000);
    setAge(lock, 120_000);
    await expect(takes(lock, 60_000)).resolves.toBe(process.pid);
  });

  test('counts a future mtime as age 0', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, '', -HOUR_MS);
    await refuses(lock, 1000);
  });

  test('takes at once a lock its holder marked released', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, '{"schema_version":1,"kind":"experience-store-released-lock","token":"t","pid":1,"host":"h"}   \n');
    await expect(takes(lock)).resolves.toBe(process.pid);
  });

  test('clears a side lock and a claim whose owners died while clearing, and then the dead lock, at once', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(deadPid));
    holdLock(`${lock}.acquire`, ourRecord(deadPid, { token: 'side' }));
    const temp = `${lock}.${deadPid}.0123456789ab.tmp`;
    holdLock(temp, ourRecord(deadPid, { token: 'temp' }));
    await expect(takes(lock)).resolves.toBe(process.pid);
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('leaves a live side lock alone: the lock stays busy while another writer clears it', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(deadPid));
    holdLock(`${lock}.acquire`, ourRecord(sleeper.pid!, { token: 'side' }), HOUR_MS);
    const err = await rejection(takes(lock));
    expect(err.code).toBe('EXP_LOCKED');
    expect(err.message).toContain('another writer is clearing it');
  });
});

describe('tryWithTaskLock', () => {
  test('runs the work when the lock is free and removes the lock after', async ({ dir }) => {
    const lock = lockOf(dir);
    mkdirSync(path.dirname(lock), { recursive: true });
    await expect(tryWithTaskLock(lock, async () => existsSync(lock))).resolves.toBe(true);
    expect(readdirSync(path.dirname(lock))).toEqual([]);
  });

  test('returns undefined at once when another process holds the lock file', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(sleeper.pid!));
    let ran = false;
    await expect(tryWithTaskLock(lock, async () => (ran = true))).resolves.toBeUndefined();
    expect(ran).toBe(false);
    expect(existsSync(lock)).toBe(true);
  });

  test('takes a dead owner’s lock at once', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(deadPid));
    await expect(tryWithTaskLock(lock, async () => 'ran')).resolves.toBe('ran');
  });

  test('returns undefined and creates nothing when the runs directory does not exist', async ({ dir }) => {
    const lock = lockOf(dir);
    await expect(tryWithTaskLock(lock, async () => 'ran')).resolves.toBeUndefined();
    expect(existsSync(path.dirname(lock))).toBe(false);
  });

  test('returns undefined while a writer of this process holds or waits for the lock, under any spelling', async ({ dir }) => {
    const lock = lockOf(dir);
    mkdirSync(path.dirname(lock), { recursive: true });
    symlinkSync(path.join(dir, 'runs'), path.join(dir, 'runs-link'));
    let release!: () => void;
    const writer = withTaskLock(lock, 'task-a', FAST, () => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setImmediate(r));
    await expect(tryWithTaskLock(path.join(dir, 'runs-link', 'task-a.experiences.lock'), async () => 'ran')).resolves.toBeUndefined();
    release();
    await writer;
    await expect(tryWithTaskLock(lock, async () => 'ran')).resolves.toBe('ran');
  });
});

describe('resolveLockRetry', () => {
  test('keeps every default for undefined, and for fields given as undefined', () => {
    expect(resolveLockRetry(undefined)).toEqual(DEFAULT_LOCK_RETRY);
    expect(resolveLockRetry({})).toEqual(DEFAULT_LOCK_RETRY);
    expect(resolveLockRetry({ staleMs: undefined }).staleMs).toBe(300_000);
    expect(resolveLockRetry({ maxAttempts: undefined, initialDelayMs: undefined }).maxAttempts).toBe(5);
    expect(resolveLockRetry({ maxAttempts: 2, backoffFactor: 1 })).toEqual({ ...DEFAULT_LOCK_RETRY, maxAttempts: 2, backoffFactor: 1 });
  });

  test.each([
    ['maxAttempts', 0],
    ['maxAttempts', 1.5],
    ['maxAttempts', Infinity],
    ['initialDelayMs', -1],
    ['initialDelayMs', NaN],
    ['maxDelayMs', 0],
    ['staleMs', 0],
    ['staleMs', Infinity],
    ['staleMs', '300000'],
    ['backoffFactor', 0.5],
    ['backoffFactor', Infinity],
  ])('rejects lockRetry.%s = %s with EXP_INVALID_INPUT naming the option', (field, value) => {
    let err: any;
    try {
      resolveLockRetry({ [field]: value });
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe('EXP_INVALID_INPUT');
    expect(err.message).toContain(`lockRetry.${field}`);
  });

  test('withTaskLock applies the defaults itself: { staleMs: undefined } does not make every lock stale', async ({ dir }) => {
    const lock = lockOf(dir);
    holdLock(lock, '', 1000);
    const retry = { ...ONCE, staleMs: undefined } as unknown as LockRetry;
    expect((await rejection(withTaskLock(lock, 'task-a', retry, async () => undefined))).code).toBe('EXP_LOCKED');
  });
});

describe('ExperienceStore and the lock', () => {
  test('recordBatch fails with EXP_LOCKED while another process holds the task lock, and writes nothing', async ({ dir }) => {
    const store = new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), lockRetry: FAST });
    const lock = lockOf(dir);
    holdLock(lock, ourRecord(sleeper.pid!));
    const err = await rejection(store.recordBatch([makeInput()], 'm.json'));
    expect(err.code).toBe('EXP_LOCKED');
    expect(err.taskId).toBe('task-a');
    expect(err.message).toContain(lock);
    expect(existsSync(path.join(dir, 'out', 'task-a', 'experiences.jsonl'))).toBe(false);
  });

  test('concurrent batches from store instances on two spellings of one runsDir all succeed with maxAttempts 1', async ({ dir }) => {
    mkdirSync(path.join(dir, 'runs'));
    symlinkSync(path.join(dir, 'runs'), path.join(dir, 'runs-link'));
    const out = path.join(dir, 'out');
    const stores = ['runs', 'runs-link', 'runs'].map((runs) => new ExperienceStore({ outDir: out, runsDir: path.join(dir, runs), lockRetry: { maxAttempts: 1 } }));
    const batches = Array.from({ length: 30 }, (_, i) =>
      stores[i % 3]!.recordBatch([makeInput({ runId: `run-${i}` }), makeInput({ runId: `run-${i}b` })], 'm.json'),
    );
    await Promise.all(batches);
    const lines = readFileSync(path.join(out, 'task-a', 'experiences.jsonl'), 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(60);
    expect(new Set(lines.map((l) => JSON.parse(l).runId)).size).toBe(60);
    expect(existsSync(lockOf(dir))).toBe(false);
  });
});
