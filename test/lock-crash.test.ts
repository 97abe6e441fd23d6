/**
 * A writer SIGKILLed mid-batch leaves a lock whose owner is provably dead: the
 * next writer takes it at once, with the DEFAULT staleMs (5 minutes), and no
 * acknowledged record is lost. Real processes running the built package; the
 * kill lands at random moments and at forced points in the lock code.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, expect } from 'vitest';
import { ensureBuilt, PACKAGE_ENTRY, ROOT } from './support/build.js';
// @ts-expect-error plain JavaScript support file, no type declarations
import { killLockChildren, spawnLockChild as spawnUntyped } from './support/lock-child.mjs';
import { test } from './support/temp-dir.js';

interface LockChild {
  pid: number;
  process: ChildProcess;
  lines: string[];
  waitForLine(prefix: string | string[]): Promise<string>;
  exited: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

const spawnLockChild = spawnUntyped as (config: Record<string, unknown>, hook?: object) => LockChild;

const ROUNDS = 50;

// Where a forced kill lands (the nth call after the writer's first batch):
// holding the lock before the append, in the release after the append
// (holding the lock and its claim), and at any write (the lock's temp file or
// the log's append).
const FORCED_KILLS = [
  { fn: 'linkSync', pathEnd: '.experiences.lock', when: 'after' },
  { fn: 'unlinkSync', pathEnd: '.experiences.lock' },
  { fn: 'linkSync', path: '.experiences.lock.clear-' },
  { fn: 'writeSync' },
];

beforeAll(() => {
  try {
    ensureBuilt();
  } catch (err) {
    if (statSync(path.join(ROOT, 'dist', 'src', 'lock.js')).mtimeMs < statSync(path.join(ROOT, 'src', 'lock.ts')).mtimeMs) throw err;
  }
});

afterEach(() => killLockChildren());

test(`a writer SIGKILLed mid-batch ${ROUNDS} times: the next batch succeeds at its first or second attempt with the default staleMs, and no acknowledged record is lost`, async ({ dir }) => {
  const outDir = path.join(dir, 'out');
  const runsDir = path.join(dir, 'runs');
  const acknowledged: string[] = [];
  const firstAttempts: number[] = [];
  const killedAt: string[] = [];
  let locksLeft = 0;

  for (let round = 0; round <= ROUNDS; round++) {
    const isLast = round === ROUNDS;
    const forced = round % 2 === 1 ? FORCED_KILLS[(round >> 1) % FORCED_KILLS.length] : undefined;
    const hook = forced === undefined ? undefined : { ...forced, action: 'kill', nth: 1 + (round % 3) };
    const child = spawnLockChild({
      mode: 'writer',
      entry: PACKAGE_ENTRY,
      outDir,
      runsDir,
      taskId: 'task-a',
      batches: isLast ? 1 : null,
      records: 3,
      probeFirst: true,
      hookAfterFirst: hook,
      name: `w${round}`,
    });
    // The first batch of each writer is the batch right after the previous kill.
    const first = await child.waitForLine(['first-attempt', 'exp-']).catch(() => undefined);
    if (first?.startsWith('first-attempt')) firstAttempts.push(Number(first.split(' ')[1]));

    if (!isLast && hook === undefined) {
      await child.waitForLine('exp-').catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
      child.process.kill('SIGKILL');
    }
    const { code, signal, stderr } = await child.exited;
    if (isLast) expect(code, stderr).toBe(0);
    else {
      expect(signal, `round ${round}: ${stderr}`).toBe('SIGKILL');
      killedAt.push(hook === undefined ? 'random' : `${hook.fn}#${hook.nth}`);
      if (existsSync(path.join(runsDir, 'task-a.experiences.lock'))) locksLeft++;
    }
    acknowledged.push(...child.lines.filter((line) => line.startsWith('exp-')));
  }

  // Every writer got its first batch in, right after a kill.
  expect(firstAttempts.length).toBe(ROUNDS + 1);
  expect(Math.max(...firstAttempts)).toBeLessThanOrEqual(2);
  const waited = firstAttempts.filter((n) => n > 1).length;
  console.log(`lock-crash: ${ROUNDS} SIGKILLs (${killedAt.filter((k) => k === 'random').length} at random moments, the rest forced); ` +
    `${locksLeft} left their lock behind; ${waited} of ${firstAttempts.length} next batches waited (attempts: ${JSON.stringify(countBy(firstAttempts))})`);

  const log = readFileSync(path.join(outDir, 'task-a', 'experiences.jsonl'), 'utf8');
  const ids = log.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line).id as string];
    } catch {
      return []; // a batch cut by a kill mid-append: terminated by the next writer, counted malformed
    }
  });
  const counts = countBy(ids);
  for (const id of acknowledged) expect(counts[id], `acknowledged ${id}`).toBe(1);
  expect(acknowledged.length).toBeGreaterThan(ROUNDS);
});

function countBy(values: ReadonlyArray<string | number>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[String(v)] = (counts[String(v)] ?? 0) + 1;
  return counts;
}
