/**
 * The README's library example is the first code a new user runs: run it as
 * written (against the built package) and check it prints what it claims.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, expect } from 'vitest';
import { ensureBuilt, PACKAGE_ENTRY, ROOT } from './support/build.js';
import { test } from './support/temp-dir.js';

const root = ROOT;
const entry = PACKAGE_ENTRY;

beforeAll(() => ensureBuilt(), 120_000);

function libraryExample(): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Library'));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('README has no ```ts block under "## Library"');
  return match[1]!;
}

test('the README library example runs as written and prints an injection and an index hit', ({ dir }) => {
  const code = libraryExample().replace("from 'experience-store'", `from '${pathToFileURL(entry).href}'`);
  const file = path.join(dir, 'example.mjs');
  writeFileSync(file, code);
  const stdout = execFileSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' });
  expect(stdout).toMatch(/\[exp exp-[0-9a-z]+-[0-9a-f]{6} \| epoch 3 \| reward 1\.50\] Replaced the hand-rolled retry loop/);
  expect(stdout).toContain('(stats: shell: 1840t/0.012usd/2310ms)');
  expect(stdout).toMatch(/indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0/);
  expect(existsSync(path.join(dir, 'out/checkout-service/experiences.top.json'))).toBe(true);
});
