/**
 * What every command shares: the streams it writes to, the two kinds of error
 * that end a run (usage: exit 2; failed operation: exit 1), flag-value parsing
 * and plain-text tables. Data goes to stdout, progress and errors to stderr.
 */

export interface CliIo {
  stdout: { write(chunk: string): unknown };
  /** `isTTY` turns progress on; `columns` is the width it is cut to. */
  stderr: { write(chunk: string): unknown; isTTY?: boolean; columns?: number };
  /** Defaults to process.env: outDir/runsDir defaults, DEBUG and NO_COLOR. */
  env?: Record<string, string | undefined>;
}

export const PROGRAM = 'experience-store';

/** Ends the run with exit code 2; the message says which help to read. */
export class UsageError extends Error {
  readonly exitCode = 2;

  constructor(problem: string, command?: string) {
    super(`${problem}; see ${PROGRAM}${command === undefined ? '' : ` ${command}`} --help`);
    this.name = 'UsageError';
  }
}

/** Ends the run with exit code 1: the store or a file is not as the command needs it. */
export class OperationError extends Error {
  readonly exitCode = 1;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OperationError';
  }
}

/** A flag value that must be a positive decimal integer (`--limit`, `--k`). */
export function parsePositiveInteger(flag: string, raw: string, command: string): number {
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(raw)}`, command);
  }
  return n;
}

/** A flag value that must be a finite decimal number (`--min-reward`); negatives allowed. */
export function parseDecimal(flag: string, raw: string, command: string): number {
  if (!/^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$/.test(raw)) {
    throw new UsageError(`${flag} must be a decimal number such as 1.25, got ${JSON.stringify(raw)}`, command);
  }
  return Number(raw);
}

/**
 * Whether to colour output written to `stream`: only on a terminal, and never
 * when NO_COLOR is set to anything but the empty string (https://no-color.org).
 */
export function wantsColor(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '');
}

export function writeLines(stream: CliIo['stdout'], lines: readonly string[]): void {
  if (lines.length > 0) stream.write(lines.join('\n') + '\n');
}

export function writeJson(stream: CliIo['stdout'], value: unknown): void {
  stream.write(JSON.stringify(value, null, 2) + '\n');
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Columns padded to their widest cell; `right` names the columns aligned right (numbers). */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const render = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [render(header), ...rows.map(render)];
}
