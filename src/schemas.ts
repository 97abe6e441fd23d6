/**
 * The zod schemas: the source of truth for what `recordBatch` accepts and what a
 * log line must be to count as a record. They are not on the hot paths: zod's
 * module graph costs a fresh process ~100 ms to load, more than a whole indexed
 * fetch, so the library checks with the hand-written guards of record.ts
 * (isExperienceInput, isExperienceRecord), which test/record.test.ts proves
 * agree with these schemas on random values, and loads this module only to
 * explain a rejected input, field by field.
 */
import { z } from 'zod';
import { STAMP_PATTERN, taskIdOrLengthProblem } from './record.js';

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
    const problem = taskIdOrLengthProblem(ctx.value);
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
      const got = ctx.value.length === 0 ? 'an empty string' : `${ctx.value.length} character(s)`;
      ctx.issues.push({ code: 'custom', message: `must be 64 hex characters, got ${got}`, input: ctx.value });
    }
  }),
  domain: z.string({ error: 'must be a string' }).check((ctx) => {
    if (ctx.value.trim() === '') ctx.issues.push({ code: 'custom', message: 'must not be empty', input: ctx.value });
  }),
});

// Log lines: types only. Formats (id, stamp, ISO date) are not checked, so that
// records written by any older writer stay readable. Unknown fields are kept.
const FiniteNumber = z.number();
export const ToolStat = z.looseObject({
  tool: z.string(),
  tokens: FiniteNumber,
  latencyMs: FiniteNumber,
  costUsd: FiniteNumber,
});

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

/** The first problem zod finds in `input`, as `<path> <message>` relative to `inputs[i]`. */
export function explainInput(input: unknown, i: number): string | undefined {
  const result = ExperienceInput.safeParse(input);
  if (result.success) return undefined;
  const issue = result.error.issues[0]!;
  let field = `inputs[${i}]`;
  for (const part of issue.path) field += typeof part === 'number' ? `[${part}]` : `.${String(part)}`;
  return `${field} ${issue.message}`;
}
