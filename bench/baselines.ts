/**
 * The floors the store is measured against: what any full scan, and any cold
 * indexed fetch, must at least do. The older design's read and write paths are
 * bench/older-store.ts. None of these is part of the library.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

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
 * The floor of a cold indexed fetch, whatever the index format: open the index,
 * read all of it, close it, and decode and JSON.parse the records the answer
 * needs (`recordsText`: the domain's top records as a JSON array, taken from a
 * full scan, so the floor does not depend on how the index lays them out).
 * Returns the number of records parsed.
 */
export function indexFloor(indexPath: string, recordsText: Buffer): number {
  const fd = openSync(indexPath, 'r');
  try {
    const size = fstatSync(fd).size;
    const buffer = Buffer.allocUnsafe(size);
    for (let at = 0, n; at < size && (n = readSync(fd, buffer, at, size - at, at)) > 0; ) at += n;
  } finally {
    closeSync(fd);
  }
  return (JSON.parse(recordsText.toString('utf8')) as unknown[]).length;
}
