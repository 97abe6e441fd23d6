/**
 * experience-store: an append-only JSONL log of "experiences" per task, with a
 * sidecar index that answers the best records of a domain (plain, or spread
 * across sources by competitive selection) without rescanning the log.
 */
export { ExperienceStore } from './store.js';
export type { ExperienceStoreOptions, FetchQuery, FetchResult, FetchStats, RebuildProgress, RebuildResult, SelectResult } from './store.js';
export { ExperienceStoreError, ExperienceStoreLockError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { compareRecords, score } from './record.js';
export type { ExperienceInput, ExperienceRecord, ExperienceReward, ToolStat, ToolStat as ExperienceToolStat } from './record.js';
export { collectPromptPackExperiences, formatExperienceInjections } from './prompt-pack.js';
export type { CollectPromptPackOptions, ExperienceSource, PromptPack, PromptPackExperiences } from './prompt-pack.js';
export type {
  ExperienceExclusionReason,
  ExperienceSelectionCandidate,
  ExperienceSelectionDiagnostics,
  ExperienceSelectionEntry,
  ExperienceSelectionPolicy,
  ExperienceSelectionPolicyInput,
  ExperienceSelectionResult,
  ExperienceSourceKind,
  SelectOptions,
  SelectQuery,
} from './selection.js';
export type { IndexReport, IndexStateKind, Problem, StatsOptions, TaskReport, TaskStats, VerifyOptions } from './inspect.js';
export type { ScanBudget } from './scan-budget.js';
export type { LockRetry } from './lock.js';
