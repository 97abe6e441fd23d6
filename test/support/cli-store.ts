/**
 * Small real stores for the CLI tests, and surgery on their files: appending
 * foreign lines to a log, and editing an index so that it still parses (its
 * CRC-32s and offsets recomputed) but no longer matches its log.
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

/** One domain of an index being edited: its top records, and its pool section's bytes as they were. */
export interface EditedDomain {
  domain: string;
  top: Json[];
  pool: Buffer;
}

/**
 * Rewrite an index (format v2: prefix line, header line, per-domain sections)
 * through `edit`, then recompute every section's and the header's CRC-32 and
 * offsets, so the file still passes its checksums: only a comparison with the
 * log can tell it is wrong.
 */
export function editIndex(indexPath: string, edit: (header: Json, domains: EditedDomain[]) => void): void {
  const bytes = readFileSync(indexPath);
  const prefixEnd = bytes.indexOf(0x0a) + 1;
  const prefix = JSON.parse(bytes.toString('utf8', 0, prefixEnd - 1)) as Json & { header: { bytes: number } };
  const sectionsAt = prefixEnd + prefix.header.bytes;
  const header = JSON.parse(bytes.toString('utf8', prefixEnd, sectionsAt - 1)) as Json & {
    domains: Array<Json & { domain: string; top: [number, number, string]; pool: [number, number, string] }>;
  };
  const sectionOf = ([at, length]: [number, number, string]) => bytes.subarray(sectionsAt + at, sectionsAt + at + length);
  const domains: EditedDomain[] = header.domains.map((d) => ({
    domain: d.domain,
    top: sectionOf(d.top).toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Json),
    pool: Buffer.from(sectionOf(d.pool)),
  }));
  edit(header, domains);

  const parts: Buffer[] = [];
  let at = 0;
  const section = (part: Buffer): [number, number, string] => {
    parts.push(part);
    at += part.length;
    return [at - part.length, part.length, crc32Hex(part)];
  };
  header.domains.forEach((d, i) => {
    d.top = section(Buffer.from(domains[i]!.top.map((r) => JSON.stringify(r) + '\n').join('')));
    d.pool = section(domains[i]!.pool);
  });
  const headerLine = Buffer.from(JSON.stringify(header) + '\n');
  const prefixLine = JSON.stringify({ ...prefix, header: { bytes: headerLine.length, crc32: crc32Hex(headerLine) } }) + '\n';
  writeFileSync(indexPath, Buffer.concat([Buffer.from(prefixLine), headerLine, ...parts]));
}

function crc32Hex(part: Uint8Array): string {
  return (crc32(part) >>> 0).toString(16).padStart(8, '0');
}

/** The domain `domain` of an index being edited. */
export function domainLine(domains: EditedDomain[], domain: string): EditedDomain {
  const found = domains.find((d) => d.domain === domain);
  if (found === undefined) throw new Error(`no domain ${domain} in the index`);
  return found;
}
