/** An index's state in the words `stats` and `verify` print. */
import type { IndexReport } from '../inspect.js';
import { formatCount } from './io.js';

/** "fresh", "stale by 1,234 bytes", "invalid (header checksum mismatch)", ... */
export function describeIndex(index: IndexReport): string {
  switch (index.state) {
    case 'missing':
      return 'missing';
    case 'invalid':
      return `invalid (${index.reason})`;
    case 'no-log':
      return 'no log (index unused)';
    case 'fresh':
      return 'fresh';
    case 'stale':
      return `stale by ${formatCount(index.staleBytes ?? 0)} bytes`;
    case 'stale-replaced':
      return `stale-replaced (${index.reason})`;
  }
}
