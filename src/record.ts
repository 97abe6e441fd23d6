/**
 * Records: the input `recordBatch` accepts, the record a log line must be, and
 * the one ranking every path (index, tail, full scan) shares. The checks here
 * are hand-written guards that build no copies; src/schemas.ts holds the zod
 * schemas they are proven to agree with (test/record.test.ts), loaded only to
 * explain a rejected input.
 */
import { ExperienceStoreError } from './errors.js';
import { taskIdProblem } from './paths.js';

/** One tool's usage in a run: tokens spent, latency in milliseconds, cost in US dollars. */
export interface ToolStat {
  tool: string;
  tokens: number;
  latencyMs: number;
  costUsd: number;
  [extra: string]: unknown;
}

/** The reward of a run; a record's score is `gtScore + relativeRank`. */
export interface ExperienceReward {
  gtScore: number;
  relativeRank: number;
  [extra: string]: unknown;
}

/**
 * What a caller passes to `recordBatch`: one run's experience. Numbers may be
 * non-finite (they are stored as 0, a non-finite `epoch` as null).
 */
export interface ExperienceInput {
  runId: string;
  /** The task whose log receives the record: a directory name under `outDir` (at most 128 UTF-8 bytes). */
  taskId: string;
  epoch: number | null;
  groupId: string | null;
  /** Free text; cut to `maxSummaryWords` words, white space collapsed. */
  summary: string;
  reward: { gtScore: number; relativeRank: number };
  toolStats: Array<{ tool: string; tokens: number; latencyMs: number; costUsd: number }>;
  /** 64 hex characters. */
  stampSignature: string;
  /** Non-empty after trim; stored trimmed. */
  domain: string;
}

/**
 * One line of `<outDir>/<taskId>/experiences.jsonl`, as written by `recordBatch`
 * or by older writers. Unknown extra fields are kept and returned.
 */
export interface ExperienceRecord {
  /** `exp-<base36 ms>-<6 hex>` when written by this library (not checked on read). */
  id: string;
  runId: string;
  taskId: string;
  epoch: number | null;
  groupId: string | null;
  /** The summary cut to at most `maxSummaryWords` words. */
  summary32: string;
  reward: ExperienceReward;
  toolStats: ToolStat[];
  stampSignature: string;
  domain: string;
  /** ISO-8601 time of the batch. */
  createdAt: string;
  /** The manifest path passed to `recordBatch`. */
  manifestPath: string;
  [extra: string]: unknown;
}

export const STAMP_PATTERN = /^[0-9a-fA-F]{64}$/;

/**
 * Task ids become a directory name, a lock file name and temp names beside
 * them: at most this many UTF-8 bytes keeps every derived name within NAME_MAX
 * (255 bytes on Linux and macOS). Older directories with longer names are still
 * read; only writers refuse them.
 */
export const MAX_TASK_ID_BYTES = 128;

/** Why `taskId` cannot be written to, or undefined when it can. */
export function taskIdOrLengthProblem(taskId: string): string | undefined {
  const problem = taskIdProblem(taskId);
  if (problem !== undefined) return problem;
  const bytes = Buffer.byteLength(taskId);
  return bytes > MAX_TASK_ID_BYTES ? `must be at most ${MAX_TASK_ID_BYTES} UTF-8 bytes, got ${bytes}` : undefined;
}

/**
 * The same decision as `ExperienceRecord.safeParse(v).success`, without building
 * a copy: a full scan calls it once per log line, where zod's copy costs more
 * than the JSON.parse before it. test/record.test.ts checks the two agree.
 */
export function isExperienceRecord(v: unknown): v is ExperienceRecord {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  if (
    typeof r.id !== 'string' ||
    typeof r.runId !== 'string' ||
    typeof r.taskId !== 'string' ||
    typeof r.summary32 !== 'string' ||
    typeof r.stampSignature !== 'string' ||
    typeof r.domain !== 'string' ||
    r.domain.length === 0 ||
    typeof r.createdAt !== 'string' ||
    typeof r.manifestPath !== 'string' ||
    (r.epoch !== null && !isFiniteNumber(r.epoch)) ||
    (r.groupId !== null && typeof r.groupId !== 'string')
  ) {
    return false;
  }
  const reward = r.reward;
  if (typeof reward !== 'object' || reward === null || Array.isArray(reward)) return false;
  const { gtScore, relativeRank } = reward as Record<string, unknown>;
  if (!isFiniteNumber(gtScore) || !isFiniteNumber(relativeRank)) return false;
  const toolStats = r.toolStats;
  if (!Array.isArray(toolStats)) return false;
  for (const stat of toolStats) {
    if (typeof stat !== 'object' || stat === null || Array.isArray(stat)) return false;
    const s = stat as Record<string, unknown>;
    if (typeof s.tool !== 'string' || !isFiniteNumber(s.tokens) || !isFiniteNumber(s.latencyMs) || !isFiniteNumber(s.costUsd)) {
      return false;
    }
  }
  return true;
}

function isFiniteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** Parse one log line; undefined when it is not a record (counted as malformed by the caller). */
export function parseRecordLine(line: string): ExperienceRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  return isExperienceRecord(value) ? value : undefined;
}

// Plain objects and arrays up to this depth are copied field by field; deeper
// data (any depth is valid JSON) is copied by re-parsing the record's line, so
// no path recurses without bound over record contents.
const MAX_COPY_DEPTH = 32;

/**
 * A copy of `record` that callers may mutate: five times faster than
 * structuredClone for the shallow records logs hold, and exact for any depth
 * (`raw` is the record's own JSON text). An own "__proto__" key stays an own key.
 */
export function copyRecord(record: ExperienceRecord, raw: string): ExperienceRecord {
  const copy = copyJson(record, 0);
  return copy === TOO_DEEP ? (JSON.parse(raw) as ExperienceRecord) : (copy as ExperienceRecord);
}

const TOO_DEEP = Symbol('too deep');

function copyJson(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_COPY_DEPTH) return TOO_DEEP;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = copyJson(value[i], depth + 1);
      if (item === TOO_DEEP) return TOO_DEEP;
      out[i] = item;
    }
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = copyJson((value as Record<string, unknown>)[key], depth + 1);
    if (item === TOO_DEEP) return TOO_DEEP;
    if (key === '__proto__') Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    else out[key] = item;
  }
  return out;
}

export function score(record: ExperienceRecord): number {
  return record.reward.gtScore + record.reward.relativeRank;
}

/**
 * The order of every answer: score descending, then createdAt descending, then id
 * ascending, all by code-unit comparison. Records equal on all three keep log
 * order (every path inserts stably), so duplicates rank the same on every path.
 */
export function compareRecords(a: ExperienceRecord, b: ExperienceRecord): number {
  const sa = score(a);
  const sb = score(b);
  if (sa !== sb) return sa > sb ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

export function verifyStamp(record: { stampSignature?: unknown } | null | undefined): boolean {
  return typeof record?.stampSignature === 'string' && STAMP_PATTERN.test(record.stampSignature);
}

/**
 * The same decision as `ExperienceInput.safeParse(v).success` of src/schemas.ts,
 * without loading zod: a valid batch never pays for it.
 */
export function isExperienceInput(v: unknown): v is ExperienceInput {
  if (!isPlainObject(v)) return false;
  const r = v as Record<string, unknown>;
  if (
    typeof r.runId !== 'string' ||
    typeof r.taskId !== 'string' ||
    taskIdOrLengthProblem(r.taskId) !== undefined ||
    (r.epoch !== null && typeof r.epoch !== 'number') ||
    (r.groupId !== null && typeof r.groupId !== 'string') ||
    typeof r.summary !== 'string' ||
    typeof r.stampSignature !== 'string' ||
    !STAMP_PATTERN.test(r.stampSignature) ||
    typeof r.domain !== 'string' ||
    r.domain.trim() === ''
  ) {
    return false;
  }
  const reward = r.reward;
  if (!isPlainObject(reward)) return false;
  const { gtScore, relativeRank } = reward as Record<string, unknown>;
  if (typeof gtScore !== 'number' || typeof relativeRank !== 'number') return false;
  const toolStats = r.toolStats;
  if (!Array.isArray(toolStats)) return false;
  for (const stat of toolStats) {
    if (!isPlainObject(stat)) return false;
    const s = stat as Record<string, unknown>;
    if (typeof s.tool !== 'string' || typeof s.tokens !== 'number' || typeof s.latencyMs !== 'number' || typeof s.costUsd !== 'number') {
      return false;
    }
  }
  return true;
}

// zod's z.object accepts any non-null, non-array object (class instances included).
function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validate a whole batch before anything is written. Throws EXP_INVALID_INPUT
 * naming the first bad field, e.g. `inputs[2].stampSignature must be 64 hex
 * characters, got 63 character(s); nothing was written`.
 */
export async function validateBatch(inputs: unknown): Promise<ExperienceInput[]> {
  if (!Array.isArray(inputs)) {
    throw invalidInput('inputs must be an array of experience inputs');
  }
  for (let i = 0; i < inputs.length; i++) {
    const input: unknown = inputs[i];
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalidInput(`inputs[${i}] must be an object`);
    }
    if (!isExperienceInput(input)) {
      const { explainInput } = await import('./schemas.js');
      throw invalidInput(explainInput(input, i) ?? `inputs[${i}] is not a valid experience input`);
    }
  }
  const valid = inputs as ExperienceInput[];
  const first = valid[0]?.taskId;
  const other = valid.findIndex((p) => p.taskId !== first);
  if (other > 0) {
    throw invalidInput(
      `inputs[${other}].taskId is "${valid[other]!.taskId}" but inputs[0].taskId is "${first}": one batch must belong to one task`,
    );
  }
  return valid;
}

function invalidInput(message: string): Error {
  return new ExperienceStoreError('EXP_INVALID_INPUT', `${message}; nothing was written`);
}

export interface NormalizeOptions {
  maxSummaryWords: number;
  now: Date;
  manifestPath: string;
}

/** Build the record line shape existing logs hold, from one validated input. */
export function normalizeInput(input: ExperienceInput, options: NormalizeOptions): ExperienceRecord {
  const words = input.summary.split(/\s+/).filter((w) => w !== '');
  return {
    id: newRecordId(options.now),
    runId: input.runId,
    taskId: input.taskId,
    epoch: input.epoch === null || !Number.isFinite(input.epoch) ? null : input.epoch + 0,
    groupId: input.groupId,
    summary32: words.slice(0, options.maxSummaryWords).join(' '),
    reward: { gtScore: finiteOrZero(input.reward.gtScore), relativeRank: finiteOrZero(input.reward.relativeRank) },
    toolStats: input.toolStats.map((s) => ({
      tool: s.tool,
      tokens: finiteOrZero(s.tokens),
      latencyMs: finiteOrZero(s.latencyMs),
      costUsd: finiteOrZero(s.costUsd),
    })),
    stampSignature: input.stampSignature,
    domain: input.domain.trim(),
    createdAt: options.now.toISOString(),
    manifestPath: options.manifestPath,
  };
}

// `+ 0` turns -0 into 0: the log holds JSON, which writes -0 as 0, and the records
// recordBatch returns must equal what a later fetch reads back.
function finiteOrZero(n: number): number {
  return Number.isFinite(n) ? n + 0 : 0;
}

/**
 * `exp-<base36 ms>-<6 hex>`, the id format existing logs hold. Ids need to be
 * unique, not unpredictable: Math.random gives 24 bits as well as a CSPRNG does,
 * without loading node:crypto into a process that only writes one batch.
 */
export function newRecordId(now: Date): string {
  const random = Math.floor(Math.random() * 0x1000000);
  return `exp-${now.getTime().toString(36)}-${random.toString(16).padStart(6, '0')}`;
}
