/**
 * Writer and holder processes for the lock tests, plain JavaScript run by node
 * (optionally with `--import fs-hooks.mjs`), loading the BUILT package from
 * dist/ as a separately started orchestrator would. Config: JSON in argv[2].
 * Every mode prints one line per event on stdout; the parent reads them.
 * Writers take `goFile` (print "ready", start when it exists) and `pauseMs`
 * (sleep up to that long between batches).
 *
 * - hold:        withTaskLock (dist/src/lock.js); inside, append "start <name>"
 *                to `journal`, print "holding", wait for `goFile` (if given),
 *                append "end <name>"; print "released" after the release.
 *                "failed <code>" and exit 3 when the lock was not taken.
 * - writer:      ExperienceStore.recordBatch in a loop (`batches`, or until
 *                killed), printing each record id once its batch resolved (an
 *                acknowledged record). With `probeFirst`, the first batch is
 *                tried with maxAttempts 1 up to 5 times, `initialDelayMs` apart
 *                (default 100, what the default lockRetry sleeps), and
 *                "first-attempt <n>" is printed: the attempt it succeeded at.
 *                `hookAfterFirst` (fs-hooks.mjs rules) is installed after it.
 * - older-writer: the older design: O_EXCL empty lock file, append, unlink.
 * - orchestrator-writer: the newer orchestrator's protocol: side lock, JSON
 *                owner record written after open, mtime refresh, read-then-rm.
 * - orchestrator-hold: take the lock as the newer orchestrator does, print
 *                "holding", wait to be killed.
 * `fakeHost` makes os.hostname() answer that name: a writer on another host
 * sharing the runs directory.
 *
 * Tests import `spawnLockChild` from this file to start one (with an optional
 * fs-hooks.mjs rule) and `waitForFile` to see a paused child reach its step.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function appendJournal(journal, line) {
  const fd = openSync(journal, 'a');
  try {
    writeSync(fd, `${line}\n`);
  } finally {
    closeSync(fd);
  }
}

/** Resolves once `file` exists (a paused child writes its marker there). */
export async function waitForFile(file) {
  while (!existsSync(file)) await sleep(2);
}

const HOOKS = fileURLToPath(new URL('./fs-hooks.mjs', import.meta.url));
const running = new Set();

/**
 * Start a child in `config.mode`, with `hook` (a fs-hooks.mjs rule or rules)
 * when given. `lines` fills with its stdout lines; `waitForLine(prefix)`
 * resolves with the first line starting with `prefix` (or any of an array of
 * prefixes; rejects if the child exits first); `exited` resolves with { code, signal, stderr }.
 */
export function spawnLockChild(config, hook) {
  const args = hook === undefined ? [] : ['--import', HOOKS];
  const env = { ...process.env, EXP_FS_HOOK: hook === undefined ? '' : JSON.stringify(hook) };
  const child = spawn(process.execPath, [...args, fileURLToPath(import.meta.url), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  running.add(child);
  const lines = [];
  let partial = '';
  let stderr = '';
  let waiters = [];
  const settle = (exited) => {
    waiters = waiters.filter((w) => {
      const line = lines.find((l) => w.prefixes.some((p) => l.startsWith(p)));
      if (line !== undefined) w.resolve(line);
      else if (exited) w.reject(new Error(`child ${config.mode} exited before printing "${w.prefix}": ${stderr}`));
      else return true;
      return false;
    });
  };
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop();
    lines.push(...parts);
    settle(false);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      settle(true);
      resolve({ code, signal, stderr });
    });
  });
  return {
    process: child,
    pid: child.pid,
    lines,
    exited,
    waitForLine: (prefix) => new Promise((resolve, reject) => {
      waiters.push({ prefix, prefixes: Array.isArray(prefix) ? prefix : [prefix], resolve, reject });
      settle(child.exitCode !== null || child.signalCode !== null);
    }),
  };
}

/** SIGKILL children still running (a failed test must not leave one behind). */
export function killLockChildren() {
  for (const child of running) child.kill('SIGKILL');
}

/** A log line in the record shape, so that the store reads foreign appends as records. */
function recordLine(name, n, taskId) {
  return JSON.stringify({
    id: `${name}-${n}`,
    runId: `${name}-run-${n}`,
    taskId,
    epoch: n,
    groupId: name,
    summary32: `${name} record ${n}`,
    reward: { gtScore: (n % 5) / 4, relativeRank: 0.5 },
    toolStats: [],
    stampSignature: 'cd'.repeat(32),
    domain: 'implementation',
    createdAt: new Date().toISOString(),
    manifestPath: `${name}/manifest.json`,
  });
}

function input(name, n, taskId) {
  return {
    runId: `${name}-run-${n}`,
    taskId,
    epoch: n,
    groupId: name,
    summary: `${name} batch record ${n}`,
    reward: { gtScore: (n % 5) / 4, relativeRank: 0.5 },
    toolStats: [{ tool: 'shell', tokens: n, latencyMs: 1, costUsd: 0.001 }],
    stampSignature: 'cd'.repeat(32),
    domain: 'implementation',
  };
}

async function hold(config) {
  const { withTaskLock } = await import(pathToFileURL(config.lockModule).href);
  try {
    await withTaskLock(config.lockPath, config.taskId ?? 'task-a', config.retry, async () => {
      appendJournal(config.journal, `start ${config.name}`);
      process.stdout.write('holding\n');
      if (config.goFile) await waitForFile(config.goFile);
      appendJournal(config.journal, `end ${config.name}`);
    });
  } catch (err) {
    process.stdout.write(`failed ${err.code ?? err.message}\n`);
    process.exitCode = 3;
    return;
  }
  process.stdout.write('released\n');
}

/** With `goFile`: print "ready", start only once it exists, so that writers overlap. */
async function ready(config) {
  if (!config.goFile) return;
  process.stdout.write('ready\n');
  await waitForFile(config.goFile);
}

/** With `pauseMs`: sleep up to that long between batches, so that writers take turns. */
async function pause(config) {
  if (config.pauseMs) await sleep(Math.random() * config.pauseMs);
}

async function writer(config) {
  const { ExperienceStore } = await import(pathToFileURL(config.entry).href);
  const options = { outDir: config.outDir, runsDir: config.runsDir, lockRetry: config.lockRetry };
  const store = new ExperienceStore(options);
  await ready(config);
  let n = 0;
  const batch = () => Array.from({ length: config.records ?? 3 }, () => input(config.name, n++, config.taskId));
  const acknowledge = (records) => process.stdout.write(records.map((r) => `${r.id}\n`).join(''));
  if (config.probeFirst) {
    const once = new ExperienceStore({ ...options, lockRetry: { ...config.lockRetry, maxAttempts: 1 } });
    const inputs = batch();
    for (let attempt = 1; ; attempt++) {
      try {
        const records = await once.recordBatch(inputs, `${config.name}/manifest.json`);
        process.stdout.write(`first-attempt ${attempt}\n`);
        acknowledge(records);
        break;
      } catch (err) {
        if (err.code !== 'EXP_LOCKED' || attempt >= 5) throw err;
        await sleep(config.lockRetry?.initialDelayMs ?? 100);
      }
    }
  }
  if (config.hookAfterFirst) {
    const { installFsHooks } = await import('./fs-hooks.mjs');
    installFsHooks(config.hookAfterFirst);
  }
  for (let b = 0; config.batches === null || b < config.batches; b++) {
    await pause(config);
    acknowledge(await store.recordBatch(batch(), `${config.name}/manifest.json`));
  }
}

async function olderWriter(config) {
  mkdirSync(path.dirname(config.lockPath), { recursive: true });
  mkdirSync(path.dirname(config.logPath), { recursive: true });
  await ready(config);
  let n = 0;
  for (let b = 0; b < config.batches; b++) {
    await pause(config);
    for (;;) {
      try {
        closeSync(openSync(config.lockPath, 'wx'));
        break;
      } catch (err) {
        if (err.code !== 'EEXIST') throw err;
        await sleep(1 + Math.random() * 4);
      }
    }
    const ids = [];
    const lines = Array.from({ length: config.records ?? 3 }, () => {
      ids.push(`${config.name}-${n}`);
      return recordLine(config.name, n++, config.taskId) + '\n';
    });
    await appendLines(config, lines);
    unlinkSync(config.lockPath);
    process.stdout.write(ids.map((id) => `${id}\n`).join(''));
  }
}

/**
 * Append a batch while holding the lock. With `lineDelayMs`, one line at a
 * time with a sleep between: a writer that entered meanwhile would split it.
 */
async function appendLines(config, lines) {
  const fd = openSync(config.logPath, 'a');
  try {
    if (!config.lineDelayMs) return void writeSync(fd, lines.join(''));
    for (const line of lines) {
      writeSync(fd, line);
      await sleep(config.lineDelayMs);
    }
  } finally {
    closeSync(fd);
  }
}

function orchestratorRecord(token, taskId, staleMs) {
  return `${JSON.stringify({
    schema_version: 1,
    kind: 'codex-lock-owner',
    token,
    task_id: taskId,
    pid: process.pid,
    host: os.hostname(),
    acquired_at: new Date().toISOString(),
    stale_ms: staleMs > 0 ? staleMs : null,
  })}\n`;
}

/**
 * The newer orchestrator's exclusive create: open wx+, then write (briefly
 * empty), then refresh the mtime; undefined when the file exists. With `wait`,
 * retry until it is free.
 */
async function orchestratorTake(file, taskId, staleMs, wait = true) {
  for (;;) {
    try {
      const handle = await open(file, 'wx+');
      const token = randomUUID();
      await handle.writeFile(orchestratorRecord(token, taskId, staleMs), 'utf8');
      const timer = setInterval(() => {
        const now = new Date();
        handle.utimes(now, now).catch(() => undefined);
      }, Math.max(10, Math.floor(staleMs / 2)));
      timer.unref();
      return {
        async release() {
          clearInterval(timer);
          await handle.close();
          const current = JSON.parse(await readFile(file, 'utf8'));
          if (current.token === token) await rm(file, { force: true });
        },
      };
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      if (!wait) return undefined;
      await sleep(1 + Math.random() * 4);
    }
  }
}

async function orchestratorWriter(config) {
  mkdirSync(path.dirname(config.lockPath), { recursive: true });
  mkdirSync(path.dirname(config.logPath), { recursive: true });
  await ready(config);
  let n = 0;
  for (let b = 0; b < config.batches; b++) {
    await pause(config);
    // As the orchestrator does: each try holds the side lock, tries the lock once, drops the side lock.
    let lock;
    while (lock === undefined) {
      const side = await orchestratorTake(`${config.lockPath}.acquire`, config.taskId, config.staleMs);
      try {
        lock = await orchestratorTake(config.lockPath, config.taskId, config.staleMs, false);
      } finally {
        await side.release();
      }
      if (lock === undefined) await sleep(1 + Math.random() * 4);
    }
    const ids = [];
    try {
      const lines = Array.from({ length: config.records ?? 3 }, () => {
        ids.push(`${config.name}-${n}`);
        return recordLine(config.name, n++, config.taskId) + '\n';
      });
      if (config.holdMs) await sleep(config.holdMs);
      await appendLines(config, lines);
    } finally {
      await lock.release();
    }
    process.stdout.write(ids.map((id) => `${id}\n`).join(''));
  }
}

async function orchestratorHold(config) {
  mkdirSync(path.dirname(config.lockPath), { recursive: true });
  await orchestratorTake(config.lockPath, config.taskId, config.staleMs);
  process.stdout.write('holding\n');
  setInterval(() => undefined, 60_000);
}

async function main() {
  const config = JSON.parse(process.argv[2]);
  if (config.fakeHost) {
    os.hostname = () => config.fakeHost;
    syncBuiltinESMExports();
  }
  const modes = { hold, writer, 'older-writer': olderWriter, 'orchestrator-writer': orchestratorWriter, 'orchestrator-hold': orchestratorHold };
  await modes[config.mode](config);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
