/**
 * A one-line progress display on stderr, redrawn in place at most ~10 times a
 * second, and only when stderr is a terminal: piped or redirected stderr gets
 * nothing, so logs and scripts see only the summary and errors. The line is cut
 * to the terminal's width: a line that wraps cannot be erased by \r and leaves
 * its first rows behind on every redraw.
 */
import type { CliIo } from './io.js';

export interface Progress {
  /** Redraw with `text` unless the last redraw was under 100 ms ago. */
  update(text: string): void;
  /** Erase the line so the next output starts clean. */
  done(): void;
}

const MIN_REDRAW_MS = 100;

const silent: Progress = { update() {}, done() {} };

export function createProgress(stderr: CliIo['stderr'], nowMs: () => number = () => performance.now()): Progress {
  if (stderr.isTTY !== true) return silent;
  let lastMs = -Infinity;
  let shown = false;
  return {
    update(text) {
      const now = nowMs();
      if (now - lastMs < MIN_REDRAW_MS) return;
      lastMs = now;
      shown = true;
      // \r back to column 0, ESC[2K erase the line: the previous text may be longer.
      stderr.write(`\r\x1b[2K${fitWidth(text, stderr.columns)}`);
    },
    done() {
      if (shown) stderr.write('\r\x1b[2K');
      shown = false;
    },
  };
}

/**
 * `text` cut to fit `columns - 1` (a line that fills the last column makes some
 * terminals wrap), ending in "…" when cut. Unknown width: as is.
 */
export function fitWidth(text: string, columns: number | undefined): string {
  if (columns === undefined || !(columns > 1)) return text;
  const chars = [...text];
  const room = columns - 1;
  return chars.length <= room ? text : `${chars.slice(0, room - 1).join('')}…`;
}
