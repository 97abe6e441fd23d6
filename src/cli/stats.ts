/**
 * `experience-store stats`: per task, what the log holds (by a streamed full
 * scan, never the whole file in memory) and where its index stands.
 */
import { closeSync } from 'node:fs';
import { readIndex } from '../index-file.js';
import { fstatLog, openLogForReading } from '../log-file.js';
import { taskPaths } from '../paths.js';
import type { CommandContext, CommandSpec } from './context.js';
import { describeIndexState, indexStateJson, indexStateOf, scanPrefix, strayTempFiles } from './inspect.js';
import { formatCount, renderTable, writeJson, writeLines } from './io.js';

export interface TaskStats {
  taskId: string;
  logBytes: number;
  records: number;
  malformed: number;
  domains: Array<{ domain: string; count: number }>;
  index: Record<string, unknown>;
  strayTempFiles: string[];
}

export const stats: CommandSpec = {
  name: 'stats',
  usage: 'stats',
  summary: 'per task: log bytes, records, malformed lines, domains, index state',
  options: {},
  optionHelp: [],
  prepare: () => runStats,
};

async function runStats(ctx: CommandContext): Promise<number> {
  const all: Array<TaskStats & { indexText: string }> = [];
  for (const taskId of ctx.tasks()) all.push(await statsOf(ctx, taskId));

  if (ctx.json) {
    writeJson(
      ctx.io.stdout,
      all.map(({ indexText: _inWords, ...task }): TaskStats => task),
    );
    return 0;
  }
  if (all.length === 0) {
    writeLines(ctx.io.stdout, [`no tasks in ${ctx.outLabel}`]);
    return 0;
  }
  const rows = all.map((t) => [
    t.taskId,
    formatCount(t.logBytes),
    formatCount(t.records),
    formatCount(t.malformed),
    t.indexText,
    t.domains.map((d) => `${d.domain} ${formatCount(d.count)}`).join(', '),
  ]);
  const lines = renderTable(['task', 'log bytes', 'records', 'malformed', 'index', 'domains'], rows, new Set([1, 2, 3]));
  for (const t of all) {
    if (t.strayTempFiles.length === 0) continue;
    lines.push(
      `${t.taskId}: ${t.strayTempFiles.length} stray index temp file(s), left by a killed writer: ` +
        `${t.strayTempFiles.join(', ')} (readers ignore them; delete them while no writer runs)`,
    );
  }
  writeLines(ctx.io.stdout, lines);
  return 0;
}

/** The stats of one task, and its index state in words for the table. */
async function statsOf(ctx: CommandContext, taskId: string): Promise<TaskStats & { indexText: string }> {
  const paths = taskPaths(ctx.outDir, ctx.runsDir, taskId);
  const read = readIndex(paths.index);
  const fd = openLogForReading(paths.log);
  try {
    const log = fd === undefined ? undefined : fstatLog(fd);
    const state = indexStateOf(read, fd, log);
    const scanned = fd === undefined || log === undefined ? undefined : await scanPrefix(fd, log.size, 0);
    const domains = [...(scanned?.state.domains.entries() ?? [])]
      .map(([domain, d]) => ({ domain, count: d.count }))
      .sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
    return {
      taskId,
      logBytes: log?.size ?? 0,
      records: scanned?.state.records ?? 0,
      malformed: scanned?.state.malformed ?? 0,
      domains,
      index: indexStateJson(state, read.kind === 'ok' ? read.index : undefined),
      strayTempFiles: strayTempFiles(paths.dir),
      indexText: describeIndexState(state),
    };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
