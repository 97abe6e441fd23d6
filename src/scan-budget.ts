/**
 * Scan budgets: how many log lines and bytes one fetch may read, across all the
 * tasks it reads. From the `scanBudget` option, else the environment variables
 * CODEX_EXPERIENCE_FETCH_MAX_LINES / CODEX_EXPERIENCE_FETCH_MAX_BYTES, else unlimited.
 */
import { ExperienceStoreError } from './errors.js';
import type { ReadBudget } from './line-reader.js';

export interface ScanBudget {
  maxLines?: number;
  maxBytes?: number;
}

export const MAX_LINES_ENV = 'CODEX_EXPERIENCE_FETCH_MAX_LINES';
export const MAX_BYTES_ENV = 'CODEX_EXPERIENCE_FETCH_MAX_BYTES';

/** Resolve the budget once, at construction: a bad value fails early, naming where it came from. */
export function resolveScanBudget(option: ScanBudget | undefined, env: Record<string, string | undefined> = process.env): ScanBudget {
  return {
    maxLines: option?.maxLines !== undefined ? checkOption('scanBudget.maxLines', option.maxLines) : fromEnv(env, MAX_LINES_ENV),
    maxBytes: option?.maxBytes !== undefined ? checkOption('scanBudget.maxBytes', option.maxBytes) : fromEnv(env, MAX_BYTES_ENV),
  };
}

/** A fresh allowance for one fetch. */
export function budgetForFetch(budget: ScanBudget): ReadBudget {
  return { linesLeft: budget.maxLines ?? Infinity, bytesLeft: budget.maxBytes ?? Infinity };
}

function fromEnv(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  // Decimal digits only ("007" is 7): "1e3", "0x10", " 5" and "-5" are typos more often than intent.
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(Number(raw)) || Number(raw) === 0) {
    throw new ExperienceStoreError(
      'EXP_BAD_ENV',
      `${name} must be a positive decimal integer, got ${JSON.stringify(raw)}; fix or unset it`,
    );
  }
  return Number(raw);
}

function checkOption(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
