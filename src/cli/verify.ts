/**
 * `experience-store verify [--fix]`: check that each index equals a full scan of
 * the log prefix it names, [0, offset), scanned with the index's own k. Only an
 * index a fetch would use (fresh, or stale by appended bytes) is compared; a
 * missing one, or one whose log was truncated or replaced (the store rescans),
 * is reported, not failed. `--fix` rebuilds exactly the failing tasks.
 */
import { closeSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { InvalidIndexError, readIndex, type LoadedIndex } from '../index-file.js';
import { fstatLog, openLogForReading } from '../log-file.js';
import { taskPaths } from '../paths.js';
import type { ExperienceRecord } from '../record.js';
import type { TopState } from '../top-k.js';
import type { CommandContext, CommandSpec } from './context.js';
import {
  describeIndexState,
  indexStateJson,
  indexStateOf,
  isComparable,
  scanPrefix,
  type IndexState,
} from './inspect.js';
import { formatCount, OperationError, PROGRAM, writeJson, writeLines } from './io.js';

export const verify: CommandSpec = {
  name: 'verify',
  usage: 'verify [--fix]',
  summary: 'check each index against a full scan of the log prefix it covers',
  options: { fix: { type: 'boolean' } },
  optionHelp: [['--fix', 'rebuild the indexes that fail, then check them again']],
  prepare: (values) => (ctx) => runVerify(ctx, values.fix === true),
};

interface Problem {
  domain?: string;
  message: string;
}

interface Verdict {
  taskId: string;
  state: IndexState;
  index: LoadedIndex | undefined;
  problems: Problem[];
}

async function runVerify(ctx: CommandContext, fix: boolean): Promise<number> {
  const verdicts: Verdict[] = [];
  for (const taskId of ctx.tasks()) verdicts.push(await verifyTask(ctx, taskId));
  const failed = verdicts.filter((v) => v.problems.length > 0);

  // Rebuild with the k the broken index was built with, when its header says.
  const fixed = new Map<string, Verdict>();
  if (fix) {
    for (const v of failed) {
      await ctx.store({ indexTopK: v.index?.k }).rebuildIndex(v.taskId);
      fixed.set(v.taskId, await verifyTask(ctx, v.taskId));
    }
  }
  const stillFailing = failed.filter((v) => (fixed.get(v.taskId) ?? v).problems.length > 0);

  if (ctx.json) {
    writeJson(ctx.io.stdout, {
      ok: stillFailing.length === 0,
      tasks: verdicts.map((v) => {
        const after = fixed.get(v.taskId);
        return { ...verdictJson(v), ...(after === undefined ? {} : { fix: { rebuilt: true, ...verdictJson(after) } }) };
      }),
    });
  } else {
    const lines: string[] = [];
    for (const v of verdicts) {
      const after = fixed.get(v.taskId);
      lines.push(...describeVerdict(v));
      if (after !== undefined) lines.push(...describeVerdict(after, 'after rebuild: '));
    }
    if (stillFailing.length === 0) {
      lines.push(
        failed.length === 0
          ? `verify: ${verdicts.length} task(s) checked, no differences`
          : `verify: rebuilt ${failed.length} failing task index(es); they verify now`,
      );
    }
    writeLines(ctx.io.stdout, lines);
  }

  if (stillFailing.length === 0) return 0;
  const names = stillFailing.map((v) => v.taskId).join(', ');
  throw new OperationError(
    fix
      ? `verify: ${stillFailing.length} task index(es) still fail after rebuild (${names}); check the log's permissions and rerun ${PROGRAM} verify`
      : `verify: ${stillFailing.length} of ${verdicts.length} task(s) failed (${names}); run ${PROGRAM} verify --fix to rebuild them`,
  );
}

async function verifyTask(ctx: CommandContext, taskId: string): Promise<Verdict> {
  const paths = taskPaths(ctx.outDir, ctx.runsDir, taskId);
  const read = readIndex(paths.index);
  const index = read.kind === 'ok' ? read.index : undefined;
  const fd = openLogForReading(paths.log);
  try {
    const log = fd === undefined ? undefined : fstatLog(fd);
    const state = indexStateOf(read, fd, log);
    if (state.kind === 'invalid') return { taskId, state, index, problems: [{ message: `index invalid: ${state.reason}` }] };
    if (!isComparable(state) || index === undefined || fd === undefined) return { taskId, state, index, problems: [] };
    const scanned = await scanPrefix(fd, index.header.log.offset, index.k);
    return { taskId, state, index, problems: compareIndex(index, scanned.state, scanned.end) };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Every way `index` differs from `scanned`, the state of [0, end) of its log. */
function compareIndex(index: LoadedIndex, scanned: TopState, end: number): Problem[] {
  const { header } = index;
  const offset = header.log.offset;
  const problems: Problem[] = [];
  if (end !== offset) {
    problems.push({ message: `the index covers ${offset} bytes, but the last line in them ends at byte ${end}` });
  }
  const prefix = `the log's first ${formatCount(offset)} bytes`;
  if (header.records !== scanned.records) {
    problems.push({ message: `records: the index says ${header.records}, ${prefix} hold ${scanned.records}` });
  }
  if (header.malformed !== scanned.malformed) {
    problems.push({ message: `malformed lines: the index says ${header.malformed}, ${prefix} hold ${scanned.malformed}` });
  }

  const names = new Set([...header.domains.map((d) => d.domain), ...scanned.domains.keys()]);
  for (const domain of [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const want = scanned.domains.get(domain);
    const count = index.count(domain);
    if (want === undefined) {
      problems.push({ domain, message: `the index lists ${count} record(s), ${prefix} hold none` });
      continue;
    }
    if (count === 0) {
      problems.push({ domain, message: `${prefix} hold ${want.count} record(s), the index has no such domain` });
      continue;
    }
    if (count !== want.count) problems.push({ domain, message: `count: the index says ${count}, ${prefix} hold ${want.count}` });
    let got: readonly ExperienceRecord[];
    try {
      got = index.top(domain);
    } catch (err) {
      if (!(err instanceof InvalidIndexError)) throw err;
      problems.push({ domain, message: `index invalid: ${err.message}` });
      continue;
    }
    const difference = compareTops(got, want.top);
    if (difference !== undefined) problems.push({ domain, message: difference });
  }
  return problems;
}

/** The first place two ranked lists differ, in words; undefined when they are equal. */
function compareTops(got: readonly ExperienceRecord[], want: readonly ExperienceRecord[]): string | undefined {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const a = got[i];
    const b = want[i];
    if (a === undefined || b === undefined) {
      return `the index keeps ${got.length} top record(s), a full scan ranks ${want.length}`;
    }
    if (a.id !== b.id) return `top[${i}] is ${a.id} in the index but ${b.id} in the log`;
    if (!isDeepStrictEqual(a, b)) {
      const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((key) => !isDeepStrictEqual(a[key], b[key]));
      return `top[${i}] (${a.id}) differs from the log in ${fields.join(', ') || 'field order'}`;
    }
  }
  return undefined;
}

function describeVerdict(v: Verdict, prefix = ''): string[] {
  const head = `${v.taskId}: ${prefix}`;
  if (v.problems.length > 0) {
    return v.problems.map((p) => `${head}FAIL ${p.domain === undefined ? '' : `domain "${p.domain}": `}${p.message}`);
  }
  const state = describeIndexState(v.state);
  switch (v.state.kind) {
    case 'fresh':
    case 'stale': {
      const h = v.index!.header;
      const covers = `k ${h.k}, ${formatCount(h.records)} records in ${h.domains.length} domain(s)`;
      const note = v.state.kind === 'stale' ? '; the next fetch reads the new bytes' : '';
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

function verdictJson(v: Verdict): Record<string, unknown> {
  return { taskId: v.taskId, ok: v.problems.length === 0, index: indexStateJson(v.state, v.index), problems: v.problems };
}
