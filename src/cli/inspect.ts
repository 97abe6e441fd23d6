/**
 * What `stats` and `verify` learn about a task without writing anything: the
 * state of its index against the log as it is now, streamed scans of the log,
 * and stray index temp files. Same order as a fetch: read the index, then stat
 * the log (a log seen after its index is never shorter than the index's offset
 * unless it was truncated or replaced).
 */
import { readdirSync } from 'node:fs';
import { errorCode, ioError } from '../errors.js';
import { decideFreshness, type LogStat, type RescanReason } from '../freshness.js';
import { fingerprintAt, InvalidIndexError, logMatchesStampAt, type IndexReadResult, type LoadedIndex } from '../index-file.js';
import { INDEX_FILE } from '../paths.js';
import { scanLog } from '../scan.js';
import { emptyState, type TopState } from '../top-k.js';

export type IndexState =
  | { kind: 'missing' } // no index file: the next fetch scans and writes one
  | { kind: 'invalid'; reason: string } // unparsable, checksum, schema, version
  | { kind: 'no-log'; index: 'present' | 'invalid' } // an index beside no log: fetches return nothing
  | { kind: 'fresh' } // the index covers the log as it is
  | { kind: 'stale'; bytes: number } // the log grew past the offset: a fetch reads those bytes
  | { kind: 'stale-replaced'; reason: RescanReason }; // truncated, replaced or rewritten: a fetch rescans

/**
 * Where the index stands against the open log, by the store's own decision
 * table; "fresh" and "stale" also need the fingerprint of the covered prefix to
 * match, exactly as a fetch checks before it trusts the index.
 */
export function indexStateOf(read: IndexReadResult, fd: number | undefined, log: LogStat | undefined): IndexState {
  if (fd === undefined || log === undefined) {
    return read.kind === 'missing' ? { kind: 'missing' } : { kind: 'no-log', index: read.kind === 'ok' ? 'present' : 'invalid' };
  }
  if (read.kind === 'missing') return { kind: 'missing' };
  if (read.kind === 'invalid') return { kind: 'invalid', reason: read.reason };
  const stamp = read.index.header.log;
  const decision = decideFreshness(stamp, log);
  try {
    if (decision.kind === 'fresh' && logMatchesStampAt(fd, stamp)) return { kind: 'fresh' };
    if (decision.kind === 'tail' && fingerprintAt(fd, stamp.offset) === stamp.fingerprint) {
      return { kind: 'stale', bytes: log.size - stamp.offset };
    }
  } catch (err) {
    if (!(err instanceof InvalidIndexError)) throw err;
  }
  return { kind: 'stale-replaced', reason: decision.kind === 'rescan' ? decision.reason : 'fingerprint-mismatch' };
}

/** Whether verify can compare this index with the log: only an index a fetch would use. */
export function isComparable(state: IndexState): boolean {
  return state.kind === 'fresh' || state.kind === 'stale';
}

/** "fresh", "stale by 1,234 bytes", ...: the words `stats` and `verify` print. */
export function describeIndexState(state: IndexState): string {
  switch (state.kind) {
    case 'missing':
      return 'missing';
    case 'invalid':
      return `invalid (${state.reason})`;
    case 'no-log':
      return state.index === 'present' ? 'no log (index unused)' : 'no log (index invalid, unused)';
    case 'fresh':
      return 'fresh';
    case 'stale':
      return `stale by ${state.bytes.toLocaleString('en-US')} bytes`;
    case 'stale-replaced':
      return `stale-replaced (${state.reason})`;
  }
}

/** The JSON form of an index state (stable field names for scripts). */
export function indexStateJson(state: IndexState, index: LoadedIndex | undefined): Record<string, unknown> {
  const json: Record<string, unknown> = { state: state.kind };
  if (state.kind === 'stale') json.staleBytes = state.bytes;
  if (state.kind === 'invalid' || state.kind === 'stale-replaced') json.reason = state.reason;
  if (index !== undefined) {
    json.k = index.k;
    json.offset = index.header.log.offset;
  }
  return json;
}

/**
 * Every record of [0, to) counted, keeping the best `k` of each domain (k = 0:
 * counts only). Streamed in chunks: a log of any size costs the same memory.
 */
export async function scanPrefix(fd: number, to: number, k: number): Promise<{ state: TopState; end: number }> {
  const state = emptyState(k);
  const scan = await scanLog(fd, 0, to, state, { capFor: () => k });
  return { state: scan.state, end: scan.end };
}

/** write-file-atomic temp files beside the index (`experiences.top.json.<n>`), left by a killed writer. */
export function strayTempFiles(taskDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(taskDir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return [];
    throw ioError('list', taskDir, err);
  }
  return names.filter((name) => name.startsWith(`${INDEX_FILE}.`)).sort();
}
