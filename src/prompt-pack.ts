/**
 * Prompt-pack helpers: turn the best records of a domain into the one-line
 * injections an orchestrator puts into its prompts, fetching each domain once
 * per run however many packs share it. See docs/integration.md.
 */
import { ExperienceStoreError } from './errors.js';
import { score, type ExperienceRecord } from './record.js';
import type { FetchQuery, FetchResult } from './store.js';

/** A prompt pack as the orchestrator's instruction set declares it. */
export interface PromptPack {
  id: string;
  domain: string;
  /** How many experiences the pack's prompt has room for; <= 0 means none (no fetch). */
  experienceSlots: number;
}

export interface PromptPackExperiences {
  id: string;
  /** At most `experienceSlots` formatted injections, best first. */
  experiences: string[];
  /** A scan budget stopped the domain's fetch early: these are the best of what was read. */
  truncated: boolean;
}

export interface CollectPromptPackOptions {
  /** Read this task only; default every task under the store's outDir. */
  taskId?: string;
  /** Leave out records whose score is below this. */
  minReward?: number;
}

/**
 * What collectPromptPackExperiences needs of a store. Structural, so callers can
 * pass an ExperienceStore or a wrapper of their own (metrics, caching, tracing).
 */
export interface ExperienceSource {
  fetchTopDetailed(query: FetchQuery): Promise<Pick<FetchResult, 'records' | 'truncated'>>;
}

/**
 * The first `slots` records as injection lines, in the older orchestrator's exact
 * format (prompts and their tests compare these strings):
 *
 *   [exp <id> | epoch <epoch|n/a> | reward <score toFixed(2)>] <summary32>
 *     (stats: <tool>: <tokens>t/<costUsd toFixed(3)>usd/<Math.round(latencyMs)>ms; ...)
 *
 * on one line, tools joined by "; ", and "(stats: )" for a record without tool stats.
 */
export function formatExperienceInjections(records: readonly ExperienceRecord[], slots: number): string[] {
  if (!(slots > 0)) return [];
  return records.slice(0, slots).map((record) => {
    const stats = record.toolStats
      .map((s) => `${s.tool}: ${s.tokens}t/${s.costUsd.toFixed(3)}usd/${Math.round(s.latencyMs)}ms`)
      .join('; ');
    const header = `[exp ${record.id} | epoch ${record.epoch ?? 'n/a'} | reward ${score(record).toFixed(2)}]`;
    return `${header} ${record.summary32} (stats: ${stats})`;
  });
}

/**
 * The injections of every pack, in pack order. One fetch per distinct domain
 * (trimmed), asking for the most slots any pack of that domain has; each pack
 * then takes its own slots from that answer. A domain's `truncated` is carried
 * to each of its packs.
 */
export async function collectPromptPackExperiences(
  store: ExperienceSource,
  packs: readonly PromptPack[],
  options: CollectPromptPackOptions = {},
): Promise<PromptPackExperiences[]> {
  checkPacks(packs);
  const limits = new Map<string, number>();
  for (const pack of packs) {
    if (!(pack.experienceSlots > 0)) continue;
    const domain = pack.domain.trim();
    limits.set(domain, Math.max(limits.get(domain) ?? 0, pack.experienceSlots));
  }

  // One domain after another, not in parallel: on a cold start the first fetch
  // scans the log and heals the index, so the next domains answer from it
  // instead of scanning the same log side by side.
  const answers = new Map<string, Pick<FetchResult, 'records' | 'truncated'>>();
  for (const [domain, limit] of limits) {
    const query: FetchQuery = { domain, limit };
    if (options.taskId !== undefined) query.taskId = options.taskId;
    if (options.minReward !== undefined) query.minReward = options.minReward;
    answers.set(domain, await store.fetchTopDetailed(query));
  }

  return packs.map((pack) => {
    const answer = pack.experienceSlots > 0 ? answers.get(pack.domain.trim()) : undefined;
    if (answer === undefined) return { id: pack.id, experiences: [], truncated: false };
    return {
      id: pack.id,
      experiences: formatExperienceInjections(answer.records, pack.experienceSlots),
      truncated: answer.truncated,
    };
  });
}

// Packs come from instruction files, often untyped JSON: name the bad pack
// instead of failing on `undefined.trim()`. A missing slot count means no
// slots, as the older orchestrator treated it.
function checkPacks(packs: readonly PromptPack[]): void {
  if (!Array.isArray(packs)) throw invalidPacks('packs must be an array of { id, domain, experienceSlots }');
  packs.forEach((pack: Partial<PromptPack> | null, i) => {
    if (typeof pack !== 'object' || pack === null) {
      throw invalidPacks(`packs[${i}] must be an object { id, domain, experienceSlots }`);
    }
    const slots: unknown = pack.experienceSlots;
    if (slots !== undefined && slots !== null && typeof slots !== 'number') {
      throw invalidPacks(`packs[${i}].experienceSlots must be a number, got ${JSON.stringify(slots)}`);
    }
    if (typeof slots === 'number' && slots > 0 && typeof pack.domain !== 'string') {
      throw invalidPacks(`packs[${i}].domain must be a string`);
    }
  });
}

function invalidPacks(message: string): ExperienceStoreError {
  return new ExperienceStoreError('EXP_INVALID_INPUT', message);
}
