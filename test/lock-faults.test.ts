/**
 * Fault injection in the lock code, in process: every fs call withTaskLock
 * makes is failed in turn (the Nth call, once, then from the Nth on), from
 * three starting states. Whatever fails, the error is an ExperienceStoreError
 * with a code (EXP_IO carrying the first fs error as its cause), the lock file
 * is never left empty, and the next writer is never blocked by what we left.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { ExperienceStoreError } from '../src/errors.js';
import { DEFAULT_LOCK_RETRY, withTaskLock, type LockRetry } from '../src/lock.js';
import { localIdentity } from '../src/lock-owner.js';
import { ensureBuilt, ROOT } from './support/build.js';
// @ts-expect-error plain JavaScript support file, no type declarations
import { installFsHooks as installUntyped, removeFsHooks } from './support/fs-hooks.mjs';
// @ts-expect-error plain JavaScript support file, no type declarations
import { killLockChildren, spawnLockChild as spawnUntyped } from './support/lock-child.mjs';
import { test } from './support/temp-dir.js';

interface LockChild {
  process: ChildProcess;
  waitForLine(prefix: string | string[]): Promise<string>;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}
const spawnLockChild = spawnUntyped as (config: Record<string, unknown>, hook?: object) => LockChild;
const LOCK_MODULE = path.join(ROOT, 'dist', 'src', 'lock.js');

interface Call {
  fn: string;
  args: unknown[];
}
const installFsHooks = installUntyped as (rules: object[], options?: { trace?: string[]; onCall?: (call: Call) => void }) => number[];

const TRACED = ['openSync', 'writeSync', 'fstatSync', 'statSync', 'linkSync', 'unlinkSync', 'readSync', 'closeSync', 'futimesSync', 'mkdirSync', 'readdirSync', 'readFileSync', 'readlinkSync'];
const ONCE: LockRetry = { ...DEFAULT_LOCK_RETRY, maxAttempts: 1 };
const TWICE: LockRetry = { ...DEFAULT_LOCK_RETRY, maxAttempts: 2, initialDelayMs: 1 };

afterEach(() => {
  removeFsHooks();
  killLockChildren();
});

/** A pid that belongs to no process: our own record with it is a dead owner's. */
const DEAD_PID = 2 ** 22 + 12_345;

function record(pid: number, token: string, procStart = '1'): string {
  const me = localIdentity();
  return JSON.stringify({
    schema_version: 1,
    kind: 'codex-lock-owner',
    token,
    task_id: 'task-a',
    pid,
    host: hostname(),
    acquired_at: new Date().toISOString(),
    stale_ms: 300_000,
    boot_id: me.bootId,
    pid_ns: me.pidNs,
    proc_start: procStart,
  }) + '\n';
}

const STATES = {
  free: () => undefined,
  'a dead owner’s lock and side lock': (lock: string) => {
    writeFileSync(lock, record(DEAD_PID, 'dead'));
    writeFileSync(`${lock}.acquire`, record(DEAD_PID, 'dead-side'));
  },
  // This very process: alive, on this host, boot and pid namespace.
  'a live owner’s lock': (lock: string) => writeFileSync(lock, record(process.pid, 'live', localIdentity().procStart!)),
} satisfies Record<string, (lock: string) => void>;

/** The fs calls one withTaskLock makes from `state`, in order. */
async function traceCalls(lock: string, retry: LockRetry): Promise<Call[]> {
  const calls: Call[] = [];
  installFsHooks([], { trace: TRACED, onCall: (call) => calls.push(call) });
  try {
    await withTaskLock(lock, 'task-a', retry, async () => 'done').catch(() => undefined);
  } finally {
    removeFsHooks();
  }
  return calls;
}

function isUsableLockContent(lock: string): boolean {
  if (!existsSync(lock)) return true;
  const text = readFileSync(lock, 'utf8');
  return text.trim() !== '' && typeof JSON.parse(text).token === 'string';
}

describe('a failing fs call in the lock code', () => {
  for (const [name, prepare] of Object.entries(STATES)) {
    test(`from ${name}: never an empty lock, never one that blocks the next writer, errors with codes`, async ({ dir }) => {
      const isLive = name.includes('live');
      const retry = isLive ? TWICE : ONCE;
      const fresh = (label: string) => {
        const runs = path.join(dir, label, 'runs');
        mkdirSync(runs, { recursive: true });
        const lock = path.join(runs, 'task-a.experiences.lock');
        prepare(lock);
        return lock;
      };
      const calls = await traceCalls(fresh('trace'), retry);
      expect(calls.length).toBeGreaterThan(5);
      const outcomes: Record<string, number> = {};

      for (let i = 0; i < calls.length; i++) {
        const fn = calls[i]!.fn;
        const nth = calls.slice(0, i + 1).filter((c) => c.fn === fn).length;
        for (const times of [1, 'always'] as const) {
          const lock = fresh(`${i}-${times}`);
          const before = existsSync(lock) ? readFileSync(lock, 'utf8') : undefined;
          const step = `failing ${fn} #${nth} ${times === 1 ? 'once' : 'from then on'}`;
          installFsHooks([{ fn, nth, times, action: 'fail', errno: 'EIO' }]);
          let outcome: string;
          try {
            outcome = await withTaskLock(lock, 'task-a', retry, async () => 'done');
          } catch (err) {
            expect(err, step).toBeInstanceOf(ExperienceStoreError);
            const code = (err as ExperienceStoreError).code;
            expect(['EXP_IO', 'EXP_LOCKED'], step).toContain(code);
            if (code === 'EXP_IO') expect((err as Error & { cause: { code: string } }).cause.code, step).toBe('EIO');
            outcome = code;
          } finally {
            removeFsHooks();
          }
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;

          expect(isUsableLockContent(lock), `${step}: lock content ${existsSync(lock) && readFileSync(lock, 'utf8')}`).toBe(true);
          if (isLive) {
            // The live owner's lock is untouched, whatever failed.
            expect(readFileSync(lock, 'utf8'), step).toBe(before);
          } else {
            await expect(withTaskLock(lock, 'task-a', ONCE, async () => 'next'), step).resolves.toBe('next');
            expect(existsSync(lock), step).toBe(false);
          }
        }
      }
      console.log(`lock-faults from ${name}: ${calls.length} fs calls, each failed once and from then on: ${JSON.stringify(outcomes)}`);
    });
  }
});

describe('a release whose unlink is refused', () => {
  test('leaves the lock marked released and dated 1970: another process takes it at its first try, with the default staleMs', async ({ dir }) => {
    try {
      ensureBuilt();
    } catch (err) {
      if (statSync(LOCK_MODULE).mtimeMs < statSync(path.join(ROOT, 'src', 'lock.ts')).mtimeMs) throw err;
    }
    const lock = path.join(dir, 'runs', 'task-a.experiences.lock');
    installFsHooks([{ fn: 'unlinkSync', pathEnd: '.experiences.lock', times: 'always', action: 'fail', errno: 'EPERM' }]);
    await expect(withTaskLock(lock, 'task-a', ONCE, async () => 'written')).resolves.toBe('written');
    removeFsHooks();

    const left = JSON.parse(readFileSync(lock, 'utf8'));
    expect(left).toMatchObject({ schema_version: 1, kind: 'experience-store-released-lock', pid: process.pid });
    expect(statSync(lock).mtimeMs).toBe(0);
    const next = spawnLockChild({ mode: 'hold', lockModule: LOCK_MODULE, lockPath: lock, retry: { maxAttempts: 1 }, journal: path.join(dir, 'journal'), name: 'next' });
    expect(await next.waitForLine(['holding', 'failed'])).toBe('holding');
    expect((await next.exited).code).toBe(0);
    expect(existsSync(lock)).toBe(false);
  });
});
