#!/usr/bin/env node
/**
 * `npm run lint:package`: pack the package as `npm publish` would (prepack
 * cleans dist/, prepare builds it), then check the tarball as a consumer gets it:
 *
 * 1. publint (package.json fields against the files that ship), strict;
 * 2. arethetypeswrong (the types each resolution mode finds), ESM-only profile:
 *    a CommonJS consumer reaches the package through require(esm), see below;
 * 3. a TypeScript consumer without @types/node (skipLibCheck off) compiles
 *    against the packed declarations, as ESM (nodenext) and with a bundler;
 * 4. `require('experience-store')` from a CommonJS consumer: it works where Node
 *    can require ES modules (>= 20.19, >= 22.12), and fails with ERR_REQUIRE_ESM
 *    (a message that says to use import()) where it cannot (20.17, 20.18).
 *
 * Everything happens in a temporary directory, removed at the end.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'node_modules', '.bin');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const work = mkdtempSync(path.join(os.tmpdir(), 'experience-store-lint-package-'));
let failed = false;

function step(title, file, args, options = {}) {
  console.log(`\n$ ${[path.basename(file), ...args].join(' ')}${options.cwd ? `   # in ${path.relative(work, options.cwd) || '.'}` : ''}`);
  const result = spawnSync(file, args, { stdio: 'inherit', cwd: ROOT, ...options });
  if (result.status !== 0) {
    console.error(`lint:package: ${title} failed (exit ${result.status ?? result.signal})`);
    failed = true;
  }
}

try {
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  const tarball = path.join(work, packed[0].filename);
  console.log(`packed ${packed[0].filename}: ${packed[0].entryCount} files, ${packed[0].size} bytes`);

  step('publint', path.join(BIN, 'publint'), ['run', tarball, '--strict']);
  step('arethetypeswrong', path.join(BIN, 'attw'), [tarball, '--profile', 'esm-only', '--no-color']);

  // A consumer project: the tarball unpacked as node_modules/experience-store,
  // its dependencies linked from ours, and no @types/node anywhere it looks.
  const consumer = path.join(work, 'consumer');
  const installed = path.join(consumer, 'node_modules', pkg.name);
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(consumer, 'node_modules', dep), 'dir');
  }
  writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  writeFileSync(
    path.join(consumer, 'consumer.ts'),
    [
      "import { ExperienceStore, ExperienceStoreError, formatExperienceInjections, type ExperienceRecord, type TaskReport } from 'experience-store';",
      "const store = new ExperienceStore({ outDir: 'out', indexTopK: 8, scanBudget: { maxLines: 1000 } });",
      "const records: ExperienceRecord[] = await store.fetchTop({ domain: 'review', limit: 3 });",
      'const lines: string[] = formatExperienceInjections(records, 3);',
      'const reports: TaskReport[] = await store.verify();',
      "const selected = await store.selectTop({ domain: 'review', limit: 3 }, { diagnostics: 'full' });",
      "export const summary = [lines.length, reports.every((r) => r.ok), selected.diagnostics.candidate_count, new ExperienceStoreError('EXP_IO', 'x').code];",
      '',
    ].join('\n'),
  );
  // types: [] and skipLibCheck: false: every declaration the package ships is
  // checked, and none may lean on @types/node (NodeJS.*, Buffer, node:*).
  const compilerOptions = { noEmit: true, strict: true, skipLibCheck: false, types: [], target: 'es2022', lib: ['es2022'] };
  for (const [name, resolution] of [['nodenext', { module: 'nodenext', moduleResolution: 'nodenext' }], ['bundler', { module: 'esnext', moduleResolution: 'bundler' }]]) {
    writeFileSync(path.join(consumer, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { ...compilerOptions, ...resolution }, files: ['consumer.ts'] }));
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    step(`TypeScript consumer (${name}, no @types/node)`, process.execPath, [tsc, '-p', `tsconfig.${name}.json`], { cwd: consumer });
  }

  // require() from CommonJS, on this Node, and as Node 20.17/20.18 (no require(esm)) behave.
  const probe = "const m = require('experience-store'); console.log('require() works:', typeof m.ExperienceStore);";
  const here = spawnSync(process.execPath, ['-e', probe], { cwd: consumer, encoding: 'utf8' });
  console.log(`\n$ node -e "require('experience-store')"   # Node ${process.version}`);
  process.stdout.write(here.stdout + here.stderr.split('\n').filter((l) => !/ExperimentalWarning|--trace-warnings/.test(l)).join('\n'));
  const [major, minor] = process.versions.node.split('.').map(Number);
  const canRequireEsm = major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
  if (canRequireEsm && here.status !== 0) {
    console.error('lint:package: require() failed on a Node that can require ES modules');
    failed = true;
  }
  if (canRequireEsm) {
    const old = spawnSync(process.execPath, ['--no-experimental-require-module', '-e', probe], { cwd: consumer, encoding: 'utf8' });
    console.log(`\n$ node --no-experimental-require-module -e "require('experience-store')"   # as on Node 20.17 / 20.18`);
    console.log(old.stderr.split('\n').find((l) => /^Error|ERR_REQUIRE_ESM/.test(l)) ?? old.stderr);
    if (!/ERR_REQUIRE_ESM|require\(\) of ES Module/.test(old.stderr)) {
      console.error('lint:package: without require(esm), require() should fail with ERR_REQUIRE_ESM');
      failed = true;
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (failed) process.exitCode = 1;
else console.log('\nlint:package: ok');
