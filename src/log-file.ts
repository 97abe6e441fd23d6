/**
 * The log as a file: open, stat, read its last byte, append. Synchronous on
 * purpose: each call is microseconds, where a round trip through libuv's pool
 * costs tens of them (docs/benchmarks.md), and these run under the task's lock.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, statSync, writeSync, type BigIntStats } from 'node:fs';
import { errorCode, ExperienceStoreError, ioError } from './errors.js';
import type { LogStat } from './freshness.js';

function toLogStat(s: BigIntStats): LogStat {
  return { dev: s.dev, ino: s.ino, size: Number(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
}

/** A bigint stat of the log, or undefined when there is none (no log yet is an answer). */
export function statLog(logPath: string): LogStat | undefined {
  try {
    return toLogStat(statSync(logPath, { bigint: true }));
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return undefined;
    throw ioError('stat the log', logPath, err);
  }
}

export function fstatLog(fd: number, logPath = 'the log'): LogStat {
  try {
    return toLogStat(fstatSync(fd, { bigint: true }));
  } catch (err) {
    throw ioError('stat the log', logPath, err);
  }
}

/** Open the log for reading; undefined when it does not exist. */
export function openLogForReading(logPath: string): number | undefined {
  try {
    return openSync(logPath, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return undefined;
    throw ioError('open the log', logPath, err);
  }
}

/**
 * Open (creating) the log for appending; readable too, so a writer can read back
 * what it wrote. A task directory removed since the writer last saw it is recreated.
 */
export function openLogForAppending(logPath: string, taskDir: string): number {
  try {
    return openSync(logPath, 'a+');
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw ioError('open the log', logPath, err);
  }
  try {
    mkdirSync(taskDir, { recursive: true });
    return openSync(logPath, 'a+');
  } catch (err) {
    throw ioError('open the log', logPath, err);
  }
}

/**
 * Run `fn` on the open log, closing it whatever happens. Readers and writers
 * alike close quietly: a failing close of a descriptor whose reads succeeded
 * loses nothing, and must not hide the answer or the first failure.
 */
export async function withLog<T>(fd: number, fn: (fd: number) => Promise<T>): Promise<T> {
  try {
    return await fn(fd);
  } finally {
    closeQuietly(fd);
  }
}

/** Close, ignoring errors: for cleanup after a failure, or after a commit point. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // see above
  }
}

export function endsWithNewline(fd: number, size: number, logPath = 'the log'): boolean {
  if (size === 0) return true;
  const buffer = Buffer.alloc(1);
  try {
    return readSync(fd, buffer, 0, 1, size - 1) === 1 && buffer[0] === 0x0a;
  } catch (err) {
    throw ioError('read the end of the log', logPath, err);
  }
}

/**
 * Append `bytes` as one batch, all or nothing. One write of the whole payload
 * on an O_APPEND descriptor, so appenders that skip the lock can never
 * interleave inside it; a short write (disk full, a signal) is continued, still
 * at the end of the file. If any write fails, the log is cut back to `sizeBefore`
 * (the caller holds the lock, so no writer of ours appended meanwhile) and the
 * first failure is thrown: no part of a failed batch stays in the log. When the
 * cut fails too, the error says so: that double fault is the one case where
 * part of a failed batch can remain (docs/index-format.md, "Crash safety").
 */
export function appendToLog(fd: number, bytes: Buffer, sizeBefore: number, logPath: string): void {
  let written = 0;
  try {
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
  } catch (err) {
    if (written === 0 && errorCode(err) !== 'EINTR') {
      // Nothing reached the file: nothing to cut. (A write that fails outright writes no byte.)
      throw ioError('append to the log', logPath, err);
    }
    try {
      ftruncateSync(fd, sizeBefore);
    } catch (cutErr) {
      throw new ExperienceStoreError(
        'EXP_IO',
        `cannot append to ${logPath}: ${errorCode(err) ?? 'error'}, and cutting the partial batch back failed too ` +
          `(${errorCode(cutErr) ?? 'error'}): the log may end with part of this batch; run experience-store verify and check the disk`,
        { cause: err },
      );
    }
    throw ioError('append to the log', logPath, err);
  }
}
