/**
 * Competitive selection, policy `competitive_scoring_v1` (SPEC "Competitive
 * selection"): the policy and its validation, round6 arithmetic, source buckets
 * and the greedy that spreads a pack's slots across sources. Pure, no I/O: the
 * index path and the scan path both hand their candidates to selectCompetitive,
 * so the rules live in one place, as the plain order lives in compareRecords.
 */
import { ExperienceStoreError } from './errors.js';
import type { ExperienceRecord } from './record.js';

/**
 * Which provenance field a record's source bucket comes from: the first
 * non-blank of groupId, runId, manifestPath, else stampSignature.
 */
export type ExperienceSourceKind = 'group_id' | 'run_id' | 'manifest_path' | 'stamp_signature';

/**
 * Why a candidate was not selected:
 * - `raw_score_below_min_score`: its raw score is below `minScore`; never considered;
 * - `competitive_score_below_min_score`: selection stopped because the best remaining
 *   competitive score fell below `minScore`; every candidate left then gets this;
 * - `outcompeted`: the slots ran out before it was picked.
 */
export type ExperienceExclusionReason = 'raw_score_below_min_score' | 'competitive_score_below_min_score' | 'outcompeted';

/**
 * A resolved selection policy, as `resolveSelectionPolicy` returns it and as
 * diagnostics record it. Every field present; see `ExperienceSelectionPolicyInput`
 * for what callers may pass and the defaults.
 */
export interface ExperienceSelectionPolicy {
  /** The only policy there is. */
  kind: 'competitive_scoring_v1';
  /** Candidates scoring below this (raw, then competitive) are left out; null = no threshold. */
  minScore: number | null;
  /** raw = round6(gtScore * weights.gtScore + relativeRank * weights.relativeRank); both finite, >= 0. */
  scoreWeights: { gtScore: number; relativeRank: number };
  antiDominanceNormalization: {
    /** false: no penalty, selection is the plain order of raw scores. */
    enabled: boolean;
    /** Penalty per record already picked from the same source bucket; finite, >= 0. */
    strength: number;
    /** The only grouping there is: see `sourceOf`. */
    sourceGrouping: 'provenance_fallback_v1';
  };
}

/**
 * What callers may pass as a policy (`selectTop({ policy })`, a prompt pack's
 * `retrievalPolicy`). Wider than `Partial<ExperienceSelectionPolicy>`, which it
 * accepts: every field may be left out, and null means the default.
 * Defaults: minScore = the query's minScore, else none; weights 1 and 1;
 * enabled true; strength 0.5. `kind` and `sourceGrouping` are forced to their
 * only values whatever is passed.
 */
export interface ExperienceSelectionPolicyInput {
  kind?: string;
  minScore?: number | null;
  scoreWeights?: { gtScore?: number | null; relativeRank?: number | null } | null;
  antiDominanceNormalization?: {
    enabled?: boolean | null;
    strength?: number | null;
    sourceGrouping?: string;
  } | null;
}

/** One selected record as diagnostics describe it: scores as they were in the slot that picked it. */
export interface ExperienceSelectionEntry {
  id: string;
  /** The trimmed groupId, runId or manifestPath, or the stampSignature as is. */
  source_key: string;
  source_kind: ExperienceSourceKind;
  /** round6 of the weighted reward. */
  raw_score: number;
  /** round6(raw_score - dominance_penalty). */
  competitive_score: number;
  /** round6(strength * records already picked from the same bucket); 0 when disabled. */
  dominance_penalty: number;
}

/**
 * One candidate in diagnostics. A selected candidate carries its values at
 * selection; an unselected one the values of the last slot computed (penalty
 * from its bucket's picks before that slot's pick). A candidate excluded by the
 * raw threshold was never considered: penalty 0, competitive = raw.
 */
export interface ExperienceSelectionCandidate extends ExperienceSelectionEntry {
  selected: boolean;
  /** 1-based slot that picked it; null when unselected. */
  selected_slot: number | null;
  /** null when selected. */
  exclusion_reason: ExperienceExclusionReason | null;
}

/**
 * How a selection went, in the field names the newer orchestrator writes into
 * run manifests.
 */
export interface ExperienceSelectionDiagnostics {
  /** The resolved policy (also for an empty answer). */
  policy: ExperienceSelectionPolicy;
  /** Every candidate of the domain, also those below the threshold. */
  candidate_count: number;
  selected_count: number;
  /** Ids of `selected`, in slot order. */
  selected_ids: string[];
  /** `<kind>:<key>` buckets with more candidates than picks, in code-unit order. */
  suppressed_source_keys: string[];
  /** The selected records in slot order. */
  selected: ExperienceSelectionEntry[];
  /** Sorted by competitive desc, raw desc, createdAt desc, id asc, then input order. */
  candidates: ExperienceSelectionCandidate[];
  /** false when `candidates` lists only part of the domain (answered from the index). */
  candidates_complete: boolean;
}

/** What `selectTop` resolves with. */
export interface ExperienceSelectionResult {
  /** The selected records in slot order (copies the caller owns). */
  records: ExperienceRecord[];
  diagnostics: ExperienceSelectionDiagnostics;
  /** A scan budget stopped reading early: this is the selection over what was read. */
  truncated: boolean;
}

/** `store.selectTop` query. `minScore` is the threshold when the policy sets none. */
export interface SelectQuery {
  domain: string;
  limit: number;
  minScore?: number;
  taskId?: string;
  policy?: ExperienceSelectionPolicyInput;
}

/** `store.selectTop` options. 'summary' (default) may list only the indexed candidates; 'full' lists every one (a scan). */
export interface SelectOptions {
  diagnostics?: 'summary' | 'full';
}

/** A record's source: its kind, key and bucket `<kind>:<key>`. */
export interface SelectionSource {
  kind: ExperienceSourceKind;
  key: string;
  bucket: string;
}

/**
 * The policy with every default filled in, validated. `queryMinScore` is the
 * query's threshold, used when the policy's `minScore` is null or undefined.
 * Throws EXP_INVALID_INPUT naming the field as `selection.policy.<path>`, e.g.
 * `selection.policy.antiDominanceNormalization.enabled must be a boolean, got "yes"`.
 * Idempotent: resolving a resolved policy returns an equal one.
 */
export function resolveSelectionPolicy(policy: unknown, queryMinScore?: unknown): ExperienceSelectionPolicy {
  if (policy !== undefined && !isObject(policy)) {
    throw invalidPolicy('selection.policy', 'must be an object', policy, 'leave it out for the default policy');
  }
  const p = (policy ?? {}) as Record<string, unknown>;
  const ownMinScore = p.minScore !== undefined && p.minScore !== null;
  const minScore = ownMinScore ? p.minScore : queryMinScore;
  if (minScore !== undefined && minScore !== null && !isNonNegative(minScore)) {
    const field = ownMinScore ? 'selection.policy.minScore' : 'selection.policy.minScore (from query.minScore)';
    throw invalidPolicy(field, 'must be a finite number >= 0 or null', minScore, 'leave it out for no threshold');
  }
  const weights = section(p, 'scoreWeights');
  const anti = section(p, 'antiDominanceNormalization');
  const enabled = anti.enabled ?? true;
  if (typeof enabled !== 'boolean') {
    const field = 'selection.policy.antiDominanceNormalization.enabled';
    throw invalidPolicy(field, 'must be a boolean', enabled, 'pass true or false, or leave it out for true');
  }
  return {
    kind: 'competitive_scoring_v1',
    minScore: minScore === undefined || minScore === null ? null : (minScore as number) + 0,
    scoreWeights: {
      gtScore: nonNegative('scoreWeights.gtScore', weights.gtScore, 1),
      relativeRank: nonNegative('scoreWeights.relativeRank', weights.relativeRank, 1),
    },
    antiDominanceNormalization: {
      enabled,
      strength: nonNegative('antiDominanceNormalization.strength', anti.strength, 0.5),
      sourceGrouping: 'provenance_fallback_v1',
    },
  };
}

/**
 * `Math.round(x * 1e6) / 1e6`; a non-finite x gives 0. -0 becomes 0, so that
 * diagnostics compare equal to what their JSON reads back as.
 */
export function round6(x: number): number {
  if (!Number.isFinite(x)) return 0;
  return Math.round(x * 1e6) / 1e6 + 0;
}

/** The raw score under `policy`: round6(wG * gtScore + wR * relativeRank). */
export function rawScore(record: ExperienceRecord, policy: ExperienceSelectionPolicy): number {
  const w = policy.scoreWeights;
  return round6(w.gtScore * record.reward.gtScore + w.relativeRank * record.reward.relativeRank);
}

/** Both weights exactly 1: raw = round6(score), the order the index keeps. */
export function isDefaultWeights(policy: ExperienceSelectionPolicy): boolean {
  return policy.scoreWeights.gtScore === 1 && policy.scoreWeights.relativeRank === 1;
}

/**
 * The record's source (grouping `provenance_fallback_v1`): the first of groupId,
 * runId, manifestPath that is a non-blank string after trim (the key is the
 * trimmed value), else stampSignature as is. Buckets are `<kind>:<key>`, so
 * `run_id:x` and `manifest_path:x` are different sources. Non-string fields (a
 * null groupId) are skipped.
 */
export function sourceOf(record: ExperienceRecord): SelectionSource {
  // Straight-line: a full-scan selection calls this once per candidate.
  let key = trimmed(record.groupId);
  if (key !== '') return { kind: 'group_id', key, bucket: `group_id:${key}` };
  key = trimmed(record.runId);
  if (key !== '') return { kind: 'run_id', key, bucket: `run_id:${key}` };
  key = trimmed(record.manifestPath);
  if (key !== '') return { kind: 'manifest_path', key, bucket: `manifest_path:${key}` };
  key = typeof record.stampSignature === 'string' ? record.stampSignature : '';
  return { kind: 'stamp_signature', key, bucket: `stamp_signature:${key}` };
}

function trimmed(value: unknown): string {
  return typeof value === 'string' ? value.trim() : '';
}

/**
 * Selection order under `policy`'s raw score (default: default weights): raw
 * desc, createdAt desc, id asc, by code-unit comparison. 0 on a full tie:
 * callers keep input order (task order, then log order) for those.
 */
export function compareBySelectionOrder(
  a: ExperienceRecord,
  b: ExperienceRecord,
  policy: ExperienceSelectionPolicy = DEFAULT_POLICY,
): number {
  return compareRanked(rawScore(a, policy), a, rawScore(b, policy), b);
}

/**
 * The greedy of SPEC "Competitive selection" over `candidates`, given in input
 * order (task order, then log order: the last tie-break). `policy` must be
 * resolved. Returns the selected records in slot order (the very objects
 * passed in) and the diagnostics. `options.candidateCount` (default
 * candidates.length) and `options.complete` (default true) let a caller that
 * passes only part of the domain (the index) say so; `options.bucketCounts`
 * gives the domain's candidates per bucket for `suppressed_source_keys` then
 * (default: counted from `candidates`). A limit below 1 selects nothing: every
 * candidate is then listed unselected.
 * O(N log N + limit log B) for N candidates in B buckets.
 */
export function selectCompetitive(
  candidates: readonly ExperienceRecord[],
  limit: number,
  policy: ExperienceSelectionPolicy,
  options: { candidateCount?: number; complete?: boolean; bucketCounts?: ReadonlyMap<string, number> } = {},
): { records: ExperienceRecord[]; diagnostics: ExperienceSelectionDiagnostics } {
  const threshold = policy.minScore;
  const anti = policy.antiDominanceNormalization;
  const penaltyFor = (picks: number) => (anti.enabled ? round6(anti.strength * picks) : 0);

  const all: Candidate[] = candidates.map((record, index) => {
    const raw = rawScore(record, policy);
    const excluded = threshold !== null && raw < threshold;
    const reason: ExperienceExclusionReason | null = excluded ? 'raw_score_below_min_score' : null;
    return { record, index, raw, source: sourceOf(record), penalty: 0, competitive: raw, slot: null, reason };
  });

  // One sort: the selection order of every candidate. Each bucket's members
  // come out of it in order, and so does the final list's bulk (below).
  const ordered = all.slice().sort(compareCandidates);
  if (overflows(all, anti.enabled ? anti.strength * Math.max(0, limit) : 0)) {
    return resultOf(naiveGreedy(ordered, limit, threshold, penaltyFor), ordered, options, policy, candidates.length, true);
  }

  // Within a bucket every remaining candidate bears the same penalty, and round6
  // is monotone, so only the bucket's best (in selection order) can win a slot:
  // a heap of bucket heads replaces re-sorting every candidate per slot.
  const buckets = new Map<string, Bucket>();
  for (const c of ordered) {
    let bucket = buckets.get(c.source.bucket);
    if (bucket === undefined) {
      bucket = { members: [], next: 0, picks: 0, competitive: 0 };
      buckets.set(c.source.bucket, bucket);
    }
    if (c.reason === null) bucket.members.push(c);
  }
  const heap = new BucketHeap();
  for (const bucket of buckets.values()) if (bucket.members.length > 0) heap.push(withHead(bucket, penaltyFor(0)));

  const selected: Candidate[] = [];
  let lastPick: Bucket | undefined;
  let stopped = false;
  for (let slot = 1; slot <= limit && heap.size > 0; slot++) {
    lastPick = undefined;
    const bucket = heap.peek();
    if (threshold !== null && bucket.competitive < threshold) {
      stopped = true;
      break;
    }
    heap.pop();
    const pick = bucket.members[bucket.next++]!;
    pick.penalty = penaltyFor(bucket.picks);
    pick.competitive = bucket.competitive;
    pick.slot = slot;
    selected.push(pick);
    bucket.picks += 1;
    lastPick = bucket;
    if (bucket.next < bucket.members.length) heap.push(withHead(bucket, penaltyFor(bucket.picks)));
  }

  // Those left keep the values of the last slot computed: for the bucket picked
  // in that slot, the penalty from before its pick.
  for (const bucket of buckets.values()) {
    const penalty = penaltyFor(bucket.picks - (bucket === lastPick ? 1 : 0));
    for (let i = bucket.next; i < bucket.members.length; i++) {
      const c = bucket.members[i]!;
      c.penalty = penalty;
      c.competitive = round6(c.raw - penalty);
      c.reason = stopped ? 'competitive_score_below_min_score' : 'outcompeted';
    }
  }

  return resultOf(selected, ordered, options, policy, candidates.length, false);
}

/**
 * round6 overflows beyond about ±1.8e302 and SPEC maps non-finite results to
 * 0, so for raw scores or penalties that large a competitive score no longer
 * follows its raw score, and a bucket's best may not be its head. There the
 * greedy is run as SPEC states it: every remaining candidate, every slot.
 */
const OVERFLOW = 1e300;

function overflows(all: readonly Candidate[], maxPenalty: number): boolean {
  return !(maxPenalty < OVERFLOW) || all.some((c) => !(Math.abs(c.raw) < OVERFLOW));
}

function naiveGreedy(
  ordered: Candidate[],
  limit: number,
  threshold: number | null,
  penaltyFor: (picks: number) => number,
): Candidate[] {
  const picks = new Map<string, number>();
  let remaining = ordered.filter((c) => c.reason === null);
  const selected: Candidate[] = [];
  for (let slot = 1; slot <= limit && remaining.length > 0; slot++) {
    let best: Candidate | undefined;
    for (const c of remaining) {
      c.penalty = penaltyFor(picks.get(c.source.bucket) ?? 0);
      c.competitive = round6(c.raw - c.penalty);
      if (best === undefined || compareFinal(c, best) < 0) best = c;
    }
    if (threshold !== null && best!.competitive < threshold) {
      for (const c of remaining) c.reason = 'competitive_score_below_min_score';
      return selected;
    }
    best!.slot = slot;
    selected.push(best!);
    picks.set(best!.source.bucket, (picks.get(best!.source.bucket) ?? 0) + 1);
    remaining = remaining.filter((c) => c !== best);
  }
  for (const c of remaining) c.reason = 'outcompeted';
  return selected;
}

/** The result of a selection: its records and diagnostics (candidates sorted by their final values). */
function resultOf(
  selected: readonly Candidate[],
  ordered: readonly Candidate[],
  options: { candidateCount?: number; complete?: boolean; bucketCounts?: ReadonlyMap<string, number> },
  policy: ExperienceSelectionPolicy,
  candidateTotal: number,
  sortAll: boolean,
): { records: ExperienceRecord[]; diagnostics: ExperienceSelectionDiagnostics } {
  const picks = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const c of ordered) counts.set(c.source.bucket, (counts.get(c.source.bucket) ?? 0) + 1);
  for (const c of selected) picks.set(c.source.bucket, (picks.get(c.source.bucket) ?? 0) + 1);
  const suppressed: string[] = [];
  for (const [key, count] of options.bucketCounts ?? counts) if (count > (picks.get(key) ?? 0)) suppressed.push(key);
  suppressed.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  return {
    records: selected.map((c) => c.record),
    diagnostics: {
      policy: clonePolicy(policy),
      candidate_count: options.candidateCount ?? candidateTotal,
      selected_count: selected.length,
      selected_ids: selected.map((c) => c.record.id),
      suppressed_source_keys: suppressed,
      selected: selected.map(toEntry),
      candidates: (sortAll ? ordered.slice().sort(compareFinal) : finalOrder(ordered)).map(toCandidate),
      candidates_complete: options.complete ?? true,
    },
  };
}

interface Candidate {
  record: ExperienceRecord;
  /** Input order: the last tie-break. */
  index: number;
  raw: number;
  source: SelectionSource;
  penalty: number;
  competitive: number;
  slot: number | null;
  reason: ExperienceExclusionReason | null;
}

interface Bucket {
  /** Eligible candidates of this bucket in selection order; `next` is the head. */
  members: Candidate[];
  next: number;
  picks: number;
  /** The head's competitive score under the bucket's current penalty. */
  competitive: number;
}

const DEFAULT_POLICY = resolveSelectionPolicy(undefined);

function withHead(bucket: Bucket, penalty: number): Bucket {
  bucket.competitive = round6(bucket.members[bucket.next]!.raw - penalty);
  return bucket;
}

function compareRanked(rawA: number, a: ExperienceRecord, rawB: number, b: ExperienceRecord): number {
  if (rawA !== rawB) return rawA > rawB ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

function compareCandidates(a: Candidate, b: Candidate): number {
  return compareRanked(a.raw, a.record, b.raw, b.record) || a.index - b.index;
}

/** The order of diagnostics.candidates: final competitive desc, then selection order. */
function compareFinal(a: Candidate, b: Candidate): number {
  if (a.competitive !== b.competitive) return a.competitive > b.competitive ? -1 : 1;
  return compareCandidates(a, b);
}

function compareHeads(a: Bucket, b: Bucket): number {
  if (a.competitive !== b.competitive) return a.competitive > b.competitive ? -1 : 1;
  return compareCandidates(a.members[a.next]!, b.members[b.next]!);
}

/** A binary min-heap of buckets under compareHeads: the best head on top. */
class BucketHeap {
  private readonly items: Bucket[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Bucket {
    return this.items[0]!;
  }

  push(item: Bucket): void {
    const a = this.items;
    let i = a.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (compareHeads(a[parent]!, item) <= 0) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = item;
  }

  pop(): void {
    const a = this.items;
    const last = a.pop()!;
    if (a.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= a.length) break;
      const right = left + 1;
      const child = right < a.length && compareHeads(a[right]!, a[left]!) < 0 ? right : left;
      if (compareHeads(last, a[child]!) <= 0) break;
      a[i] = a[child]!;
      i = child;
    }
    a[i] = last;
  }
}

function toEntry(c: Candidate): ExperienceSelectionEntry {
  return {
    id: c.record.id,
    source_key: c.source.key,
    source_kind: c.source.kind,
    raw_score: c.raw,
    competitive_score: c.competitive,
    dominance_penalty: c.penalty,
  };
}

function toCandidate(c: Candidate): ExperienceSelectionCandidate {
  return { ...toEntry(c), selected: c.slot !== null, selected_slot: c.slot, exclusion_reason: c.reason };
}

/**
 * `ordered` (selection order) re-sorted by compareFinal without a second full
 * sort: a candidate without penalty has competitive = raw, so those keep their
 * order; only the penalised ones (members of picked buckets) are sorted, then
 * the two runs are merged.
 */
function finalOrder(ordered: readonly Candidate[]): Candidate[] {
  const plain: Candidate[] = [];
  const penalised: Candidate[] = [];
  for (const c of ordered) (c.penalty === 0 ? plain : penalised).push(c);
  if (penalised.length === 0) return plain;
  penalised.sort(compareFinal);
  const out: Candidate[] = [];
  let i = 0;
  let j = 0;
  while (i < plain.length && j < penalised.length) {
    out.push(compareFinal(plain[i]!, penalised[j]!) <= 0 ? plain[i++]! : penalised[j++]!);
  }
  while (i < plain.length) out.push(plain[i++]!);
  while (j < penalised.length) out.push(penalised[j++]!);
  return out;
}

function clonePolicy(policy: ExperienceSelectionPolicy): ExperienceSelectionPolicy {
  return {
    kind: policy.kind,
    minScore: policy.minScore,
    scoreWeights: { ...policy.scoreWeights },
    antiDominanceNormalization: { ...policy.antiDominanceNormalization },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegative(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

// A nested section of the policy: null or undefined means all defaults.
function section(p: Record<string, unknown>, name: string): Record<string, unknown> {
  const value = p[name];
  if (value === undefined || value === null) return {};
  if (!isObject(value)) {
    throw invalidPolicy(`selection.policy.${name}`, 'must be an object', value, 'leave it out for the defaults');
  }
  return value;
}

function nonNegative(path: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (!isNonNegative(value)) {
    const next = `leave it out for the default (${fallback})`;
    throw invalidPolicy(`selection.policy.${path}`, 'must be a finite number >= 0', value, next);
  }
  return value + 0;
}

function invalidPolicy(field: string, problem: string, value: unknown, next: string): ExperienceStoreError {
  return new ExperienceStoreError('EXP_INVALID_INPUT', `${field} ${problem}, got ${describe(value)}; ${next}`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}
