/**
 * The competitive selection as the newer orchestrator runs it, written from
 * SPEC "Competitive selection" alone: every slot recomputes every remaining
 * candidate's penalty and competitive score and re-sorts them all. Slow and
 * plain on purpose, and shares no code with src/selection.ts (its own round6,
 * sources and comparison), so the two can disagree.
 *
 * Decisions SPEC leaves open, made as src/selection.ts documents them: a
 * candidate below the raw threshold keeps penalty 0 and competitive = raw;
 * suppressed_source_keys counts every candidate, also those below the threshold.
 */
import type { ExperienceRecord } from '../../src/record.js';
import type { ExperienceSelectionDiagnostics, ExperienceSelectionPolicy } from '../../src/selection.js';

type Row = {
  record: ExperienceRecord;
  order: number;
  kind: string;
  key: string;
  raw: number;
  penalty: number;
  competitive: number;
  slot: number | null;
  reason: string | null;
};

function oracleRound6(x: number): number {
  if (x === Infinity || x === -Infinity || Number.isNaN(x)) return 0;
  const r = Math.round(x * 1e6) / 1e6;
  return r === 0 ? 0 : r; // JSON has one zero
}

function oracleSource(r: ExperienceRecord): { kind: string; key: string } {
  if (typeof r.groupId === 'string' && r.groupId.trim().length > 0) return { kind: 'group_id', key: r.groupId.trim() };
  if (typeof r.runId === 'string' && r.runId.trim().length > 0) return { kind: 'run_id', key: r.runId.trim() };
  if (typeof r.manifestPath === 'string' && r.manifestPath.trim().length > 0) {
    return { kind: 'manifest_path', key: r.manifestPath.trim() };
  }
  return { kind: 'stamp_signature', key: r.stampSignature };
}

function desc(a: number | string, b: number | string): number {
  return a === b ? 0 : a > b ? -1 : 1;
}

function byFinalOrder(a: Row, b: Row): number {
  return (
    desc(a.competitive, b.competitive) ||
    desc(a.raw, b.raw) ||
    desc(a.record.createdAt, b.record.createdAt) ||
    -desc(a.record.id, b.record.id) ||
    a.order - b.order
  );
}

export function oracleSelect(
  candidates: readonly ExperienceRecord[],
  limit: number,
  policy: ExperienceSelectionPolicy,
): { records: ExperienceRecord[]; diagnostics: ExperienceSelectionDiagnostics } {
  const { gtScore: wG, relativeRank: wR } = policy.scoreWeights;
  const rows: Row[] = candidates.map((record, order) => {
    const raw = oracleRound6(wG * record.reward.gtScore + wR * record.reward.relativeRank);
    return { record, order, ...oracleSource(record), raw, penalty: 0, competitive: raw, slot: null, reason: null };
  });
  const min = policy.minScore;
  let remaining: Row[] = [];
  for (const row of rows) {
    if (min !== null && row.raw < min) row.reason = 'raw_score_below_min_score';
    else remaining.push(row);
  }

  const picks: Record<string, number> = {};
  const chosen: Row[] = [];
  for (let slot = 1; slot <= limit && remaining.length > 0; slot++) {
    for (const row of remaining) {
      const picked = picks[`${row.kind}:${row.key}`] ?? 0;
      row.penalty = policy.antiDominanceNormalization.enabled
        ? oracleRound6(policy.antiDominanceNormalization.strength * picked)
        : 0;
      row.competitive = oracleRound6(row.raw - row.penalty);
    }
    remaining.sort(byFinalOrder);
    const best = remaining[0]!;
    if (min !== null && best.competitive < min) {
      for (const row of remaining) row.reason = 'competitive_score_below_min_score';
      remaining = [];
      break;
    }
    best.slot = slot;
    chosen.push(best);
    picks[`${best.kind}:${best.key}`] = (picks[`${best.kind}:${best.key}`] ?? 0) + 1;
    remaining = remaining.slice(1);
  }
  for (const row of remaining) row.reason = 'outcompeted';

  const perBucket: Record<string, number> = {};
  for (const row of rows) perBucket[`${row.kind}:${row.key}`] = (perBucket[`${row.kind}:${row.key}`] ?? 0) + 1;
  const suppressed = Object.keys(perBucket)
    .filter((bucket) => perBucket[bucket]! > (picks[bucket] ?? 0))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  const entry = (row: Row) => ({
    id: row.record.id,
    source_key: row.key,
    source_kind: row.kind as ExperienceSelectionDiagnostics['selected'][number]['source_kind'],
    raw_score: row.raw,
    competitive_score: row.competitive,
    dominance_penalty: row.penalty,
  });
  return {
    records: chosen.map((row) => row.record),
    diagnostics: {
      policy: JSON.parse(JSON.stringify(policy)) as ExperienceSelectionPolicy,
      candidate_count: rows.length,
      selected_count: chosen.length,
      selected_ids: chosen.map((row) => row.record.id),
      suppressed_source_keys: suppressed,
      selected: chosen.map(entry),
      candidates: [...rows].sort(byFinalOrder).map((row) => ({
        ...entry(row),
        selected: row.slot !== null,
        selected_slot: row.slot,
        exclusion_reason: row.reason as ExperienceSelectionDiagnostics['candidates'][number]['exclusion_reason'],
      })),
      candidates_complete: true,
    },
  };
}
