import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect } from 'vitest';
import {
  fingerprintAt,
  fingerprintOf,
  FINGERPRINT_BYTES,
  INDEX_VERSION,
  InvalidIndexError,
  logMatchesStamp,
  parseIndex,
  readIndex,
  serializeIndex,
  writeIndex,
  type LogStamp,
} from '../src/index-file.js';
import type { ExperienceRecord } from '../src/record.js';
import { addRecord, emptyState, type TopState } from '../src/top-k.js';
import { makeRecord } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const STAMP: LogStamp = {
  offset: 4870,
  size: 4960,
  mtimeNs: '1714557600123456789',
  ctimeNs: '1714557600123456789',
  ino: '18446744073709551615', // above 2^53: must survive as a string
  dev: '2049',
  fingerprint: `sha256:${'0f'.repeat(32)}`,
};

function rec(domain: string, score: number, id: string): ExperienceRecord {
  return makeRecord({
    id,
    domain,
    summary32: `${domain} ${id} ünïcødé 🚀`,
    reward: { gtScore: score, relativeRank: 0 },
    toolStats: [{ tool: 'shell', tokens: 1, latencyMs: 2, costUsd: 0.5 }],
  });
}

/** k = 2; domain "b" has 3 records (2 kept), "a" has 1, plus 2 malformed lines. */
function sampleState(): TopState {
  const state = emptyState(2);
  addRecord(state, rec('b', 1, 'exp-1'), 2);
  addRecord(state, rec('a', 5, 'exp-2'), 2);
  addRecord(state, rec('b', 3, 'exp-3'), 2);
  addRecord(state, rec('b', 2, 'exp-4'), 2);
  state.malformed = 2;
  return state;
}

/** Index bytes from raw lines, with a correct trailer: only what the lines say is wrong. */
function seal(lines: unknown[]): Buffer {
  const body = Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const trailer = { crc32: (crc32(body) >>> 0).toString(16).padStart(8, '0'), bytes: body.length };
  return Buffer.concat([body, Buffer.from(JSON.stringify(trailer) + '\n')]);
}

/** The lines of a serialized index without its trailer, parsed, for editing. */
function linesOf(buffer: Buffer): any[] {
  return buffer.toString('utf8').trimEnd().split('\n').slice(0, -1).map((l) => JSON.parse(l));
}

describe('serializeIndex / parseIndex', () => {
  test('round trip: header, counts, stamp and every domain top come back as written', () => {
    const state = sampleState();
    const read = parseIndex(serializeIndex(state, STAMP));
    expect(read.kind).toBe('ok');
    if (read.kind !== 'ok') return;
    const { index } = read;
    expect(index.header).toMatchObject({ version: INDEX_VERSION, k: 2, log: STAMP, records: 4, malformed: 2 });
    expect(index.header.domains).toEqual([
      { domain: 'a', count: 1 },
      { domain: 'b', count: 3 },
    ]);
    expect(index.top('b').map((r) => r.id)).toEqual(['exp-3', 'exp-4']);
    expect(index.top('a')).toEqual([rec('a', 5, 'exp-2')]);
    expect(index.top('missing')).toEqual([]);
    expect(index.count('b')).toBe(3);
    expect(index.toState().domains.get('b')).toEqual({ count: 3, top: state.domains.get('b')!.top.slice(0, 2) });
  });

  test('answers a query only when limit <= k or the domain holds at most k records', () => {
    const read = parseIndex(serializeIndex(sampleState(), STAMP));
    if (read.kind !== 'ok') throw new Error(read.kind);
    expect(read.index.canAnswer('b', 2)).toBe(true);
    expect(read.index.canAnswer('b', 3)).toBe(false);
    expect(read.index.canAnswer('a', 50)).toBe(true);
    expect(read.index.canAnswer('unknown', 50)).toBe(true);
  });

  test('round trips an empty state', () => {
    const read = parseIndex(serializeIndex(emptyState(16), { ...STAMP, offset: 0, size: 0 }));
    expect(read.kind === 'ok' && read.index.header.records).toBe(0);
  });

  test('rejects every single flipped byte', () => {
    const bytes = serializeIndex(sampleState(), STAMP);
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of [0x01, 0x20, 0x80]) {
        const bad = Buffer.from(bytes);
        bad[i] = bad[i]! ^ mask;
        const read = parseIndex(bad);
        expect(read.kind, `byte ${i} ^ 0x${mask.toString(16)}`).toBe('invalid');
      }
    }
  });

  test('rejects every truncation and an appended byte', () => {
    const bytes = serializeIndex(sampleState(), STAMP);
    for (let n = 0; n < bytes.length; n++) {
      expect(parseIndex(bytes.subarray(0, n)).kind, `first ${n} bytes`).toBe('invalid');
    }
    expect(parseIndex(Buffer.concat([bytes, Buffer.from('\n')])).kind).toBe('invalid');
  });

  test('rejects another version even with a correct checksum', () => {
    const lines = linesOf(serializeIndex(sampleState(), STAMP));
    lines[0].version = INDEX_VERSION + 1;
    expect(parseIndex(seal(lines))).toEqual({ kind: 'invalid', reason: `unsupported version ${INDEX_VERSION + 1}` });
  });

  describe('header invariants, checked on load', () => {
    const cases: Array<[string, (h: any, lines: any[]) => void]> = [
      ['another format', (h) => (h.format = 'something-else')],
      ['k of 0', (h) => (h.k = 0)],
      ['offset past size', (h) => (h.log.offset = h.log.size + 1)],
      ['an inode as a number', (h) => (h.log.ino = 5)],
      ['an mtime with a leading zero', (h) => (h.log.mtimeNs = '0123')],
      ['a bad fingerprint', (h) => (h.log.fingerprint = 'md5:00')],
      ['domain counts that do not add up', (h) => (h.records = 5)],
      ['unsorted domains', (h, lines) => {
        h.domains.reverse();
        lines.splice(1, 2, lines[2], lines[1]);
      }],
      ['a domain count of 0', (h) => (h.domains[0].count = 0)],
      ['a missing domain line', (_h, lines) => lines.pop()],
      ['an extra domain line', (_h, lines) => lines.push({ domain: 'c', top: [] })],
    ];
    test.each(cases)('rejects %s', (_what, edit) => {
      const lines = linesOf(serializeIndex(sampleState(), STAMP));
      edit(lines[0], lines);
      expect(parseIndex(seal(lines)).kind).toBe('invalid');
    });

    test('keeps unknown header fields (a newer writer may add some)', () => {
      const lines = linesOf(serializeIndex(sampleState(), STAMP));
      lines[0].writer = 'future';
      const read = parseIndex(seal(lines));
      expect(read.kind === 'ok' && (read.index.header as Record<string, unknown>).writer).toBe('future');
    });
  });

  describe('domain lines, checked when first asked for', () => {
    // lines[1] is domain "a" (count 1), lines[2] is domain "b" (count 3, k 2)
    const cases: Array<[string, (lines: any[]) => void]> = [
      ['is not an object', (lines) => (lines[2] = 'not an object')],
      ['names another domain', (lines) => (lines[2].domain = 'a')],
      ['is too short', (lines) => lines[2].top.pop()],
      ['is too long', (lines) => lines[2].top.push(lines[2].top[1])],
      ['is not ranked', (lines) => lines[2].top.reverse()],
      ['holds a record of another domain', (lines) => (lines[2].top[1] = { ...lines[2].top[1], domain: 'a' })],
      ['holds a record with a wrong type', (lines) => (lines[2].top[0].reward.gtScore = 'high')],
    ];
    test.each(cases)('loads, then raises InvalidIndexError when the line %s', (_what, edit) => {
      const lines = linesOf(serializeIndex(sampleState(), STAMP));
      edit(lines);
      const read = parseIndex(seal(lines));
      expect(read.kind).toBe('ok');
      if (read.kind !== 'ok') return;
      expect(read.index.top('a')).toHaveLength(1); // the other domain still answers
      expect(() => read.index.top('b')).toThrow(InvalidIndexError);
      expect(() => read.index.toState()).toThrow(InvalidIndexError);
    });
  });
});

describe('readIndex / writeIndex', () => {
  test('says missing for no file and invalid for an unreadable one, without throwing', ({ dir }) => {
    expect(readIndex(path.join(dir, 'experiences.top.json'))).toEqual({ kind: 'missing' });
    mkdirSync(path.join(dir, 'is-a-dir'));
    expect(readIndex(path.join(dir, 'is-a-dir')).kind).toBe('invalid');
  });

  test('writes exactly the serialized bytes, atomically, leaving no temp file', async ({ dir }) => {
    const file = path.join(dir, 'experiences.top.json');
    writeFileSync(file, 'old contents');
    await writeIndex(file, sampleState(), STAMP);
    expect(readFileSync(file).equals(serializeIndex(sampleState(), STAMP))).toBe(true);
    expect(readdirSync(dir)).toEqual(['experiences.top.json']);
    const read = readIndex(file);
    expect(read.kind === 'ok' && read.index.top('b').map((r) => r.id)).toEqual(['exp-3', 'exp-4']);
  });
});

describe('fingerprints', () => {
  function logFile(dir: string, bytes: Buffer): string {
    const file = path.join(dir, 'experiences.jsonl');
    writeFileSync(file, bytes);
    return file;
  }
  function fingerprint(file: string, offset: number): string {
    const fd = openSync(file, 'r');
    try {
      return fingerprintAt(fd, offset);
    } finally {
      closeSync(fd);
    }
  }

  test('hashes only the last 4 KiB before the offset', ({ dir }) => {
    const bytes = Buffer.alloc(3 * FINGERPRINT_BYTES, 'x');
    const file = logFile(dir, bytes);
    const offset = 2 * FINGERPRINT_BYTES + 10;
    expect(fingerprint(file, offset)).toBe(fingerprintOf(bytes.subarray(offset - FINGERPRINT_BYTES, offset)));
    expect(fingerprint(file, 100)).toBe(fingerprintOf(bytes.subarray(0, 100)));
    expect(fingerprint(file, 0)).toBe(fingerprintOf(Buffer.alloc(0)));
  });

  test('logMatchesStamp: true for the bytes indexed, false once any of the last 4 KiB before offset changes', ({ dir }) => {
    const bytes = Buffer.from('{"a":1}\n'.repeat(1000));
    const file = logFile(dir, bytes);
    const offset = bytes.length - 80;
    const stamp = { ...STAMP, offset, size: bytes.length - 8 * 5, fingerprint: fingerprint(file, offset) };
    // size past offset holds complete lines: those were not indexed
    expect(logMatchesStamp(file, stamp)).toBe(false);
    const exact = { ...stamp, size: offset };
    expect(logMatchesStamp(file, exact)).toBe(true);
    expect(logMatchesStamp(file, { ...exact, size: offset + 3 })).toBe(true); // a partial line after offset
    const edited = Buffer.from(bytes);
    edited[offset - 100] = '2'.charCodeAt(0);
    logFile(dir, edited);
    expect(logMatchesStamp(file, exact)).toBe(false);
    logFile(dir, bytes.subarray(0, offset - 1));
    expect(logMatchesStamp(file, exact)).toBe(false); // shorter than the offset
    expect(logMatchesStamp(path.join(dir, 'gone.jsonl'), exact)).toBe(false);
  });
});
