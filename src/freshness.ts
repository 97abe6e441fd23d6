/**
 * decideFreshness: how a fetch may use an index, from the index's stamp and a
 * stat of the log taken after the index was read. Pure, no I/O: this is the
 * decision table of docs/index-format.md ("Freshness"), in the same order.
 */
import type { LogStamp } from './index-file.js';

/** The fields of a bigint `stat` of the log that freshness compares. */
export interface LogStat {
  dev: bigint;
  ino: bigint;
  size: number;
  mtimeNs: bigint;
  /** Set by the kernel on every write and metadata change; unlike mtime, no one can set it back. */
  ctimeNs: bigint;
}

export type RescanReason =
  | 'no-index' // rule 1: missing, unparsable, wrong version, bad checksum or schema
  | 'file-replaced' // rule 5: other dev or inode (rename over the log, restore from backup)
  | 'shrunk' // rule 5: shorter than the index's size (truncated)
  | 'rewritten' // rule 5: same size, other mtime or ctime
  | 'fingerprint-mismatch'; // rule 4/5: the bytes before offset are not the ones indexed

export type Freshness =
  | { kind: 'no-log' } // rule 2: no log, no records
  | { kind: 'fresh' } // rule 3: answer from the index, read no log bytes
  | { kind: 'tail'; from: number } // rule 4: read [from, last newline) and merge (after a fingerprint check)
  | { kind: 'rescan'; reason: RescanReason }; // rules 1 and 5: full scan

export function decideFreshness(stamp: LogStamp | undefined, log: LogStat | undefined): Freshness {
  if (log === undefined) return { kind: 'no-log' };
  if (stamp === undefined) return { kind: 'rescan', reason: 'no-index' };
  if (String(log.dev) !== stamp.dev || String(log.ino) !== stamp.ino) return { kind: 'rescan', reason: 'file-replaced' };
  if (log.size < stamp.size) return { kind: 'rescan', reason: 'shrunk' };
  if (log.size === stamp.size) {
    // ctime too: a rewrite that restores the mtime (touch -r, rsync -t) still moves it.
    return String(log.mtimeNs) === stamp.mtimeNs && String(log.ctimeNs) === stamp.ctimeNs
      ? { kind: 'fresh' }
      : { kind: 'rescan', reason: 'rewritten' };
  }
  return { kind: 'tail', from: stamp.offset };
}

/**
 * File systems stamp times with a coarse clock (a jiffy, or whole seconds on
 * some), so a change made within the same tick as the stamp leaves size, mtime
 * and ctime equal. A stamp observed less than this long after its ctime (the
 * kernel's own time of the last change, which no one can set back) is "racy",
 * as in git's racy-clean entries, and is confirmed by content before use.
 */
export const RACY_WINDOW_MS = 2000;

export function isRacy(ctimeNs: bigint | string, observedAtMs: number): boolean {
  const ctimeMs = Number(BigInt(ctimeNs) / 1_000_000n);
  return observedAtMs - ctimeMs < RACY_WINDOW_MS;
}

export function statKeyEquals(a: LogStat, b: LogStat): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

export function stampOf(log: LogStat, offset: number, fingerprint: string): LogStamp {
  return {
    offset,
    size: log.size,
    mtimeNs: String(log.mtimeNs),
    ctimeNs: String(log.ctimeNs),
    ino: String(log.ino),
    dev: String(log.dev),
    fingerprint,
  };
}
