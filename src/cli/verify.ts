/**
 * `experience-store verify [--fix]`: print what store.verify() reports, per task,
 * as lines or JSON; exit 1 while any task fails (after the rebuilds, with --fix).
 */
import type { TaskReport } from '../inspect.js';
import type { CommandContext, CommandSpec } from './context.js';
import { describeIndex } from './describe.js';
import { formatCount, OperationError, PROGRAM, writeJson, writeLines } from './io.js';

export const verify: CommandSpec = {
  name: 'verify',
  usage: 'verify [--fix]',
  summary: 'check each index against a full scan of the log prefix it covers',
  options: { fix: { type: 'boolean' } },
  optionHelp: [['--fix', 'rebuild the indexes that fail (under the task lock), then check them again']],
  prepare: (values) => (ctx) => runVerify(ctx, values.fix === true),
};

async function runVerify(ctx: CommandContext, fix: boolean): Promise<number> {
  const store = ctx.store();
  const reports: TaskReport[] = [];
  for (const taskId of ctx.tasks()) reports.push(...(await store.verify({ taskId, fix })));
  const found = reports.filter((r) => r.problems.length > 0);
  const failing = reports.filter((r) => !r.ok);

  if (ctx.json) {
    writeJson(ctx.io.stdout, { ok: failing.length === 0, tasks: reports });
  } else {
    const lines: string[] = [];
    for (const r of reports) {
      lines.push(...describeReport(r.taskId, r.index, r.problems));
      if (r.fix !== undefined) lines.push(...describeReport(r.taskId, r.fix.index, r.fix.problems, 'after rebuild: '));
    }
    if (failing.length === 0) {
      lines.push(
        found.length === 0
          ? `verify: ${reports.length} task(s) checked, no differences`
          : `verify: rebuilt ${found.length} failing task index(es); they verify now`,
      );
    }
    writeLines(ctx.io.stdout, lines);
  }

  if (failing.length === 0) return 0;
  const names = failing.map((r) => r.taskId).join(', ');
  throw new OperationError(
    fix
      ? `verify: ${failing.length} task index(es) still fail after rebuild (${names}); check the log's permissions and rerun ${PROGRAM} verify`
      : `verify: ${failing.length} of ${reports.length} task(s) failed (${names}); run ${PROGRAM} verify --fix to rebuild them`,
  );
}

function describeReport(taskId: string, index: TaskReport['index'], problems: TaskReport['problems'], prefix = ''): string[] {
  const head = `${taskId}: ${prefix}`;
  if (problems.length > 0) {
    return problems.map((p) => `${head}FAIL ${p.domain === undefined ? '' : `domain "${p.domain}": `}${p.message}`);
  }
  const state = describeIndex(index);
  switch (index.state) {
    case 'fresh':
    case 'stale': {
      const covers = `k ${index.k}, ${formatCount(index.records ?? 0)} records in ${index.domainCount} domain(s)`;
      const note = index.state === 'stale' ? '; the next fetch reads the new bytes' : '';
      return [`${head}ok, index ${state} (${covers})${note}`];
    }
    case 'missing':
      return [`${head}no index (not a failure: the next write or fetch, or ${PROGRAM} rebuild, creates one)`];
    case 'stale-replaced':
      return [`${head}index ${state}: the log no longer holds the prefix it covers; the next fetch rescans (not a failure)`];
    case 'no-log':
      return [`${head}${state}; not a failure`];
    case 'invalid':
      return [`${head}index ${state}`];
  }
}
