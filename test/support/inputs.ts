/** Valid ExperienceInput and ExperienceRecord values for tests, with overrides. */
import type { ExperienceInput, ExperienceRecord } from '../../src/index.js';

export const STAMP = 'ab'.repeat(32);

export function makeInput(overrides: Partial<ExperienceInput> = {}): ExperienceInput {
  return {
    runId: 'run-1',
    taskId: 'task-a',
    epoch: 1,
    groupId: null,
    summary: 'fixed the flaky retry loop in the uploader',
    reward: { gtScore: 0.5, relativeRank: 0.25 },
    toolStats: [{ tool: 'shell', tokens: 120, latencyMs: 340.4, costUsd: 0.0123 }],
    stampSignature: STAMP,
    domain: 'implementation',
    ...overrides,
  };
}

/** A valid ExperienceRecord, as a log line holds one, with overrides. */
export function makeRecord(overrides: Partial<ExperienceRecord> = {}): ExperienceRecord {
  return {
    id: 'exp-a',
    runId: 'r',
    taskId: 't',
    epoch: null,
    groupId: null,
    summary32: 'a record',
    reward: { gtScore: 0, relativeRank: 0 },
    toolStats: [],
    stampSignature: STAMP,
    domain: 'd',
    createdAt: '2024-01-01T00:00:00.000Z',
    manifestPath: 'm',
    ...overrides,
  };
}
