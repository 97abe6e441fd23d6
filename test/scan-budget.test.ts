import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, vi } from 'vitest';
import {
  ExperienceStore,
  ExperienceStoreError,
  type ExperienceRecord,
  type ExperienceStoreOptions,
  type ScanBudget,
} from '../src/index.js';
import { makeInput, STAMP } from './support/inputs.js';
import { test } from './support/temp-dir.js';

const MAX_LINES = 'CODEX_EXPERIENCE_FETCH_MAX_LINES';
const MAX_BYTES = 'CODEX_EXPERIENCE_FETCH_MAX_BYTES';
const DOMAIN = 'implementation';

// Budgets from the machine running the tests must not leak in.
beforeEach(() => {
  vi.stubEnv(MAX_LINES, undefined);
  vi.stubEnv(MAX_BYTES, undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
});

/** A store whose runsDir exists, as an orchestrator's does: readers heal the index only there. */
function storeIn(dir: string, options: ExperienceStoreOptions = {}): ExperienceStore {
  mkdirSync(path.join(dir, 'runs'), { recursive: true });
  return new ExperienceStore({ outDir: path.join(dir, 'out'), runsDir: path.join(dir, 'runs'), ...options });
}

/** One fetch of DOMAIN by a new store with this budget. */
function fetchWith(dir: string, scanBudget: ScanBudget, limit: number, options: ExperienceStoreOptions = {}) {
  return storeIn(dir, { ...options, scanBudget }).fetchTopDetailed({ domain: DOMAIN, limit });
}

function logPath(dir: string, taskId = 'task-a'): string {
  return path.join(dir, 'out', taskId, 'experiences.jsonl');
}

function indexPath(dir: string, taskId = 'task-a'): string {
  return path.join(dir, 'out', taskId, 'experiences.top.json');
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A record line as any writer of the log format would write it. */
function recordLine(id: string, gtScore: number, overrides: Partial<ExperienceRecord> = {}): string {
  const record: ExperienceRecord = {
    id,
    runId: 'run-1',
    taskId: 'task-a',
    epoch: 1,
    groupId: null,
    summary32: `summary of ${id}`,
    reward: { gtScore, relativeRank: 0 },
    toolStats: [],
    stampSignature: STAMP,
    domain: DOMAIN,
    createdAt: '2024-05-01T00:00:00.000Z',
    manifestPath: 'runs/m.json',
    ...overrides,
  };
  return JSON.stringify(record) + '\n';
}

/** Write a task's log directly, with no index: what an older writer leaves behind. */
function writeLog(dir: string, taskId: string, lines: string[]): void {
  mkdirSync(path.dirname(logPath(dir, taskId)), { recursive: true });
  writeFileSync(logPath(dir, taskId), lines.join(''));
}

/**
 * The oracle: the best `limit` records of `domain` among the given log lines, by
 * JSON.parse and a plain sort. Shares nothing with the line reader or top-k.
 */
function bestOf(lines: string[], limit: number, domain = DOMAIN): ExperienceRecord[] {
  const records: ExperienceRecord[] = [];
  for (const line of lines) {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    const r = value as ExperienceRecord;
    if (typeof r === 'object' && r !== null && r.domain === domain && typeof r.reward?.gtScore === 'number') records.push(r);
  }
  const scoreOf = (r: ExperienceRecord) => r.reward.gtScore + r.reward.relativeRank;
  return records
    .sort(
      (a, b) =>
        scoreOf(b) - scoreOf(a) ||
        (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0) ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    )
    .slice(0, limit);
}

/** Ten record lines with distinct scores, the best ones last, so a cut-short read misses them. */
const TEN = Array.from({ length: 10 }, (_, i) => recordLine(`exp-${i}`, i / 10));

function expectBadEnv(fn: () => unknown, name: string, value: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(ExperienceStoreError);
  const err = thrown as ExperienceStoreError;
  expect(err.code).toBe('EXP_BAD_ENV');
  expect(err.message).toContain(name);
  expect(err.message).toContain(JSON.stringify(value));
}

describe('scan budget from the environment', () => {
  test('reads positive decimal integers from both variables at construction', async ({ dir }) => {
    vi.stubEnv(MAX_LINES, '3');
    vi.stubEnv(MAX_BYTES, '1048576');
    const store = storeIn(dir);
    expect(store.scanBudget).toEqual({ maxLines: 3, maxBytes: 1048576 });

    writeLog(dir, 'task-a', TEN);
    const result = await store.fetchTopDetailed({ domain: DOMAIN, limit: 2 });
    expect(result.truncated).toBe(true);
    expect(result.stats.linesRead).toBe(3);
    expect(result.records).toEqual(bestOf(TEN.slice(0, 3), 2));
  });

  test('treats an empty variable as unset', async ({ dir }) => {
    vi.stubEnv(MAX_LINES, '');
    vi.stubEnv(MAX_BYTES, '');
    const store = storeIn(dir);
    expect(store.scanBudget).toEqual({ maxLines: undefined, maxBytes: undefined });

    writeLog(dir, 'task-a', TEN);
    const result = await store.fetchTopDetailed({ domain: DOMAIN, limit: 2 });
    expect(result.truncated).toBe(false);
    expect(result.records).toEqual(bestOf(TEN, 2));
  });

  describe.each([MAX_LINES, MAX_BYTES])('%s', (name) => {
    test('reads leading zeros as decimal, not octal', ({ dir }) => {
      vi.stubEnv(name, '010');
      const budget = storeIn(dir).scanBudget;
      expect(name === MAX_LINES ? budget.maxLines : budget.maxBytes).toBe(10);
    });

    test.for(['0', '000', '-5', 'abc', '1e3', ' 5', '5 ', '+5', '1.5', '0x10', '99999999999999999999'])(
      'rejects %j at construction with EXP_BAD_ENV naming the variable and the value',
      (value, { dir }) => {
        vi.stubEnv(name, value);
        expectBadEnv(() => storeIn(dir), name, value);
      },
    );
  });

  test('reads the environment once, at construction, not at each fetch', async ({ dir }) => {
    const store = storeIn(dir);
    vi.stubEnv(MAX_LINES, '1');
    vi.stubEnv(MAX_BYTES, 'not a number');
    writeLog(dir, 'task-a', TEN);
    const result = await store.fetchTopDetailed({ domain: DOMAIN, limit: 2 });
    expect(result.truncated).toBe(false);
    expect(result.records).toEqual(bestOf(TEN, 2));
  });

  test('lets an option field win over its variable, even a malformed one', async ({ dir }) => {
    vi.stubEnv(MAX_LINES, '1');
    vi.stubEnv(MAX_BYTES, 'abc');
    const store = storeIn(dir, { scanBudget: { maxLines: 4, maxBytes: 1 << 20 } });
    expect(store.scanBudget).toEqual({ maxLines: 4, maxBytes: 1 << 20 });

    writeLog(dir, 'task-a', TEN);
    const result = await store.fetchTopDetailed({ domain: DOMAIN, limit: 2 });
    expect(result.stats.linesRead).toBe(4);
    expect(result.records).toEqual(bestOf(TEN.slice(0, 4), 2));
  });

  test('keeps the variable of a field the option leaves out', ({ dir }) => {
    vi.stubEnv(MAX_BYTES, '2048');
    expect(storeIn(dir, { scanBudget: { maxLines: 7 } }).scanBudget).toEqual({ maxLines: 7, maxBytes: 2048 });
    vi.stubEnv(MAX_BYTES, '-1');
    expectBadEnv(() => storeIn(dir, { scanBudget: { maxLines: 7 } }), MAX_BYTES, '-1');
  });

  const badOptionValues = [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY];
  test.for(badOptionValues)('rejects the option value %s naming the option', (value, { dir }) => {
    for (const field of ['maxLines', 'maxBytes'] as const) {
      let thrown: unknown;
      try {
        storeIn(dir, { scanBudget: { [field]: value } });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ExperienceStoreError);
      expect((thrown as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
      expect((thrown as ExperienceStoreError).message).toContain(`scanBudget.${field}`);
    }
  });
});

describe('a fetch cut short by its budget', () => {
  test('cuts a full scan short by lines and answers with the best of the lines it read', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN);
    const result = await fetchWith(dir, { maxLines: 3 }, 5);
    expect(result.truncated).toBe(true);
    expect(result.records).toEqual(bestOf(TEN.slice(0, 3), 5));
    expect(result.records.map((r) => r.id)).toEqual(['exp-2', 'exp-1', 'exp-0']);
    expect(result.stats).toMatchObject({ fullScans: 1, linesRead: 3 });
  });

  test('cuts a full scan short by bytes at the last whole line within the budget', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN);
    const threeAndAHalf = TEN[0]!.length + TEN[1]!.length + TEN[2]!.length + Math.floor(TEN[3]!.length / 2);
    const result = await fetchWith(dir, { maxBytes: threeAndAHalf }, 5);
    expect(result.truncated).toBe(true);
    expect(result.records).toEqual(bestOf(TEN.slice(0, 3), 5));
    expect(result.stats.linesRead).toBe(3);
    expect(result.stats.bytesRead).toBeLessThanOrEqual(threeAndAHalf);
  });

  test('counts malformed lines against the line budget', async ({ dir }) => {
    const lines = [TEN[0]!, 'not json\n', '{"id":"half a record"}\n', TEN[9]!];
    writeLog(dir, 'task-a', lines);
    const result = await fetchWith(dir, { maxLines: 3 }, 5);
    expect(result.truncated).toBe(true);
    expect(result.records.map((r) => r.id)).toEqual(['exp-0']);
  });

  test('cuts a tail short: the index prefix plus the appended lines it read', async ({ dir }) => {
    const writer = storeIn(dir);
    const written = await writer.recordBatch(
      [0.15, 0.35].map((gtScore) => makeInput({ reward: { gtScore, relativeRank: 0 } })),
      'runs/m.json',
    );
    const indexBefore = sha256(indexPath(dir));
    appendFileSync(logPath(dir), TEN.join(''));

    const result = await fetchWith(dir, { maxLines: 4 }, 3);
    expect(result.truncated).toBe(true);
    expect(result.stats).toMatchObject({ tails: 1, fullScans: 0, linesRead: 4 });
    expect(result.records).toEqual(bestOf([...written.map((r) => JSON.stringify(r)), ...TEN.slice(0, 4)], 3));
    expect(result.records.map((r) => r.id)).toEqual([written[1]!.id, 'exp-3', 'exp-2']);
    // Never persisted: the index still describes the log before the append.
    expect(sha256(indexPath(dir))).toBe(indexBefore);
  });

  test('answers from a fresh index whatever the budget: it reads no log lines', async ({ dir }) => {
    const writer = storeIn(dir);
    await writer.recordBatch(
      Array.from({ length: 10 }, (_, i) => makeInput({ reward: { gtScore: i, relativeRank: 0 } })),
      'runs/m.json',
    );
    const result = await fetchWith(dir, { maxLines: 1, maxBytes: 1 }, 3);
    expect(result.truncated).toBe(false);
    expect(result.stats).toMatchObject({ indexHits: 1, linesRead: 0, bytesRead: 0 });
    expect(result.records).toEqual(await writer.fetchTop({ domain: DOMAIN, limit: 3 }));
    expect(result.records.map((r) => r.reward.gtScore)).toEqual([9, 8, 7]);
  });

  test('shares one budget across every task a fetch reads', async ({ dir }) => {
    const a = TEN.slice(0, 4).map((line) => line.replace('"exp-', '"a-exp-'));
    const b = TEN.slice(4, 8).map((line) => line.replace('"exp-', '"b-exp-'));
    writeLog(dir, 'task-a', a);
    writeLog(dir, 'task-b', b);
    const store = storeIn(dir, { useIndex: false, scanBudget: { maxLines: 6 } });

    const result = await store.fetchTopDetailed({ domain: DOMAIN, limit: 10 });
    expect(result.truncated).toBe(true);
    expect(result.stats).toMatchObject({ fullScans: 2, linesRead: 6 });
    // Tasks are read in name order: all of task-a, then the first two lines of task-b.
    expect(result.records).toEqual(bestOf([...a, ...b.slice(0, 2)], 10));

    // The allowance is per fetch call, not per store: the next fetch starts afresh.
    const again = await store.fetchTopDetailed({ domain: DOMAIN, limit: 10 });
    expect(again.stats.linesRead).toBe(6);
    expect(again.records).toEqual(result.records);
  });

  test('reports truncated for a task it could not read at all once the budget is spent', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN.slice(0, 4));
    writeLog(dir, 'task-b', TEN.slice(4, 5));
    const a = await fetchWith(dir, { maxLines: 4 }, 10, { useIndex: false });
    expect(a.truncated).toBe(true);
    expect(a.records).toEqual(bestOf(TEN.slice(0, 4), 10));

    const aBytes = TEN.slice(0, 4).join('').length;
    const b = await fetchWith(dir, { maxBytes: aBytes }, 10, { useIndex: false });
    expect(b.truncated).toBe(true);
    expect(b.records).toEqual(bestOf(TEN.slice(0, 4), 10));
  });
});

describe('a budget that exactly suffices', () => {
  test('is not truncated when the lines budget equals the lines of every task', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN.slice(0, 4));
    writeLog(dir, 'task-b', TEN.slice(4));
    const result = await fetchWith(dir, { maxLines: 10 }, 3, { useIndex: false });
    expect(result.truncated).toBe(false);
    expect(result.records).toEqual(bestOf(TEN, 3));
  });

  test('is not truncated when the bytes budget equals the size of every log', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN.slice(0, 4));
    writeLog(dir, 'task-b', TEN.slice(4));
    const total = TEN.join('').length;
    const exact = await fetchWith(dir, { maxBytes: total }, 3, { useIndex: false });
    expect(exact.truncated).toBe(false);
    expect(exact.records).toEqual(bestOf(TEN, 3));

    const oneShort = await fetchWith(dir, { maxBytes: total - 1 }, 3, { useIndex: false });
    expect(oneShort.truncated).toBe(true);
    expect(oneShort.records).toEqual(bestOf(TEN.slice(0, 9), 3));
  });

  test('is not truncated by an unterminated last line it did not read: that line is not data yet', async ({ dir }) => {
    const partial = recordLine('exp-partial', 99).slice(0, -1);
    writeLog(dir, 'task-a', [...TEN, partial]);
    const whole = TEN.join('').length;
    const result = await fetchWith(dir, { maxBytes: whole, maxLines: 10 }, 3);
    expect(result.truncated).toBe(false);
    expect(result.records).toEqual(bestOf(TEN, 3));
  });

  test('heals the index after a tail the budget exactly covered', async ({ dir }) => {
    await storeIn(dir).recordBatch([makeInput()], 'runs/m.json');
    appendFileSync(logPath(dir), TEN.slice(0, 3).join(''));
    const budgeted = storeIn(dir, { scanBudget: { maxLines: 3 } });
    const tail = await budgeted.fetchTopDetailed({ domain: DOMAIN, limit: 2 });
    expect(tail.truncated).toBe(false);
    expect(tail.stats.tails).toBe(1);

    const next = await fetchWith(dir, { maxLines: 1 }, 2);
    expect(next.stats).toMatchObject({ indexHits: 1, linesRead: 0 });
    expect(next.truncated).toBe(false);
    expect(next.records).toEqual(tail.records);
  });
});

describe('a truncated read is never kept', () => {
  test('leaves no index behind, and the next unbudgeted fetch of another instance gets the full answer', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN);
    const cut = await fetchWith(dir, { maxLines: 3 }, 3);
    expect(cut.truncated).toBe(true);
    expect(existsSync(indexPath(dir))).toBe(false);

    const full = await storeIn(dir).fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    expect(full.truncated).toBe(false);
    expect(full.stats).toMatchObject({ fullScans: 1, indexHits: 0 });
    expect(full.records).toEqual(bestOf(TEN, 3));
    expect(full.records.map((r) => r.id)).toEqual(['exp-9', 'exp-8', 'exp-7']);
    // That unbudgeted read did heal the index, and the index is right.
    expect(existsSync(indexPath(dir))).toBe(true);
    const hit = await storeIn(dir).fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    expect(hit.stats.indexHits).toBe(1);
    expect(hit.records).toEqual(full.records);
  });

  test('is not cached: the same budgeted instance reads again and says truncated again', async ({ dir }) => {
    writeLog(dir, 'task-a', TEN);
    const store = storeIn(dir, { scanBudget: { maxLines: 3 } });
    const first = await store.fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    const second = await store.fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    expect(second.truncated).toBe(true);
    expect(second.stats).toMatchObject({ indexHits: 0, fullScans: 1, linesRead: 3 });
    expect(second.records).toEqual(first.records);
  });

  test('leaves a stale index as it was after a truncated tail, and a later reader catches up fully', async ({ dir }) => {
    await storeIn(dir).recordBatch([makeInput({ reward: { gtScore: 0.05, relativeRank: 0 } })], 'runs/m.json');
    const indexBefore = sha256(indexPath(dir));
    appendFileSync(logPath(dir), TEN.join(''));

    const cut = await fetchWith(dir, { maxLines: 2 }, 3);
    expect(cut.truncated).toBe(true);
    expect(sha256(indexPath(dir))).toBe(indexBefore);

    const full = await storeIn(dir).fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    expect(full.truncated).toBe(false);
    expect(full.stats.tails).toBe(1);
    expect(full.records.map((r) => r.id)).toEqual(['exp-9', 'exp-8', 'exp-7']);
  });

  test('does not let a recordBatch of a budgeted store write a cut-short index', async ({ dir }) => {
    // Writers catch the index up without a budget: the index they write covers the whole log.
    writeLog(dir, 'task-a', TEN);
    const budgeted = storeIn(dir, { scanBudget: { maxLines: 1 } });
    await budgeted.recordBatch([makeInput({ reward: { gtScore: 0.05, relativeRank: 0 } })], 'runs/m.json');
    const hit = await storeIn(dir).fetchTopDetailed({ domain: DOMAIN, limit: 3 });
    expect(hit.stats.indexHits).toBe(1);
    expect(hit.records.map((r) => r.id)).toEqual(['exp-9', 'exp-8', 'exp-7']);
  });
});

describe('the answer of a budgeted full scan', () => {
  test('cuts a log of several MiB at the same line a line-by-line count would', async ({ dir }) => {
    // Lines of 400-1100 bytes, so budgets fall inside, between and across the reader's chunks.
    const lines = Array.from({ length: 4000 }, (_, i) =>
      recordLine(`exp-${String(i).padStart(4, '0')}`, ((i * 7919) % 1000) / 1000, {
        summary32: 'x'.repeat(200 + ((i * 37) % 700)),
      }),
    );
    writeLog(dir, 'task-a', lines);
    const prefixBytes = (n: number) => lines.slice(0, n).join('').length;
    const budgets: { maxLines?: number; maxBytes?: number }[] = [
      ...[1, 1000, 1500, 2000, 3999, 4000].map((maxLines) => ({ maxLines })),
      ...[1 << 20, (1 << 20) + 1, prefixBytes(1700), prefixBytes(1700) - 1, prefixBytes(4000)].map((maxBytes) => ({ maxBytes })),
    ];
    for (const scanBudget of budgets) {
      let bytes = 0;
      let taken = 0;
      for (const l of lines) {
        if (taken >= (scanBudget.maxLines ?? Infinity) || bytes + l.length > (scanBudget.maxBytes ?? Infinity)) break;
        bytes += l.length;
        taken++;
      }
      const result = await storeIn(dir, { useIndex: false, scanBudget }).fetchTopDetailed({ domain: DOMAIN, limit: 5 });
      const context = JSON.stringify(scanBudget);
      expect(result.truncated, context).toBe(taken < lines.length);
      expect(result.stats.linesRead, context).toBe(taken);
      expect(result.records, context).toEqual(bestOf(lines.slice(0, taken), 5));
    }
  });

  test('equals the best of the lines a budget lets it read, for any budget over any tasks', async ({ dir }) => {
    let run = 0;
    const line = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.record({
          score: fc.integer({ min: 0, max: 4 }),
          day: fc.integer({ min: 1, max: 3 }),
          domain: fc.constantFrom(DOMAIN, 'review'),
        }),
      },
      { weight: 1, arbitrary: fc.constant('garbage' as const) },
    );
    const task = fc.record({ lines: fc.array(line, { maxLength: 8 }), partialTail: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(
        fc.array(task, { minLength: 1, maxLength: 3 }),
        fc.option(fc.integer({ min: 1, max: 25 }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 6000 }), { nil: undefined }),
        fc.integer({ min: 1, max: 6 }),
        async (tasks, maxLines, maxBytes, limit) => {
          const root = path.join(dir, `run-${run++}`);
          let n = 0;
          const logs = tasks.map((t) => {
            const lines = t.lines.map((l) =>
              l === 'garbage'
                ? '{"not":"a record"}\n'
                : recordLine(`exp-${String(n++).padStart(3, '0')}`, l.score / 4, {
                    domain: l.domain,
                    createdAt: `2024-05-0${l.day}T00:00:00.000Z`,
                  }),
            );
            return { lines, text: lines.join('') + (t.partialTail ? recordLine('exp-partial', 9).slice(0, 40) : '') };
          });
          logs.forEach((log, i) => writeLog(root, `task-${i}`, [log.text]));

          // The budget as the contract states it: lines and bytes shared by all tasks,
          // in task-name order; a task reads at most the bytes left, and only whole lines.
          let linesLeft = maxLines ?? Infinity;
          let bytesLeft = maxBytes ?? Infinity;
          let truncated = false;
          const read: string[] = [];
          for (const log of logs) {
            let window = 0;
            let taken = 0;
            for (const l of log.lines) {
              if (taken >= linesLeft || window + l.length > bytesLeft) break;
              window += l.length;
              taken++;
            }
            read.push(...log.lines.slice(0, taken));
            if (taken < log.lines.length) truncated = true;
            linesLeft -= taken;
            bytesLeft -= Math.min(log.text.length, bytesLeft);
          }

          const store = storeIn(root, { useIndex: false, scanBudget: { maxLines, maxBytes } });
          const result = await store.fetchTopDetailed({ domain: DOMAIN, limit });
          const context = JSON.stringify({ maxLines, maxBytes, limit, sizes: logs.map((l) => l.lines.length) });
          expect(result.truncated, context).toBe(truncated);
          expect(result.records, context).toEqual(bestOf(read, limit));
          expect(result.stats.linesRead, context).toBe(read.length);
          if (maxBytes !== undefined) expect(result.stats.bytesRead, context).toBeLessThanOrEqual(maxBytes);
          rmSync(root, { recursive: true, force: true });
        },
      ),
      { numRuns: 60 },
    );
  });
});
