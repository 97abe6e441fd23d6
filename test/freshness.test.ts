import { describe, expect, it } from 'vitest';
import { decideFreshness, isRacy, RACY_WINDOW_MS, stampOf, statKeyEquals, type LogStat } from '../src/freshness.js';
import type { LogStamp } from '../src/index-file.js';

const FINGERPRINT = `sha256:${'ab'.repeat(32)}`;
// A log of 1000 bytes whose last 40 are an unterminated line: the index covers [0, 960).
const LOG: LogStat = { dev: 2049n, ino: 2n ** 60n + 7n, size: 1000, mtimeNs: 1_714_557_600_123_456_789n, ctimeNs: 1_714_557_600_123_456_789n };
const STAMP: LogStamp = stampOf(LOG, 960, FINGERPRINT);

describe('decideFreshness (the decision table of docs/index-format.md, in order)', () => {
  const rows: Array<[string, LogStamp | undefined, LogStat | undefined, ReturnType<typeof decideFreshness>]> = [
    ['no log: no records, even without an index', undefined, undefined, { kind: 'no-log' }],
    ['no log: no records, whatever the index says', STAMP, undefined, { kind: 'no-log' }],
    ['1. missing or invalid index: full scan', undefined, LOG, { kind: 'rescan', reason: 'no-index' }],
    ['3. same dev, ino, size and mtime: fresh', STAMP, LOG, { kind: 'fresh' }],
    ['4. same file, grown: tail from the offset, not from the old size', STAMP, { ...LOG, size: 1500, mtimeNs: LOG.mtimeNs + 1n }, { kind: 'tail', from: 960 }],
    ['4. grown with the mtime unchanged (coarse clock): still a tail', STAMP, { ...LOG, size: 1001 }, { kind: 'tail', from: 960 }],
    ['5. other inode (replaced by rename): full scan', STAMP, { ...LOG, ino: LOG.ino + 1n }, { kind: 'rescan', reason: 'file-replaced' }],
    ['5. other device: full scan', STAMP, { ...LOG, dev: 2050n }, { kind: 'rescan', reason: 'file-replaced' }],
    ['5. other inode but grown: still a full scan', STAMP, { ...LOG, ino: 3n, size: 2000 }, { kind: 'rescan', reason: 'file-replaced' }],
    ['5. shorter (truncated): full scan', STAMP, { ...LOG, size: 999 }, { kind: 'rescan', reason: 'shrunk' }],
    ['5. truncated below the offset: full scan', STAMP, { ...LOG, size: 0 }, { kind: 'rescan', reason: 'shrunk' }],
    ['5. same size, other mtime (rewritten or touched): full scan', STAMP, { ...LOG, mtimeNs: LOG.mtimeNs + 1n }, { kind: 'rescan', reason: 'rewritten' }],
    ['5. same size, older mtime: full scan', STAMP, { ...LOG, mtimeNs: LOG.mtimeNs - 1_000_000_000n }, { kind: 'rescan', reason: 'rewritten' }],
    ['5. same size and mtime, other ctime (rewritten, mtime set back): full scan', STAMP, { ...LOG, ctimeNs: LOG.ctimeNs + 5n }, { kind: 'rescan', reason: 'rewritten' }],
  ];

  it.each(rows)('%s', (_row, stamp, log, want) => {
    expect(decideFreshness(stamp, log)).toEqual(want);
  });

  it('compares inode numbers above 2^53 exactly', () => {
    // As a double, 2^60 + 7 and 2^60 + 8 are the same number; as strings they are not.
    expect(Number(LOG.ino)).toBe(Number(LOG.ino + 1n));
    expect(decideFreshness(STAMP, { ...LOG, ino: LOG.ino + 1n }).kind).toBe('rescan');
  });

  it('compares mtimes to the nanosecond', () => {
    expect(decideFreshness(STAMP, { ...LOG, mtimeNs: LOG.mtimeNs + 1n }).kind).toBe('rescan');
  });
});

describe('stampOf', () => {
  it('stores dev, ino and mtime as decimal strings and keeps offset and size apart', () => {
    expect(STAMP).toEqual({
      offset: 960,
      size: 1000,
      mtimeNs: '1714557600123456789',
      ctimeNs: '1714557600123456789',
      ino: '1152921504606846983',
      dev: '2049',
      fingerprint: FINGERPRINT,
    });
  });
});

describe('statKeyEquals', () => {
  it('is true only when dev, ino, size, mtime and ctime all match', () => {
    expect(statKeyEquals(LOG, { ...LOG })).toBe(true);
    expect(statKeyEquals(LOG, { ...LOG, dev: 1n })).toBe(false);
    expect(statKeyEquals(LOG, { ...LOG, ino: 1n })).toBe(false);
    expect(statKeyEquals(LOG, { ...LOG, size: 1 })).toBe(false);
    expect(statKeyEquals(LOG, { ...LOG, mtimeNs: 1n })).toBe(false);
    expect(statKeyEquals(LOG, { ...LOG, ctimeNs: 1n })).toBe(false);
  });
});

describe('isRacy', () => {
  const ctimeMs = Number(LOG.ctimeNs / 1_000_000n);

  it('is racy when observed within the window after the ctime, not after it', () => {
    expect(isRacy(LOG.ctimeNs, ctimeMs)).toBe(true);
    expect(isRacy(LOG.ctimeNs, ctimeMs + RACY_WINDOW_MS - 1)).toBe(true);
    expect(isRacy(LOG.ctimeNs, ctimeMs + RACY_WINDOW_MS)).toBe(false);
  });

  it('accepts the ctime as the string an index stores', () => {
    expect(isRacy(String(LOG.ctimeNs), ctimeMs + 10)).toBe(true);
  });

  it('treats a ctime in the future (clock skew) as racy', () => {
    expect(isRacy(LOG.ctimeNs, ctimeMs - 60_000)).toBe(true);
  });
});
