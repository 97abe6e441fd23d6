/**
 * A vitest fixture giving each test its own real temporary directory, removed
 * afterwards. Core file-system paths are tested here, never on fs mocks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test as base } from 'vitest';

export interface TempDirFixture {
  /** A fresh directory for this test. */
  dir: string;
}

export const test = base.extend<TempDirFixture>({
  // eslint-disable-next-line no-empty-pattern
  dir: async ({}, use) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'experience-store-test-'));
    try {
      await use(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
});
