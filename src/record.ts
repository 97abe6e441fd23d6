/**
 * Records: the input schema `recordBatch` accepts, the record schema a log line
 * must match, and the one ranking every path (index, tail, full scan) shares.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ExperienceStoreError } from './errors.js';
import { taskIdProblem } from './paths.js';

// Input numbers may be NaN or ±Infinity (they become 0); only the type is checked here.
const AnyNumber = z.custom<number>((v) => typeof v === 'number', { error: 'must be a number' });

export const ToolStatInput = z.object({
  tool: z.string({ error: 'must be a string' }),
  tokens: AnyNumber,
  latencyMs: AnyNumber,
  costUsd: AnyNumber,
});

export const ExperienceInput = z.object({
  runId: z.string({ error: 'must be a string' }),
  taskId: z.string({ error: 'must be a string' }).check((ctx) => {
    const problem = taskIdProblem(ctx.value);
    if (problem) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value });
  }),
  epoch: z.union([AnyNumber, z.null()], { error: 'must be a number or null' }),
  groupId: z.union([z.string(), z.null()], { error: 'must be a string or null' }),
  summary: z.string({ error: 'must be a string' }),
  reward: z.object(
    { gtScore: AnyNumber, relativeRank: AnyNumber },
    { error: 'must be an object { gtScore, relativeRank }' },
  ),
  toolStats: z.array(ToolStatInput, { error: 'must be an array of { tool, tokens, latencyMs, costUsd }' }),
  stampSignature: z.string({ error: 'must be a string' }).check((ctx) => {
    if (!STAMP_PATTERN.test(ctx.value)) {
      ctx.issues.push({
        code: 'custom',
        message: `must be 64 hex characters, got ${describeString(ctx.value)}`,
        input: ctx.value,
      });
    }
  }),
  domain: z.string({ error: 'must be a string' }).check((ctx) => {
    if (ctx.value.trim() === '') ctx.issues.push({ code: 'custom', message: 'must not be empty', input: ctx.value });
  }),
});
export type ExperienceInput = z.input<typeof ExperienceInput>;

// Log lines: types only. Formats (id, stamp, ISO date) are not checked, so that
// records written by any older writer stay readable. Unknown fields are kept.
const FiniteNumber = z.number();
export const ToolStat = z.looseObject({
  tool: z.string(),
  tokens: FiniteNumber,
  latencyMs: FiniteNumber,
  costUsd: FiniteNumber,
});
export type ToolStat = z.infer<typeof ToolStat>;

export const ExperienceRecord = z.looseObject({
  id: z.string(),
  runId: z.string(),
  taskId: z.string(),
  epoch: FiniteNumber.nullable(),
  groupId: z.string().nullable(),
  summary32: z.string(),
  reward: z.looseObject({ gtScore: FiniteNumber, relativeRank: FiniteNumber }),
  toolStats: z.array(ToolStat),
  stampSignature: z.string(),
  domain: z.string().min(1),
  createdAt: z.string(),
  manifestPath: z.string(),
});
export type ExperienceRecord = z.infer<typeof ExperienceRecord>;

const STAMP_PATTERN = /^[0-9a-fA-F]{64}$/;

function describeString(value: string): string {
  return value.length === 0 ? 'an empty string' : `${value.length} character(s)`;
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

/**
 * A deep copy of JSON data, which records are (parsed from log or index lines):
 * five times faster than structuredClone, which a hot fetch would otherwise
 * spend most of its time in. An own "__proto__" key stays an own key.
 */
export function cloneJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(cloneJson) as T;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const copy = cloneJson((value as Record<string, unknown>)[key]);
    if (key === '__proto__') Object.defineProperty(out, key, { value: copy, enumerable: true, writable: true, configurable: true });
    else out[key] = copy;
  }
  return out as T;
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
 * Validate a whole batch before anything is written. Throws EXP_INVALID_INPUT
 * naming the first bad field, e.g. `inputs[2].stampSignature must be 64 hex
 * characters, got 63 character(s); nothing was written`.
 */
export function validateBatch(inputs: unknown): z.output<typeof ExperienceInput>[] {
  if (!Array.isArray(inputs)) {
    throw invalidInput('inputs must be an array of experience inputs');
  }
  const parsed: z.output<typeof ExperienceInput>[] = [];
  for (let i = 0; i < inputs.length; i++) {
    const input: unknown = inputs[i];
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalidInput(`inputs[${i}] must be an object`);
    }
    const result = ExperienceInput.safeParse(input);
    if (!result.success) {
      const issue = result.error.issues[0]!;
      const field = formatPath(['inputs', i, ...issue.path]);
      throw invalidInput(`${field} ${issue.message}`);
    }
    parsed.push(result.data);
  }
  const first = parsed[0]?.taskId;
  const other = parsed.findIndex((p) => p.taskId !== first);
  if (other > 0) {
    throw invalidInput(
      `inputs[${other}].taskId is "${parsed[other]!.taskId}" but inputs[0].taskId is "${first}": one batch must belong to one task`,
    );
  }
  return parsed;
}

function invalidInput(message: string): Error {
  return new ExperienceStoreError('EXP_INVALID_INPUT', `${message}; nothing was written`);
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

export interface NormalizeOptions {
  maxSummaryWords: number;
  now: Date;
  manifestPath: string;
}

/** Build the record line shape existing logs hold, from one validated input. */
export function normalizeInput(input: z.output<typeof ExperienceInput>, options: NormalizeOptions): ExperienceRecord {
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

// Ids draw their random part from a pool: one randomBytes call per 1,024 ids,
// where one per id cost a recordBatch of 8 some 30 µs (docs/benchmarks.md).
const ID_POOL_BYTES = 3 * 1024;
let idPool = Buffer.alloc(0);
let idPoolAt = 0;

/** `exp-<base36 ms>-<6 hex>`, the id format existing logs hold. */
export function newRecordId(now: Date): string {
  if (idPoolAt + 3 > idPool.length) {
    idPool = randomBytes(ID_POOL_BYTES);
    idPoolAt = 0;
  }
  idPoolAt += 3;
  return `exp-${now.getTime().toString(36)}-${idPool.toString('hex', idPoolAt - 3, idPoolAt)}`;
}
