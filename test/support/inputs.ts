/** Valid ExperienceInput values for tests, with overrides. */
import type { ExperienceInput } from '../../src/index.js';

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
