/** Checking what callers pass to fetches: a bad query is the caller's error, named precisely. */
import { ExperienceStoreError } from './errors.js';
import { taskIdProblem } from './paths.js';

export interface FetchQuery {
  domain: string;
  limit: number;
  minReward?: number;
  taskId?: string;
}

export function checkTaskId(field: string, taskId: unknown): string {
  if (typeof taskId !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} must be a string`);
  const problem = taskIdProblem(taskId);
  if (problem) throw new ExperienceStoreError('EXP_INVALID_INPUT', `${field} ${problem}`);
  return taskId;
}

/** The query with its domain trimmed and its limit a whole number. */
export function checkQuery(query: FetchQuery): FetchQuery {
  if (typeof query !== 'object' || query === null) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', 'query must be an object { domain, limit, minReward?, taskId? }');
  }
  if (typeof query.domain !== 'string') throw new ExperienceStoreError('EXP_INVALID_INPUT', 'query.domain must be a string');
  if (typeof query.limit !== 'number' || Number.isNaN(query.limit)) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.limit must be a number, got ${String(query.limit)}`);
  }
  if (query.minReward !== undefined && (typeof query.minReward !== 'number' || Number.isNaN(query.minReward))) {
    throw new ExperienceStoreError('EXP_INVALID_INPUT', `query.minReward must be a number, got ${String(query.minReward)}`);
  }
  return {
    domain: query.domain.trim(),
    limit: Math.floor(query.limit),
    minReward: query.minReward,
    taskId: query.taskId === undefined ? undefined : checkTaskId('query.taskId', query.taskId),
  };
}
