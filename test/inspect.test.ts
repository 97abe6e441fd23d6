/**
 * store.verify() and store.stats(), called as an orchestrator would, in process:
 * plain reports, no printing, and nothing created unless `fix` is set.
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { ExperienceStore, ExperienceStoreError, type TaskReport } from '../src/index.js';
import { appendLines, domainLine, editIndex, makeSampleStore, sha256 } from './support/cli-store.js';
import { makeInput } from './support/inputs.js';
import { test } from './support/temp-dir.js';

function filesUnder(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files[path.relative(dir, path.join(entry.parentPath, entry.name))] = sha256(path.join(entry.parentPath, entry.name));
  }
  return files;
}

describe('store.verify', () => {
  test('reports every task sound on indexes the store wrote, with what each index covers', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    const reports = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).verify();
    expect(reports).toEqual([
      {
        taskId: 'task-a',
        ok: true,
        index: { state: 'fresh', k: 16, offset: readFileSync(s.logOf('task-a')).length, records: 12, domainCount: 3 },
        problems: [],
      },
      expect.objectContaining({ taskId: 'task-b', ok: true, problems: [] }),
    ]);
    // Plain data: what `verify --json` prints is exactly this.
    expect(JSON.parse(JSON.stringify(reports))).toEqual(reports);
  });

  test('finds a tampered record, naming the domain, and reads only: no runs directory, no file changed', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    editIndex(s.indexOf('task-b'), (_header, domains) => {
      domainLine(domains, 'review').top[1]!.summary32 = 'forged';
    });
    rmSync(s.runsDir, { recursive: true });
    const before = filesUnder(s.outDir);

    const [a, b] = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).verify();
    expect(a!.ok).toBe(true);
    expect(b).toMatchObject({ taskId: 'task-b', ok: false, index: { state: 'fresh' } });
    expect(b!.problems).toEqual([{ domain: 'review', message: expect.stringMatching(/^top\[1\] \(exp-\S+\) differs from the log in summary32$/) }]);
    expect(b!.fix).toBeUndefined();
    expect(existsSync(s.runsDir)).toBe(false);
    expect(filesUnder(s.outDir)).toEqual(before);
  });

  test('fails on an invalid index even when its log is missing', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    rmSync(s.logOf('task-a'));
    writeFileSync(s.indexOf('task-a'), 'not an index\n');
    const [report] = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).verify({ taskId: 'task-a' });
    expect(report).toEqual({
      taskId: 'task-a',
      ok: false,
      index: { state: 'invalid', reason: 'not an experience-store index' },
      problems: [{ message: 'index invalid: not an experience-store index (beside no log)' }],
    });
  });

  test('a valid index beside no log, a missing index and a stale one are sound', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a', 'task-b', 'task-c'] });
    rmSync(s.logOf('task-a'));
    rmSync(s.indexOf('task-b'));
    const grown = JSON.stringify({ ...makeInput({ taskId: 'task-c' }), id: 'exp-foreign' });
    appendLines(s.logOf('task-c'), [grown]);

    const reports = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).verify();
    expect(reports.map((r) => [r.taskId, r.ok, r.index.state, r.problems])).toEqual([
      ['task-a', true, 'no-log', []],
      ['task-b', true, 'missing', []],
      ['task-c', true, 'stale', []],
    ]);
    expect(reports[2]!.index.staleBytes).toBe(Buffer.byteLength(grown) + 1);
  });

  test('fix rebuilds only the failing index, keeping its K, and reports the check after the rebuild', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir, indexTopK: 2 }).rebuildIndex('task-a');
    editIndex(s.indexOf('task-a'), (header) => {
      header.malformed = 7;
    });
    const untouched = sha256(s.indexOf('task-b'));
    const logs = [sha256(s.logOf('task-a')), sha256(s.logOf('task-b'))];

    const reports: TaskReport[] = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).verify({ fix: true });
    const [a, b] = reports;
    expect(a).toMatchObject({
      taskId: 'task-a',
      ok: true,
      index: { state: 'fresh', k: 2 },
      problems: [{ message: expect.stringMatching(/^malformed lines: the index says 7, .* hold 0$/) }],
      fix: { rebuilt: true, index: { state: 'fresh', k: 2 }, problems: [] },
    });
    expect(b).toMatchObject({ taskId: 'task-b', ok: true, problems: [] });
    expect(b!.fix).toBeUndefined();
    expect(sha256(s.indexOf('task-b'))).toBe(untouched);
    expect([sha256(s.logOf('task-a')), sha256(s.logOf('task-b'))]).toEqual(logs);
  });

  test('a bad taskId is EXP_INVALID_INPUT', async ({ dir }) => {
    const store = new ExperienceStore({ outDir: dir, runsDir: path.join(dir, 'runs') });
    for (const call of [() => store.verify({ taskId: '../x' }), () => store.stats({ taskId: '.hidden' })]) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ExperienceStoreError);
      expect((err as ExperienceStoreError).code).toBe('EXP_INVALID_INPUT');
    }
  });
});

describe('store.stats', () => {
  test('counts records, malformed lines and domains by a full scan, with the index state and stray temp files', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 2 });
    const record = JSON.parse(readFileSync(s.logOf('task-b'), 'utf8').split('\n')[0]!) as Record<string, unknown>;
    appendLines(s.logOf('task-b'), ['{not json', '', JSON.stringify({ ...record, id: 'exp-hand', domain: 'triage' })]);
    writeFileSync(`${s.indexOf('task-b')}.123`, '');
    rmSync(s.runsDir, { recursive: true });
    const before = filesUnder(s.outDir);

    const [a, b] = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).stats();
    expect(a).toEqual({
      taskId: 'task-a',
      logBytes: readFileSync(s.logOf('task-a')).length,
      records: 6,
      malformed: 0,
      domains: [
        { domain: 'implementation', count: 2 },
        { domain: 'review', count: 2 },
        { domain: 'testing', count: 2 },
      ],
      index: expect.objectContaining({ state: 'fresh', k: 16 }),
      strayTempFiles: [],
    });
    expect(b).toMatchObject({ taskId: 'task-b', records: 7, malformed: 1, index: { state: 'stale' }, strayTempFiles: ['experiences.top.json.123'] });
    expect(b!.domains.map((d) => d.domain)).toEqual(['implementation', 'review', 'testing', 'triage']);
    expect(existsSync(s.runsDir)).toBe(false);
    expect(filesUnder(s.outDir)).toEqual(before);
  });

  test('a task without a log has zero counts; taskId limits the answer to that task', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    rmSync(s.logOf('task-b'));
    rmSync(s.indexOf('task-b'));
    const store = new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir });
    expect(await store.stats({ taskId: 'task-b' })).toEqual([
      { taskId: 'task-b', logBytes: 0, records: 0, malformed: 0, domains: [], index: { state: 'missing' }, strayTempFiles: [] },
    ]);
  });
});
