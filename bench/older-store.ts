/**
 * The older design, as the older orchestrator's store did it: the baseline every
 * "what a run pays" case is measured against. Standalone on purpose: it imports
 * nothing from src/ (no zod, no index), so its import cost is its own.
 *
 * - fetchTop: readline over the whole log of each task, JSON.parse every line,
 *   keep the domain's records, sort (score desc, createdAt desc, id asc), slice.
 * - recordBatch: minimal validation, an empty O_EXCL lock file retried with
 *   backoff, one fs.promises.appendFile of the batch, unlink.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile, open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export interface OlderInput {
  runId: string;
  taskId: string;
  epoch: number | null;
  groupId: string | null;
  summary: string;
  reward: { gtScore: number; relativeRank: number };
  toolStats: Array<{ tool: string; tokens: number; latencyMs: number; costUsd: number }>;
  stampSignature: string;
  domain: string;
}

export interface OlderRecord extends Omit<OlderInput, 'summary'> {
  id: string;
  summary32: string;
  createdAt: string;
  manifestPath: string;
}

export interface OlderQuery {
  domain: string;
  limit: number;
  minReward?: number;
  taskId?: string;
}

const LOG_FILE = 'experiences.jsonl';
const STAMP = /^[0-9a-fA-F]{64}$/;
const LOCK_ATTEMPTS = 5;
const LOCK_DELAY_MS = 100;

export class OlderExperienceStore {
  readonly outDir: string;
  readonly runsDir: string;

  constructor(options: { outDir?: string; runsDir?: string } = {}) {
    this.outDir = path.resolve(options.outDir ?? 'out');
    this.runsDir = path.resolve(options.runsDir ?? '.runs');
  }

  async fetchTop(q: OlderQuery): Promise<OlderRecord[]> {
    const domain = q.domain.trim();
    if (domain === '' || q.limit <= 0) return [];
    const taskIds = q.taskId !== undefined ? [q.taskId] : await this.#taskIds();
    const matches: OlderRecord[] = [];
    for (const taskId of taskIds) await scanLog(path.join(this.outDir, taskId, LOG_FILE), domain, q.minReward, matches);
    return matches.sort(compareOlder).slice(0, q.limit);
  }

  async recordBatch(inputs: OlderInput[], manifestPath: string): Promise<OlderRecord[]> {
    if (inputs.length === 0) return [];
    const taskId = inputs[0]!.taskId;
    inputs.forEach((input, i) => {
      if (input.taskId !== taskId) throw new Error(`inputs[${i}].taskId differs from inputs[0].taskId`);
      if (!STAMP.test(input.stampSignature)) throw new Error(`inputs[${i}].stampSignature must be 64 hex characters`);
      if (input.domain.trim() === '') throw new Error(`inputs[${i}].domain must not be empty`);
    });
    const now = new Date();
    const records = inputs.map((input): OlderRecord => ({
      id: `exp-${now.getTime().toString(36)}-${randomBytes(3).toString('hex')}`,
      runId: input.runId,
      taskId,
      epoch: input.epoch,
      groupId: input.groupId,
      summary32: input.summary.split(/\s+/).filter(Boolean).slice(0, 32).join(' '),
      reward: { gtScore: finite(input.reward.gtScore), relativeRank: finite(input.reward.relativeRank) },
      toolStats: input.toolStats.map((s) => ({ tool: s.tool, tokens: finite(s.tokens), latencyMs: finite(s.latencyMs), costUsd: finite(s.costUsd) })),
      stampSignature: input.stampSignature,
      domain: input.domain.trim(),
      createdAt: now.toISOString(),
      manifestPath,
    }));
    const payload = records.map((r) => `${JSON.stringify(r)}\n`).join('');
    const lockPath = path.join(this.runsDir, `${taskId}.experiences.lock`);
    await acquireLock(lockPath);
    try {
      await appendFile(path.join(this.outDir, taskId, LOG_FILE), payload);
    } finally {
      await unlink(lockPath);
    }
    return records;
  }

  async #taskIds(): Promise<string[]> {
    try {
      return (await readdir(this.outDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return [];
    }
  }
}

async function scanLog(logPath: string, domain: string, minReward: number | undefined, out: OlderRecord[]): Promise<void> {
  const input = createReadStream(logPath);
  const missing = new Promise<boolean>((resolve) => {
    input.once('error', () => resolve(true));
    input.once('open', () => resolve(false));
  });
  if (await missing) return;
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    let record: OlderRecord;
    try {
      record = JSON.parse(line) as OlderRecord;
    } catch {
      continue;
    }
    if (record === null || typeof record !== 'object' || record.domain !== domain || typeof record.reward !== 'object') continue;
    if (minReward !== undefined && score(record) < minReward) continue;
    out.push(record);
  }
}

async function acquireLock(lockPath: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await (await open(lockPath, 'wx')).close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= LOCK_ATTEMPTS) throw err;
      await sleep(LOCK_DELAY_MS * 2 ** (attempt - 1));
    }
  }
}

const score = (r: OlderRecord): number => r.reward.gtScore + r.reward.relativeRank;
const finite = (n: number): number => (Number.isFinite(n) ? n : 0);

export function compareOlder(a: OlderRecord, b: OlderRecord): number {
  const sa = score(a);
  const sb = score(b);
  if (sa !== sb) return sa > sb ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
