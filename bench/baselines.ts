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
 * The floor of a cold indexed fetch, whatever the index format: open the index
 * file, read as many bytes as the records the answer needs take as JSON, close
 * it, then decode and JSON.parse those records (`recordsText`: a JSON array of
 * them, taken from a full scan). Any format must at least do this much; reading
 * the bytes of the records themselves, not the file's, keeps the floor the same
 * whatever else a format stores or however it lays records out.
 * Returns the number of records parsed.
 */
export function indexFloor(indexPath: string, recordsText: Buffer): number {
  const fd = openSync(indexPath, 'r');
  try {
    const length = Math.min(recordsText.length, fstatSync(fd).size);
    const buffer = Buffer.allocUnsafe(length);
    for (let at = 0, n; at < length && (n = readSync(fd, buffer, at, length - at, at)) > 0; ) at += n;
  } finally {
    closeSync(fd);
  }
  return (JSON.parse(recordsText.toString('utf8')) as unknown[]).length;
}
