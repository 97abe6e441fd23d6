/**
 * Complete lines of a log from a byte offset. Only bytes up to the last "\n"
 * are lines: a writer may be mid-append, and a half line read now would be
 * counted as malformed forever in the index we are about to write.
 */
import { read, readSync } from 'node:fs';

/** What one fetch may still read, shared by every task it reads. Infinity = unlimited. */
export interface ReadBudget {
  linesLeft: number;
  bytesLeft: number;
}

export function unlimitedBudget(): ReadBudget {
  return { linesLeft: Infinity, bytesLeft: Infinity };
}

export interface LineReadResult {
  /** File offset just after the last newline consumed (== `from` when none was). */
  end: number;
  bytesRead: number;
  /** Complete lines consumed, blank ones included. */
  linesRead: number;
  /** A budget stopped reading while at least one more complete line remained before `to`. */
  truncated: boolean;
}

// 1 MiB reads: large enough that syscalls are noise, small enough that the
// whole file is never in memory (a 1M-record rebuild stays far under 200 MB).
const CHUNK_BYTES = 1 << 20;
const NEWLINE = 0x0a;
// fs.read as a promise, without node:util (one module less for every process that imports the package).
function readAsync(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
  return new Promise((resolve, reject) => read(fd, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead }))));
}

/**
 * Call `onLine` for each complete, non-blank line in [from, to) of the open log `fd`, with
 * a trailing "\r" removed. `to` is the size the caller observed: bytes appended
 * after that observation are left for the next read. Charges `budget`.
 */
export async function readLines(
  fd: number,
  from: number,
  to: number,
  onLine: (line: string) => void,
  options: { budget?: ReadBudget; onProgress?: (bytesRead: number) => void } = {},
): Promise<LineReadResult> {
  const budget = options.budget ?? unlimitedBudget();
  // With no lines left to read, read nothing: only look whether a line was missed.
  const limit = budget.linesLeft <= 0 ? from : Math.min(to, from + budget.bytesLeft);
  let end = from; // file offset of the first unconsumed byte (data[0])
  let pos = from; // file offset of the next byte to read
  let carry: Buffer | undefined;
  let bytesRead = 0;
  let linesRead = 0;
  let stoppedByLines = false;
  let hasMoreLinesInChunk = false;

  // Read the next chunk while this one is parsed: the read runs on libuv's pool.
  let pending = pos < limit ? readChunk(fd, pos, Math.min(CHUNK_BYTES, limit - pos)) : undefined;
  try {
    while (pending !== undefined) {
      const chunk = await pending;
      pending = undefined;
      if (chunk.length === 0) break; // the file shrank under us: stop with what we have
      pos += chunk.length;
      bytesRead += chunk.length;
      options.onProgress?.(chunk.length);
      if (pos < limit) pending = readChunk(fd, pos, Math.min(CHUNK_BYTES, limit - pos));

      const data = carry === undefined ? chunk : Buffer.concat([carry, chunk]);
      const lastNewline = data.lastIndexOf(NEWLINE);
      if (lastNewline < 0) {
        carry = data;
        continue;
      }
      // A "\n" byte never occurs inside a multi-byte UTF-8 sequence, so decoding
      // up to a newline never splits a character.
      const lines = data.toString('utf8', 0, lastNewline).split('\n');
      for (let i = 0; i < lines.length; i++) {
        if (linesRead >= budget.linesLeft) {
          stoppedByLines = true;
          hasMoreLinesInChunk = true;
          end += byteOffsetOfLine(data, i);
          break;
        }
        linesRead++;
        let line = lines[i]!;
        if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
        // Blank means trim() === '': a record starts with "{" and skips the trim, while
        // lines of Unicode spaces (U+00A0, U+3000) count as blank whatever their first character.
        const first = line.charCodeAt(0);
        if (line.length === 0 || ((first <= 32 || first > 127) && line.trim() === '')) continue;
        onLine(line);
      }
      if (stoppedByLines) break;
      end += lastNewline + 1;
      carry = lastNewline + 1 < data.length ? data.subarray(lastNewline + 1) : undefined;
    }
  } finally {
    // Never leave a read in flight on a handle the caller is about to close.
    if (pending !== undefined) await pending.catch(() => undefined);
  }

  budget.linesLeft -= linesRead;
  budget.bytesLeft -= bytesRead;
  let truncated = false;
  if (stoppedByLines) truncated = hasMoreLinesInChunk;
  else if (limit < to) truncated = await hasNewline(fd, limit, to);
  return { end, bytesRead, linesRead, truncated };
}

// A read shorter than a chunk (a tail, a small log, the end of a large one) is
// synchronous: from the page cache it takes microseconds, where a round trip
// through libuv's pool costs tens of them (docs/benchmarks.md). Whole chunks stay
// asynchronous, so that a full scan reads ahead from disk while it parses.
async function readChunk(fd: number, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const bytesRead =
      length < CHUNK_BYTES
        ? readSync(fd, buffer, filled, length - filled, position + filled)
        : (await readAsync(fd, buffer, filled, length - filled, position + filled)).bytesRead;
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

/** Byte offset in `data` where line number `index` (0-based) starts. */
function byteOffsetOfLine(data: Buffer, index: number): number {
  let offset = 0;
  for (let i = 0; i < index; i++) offset = data.indexOf(NEWLINE, offset) + 1;
  return offset;
}

/** Whether [from, to) of the file holds a "\n": is there another complete line a budget kept us from? */
async function hasNewline(fd: number, from: number, to: number): Promise<boolean> {
  for (let pos = from; pos < to; ) {
    const chunk = await readChunk(fd, pos, Math.min(64 * 1024, to - pos));
    if (chunk.length === 0) return false;
    if (chunk.includes(NEWLINE)) return true;
    pos += chunk.length;
  }
  return false;
}
