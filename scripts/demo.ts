/**
 * `npm run demo`: make a sample store of 100k records in a temp directory, fetch
 * one domain through the index and by a full scan, and show that both answers
 * are equal and how long each took.
 *
 *   node dist/scripts/demo.js [--records N] [--domain D] [--limit N]
 */
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { DOMAINS, logBlocks, REPO_ROOT } from '../bench/dataset.js';
import { formatBytes, wantsColor } from '../src/cli/io.js';
import { ExperienceStore, score, type ExperienceRecord } from '../src/index.js';
import { taskPaths } from '../src/paths.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    domain: { type: 'string', default: 'debugging' },
    limit: { type: 'string', default: '5' },
  },
  strict: true,
});
const records = Number(values.records);
const limit = Number(values.limit);
const domain = values.domain;
if (!Number.isSafeInteger(records) || records <= 0 || !Number.isSafeInteger(limit) || limit <= 0) {
  console.error('demo: --records and --limit must be positive integers');
  process.exit(2);
}

const color = wantsColor(process.stdout, process.env);
const paint = (code: string) => (text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
const bold = paint('1');
const dim = paint('2');
const green = paint('32');
const red = paint('31');
const cyan = paint('36');

const root = mkdtempSync(path.join(os.tmpdir(), 'experience-store-demo-'));
const outDir = path.join(root, 'out');
const runsDir = path.join(root, 'runs');
const TASK = 'demo-task';
const paths = taskPaths(outDir, runsDir, TASK);

console.log(bold('experience-store demo'));
console.log(dim(`A log of ${records.toLocaleString('en-US')} experiences in ${DOMAINS.length} domains; the top ${limit} of "${domain}", two ways.\n`));

// 1. The log, as an orchestrator would have written it over time.
let start = performance.now();
mkdirSync(paths.dir, { recursive: true });
const out = createWriteStream(paths.log);
for (const block of logBlocks(records, 42, undefined, TASK)) {
  if (!out.write(block)) await once(out, 'drain');
}
out.end();
await once(out, 'close');
step('wrote the log', formatBytes(out.bytesWritten), performance.now() - start);

// 2. The sidecar index: the top K of every domain, built once by a full scan.
start = performance.now();
const built = await new ExperienceStore({ outDir, runsDir }).rebuildIndex(TASK);
step('built the index', `${built.records.toLocaleString('en-US')} records read, top 16 kept per domain`, performance.now() - start);

// 3. The same question, two ways.
const query = { domain, limit, taskId: TASK };
const scanner = new ExperienceStore({ outDir, runsDir, useIndex: false });
start = performance.now();
const scanned = await scanner.fetchTopDetailed(query);
const scanMs = performance.now() - start;

// A fresh store per call, as a newly started orchestrator run would have: the index is read from disk.
const coldTimes: number[] = [];
let indexed = await new ExperienceStore({ outDir, runsDir }).fetchTopDetailed(query);
for (let i = 0; i < 200; i++) {
  const store = new ExperienceStore({ outDir, runsDir });
  start = performance.now();
  indexed = await store.fetchTopDetailed(query);
  coldTimes.push(performance.now() - start);
}
const coldMs = median(coldTimes);
const hot = new ExperienceStore({ outDir, runsDir });
await hot.fetchTop(query);
const hotTimes: number[] = [];
for (let i = 0; i < 200; i++) {
  start = performance.now();
  await hot.fetchTop(query);
  hotTimes.push(performance.now() - start);
}
const hotMs = median(hotTimes);
const logAgeMs = Date.now() - statSync(paths.log).mtimeMs;

console.log('');
printTop(`Through the index ${dim(`(${indexed.stats.indexHits} index hit, ${indexed.stats.bytesRead} log bytes read)`)}`, indexed.records);
printTop(
  `By full scan ${dim(`(${scanned.stats.linesRead.toLocaleString('en-US')} lines, ${formatBytes(scanned.stats.bytesRead)} read)`)}`,
  scanned.records,
);

const equal = isDeepStrictEqual(indexed.records, scanned.records);
console.log(equal ? green(bold('✔ Both answers are equal, record for record.')) : red(bold('✘ The answers differ: please report this.')));
console.log('');
console.log(bold('Time per fetch'));
console.log(`  full scan                        ${pad(formatMs(scanMs))}`);
console.log(`  index, new store (cold, median)  ${pad(formatMs(coldMs))}  ${cyan(`${Math.round(scanMs / coldMs).toLocaleString('en-US')}x faster`)}`);
console.log(`  index, same store (hot, median)  ${pad(formatMs(hotMs))}  ${cyan(`${Math.round(scanMs / hotMs).toLocaleString('en-US')}x faster`)}`);
if (logAgeMs < 2_000) {
  console.log(dim(`  (the log was written ${(logAgeMs / 1000).toFixed(1)} s ago: within 2 s of a write, a hot fetch also re-reads`));
  console.log(dim('   4 KiB of it to confirm the index; see docs/index-format.md and docs/benchmarks.md)'));
}
console.log('');
console.log(bold('The store lives in'));
console.log(`  ${root}`);
console.log(dim(`  log    ${path.relative(root, paths.log)}`));
console.log(dim(`  index  ${path.relative(root, paths.index)}`));
if (existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'bin.js'))) {
  console.log(bold('\nLook around'));
  console.log(`  npx experience-store stats --out ${outDir}`);
  console.log(`  npx experience-store top --out ${outDir} --domain ${domain}`);
}
console.log(dim(`\nRemove it with: rm -rf ${root}`));
if (!equal) process.exitCode = 1;

function printTop(title: string, top: ExperienceRecord[]): void {
  console.log(bold(title));
  top.forEach((r, i) => {
    const summary = r.summary32.length > 72 ? `${r.summary32.slice(0, 71)}…` : r.summary32;
    console.log(`  ${i + 1}. ${cyan(score(r).toFixed(4))}  ${r.id}  ${dim(r.createdAt.slice(0, 10))}  ${summary}`);
  });
  console.log('');
}

function step(what: string, detail: string, ms: number): void {
  console.log(`${green('✔')} ${what.padEnd(16)} ${detail} ${dim(`(${formatMs(ms)})`)}`);
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function formatMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function pad(s: string): string {
  return s.padStart(9);
}
