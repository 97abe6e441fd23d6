/**
 * Each clearing and release interleaving of docs/locking.md, forced in real
 * processes: a child paused at an fs call (fs-hooks.mjs) while the others act.
 * Holders append "start <name>" / "end <name>" to a journal inside the lock:
 * two holders at once would show as overlapping sections.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect } from 'vitest';
import { ensureBuilt, ROOT } from './support/build.js';
// @ts-expect-error plain JavaScript support file, no type declarations
import { killLockChildren, spawnLockChild as spawnUntyped, waitForFile } from './support/lock-child.mjs';
import { test } from './support/temp-dir.js';

interface HookRule {
  fn: string;
  action: 'pause' | 'fail' | 'kill';
  path?: string;
  pathEnd?: string;
  nth?: number;
  until?: string;
  errno?: string;
  times?: number | 'always';
}

interface LockChild {
  pid: number;
  process: ChildProcess;
  lines: string[];
  waitForLine(prefix: string | string[]): Promise<string>;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

const spawnLockChild = spawnUntyped as (config: Record<string, unknown>, hook?: HookRule | HookRule[]) => LockChild;
const waitFor = waitForFile as (file: string) => Promise<void>;

const LOCK_MODULE = path.join(ROOT, 'dist', 'src', 'lock.js');
const STALE_MS = 300;
const PATIENT = { maxAttempts: 10_000, initialDelayMs: 5, backoffFactor: 2, maxDelayMs: 20, staleMs: STALE_MS };
const IMPATIENT = { maxAttempts: 3, initialDelayMs: 5, backoffFactor: 2, maxDelayMs: 20, staleMs: STALE_MS };

beforeAll(() => {
  // Children run dist/; a type error elsewhere in the tree must not stop the lock's own build.
  try {
    ensureBuilt();
  } catch (err) {
    if (statSync(LOCK_MODULE).mtimeMs < statSync(path.join(ROOT, 'src', 'lock.ts')).mtimeMs) throw err;
  }
});

afterEach(() => killLockChildren());

interface Scene {
  dir: string;
  lock: string;
  journal: string;
  /** Start a holder: takes the lock, journals its section, holds until `go(name)`. */
  holder(name: string, options?: { retry?: object; fakeHost?: string; hook?: HookRule | HookRule[] }): LockChild;
  go(name: string): void;
  /** A pause rule for `fn` whose marker and release file are named after `step`. */
  pause(step: string, fn: string, filter: { pathEnd?: string; path?: string; nth?: number }): HookRule;
  reached(step: string): Promise<void>;
  resume(step: string): void;
  sections(): string[];
}

function scene(dir: string): Scene {
  const lock = path.join(dir, 'runs', 'task-a.experiences.lock');
  const journal = path.join(dir, 'journal');
  writeFileSync(journal, '');
  return {
    dir,
    lock,
    journal,
    holder: (name, options = {}) =>
      spawnLockChild(
        {
          mode: 'hold',
          lockModule: LOCK_MODULE,
          lockPath: lock,
          retry: options.retry ?? PATIENT,
          journal,
          name,
          goFile: path.join(dir, `go-${name}`),
          fakeHost: options.fakeHost,
        },
        options.hook,
      ),
    go: (name) => writeFileSync(path.join(dir, `go-${name}`), ''),
    pause: (step, fn, filter) => ({ fn, action: 'pause', until: path.join(dir, `resume-${step}`), ...filter }),
    reached: (step) => waitFor(path.join(dir, `resume-${step}.reached`)),
    resume: (step) => writeFileSync(path.join(dir, `resume-${step}`), ''),
    sections: () => sectionsOf(readFileSync(journal, 'utf8')),
  };
}

/** The holders in journal order; throws if two sections overlap. */
function sectionsOf(journal: string): string[] {
  const order: string[] = [];
  let open: string | undefined;
  for (const line of journal.split('\n').filter(Boolean)) {
    const [event, name] = line.split(' ') as [string, string];
    if (event === 'start') {
      if (open !== undefined) throw new Error(`${name} entered while ${open} held the lock:\n${journal}`);
      open = name;
      order.push(name);
    } else {
      if (open !== name) throw new Error(`${name} left a section it was not in:\n${journal}`);
      open = undefined;
    }
  }
  if (open !== undefined) throw new Error(`${open} never left:\n${journal}`);
  return order;
}

function ownerPid(lock: string): number | undefined {
  return existsSync(lock) ? (JSON.parse(readFileSync(lock, 'utf8')).pid as number) : undefined;
}

/** Wait (without a timing assert) until the lock's mtime is older than STALE_MS: its refresh has stopped. */
async function untilStale(lock: string): Promise<void> {
  while (Date.now() - statSync(lock).mtimeMs <= STALE_MS * 2) await new Promise((r) => setTimeout(r, 10));
}

async function released(child: LockChild): Promise<void> {
  await child.waitForLine('released');
  const { code, stderr } = await child.exited;
  expect(code, stderr).toBe(0);
}

function leftovers(dir: string): string[] {
  return readdirSync(path.join(dir, 'runs'));
}

describe('clearing and release interleavings', () => {
  test('a clearer paused after judging the lock stale, before its side lock: the owner releases, a third writer takes the lock, and the clearer leaves it alone', async ({ dir }) => {
    const s = scene(dir);
    // A holder on another host, stopped until its lock is older than staleMs.
    const owner = s.holder('owner', { fakeHost: 'host-b' });
    await owner.waitForLine('holding');
    owner.process.kill('SIGSTOP');
    await untilStale(s.lock);

    const clearer = s.holder('clearer', {
      hook: [s.pause('judged', 'linkSync', { pathEnd: '.acquire' }), s.pause('next-try', 'linkSync', { pathEnd: '.experiences.lock', nth: 3 })],
    });
    await s.reached('judged');

    owner.process.kill('SIGCONT');
    s.go('owner');
    await released(owner);
    const third = s.holder('third');
    await third.waitForLine('holding');

    s.resume('judged');
    await s.reached('next-try'); // the clearer finished its clearing try and is about to retry
    expect(ownerPid(s.lock)).toBe(third.pid);

    s.go('third');
    await released(third);
    s.resume('next-try');
    await clearer.waitForLine('holding');
    s.go('clearer');
    await released(clearer);
    expect(s.sections()).toEqual(['owner', 'third', 'clearer']);
    expect(leftovers(dir)).toEqual([]);
  });

  test('a clearer paused between its re-check and the unlink: the owner cannot release under it (it marks its lock released), no third writer gets in, and the clearer takes over cleanly', async ({ dir }) => {
    const s = scene(dir);
    const owner = s.holder('owner', { fakeHost: 'host-b' });
    await owner.waitForLine('holding');
    owner.process.kill('SIGSTOP');
    await untilStale(s.lock);

    const clearer = s.holder('clearer', { hook: s.pause('checked', 'unlinkSync', { pathEnd: '.experiences.lock' }) });
    await s.reached('checked');

    owner.process.kill('SIGCONT');
    s.go('owner');
    await released(owner);
    const kind = JSON.parse(readFileSync(s.lock, 'utf8')).kind;
    expect(kind).toBe('experience-store-released-lock');

    const third = s.holder('third', { retry: IMPATIENT });
    expect(await third.waitForLine(['failed', 'holding'])).toBe('failed EXP_LOCKED');

    s.resume('checked');
    await clearer.waitForLine('holding');
    expect(ownerPid(s.lock)).toBe(clearer.pid);
    s.go('clearer');
    await released(clearer);

    const fourth = s.holder('fourth', { retry: { ...IMPATIENT, maxAttempts: 1 } });
    await fourth.waitForLine('holding');
    s.go('fourth');
    await released(fourth);
    expect(s.sections()).toEqual(['owner', 'clearer', 'fourth']);
    expect(leftovers(dir)).toEqual([]);
  });

  test('a releaser paused between its check and the unlink past staleMs: a clearer cannot act on its lock, and the release removes only its own', async ({ dir }) => {
    const s = scene(dir);
    const owner = s.holder('owner', { fakeHost: 'host-b', hook: s.pause('checked', 'unlinkSync', { pathEnd: '.experiences.lock' }) });
    await owner.waitForLine('holding');
    s.go('owner');
    await s.reached('checked');
    await untilStale(s.lock); // its refresh stopped with it
    const record = readFileSync(s.lock, 'utf8');

    const clearer = s.holder('clearer', { retry: IMPATIENT });
    expect(await clearer.waitForLine(['failed', 'holding'])).toBe('failed EXP_LOCKED');
    expect(readFileSync(s.lock, 'utf8')).toBe(record);

    s.resume('checked');
    await released(owner);
    expect(existsSync(s.lock)).toBe(false);
    const next = s.holder('next', { retry: { ...IMPATIENT, maxAttempts: 1 } });
    await next.waitForLine('holding');
    s.go('next');
    await released(next);
    expect(s.sections()).toEqual(['owner', 'next']);
    expect(leftovers(dir)).toEqual([]);
  });

  test('a clearer paused after removing a stale lock, before linking its own: the old owner’s release puts nothing back, and a third writer’s lock survives the clearer', async ({ dir }) => {
    const s = scene(dir);
    const owner = s.holder('owner', { fakeHost: 'host-b' });
    await owner.waitForLine('holding');
    owner.process.kill('SIGSTOP');
    await untilStale(s.lock);

    const clearer = s.holder('clearer', {
      hook: [s.pause('removed', 'linkSync', { pathEnd: '.experiences.lock', nth: 2 }), s.pause('next-try', 'linkSync', { pathEnd: '.experiences.lock', nth: 3 })],
    });
    await s.reached('removed');
    expect(existsSync(s.lock)).toBe(false);

    owner.process.kill('SIGCONT');
    s.go('owner');
    await released(owner);
    expect(existsSync(s.lock)).toBe(false); // no resurrection

    const third = s.holder('third');
    await third.waitForLine('holding');
    s.resume('removed');
    await s.reached('next-try'); // its link failed (EEXIST): it waits for the third writer
    expect(ownerPid(s.lock)).toBe(third.pid);
    s.go('third');
    await released(third);
    s.resume('next-try');
    await clearer.waitForLine('holding');
    s.go('clearer');
    await released(clearer);
    expect(s.sections()).toEqual(['owner', 'third', 'clearer']);
    expect(leftovers(dir)).toEqual([]);
  });

  test('two clearers of a dead side lock: the late one re-checks under its claim and leaves the live side lock of the first alone', async ({ dir }) => {
    const s = scene(dir);
    // A dead writer's lock, and a dead clearer's side lock.
    const dead = s.holder('dead', { hook: { fn: 'unlinkSync', pathEnd: '.experiences.lock', action: 'kill' } });
    await dead.waitForLine('holding');
    s.go('dead');
    await dead.exited;
    writeFileSync(`${s.lock}.acquire`, readFileSync(s.lock, 'utf8').replace(/"token":"[0-9a-f]+"/, '"token":"dead-side"'));

    const late = s.holder('late', { hook: s.pause('judged-side', 'linkSync', { path: '.acquire.clear-' }) });
    await s.reached('judged-side');
    const first = s.holder('first', { hook: s.pause('cleared', 'linkSync', { pathEnd: '.experiences.lock', nth: 2 }) });
    await s.reached('cleared'); // holds a fresh side lock, the dead lock is gone
    const side = readFileSync(`${s.lock}.acquire`, 'utf8');
    expect(JSON.parse(side).pid).toBe(first.pid);

    s.resume('judged-side');
    await late.waitForLine('holding'); // the lock was free; it never needed the side lock
    expect(readFileSync(`${s.lock}.acquire`, 'utf8')).toBe(side);
    s.go('late');
    await released(late);
    s.resume('cleared');
    await first.waitForLine('holding');
    s.go('first');
    await released(first);
    expect(s.sections()).toEqual(['dead', 'late', 'first']);
    expect(leftovers(dir)).toEqual([]);
  });

  test('a clearer killed while holding the side lock and a claim leaves nothing that blocks: the next writer clears all three at once', async ({ dir }) => {
    const s = scene(dir);
    const dead = s.holder('dead', { hook: { fn: 'unlinkSync', pathEnd: '.experiences.lock', action: 'kill' } });
    await dead.waitForLine('holding');
    s.go('dead');
    await dead.exited;
    const clearer = s.holder('clearer', { hook: { fn: 'unlinkSync', pathEnd: '.experiences.lock', action: 'kill' } });
    await clearer.exited; // killed holding the side lock and the claim on the dead lock
    expect(leftovers(dir).length).toBeGreaterThanOrEqual(3);

    const next = s.holder('next', { retry: { ...IMPATIENT, maxAttempts: 1, staleMs: 300_000 } });
    await next.waitForLine('holding');
    s.go('next');
    await released(next);
    expect(leftovers(dir)).toEqual([]);
  });
});

describe('a stopped holder', () => {
  test('is not displaced past staleMs, and nothing interleaves when it resumes', async ({ dir }) => {
    const s = scene(dir);
    const holder = s.holder('holder');
    await holder.waitForLine('holding');
    holder.process.kill('SIGSTOP');
    await untilStale(s.lock);
    const record = readFileSync(s.lock, 'utf8');

    const impatient = s.holder('impatient', { retry: IMPATIENT });
    expect(await impatient.waitForLine(['failed', 'holding'])).toBe('failed EXP_LOCKED');
    const waiter = s.holder('waiter', { hook: s.pause('tried-5', 'linkSync', { pathEnd: '.experiences.lock', nth: 5 }) });
    await s.reached('tried-5');
    expect(readFileSync(s.lock, 'utf8')).toBe(record);
    s.resume('tried-5');

    holder.process.kill('SIGCONT');
    s.go('holder');
    await released(holder);
    await waiter.waitForLine('holding');
    s.go('waiter');
    await released(waiter);
    expect(s.sections()).toEqual(['holder', 'waiter']);
  });
});
