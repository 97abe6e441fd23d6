import type { Reporter, TestCase } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * Lists every skipped test with its reason after the summary: the default
 * reporter shows a skipped test only in a file that failed, so a skip (say, a
 * permission test that cannot bind as root) would otherwise go unexplained.
 * A reason is the note of `skip(note)`; tests without one say so.
 */
function skipReasons(): Reporter {
  const skipped: string[] = [];
  return {
    onTestCaseResult(test: TestCase) {
      const result = test.result();
      if (result.state !== 'skipped') return;
      const reason = result.note ?? `no reason given (${test.options.mode})`;
      skipped.push(`  ↓ ${test.module.moduleId.replace(`${process.cwd()}/`, '')} > ${test.fullName}: ${reason}`);
    },
    onTestRunEnd() {
      if (skipped.length > 0) process.stdout.write(`\nSkipped tests, and why:\n${skipped.join('\n')}\n`);
    },
  };
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Crash and concurrency tests spawn real processes; give them room on 2 cores.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One test file at a time, each in a fresh fork (isolate, the default): memory
    // stays at vitest itself + one worker + the children a test spawns, on any
    // machine (the default, one worker per core but one, is also 1 on 2 cores).
    // isolate: false was measured and rejected: one long-lived worker keeps every
    // file's modules and state, and the run peaked ~100 MB higher.
    maxWorkers: 1,
    reporters: ['default', skipReasons()],
  },
});
