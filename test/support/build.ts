/**
 * Tests that run the built package (CLI, child writers, the README example)
 * call `ensureBuilt` first: it compiles when dist/ is missing or older than a
 * source file (`npm test` builds before the run; `npx vitest run <file>` may not).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PACKAGE_ENTRY = path.join(ROOT, 'dist', 'src', 'index.js');
/** What `import 'experience-store'` resolves to (package.json exports): the bundle of dist/src. */
export const PUBLISHED_ENTRY = path.join(ROOT, 'dist', 'lib', 'index.js');
export const BIN = path.join(ROOT, 'dist', 'src', 'cli', 'bin.js');

export function ensureBuilt(): void {
  if (newestMtimeMs(path.join(ROOT, 'src')) < Math.min(mtimeMs(PACKAGE_ENTRY), mtimeMs(BIN), mtimeMs(PUBLISHED_ENTRY))) return;
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'bundle.mjs')], { cwd: ROOT, stdio: 'inherit' });
}

function mtimeMs(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -Infinity;
  }
}

function newestMtimeMs(dir: string): number {
  let newest = -Infinity;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, mtimeMs(path.join(entry.parentPath, entry.name)));
  }
  return newest;
}
