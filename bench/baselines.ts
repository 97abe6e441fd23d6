/**
 * What the store is measured against: the older design's read and write paths,
 * and the floor of any full scan. None of these is part of the library.
 */
import { closeSync, createReadStream, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { compareRecords, type ExperienceInput, type ExperienceRecord } from '../src/index.js';
import { normalizeInput, validateBatch } from '../src/record.js';

/**
 * The older design's fetch: readline over the whole log, JSON.parse every line,
 * keep the domain's records, sort, slice.
 */
export async function naiveFullScan(logPath: string, domain: string, limit: number): Promise<ExperienceRecord[]> {
  const matches: ExperienceRecord[] = [];
  const lines = createInterface({ input: createReadStream(logPath), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    const record = value as ExperienceRecord;
    if (record !== null && typeof record === 'object' && record.domain === domain && typeof record.reward === 'object') {
      matches.push(record);
    }
  }
  return matches.sort(compareRecords).slice(0, limit);
}

const CHUNK_BYTES = 1 << 20;

/**
 * The floor of any full scan: read the file in 1 MiB chunks, split lines,
 * JSON.parse each, nothing else. Returns the number of lines parsed.
 */
export function floorScan(logPath: string): number {
  const fd = openSync(logPath, 'r');
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let carry = '';
  let parsed = 0;
  try {
    for (let n; (n = readSync(fd, buffer, 0, CHUNK_BYTES, null)) > 0; ) {
      const end = buffer.lastIndexOf(0x0a, n - 1);
      if (end < 0) {
        carry += buffer.toString('utf8', 0, n);
        continue;
      }
      const lines = (carry + buffer.toString('utf8', 0, end)).split('\n');
      carry = buffer.toString('utf8', end + 1, n);
      for (const line of lines) {
        if (line !== '') {
          JSON.parse(line);
          parsed++;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return parsed;
}

/**
 * The older write path, without an index: validate and normalize the batch,
 * take the O_EXCL lock file, fs.promises.appendFile, remove the lock.
 */
export async function appendOnlyWrite(
  logPath: string,
  lockPath: string,
  inputs: ExperienceInput[],
  manifestPath: string,
): Promise<void> {
  const now = new Date();
  const records = validateBatch(inputs).map((input) => normalizeInput(input, { maxSummaryWords: 32, now, manifestPath }));
  const payload = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
  const fd = openSync(lockPath, 'wx');
  try {
    writeSync(fd, JSON.stringify({ pid: process.pid, acquiredAt: now.toISOString() }));
  } finally {
    closeSync(fd);
  }
  try {
    await appendFile(logPath, payload);
  } finally {
    unlinkSync(lockPath);
  }
}
