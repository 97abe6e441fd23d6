/** Checking what callers pass to fetches: a bad query is the caller's error, named precisely. */
import { ExperienceStoreError } from './errors.js';
import { taskIdProblem } from './paths.js';
import type { SelectQuery } from './selection.js';

/** A `fetchTop` query. */
export interface FetchQuery {
  /** The domain to read; trimmed before matching. An empty domain gives `[]`. */
  domain: string;
  /** How many records at most; `limit <= 0` gives `[]`. Fractions are floored. */
  limit: number;
  /** Leave out records whose score (gtScore + relativeRank) is below this. */
  minReward?: number;
  /** Read this task only; default every task directory under `outDir`. */
  taskId?: string;
}

/** How a fetch obtained its answer (SPEC `fetchTopDetailed().stats`). */
export interface FetchStats {
  /** Tasks answered from an index (in memory or on disk) without reading log bytes. */
  indexHits: number;
  /** Tasks whose index was caught up by reading only the bytes appended since. */
  tails: number;
  /** Tasks read by a full scan of the log. */
  fullScans: number;
  /** Log bytes read to find records (index bytes and fingerprint checks are not counted). */
  bytesRead: number;
  /** Log lines read, blank ones included. */
  linesRead: number;
}

/** Progress of a rebuild, per chunk read. */
export interface RebuildProgress {
  taskId: string;
  bytesDone: number;
  bytesTotal: number;
  records: number;
}

export function checkTaskId(field: string, taskId: unknown): string {
  if (typeof taskId !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} must be a string`);
  const problem = taskIdProblem(taskId);
  if (problem) throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} ${problem}`);
  return taskId;
}

function checkCommon(query: unknown, shape: string): { domain: string; limit: number; taskId: string | undefined } {
  if (typeof query !== 'object' || query === null) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query must be an object ${shape}`);
  }
  const q = query as Record<string, unknown>;
  if (typeof q.domain !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', 'query.domain must be a string');
  if (typeof q.limit !== 'number' || Number.isNaN(q.limit)) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.limit must be a number, got ${String(q.limit)}`);
  }
  return {
    domain: q.domain.trim(),
    limit: Math.floor(q.limit),
    taskId: q.taskId === undefined ? undefined : checkTaskId('query.taskId', q.taskId),
  };
}

/** The query with its domain trimmed and its limit a whole number. */
export function checkQuery(query: FetchQuery): FetchQuery {
  const common = checkCommon(query, '{ domain, limit, minReward?, taskId? }');
  if (query.minReward !== undefined && (typeof query.minReward !== 'number' || Number.isNaN(query.minReward))) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.minReward must be a number, got ${String(query.minReward)}`);
  }
  return { ...common, minReward: query.minReward };
}

/** A selectTop query checked the same way; `minScore` and `policy` are checked when the policy is resolved. */
export function checkSelectQuery(query: SelectQuery): SelectQuery {
  const common = checkCommon(query, '{ domain, limit, minScore?, taskId?, policy? }');
  return { ...common, minScore: query.minScore, policy: query.policy };
}
