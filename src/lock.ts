/**
 * Mutual exclusion of a task's writers: an in-process queue per lock path
 * (shared by every store instance of the process, so our own calls never burn
 * lock retries on each other), then the O_EXCL lock file that older writers
 * also use, so mixed versions stay safe across processes.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode, ExperienceStoreLockError, ioError } from './errors.js';

export interface LockRetry {
  maxAttempts: number; // counts the first try
  initialDelayMs: number;
  backoffFactor: number;
  maxDelayMs: number;
  staleMs: number; // a lock file whose mtime is older than this is cleared
}

export const DEFAULT_LOCK_RETRY: LockRetry = {
  maxAttempts: 5,
  initialDelayMs: 100,
  backoffFactor: 2,
  maxDelayMs: 1000,
  staleMs: 300_000,
};

// The tail of each lock path's queue. A caller waits for the tail, then becomes it.
const queues = new Map<string, Promise<void>>();

/** Run `fn` holding the task's lock, waiting in process and retrying across processes. */
export async function withTaskLock<T>(
  lockPath: string,
  taskId: string,
  retry: LockRetry,
  fn: () => Promise<T>,
): Promise<T> {
  const previous = queues.get(lockPath);
  return inQueue(lockPath, previous, async () => {
    if (previous) await previous;
    // acquireLockFile returns a token or throws, so fn always runs here.
    return (await holdingLockFile(lockPath, await acquireLockFile(lockPath, taskId, retry), fn)) as T;
  });
}

/**
 * Run `fn` holding the lock only if it is free right now, in this process and
 * on disk; never wait. Returns undefined when the lock was busy. Readers heal
 * the index this way: healing is an optimisation and must not delay a fetch.
 */
export async function tryWithTaskLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T | undefined> {
  if (queues.has(lockPath)) return undefined;
  return inQueue(lockPath, undefined, () => holdingLockFile(lockPath, tryCreateLockFile(lockPath), fn));
}

/** Become the tail of the lock path's queue (after `previous`) while `fn` runs. */
async function inQueue<T>(lockPath: string, previous: Promise<void> | undefined, fn: () => Promise<T>): Promise<T> {
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  const tail = previous ? previous.then(() => mine) : mine;
  queues.set(lockPath, tail);
  try {
    return await fn();
  } finally {
    done();
    if (queues.get(lockPath) === tail) queues.delete(lockPath);
  }
}

/** Run `fn` if the lock file was taken (`token`), releasing it after; undefined if it was not. */
async function holdingLockFile<T>(lockPath: string, token: string | undefined, fn: () => Promise<T>): Promise<T | undefined> {
  if (token === undefined) return undefined;
  try {
    return await fn();
  } finally {
    releaseLockFile(lockPath, token);
  }
}

async function acquireLockFile(lockPath: string, taskId: string, retry: LockRetry): Promise<string> {
  mkdirSync(path.dirname(lockPath), { recursive: true });
  let delayMs = retry.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    const token = tryCreateLockFile(lockPath) ?? (clearStaleLock(lockPath, retry.staleMs) ? tryCreateLockFile(lockPath) : undefined);
    if (token !== undefined) return token;
    if (attempt >= retry.maxAttempts) throw new ExperienceStoreLockError(taskId, lockPath, attempt);
    await sleep(delayMs);
    delayMs = Math.min(delayMs * retry.backoffFactor, retry.maxDelayMs);
  }
}

/** Create the lock file with O_EXCL; its content is our owner token. Undefined if it exists. */
function tryCreateLockFile(lockPath: string): string | undefined {
  const token = JSON.stringify({
    pid: process.pid,
    host: hostname(),
    token: randomBytes(8).toString('hex'),
    acquiredAt: new Date().toISOString(),
  });
  let fd: number;
  try {
    fd = openSync(lockPath, 'wx');
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return undefined;
    if (errorCode(err) === 'ENOENT') {
      mkdirSync(path.dirname(lockPath), { recursive: true });
      return tryCreateLockFile(lockPath);
    }
    throw ioError('create the lock file', lockPath, err);
  }
  try {
    writeSync(fd, token);
  } finally {
    closeSync(fd);
  }
  return token;
}

/**
 * Remove the lock only if it still holds our token: if we were judged stale and
 * another writer took the lock since, the file is theirs.
 */
function releaseLockFile(lockPath: string, token: string): void {
  try {
    if (readFileSync(lockPath, 'utf8') === token) unlinkSync(lockPath);
  } catch {
    // Already gone, or unreadable: either way it is not ours to remove.
  }
}

/**
 * Clear a lock whose mtime is older than staleMs: SIGKILL skips its owner's
 * finally, and waiting on it forever would fail every later batch of the task.
 * The file is claimed by an atomic rename and checked to be the one judged
 * stale, so a fresh lock created in between is put back, never removed.
 * Returns whether the lock path is now free to try.
 */
function clearStaleLock(lockPath: string, staleMs: number): boolean {
  let judged;
  try {
    judged = statSync(lockPath, { bigint: true });
  } catch (err) {
    return errorCode(err) === 'ENOENT';
  }
  if (Date.now() - Number(judged.mtimeMs) <= staleMs) return false;
  const claim = `${lockPath}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(lockPath, claim);
  } catch (err) {
    return errorCode(err) === 'ENOENT';
  }
  try {
    const claimed = statSync(claim, { bigint: true });
    if (claimed.dev === judged.dev && claimed.ino === judged.ino && claimed.mtimeNs === judged.mtimeNs) return true;
    // Not the file we judged: another writer replaced it with a fresh lock. Put it back
    // (link fails if a third writer holds the path by now; then theirs stays).
    try {
      linkSync(claim, lockPath);
    } catch {
      // see above
    }
    return false;
  } finally {
    try {
      unlinkSync(claim);
    } catch {
      // nothing left to clean up
    }
  }
}
