/**
 * The answer a plain full scan of the logs on disk gives: what fetchTop must
 * equal on every path (SPEC: "Its answer equals a plain full scan of the logs
 * as they are on disk"). Deliberately shares nothing with line-reader, top-k
 * or index-file, so the two can disagree: the whole file is read at once, split
 * on "\n", checked with the zod record schema (the store uses its own hand
 * written check) and sorted with a plain stable Array.sort.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { isValidTaskId } from '../../src/paths.js';
import type { ExperienceRecord } from '../../src/record.js';
import { ExperienceRecord as RecordSchema } from '../../src/schemas.js';

export interface OracleQuery {
  domain: string;
  limit: number;
  minReward?: number;
  taskId?: string;
}

export const LOG_NAME = 'experiences.jsonl';

/** The first `limit` records of the domain, best first, as a full scan finds them. */
export async function oracleTop(outDir: string, query: OracleQuery): Promise<ExperienceRecord[]> {
  const domain = query.domain.trim();
  if (domain === '' || !(query.limit > 0)) return [];
  const taskIds = query.taskId !== undefined ? [query.taskId] : await oracleTasks(outDir);
  // Task order, then log order: the stable sort below keeps it for records that tie.
  const matching: ExperienceRecord[] = [];
  for (const taskId of taskIds) {
    for (const record of await oracleRecords(path.join(outDir, taskId, LOG_NAME))) {
      if (record.domain !== domain) continue;
      if (query.minReward !== undefined && oracleScore(record) < query.minReward) continue;
      matching.push(record);
    }
  }
  return matching.sort(oracleCompare).slice(0, query.limit);
}

/** Subdirectories of outDir with valid task ids, in code-unit order. */
export async function oracleTasks(outDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch {
    return [];
  }
  const tasks: string[] = [];
  for (const name of names) {
    if (!isValidTaskId(name)) continue;
    const info = await stat(path.join(outDir, name)).catch(() => undefined);
    if (info?.isDirectory()) tasks.push(name);
  }
  return tasks.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The valid records of a log in log order; none when the log is missing. */
export async function oracleRecords(logPath: string): Promise<ExperienceRecord[]> {
  return (await oracleLines(logPath)).flatMap((line) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return [];
    }
    // Keep the parsed value itself (not zod's copy): the answer must be the bytes on disk.
    return RecordSchema.safeParse(value).success ? [value as ExperienceRecord] : [];
  });
}

/**
 * The non-blank lines of a log: only bytes up to the last "\n" count, one
 * trailing "\r" is dropped, and a line that trim() empties is blank.
 */
export async function oracleLines(logPath: string): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(logPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const end = bytes.lastIndexOf(0x0a);
  if (end < 0) return [];
  return bytes
    .toString('utf8', 0, end)
    .split('\n')
    .map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line))
    .filter((line) => line.trim() !== '');
}

export function oracleScore(record: ExperienceRecord): number {
  return record.reward.gtScore + record.reward.relativeRank;
}

/** Score descending, createdAt descending, id ascending; code-unit comparisons. */
export function oracleCompare(a: ExperienceRecord, b: ExperienceRecord): number {
  const sa = oracleScore(a);
  const sb = oracleScore(b);
  // Not `sb - sa`: two scores that overflow to Infinity tie, and Infinity - Infinity is NaN.
  if (sa !== sb) return sa > sb ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}
