/**
 * `experience-store top --domain D [--limit N] [--min-reward X]`: the records a
 * prompt would get, through the same store.fetchTop, as injection lines or JSON.
 */
import { formatExperienceInjections } from '../prompt-pack.js';
import type { FetchQuery } from '../store.js';
import type { CommandContext, CommandSpec } from './context.js';
import { parseDecimal, parsePositiveInteger, UsageError, writeJson, writeLines } from './io.js';

const DEFAULT_LIMIT = 5;

export const top: CommandSpec = {
  name: 'top',
  usage: 'top --domain D [--limit N] [--min-reward X]',
  summary: 'print the best records of a domain as prompt injections',
  options: {
    domain: { type: 'string' },
    limit: { type: 'string' },
    'min-reward': { type: 'string' },
  },
  optionHelp: [
    ['--domain D', 'the domain to read (required)'],
    ['--limit N', 'how many records (default 5)'],
    ['--min-reward X', 'leave out records whose score (gtScore + relativeRank) is below X'],
  ],
  prepare(values, taskIds) {
    const { domain, limit, 'min-reward': minReward } = values;
    if (typeof domain !== 'string' || domain.trim() === '') {
      throw new UsageError(domain === undefined ? 'top needs --domain D' : '--domain must not be empty', 'top');
    }
    if (taskIds.length > 1) {
      throw new UsageError(`top reads one task or all of them, got ${taskIds.length} --task options`, 'top');
    }
    const query: FetchQuery = {
      domain,
      limit: typeof limit === 'string' ? parsePositiveInteger('--limit', limit, 'top') : DEFAULT_LIMIT,
      minReward: typeof minReward === 'string' ? parseDecimal('--min-reward', minReward, 'top') : undefined,
      taskId: taskIds[0],
    };
    return (ctx) => runTop(ctx, query);
  },
};

async function runTop(ctx: CommandContext, query: FetchQuery): Promise<number> {
  const records = await ctx.store().fetchTop(query);
  if (ctx.json) writeJson(ctx.io.stdout, records);
  else writeLines(ctx.io.stdout, formatExperienceInjections(records, query.limit));
  return 0;
}
