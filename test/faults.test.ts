/**
 * Nothing lost, nothing doubled, every error with a code (SPEC "Library API":
 * batches and errors). Every fs call a recordBatch or a fetch makes is made to
 * fail in turn — once, and for good from then on, as EIO and as a disk that
 * fills up mid-write — and after each run: a rejected batch is absent from the
 * log, a resolved one present exactly once, the error is an ExperienceStoreError
 * with a code, the next writer is not blocked by a lock or a temp file, and every
 * fetch equals a plain full scan. FAULT_RUNS=full runs every call index of both
 * kinds with both codes (`FAULT_RUNS=full npx vitest run test/faults.test.ts`); the
 * default samples them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreError, type ExperienceInput } from '../src/index.js';
import { injectFaults, type FaultPlan } from './support/fs-faults.js';
import { makeInput } from './support/inputs.js';
import { oracleTop } from './support/oracle.js';
import { test } from './support/temp-dir.js';

const TASK = 'task-a';
const FULL = process.env.FAULT_RUNS === 'full';

interface Tally {
  runs: number;
  rejected: number;
  rejectedButPresent: number;
  resolvedButAbsent: number;
  rawErrors: number;
  blockedNextWrites: number;
  tempFilesLeft: number;
  wrongFetches: number;
}

function batch(tag: string, size: number): ExperienceInput[] {
  return Array.from({ length: size }, (_, i) =>
    makeInput({ taskId: TASK, runId: `${tag}-${i}`, domain: i % 2 === 0 ? 'implementation' : 'review', reward: { gtScore: (i % 5) / 4, relativeRank: 0.1 } }),
  );
}

/** How many lines of the log belong to batch `tag`. */
function linesOf(logPath: string, tag: string): number {
  let text: string;
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {
    return 0;
  }
  return text.split('\n').filter((l) => l.includes(`"runId":"${tag}-`)).length;
}

async function oneRun(dir: string, plan: FaultPlan, size: number, tally: Tally, op: 'write' | 'fetch'): Promise<void> {
  const root = path.join(dir, `run-${tally.runs}`);
  const outDir = path.join(root, 'out');
  const runsDir = path.join(root, 'runs');
  const log = path.join(outDir, TASK, 'experiences.jsonl');
  const options = { outDir, runsDir, indexTopK: 4, lockRetry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 2 } };
  // A store with history, and its index on disk (some runs start with a fresh index, some from none).
  const setup = new ExperienceStore(options);
  await setup.recordBatch(batch('old', 6), 'm.json');
  if (tally.runs % 3 === 0) rmSync(path.join(outDir, TASK, 'experiences.top.json'), { force: true });

  const tag = `b${tally.runs}`;
  const store = new ExperienceStore(options);
  const seam = injectFaults(root, plan);
  let outcome: { ok: true } | { ok: false; err: unknown };
  try {
    if (op === 'write') await store.recordBatch(batch(tag, size), 'm.json');
    else await store.fetchTop({ domain: 'implementation', limit: 3, taskId: TASK });
    outcome = { ok: true };
  } catch (err) {
    outcome = { ok: false, err };
  } finally {
    seam.restore();
  }
  tally.runs++;
  if (!outcome.ok) {
    tally.rejected++;
    if (!(outcome.err instanceof ExperienceStoreError) || !['EXP_IO', 'EXP_LOCKED'].includes(outcome.err.code)) {
      tally.rawErrors++;
      console.error('raw error escaped', plan, outcome.err);
    }
  }
  if (op === 'write') {
    const present = linesOf(log, tag);
    if (!outcome.ok && present > 0) {
      tally.rejectedButPresent++;
      console.error('rejected but present', plan, seam.failed, outcome.err);
    }
    if (outcome.ok && present !== size) {
      tally.resolvedButAbsent++;
      console.error('resolved but not present exactly once', plan, present);
    }
  }

  // The next writer is not blocked by anything the failure left behind, and leaves no temp file.
  try {
    await new ExperienceStore({ ...options, lockRetry: { maxAttempts: 1 } }).recordBatch(batch(`${tag}-next`, 1), 'm.json');
  } catch (err) {
    tally.blockedNextWrites++;
    console.error('next write blocked', plan, seam.failed, err);
  }
  const temps = readdirSync(path.join(outDir, TASK)).filter((n) => n.startsWith('experiences.top.json.'));
  const locks = readdirSync(runsDir);
  tally.tempFilesLeft += temps.length + locks.length;
  if (temps.length + locks.length > 0) console.error('left behind', plan, temps, locks);

  for (const domain of ['implementation', 'review']) {
    const q = { domain, limit: 3, taskId: TASK };
    const want = await oracleTop(outDir, q);
    for (const reader of [store, new ExperienceStore(options)]) {
      if (JSON.stringify(await reader.fetchTop(q)) !== JSON.stringify(want)) tally.wrongFetches++;
    }
  }
}

/** fs calls a clean run of `op` makes under its directory: the range of N to fail. */
async function callsOf(dir: string, op: 'write' | 'fetch'): Promise<number> {
  const root = path.join(dir, `count-${op}`);
  const options = { outDir: path.join(root, 'out'), runsDir: path.join(root, 'runs'), indexTopK: 4 };
  const setup = new ExperienceStore(options);
  await setup.recordBatch(batch('old', 6), 'm.json'); // also loads write-file-atomic, so the runs below count only fs calls
  const seam = injectFaults(root);
  try {
    if (op === 'write') await new ExperienceStore(options).recordBatch(batch('count', 3), 'm.json');
    else await new ExperienceStore(options).fetchTop({ domain: 'implementation', limit: 3, taskId: TASK });
  } finally {
    seam.restore();
  }
  return seam.calls;
}

describe('fault injection: every fs call of a write or a fetch fails in turn', () => {
  test('no rejected batch is in the log, no resolved batch is missing, every error has a code, nothing blocks the next writer', async ({ dir }) => {
    const tally: Tally = { runs: 0, rejected: 0, rejectedButPresent: 0, resolvedButAbsent: 0, rawErrors: 0, blockedNextWrites: 0, tempFilesLeft: 0, wrongFetches: 0 };
    for (const op of ['write', 'fetch'] as const) {
      const calls = await callsOf(dir, op);
      expect(calls, `a ${op} makes fs calls`).toBeGreaterThan(5);
      const plans: FaultPlan[] = [];
      for (let nth = 1; nth <= calls + 1; nth++) {
        plans.push({ nth, persistent: false, code: 'EIO' }, { nth, persistent: true, code: 'EIO' });
        // A full disk: from the Nth call on, every write is refused (the first one after writing half).
        const full = { code: 'ENOSPC', shortWrite: true, only: ['writeSync', 'writevSync', 'writeFileSync'] };
        if (FULL || op === 'write') plans.push({ nth, persistent: true, ...full });
        if (FULL) plans.push({ nth, persistent: false, ...full });
      }
      for (const plan of plans) await oneRun(dir, plan, 1 + (plan.nth % 4) * 5, tally, op);
    }
    console.info(`faults: ${JSON.stringify(tally)}`);
    expect(tally.rejected).toBeGreaterThan(0);
    expect(tally).toMatchObject({ rejectedButPresent: 0, resolvedButAbsent: 0, rawErrors: 0, blockedNextWrites: 0, tempFilesLeft: 0, wrongFetches: 0 });
  }, 300_000);
});

/** A real full disk: a tmpfs of a few KiB (root only: mount needs it). */
const canMount = process.getuid?.() === 0 && process.platform === 'linux';
if (!canMount) console.info('skipped the full-disk test: mounting a small tmpfs needs root on Linux');

describe.skipIf(!canMount)('a full disk (a 256 KiB tmpfs)', () => {
  test('batches that do not fit are rejected and absent, the index is never replaced by a short one, and fetches stay exact', async ({ dir }) => {
    const mnt = path.join(dir, 'disk');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
    try {
      const options = { outDir: path.join(mnt, 'out'), runsDir: path.join(mnt, 'runs'), indexTopK: 4 };
      const store = new ExperienceStore(options);
      let resolved = 0;
      let rejected = 0;
      for (let i = 0; i < 200; i++) {
        const tag = `full${i}`;
        const log = path.join(options.outDir, TASK, 'experiences.jsonl');
        try {
          await store.recordBatch(batch(tag, 1 + (i % 7)), 'm.json');
          resolved++;
          expect(linesOf(log, tag), `batch ${i} resolved`).toBe(1 + (i % 7));
        } catch (err) {
          rejected++;
          expect(err).toBeInstanceOf(ExperienceStoreError);
          expect((err as ExperienceStoreError).code).toBe('EXP_IO');
          expect((err as Error).message).toMatch(/ENOSPC/);
          expect(linesOf(log, tag), `batch ${i} rejected`).toBe(0);
        }
        // Whatever the index holds, answers equal a full scan, and it is a valid index or none.
        const q = { domain: 'implementation', limit: 3, taskId: TASK };
        expect(await new ExperienceStore(options).fetchTop(q)).toEqual(await oracleTop(options.outDir, q));
        expect(readdirSync(path.join(options.outDir, TASK)).filter((n) => n.startsWith('experiences.top.json.'))).toEqual([]);
      }
      console.info(`full disk: ${resolved} batches resolved, ${rejected} rejected`);
      expect(resolved).toBeGreaterThan(0);
      expect(rejected).toBeGreaterThan(0);
    } finally {
      execFileSync('umount', [mnt]);
    }
  }, 120_000);
});
