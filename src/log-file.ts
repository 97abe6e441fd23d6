/**
 * The log as a file: open, stat, read its last byte, append. Synchronous on
 * purpose: each call is microseconds, where a round trip through libuv's pool
 * costs tens of them (docs/benchmarks.md), and these run under the task's lock.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, writeSync, type BigIntStats } from 'node:fs';
import { errorCode, ioError } from './errors.js';
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

export function fstatLog(fd: number): LogStat {
  return toLogStat(fstatSync(fd, { bigint: true }));
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

/** Open (creating) the log for appending; readable too, so a writer can read back what it wrote. */
export function openLogForAppending(logPath: string): number {
  try {
    return openSync(logPath, 'a+');
  } catch (err) {
    throw ioError('open the log', logPath, err);
  }
}

/** Run `fn` on the open log, closing it whatever happens. */
export async function withLog<T>(fd: number, fn: (fd: number) => Promise<T>): Promise<T> {
  try {
    return await fn(fd);
  } finally {
    closeSync(fd);
  }
}

export function endsWithNewline(fd: number, size: number): boolean {
  if (size === 0) return true;
  const buffer = Buffer.alloc(1);
  return readSync(fd, buffer, 0, 1, size - 1) === 1 && buffer[0] === 0x0a;
}

/**
 * Append `bytes` with one write on an O_APPEND descriptor: concurrent appenders
 * (older writers that skip the lock) can never interleave inside it. A short
 * write (disk full, a signal) is continued, still at the end of the file.
 */
export function appendToLog(fd: number, bytes: Buffer, logPath: string): void {
  try {
    for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written, bytes.length - written);
  } catch (err) {
    throw ioError('append to the log', logPath, err);
  }
}
