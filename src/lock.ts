/**
 * Mutual exclusion of a task's writers: an in-process queue per lock file
 * (keyed by its real path, shared by every store instance of the process, so
 * our own calls never burn lock retries on each other), then the lock file,
 * created with its owner record already inside. Protocol and argument:
 * docs/locking.md; owner records and their judgement: lock-owner.ts.
 */
import {
  closeSync,
  fstatSync,
  futimesSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { errorCode, ExperienceStoreError, ExperienceStoreLockError, ioError } from './errors.js';
import {
  describeOwner,
  formatOwnerRecord,
  formatReleasedRecord,
  judgeLiveness,
  judgeLock,
  ownerToken,
  parseOwner,
  type LockOwner,
  type LockVerdict,
} from './lock-owner.js';

/** How `recordBatch` waits for a task's lock held by another process. */
export interface LockRetry {
  /** Tries in all, the first one included. Default 5. */
  maxAttempts: number;
  /** Sleep before the second try, in ms. Default 100. */
  initialDelayMs: number;
  /** Each later sleep is the previous one times this (>= 1). Default 2. */
  backoffFactor: number;
  /** Cap on one sleep, in ms. Default 1000. */
  maxDelayMs: number;
  /**
   * A lock whose owner cannot be checked for liveness (an older writer's empty
   * file, another host, another pid namespace) is taken over when its mtime is
   * older than this, in ms. Holders refresh their lock's mtime every staleMs/2.
   * Default 300000 (5 minutes).
   */
  staleMs: number;
}

export const DEFAULT_LOCK_RETRY: LockRetry = {
  maxAttempts: 5,
  initialDelayMs: 100,
  backoffFactor: 2,
  maxDelayMs: 1000,
  staleMs: 300_000,
};

/**
 * `lockRetry` with defaults for fields that are missing or undefined. Throws
 * EXP_INVALID_INPUT naming `lockRetry.<field>` for a value out of range:
 * maxAttempts must be a positive integer, the delays and staleMs positive
 * finite numbers, backoffFactor a finite number >= 1.
 */
export function resolveLockRetry(partial: unknown): LockRetry {
  if (partial === undefined || partial === null) return { ...DEFAULT_LOCK_RETRY };
  if (typeof partial !== 'object' || Array.isArray(partial)) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `lockRetry must be an object, got ${describeValue(partial)}`);
  }
  const given = partial as Record<string, unknown>;
  const resolved = { ...DEFAULT_LOCK_RETRY };
  for (const field of Object.keys(DEFAULT_LOCK_RETRY) as Array<keyof LockRetry>) {
    const value = given[field];
    if (value === undefined) continue;
    const problem = retryValueProblem(field, value);
    if (problem !== undefined) {
      throw new ExperienceStoreError(
        'EXP_INVALID_INPUT',
        `lockRetry.${field} must be ${problem}, got ${describeValue(value)}; omit it for the default ${DEFAULT_LOCK_RETRY[field]}`,
      );
    }
    resolved[field] = value as number;
  }
  return resolved;
}

function retryValueProblem(field: keyof LockRetry, value: unknown): string | undefined {
  const isFiniteNumber = typeof value === 'number' && Number.isFinite(value);
  if (field === 'maxAttempts') return isFiniteNumber && Number.isInteger(value) && value >= 1 ? undefined : 'a positive integer';
  if (field === 'backoffFactor') return isFiniteNumber && value >= 1 ? undefined : 'a finite number >= 1';
  return isFiniteNumber && value > 0 ? undefined : 'a positive finite number of milliseconds';
}

function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

// The side lock serialises clearers of a lock, as the newer orchestrator's do.
const SIDE_SUFFIX = '.acquire';
// Side locks and claims are held for a few fs calls; one whose owner cannot be
// checked (another host, an empty file) is cleared after this long.
export const SIDE_STALE_MS = 10_000;
// Claims on claims, when claimers die in turn; past this depth a human clears.
const MAX_CLAIM_DEPTH = 3;
const MAX_RECORD_BYTES = 64 * 1024;
const RELEASE_TRIES = 8;

// The tail of each lock file's queue. A caller waits for the tail, then becomes it.
const queues = new Map<string, Promise<void>>();
// Tokens of locks this process released but could neither remove nor mark.
const releasedTokens = new Set<string>();

/** Run `fn` holding the task's lock, waiting in process and retrying across processes. */
export async function withTaskLock<T>(lockPath: string, taskId: string, retry: LockRetry, fn: () => Promise<T>): Promise<T> {
  const settings = resolveLockRetry(retry);
  await loadCrypto();
  let file = knownLockFiles.get(lockPath);
  if (file === undefined) {
    const dir = path.dirname(path.resolve(lockPath));
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw ioError('create the lock directory', dir, err);
    }
    file = realLockPath(lockPath);
    if (file === undefined) throw ioError('find the lock directory', dir, Object.assign(new Error('removed while in use'), { code: 'ENOENT' }));
    knownLockFiles.set(lockPath, file);
  }
  const previous = queues.get(file);
  return inQueue(file, previous, async () => {
    if (previous) await previous;
    const held = await acquire(file, lockPath, taskId, settings);
    return holding(held, settings.staleMs, fn);
  });
}

/**
 * Run `fn` holding the lock only if it can be taken right now, in this process
 * and on disk (a dead owner's lock is cleared at once); never wait, never
 * create a directory. Returns undefined when the lock was busy or its
 * directory does not exist. Readers heal the index this way.
 */
export async function tryWithTaskLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  options?: { taskId?: string; staleMs?: number },
): Promise<T | undefined> {
  const file = realLockPath(lockPath);
  if (file === undefined || queues.has(file)) return undefined;
  const staleMs = resolveLockRetry({ staleMs: options?.staleMs }).staleMs;
  await loadCrypto();
  return inQueue(file, undefined, async () => {
    const attempt = tryAcquire(file, options?.taskId ?? '', staleMs);
    return attempt.kind === 'held' ? holding(attempt.held, staleMs, fn) : undefined;
  });
}

type Crypto = typeof import('node:crypto');
let crypto: Crypto | undefined;

/** node:crypto (tokens, temp names), loaded when a lock is first taken: a process that only reads never pays for it. */
async function loadCrypto(): Promise<void> {
  crypto ??= await import('node:crypto');
}

function loadedCrypto(): Crypto {
  if (crypto === undefined) throw new Error('internal: the lock code ran before node:crypto was loaded');
  return crypto;
}

// Random bytes for tokens and temp names, drawn from a pool: one call into
// OpenSSL per 4 KiB instead of two per lock taken.
let randomPool = Buffer.alloc(0);
let randomAt = 0;

function randomHex(bytes: number): string {
  if (randomAt + bytes > randomPool.length) {
    randomPool = loadedCrypto().randomBytes(4096);
    randomAt = 0;
  }
  randomAt += bytes;
  return randomPool.toString('hex', randomAt - bytes, randomAt);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Lock paths as given, to their real identity, once their directory existed: a
// writer's batch then costs no mkdir or realpath. A directory removed later is
// recreated by acquire ('no-dir'); a runsDir symlink retargeted while the
// process runs keeps its old queue identity (the lock file itself is still exclusive).
const knownLockFiles = new Map<string, string>();

/** The lock file's real identity: realpath of its directory + its name; undefined if the directory is missing. */
function realLockPath(lockPath: string): string | undefined {
  const dir = path.dirname(path.resolve(lockPath));
  try {
    return path.join(realpathSync.native(dir), path.basename(lockPath));
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return undefined;
    throw ioError('resolve the lock directory', dir, err);
  }
}

/** Become the tail of the lock file's queue (after `previous`) while `fn` runs. */
async function inQueue<T>(file: string, previous: Promise<void> | undefined, fn: () => Promise<T>): Promise<T> {
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  const tail = previous ? previous.then(() => mine) : mine;
  queues.set(file, tail);
  try {
    return await fn();
  } finally {
    done();
    if (queues.get(file) === tail) queues.delete(file);
  }
}

/** A lock, side lock or claim file we created: its path, our open descriptor on it and its identity. */
interface Owned {
  file: string;
  fd: number;
  dev: bigint;
  ino: bigint;
  token: string;
  key: string;
  recordBytes: number;
}

/** What a lock file held when read: identity, age and owner record. */
interface Seen {
  key: string;
  mtimeMs: number;
  owner: LockOwner;
}

type Attempt = { kind: 'held'; held: Owned } | { kind: 'busy'; owner: string } | { kind: 'no-dir' };

/** Hold the lock while `fn` runs, refreshing its mtime every staleMs/2; release it whatever `fn` does. */
async function holding<T>(held: Owned, staleMs: number, fn: () => Promise<T>): Promise<T> {
  retryOwnLeftovers();
  const refresh = setInterval(() => touch(held.fd), Math.min(Math.max(1, staleMs / 2), 2 ** 31 - 1));
  refresh.unref();
  try {
    return await fn();
  } finally {
    clearInterval(refresh);
    await release(held);
  }
}

async function acquire(file: string, givenPath: string, taskId: string, retry: LockRetry): Promise<Owned> {
  let delayMs = retry.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    let result = tryAcquire(file, taskId, retry.staleMs);
    if (result.kind === 'no-dir') {
      // The runs directory was removed under us: a writer recreates it.
      try {
        mkdirSync(path.dirname(file), { recursive: true });
      } catch (err) {
        throw ioError('create the lock directory', path.dirname(file), err);
      }
      result = tryAcquire(file, taskId, retry.staleMs);
    }
    if (result.kind === 'held') return result.held;
    const owner = result.kind === 'busy' ? result.owner : 'nobody: its directory keeps disappearing';
    if (attempt >= retry.maxAttempts) {
      const where = file === path.resolve(givenPath) ? givenPath : `${givenPath} (real path ${file})`;
      throw new ExperienceStoreLockError(taskId, where, attempt, { owner });
    }
    await sleep(delayMs);
    delayMs = Math.min(delayMs * retry.backoffFactor, retry.maxDelayMs);
  }
}

/**
 * One try: link our record into place; if the lock exists and is free to take
 * (dead owner, released, stale), clear it under the side lock and link again.
 */
function tryAcquire(file: string, taskId: string, staleMs: number): Attempt {
  try {
    return tryAcquireOrThrow(file, taskId, staleMs);
  } catch (err) {
    // Nothing is held when we get here: every path that linked returned.
    throw err instanceof ExperienceStoreError ? err : ioError('clear the lock file', file, err);
  }
}

function tryAcquireOrThrow(file: string, taskId: string, staleMs: number): Attempt {
  const first = createExclusive(file, taskId, staleMs);
  if (first === 'no-dir') return { kind: 'no-dir' };
  if (first !== 'busy') return { kind: 'held', held: first };
  const seen = readLock(file);
  if (seen === undefined) {
    const again = createExclusive(file, taskId, staleMs);
    return typeof again === 'object' ? { kind: 'held', held: again } : { kind: 'busy', owner: 'a writer that took it just now' };
  }
  const verdict = judge(seen, staleMs);
  const owner = describeOwner(seen.owner, verdict);
  if (!verdict.isFree) return { kind: 'busy', owner };

  const side = takeExclusive(file + SIDE_SUFFIX, taskId, 0);
  if (typeof side !== 'object') return { kind: 'busy', owner: `${owner}; another writer is clearing it` };
  try {
    const removed = removeIfUnchanged(file, seen, (now) => judge(now, staleMs).isFree, 0);
    if (removed === 'busy') return { kind: 'busy', owner: `${owner}; another writer is clearing it` };
    // Link while still holding the side lock: the clearer takes what it cleared.
    const taken = createExclusive(file, taskId, staleMs);
    if (typeof taken !== 'object') return { kind: 'busy', owner: 'a writer that took it just now' };
    if (removed === 'removed' && verdict.reason === 'owner-dead') sweepLeftovers(file);
    return { kind: 'held', held: taken };
  } finally {
    dropOwned(side);
  }
}

/**
 * Create `file` with our owner record inside, atomically: write a private temp
 * file, then link it to `file` (EEXIST = busy). No reader ever sees it empty.
 */
function createExclusive(file: string, taskId: string, staleMs: number): Owned | 'busy' | 'no-dir' {
  const token = newToken();
  const bytes = Buffer.from(formatOwnerRecord(token, taskId, staleMs));
  const temp = `${file}.${process.pid}.${randomHex(6)}.tmp`;
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o644);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return 'no-dir';
    throw ioError('create a lock temp file', temp, err);
  }
  let owned: Owned | undefined;
  try {
    try {
      writeAll(fd, bytes);
    } catch (err) {
      throw ioError('write a lock temp file', temp, err);
    }
    const { dev, ino } = fstatOrThrow(fd, temp);
    if (!linkTo(temp, file, fd)) return 'busy';
    owned = { file, fd, dev, ino, token, key: instanceKey(dev, ino, token, 0n, ''), recordBytes: bytes.length };
    return owned;
  } finally {
    if (owned === undefined) closeQuietly(fd);
    // Only the temp name goes; a linked lock keeps the inode.
    unlinkQuietly(temp);
  }
}

function linkTo(temp: string, file: string, fd: number): boolean {
  try {
    linkSync(temp, file);
    return true;
  } catch (err) {
    // ENOENT: a sweeper removed our temp while we were paused; try again later.
    if (errorCode(err) === 'EEXIST' || errorCode(err) === 'ENOENT') return false;
    // NFS may report a failed link that happened (open(2)): two names mean it did.
    if (fstatQuietly(fd)?.nlink === 2n) return true;
    throw ioError('create the lock file', file, err);
  }
}

/**
 * Take a side lock or claim: create it, or clear it first when its owner is
 * provably gone or it is older than `staleMs`, then create it.
 */
function takeExclusive(file: string, taskId: string, depth: number): Owned | 'busy' | 'no-dir' {
  const first = createExclusive(file, taskId, SIDE_STALE_MS);
  if (first !== 'busy' || depth >= MAX_CLAIM_DEPTH) return first;
  const seen = readLock(file);
  if (seen !== undefined) {
    if (!judge(seen, SIDE_STALE_MS).isFree) return 'busy';
    if (removeIfUnchanged(file, seen, (now) => judge(now, SIDE_STALE_MS).isFree, depth + 1) === 'busy') return 'busy';
  }
  return createExclusive(file, taskId, SIDE_STALE_MS);
}

type Removal = 'removed' | 'changed' | 'busy';

/**
 * Unlink `file` only if it still holds the instance `seen` and `isRemovable`
 * agrees on a fresh read. The check and the unlink are one step for everyone
 * who removes this instance: each must first hold its claim file, named after
 * the instance, so no other remover can act in between (docs/locking.md).
 */
function removeIfUnchanged(file: string, seen: Seen, isRemovable: (now: Seen) => boolean, depth: number): Removal {
  const claim = takeExclusive(`${file}.clear-${seen.key}`, '', depth);
  if (typeof claim !== 'object') return 'busy';
  try {
    const now = readLock(file);
    if (now === undefined || now.key !== seen.key || !isRemovable(now)) return 'changed';
    try {
      unlinkSync(file);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return 'changed';
      throw err;
    }
    return 'removed';
  } finally {
    dropOwned(claim);
  }
}

/**
 * Release the lock: remove it if it still is our instance, under its claim. A
 * lock we may not remove (EPERM, a claim we cannot get) is marked released in
 * place, through our own descriptor, so the next writer takes it at once.
 */
async function release(held: Owned): Promise<void> {
  const seen: Seen = { key: held.key, mtimeMs: 0, owner: { kind: 'released', token: held.token } };
  try {
    for (let tries = 1; tries <= RELEASE_TRIES; tries++) {
      if (removeIfUnchanged(held.file, seen, () => true, 0) !== 'busy') return;
      await sleep(2 ** tries);
    }
    markReleased(held);
  } catch {
    markReleased(held);
  } finally {
    closeQuietly(held.fd);
  }
}

/** Drop a side lock or claim we own: unlink it if it is still our inode, else mark it released. */
function dropOwned(owned: Owned): void {
  try {
    const now = statSync(owned.file, { bigint: true });
    if (now.dev === owned.dev && now.ino === owned.ino) unlinkSync(owned.file);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') {
      markReleased(owned);
      ownLeftovers.set(owned.file, { dev: owned.dev, ino: owned.ino });
    }
  } finally {
    closeQuietly(owned.fd);
  }
}

/**
 * Overwrite our record in place with a released one and date it to 1970, so
 * that our writers take it at once and age-judging ones (older writers, the
 * newer orchestrator) see it as long stale. Writes only our own inode.
 */
function markReleased(owned: Owned): void {
  releasedTokens.add(owned.token);
  try {
    writeAll(owned.fd, Buffer.from(formatReleasedRecord(owned.token, owned.recordBytes)), 0);
    futimesSync(owned.fd, 0, 0);
  } catch {
    // Left as it was: this process still takes it over (releasedTokens), others once we exit.
  }
}

function judge(seen: Seen, staleMs: number): LockVerdict {
  const token = ownerToken(seen.owner);
  if (token !== null && releasedTokens.has(token)) return { isFree: true, reason: 'released', ageMs: 0 };
  return judgeLock(seen.owner, seen.mtimeMs, staleMs);
}

/** Read a lock file through one descriptor, so content and identity belong together. Undefined if absent. */
function readLock(file: string): Seen | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw ioError('read the lock file', file, err);
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    const buffer = Buffer.alloc(Math.min(Number(st.size), MAX_RECORD_BYTES));
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, length);
      if (n === 0) break;
      length += n;
    }
    const text = buffer.toString('utf8', 0, length);
    const owner = parseOwner(text);
    return { key: instanceKey(st.dev, st.ino, ownerToken(owner), st.mtimeNs, text), mtimeMs: Number(st.mtimeNs / 1000n) / 1000, owner };
  } catch (err) {
    throw ioError('read the lock file', file, err);
  } finally {
    closeQuietly(fd);
  }
}

/**
 * Names one lock instance: its inode and token; for records without a token,
 * its inode, mtime and content. Claim files are named after it.
 */
function instanceKey(dev: bigint, ino: bigint, token: string | null, mtimeNs: bigint, text: string): string {
  const identity = token !== null ? `${dev}:${ino}:token:${token}` : `${dev}:${ino}:mtime:${mtimeNs}:${text}`;
  return loadedCrypto().createHash('sha256').update(identity).digest('hex').slice(0, 16);
}

const LEFTOVER = /^(?:acquire\.)?(?:clear-[0-9a-f]{16}\.)*(?:clear-[0-9a-f]{16}|\d+\.[0-9a-f]{12}\.tmp)$/;

/**
 * After clearing a dead owner's lock, remove what dead writers left beside it:
 * temp files (private: nobody else uses their names) and claims, through their
 * own claims. Best effort.
 */
function sweepLeftovers(file: string): void {
  const prefix = path.basename(file) + '.';
  let names: string[];
  try {
    names = readdirSync(path.dirname(file)).filter((name) => name.startsWith(prefix) && LEFTOVER.test(name.slice(prefix.length)));
  } catch {
    return;
  }
  for (const name of names) {
    const leftover = path.join(path.dirname(file), name);
    try {
      const seen = readLock(leftover);
      if (seen === undefined) continue;
      const isDead = judgeLiveness(seen.owner) === 'dead';
      if (name.endsWith('.tmp')) {
        // A temp cut short by a kill has no record: a live writer holds its temp for microseconds.
        const isAbandoned = seen.owner.kind !== 'owner' && Date.now() - seen.mtimeMs > SIDE_STALE_MS;
        if (isDead || isAbandoned) unlinkSync(leftover);
      } else if (isDead) {
        removeIfUnchanged(leftover, seen, (now) => judgeLiveness(now.owner) === 'dead', 1);
      }
    } catch {
      // Someone else swept it, or it is not ours to judge.
    }
  }
}

function touch(fd: number): void {
  try {
    const now = new Date();
    futimesSync(fd, now, now);
  } catch {
    // The next tick tries again; a lock that ages meanwhile is judged by liveness on this host.
  }
}

function newToken(): string {
  return randomHex(16);
}

function writeAll(fd: number, bytes: Buffer, position?: number): void {
  for (let offset = 0; offset < bytes.length; ) {
    offset += writeSync(fd, bytes, offset, bytes.length - offset, position === undefined ? null : position + offset);
  }
}

function fstatOrThrow(fd: number, file: string): { dev: bigint; ino: bigint } {
  try {
    return fstatSync(fd, { bigint: true });
  } catch (err) {
    throw ioError('stat a lock temp file', file, err);
  }
}

function fstatQuietly(fd: number): { nlink: bigint } | undefined {
  try {
    return fstatSync(fd, { bigint: true });
  } catch {
    return undefined;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // A close error after the work is done must not replace the first failure.
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    // Retried after our next acquisition; swept by others once we are dead.
    if (errorCode(err) !== 'ENOENT') ownLeftovers.set(file, undefined);
  }
}

/**
 * Our own temp files and claims that an unlink refused (a passing fault), with
 * the inode we created where the name is not private to us. Retried each time
 * this process takes a lock, so a passing fault does not litter runsDir for the
 * life of the process; only our own inode is ever removed.
 */
const ownLeftovers = new Map<string, { dev: bigint; ino: bigint } | undefined>();

function retryOwnLeftovers(): void {
  for (const [file, identity] of ownLeftovers) {
    try {
      if (identity !== undefined) {
        const now = statSync(file, { bigint: true });
        if (now.dev !== identity.dev || now.ino !== identity.ino) {
          ownLeftovers.delete(file);
          continue;
        }
      }
      unlinkSync(file);
      ownLeftovers.delete(file);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') ownLeftovers.delete(file);
    }
  }
}
