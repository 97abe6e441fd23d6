/**
 * `experience-store stats`: print what store.stats() reports, per task: log
 * bytes, records, malformed lines, domains and the index state.
 */
import type { TaskStats } from '../inspect.js';
import type { CommandContext, CommandSpec } from './context.js';
import { describeIndex } from './describe.js';
import { formatCount, renderTable, writeJson, writeLines } from './io.js';

export const stats: CommandSpec = {
  name: 'stats',
  usage: 'stats',
  summary: 'per task: log bytes, records, malformed lines, domains, index state',
  options: {},
  optionHelp: [],
  prepare: () => runStats,
};

async function runStats(ctx: CommandContext): Promise<number> {
  const store = ctx.store();
  const all: TaskStats[] = [];
  for (const taskId of ctx.tasks()) all.push(...(await store.stats({ taskId })));

  if (ctx.json) {
    writeJson(ctx.io.stdout, all);
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
    describeIndex(t.index),
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
