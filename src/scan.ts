/**
 * Full scan and tail scan of a log into a TopState, on line-reader + top-k.
 * A scan never persists anything; the store decides what to do with it.
 */
import { readLines, type ReadBudget } from './line-reader.js';
import { parseRecordLine } from './record.js';
import { addRecord, newEntry, ownCopy, type Caps, type Entry, type TopState } from './top-k.js';

export interface ScanResult {
  /** The state after the scan (the one passed in, added to). */
  state: TopState;
  /** Offset just after the last newline consumed: the prefix `state` covers when not truncated. */
  end: number;
  bytesRead: number;
  linesRead: number;
  truncated: boolean;
}

export interface ScanOptions {
  budget?: ReadBudget;
  /** Records kept per list for a domain; defaults to state.k for both. A fetch asks more of the domain it answers. */
  capsFor?: (domain: string) => Caps;
  /** Every record of this domain, in log order, also goes here (a selection over all candidates). */
  collect?: { domain: string; into: Entry[] };
  onProgress?: (bytesRead: number) => void;
}

/**
 * Add every record in [from, to) of the log to `state`, counting the lines that
 * are not records as malformed. A full scan is `from = 0` on an empty state; a
 * tail is `from = index offset` on the index's state.
 */
export async function scanLog(
  fd: number,
  from: number,
  to: number,
  state: TopState,
  options: ScanOptions = {},
): Promise<ScanResult> {
  const both: Caps = { top: state.k, pool: state.k };
  const capsFor = options.capsFor ?? (() => both);
  const collect = options.collect;
  const result = await readLines(
    fd,
    from,
    to,
    (line) => {
      const record = parseRecordLine(line);
      if (record === undefined) {
        state.malformed++;
        return;
      }
      if (collect !== undefined && record.domain === collect.domain) collect.into.push(newEntry(record, ownCopy(line), state.records));
      addRecord(state, record, line, capsFor(record.domain));
    },
    { budget: options.budget, onProgress: options.onProgress },
  );
  return { state, ...result };
}
