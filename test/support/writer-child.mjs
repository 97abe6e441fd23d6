/**
 * A writer process for the crash and concurrency tests, run by spawn-child.ts
 * with the config as JSON in argv[2] (its shape: ChildConfig in spawn-child.ts).
 * Plain JavaScript, so node runs it as is: nothing is compiled at test time.
 * It uses the BUILT package, as a separately started orchestrator would.
 *
 * - `store`: recordBatch in a loop (forever, or `batches` times), printing each
 *   record id on stdout only after its batch resolved: a printed id is an
 *   acknowledged record.
 * - `older-writer`: what an older writer does when it is killed mid-append: take
 *   the lock file with O_EXCL (optionally), append part of a line, print
 *   "holding", then wait to be killed.
 */
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const DOMAINS = ['implementation', 'review', 'testing'];
const REWARDS = [0, 0.25, 0.5, 0.75, 1];

function pick(values) {
  return values[Math.floor(Math.random() * values.length)];
}

function input(config, n) {
  return {
    runId: `${config.name}-run-${n}`,
    taskId: config.taskId,
    epoch: n,
    groupId: config.name,
    summary: `${config.name} batch record ${n} `.repeat(8),
    reward: { gtScore: pick(REWARDS), relativeRank: pick(REWARDS) },
    toolStats: [{ tool: 'shell', tokens: n, latencyMs: 12.5, costUsd: 0.002 }],
    stampSignature: 'cd'.repeat(32),
    domain: pick(DOMAINS),
  };
}

async function runStoreWriter(config) {
  const { ExperienceStore } = await import(pathToFileURL(config.entry).href);
  const store = new ExperienceStore({
    outDir: config.outDir,
    runsDir: config.runsDir,
    lockRetry: config.lockRetry,
    maxSummaryWords: 64,
  });
  if (config.goFile !== undefined) {
    process.stdout.write('ready\n');
    while (!existsSync(config.goFile)) await new Promise((resolve) => setTimeout(resolve, 2));
  }
  let n = 0;
  for (let batch = 0; config.batches === null || batch < config.batches; batch++) {
    const isBig = config.bigEvery !== undefined && Math.random() * config.bigEvery < 1;
    const size = isBig ? (config.bigRecords ?? 300) : 1 + Math.floor(Math.random() * config.maxRecords);
    const inputs = Array.from({ length: size }, () => input(config, n++));
    const records = await store.recordBatch(inputs, `${config.name}/manifest.json`);
    // Pipes are written synchronously on Linux: once this returns, the parent can read it.
    process.stdout.write(records.map((r) => `${r.id}\n`).join(''));
    if (config.pauseMs) await new Promise((resolve) => setTimeout(resolve, Math.random() * config.pauseMs));
  }
}

function runOlderWriter(config) {
  if (config.lockPath !== undefined) {
    mkdirSync(path.dirname(config.lockPath), { recursive: true });
    const fd = openSync(config.lockPath, 'wx');
    writeSync(fd, JSON.stringify({ pid: process.pid, writer: 'older' }));
    closeSync(fd);
  }
  mkdirSync(path.dirname(config.logPath), { recursive: true });
  appendFileSync(config.logPath, config.text);
  process.stdout.write('holding\n');
  setInterval(() => undefined, 60_000); // until SIGKILL
}

const config = JSON.parse(process.argv[2]);
if (config.mode === 'store') await runStoreWriter(config);
else runOlderWriter(config);
