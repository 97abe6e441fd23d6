/**
 * The sidecar index `experiences.top.json`: layout, reading, writing, and the
 * fingerprint of the log it covers. docs/index-format.md is the prose version.
 *
 *   line 1   prefix  {"format":"experience-store/top-index","version":2,"header":{"bytes":N,"crc32":"…"}}
 *   line 2   header  { k, log, records, malformed, domains: [{ domain, count, top: [at, bytes, crc32], pool: [...] }] }
 *   then     sections, at `at` bytes after the header line: per domain a top section
 *            (one log line per record) and a pool section (one `[seq,ref]` line per record)
 *
 * A fetch reads the header and the one section it answers from, checks that
 * section's CRC-32 and parses only the records it returns (and one more, for the
 * order check across the boundary): its cost does not grow with the number of
 * domains, nor with what selection keeps.
 */
import { closeSync, fstatSync, openSync, readSync, statSync, writevSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { errorCode } from './errors.js';
import { compareRecords, isExperienceRecord } from './record.js';
import { compareSelection, LazyDomain, newEntry, trimPool, type DomainTop, type EncodedDomain, type Entry, type TopState } from './top-k.js';

export const INDEX_FORMAT = 'experience-store/top-index';
export const INDEX_VERSION = 2;
/** Bytes of the log, ending at `offset`, that the fingerprint covers. */
export const FINGERPRINT_BYTES = 4096;

/** Which log, and which prefix of it, an index covers. */
export interface LogStamp {
  offset: number;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  dev: string;
  /** `crc32:<8 hex>` of log bytes [max(0, offset - 4096), offset). */
  fingerprint: string;
}

/** [start relative to the end of the header line, length in bytes, CRC-32 as 8 hex digits]. */
export type Section = [number, number, string];

export interface IndexDomain {
  domain: string;
  count: number;
  /** Records whose score is beyond ±1e300 (selection's arithmetic overflows there); absent = 0. */
  extreme?: number;
  top: Section;
  pool: Section;
}

export interface IndexHeader {
  k: number;
  log: LogStamp;
  records: number;
  malformed: number;
  domains: IndexDomain[];
}

export class InvalidIndexError extends Error {}

/**
 * Which index file an index was read from or written as: every write renames a
 * new file into place, so another writer's index (a rebuild with another K, say)
 * has another identity even when it covers the same log.
 */
export interface IndexFileId {
  ino: bigint;
  size: number;
  mtimeNs: bigint;
}

/** The identity of the index file now, or undefined when there is none (or it cannot be stat'ed). */
export function indexFileIdOf(indexPath: string): IndexFileId | undefined {
  try {
    const s = statSync(indexPath, { bigint: true });
    return { ino: s.ino, size: Number(s.size), mtimeNs: s.mtimeNs };
  } catch {
    return undefined;
  }
}

export function sameIndexFile(a: IndexFileId | undefined, b: IndexFileId | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

// Enough for the header of a few hundred domains and, usually, the section asked for.
const FIRST_READ_BYTES = 16 * 1024;

interface Parsed {
  /** The section's checked bytes and lines; entries are parsed on demand, in order. */
  bytes: Buffer | undefined;
  lines: string[];
  entries: Entry[];
}

/**
 * An index read from disk (or made from a state). The header is checked on
 * load; a domain's sections are read, checked and parsed the first time they
 * are needed, and only as far as needed.
 */
export class LoadedIndex {
  readonly header: IndexHeader;
  /** The file this index was read from, or written as (set by the writer); undefined for neither. */
  fileId: IndexFileId | undefined;
  readonly #path: string | undefined;
  /** File offset where sections start, and the bytes read so far from there. */
  readonly #sectionsAt: number;
  #bytes: Buffer | undefined;
  readonly #position = new Map<string, number>();
  readonly #tops = new Map<string, Parsed>();
  readonly #pools = new Map<string, readonly Entry[]>();
  /** An index made from a state answers from its (possibly lazy) domains. */
  readonly #state: TopState | undefined;

  constructor(header: IndexHeader, source?: { path: string; sectionsAt: number; bytes: Buffer }, state?: TopState) {
    this.header = header;
    this.#path = source?.path;
    this.#sectionsAt = source?.sectionsAt ?? 0;
    this.#bytes = source?.bytes;
    this.#state = state;
    header.domains.forEach((d, i) => this.#position.set(d.domain, i));
  }

  get k(): number {
    return this.header.k;
  }

  count(domain: string): number {
    const i = this.#position.get(domain);
    return i === undefined ? 0 : this.header.domains[i]!.count;
  }

  /** Records of `domain` whose score is beyond ±1e300. */
  extreme(domain: string): number {
    const i = this.#position.get(domain);
    return i === undefined ? 0 : (this.header.domains[i]!.extreme ?? 0);
  }

  /** Whether this index alone can give the first `limit` records (or selection slots) of `domain`. */
  canAnswer(domain: string, limit: number): boolean {
    return limit <= this.k || this.count(domain) <= this.k;
  }

  /** The best min(limit, count, k) entries of `domain`, parsing no more records than that. Throws InvalidIndexError. */
  top(domain: string, limit = Infinity): readonly Entry[] {
    const i = this.#position.get(domain);
    if (i === undefined) return [];
    const d = this.header.domains[i]!;
    const want = Math.min(limit, d.count, this.k);
    if (this.#state !== undefined) {
      const top = this.#state.domains.get(domain)!.top;
      return want >= top.length ? top : top.slice(0, want);
    }
    let parsed = this.#tops.get(domain);
    if (parsed === undefined) {
      const bytes = this.#section(d.top, `top section of ${JSON.stringify(domain)}`);
      const text = bytes.toString('utf8');
      const lines = text.split('\n');
      if (lines.pop() !== '' || lines.length !== Math.min(d.count, this.k)) throw new InvalidIndexError(`top section of ${domain} has a wrong length`);
      parsed = { bytes, lines, entries: [] };
      this.#tops.set(domain, parsed);
    }
    const { lines, entries } = parsed;
    const wasComplete = entries.length === lines.length;
    // One record past the answer is parsed too: the order check between the last record
    // returned and the next is what catches a section whose records were swapped across
    // that boundary (a CRC only says the bytes are the ones written).
    const parse = Math.min(want + 1, lines.length);
    while (entries.length < parse) {
      const at = entries.length;
      const record = parseJson(lines[at]!);
      if (!isExperienceRecord(record) || record.domain !== domain) throw new InvalidIndexError(`top[${at}] of ${domain} is not a record of it`);
      const entry = newEntry(record, lines[at]!, -1);
      if (at > 0 && compareRecords(entries[at - 1]!.record, record) > 0) throw new InvalidIndexError(`top of ${domain} is not ranked`);
      entries.push(entry);
    }
    if (!wasComplete && entries.length === lines.length && parsed.bytes !== undefined) {
      // Checked in full and unchanged: a writer can copy the section's bytes as they are.
      encodedTops.set(entries, parsed.bytes);
    }
    // The list handed out never grows later: a partly parsed one is copied.
    return want === lines.length ? entries : entries.slice(0, want);
  }

  /** The selection pool of `domain`, in selection order (see top-k.ts). Throws InvalidIndexError. */
  pool(domain: string): readonly Entry[] {
    if (this.#state !== undefined) return this.#state.domains.get(domain)?.pool ?? [];
    const cached = this.#pools.get(domain);
    if (cached !== undefined) return cached;
    const i = this.#position.get(domain);
    if (i === undefined) return [];
    const d = this.header.domains[i]!;
    const top = this.top(domain);
    const bytes = this.#section(d.pool, `pool section of ${JSON.stringify(domain)}`);
    const lines = bytes.toString('utf8').split('\n');
    if (lines.pop() !== '' || lines.length > d.count) throw new InvalidIndexError(`pool section of ${domain} has a wrong length`);
    const pool: Entry[] = [];
    for (const line of lines) {
      const value = parseJson(line);
      if (!Array.isArray(value) || value.length !== 2 || !isCount(value[0]) || value[0] >= this.header.records) {
        throw new InvalidIndexError(`pool line of ${domain} is not [seq, ref]`);
      }
      const [seq, ref] = value as [number, unknown];
      let entry: Entry;
      if (typeof ref === 'number') {
        const shared = Number.isSafeInteger(ref) && ref >= 0 ? top[ref] : undefined;
        if (shared === undefined || (shared.seq !== -1 && shared.seq !== seq)) throw new InvalidIndexError(`pool of ${domain} refers to no top record`);
        shared.seq = seq;
        entry = shared;
      } else {
        if (!isExperienceRecord(ref) || ref.domain !== domain) throw new InvalidIndexError(`pool of ${domain} holds a record not of it`);
        entry = newEntry(ref, line.slice(line.indexOf(',') + 1, -1), seq);
      }
      if (pool.length > 0 && compareSelection(pool[pool.length - 1]!, entry) >= 0) throw new InvalidIndexError(`pool of ${domain} is not in order`);
      pool.push(entry);
    }
    if (trimPool(pool, this.k) !== pool) throw new InvalidIndexError(`pool of ${domain} holds records selection cannot pick`);
    encodedPools.set(pool, { top, bytes });
    this.#pools.set(domain, pool);
    return pool;
  }

  /**
   * The state a writer or a tail merge continues from. Domains are parsed (and
   * checked) when first used; one that a batch does not touch is written back as
   * the bytes it has here. A bad section surfaces then, as InvalidIndexError.
   */
  toState(): TopState {
    if (this.#state !== undefined) return this.#state;
    const domains = new Map<string, DomainTop>();
    for (const d of this.header.domains) {
      const name = d.domain;
      const source = {
        top: () => this.top(name),
        pool: () => this.pool(name),
        // Copied as they are with their own CRCs: a corrupt section stays detectably corrupt
        // in the new file (its reader rescans), so the copy need not check it.
        encoded: (): EncodedDomain => ({
          top: this.#section(d.top, `top section of ${JSON.stringify(name)}`, false),
          topCrc: d.top[2],
          pool: this.#section(d.pool, `pool section of ${JSON.stringify(name)}`, false),
          poolCrc: d.pool[2],
        }),
      };
      domains.set(name, new LazyDomain(source, d.count, d.extreme ?? 0));
    }
    return { k: this.k, records: this.header.records, malformed: this.header.malformed, domains };
  }

  /** The bytes of `section`, CRC-checked; read from the file when not loaded yet. */
  #section([start, length, crc]: Section, what: string, check = true): Buffer {
    let bytes = this.#bytes;
    if (bytes === undefined || start + length > bytes.length) {
      if (this.#path === undefined) throw new InvalidIndexError(`${what} is missing`);
      // Everything from the sections' start up to this one's end: later sections are rarely needed.
      // Read through a new descriptor, so possibly from a newer file: always checked.
      bytes = this.#bytes = readRange(this.#path, this.#sectionsAt, start + length);
      check = true;
    }
    const slice = bytes.subarray(start, start + length);
    if (slice.length !== length || (check && crc32Hex(slice) !== crc)) throw new InvalidIndexError(`${what} fails its checksum`);
    return slice;
  }
}

export type IndexReadResult =
  | { kind: 'ok'; index: LoadedIndex }
  | { kind: 'missing' }
  | { kind: 'invalid'; reason: string };

/**
 * Read and check an index's header (and, with `domain`, that domain's sections
 * in the same read when they fit; with `whole`, every section: what a writer
 * copies must come from the file whose header it read). Never throws: the index
 * is only a cache.
 */
export function readIndex(indexPath: string, domain?: string, whole = false): IndexReadResult {
  let fd: number;
  try {
    fd = openSync(indexPath, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return { kind: 'missing' };
    return { kind: 'invalid', reason: `unreadable (${errorCode(err) ?? 'error'})` };
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    const size = Number(stat.size);
    const fileId: IndexFileId = { ino: stat.ino, size, mtimeNs: stat.mtimeNs };
    let buffer = readAt(fd, 0, Math.min(size, FIRST_READ_BYTES));
    const prefixEnd = buffer.indexOf(0x0a) + 1;
    if (prefixEnd === 0) return { kind: 'invalid', reason: 'no prefix line' };
    const prefix = parsePrefix(buffer.toString('utf8', 0, prefixEnd - 1));
    if (typeof prefix === 'string') return { kind: 'invalid', reason: prefix };
    const sectionsAt = prefixEnd + prefix.bytes;
    if (sectionsAt > size) return { kind: 'invalid', reason: 'truncated header' };
    if (sectionsAt > buffer.length) buffer = readAt(fd, 0, sectionsAt);
    const headerBytes = buffer.subarray(prefixEnd, sectionsAt);
    if (crc32Hex(headerBytes) !== prefix.crc32 || headerBytes[headerBytes.length - 1] !== 0x0a) return { kind: 'invalid', reason: 'header checksum mismatch' };
    const header = checkHeader(parseJson(headerBytes.toString('utf8', 0, headerBytes.length - 1)), size - sectionsAt);
    if (typeof header === 'string') return { kind: 'invalid', reason: `header ${header}` };

    // The sections already read, extended to cover the asked domain's when they lie beyond.
    let bytes = buffer.subarray(sectionsAt);
    const d = domain === undefined ? undefined : header.domains.find((x) => x.domain === domain);
    if (whole) {
      if (sectionsAt + bytes.length < size) bytes = readAt(fd, sectionsAt, size - sectionsAt);
      // A writer copies unchanged sections without parsing them: check them all here, so a
      // corrupt one makes the index invalid (a rescan before the lock), never copied forward.
      for (const x of header.domains) {
        for (const [start, length, crc] of [x.top, x.pool]) {
          if (crc32Hex(bytes.subarray(start, start + length)) !== crc) return { kind: 'invalid', reason: `a section of ${x.domain} fails its checksum` };
        }
      }
    } else if (d !== undefined) {
      const end = Math.max(d.top[0] + d.top[1], d.pool[0] + d.pool[1]);
      if (end > bytes.length) bytes = readAt(fd, sectionsAt, end);
    }
    const index = new LoadedIndex(header, { path: indexPath, sectionsAt, bytes });
    index.fileId = fileId;
    return { kind: 'ok', index };
  } catch (err) {
    return { kind: 'invalid', reason: `unreadable (${errorCode(err) ?? String(err)})` };
  } finally {
    closeQuietly(fd);
  }
}

function parsePrefix(line: string): { bytes: number; crc32: string } | string {
  const value = parseJson(line) as { format?: unknown; version?: unknown; header?: { bytes?: unknown; crc32?: unknown } } | undefined;
  if (typeof value !== 'object' || value === null || value.format !== INDEX_FORMAT) return 'not an experience-store index';
  if (value.version !== INDEX_VERSION) return `unsupported version ${String(value.version)}`;
  const h = value.header;
  if (typeof h !== 'object' || h === null || !isCount(h.bytes) || typeof h.crc32 !== 'string' || !/^[0-9a-f]{8}$/.test(h.crc32)) {
    return 'prefix line does not match the format';
  }
  return { bytes: h.bytes, crc32: h.crc32 };
}

/**
 * The header's invariants (docs/index-format.md, "Header"). Hand-written rather
 * than zod: this runs on every cold fetch, and zod's module graph alone costs a
 * fresh process more than the whole fetch. Returns the problem in words.
 */
export function checkHeader(v: unknown, sectionBytes: number): IndexHeader | string {
  if (typeof v !== 'object' || v === null) return 'is not an object';
  const h = v as Record<string, unknown>;
  if (!isCount(h.k) || h.k === 0) return 'k must be a positive integer';
  if (!isCount(h.records) || !isCount(h.malformed)) return 'records and malformed must be counts';
  const log = h.log as Record<string, unknown> | null;
  if (typeof log !== 'object' || log === null || !isCount(log.offset) || !isCount(log.size) || log.offset > log.size) {
    return 'log offset and size must be counts, offset <= size';
  }
  for (const key of ['mtimeNs', 'ctimeNs', 'ino', 'dev']) {
    if (typeof log[key] !== 'string' || !/^(0|[1-9][0-9]*)$/.test(log[key] as string)) return `log.${key} must be a decimal string`;
  }
  if (typeof log.fingerprint !== 'string' || !/^crc32:[0-9a-f]{8}$/.test(log.fingerprint)) return 'log.fingerprint must be crc32:<8 hex>';
  if (!Array.isArray(h.domains)) return 'domains must be an array';
  let sum = 0;
  let previous: string | undefined;
  for (const d of h.domains as Array<Record<string, unknown>>) {
    if (typeof d !== 'object' || d === null || typeof d.domain !== 'string' || d.domain === '') return 'domain names must be non-empty strings';
    if (previous !== undefined && !(previous < d.domain)) return 'domains must be unique and sorted';
    previous = d.domain;
    if (!isCount(d.count) || d.count === 0) return 'domain counts must be positive integers';
    if (d.extreme !== undefined && (!isCount(d.extreme) || d.extreme > d.count)) return 'extreme counts must be counts within the domain count';
    if (!isSection(d.top, sectionBytes) || !isSection(d.pool, sectionBytes)) return `sections of ${d.domain} must lie within the file`;
    sum += d.count;
  }
  if (sum !== h.records) return 'domain counts must add up to records';
  return v as IndexHeader;
}

function isSection(v: unknown, sectionBytes: number): v is Section {
  return (
    Array.isArray(v) &&
    v.length === 3 &&
    isCount(v[0]) &&
    isCount(v[1]) &&
    v[0] + v[1] <= sectionBytes &&
    typeof v[2] === 'string' &&
    /^[0-9a-f]{8}$/.test(v[2])
  );
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An in-memory index of a (trimmed) state, as if it had been written and read back. Parses nothing. */
export function indexOfState(state: TopState, stamp: LogStamp): LoadedIndex {
  return new LoadedIndex(headerOf(state, stamp), undefined, state);
}

/** The header of an index of `state`, without sections (an in-memory index needs none). */
function headerOf(state: TopState, stamp: LogStamp): IndexHeader {
  const names = [...state.domains.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const none: Section = [0, 0, '00000000'];
  const domains = names.map((domain) => {
    const d = state.domains.get(domain)!;
    return { domain, count: d.count, ...(d.extreme > 0 ? { extreme: d.extreme } : {}), top: none, pool: none };
  });
  return { k: state.k, log: stamp, records: state.records, malformed: state.malformed, domains };
}

// Encoded sections by list identity: a write re-encodes only the domains its
// batch changed (lists are never mutated, only replaced), so ~100 KB of
// unchanged sections cost one copy. A pool section refers to its top list.
const encodedTops = new WeakMap<readonly Entry[], Buffer>();
const encodedPools = new WeakMap<readonly Entry[], { top: readonly Entry[]; bytes: Buffer }>();

function encodeTop(top: readonly Entry[]): Buffer {
  let bytes = encodedTops.get(top);
  if (bytes === undefined) {
    bytes = Buffer.from(top.map((e) => e.raw + '\n').join(''));
    encodedTops.set(top, bytes);
  }
  return bytes;
}

// A pool entry that is also in the top list is stored as its position there:
// most of a pool's best records are the domain's top records too.
function encodePool(pool: readonly Entry[], top: readonly Entry[]): Buffer {
  const cached = encodedPools.get(pool);
  if (cached !== undefined && cached.top === top) return cached.bytes;
  const positions = new Map<Entry, number>();
  top.forEach((e, i) => positions.set(e, i));
  let text = '';
  for (const e of pool) {
    const ref = positions.get(e);
    text += `[${e.seq},${ref === undefined ? e.raw : ref}]\n`;
  }
  const bytes = Buffer.from(text);
  encodedPools.set(pool, { top, bytes });
  return bytes;
}

/** Where each part of an index of `state` goes: its header and its sections, in order. */
function layoutOf(state: TopState, stamp: LogStamp): { header: IndexHeader; parts: Buffer[] } {
  const names = [...state.domains.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: Buffer[] = [];
  let at = 0;
  const section = (bytes: Buffer, crc = crc32Hex(bytes)): Section => {
    parts.push(bytes);
    const s: Section = [at, bytes.length, crc];
    at += bytes.length;
    return s;
  };
  const domains = names.map((domain) => {
    const d = state.domains.get(domain)!;
    const encoded = d instanceof LazyDomain ? d.encoded() : undefined;
    const extreme = d.extreme > 0 ? { extreme: d.extreme } : {};
    if (encoded !== undefined) {
      return { domain, count: d.count, ...extreme, top: section(encoded.top, encoded.topCrc), pool: section(encoded.pool, encoded.poolCrc) };
    }
    const top = d.top.length > state.k ? d.top.slice(0, state.k) : d.top;
    return { domain, count: d.count, ...extreme, top: section(encodeTop(top)), pool: section(encodePool(d.pool, top)) };
  });
  return { header: { k: state.k, log: stamp, records: state.records, malformed: state.malformed, domains }, parts };
}

/**
 * The bytes of an index for `state` (trimmed), covering the log as `stamp`
 * describes it, as the parts they are made of: written with one writev, so the
 * ~100 KB of unchanged sections are never copied into one buffer.
 */
export function serializeIndexParts(state: TopState, stamp: LogStamp): Buffer[] {
  const { header, parts } = layoutOf(state, stamp);
  const headerLine = Buffer.from(JSON.stringify(header) + '\n');
  const prefix = JSON.stringify({ format: INDEX_FORMAT, version: INDEX_VERSION, header: { bytes: headerLine.length, crc32: crc32Hex(headerLine) } });
  return [Buffer.from(prefix + '\n'), headerLine, ...parts];
}

/** The bytes of an index for `state` as one buffer (serializeIndexParts, joined). */
export function serializeIndex(state: TopState, stamp: LogStamp): Buffer {
  return Buffer.concat(serializeIndexParts(state, stamp));
}

/** CRC-32 (zlib polynomial) as 8 lowercase hex digits. */
export function crc32Hex(bytes: Uint8Array): string {
  return (crc32(bytes) >>> 0).toString(16).padStart(8, '0');
}

/** `crc32:<hex>` of the up to FINGERPRINT_BYTES bytes of the log before `offset`. */
export function fingerprintOf(bytes: Buffer): string {
  return `crc32:${crc32Hex(bytes)}`;
}

/** Read [max(0, offset - FINGERPRINT_BYTES), offset) of an open log and fingerprint it. */
export function fingerprintAt(fd: number, offset: number): string {
  const start = Math.max(0, offset - FINGERPRINT_BYTES);
  return fingerprintOf(readExactly(fd, start, offset - start));
}

/**
 * Whether the log at `logPath` still holds, before `stamp.offset`, the bytes the
 * index was built from, and no complete line after it within `stamp.size`.
 * Used when size and times alone cannot be trusted (see docs: "racy logs").
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
    closeQuietly(fd);
  }
}

/** logMatchesStamp on an open log. */
export function logMatchesStampAt(fd: number, stamp: LogStamp): boolean {
  try {
    const start = Math.max(0, stamp.offset - FINGERPRINT_BYTES);
    // One read covers the fingerprinted bytes and the partial tail after them.
    const bytes = readExactly(fd, start, stamp.size - start);
    if (fingerprintOf(bytes.subarray(0, stamp.offset - start)) !== stamp.fingerprint) return false;
    return !bytes.subarray(stamp.offset - start).includes(0x0a);
  } catch {
    return false;
  }
}

/** Exactly `length` bytes at `position`; InvalidIndexError when the file is shorter. */
export function readExactly(fd: number, position: number, length: number): Buffer {
  const buffer = readAt(fd, position, length);
  if (buffer.length !== length) throw new InvalidIndexError('log is shorter than the index says');
  return buffer;
}

/** Up to `length` bytes at `position` (fewer only at the end of the file). */
function readAt(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const n = readSync(fd, buffer, filled, length - filled, position + filled);
    if (n === 0) break;
    filled += n;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

function readRange(filePath: string, position: number, length: number): Buffer {
  let fd: number;
  try {
    fd = openSync(filePath, 'r');
  } catch (err) {
    throw new InvalidIndexError(`cannot reopen the index (${errorCode(err) ?? 'error'})`);
  }
  try {
    return readAt(fd, position, length);
  } finally {
    closeQuietly(fd);
  }
}

type WriteFileAtomic = typeof import('write-file-atomic');
let writeFileAtomic: WriteFileAtomic | undefined;

/**
 * Replace the index atomically with write-file-atomic (temp file + rename). The
 * caller holds the task's lock: its temp names are unique per process, not
 * across hosts or PID namespaces. No fsync: after a power loss the index may be
 * empty or old, which readers detect (checksums, stamp) and pay for with a
 * rescan, never with a wrong answer.
 *
 * write-file-atomic's sync path ignores the count a write returns, so on a full
 * disk it would rename a truncated temp file over a good index. We hand it no
 * data and write the temp file ourselves in its `tmpfileCreated` hook, looping
 * on short writes; a failure there throws, and write-file-atomic removes the
 * temp file and leaves the old index in place. Loaded on the first write only:
 * a process that only reads never pays for it.
 */
export async function writeIndex(indexPath: string, bytes: Buffer | readonly Buffer[]): Promise<void> {
  writeFileAtomic ??= await loadWriteFileAtomic();
  writeFileAtomic.sync(indexPath, null as unknown as string, {
    fsync: false,
    tmpfileCreated: (tmpfile: string) => writeWhole(tmpfile, bytes),
  });
}

// Read-only descriptors: a failing close loses nothing, and must not hide the answer or the first failure.
function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // see above
  }
}

/**
 * write-file-atomic registers a signal-exit hook around every write, and
 * signal-exit installs its ~20 signal handlers when the first hook comes and
 * removes them when the last goes: some 200 system calls per index write, more
 * than the write itself (docs/benchmarks.md). One hook of ours, registered in
 * the very signal-exit instance write-file-atomic uses, keeps the handlers
 * installed from the first index write on. They change nothing observable: a
 * signal nothing else handles still ends the process with its default action
 * (signal-exit re-raises it), and its exit hooks only remove temp files.
 */
async function loadWriteFileAtomic(): Promise<WriteFileAtomic> {
  const module = (await import('write-file-atomic')).default;
  try {
    const { createRequire } = await import('node:module');
    const fromWriteFileAtomic = createRequire(createRequire(import.meta.url).resolve('write-file-atomic'));
    const { onExit } = fromWriteFileAtomic('signal-exit') as { onExit: (cb: () => void) => () => void };
    onExit(() => undefined);
  } catch {
    // Only a cost: write-file-atomic then installs and removes the handlers itself.
  }
  return module;
}

/** Load write-file-atomic now (a writer does this before taking the lock, so the lock is not held while modules load). */
export async function prepareIndexWrites(): Promise<void> {
  writeFileAtomic ??= await loadWriteFileAtomic();
}

function writeWhole(file: string, bytes: Buffer | readonly Buffer[]): void {
  let parts = Array.isArray(bytes) ? bytes.filter((b) => b.length > 0) : [bytes as Buffer];
  const fd = openSync(file, 'w');
  try {
    while (parts.length > 0) {
      let n = writevSync(fd, parts);
      if (n <= 0) throw Object.assign(new Error(`short write to ${file}`), { code: 'EIO' });
      // A short write: drop what was written, go on from there.
      while (parts.length > 0 && n >= parts[0]!.length) n -= parts.shift()!.length;
      if (n > 0) parts = [parts[0]!.subarray(n), ...parts.slice(1)];
    }
  } finally {
    closeSync(fd);
  }
}
