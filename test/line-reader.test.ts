import { closeSync, fstatSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { readLines, unlimitedBudget, type ReadBudget } from '../src/line-reader.js';
import { test } from './support/temp-dir.js';

interface Read {
  lines: string[];
  end: number;
  bytesRead: number;
  linesRead: number;
  truncated: boolean;
  budget: ReadBudget;
}

async function read(file: string, from = 0, to?: number, budget: ReadBudget = unlimitedBudget()): Promise<Read> {
  const fd = openSync(file, 'r');
  try {
    const size = to ?? fstatSync(fd).size;
    const lines: string[] = [];
    const result = await readLines(fd, from, size, (line) => lines.push(line), { budget });
    return { lines, ...result, budget };
  } finally {
    closeSync(fd);
  }
}

async function readText(dir: string, text: string | Buffer, budget?: Partial<ReadBudget>): Promise<Read> {
  const file = path.join(dir, 'log.jsonl');
  await writeFile(file, text);
  return read(file, 0, undefined, { ...unlimitedBudget(), ...budget });
}

/**
 * What readLines must do, written the slow, obvious way: complete lines are those
 * whose "\n" lies before min(to, from + maxBytes); at most maxLines of them are
 * consumed; `truncated` means a complete line remains unread before `to`.
 */
function model(bytes: Buffer, from: number, to: number, maxLines: number, maxBytes: number) {
  const limit = Math.min(to, from + maxBytes);
  const lines: string[] = [];
  let end = from;
  let linesRead = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, end);
    if (nl < 0 || nl >= limit || linesRead >= maxLines) break;
    linesRead++;
    const line = bytes.toString('utf8', end, nl).replace(/\r$/, '');
    if (line.trim() !== '') lines.push(line);
    end = nl + 1;
  }
  const next = bytes.indexOf(0x0a, end);
  return { lines, end, linesRead, truncated: next >= 0 && next < to };
}

describe('readLines', () => {
  test('reads nothing from an empty file and is not truncated', async ({ dir }) => {
    const r = await readText(dir, '', { linesLeft: 1, bytesLeft: 1 });
    expect(r).toMatchObject({ lines: [], end: 0, bytesRead: 0, linesRead: 0, truncated: false });
  });

  test('starts at the given byte offset', async ({ dir }) => {
    const file = path.join(dir, 'log.jsonl');
    await writeFile(file, 'first\nsecond\nthird\n');
    const r = await read(file, 6);
    expect(r).toMatchObject({ lines: ['second', 'third'], end: 19, bytesRead: 13, linesRead: 2 });
  });

  test('never returns an unterminated last line, and ends just after the last newline', async ({ dir }) => {
    const r = await readText(dir, 'one\ntwo\n{"half":');
    expect(r).toMatchObject({ lines: ['one', 'two'], end: 8, bytesRead: 16, linesRead: 2, truncated: false });
    const only = await readText(dir, 'no newline at all');
    expect(only).toMatchObject({ lines: [], end: 0, linesRead: 0, truncated: false });
  });

  test('ignores bytes past the size the caller observed', async ({ dir }) => {
    const file = path.join(dir, 'log.jsonl');
    await writeFile(file, 'seen\nappended later\n');
    const r = await read(file, 0, 5);
    expect(r).toMatchObject({ lines: ['seen'], end: 5, bytesRead: 5 });
  });

  test('strips one trailing carriage return from CRLF lines', async ({ dir }) => {
    const r = await readText(dir, 'a\r\nb\r\r\n{"x":1}\r\n');
    expect(r.lines).toEqual(['a', 'b\r', '{"x":1}']);
  });

  test('skips blank lines but counts them as lines read', async ({ dir }) => {
    const r = await readText(dir, 'a\n\n   \n\t\r\n\r\nb\n');
    expect(r).toMatchObject({ lines: ['a', 'b'], linesRead: 6 });
  });

  test('treats lines of Unicode spaces as blank, whatever their first character', async ({ dir }) => {
    const r = await readText(dir, '\u00a0\n \u00a0\n\u3000\n\u3000 \n\u00a0x\n');
    expect(r).toMatchObject({ lines: ['\u00a0x'], linesRead: 5 });
  });

  test('decodes UTF-8 lines whole', async ({ dir }) => {
    const r = await readText(dir, 'café\n修复 🚀\n𝄞\n');
    expect(r.lines).toEqual(['café', '修复 🚀', '𝄞']);
  });

  describe('budgets', () => {
    test('maxLines stops after that many lines and is truncated when a complete line remains', async ({ dir }) => {
      const r = await readText(dir, 'a\nb\nc\n', { linesLeft: 2 });
      expect(r).toMatchObject({ lines: ['a', 'b'], end: 4, linesRead: 2, truncated: true });
      expect(r.budget.linesLeft).toBe(0);
    });

    test('maxLines that covers every complete line is not truncated, even before a partial line', async ({ dir }) => {
      expect(await readText(dir, 'a\nb\nc\n', { linesLeft: 3 })).toMatchObject({ lines: ['a', 'b', 'c'], truncated: false });
      expect(await readText(dir, 'a\nb\nc\npart', { linesLeft: 3 })).toMatchObject({ end: 6, truncated: false });
    });

    test('maxLines counts blank lines', async ({ dir }) => {
      const r = await readText(dir, 'a\n\nb\n', { linesLeft: 2 });
      expect(r).toMatchObject({ lines: ['a'], end: 3, truncated: true });
    });

    test('maxBytes stops inside a line and keeps only the complete lines before it', async ({ dir }) => {
      const r = await readText(dir, 'aa\nbb\ncc\n', { bytesLeft: 4 });
      expect(r).toMatchObject({ lines: ['aa'], end: 3, bytesRead: 4, truncated: true });
      expect(r.budget.bytesLeft).toBe(0);
    });

    test('maxBytes ending one byte short of the last newline is truncated', async ({ dir }) => {
      expect(await readText(dir, 'aa\nbb\ncc\n', { bytesLeft: 8 })).toMatchObject({ lines: ['aa', 'bb'], truncated: true });
    });

    test('maxBytes that leaves only a partial line unread is not truncated', async ({ dir }) => {
      expect(await readText(dir, 'aa\nbb\ncc\n', { bytesLeft: 9 })).toMatchObject({ lines: ['aa', 'bb', 'cc'], truncated: false });
      expect(await readText(dir, 'aa\nbb', { bytesLeft: 3 })).toMatchObject({ lines: ['aa'], truncated: false });
    });

    test('charges a shared budget so the next read gets only what is left', async ({ dir }) => {
      const file = path.join(dir, 'log.jsonl');
      await writeFile(file, 'a\nb\nc\nd\n');
      const budget: ReadBudget = { linesLeft: 3, bytesLeft: Infinity };
      expect((await read(file, 0, 4, budget)).lines).toEqual(['a', 'b']);
      const second = await read(file, 4, undefined, budget);
      expect(second).toMatchObject({ lines: ['c'], truncated: true });
      expect(budget.linesLeft).toBe(0);
    });
  });

  test('matches the line model for any lines, offsets and budgets', async ({ dir }) => {
    const file = path.join(dir, 'log.jsonl');
    const char = fc.constantFrom('a', '{', '"', 'é', '修', '🚀', ' ', '\t', '\r', '\u00a0', '\u3000');
    const line = fc.array(char, { maxLength: 6 }).map((cs) => cs.join(''));
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 12 }),
        line,
        fc.nat(),
        fc.option(fc.integer({ min: 0, max: 14 }), { nil: Infinity }),
        fc.option(fc.integer({ min: 0, max: 80 }), { nil: Infinity }),
        async (lines, partial, startLine, maxLines, maxBytes) => {
          const bytes = Buffer.from(lines.map((l) => `${l}\n`).join('') + partial);
          const from = Buffer.byteLength(lines.slice(0, startLine % (lines.length + 1)).map((l) => `${l}\n`).join(''));
          await writeFile(file, bytes);
          const got = await read(file, from, bytes.length, { linesLeft: maxLines, bytesLeft: maxBytes });
          const want = model(bytes, from, bytes.length, maxLines, maxBytes);
          expect({ lines: got.lines, end: got.end, linesRead: got.linesRead, truncated: got.truncated }).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('reads lines and characters that straddle its 1 MiB read chunks', async ({ dir }) => {
    const CHUNK = 1 << 20;
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < 2.5 * CHUNK; i++) {
      const l = `${i}:${'🚀'.repeat(1 + (i % 97))}${'x'.repeat(i % 3)}`;
      lines.push(l);
      size += Buffer.byteLength(l) + 1;
    }
    const bytes = Buffer.from(lines.join('\n') + '\n');
    // The case this test exists for: the first chunk ends inside a 4-byte character.
    expect(bytes[CHUNK]! & 0xc0).toBe(0x80);
    const file = path.join(dir, 'big.jsonl');
    await writeFile(file, bytes);

    const all = await read(file);
    expect(all.lines).toEqual(lines);
    expect(all).toMatchObject({ end: bytes.length, bytesRead: bytes.length, truncated: false });

    const maxLines = lines.length - 5; // stops in the last chunk
    const cut = await read(file, 0, undefined, { linesLeft: maxLines, bytesLeft: Infinity });
    expect(cut).toMatchObject({ ...model(bytes, 0, bytes.length, maxLines, Infinity), truncated: true });

    const maxBytes = CHUNK + 10; // stops just past the first chunk
    const byBytes = await read(file, 0, undefined, { linesLeft: Infinity, bytesLeft: maxBytes });
    expect(byBytes).toMatchObject({ ...model(bytes, 0, bytes.length, Infinity, maxBytes), bytesRead: maxBytes });
  });
});
