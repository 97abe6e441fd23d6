import { defineConfig } from 'vitest/config';

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
  },
});
