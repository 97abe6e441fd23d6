/**
 * index-file.ts (format v2) on real files: what a reader gets back from what a
 * writer wrote, and that every kind of damage is either rejected (readIndex
 * says 'invalid', or a section throws InvalidIndexError, both a rescan for the
 * store) or lands where nothing reads and changes no answer.
 */
import fs, { closeSync, openSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { describe, expect } from 'vitest';
import {
  crc32Hex,
  FINGERPRINT_BYTES,
  fingerprintAt,
  fingerprintOf,
  INDEX_FORMAT,
  INDEX_VERSION,
  InvalidIndexError,
  logMatchesStamp,
  logMatchesStampAt,
  readIndex,
  serializeIndex,
  writeIndex,
  type IndexHeader,
  type LoadedIndex,
  type LogStamp,
} from '../src/index-file.js';
import type { ExperienceRecord } from '../src/record.js';
import { scanLog } from '../src/scan.js';
import { cloneState, emptyState, trimState, type TopState } from '../src/top-k.js';
import { makeRecord } from './support/inputs.js';
import { test } from './support/temp-dir.js';

// ---- building real logs and indexes ----

function line(overrides: Partial<ExperienceRecord> & Record<string, unknown>): string {
  return JSON.stringify(makeRecord(overrides));
}

/** A log line of `domain` scoring `score`, from group `g`. */
function scored(domain: string, score: number, g: string, id = `exp-${domain}-${score}`): string {
  return line({ id, domain, groupId: g, reward: { gtScore: score, relativeRank: 0 }, toolStats: [{ tool: 'shell', tokens: 1, latencyMs: 2, costUsd: 0.5 }] });
}

/** Scan `lines` written as a real log in `dir`: the state and stamp a store would persist. */
async function scanned(dir: string, lines: string[], k: number): Promise<{ state: TopState; stamp: LogStamp; log: string }> {
  const log = path.join(dir, 'experiences.jsonl');
  writeFileSync(log, lines.map((l) => l + '\n').join(''));
  const fd = openSync(log, 'r');
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    const size = Number(st.size);
    const { state, end } = await scanLog(fd, 0, size, emptyState(k));
    const stamp: LogStamp = {
      offset: end,
      size,
      mtimeNs: String(st.mtimeNs),
      ctimeNs: String(st.ctimeNs),
      ino: String(st.ino),
      dev: String(st.dev),
      fingerprint: fingerprintAt(fd, end),
    };
    return { state, stamp, log };
  } finally {
    closeSync(fd);
  }
}

/** Write `bytes` as the index file of `dir` and read it back. */
function load(dir: string, bytes: Buffer, domain?: string) {
  const file = path.join(dir, 'experiences.top.json');
  writeFileSync(file, bytes);
  return readIndex(file, domain);
}

function loaded(dir: string, bytes: Buffer, domain?: string): LoadedIndex {
  const read = load(dir, bytes, domain);
  if (read.kind !== 'ok') throw new Error(`index not loaded: ${JSON.stringify(read)}`);
  return read.index;
}

/** Everything a reader can get from an index, as text, or 'invalid' when any of it is rejected. */
function answersOf(read: ReturnType<typeof readIndex>): string {
  if (read.kind !== 'ok') return read.kind;
  const index = read.index;
  try {
    const { k, log, records, malformed } = index.header;
    const domains = index.header.domains.map((d) => ({
      domain: d.domain,
      count: d.count,
      top: index.top(d.domain).map((e) => e.raw),
      pool: index.pool(d.domain).map((e) => [e.seq, e.raw]),
    }));
    return JSON.stringify({ k, log, records, malformed, domains });
  } catch (err) {
    if (err instanceof InvalidIndexError) return 'invalid';
    throw err;
  }
}

// ---- taking an index apart and sealing edits with correct checksums ----

interface Parts {
  prefix: Record<string, unknown>;
  header: IndexHeader;
  sections: Buffer;
}

function split(bytes: Buffer): Parts {
  const p = bytes.indexOf(0x0a) + 1;
  const prefix = JSON.parse(bytes.toString('utf8', 0, p - 1));
  const h = p + prefix.header.bytes;
  return { prefix, header: JSON.parse(bytes.toString('utf8', p, h - 1)), sections: bytes.subarray(h) };
}

/** Bytes of an index with this prefix (its header bytes and CRC recomputed), header and sections. */
function seal({ prefix, header, sections }: Parts): Buffer {
  const headerLine = Buffer.from(JSON.stringify(header) + '\n');
  const sealed = { ...prefix, header: { bytes: headerLine.length, crc32: crc32Hex(headerLine) } };
  return Buffer.concat([Buffer.from(JSON.stringify(sealed) + '\n'), headerLine, sections]);
}

function editHeader(bytes: Buffer, edit: (h: any, parts: Parts) => void): Buffer {
  const parts = split(bytes);
  edit(parts.header, parts);
  return seal(parts);
}

type SectionLines = Map<string, { top: string[]; pool: string[] }>;

/** Edit the sections as lines; they are laid out again with correct positions and CRCs. */
function editSections(bytes: Buffer, edit: (s: SectionLines) => void): Buffer {
  const parts = split(bytes);
  const text = (s: [number, number, string]) => {
    const t = parts.sections.toString('utf8', s[0], s[0] + s[1]);
    return t === '' ? [] : t.slice(0, -1).split('\n');
  };
  const lines: SectionLines = new Map(parts.header.domains.map((d) => [d.domain, { top: text(d.top), pool: text(d.pool) }]));
  edit(lines);
  const chunks: Buffer[] = [];
  let at = 0;
  const place = (ls: string[]): [number, number, string] => {
    const b = Buffer.from(ls.map((l) => l + '\n').join(''));
    chunks.push(b);
    at += b.length;
    return [at - b.length, b.length, crc32Hex(b)];
  };
  for (const d of parts.header.domains) {
    d.top = place(lines.get(d.domain)!.top);
    d.pool = place(lines.get(d.domain)!.pool);
  }
  return seal({ ...parts, sections: Buffer.concat(chunks) });
}

// ---- a sample: k = 3, domain "d" with 5 records from 3 sources, "e" with 1, 2 malformed lines ----

const D = {
  a9: scored('d', 9, 'A'),
  a8: scored('d', 8, 'A'),
  b7: scored('d', 7, 'B'),
  a6: scored('d', 6, 'A'), // D = 3 (A9, A8, B7): in neither list
  c1: scored('d', 1, 'C'), // D = 2 (A's and B's best): pooled, not in the top
  e5: scored('e', 5, 'E'),
};
const SAMPLE = [D.a9, 'not json', D.e5, D.a8, D.b7, D.a6, '{"id":"missing fields"}', D.c1];

async function sample(dir: string) {
  const { state, stamp } = await scanned(dir, SAMPLE, 3);
  return { state, stamp, bytes: serializeIndex(state, stamp) };
}

describe('round trip through a file', () => {
  test('gives back the header, each domain top as the exact log lines, and the pool with log positions', async ({ dir }) => {
    const { stamp, bytes } = await sample(dir);
    for (const domain of [undefined, 'd', 'e', 'absent']) {
      const index = loaded(dir, bytes, domain);
      expect(index.header).toMatchObject({ k: 3, log: stamp, records: 6, malformed: 2 });
      expect(index.header.domains.map((d) => [d.domain, d.count])).toEqual([
        ['d', 5],
        ['e', 1],
      ]);
      expect(index.top('d').map((e) => e.raw)).toEqual([D.a9, D.a8, D.b7]);
      expect(index.top('d', 2).map((e) => e.raw)).toEqual([D.a9, D.a8]);
      expect(index.top('d').map((e) => e.record)).toEqual([D.a9, D.a8, D.b7].map((l) => JSON.parse(l)));
      expect(index.top('e').map((e) => e.raw)).toEqual([D.e5]);
      expect(index.top('absent')).toEqual([]);
      expect(index.pool('d').map((e) => [e.seq, e.raw])).toEqual([
        [0, D.a9],
        [2, D.a8],
        [3, D.b7],
        [5, D.c1],
      ]);
      expect(index.pool('d')[3]!.record).toEqual(JSON.parse(D.c1));
      expect(index.pool('e').map((e) => e.seq)).toEqual([1]);
      expect(index.pool('absent')).toEqual([]);
      expect([index.count('d'), index.count('absent')]).toEqual([5, 0]);
      expect(index.canAnswer('d', 3)).toBe(true);
      expect(index.canAnswer('d', 4)).toBe(false);
      expect(index.canAnswer('e', 50)).toBe(true);
    }
  });

  test('toState gives back what was persisted', async ({ dir }) => {
    const { state, stamp, bytes } = await sample(dir);
    const back = loaded(dir, bytes).toState();
    expect([back.k, back.records, back.malformed]).toEqual([3, 6, 2]);
    for (const [domain, d] of state.domains) {
      const b = back.domains.get(domain)!;
      expect(b.count).toBe(d.count);
      expect(b.top.map((e) => e.raw)).toEqual(d.top.map((e) => e.raw));
      expect(b.pool.map((e) => [e.seq, e.raw])).toEqual(d.pool.map((e) => [e.seq, e.raw]));
    }
    expect(serializeIndex(back, stamp).equals(bytes)).toBe(true);
  });

  test('an index rewritten after a tail equals the index of a full scan, untouched domains copied byte for byte', async ({ dir }) => {
    const { stamp, bytes } = await sample(dir);
    const more = [scored('d', 7.5, 'C'), 'garbage', scored('d', 0.5, 'F')];
    const fresh = await scanned(dir, [...SAMPLE, ...more], 3);
    const log = openSync(fresh.log, 'r');
    try {
      const state = cloneState(loaded(dir, bytes).toState());
      const { end } = await scanLog(log, stamp.offset, fresh.stamp.size, state);
      expect(end).toBe(fresh.stamp.size);
      const rewritten = serializeIndex(trimState(state), fresh.stamp);
      expect(rewritten.equals(serializeIndex(fresh.state, fresh.stamp))).toBe(true);
      const [e0, e1] = [split(bytes).header.domains[1]!, split(rewritten).header.domains[1]!];
      expect(split(rewritten).sections.subarray(e1.top[0], e1.pool[0] + e1.pool[1]).equals(split(bytes).sections.subarray(e0.top[0], e0.pool[0] + e0.pool[1]))).toBe(true);
    } finally {
      closeSync(log);
    }
  });

  // Lists are never mutated, only replaced (top-k.ts): a partly parsed list is handed out as a copy.
  test('a list returned by top(domain, limit) does not grow when the domain is parsed further', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const index = loaded(dir, bytes);
    const first = index.top('d', 1);
    expect(first.map((e) => e.raw)).toEqual([D.a9]);
    index.top('d');
    expect(first.map((e) => e.raw)).toEqual([D.a9]);
  });

  test('keeps lines byte for byte: -0, 1e308, spacing, unicode, extra fields and a 100,000-deep field', async ({ dir }) => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const odd = {
      negZero: `{ "id":"exp-z","runId":"P","taskId":"t","epoch":-0,"groupId":null,"summary32":"caf\\u00e9 café 🚀 \u2028 修复","reward":{"gtScore":-0,"relativeRank":8.0,"bonus":{"x":[1,2]}},"toolStats":[{"tool":"t","tokens":1e308,"latencyMs":1E2,"costUsd":0.10000000000000001}],"stampSignature":"s","domain":"d","createdAt":"c","manifestPath":"m","reviewer":"kept" }`,
      deepTop: `{"id":"exp-deep","runId":"P","taskId":"t","epoch":null,"groupId":null,"summary32":"","reward":{"gtScore":9,"relativeRank":0},"toolStats":[],"stampSignature":"s","domain":"d","createdAt":"c","manifestPath":"m","deep":${deep}}`,
      deepPool: `{"id":"exp-deep2","runId":"Q","taskId":"t","epoch":null,"groupId":null,"summary32":"","reward":{"gtScore":1,"relativeRank":0},"toolStats":[],"stampSignature":"s","domain":"d","createdAt":"c","manifestPath":"m","deep":${deep}}`,
    };
    // k = 2, all but the last from run P: the top holds deepTop and negZero; the pool also holds
    // deepPool (another source, D = 1), stored inside its pool line rather than by reference.
    const third = line({ id: 'exp-7', runId: 'P', reward: { gtScore: 7, relativeRank: 0 } });
    const { state, stamp } = await scanned(dir, [odd.deepTop, odd.negZero, third, odd.deepPool], 2);
    const index = loaded(dir, serializeIndex(state, stamp), 'd');
    const top = index.top('d');
    expect(top).toHaveLength(2);
    expect(top[0]!.raw === odd.deepTop).toBe(true);
    expect(top[1]!.raw === odd.negZero).toBe(true);
    const pool = index.pool('d');
    expect(pool.map((e) => e.seq)).toEqual([0, 1, 3]);
    expect(pool[2]!.raw === odd.deepPool).toBe(true);

    const negZero = top[1]!.record;
    expect(Object.is(negZero.reward.gtScore, -0)).toBe(true);
    expect(Object.is(negZero.epoch, -0)).toBe(true);
    expect(negZero.toolStats[0]!.tokens).toBe(1e308);
    expect(negZero).toEqual(JSON.parse(odd.negZero));
  });

  test('reads a header larger than the first read (hundreds of domains) and sections beyond it', async ({ dir }) => {
    const lines: string[] = [];
    for (let i = 0; i < 400; i++) lines.push(line({ id: `exp-${i}`, domain: `domain-${String(i).padStart(3, '0')}`, summary32: 'x'.repeat(200) }));
    const { state, stamp } = await scanned(dir, lines, 2);
    const bytes = serializeIndex(state, stamp);
    expect(JSON.stringify(split(bytes).header).length).toBeGreaterThan(16 * 1024);
    const index = loaded(dir, bytes);
    expect(index.header.domains).toHaveLength(400);
    expect(index.top('domain-399').map((e) => e.raw)).toEqual([lines[399]]);
    expect(index.pool('domain-000').map((e) => e.seq)).toEqual([0]);
    expect(loaded(dir, bytes, 'domain-250').top('domain-250').map((e) => e.raw)).toEqual([lines[250]]);
  });

  test('round trips an empty state', async ({ dir }) => {
    const { state, stamp } = await scanned(dir, [], 16);
    const index = loaded(dir, serializeIndex(state, stamp));
    expect([index.k, index.header.records, index.header.domains]).toEqual([16, 0, []]);
  });
});

describe('rejecting damage', () => {
  test('says missing for no file and invalid for a directory or garbage, without throwing', ({ dir }) => {
    expect(readIndex(path.join(dir, 'experiences.top.json'))).toEqual({ kind: 'missing' });
    expect(readIndex(path.join(dir, 'not-a-dir', 'experiences.top.json')).kind).toBe('missing');
    expect(readIndex(dir).kind).toBe('invalid');
    expect(load(dir, Buffer.from('')).kind).toBe('invalid');
    expect(load(dir, Buffer.from('{"format":"experience-store/top-index","version":1,"k":16}\n')).kind).toBe('invalid');
  });

  test('rejects the file cut at every length', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const file = path.join(dir, 'experiences.top.json');
    writeFileSync(file, bytes);
    for (let n = bytes.length - 1; n >= 0; n--) {
      truncateSync(file, n);
      expect(answersOf(readIndex(file)), `first ${n} of ${bytes.length} bytes`).toBe('invalid');
    }
  });

  test('every flipped bit is rejected or changes no answer (all bytes read are under a header or section CRC)', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const file = path.join(dir, 'experiences.top.json');
    writeFileSync(file, bytes);
    const want = answersOf(readIndex(file));
    expect(want).not.toBe('invalid');
    let accepted = 0;
    const fd = openSync(file, 'r+');
    try {
      // Flip in place: rewriting the whole file per case costs ~100x more than the read.
      for (let i = 0; i < bytes.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          writeSync(fd, Buffer.of(bytes[i]! ^ (1 << bit)), 0, 1, i);
          const got = answersOf(readIndex(file));
          if (got !== 'invalid') accepted++;
          expect(got === 'invalid' || got === want, `byte ${i} bit ${bit}`).toBe(true);
        }
        writeSync(fd, bytes, i, 1, i);
      }
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(accepted).toBe(0); // today no byte goes unread
  });

  test('bytes appended after the last section are read by nothing and change no answer', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const want = answersOf(load(dir, bytes));
    expect(answersOf(load(dir, Buffer.concat([bytes, Buffer.from('garbage\n')])))).toBe(want);
  });

  test.for([1, 3])('rejects version %i even with correct checksums', async (version, { dir }) => {
    const { bytes } = await sample(dir);
    const parts = split(bytes);
    expect(load(dir, seal({ ...parts, prefix: { ...parts.prefix, version } }))).toEqual({ kind: 'invalid', reason: `unsupported version ${version}` });
    expect(load(dir, seal({ ...parts, prefix: { ...parts.prefix, format: 'other' } })).kind).toBe('invalid');
    expect(INDEX_VERSION).toBe(2);
    expect(parts.prefix.format).toBe(INDEX_FORMAT);
  });

  const headerCases: Array<[string, (h: any, parts: Parts) => void]> = [
    ['domain counts that do not add up to records', (h) => (h.records += 1)],
    ['unsorted domains', (h) => h.domains.reverse()],
    ['a domain listed twice', (h) => (h.domains[1].domain = 'd')],
    ['a domain count of 0', (h) => {
      h.records -= h.domains[1].count;
      h.domains[1].count = 0;
    }],
    ['an empty domain name', (h) => (h.domains[0].domain = '')],
    ['a section that ends past the file', (h, parts) => (h.domains[1].pool[1] = parts.sections.length - h.domains[1].pool[0] + 1)],
    ['a section that starts past the file', (h, parts) => (h.domains[0].top[0] = parts.sections.length + 1)],
    ['a section CRC that is not 8 hex digits', (h) => (h.domains[0].top[2] = 'ABCDEF01')],
    ['k of 0', (h) => (h.k = 0)],
    ['a negative record count', (h) => (h.malformed = -1)],
    ['an offset past the size', (h) => (h.log.offset = h.log.size + 1)],
    ['an inode as a number', (h) => (h.log.ino = 5)],
    ['an mtime with a leading zero', (h) => (h.log.mtimeNs = '0123')],
    ['a fingerprint of another kind', (h) => (h.log.fingerprint = `sha256:${'0'.repeat(64)}`)],
    ['domains that are not an array', (h) => (h.domains = {})],
  ];
  test.for(headerCases)('rejects a header with %s', async ([, edit], { dir }) => {
    const { bytes } = await sample(dir);
    const read = load(dir, editHeader(bytes, edit));
    expect(read.kind).toBe('invalid');
    expect(read.kind === 'invalid' && read.reason).toMatch(/^header /);
  });

  test('the forging helpers reproduce an untouched index byte for byte (so the edits above break only what they edit)', async ({ dir }) => {
    const { bytes } = await sample(dir);
    expect(editHeader(bytes, () => {}).equals(bytes)).toBe(true);
    expect(editSections(bytes, () => {}).equals(bytes)).toBe(true);
  });

  // Each edit breaks domain "d" only; its sections carry correct CRCs, so only the checks that follow can see it.
  const sectionCases: Array<[string, 'top' | 'pool', (s: SectionLines) => void]> = [
    ['a top section out of order', 'top', (s) => s.get('d')!.top.reverse()],
    ['a top line of another domain', 'top', (s) => (s.get('d')!.top[1] = scored('e', 8, 'A'))],
    ['a top line that is not a record', 'top', (s) => (s.get('d')!.top[2] = '{"id":"exp-x"}')],
    ['a top section one line short', 'top', (s) => s.get('d')!.top.pop()],
    ['a top section one line long', 'top', (s) => s.get('d')!.top.push(D.a6)],
    ['a pool line referring past the top', 'pool', (s) => (s.get('d')!.pool[1] = '[2,3]')],
    ['a pool line with a seq past the records', 'pool', (s) => (s.get('d')!.pool[3] = `[6,${D.c1}]`)],
    ['a pool line that is not [seq, ref]', 'pool', (s) => (s.get('d')!.pool[3] = `{"seq":5}`)],
    ['two pool lines with one top record under different seqs', 'pool', (s) => (s.get('d')!.pool[1] = '[2,0]')],
    ['a pool out of selection order', 'pool', (s) => s.get('d')!.pool.reverse()],
    ['a pool holding a record of another domain', 'pool', (s) => (s.get('d')!.pool[3] = `[5,${scored('e', 1, 'C')}]`)],
    ['a pool holding an entry selection cannot pick within k', 'pool', (s) => s.get('d')!.pool.splice(3, 0, `[4,${D.a6}]`)],
    ['a pool longer than the domain', 'pool', (s) => s.get('d')!.pool.push('[5,0]', '[5,1]')],
  ];
  test.for(sectionCases)('loads, then raises InvalidIndexError for %s', async ([, list, edit], { dir }) => {
    const { bytes } = await sample(dir);
    const index = loaded(dir, editSections(bytes, edit));
    expect(index.top('e').map((e) => e.raw)).toEqual([D.e5]); // the other domain still answers
    expect(index.pool('e')).toHaveLength(1);
    expect(() => (list === 'top' ? index.top('d') : index.pool('d'))).toThrow(InvalidIndexError);
    const state = loaded(dir, editSections(bytes, edit)).toState(); // parses a domain when first used
    expect(state.domains.get('e')!.top).toHaveLength(1);
    expect(() => state.domains.get('d')![list]).toThrow(InvalidIndexError);
    expect(answersOf(load(dir, editSections(bytes, edit)))).toBe('invalid');
  });

  test('a section whose CRC does not match raises InvalidIndexError', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const index = loaded(dir, editHeader(bytes, (h) => (h.domains[0].pool[2] = '00000000')));
    expect(index.top('d')).toHaveLength(3);
    expect(() => index.pool('d')).toThrow(InvalidIndexError);
  });

  test('top(domain, limit) parses the lines it returns and one more: a bad line two past `limit` fails top(domain) but not top(domain, 1)', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const bad = editSections(bytes, (s) => (s.get('d')!.top[2] = '{"not":"a record"}'));
    const index = loaded(dir, bad);
    expect(index.top('d', 1).map((e) => e.raw)).toEqual([D.a9]);
    expect(() => index.top('d', 2)).toThrow(InvalidIndexError);
    expect(() => loaded(dir, bad).top('d')).toThrow(InvalidIndexError);
  });

  test('records swapped across the limit are caught by the one extra record parsed', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const swapped = editSections(bytes, (s) => {
      const top = s.get('d')!.top;
      [top[0], top[1]] = [top[1]!, top[0]!];
    });
    expect(() => loaded(dir, swapped).top('d', 1)).toThrow(InvalidIndexError);
  });

  test('a section read after the file was replaced is checked against the header it was found by', async ({ dir }) => {
    // Sections beyond the first read are read later, from the path: a replaced file must not answer for the old header.
    const lines: string[] = [];
    for (let i = 0; i < 60; i++) lines.push(line({ id: `exp-${i}`, domain: `dom-${String(i).padStart(2, '0')}`, summary32: 'y'.repeat(500) }));
    const { state, stamp } = await scanned(dir, lines, 2);
    const index = loaded(dir, serializeIndex(state, stamp));
    const other = lines.map((l) => l.replace('y'.repeat(500), 'z'.repeat(500)));
    const replaced = await scanned(dir, other, 2);
    writeFileSync(path.join(dir, 'experiences.top.json'), serializeIndex(replaced.state, replaced.stamp));
    expect(() => index.top('dom-59')).toThrow(InvalidIndexError);
  });
});

describe('fingerprints', () => {
  function withFd<T>(file: string, f: (fd: number) => T): T {
    const fd = openSync(file, 'r');
    try {
      return f(fd);
    } finally {
      closeSync(fd);
    }
  }

  test('fingerprintAt hashes the up to 4 KiB before the offset of the real file', ({ dir }) => {
    const file = path.join(dir, 'experiences.jsonl');
    const bytes = Buffer.from(Array.from({ length: 3 * FINGERPRINT_BYTES }, (_, i) => i % 251));
    writeFileSync(file, bytes);
    const offset = 2 * FINGERPRINT_BYTES + 10;
    withFd(file, (fd) => {
      expect(fingerprintAt(fd, offset)).toBe(fingerprintOf(bytes.subarray(offset - FINGERPRINT_BYTES, offset)));
      expect(fingerprintAt(fd, offset)).toMatch(/^crc32:[0-9a-f]{8}$/);
      expect(fingerprintAt(fd, 100)).toBe(fingerprintOf(bytes.subarray(0, 100)));
      expect(fingerprintAt(fd, 0)).toBe(fingerprintOf(Buffer.alloc(0)));
      expect(() => fingerprintAt(fd, bytes.length + 1)).toThrow(InvalidIndexError);
    });
  });

  test('logMatchesStampAt: true for the bytes indexed, false after an edit in the last 4 KiB, a new complete line, or a cut', async ({ dir }) => {
    const lines = Array.from({ length: 100 }, (_, i) => scored('d', i, 'A', `exp-${i}`));
    const { stamp, log } = await scanned(dir, lines, 2);
    const original = readFileSync(log);
    withFd(log, (fd) => expect(logMatchesStampAt(fd, stamp)).toBe(true));
    expect(logMatchesStamp(log, stamp)).toBe(true);

    fs.appendFileSync(log, '{"partial'); // a writer mid-append: not a line yet
    withFd(log, (fd) => expect(logMatchesStampAt(fd, { ...stamp, size: stamp.size + 9 })).toBe(true));
    fs.appendFileSync(log, '"}\n'); // now a complete line the index does not hold
    withFd(log, (fd) => expect(logMatchesStampAt(fd, { ...stamp, size: stamp.size + 12 })).toBe(false));

    const edited = Buffer.from(original);
    edited[stamp.offset - 100] = edited[stamp.offset - 100]! ^ 1;
    writeFileSync(log, edited);
    withFd(log, (fd) => expect(logMatchesStampAt(fd, stamp)).toBe(false));

    writeFileSync(log, original.subarray(0, stamp.offset - 1));
    withFd(log, (fd) => expect(logMatchesStampAt(fd, stamp)).toBe(false));
    expect(logMatchesStamp(path.join(dir, 'gone.jsonl'), stamp)).toBe(false);
  });
});

type WriteV = (fd: number, buffers: Buffer[], writev: typeof fs.writevSync) => number;

describe('writeIndex', () => {
  /** Replace fs.writevSync for writes to write-file-atomic's temp file only (index-file.ts imports it by name). */
  async function withTempWrites<T>(fake: WriteV, run: () => Promise<T>): Promise<T> {
    const original = fs.writevSync;
    (fs as any).writevSync = (fd: number, ...rest: any[]) => {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      return /experiences\.top\.json\.\d+$/.test(target) ? fake(fd, rest[0], original) : (original as any)(fd, ...rest);
    };
    syncBuiltinESMExports();
    try {
      return await run();
    } finally {
      (fs as any).writevSync = original;
      syncBuiltinESMExports();
    }
  }

  test('replaces the index with exactly the given bytes and leaves no temp file', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const file = path.join(dir, 'experiences.top.json');
    writeFileSync(file, 'old contents');
    await writeIndex(file, bytes);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['experiences.jsonl', 'experiences.top.json']);
    await writeIndex(path.join(dir, 'second.top.json'), bytes); // also where none existed
    expect(readFileSync(path.join(dir, 'second.top.json')).equals(bytes)).toBe(true);
  });

  test('the fs.writevSync replacement reaches index-file.ts (a write of one byte at a time still writes it all)', async ({ dir }) => {
    const { bytes } = await sample(dir);
    const file = path.join(dir, 'experiences.top.json');
    let calls = 0;
    await withTempWrites((fd, buffers, writev) => {
      calls++;
      return writev(fd, [buffers[0]!.subarray(0, 1)]);
    }, () => writeIndex(file, bytes));
    expect(calls).toBe(bytes.length);
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });

  test.for<[string, WriteV]>([
    ['a full disk (ENOSPC)', () => {
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    }],
    ['a write that returns 0 bytes', () => 0],
  ])('on %s, leaves the old index byte-identical and no temp file', async ([, fake], { dir }) => {
    const { bytes } = await sample(dir);
    const file = path.join(dir, 'experiences.top.json');
    await writeIndex(file, bytes);
    const before = readFileSync(file);
    const { state, stamp } = await scanned(dir, [D.a9], 3);
    let calls = 0;
    const counted: WriteV = (...args) => (calls++, fake(...args));
    await expect(withTempWrites(counted, () => writeIndex(file, serializeIndex(state, stamp)))).rejects.toThrow();
    expect(calls).toBe(1);
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['experiences.jsonl', 'experiences.top.json']);
    expect(statSync(file).size).toBe(bytes.length);
  });
});
