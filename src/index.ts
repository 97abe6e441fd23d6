export { ExperienceStore } from './store.js';
export type {
  ExperienceStoreOptions,
  FetchQuery,
  FetchResult,
  FetchStats,
  RebuildProgress,
  RebuildResult,
} from './store.js';
export { ExperienceStoreError, ExperienceStoreLockError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { compareRecords, score } from './record.js';
export type { ExperienceInput, ExperienceRecord, ToolStat } from './record.js';
export { collectPromptPackExperiences, formatExperienceInjections } from './prompt-pack.js';
export type {
  CollectPromptPackOptions,
  ExperienceSource,
  PromptPack,
  PromptPackExperiences,
} from './prompt-pack.js';
export type { ScanBudget } from './scan-budget.js';
export type { LockRetry } from './lock.js';
