/**
 * The central promise (SPEC, fetchTop): the answer equals a plain full scan of
 * the logs as they are on disk, on every path. fast-check drives a real store
 * directory through random step sequences — batches, foreign appends by an
 * older writer, garbage and partial lines, index deletion and corruption, log
 * truncation, replacement and touches, new instances, rebuilds — and after
 * every step compares several random queries with test/support/oracle.ts.
 */
import { execFileSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { appendFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { ExperienceStore, type ExperienceRecord, type ExperienceSelectionPolicyInput } from '../src/index.js';
import { resolveSelectionPolicy } from '../src/selection.js';
import { makeInput, STAMP } from './support/inputs.js';
import { oracleCompare, oracleLines, oracleRecords, oracleTasks, oracleTop, type OracleQuery } from './support/oracle.js';
import { oracleSelect } from './support/select-oracle.js';
import { test } from './support/temp-dir.js';

// Code-unit order (B < a < c) differs from locale order, and task order decides ties across tasks.
const TASKS = ['a-task', 'B-task', 'c_task'] as const;
const MAX_K = 4;
/** Bytes before an index's offset that its fingerprint covers (docs/index-format.md). */
const FINGERPRINT_WINDOW = 4096;
const START_MS = Date.UTC(2023, 10, 14, 22, 13, 20); // 2023-11-14T22:13:20.000Z
const NUM_RUNS = Number(process.env.DIFFERENTIAL_RUNS ?? 400);
const MAX_COMMANDS = 40;

// Few distinct values, so scores, createdAt and ids tie often.
const REWARDS = [0, 0.1, 0.2, 0.25, 0.3, 0.5, 1, -0.5] as const;
const MIN_REWARDS = [-1, 0, 0.3, 0.30000000000000004, 0.5, 0.75, 1.25] as const;
const CREATED_AT = [new Date(START_MS).toISOString(), new Date(START_MS + 1).toISOString(), '2030-01-01T00:00:00.000Z', 'not a date'];

interface SelectionQuery {
  domain: string;
  limit: number;
  minScore?: number;
  taskId?: string;
  policy?: ExperienceSelectionPolicyInput;
  full: boolean;
}

interface Query {
  query: OracleQuery;
  /** Also ask selectTop this. */
  select?: SelectionQuery;
  /** Which of the live store instances answers (modulo their number). */
  via: number;
  /** Ask a new instance instead, with this indexTopK: it reads the index from disk (no memory of it). */
  cold?: number;
}

interface Real {
  outDir: string;
  runsDir: string;
  /** Live instances, newest first: older ones keep their in-memory index across steps. */
  stores: Array<{ store: ExperienceStore; label: string }>;
  nowMs: number;
  touches: number;
  foreignRecords: number;
  savedIndexes: Buffer[][];
  steps: number;
  queries: number;
  /** How the answers were obtained, summed over all queries. */
  paths: { indexHits: number; tails: number; fullScans: number; selectIndexHits: number; selections: number };
}

type Model = Record<string, never>;

const logOf = (real: Real, task: number) => path.join(real.outDir, TASKS[task]!, 'experiences.jsonl');
const indexOf = (real: Real, task: number) => path.join(real.outDir, TASKS[task]!, 'experiences.top.json');

function newStore(real: Real, options: { useIndex: boolean; k: number }): ExperienceStore {
  return new ExperienceStore({
    outDir: real.outDir,
    runsDir: real.runsDir,
    indexTopK: options.k,
    useIndex: options.useIndex,
    now: () => new Date(real.nowMs),
    lockRetry: { maxAttempts: 1 },
  });
}

function addStore(real: Real, options: { useIndex: boolean; k: number }): void {
  const store = newStore(real, options);
  real.stores.unshift({ store, label: `store(k=${options.k}${options.useIndex ? '' : ', no index'})` });
  real.stores.length = Math.min(real.stores.length, 3);
}

async function expectSameAsFullScan(real: Real, step: string, queries: readonly Query[]): Promise<void> {
  for (const { query, via, cold } of queries) {
    const { store, label } =
      cold === undefined ? real.stores[via % real.stores.length]! : { store: newStore(real, { useIndex: true, k: cold }), label: `a new store(k=${cold})` };
    const want = await oracleTop(real.outDir, query);
    const got = await store.fetchTopDetailed(query);
    real.queries++;
    real.paths.indexHits += got.stats.indexHits;
    real.paths.tails += got.stats.tails;
    real.paths.fullScans += got.stats.fullScans;
    expect(got.records, `after step ${step}, query ${JSON.stringify(query)} via ${label}`).toEqual(want);
  }
  for (const { select, via, cold } of queries) {
    if (select === undefined) continue;
    const { store, label } =
      cold === undefined ? real.stores[via % real.stores.length]! : { store: newStore(real, { useIndex: true, k: cold }), label: `a new store(k=${cold})` };
    const { full, ...q } = select;
    const context = `after step ${step}, selectTop ${JSON.stringify(select)} via ${label}`;
    const want = await oracleSelection(real.outDir, select);
    const got = await store.selectTop(q, { diagnostics: full ? 'full' : 'summary' });
    real.paths.selections++;
    if (got.stats.indexHits > 0 && got.stats.bytesRead === 0) real.paths.selectIndexHits++;
    expect(got.records, context).toEqual(want.records);
    const d = got.diagnostics;
    const w = want.diagnostics;
    expect({ ...d, candidates: [], suppressed_source_keys: [], candidates_complete: true }, context).toEqual({
      ...w,
      candidates: [],
      suppressed_source_keys: [],
      candidates_complete: true,
    });
    if (d.candidates_complete) {
      expect(d.candidates, context).toEqual(w.candidates);
      expect(d.suppressed_source_keys, context).toEqual(w.suppressed_source_keys);
    } else {
      // A partial list: every candidate it names is described as the full run describes it, in the same order.
      expect(full, `${context}: full diagnostics must be complete`).toBe(false);
      const positions = d.candidates.map((c) => w.candidates.findIndex((o) => isDeepStrictEqual(o, c)));
      expect(positions.every((p) => p >= 0), context).toBe(true);
      expect(positions, context).toEqual([...positions].sort((a, b) => a - b));
      for (const key of d.suppressed_source_keys) expect(w.suppressed_source_keys, context).toContain(key);
    }
  }
}

/** The selection over a plain full scan: every record of the domain, task order then log order, through the naive greedy. */
async function oracleSelection(outDir: string, q: SelectionQuery) {
  const policy = resolveSelectionPolicy(q.policy, q.minScore);
  const domain = q.domain.trim();
  const candidates: ExperienceRecord[] = [];
  if (domain !== '' && q.limit > 0) {
    for (const taskId of q.taskId !== undefined ? [q.taskId] : await oracleTasks(outDir)) {
      for (const record of await oracleRecords(path.join(outDir, taskId, 'experiences.jsonl'))) {
        if (record.domain === domain) candidates.push(record);
      }
    }
  }
  return oracleSelect(candidates, q.limit, policy);
}

/** One step: an action on the directory, then every query checked against the oracle. */
class Step implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly label: string,
    readonly act: (real: Real) => Promise<void>,
    readonly queries: readonly Query[],
  ) {}

  check(): boolean {
    return true;
  }

  async run(_model: Model, real: Real): Promise<void> {
    real.steps++;
    await this.act(real);
    await expectSameAsFullScan(real, `#${real.steps} ${this.label}`, this.queries);
  }

  toString(): string {
    return this.label;
  }
}

// ---- record lines, as the store and as older writers write them ----

function recordOf(fields: {
  id: string;
  createdAt: string;
  domain: string;
  gtScore: number;
  relativeRank: number;
  task: number;
  extra?: boolean;
  /** Makes records that tie on every ranking key still tell apart, so their order is checked. */
  seq?: number;
  /** Which provenance fields are set: sources of competitive selection. */
  source?: number;
}): ExperienceRecord {
  const source = SOURCES[(fields.source ?? 0) % SOURCES.length]!;
  return {
    id: fields.id,
    runId: source.runId ?? `run-${fields.id}`,
    taskId: TASKS[fields.task]!,
    epoch: fields.extra ? null : 3,
    groupId: source.groupId,
    summary32: `foreign record ${fields.id} #${fields.seq ?? 0}`,
    reward: { gtScore: fields.gtScore, relativeRank: fields.relativeRank },
    toolStats: [{ tool: 'shell', tokens: 10, latencyMs: 1.5, costUsd: 0.001 }],
    stampSignature: STAMP,
    domain: fields.domain,
    createdAt: fields.createdAt,
    manifestPath: source.manifestPath ?? 'older-writer/manifest.json',
    ...(fields.extra ? { writer: 'older', tags: ['x'] } : {}),
  };
}

/** Provenance variants: groups, blank and padded ids, one key under several kinds. */
const SOURCES: ReadonlyArray<{ groupId: string | null; runId?: string; manifestPath?: string }> = [
  { groupId: null },
  { groupId: 'g1' },
  { groupId: ' g1 ' },
  { groupId: '  ', runId: 'shared' },
  { groupId: null, runId: ' ', manifestPath: 'shared' },
  { groupId: null, runId: '', manifestPath: '' },
  { groupId: 'shared' },
];

// Now and then a reward where selection's round6 overflows (SPEC: non-finite -> 0): those domains must scan.
const rewardArb = fc.oneof({ weight: 40, arbitrary: fc.constantFrom(...REWARDS) }, { weight: 1, arbitrary: fc.constantFrom(1e301, -1e305) });
const taskArb = fc.integer({ min: 0, max: TASKS.length - 1 });

const foreignRecordArb = fc
  .record({
    id: fc.constantFrom('exp-1', 'exp-1', 'exp-10', 'exp-A'),
    createdAt: fc.constantFrom(CREATED_AT[0]!, ...CREATED_AT),
    domain: fc.constantFrom('alpha', 'alpha', 'beta', 'gamma', ' alpha', 'ALPHA'),
    gtScore: rewardArb,
    relativeRank: rewardArb,
    extra: fc.boolean(),
    source: fc.nat({ max: SOURCES.length - 1 }),
  })
  .map((f) => (task: number, seq: number) => JSON.stringify(recordOf({ ...f, task, seq })));

/** Lines a reader must skip (malformed) or ignore (blank). */
const BAD_LINES: ReadonlyArray<(task: number) => string> = [
  () => 'not json',
  () => '{"id":',
  () => '[]',
  () => 'null',
  () => '42',
  () => '"a string"',
  () => '{}',
  () => '',
  () => '   ',
  () => '\t',
  () => '\u3000',
  () => '\r',
  (task) => JSON.stringify({ ...recordOf(base(task)), reward: { gtScore: '1', relativeRank: 0 } }),
  (task) => JSON.stringify({ ...recordOf(base(task)), domain: '' }),
  (task) => JSON.stringify({ ...recordOf(base(task)), epoch: 'one' }),
  (task) => JSON.stringify({ ...recordOf(base(task)), groupId: 5 }),
  (task) => JSON.stringify({ ...recordOf(base(task)), toolStats: [1] }),
  (task) => JSON.stringify([recordOf(base(task))]),
  (task) => {
    const { createdAt: _dropped, ...rest } = recordOf(base(task));
    return JSON.stringify(rest);
  },
  // 1e999 parses to Infinity: not a finite number, so not a record.
  (task) => JSON.stringify(recordOf(base(task))).replace('"gtScore":1', '"gtScore":1e999'),
];

function base(task: number) {
  return { id: 'exp-bad', createdAt: CREATED_AT[0]!, domain: 'alpha', gtScore: 1, relativeRank: 0, task };
}

type ForeignLine =
  | { kind: 'record'; make: (task: number, seq: number) => string; crlf: boolean; indent: boolean }
  | { kind: 'duplicate'; pick: number }
  | { kind: 'bad'; which: number }
  | { kind: 'bytes'; bytes: Uint8Array };

const foreignLineArb: fc.Arbitrary<ForeignLine> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('record' as const), make: foreignRecordArb, crlf: fc.boolean(), indent: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('bad' as const), which: fc.nat({ max: BAD_LINES.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 24 }) }) },
);

async function foreignBytes(real: Real, task: number, line: ForeignLine): Promise<Buffer> {
  switch (line.kind) {
    case 'record':
      return Buffer.from(`${line.indent ? '  ' : ''}${line.make(task, real.foreignRecords++)}${line.crlf ? '\r\n' : '\n'}`);
    case 'duplicate': {
      // The same line again: a distinct record with the same id (SPEC: duplicates are distinct).
      const lines = await oracleLines(logOf(real, task));
      return Buffer.from(lines.length === 0 ? 'null\n' : `${lines[line.pick % lines.length]!}\n`);
    }
    case 'bad':
      return Buffer.from(`${BAD_LINES[line.which]!(task)}\n`);
    case 'bytes':
      return Buffer.concat([Buffer.from(line.bytes), Buffer.from('\n')]);
  }
}

// ---- index surgery ----

type Json = Record<string, unknown>;

interface Forged {
  prefix: Json;
  header: Json;
  /** Per header domain, in order: the top section's records and the pool section's lines. */
  sections: Array<{ top: Json[]; pool: unknown[][] }>;
}

/** Edit an index and recompute every checksum, so only a check beyond the checksums can reject it. */
function forge(bytes: Buffer, edit: (f: Forged) => void): Buffer {
  let f: Forged;
  try {
    const text = bytes.toString('utf8');
    const prefixEnd = text.indexOf('\n');
    const prefix = JSON.parse(text.slice(0, prefixEnd)) as Json;
    const headerEnd = text.indexOf('\n', prefixEnd + 1);
    const header = JSON.parse(text.slice(prefixEnd + 1, headerEnd)) as Json;
    const body = bytes.subarray(Buffer.byteLength(text.slice(0, headerEnd + 1)));
    const lines = (range: [number, number]) =>
      body
        .subarray(range[0], range[0] + range[1])
        .toString('utf8')
        .split('\n')
        .slice(0, -1)
        .map((l) => JSON.parse(l) as unknown);
    const domains = header.domains as Array<{ top: [number, number]; pool: [number, number] }>;
    f = { prefix, header, sections: domains.map((d) => ({ top: lines(d.top) as Json[], pool: lines(d.pool) as unknown[][] })) };
  } catch {
    return bytes; // already not an index: nothing to forge
  }
  edit(f);
  const parts: Buffer[] = [];
  let at = 0;
  const section = (lines: unknown[]): [number, number, string] => {
    const b = Buffer.from(lines.map((l) => JSON.stringify(l) + '\n').join(''));
    parts.push(b);
    const s: [number, number, string] = [at, b.length, (crc32(b) >>> 0).toString(16).padStart(8, '0')];
    at += b.length;
    return s;
  };
  const domains = f.header.domains as Json[];
  f.sections.forEach((sec, i) => {
    if (domains[i] === undefined) return;
    domains[i]!.top = section(sec.top);
    domains[i]!.pool = section(sec.pool);
  });
  const headerLine = Buffer.from(JSON.stringify(f.header) + '\n');
  f.prefix.header = { bytes: headerLine.length, crc32: (crc32(headerLine) >>> 0).toString(16).padStart(8, '0') };
  return Buffer.concat([Buffer.from(JSON.stringify(f.prefix) + '\n'), headerLine, ...parts]);
}

/**
 * Forgeries a reader must detect (stamp, schema, ranking or length checks). An
 * index that passes every check and matches the log is trusted by design, so
 * none of these is an undetectable lie (e.g. swapping two records that tie).
 */
const FORGERIES: Record<string, (f: Forged) => void> = {
  'other inode': ({ header: h }) => ((h.log as Json).ino = '1'),
  'size beyond the log': ({ header: h }) => ((h.log as Json).size = ((h.log as Json).size as number) + 1),
  'offset moved back': ({ header: h }) => {
    const log = h.log as Json;
    if ((log.offset as number) > 0) log.offset = (log.offset as number) - 1;
    else log.ino = '1';
  },
  'other fingerprint': ({ header: h }) => ((h.log as Json).fingerprint = `crc32:${'0'.repeat(8)}`),
  'counts off by one': ({ header: h }) => (h.records = (h.records as number) + 1),
  'unsupported version': ({ prefix }) => (prefix.version = 3),
  'a record dropped': ({ sections }) => {
    for (const s of sections) s.top.pop();
  },
  'records unranked': ({ header: h, sections }) => {
    let swapped = false;
    for (const s of sections) {
      const top = s.top as ExperienceRecord[];
      for (let i = 0; i + 1 < top.length && !swapped; i++) {
        if (oracleCompare(top[i]!, top[i + 1]!) !== 0) {
          [top[i], top[i + 1]] = [top[i + 1]!, top[i]!];
          swapped = true;
        }
      }
    }
    if (!swapped) (h.log as Json).ino = '1';
  },
  'a record of another domain': ({ sections }) => {
    for (const s of sections) for (const r of s.top) r.domain = `${r.domain as string}-other`;
  },
  'pool out of order': ({ header: h, sections }) => {
    const s = sections.find((x) => x.pool.length > 1);
    if (s === undefined) (h.log as Json).ino = '1';
    else s.pool.reverse();
  },
  'pool refers past the top': ({ header: h, sections }) => {
    const s = sections.find((x) => x.pool.length > 0);
    if (s === undefined) (h.log as Json).ino = '1';
    else s.pool[0]![1] = s.top.length + 5;
  },
};

type Corruption =
  | { kind: 'flip'; at: number[]; xor: number }
  | { kind: 'cut'; fraction: number }
  | { kind: 'junk'; text: string }
  | { kind: 'forge'; name: string }
  | { kind: 'other-task'; from: number }
  | { kind: 'restore-old'; pick: number };

const corruptionArb: fc.Arbitrary<Corruption> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.array(fc.nat(), { minLength: 1, maxLength: 3 }), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }) }),
  fc.record({
    kind: fc.constant('junk' as const),
    text: fc.constantFrom(
      '',
      '{}\n',
      '[]\n',
      'null\n',
      '{"crc32":"00000000","bytes":0}\n',
      '{"format":"experience-store/top-index","version":2,"header":{"bytes":0,"crc32":"00000000"}}\n',
    ),
  }),
  fc.record({ kind: fc.constant('forge' as const), name: fc.constantFrom(...Object.keys(FORGERIES)) }),
  fc.record({ kind: fc.constant('other-task' as const), from: taskArb }),
  fc.record({ kind: fc.constant('restore-old' as const), pick: fc.nat() }),
);

async function readOrUndefined(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch {
    return undefined;
  }
}

async function corruptIndex(real: Real, task: number, c: Corruption): Promise<void> {
  const file = indexOf(real, task);
  const bytes = await readOrUndefined(file);
  switch (c.kind) {
    case 'flip': {
      if (bytes === undefined || bytes.length === 0) return;
      for (const at of c.at) bytes[at % bytes.length] = bytes[at % bytes.length]! ^ c.xor;
      return writeFile(file, bytes);
    }
    case 'cut':
      if (bytes === undefined) return;
      return writeFile(file, bytes.subarray(0, Math.floor(c.fraction * bytes.length)));
    case 'junk':
      await mkdir(path.dirname(file), { recursive: true });
      return writeFile(file, c.text);
    case 'forge':
      if (bytes === undefined) return;
      return writeFile(file, forge(bytes, FORGERIES[c.name]!));
    case 'other-task': {
      const other = await readOrUndefined(indexOf(real, c.from));
      if (other === undefined || c.from === task) return;
      await mkdir(path.dirname(file), { recursive: true });
      return writeFile(file, other);
    }
    case 'restore-old': {
      // An index this task once had: valid, and a pure function of an older log prefix.
      const saved = real.savedIndexes[task]!;
      if (saved.length === 0) return;
      return writeFile(file, saved[c.pick % saved.length]!);
    }
  }
}

// ---- log surgery ----

type Replacement = 'copy' | 'drop-first' | 'drop-last' | 'reverse' | 'add-record' | 'empty';

async function replaceLog(real: Real, task: number, how: Replacement): Promise<void> {
  const log = logOf(real, task);
  const old = await readOrUndefined(log);
  if (old === undefined) return;
  const text = old.toString('latin1');
  const lines = text.split('\n');
  const rest = lines.pop()!; // after the last newline: a partial line, or ''
  const replaced = {
    copy: () => text,
    'drop-first': () => [...lines.slice(1), rest].join('\n'),
    'drop-last': () => [...lines.slice(0, -1), rest].join('\n'),
    reverse: () => [...lines.reverse(), rest].join('\n'),
    'add-record': () =>
      text + (rest === '' ? '' : '\n') + JSON.stringify(recordOf({ ...base(task), id: 'exp-replaced', gtScore: 0.5 })) + '\n',
    empty: () => '',
  }[how]();
  // A new file renamed over the log: another inode, as a restore from backup or a compaction leaves.
  const fresh = `${log}.replacement`;
  await writeFile(fresh, Buffer.from(replaced, 'latin1'));
  await rename(fresh, log);
}

// ---- the steps ----

const queryArb: fc.Arbitrary<Query> = fc.record({
  query: fc.record({
    domain: fc.constantFrom('alpha', 'beta', 'gamma', ' alpha ', 'beta\t', 'ALPHA', 'nope', '', '  '),
    limit: fc.integer({ min: -1, max: MAX_K + 3 }),
    minReward: fc.option(fc.constantFrom(...MIN_REWARDS), { nil: undefined, freq: 3 }),
    taskId: fc.option(fc.constantFrom(...TASKS), { nil: undefined, freq: 2 }),
  }),
  select: fc.option(
    fc.record({
      domain: fc.constantFrom('alpha', 'beta', ' alpha ', 'gamma', 'nope', ''),
      limit: fc.integer({ min: -1, max: MAX_K + 2 }),
      minScore: fc.option(fc.constantFrom(0, 0.25, 0.5, 1), { nil: undefined, freq: 2 }),
      taskId: fc.option(fc.constantFrom(...TASKS), { nil: undefined, freq: 2 }),
      policy: fc.option(
        fc.record(
          {
            antiDominanceNormalization: fc.record({ enabled: fc.boolean(), strength: fc.constantFrom(0, 0.1, 0.5, 1, 1e303) }, { requiredKeys: [] }),
            scoreWeights: fc.record({ gtScore: fc.constantFrom(1, 0.5), relativeRank: fc.constantFrom(1, 0, 2) }),
          },
          { requiredKeys: [] },
        ),
        { nil: undefined, freq: 2 },
      ),
      full: fc.boolean(),
    }),
    { nil: undefined, freq: 2 },
  ),
  via: fc.nat({ max: 5 }),
  cold: fc.option(fc.integer({ min: 1, max: MAX_K }), { nil: undefined, freq: 3 }),
});
const queriesArb = fc.array(queryArb, { minLength: 3, maxLength: 5 });

function stepArb<T>(params: fc.Arbitrary<T>, label: (p: T) => string, act: (p: T, real: Real) => Promise<void>) {
  return fc.tuple(params, queriesArb).map(([p, queries]) => new Step(label(p), (real) => act(p, real), queries));
}

const recordBatchStep = stepArb(
  fc.record({
    task: taskArb,
    via: fc.nat({ max: 5 }),
    // 0: the same createdAt as the previous batch (ties then fall to the id).
    advanceMs: fc.constantFrom(0, 0, 1, 1000),
    inputs: fc.array(
      fc.record({
        domain: fc.constantFrom('alpha', 'beta', 'gamma', '  alpha', 'beta\t', ' gamma '),
        gtScore: rewardArb,
        relativeRank: rewardArb,
        source: fc.nat({ max: SOURCES.length - 1 }),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  }),
  (p) => `recordBatch(${TASKS[p.task]}, ${p.inputs.length} records, +${p.advanceMs}ms, via ${p.via})`,
  async (p, real) => {
    real.nowMs += p.advanceMs;
    const { store } = real.stores[p.via % real.stores.length]!;
    const inputs = p.inputs.map((i, n) =>
      makeInput({
        runId: SOURCES[i.source]!.runId ?? `run-${n}`,
        groupId: SOURCES[i.source]!.groupId,
        taskId: TASKS[p.task],
        domain: i.domain,
        reward: { gtScore: i.gtScore, relativeRank: i.relativeRank },
      }),
    );
    const written = await store.recordBatch(inputs, SOURCES[p.inputs[0]!.source]!.manifestPath ?? 'manifest.json');
    expect(written.map((r) => r.domain)).toEqual(p.inputs.map((i) => i.domain.trim()));
    // Acknowledged means on disk: the batch is the log's last lines, whatever the log ended with before.
    const lines = await oracleLines(logOf(real, p.task));
    expect(lines.slice(-written.length).map((l) => JSON.parse(l) as unknown), 'the batch is the end of the log').toEqual(written);
  },
);

const foreignAppendStep = stepArb(
  fc.record({ task: taskArb, lines: fc.array(foreignLineArb, { minLength: 1, maxLength: 4 }) }),
  (p) => `foreignAppend(${TASKS[p.task]}, ${p.lines.map((l) => l.kind).join('+')})`,
  async (p, real) => {
    const parts: Buffer[] = [];
    for (const line of p.lines) parts.push(await foreignBytes(real, p.task, line));
    await mkdir(path.dirname(logOf(real, p.task)), { recursive: true });
    // Unlocked fs.appendFile, as an older writer appends.
    await appendFile(logOf(real, p.task), Buffer.concat(parts));
  },
);

const partialLineStep = stepArb(
  fc.record({
    task: taskArb,
    kind: fc.constantFrom('record-prefix', 'whole-record', 'bytes'),
    cut: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }).map((b) => b.map((x) => (x === 0x0a ? 0x20 : x))),
  }),
  (p) => `partialLine(${TASKS[p.task]}, ${p.kind})`,
  async (p, real) => {
    const record = JSON.stringify(recordOf({ ...base(p.task), id: 'exp-partial', gtScore: 0.25 }));
    const text =
      p.kind === 'record-prefix'
        ? Buffer.from(record.slice(0, Math.max(1, Math.floor(p.cut * record.length))))
        : p.kind === 'whole-record'
          ? Buffer.from(record) // becomes a record once the next write terminates it
          : Buffer.from(p.bytes);
    await mkdir(path.dirname(logOf(real, p.task)), { recursive: true });
    await appendFile(logOf(real, p.task), text);
  },
);

const deleteIndexStep = stepArb(
  taskArb,
  (task) => `deleteIndex(${TASKS[task]})`,
  async (task, real) => {
    await rm(indexOf(real, task), { force: true });
  },
);

const saveIndexStep = stepArb(
  taskArb,
  (task) => `saveIndex(${TASKS[task]})`,
  async (task, real) => {
    const bytes = await readOrUndefined(indexOf(real, task));
    if (bytes !== undefined) real.savedIndexes[task]!.push(bytes);
  },
);

const corruptIndexStep = stepArb(
  fc.record({ task: taskArb, corruption: corruptionArb }),
  (p) => `corruptIndex(${TASKS[p.task]}, ${JSON.stringify(p.corruption)})`,
  (p, real) => corruptIndex(real, p.task, p.corruption),
);

const truncateLogStep = stepArb(
  fc.record({ task: taskArb, fraction: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }) }),
  (p) => `truncateLog(${TASKS[p.task]}, ${p.fraction.toFixed(3)})`,
  async (p, real) => {
    const bytes = await readOrUndefined(logOf(real, p.task));
    if (bytes !== undefined) await truncate(logOf(real, p.task), Math.floor(p.fraction * bytes.length));
  },
);

const replaceLogStep = stepArb(
  fc.record({ task: taskArb, how: fc.constantFrom<Replacement>('copy', 'drop-first', 'drop-last', 'reverse', 'add-record', 'empty') }),
  (p) => `replaceLog(${TASKS[p.task]}, ${p.how})`,
  (p, real) => replaceLog(real, p.task, p.how),
);

/**
 * Change the end of the log in place, keeping its size, and — when the mtime is
 * recent — its mtime to the nanosecond: what a file system with a coarse clock
 * shows for two writes within one tick (docs/index-format.md, "The racy case").
 * Only bytes a fingerprint covers change: the last complete line, or a partial
 * tail completed by a newline.
 */
const rewriteInPlaceStep = stepArb(
  fc.record({ task: taskArb, completePartial: fc.boolean() }),
  (p) => `rewriteInPlace(${TASKS[p.task]}, ${p.completePartial ? 'complete the partial line' : 'break the last line'})`,
  async (p, real) => {
    const log = logOf(real, p.task);
    const bytes = await readOrUndefined(log);
    if (bytes === undefined || bytes.length === 0) return;
    const before = await stat(log, { bigint: true });
    const lastNewline = bytes.lastIndexOf(0x0a);
    let at: number;
    let byte: number;
    if (p.completePartial && lastNewline < bytes.length - 1) {
      [at, byte] = [bytes.length - 1, 0x0a];
    } else {
      if (lastNewline <= 0) return;
      at = bytes.lastIndexOf(0x0a, lastNewline - 1) + 1; // first byte of the last complete line
      if (at === lastNewline || lastNewline + 1 - at > FINGERPRINT_WINDOW) return;
      byte = bytes[at] === 0x7b ? 0x20 : 0x7b; // '{' <-> ' ': a record becomes malformed, or back
    }
    const handle = await open(log, 'r+');
    try {
      await handle.write(Buffer.from([byte]), 0, 1, at);
    } finally {
      await handle.close();
    }
    // An old mtime kept as it was would be a deliberate forgery, not a coarse clock.
    if (Date.now() - Number(before.mtimeMs) < 1000) {
      const ns = before.mtimeNs;
      execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, log]);
      const after = await stat(log, { bigint: true });
      expect(after.mtimeNs, 'touch restores the mtime to the nanosecond').toBe(before.mtimeNs);
    }
  },
);

const touchLogStep = stepArb(
  fc.record({ task: taskArb, past: fc.boolean() }),
  (p) => `touchLog(${TASKS[p.task]}, ${p.past ? 'past' : 'future'})`,
  async (p, real) => {
    // Every touch sets an mtime no earlier state had: same size, other mtime.
    // Past mtimes also make in-memory indexes non-racy, so they are trusted by stat.
    const seconds = (p.past ? 1_600_000_000 : 4_000_000_000) + real.touches++;
    await utimes(logOf(real, p.task), seconds, seconds).catch(() => undefined);
  },
);

const removeLogStep = stepArb(
  taskArb,
  (task) => `removeLog(${TASKS[task]})`,
  async (task, real) => {
    await unlink(logOf(real, task)).catch(() => undefined);
  },
);

const newStoreStep = stepArb(
  fc.record({ useIndex: fc.constantFrom(true, true, true, false), k: fc.integer({ min: 1, max: MAX_K }) }),
  (p) => `newStore(k=${p.k}${p.useIndex ? '' : ', useIndex: false'})`,
  async (p, real) => addStore(real, p),
);

const rebuildStep = stepArb(
  fc.record({ task: fc.option(taskArb, { nil: undefined }), via: fc.nat({ max: 5 }) }),
  (p) => `rebuildIndex(${p.task === undefined ? 'all' : TASKS[p.task]}, via ${p.via})`,
  async (p, real) => {
    const { store } = real.stores[p.via % real.stores.length]!;
    await store.rebuildIndex(p.task === undefined ? undefined : TASKS[p.task]);
  },
);

const allSteps = [
  recordBatchStep,
  recordBatchStep,
  recordBatchStep,
  foreignAppendStep,
  foreignAppendStep,
  partialLineStep,
  deleteIndexStep,
  saveIndexStep,
  corruptIndexStep,
  corruptIndexStep,
  truncateLogStep,
  replaceLogStep,
  touchLogStep,
  rewriteInPlaceStep,
  removeLogStep,
  newStoreStep,
  rebuildStep,
];

/** Directories and files under outDir that are not tasks: a reader must ignore them. */
async function addDecoys(outDir: string): Promise<void> {
  const line = JSON.stringify(recordOf({ ...base(0), id: 'exp-decoy', gtScore: 100 })) + '\n';
  for (const name of ['.hidden', 'bad:task']) {
    await mkdir(path.join(outDir, name), { recursive: true });
    await writeFile(path.join(outDir, name, 'experiences.jsonl'), line);
  }
  await writeFile(path.join(outDir, 'z-not-a-directory'), line);
}

describe('fetchTop equals a plain full scan after any sequence of steps', () => {
  test('batches, foreign appends, garbage, partial lines, index and log surgery, new instances, rebuilds', async ({ dir }) => {
    const totals = { runs: 0, steps: 0, queries: 0, paths: { indexHits: 0, tails: 0, fullScans: 0, selectIndexHits: 0, selections: 0 } };
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: MAX_K }), fc.commands(allSteps, { maxCommands: MAX_COMMANDS, size: 'max' }), async (k, steps) => {
        const root = await mkdtemp(path.join(dir, 'run-'));
        try {
          const real: Real = {
            outDir: path.join(root, 'out'),
            runsDir: path.join(root, '.runs'),
            stores: [],
            nowMs: START_MS,
            touches: 0,
            foreignRecords: 0,
            savedIndexes: TASKS.map(() => []),
            steps: 0,
            queries: 0,
            paths: totals.paths,
          };
          await addDecoys(real.outDir);
          addStore(real, { useIndex: true, k });
          await fc.asyncModelRun(() => ({ model: {}, real }), steps);
          totals.runs++;
          totals.steps += real.steps;
          totals.queries += real.queries;
        } finally {
          await rm(root, { recursive: true, force: true });
        }
      }),
      // DIFFERENTIAL_SEED=<n> replays a run fast-check reported (with its seed).
      { numRuns: NUM_RUNS, ...(process.env.DIFFERENTIAL_SEED ? { seed: Number(process.env.DIFFERENTIAL_SEED) } : {}) },
    );
    // Reported so a reader of the log sees how much was checked.
    console.info(`differential: ${totals.runs} runs, ${totals.steps} steps, ${totals.queries} queries, ${JSON.stringify(totals.paths)}`);
    // Every path was compared with the oracle, not only the full scan.
    expect(totals.steps).toBeGreaterThan(NUM_RUNS);
    expect(totals.paths.indexHits).toBeGreaterThan(0);
    expect(totals.paths.tails).toBeGreaterThan(0);
    expect(totals.paths.fullScans).toBeGreaterThan(0);
    // Selection was answered from the index (no log bytes) as well as by scans.
    expect(totals.paths.selectIndexHits).toBeGreaterThan(0);
    expect(totals.paths.selections).toBeGreaterThan(totals.paths.selectIndexHits);
  }, 240_000);

  test('a batch after garbage and a partial line leaves a fresh index that equals a full scan', async ({ dir }) => {
    // SPEC: every successful recordBatch leaves a fresh index, also after an older writer's mess.
    const outDir = path.join(dir, 'out');
    const store = new ExperienceStore({ outDir, runsDir: path.join(dir, '.runs'), indexTopK: 2 });
    await store.recordBatch([makeInput({ taskId: 'a-task' })], 'm.json');
    await appendFile(path.join(outDir, 'a-task', 'experiences.jsonl'), 'garbage\n{"partial":');
    await store.recordBatch([makeInput({ taskId: 'a-task', reward: { gtScore: 2, relativeRank: 0 } })], 'm.json');
    const fresh = new ExperienceStore({ outDir, runsDir: path.join(dir, '.runs') });
    const result = await fresh.fetchTopDetailed({ domain: 'implementation', limit: 2, taskId: 'a-task' });
    expect(result.stats).toMatchObject({ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0 });
    expect(result.records).toEqual(await oracleTop(outDir, { domain: 'implementation', limit: 2 }));
    // Selection with the default weights and limit <= K is answered from the same index.
    const selection = await new ExperienceStore({ outDir, runsDir: path.join(dir, '.runs') }).selectTop({ domain: 'implementation', limit: 2 });
    expect(selection.stats).toMatchObject({ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0 });
    expect(selection.records).toEqual((await oracleSelection(outDir, { domain: 'implementation', limit: 2, full: false })).records);
  });
});
