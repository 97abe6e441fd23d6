/**
 * Small real stores for the CLI tests, and surgery on their files: appending
 * foreign lines to a log, and editing an index so that it still parses (the
 * trailer's CRC-32 and byte count recomputed) but no longer matches its log.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { ExperienceStore } from '../../src/index.js';
import { makeInput } from './inputs.js';

export const DOMAINS = ['implementation', 'review', 'testing'] as const;

export interface SampleStore {
  outDir: string;
  runsDir: string;
  logOf(taskId: string): string;
  indexOf(taskId: string): string;
}

/**
 * `perDomain` records in each domain of each task, with distinct scores, written
 * through recordBatch: every task ends with a fresh index.
 */
export async function makeSampleStore(
  dir: string,
  options: { tasks?: readonly string[]; perDomain?: number } = {},
): Promise<SampleStore> {
  const outDir = path.join(dir, 'out');
  const runsDir = path.join(dir, '.runs');
  const store = new ExperienceStore({ outDir, runsDir });
  const perDomain = options.perDomain ?? 4;
  let n = 0;
  for (const taskId of options.tasks ?? ['task-a', 'task-b']) {
    for (const domain of DOMAINS) {
      const inputs = [];
      for (let i = 0; i < perDomain; i++) {
        n++;
        inputs.push(
          makeInput({
            runId: `run-${n}`,
            taskId,
            epoch: i,
            domain,
            summary: `${domain} run ${n} of ${taskId}`,
            reward: { gtScore: (n % 7) / 7, relativeRank: n / 1000 },
          }),
        );
      }
      await store.recordBatch(inputs, `.runs/${taskId}/manifest.json`);
    }
  }
  return {
    outDir,
    runsDir,
    logOf: (taskId) => path.join(outDir, taskId, 'experiences.jsonl'),
    indexOf: (taskId) => path.join(outDir, taskId, 'experiences.top.json'),
  };
}

/** Append raw lines to a log, as an older writer (or a hand edit) would. */
export function appendLines(logPath: string, lines: readonly string[]): void {
  appendFileSync(logPath, lines.map((l) => l + '\n').join(''));
}

export function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

type Json = Record<string, unknown>;

/**
 * Rewrite an index through `edit` (header, domain lines), then recompute the
 * trailer so the file still passes the checksum: only a comparison with the
 * log can tell it is wrong.
 */
export function editIndex(indexPath: string, edit: (header: Json, domainLines: Json[]) => void): void {
  const lines = readFileSync(indexPath, 'utf8').split('\n');
  lines.pop(); // after the final newline
  lines.pop(); // trailer
  const [header, ...domainLines] = lines.map((l) => JSON.parse(l) as Json);
  edit(header!, domainLines);
  const body = Buffer.from([header, ...domainLines].map((v) => JSON.stringify(v)).join('\n') + '\n');
  const trailer = JSON.stringify({ crc32: (crc32(body) >>> 0).toString(16).padStart(8, '0'), bytes: body.length });
  writeFileSync(indexPath, Buffer.concat([body, Buffer.from(trailer + '\n')]));
}

/** The domain line of `domain` in an index being edited. */
export function domainLine(domainLines: Json[], domain: string): { domain: string; top: Json[] } {
  const line = domainLines.find((l) => l.domain === domain);
  if (line === undefined) throw new Error(`no domain line ${domain}`);
  return line as { domain: string; top: Json[] };
}
