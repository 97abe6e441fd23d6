/**
 * Real writer processes for the crash and concurrency tests. The child script,
 * writer-child.mjs, is plain JavaScript that node runs as is (nothing is
 * compiled at test time); it loads the built package from dist/, which
 * `ensureBuilt` compiles first when it is missing or older than src/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { PACKAGE_ENTRY, ROOT } from './build.js';

export { ensureBuilt, PACKAGE_ENTRY } from './build.js';

/** The child script. */
export const WRITER_CHILD = path.join(ROOT, 'test', 'support', 'writer-child.mjs');

export interface StoreWriterConfig {
  mode: 'store';
  /** The built package's entry (PACKAGE_ENTRY). */
  entry: string;
  outDir: string;
  runsDir: string;
  taskId: string;
  /** Batches to write, or null to write until killed. */
  batches: number | null;
  maxRecords: number;
  /** Every `bigEvery`-th batch (on average) holds `bigRecords` records (~700 bytes each). */
  bigEvery?: number;
  bigRecords?: number;
  lockRetry?: Record<string, number>;
  /** Tells this writer's records apart in the log. */
  name: string;
  /** Sleep up to this long between batches, so that writers take turns. */
  pauseMs?: number;
  /** Print "ready", then write only once this file exists: writers start together. */
  goFile?: string;
}

export interface OlderWriterConfig {
  mode: 'older-writer';
  logPath: string;
  lockPath?: string;
  text: string;
}

export type ChildConfig = StoreWriterConfig | OlderWriterConfig;

export interface Child {
  process: ChildProcess;
  /** Complete stdout lines so far (a line cut by a kill is not one). */
  lines: string[];
  /** Resolves once at least `n` lines were printed; rejects if the child exits first. */
  waitForLines(n: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

const running = new Set<ChildProcess>();

/** SIGKILL children still running (a failed test must not leave a writer behind). */
export function killStrayChildren(): void {
  for (const child of running) child.kill('SIGKILL');
}

export function spawnChild(script: string, config: ChildConfig): Child {
  const child = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  const waiters: Array<{ n: number; resolve: () => void; reject: (err: Error) => void }> = [];
  const settle = () => {
    for (const w of waiters.splice(0)) {
      if (lines.length >= w.n) w.resolve();
      else waiters.push(w);
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    settle();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      for (const w of waiters.splice(0)) w.reject(new Error(`child exited (${code ?? signal}) before printing ${w.n} lines: ${stderr}`));
      resolve({ code, signal, stderr });
    });
  });
  return {
    process: child,
    lines,
    exited,
    waitForLines: (n) =>
      new Promise<void>((resolve, reject) => {
        waiters.push({ n, resolve, reject });
        settle();
      }),
  };
}

/**
 * Run store writers to completion, all starting their writes at once (after
 * every process has started); returns the ids each acknowledged.
 */
export async function runStoreWriters(
  script: string,
  goFile: string,
  configs: ReadonlyArray<Omit<StoreWriterConfig, 'mode' | 'entry' | 'goFile'>>,
): Promise<string[][]> {
  const children = configs.map((config) => spawnChild(script, { mode: 'store', entry: PACKAGE_ENTRY, goFile, ...config }));
  await Promise.all(children.map((child) => child.waitForLines(1)));
  writeFileSync(goFile, '');
  return Promise.all(
    children.map(async (child, i) => {
      const { code, stderr } = await child.exited;
      if (code !== 0) throw new Error(`writer ${configs[i]!.name} exited with ${code}: ${stderr}`);
      return child.lines.slice(1); // after "ready"
    }),
  );
}

/** Start an older writer that holds the lock and a partial line until killed. */
export async function startOlderWriter(script: string, config: Omit<OlderWriterConfig, 'mode'>): Promise<Child> {
  const child = spawnChild(script, { mode: 'older-writer', ...config });
  await child.waitForLines(1);
  return child;
}
