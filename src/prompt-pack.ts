/**
 * Prompt-pack helpers: turn the best records of a domain into the one-line
 * injections an orchestrator puts into its prompts, fetching each domain once
 * per run however many packs share it; packs with a `retrievalPolicy` are
 * served by competitive selection instead. See docs/integration.md.
 */
import { ExperienceStoreError } from './errors.js';
import { score, type ExperienceRecord } from './record.js';
import {
  resolveSelectionPolicy,
  type ExperienceSelectionDiagnostics,
  type ExperienceSelectionEntry,
  type ExperienceSelectionPolicy,
  type ExperienceSelectionPolicyInput,
  type ExperienceSelectionResult,
  type SelectOptions,
  type SelectQuery,
} from './selection.js';
import type { FetchQuery, FetchResult } from './store.js';

/** A prompt pack as the orchestrator's instruction set declares it. */
export interface PromptPack {
  id: string;
  domain: string;
  /** How many experiences the pack's prompt has room for; <= 0 means none (no fetch). */
  experienceSlots: number;
  /**
   * Fill the slots by competitive selection (`store.selectTop`) under this
   * policy instead of the plain top records; defaults as in
   * `resolveSelectionPolicy`. Undefined or null: plain top records.
   */
  retrievalPolicy?: ExperienceSelectionPolicyInput | null;
}

export interface PromptPackExperiences {
  id: string;
  /** At most `experienceSlots` formatted injections, best first (in slot order for a selection). */
  experiences: string[];
  /** A scan budget stopped the domain's fetch early: these are the best of what was read. */
  truncated: boolean;
  /**
   * For a pack with a `retrievalPolicy` and slots: the diagnostics of the one
   * selection that served it, which ran with the largest slots of the packs
   * sharing its domain and policy and is shared by them (the same object).
   * Not trimmed to this pack's slots: its lines are the first `experienceSlots`
   * of `selected`, and a greedy's first slots do not depend on its limit.
   */
  selection?: ExperienceSelectionDiagnostics;
}

export interface CollectPromptPackOptions {
  /** Read this task only; default every task under the store's outDir. */
  taskId?: string;
  /**
   * Leave out records whose score is below this. For packs with a
   * `retrievalPolicy` it is the selection's `minScore` unless the policy sets
   * one, so there it must be a finite number >= 0.
   */
  minReward?: number;
}

/**
 * What collectPromptPackExperiences needs of a store. Structural, so callers can
 * pass an ExperienceStore or a wrapper of their own (metrics, caching, tracing).
 * `selectTop` is needed only for packs with a `retrievalPolicy`.
 */
export interface ExperienceSource {
  fetchTopDetailed(query: FetchQuery): Promise<Pick<FetchResult, 'records' | 'truncated'>>;
  selectTop?(
    query: SelectQuery,
    options?: SelectOptions,
  ): Promise<Pick<ExperienceSelectionResult, 'records' | 'diagnostics' | 'truncated'>>;
}

/**
 * The first `slots` records as injection lines, in the older orchestrator's exact
 * format (prompts and their tests compare these strings):
 *
 *   [exp <id> | epoch <epoch|n/a> | reward <score toFixed(2)>] <summary32>
 *     (stats: <tool>: <tokens>t/<costUsd toFixed(3)>usd/<Math.round(latencyMs)>ms; ...)
 *
 * on one line, tools joined by "; ", and "(stats: )" for a record without tool stats.
 * With a selection's `diagnostics`, a record listed in `diagnostics.selected`
 * also gets, after the reward, `| source <source_kind>:<source_key> | competitive
 * <competitive_score toFixed(2)>` and, when its penalty is above 0, `| anti-dom
 * <dominance_penalty toFixed(2)>`. records[i] is matched to selected[i] when
 * their ids agree (both from one selection); otherwise the n-th record with an
 * id takes the n-th entry with that id (ids may repeat). Without diagnostics the
 * lines are byte-identical to the older format.
 */
export function formatExperienceInjections(
  records: readonly ExperienceRecord[],
  slots: number,
  diagnostics?: Pick<ExperienceSelectionDiagnostics, 'selected'>,
): string[] {
  if (!(slots > 0)) return [];
  const shown = records.slice(0, slots);
  const entries = diagnostics === undefined ? [] : matchEntries(shown, diagnostics.selected);
  return shown.map((record, i) => {
    const stats = record.toolStats
      .map((s) => `${s.tool}: ${s.tokens}t/${s.costUsd.toFixed(3)}usd/${Math.round(s.latencyMs)}ms`)
      .join('; ');
    const entry = entries[i];
    const selection =
      entry === undefined
        ? ''
        : ` | source ${entry.source_kind}:${entry.source_key} | competitive ${entry.competitive_score.toFixed(2)}` +
          (entry.dominance_penalty > 0 ? ` | anti-dom ${entry.dominance_penalty.toFixed(2)}` : '');
    const header = `[exp ${record.id} | epoch ${record.epoch ?? 'n/a'} | reward ${score(record).toFixed(2)}${selection}]`;
    return `${header} ${record.summary32} (stats: ${stats})`;
  });
}

function matchEntries(
  records: readonly ExperienceRecord[],
  selected: readonly ExperienceSelectionEntry[],
): Array<ExperienceSelectionEntry | undefined> {
  const byId = new Map<string, ExperienceSelectionEntry[]>();
  for (const entry of selected) {
    const list = byId.get(entry.id);
    if (list === undefined) byId.set(entry.id, [entry]);
    else list.push(entry);
  }
  const seen = new Map<string, number>();
  return records.map((record, i) => {
    const nth = seen.get(record.id) ?? 0;
    seen.set(record.id, nth + 1);
    const at = selected[i];
    return at !== undefined && at.id === record.id ? at : byId.get(record.id)?.[nth];
  });
}

/**
 * The injections of every pack, in pack order. One fetch per distinct domain
 * (trimmed), asking for the most slots any pack of that domain has; each pack
 * then takes its own slots from that answer. Packs with a `retrievalPolicy`
 * are served by `store.selectTop` instead: one selection per distinct domain
 * and resolved policy (limit = the largest slots among those packs), its
 * diagnostics in the lines and in `selection`. A domain's `truncated` is
 * carried to each of its packs.
 * Throws EXP_INVALID_INPUT before any fetch for a malformed pack, a bad
 * `retrievalPolicy` (named as `packs[i].retrievalPolicy...` and as
 * `selection.policy...`), or a store without `selectTop` given such a pack.
 */
export async function collectPromptPackExperiences(
  store: ExperienceSource,
  packs: readonly PromptPack[],
  options: CollectPromptPackOptions = {},
): Promise<PromptPackExperiences[]> {
  checkPacks(packs);
  const plan = planFetches(packs, options.minReward);
  const selection = plan.fetches.find((f) => f.policy !== undefined);
  if (selection !== undefined && typeof store.selectTop !== 'function') {
    throw invalidPacks(
      `packs[${selection.firstPack}] has a retrievalPolicy, but the store given has no selectTop method; ` +
        'pass an ExperienceStore, or a wrapper that forwards selectTop',
    );
  }

  // One fetch after another, not in parallel: on a cold start the first fetch
  // scans the log and heals the index, so the next ones answer from it
  // instead of scanning the same log side by side.
  const answers = new Map<string, Answer>();
  for (const fetch of plan.fetches) {
    if (fetch.policy === undefined) {
      const query: FetchQuery = { domain: fetch.domain, limit: fetch.limit };
      if (options.taskId !== undefined) query.taskId = options.taskId;
      if (options.minReward !== undefined) query.minReward = options.minReward;
      answers.set(fetch.key, await store.fetchTopDetailed(query));
    } else {
      // The resolved policy carries the threshold (minReward folded in), so the
      // query needs no minScore of its own.
      const query: SelectQuery = { domain: fetch.domain, limit: fetch.limit, policy: fetch.policy };
      if (options.taskId !== undefined) query.taskId = options.taskId;
      answers.set(fetch.key, await store.selectTop!(query, { diagnostics: 'summary' }));
    }
  }

  return packs.map((pack, i) => {
    const key = plan.keys[i];
    const answer = key === undefined ? undefined : answers.get(key);
    if (answer === undefined) return { id: pack.id, experiences: [], truncated: false };
    const result: PromptPackExperiences = {
      id: pack.id,
      experiences: formatExperienceInjections(answer.records, pack.experienceSlots, answer.diagnostics),
      truncated: answer.truncated,
    };
    if (answer.diagnostics !== undefined) result.selection = answer.diagnostics;
    return result;
  });
}

interface Answer {
  records: ExperienceRecord[];
  truncated: boolean;
  diagnostics?: ExperienceSelectionDiagnostics;
}

interface PlannedFetch {
  key: string;
  domain: string;
  limit: number;
  /** The index of the first pack served by this fetch, for messages. */
  firstPack: number;
  /** Set: a selection under this resolved policy; undefined: a plain fetch. */
  policy: ExperienceSelectionPolicy | undefined;
}

/**
 * The fetches the packs need, in order of first use, and each pack's fetch key
 * (undefined for packs without slots). Resolves every retrievalPolicy, so a bad
 * one fails here, before any fetch.
 */
function planFetches(
  packs: readonly PromptPack[],
  minReward: number | undefined,
): { fetches: PlannedFetch[]; keys: Array<string | undefined> } {
  const fetches = new Map<string, PlannedFetch>();
  const keys = packs.map((pack, i) => {
    const policy = packPolicy(pack, i, minReward);
    if (!(pack.experienceSlots > 0)) return undefined;
    const domain = pack.domain.trim();
    // The resolved policy is built field by field in one order, so its JSON
    // is a faithful key: equal policies, however spelled, share a selection.
    const key = policy === undefined ? `plain\u0000${domain}` : `select\u0000${domain}\u0000${JSON.stringify(policy)}`;
    const fetch = fetches.get(key);
    if (fetch === undefined) fetches.set(key, { key, domain, limit: pack.experienceSlots, firstPack: i, policy });
    else fetch.limit = Math.max(fetch.limit, pack.experienceSlots);
    return key;
  });
  return { fetches: [...fetches.values()], keys };
}

// Every pack's policy is checked, also a zero-slot pack's: a typo in an
// instruction file should fail the run that reads it, not a later one.
function packPolicy(pack: PromptPack, i: number, minReward: number | undefined): ExperienceSelectionPolicy | undefined {
  const input: unknown = pack.retrievalPolicy;
  if (input === undefined || input === null) return undefined;
  try {
    resolveSelectionPolicy(input);
  } catch (err) {
    if (!(err instanceof ExperienceStoreError)) throw err;
    const message = err.message.replace(
      /^selection\.policy(\S*)/,
      (path: string, rest: string) => `packs[${i}].retrievalPolicy${rest} (${path})`,
    );
    throw new ExperienceStoreError('EXP_INVALID_INPUT', message, { cause: err });
  }
  try {
    return resolveSelectionPolicy(input, minReward);
  } catch (err) {
    throw invalidPacks(
      `options.minReward must be a finite number >= 0 when packs[${i}] has a retrievalPolicy without its own minScore ` +
        `(it becomes selection.policy.minScore), got ${String(minReward)}`,
      err,
    );
  }
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

function invalidPacks(message: string, cause?: unknown): ExperienceStoreError {
  return new ExperienceStoreError('EXP_INVALID_INPUT', message, cause === undefined ? undefined : { cause });
}
