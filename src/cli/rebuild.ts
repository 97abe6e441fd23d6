/**
 * `experience-store rebuild [--k N]`: rebuild each task's index by a full scan
 * of its log (store.rebuildIndex), with progress on a terminal and one summary
 * line (or JSON) at the end.
 */
import type { RebuildProgress } from '../store.js';
import type { CommandContext, CommandSpec } from './context.js';
import { formatBytes, formatCount, parsePositiveInteger, writeJson, writeLines } from './io.js';
import { createProgress } from './progress.js';

const DEFAULT_K = 16;

export const rebuild: CommandSpec = {
  name: 'rebuild',
  usage: 'rebuild [--k N]',
  summary: 'rebuild indexes by a full scan of each log',
  options: { k: { type: 'string' } },
  optionHelp: [['--k N', 'records kept per domain in the rebuilt indexes (default 16)']],
  prepare(values) {
    const k = typeof values.k === 'string' ? parsePositiveInteger('--k', values.k, 'rebuild') : DEFAULT_K;
    return (ctx) => runRebuild(ctx, k);
  },
};

async function runRebuild(ctx: CommandContext, k: number): Promise<number> {
  const store = ctx.store({ indexTopK: k });
  const taskIds = ctx.tasks();
  const progress = createProgress(ctx.io.stderr);
  const startMs = performance.now();
  const total = { tasks: 0, records: 0, malformed: 0 };

  const onProgress = (p: RebuildProgress, position: number) => {
    const seconds = (performance.now() - startMs) / 1000;
    const records = total.records + p.records;
    const percent = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100;
    const rate = seconds >= 0.2 ? `, ${formatCount(Math.round(records / seconds))} records/s` : '';
    progress.update(
      `rebuild ${p.taskId} (${position}/${taskIds.length}): ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)} ` +
        `(${percent}%), ${formatCount(records)} records${rate}`,
    );
  };
  try {
    for (const [i, taskId] of taskIds.entries()) {
      const result = await store.rebuildIndex(taskId, { onProgress: (p) => onProgress(p, i + 1) });
      total.tasks += result.tasks;
      total.records += result.records;
      total.malformed += result.malformed;
    }
  } finally {
    progress.done();
  }

  const seconds = Number(((performance.now() - startMs) / 1000).toFixed(3));
  if (ctx.json) {
    writeJson(ctx.io.stdout, { ...total, k, seconds });
  } else {
    writeLines(ctx.io.stdout, [
      `rebuilt ${total.tasks} task index(es) with k ${k}: ${formatCount(total.records)} records, ` +
        `${formatCount(total.malformed)} malformed line(s), ${seconds.toFixed(2)} s`,
    ]);
  }
  return 0;
}
