/**
 * `experience-store top --domain D [--limit N] [--min-reward X]`: the records a
 * prompt would get, through the same store.fetchTop, as injection lines or JSON.
 * With `--policy competitive [--strength X]`, through store.selectTop instead
 * (slots spread across sources), and `--explain` prints its diagnostics.
 */
import { formatExperienceInjections } from '../prompt-pack.js';
import type { ExperienceSelectionCandidate, SelectQuery } from '../selection.js';
import type { FetchQuery } from '../store.js';
import type { CommandContext, CommandSpec } from './context.js';
import { parseDecimal, parsePositiveInteger, renderTable, UsageError, writeJson, writeLines } from './io.js';

const DEFAULT_LIMIT = 5;

type TopRun = { kind: 'plain'; query: FetchQuery } | { kind: 'competitive'; query: SelectQuery; explain: boolean };

export const top: CommandSpec = {
  name: 'top',
  usage: 'top --domain D [--limit N] [--min-reward X] [--policy P]',
  summary: 'print the best records of a domain as prompt injections',
  options: {
    domain: { type: 'string' },
    limit: { type: 'string' },
    'min-reward': { type: 'string' },
    policy: { type: 'string' },
    strength: { type: 'string' },
    explain: { type: 'boolean' },
  },
  optionHelp: [
    ['--domain D', 'the domain to read (required)'],
    ['--limit N', 'how many records (default 5)'],
    ['--min-reward X', 'leave out records whose score (gtScore + relativeRank) is below X; negative values work'],
    ['--policy P', 'plain (default: the best records) or competitive (selectTop: slots spread across sources)'],
    ['--strength X', 'competitive: penalty per record already picked from the same source (default 0.5)'],
    ['--explain', 'competitive: also print every candidate with its scores and why it was or was not picked'],
  ],
  prepare(values, taskIds) {
    const { domain, limit, 'min-reward': minReward, policy, strength, explain } = values;
    if (typeof domain !== 'string' || domain.trim() === '') {
      throw new UsageError(domain === undefined ? 'top needs --domain D' : '--domain must not be empty', 'top');
    }
    if (taskIds.length > 1) {
      throw new UsageError(`top reads one task or all of them, got ${taskIds.length} --task options`, 'top');
    }
    if (policy !== undefined && policy !== 'plain' && policy !== 'competitive') {
      throw new UsageError(`--policy must be plain or competitive, got ${JSON.stringify(policy)}`, 'top');
    }
    const base = {
      domain,
      limit: typeof limit === 'string' ? parsePositiveInteger('--limit', limit, 'top') : DEFAULT_LIMIT,
      taskId: taskIds[0],
    };
    const min = typeof minReward === 'string' ? parseDecimal('--min-reward', minReward, 'top') : undefined;
    if (policy !== 'competitive') {
      for (const [flag, given] of [['--strength', strength], ['--explain', explain]] as const) {
        if (given !== undefined) throw new UsageError(`${flag} needs --policy competitive`, 'top');
      }
      const run: TopRun = { kind: 'plain', query: { ...base, minReward: min } };
      return (ctx) => runTop(ctx, run);
    }
    // The selection policy's threshold must be >= 0 (SPEC "Competitive selection").
    if (min !== undefined && min < 0) throw new UsageError(`--min-reward must be >= 0 with --policy competitive, got ${min}`, 'top');
    const penalty = typeof strength === 'string' ? parseDecimal('--strength', strength, 'top') : undefined;
    if (penalty !== undefined && penalty < 0) throw new UsageError(`--strength must be >= 0, got ${penalty}`, 'top');
    const run: TopRun = {
      kind: 'competitive',
      query: { ...base, minScore: min, policy: penalty === undefined ? {} : { antiDominanceNormalization: { strength: penalty } } },
      explain: explain === true,
    };
    return (ctx) => runTop(ctx, run);
  },
};

async function runTop(ctx: CommandContext, run: TopRun): Promise<number> {
  const store = ctx.store();
  if (run.kind === 'plain') {
    const records = await store.fetchTop(run.query);
    if (ctx.json) writeJson(ctx.io.stdout, records);
    else writeLines(ctx.io.stdout, formatExperienceInjections(records, run.query.limit));
    return 0;
  }

  const { records, diagnostics } = await store.selectTop(run.query, { diagnostics: run.explain ? 'full' : 'summary' });
  if (ctx.json) {
    writeJson(ctx.io.stdout, run.explain ? { records, diagnostics } : records);
    return 0;
  }
  const lines = formatExperienceInjections(records, run.query.limit, diagnostics);
  if (run.explain) {
    const { policy } = diagnostics;
    const threshold = policy.minScore === null ? 'no threshold' : `min score ${policy.minScore}`;
    const penalty = policy.antiDominanceNormalization.enabled ? `strength ${policy.antiDominanceNormalization.strength}` : 'no penalty';
    if (lines.length > 0) lines.push('');
    lines.push(
      `${diagnostics.selected_count} of ${diagnostics.candidate_count} candidate(s) selected (${policy.kind}, ${penalty}, ${threshold})`,
      ...renderTable(
        ['slot', 'id', 'source', 'raw', 'penalty', 'competitive', 'result'],
        diagnostics.candidates.map(candidateRow),
        new Set([0, 3, 4, 5]),
      ),
    );
    if (diagnostics.suppressed_source_keys.length > 0) {
      lines.push(`sources with more candidates than picks: ${diagnostics.suppressed_source_keys.join(', ')}`);
    }
  }
  writeLines(ctx.io.stdout, lines);
  return 0;
}

function candidateRow(c: ExperienceSelectionCandidate): string[] {
  return [
    c.selected_slot === null ? '-' : String(c.selected_slot),
    c.id,
    `${c.source_kind}:${c.source_key}`,
    c.raw_score.toFixed(2),
    c.dominance_penalty.toFixed(2),
    c.competitive_score.toFixed(2),
    c.selected ? 'selected' : (c.exclusion_reason ?? 'not selected').replaceAll('_', ' '),
  ];
}
