/**
 * The sidecar index `experiences.top.json`: schema, reading, writing, and the
 * fingerprint of the log it covers. docs/index-format.md is the prose version.
 *
 * The file is newline-delimited JSON, so a fetch parses only the domain it asks for:
 *   line 1        header  { format, version, k, log, records, malformed, domains: [{ domain, count }] }
 *   lines 2..n+1  one per header domain, same order: { domain, top: ExperienceRecord[] }
 *   last line     trailer { crc32, bytes }: CRC-32 of the `bytes` bytes before it
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import { errorCode } from './errors.js';
import { compareRecords, isExperienceRecord, type ExperienceRecord } from './record.js';
import type { DomainTop, TopState } from './top-k.js';

export const INDEX_FORMAT = 'experience-store/top-index';
export const INDEX_VERSION = 1;
/** Bytes of the log, ending at `offset`, that the fingerprint hashes. */
export const FINGERPRINT_BYTES = 4096;

const DecimalString = z.string().regex(/^(0|[1-9][0-9]*)$/);
const Count = z.number().int().nonnegative();

/** Which log, and which prefix of it, an index covers. */
export const LogStamp = z.object({
  offset: Count,
  size: Count,
  mtimeNs: DecimalString,
  ctimeNs: DecimalString,
  ino: DecimalString,
  dev: DecimalString,
  fingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/),
});
export type LogStamp = z.infer<typeof LogStamp>;

export const IndexHeader = z
  .looseObject({
    format: z.literal(INDEX_FORMAT),
    version: z.literal(INDEX_VERSION),
    k: z.number().int().positive(),
    log: LogStamp,
    records: Count,
    malformed: Count,
    domains: z.array(z.object({ domain: z.string().min(1), count: z.number().int().positive() })),
  })
  .check((ctx) => {
    const h = ctx.value;
    if (h.log.offset > h.log.size) ctx.issues.push({ code: 'custom', message: 'log.offset exceeds log.size', input: h });
    let sum = 0;
    for (let i = 0; i < h.domains.length; i++) {
      sum += h.domains[i]!.count;
      if (i > 0 && !(h.domains[i - 1]!.domain < h.domains[i]!.domain)) {
        ctx.issues.push({ code: 'custom', message: 'domains must be unique and sorted', input: h });
      }
    }
    if (sum !== h.records) ctx.issues.push({ code: 'custom', message: 'domain counts must add up to records', input: h });
  });
export type IndexHeader = z.infer<typeof IndexHeader>;

// Records are checked with the guard that zod's ExperienceRecord is tested to agree
// with (record.ts): zod would copy each of the K records, which was a quarter of
// a cold fetch; the guard keeps the freshly parsed objects.
export const IndexDomainLine = z.object({ domain: z.string(), top: z.array(z.custom<ExperienceRecord>(isExperienceRecord)) });
export const IndexTrailer = z.object({ crc32: z.string().regex(/^[0-9a-f]{8}$/), bytes: Count });

export class InvalidIndexError extends Error {}

/**
 * An index read from disk. The header is checked on load; a domain's line is
 * parsed and checked the first time it is asked for, so a cold fetch pays for
 * one domain, not all of them.
 */
export class LoadedIndex {
  readonly header: IndexHeader;
  readonly #buffer: Buffer | undefined;
  readonly #lineStarts: number[];
  readonly #tops = new Map<string, readonly ExperienceRecord[]>();
  readonly #position: Map<string, number>;

  constructor(header: IndexHeader, buffer?: Buffer, lineStarts: number[] = [], tops?: Map<string, DomainTop>) {
    this.header = header;
    this.#buffer = buffer;
    this.#lineStarts = lineStarts;
    this.#position = new Map(header.domains.map((d, i) => [d.domain, i]));
    if (tops) for (const [name, d] of tops) this.#tops.set(name, d.top);
  }

  get k(): number {
    return this.header.k;
  }

  count(domain: string): number {
    const i = this.#position.get(domain);
    return i === undefined ? 0 : this.header.domains[i]!.count;
  }

  /** The best min(count, k) records of `domain`. Throws InvalidIndexError on a bad line. */
  top(domain: string): readonly ExperienceRecord[] {
    const cached = this.#tops.get(domain);
    if (cached !== undefined) return cached;
    const i = this.#position.get(domain);
    if (i === undefined) return [];
    const top = this.#parseDomainLine(i);
    this.#tops.set(domain, top);
    return top;
  }

  /** Whether this index alone can give the first `limit` records of `domain`. */
  canAnswer(domain: string, limit: number): boolean {
    return limit <= this.k || this.count(domain) <= this.k;
  }

  toState(): TopState {
    const domains = new Map<string, DomainTop>();
    for (const d of this.header.domains) domains.set(d.domain, { count: d.count, top: this.top(d.domain) });
    return { k: this.k, records: this.header.records, malformed: this.header.malformed, domains };
  }

  #parseDomainLine(i: number): readonly ExperienceRecord[] {
    const buffer = this.#buffer;
    const start = this.#lineStarts[i];
    const end = this.#lineStarts[i + 1];
    if (buffer === undefined || start === undefined || end === undefined) throw new InvalidIndexError('missing domain line');
    const expected = this.header.domains[i]!;
    let line: z.infer<typeof IndexDomainLine>;
    try {
      line = IndexDomainLine.parse(JSON.parse(buffer.toString('utf8', start, end - 1)));
    } catch (err) {
      throw new InvalidIndexError(`domain line ${i + 2} is not valid`, { cause: err });
    }
    const { top } = line;
    if (line.domain !== expected.domain) throw new InvalidIndexError(`line ${i + 2} is not domain ${expected.domain}`);
    if (top.length !== Math.min(expected.count, this.k)) throw new InvalidIndexError(`line ${i + 2} has a wrong length`);
    for (let j = 0; j < top.length; j++) {
      if (top[j]!.domain !== expected.domain) throw new InvalidIndexError(`line ${i + 2} holds another domain`);
      if (j > 0 && compareRecords(top[j - 1]!, top[j]!) > 0) throw new InvalidIndexError(`line ${i + 2} is not ranked`);
    }
    // Checked and unchanged, the line can be written back as it is (see serializeIndex):
    // a writer or a healing reader that loaded this index re-encodes only what it changed.
    serializedTops.set(top, buffer.subarray(start, end));
    return top;
  }
}

export type IndexReadResult =
  | { kind: 'ok'; index: LoadedIndex }
  | { kind: 'missing' }
  | { kind: 'invalid'; reason: string };

/** Read and check an index file. Never throws for a bad or missing file: the index is only a cache. */
export function readIndex(indexPath: string): IndexReadResult {
  let buffer: Buffer;
  try {
    // One synchronous read: fs/promises.readFile costs more than the whole parse here.
    buffer = readFileSync(indexPath);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return { kind: 'missing' };
    return { kind: 'invalid', reason: `unreadable (${errorCode(err) ?? 'error'})` };
  }
  return parseIndex(buffer);
}

export function parseIndex(buffer: Buffer): IndexReadResult {
  const size = buffer.length;
  if (size === 0 || buffer[size - 1] !== 0x0a) return { kind: 'invalid', reason: 'truncated (no final newline)' };
  const trailerStart = buffer.lastIndexOf(0x0a, size - 2) + 1;
  let trailer: z.infer<typeof IndexTrailer>;
  try {
    trailer = IndexTrailer.parse(JSON.parse(buffer.toString('utf8', trailerStart, size - 1)));
  } catch {
    return { kind: 'invalid', reason: 'no valid trailer line' };
  }
  if (trailer.bytes !== trailerStart) return { kind: 'invalid', reason: 'trailer byte count mismatch' };
  if (crc32Hex([buffer.subarray(0, trailerStart)]) !== trailer.crc32) return { kind: 'invalid', reason: 'checksum mismatch' };

  const lineStarts: number[] = [0];
  for (let at = buffer.indexOf(0x0a); at >= 0 && at < trailerStart; at = buffer.indexOf(0x0a, at + 1)) {
    lineStarts.push(at + 1);
  }
  let header: IndexHeader;
  try {
    const raw: unknown = JSON.parse(buffer.toString('utf8', 0, lineStarts[1]! - 1));
    if (typeof raw === 'object' && raw !== null && 'version' in raw && raw.version !== INDEX_VERSION) {
      return { kind: 'invalid', reason: `unsupported version ${String(raw.version)}` };
    }
    header = IndexHeader.parse(raw);
  } catch {
    return { kind: 'invalid', reason: 'header does not match the schema' };
  }
  // header line + one line per domain, then the trailer
  if (lineStarts.length !== header.domains.length + 2) return { kind: 'invalid', reason: 'wrong number of domain lines' };
  return { kind: 'ok', index: new LoadedIndex(header, buffer, lineStarts.slice(1)) };
}

/** The header an index of `state` has; domains in code-unit order. */
export function headerOf(state: TopState, stamp: LogStamp): IndexHeader {
  const names = [...state.domains.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    format: INDEX_FORMAT,
    version: INDEX_VERSION,
    k: state.k,
    log: stamp,
    records: state.records,
    malformed: state.malformed,
    domains: names.map((domain) => ({ domain, count: state.domains.get(domain)!.count })),
  };
}

/** An in-memory index of a (trimmed) state, as if it had been written and read back. */
export function indexOfState(state: TopState, stamp: LogStamp): LoadedIndex {
  return new LoadedIndex(headerOf(state, stamp), undefined, [], state.domains);
}

// Encoded domain lines by `top` array identity: a write re-encodes only the
// domains its batch changed (tops are never mutated, only replaced), and the
// checksum runs over the parts, so ~100 KB of unchanged lines cost one copy.
const serializedTops = new WeakMap<readonly ExperienceRecord[], Buffer>();

/** The bytes of an index for `state`, covering the log as `stamp` describes it. */
export function serializeIndex(state: TopState, stamp: LogStamp): Buffer {
  const header = headerOf(state, stamp);
  const parts: Buffer[] = [Buffer.from(JSON.stringify(header) + '\n')];
  for (const { domain: name } of header.domains) {
    const top = state.domains.get(name)!.top;
    let line = serializedTops.get(top);
    if (line === undefined) {
      const kept = top.length > state.k ? top.slice(0, state.k) : top;
      line = Buffer.from(`{"domain":${JSON.stringify(name)},"top":[${kept.map(encodeRecord).join(',')}]}\n`);
      serializedTops.set(top, line);
    }
    parts.push(line);
  }
  const bytes = parts.reduce((n, part) => n + part.length, 0);
  const trailer = JSON.stringify({ crc32: crc32Hex(parts), bytes });
  parts.push(Buffer.from(trailer + '\n'));
  return Buffer.concat(parts);
}

/**
 * Replace the index atomically. Callers hold the task's lock: write-file-atomic's
 * temp names are unique per process, not across hosts or PID namespaces. No
 * fsync: after a power loss the index may be empty or old, which readers detect
 * (checksum, stamp) and pay for with a rescan, never with a wrong answer.
 * Synchronous: the async form makes ten round trips through libuv's pool for
 * ~100 KB, several times the cost of the whole write (docs/benchmarks.md).
 */
export async function writeIndex(indexPath: string, state: TopState, stamp: LogStamp): Promise<void> {
  writeFileAtomic.sync(indexPath, serializeIndex(state, stamp), { fsync: false });
}

/**
 * A record as JSON that parses back to an equal value. JSON.stringify writes -0
 * as 0, so a record whose log line held a literal -0 (JSON.stringify never
 * writes one, but other writers may) would come back from the index unequal to
 * a full scan's; such records take the slow path that keeps the sign.
 */
export function encodeRecord(record: ExperienceRecord): string {
  if (!hasNegativeZero(record)) return JSON.stringify(record);
  return JSON.stringify(record, (_key, value: unknown) => (Object.is(value, -0) ? NEGATIVE_ZERO : value)).replaceAll(
    JSON.stringify(NEGATIVE_ZERO),
    '-0',
  );
}

// A placeholder no log line holds: a NUL and a random tag, fixed per process.
const NEGATIVE_ZERO = `\u0000-0:${createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 16)}`;

function hasNegativeZero(value: unknown): boolean {
  if (typeof value === 'number') return Object.is(value, -0);
  if (typeof value !== 'object' || value === null) return false;
  for (const item of Array.isArray(value) ? value : Object.values(value)) {
    if (hasNegativeZero(item)) return true;
  }
  return false;
}

/** CRC-32 of the bytes of `parts` in order, as 8 lowercase hex digits. */
function crc32Hex(parts: readonly Buffer[]): string {
  let crc = 0;
  for (const part of parts) crc = crc32(part, crc);
  return (crc >>> 0).toString(16).padStart(8, '0');
}

/** `sha256:<hex>` of the up to FINGERPRINT_BYTES bytes of the log before `offset`. */
export function fingerprintOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Read [max(0, offset - FINGERPRINT_BYTES), offset) of an open log and fingerprint it. */
export function fingerprintAt(fd: number, offset: number): string {
  const start = Math.max(0, offset - FINGERPRINT_BYTES);
  return fingerprintOf(readExactly(fd, start, offset - start));
}

/**
 * Whether the log at `logPath` still holds, before `stamp.offset`, the bytes the
 * index was built from, and no complete line after it within `stamp.size`.
 * Used when size and mtime alone cannot be trusted (see docs: "racy logs").
 */
export function logMatchesStamp(logPath: string, stamp: LogStamp): boolean {
  let fd: number;
  try {
    fd = openSync(logPath, 'r');
  } catch {
    return false;
  }
  try {
    return logMatchesStampAt(fd, stamp);
  } finally {
    closeSync(fd);
  }
}

/** logMatchesStamp on an open log. */
export function logMatchesStampAt(fd: number, stamp: LogStamp): boolean {
  try {
    if (fingerprintAt(fd, stamp.offset) !== stamp.fingerprint) return false;
    if (stamp.size > stamp.offset) return !readExactly(fd, stamp.offset, stamp.size - stamp.offset).includes(0x0a);
    return true;
  } catch {
    return false;
  }
}

export function readExactly(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const n = readSync(fd, buffer, filled, length - filled, position + filled);
    if (n === 0) throw new InvalidIndexError('log is shorter than the index says');
    filled += n;
  }
  return buffer;
}
