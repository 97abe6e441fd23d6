import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect } from 'vitest';
import { joinNegativeValues, main } from '../src/cli/main.js';
import { fitWidth } from '../src/cli/progress.js';
import { wantsColor, type CliIo } from '../src/cli/io.js';
import { ExperienceStore, type ExperienceRecord } from '../src/index.js';
import { formatExperienceInjections } from '../src/prompt-pack.js';
import { BIN, ensureBuilt, ROOT, runCli, type CliResult } from './support/cli-run.js';
import { appendLines, domainLine, editIndex, makeSampleStore, sha256 } from './support/cli-store.js';
import { makeInput } from './support/inputs.js';
import { test } from './support/temp-dir.js';

beforeAll(() => ensureBuilt(), 120_000);

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Exactly one stderr line, `experience-store: ...`, and no stack frames. */
function expectOneErrorLine(result: CliResult, pattern: RegExp): void {
  const lines = result.stderr.split('\n').filter((l) => l !== '');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^experience-store: /);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

function parseJson<T>(result: CliResult): T {
  return JSON.parse(result.stdout) as T;
}

interface StatsJson {
  taskId: string;
  logBytes: number;
  records: number;
  malformed: number;
  domains: Array<{ domain: string; count: number }>;
  index: { state: string; staleBytes?: number; reason?: string; k?: number; offset?: number };
  strayTempFiles: string[];
}

interface VerifyJson {
  ok: boolean;
  tasks: Array<{
    taskId: string;
    ok: boolean;
    index: { state: string; staleBytes?: number; reason?: string };
    problems: Array<{ domain?: string; message: string }>;
    fix?: { rebuilt: true; index: { state: string }; problems: unknown[] };
  }>;
}

/** A fake terminal (or pipe) for main(argv, io), recording what was written. */
function fakeIo(isTTY: boolean, columns?: number): CliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { isTTY, columns, write: (s: string) => (err += s) },
    env: {},
    out: () => out,
    err: () => err,
  };
}

describe('help, version and usage errors', () => {
  test('--help lists every command and exits 0', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['rebuild', 'verify', 'stats', 'top']) expect(result.stdout).toContain(command);
    expect(result.stdout).toContain('--out DIR');
    expect(result.stderr).toBe('');
  });

  test('top --help shows the options of top, with --limit defaulting to 5', async () => {
    const result = await runCli(['top', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: experience-store top --domain D/);
    expect(result.stdout).toMatch(/--limit N\s+how many records \(default 5\)/);
    expect(result.stdout).toContain('--min-reward X');
  });

  test('--version prints the version of package.json', async () => {
    const result = await runCli(['--version']);
    expect(result).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  test('an unknown option exits 2 with one line pointing at the command help, and no stack', async ({ dir }) => {
    const result = await runCli(['top', '--domain', 'review', '--lmit', '3', '--out', dir]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe('experience-store: unknown option --lmit; see experience-store top --help\n');
  });

  test('an option of another command is unknown to this one', async ({ dir }) => {
    const result = await runCli(['stats', '--fix', '--out', dir]);
    expect(result.code).toBe(2);
    expectOneErrorLine(result, /unknown option --fix; see experience-store stats --help/);
  });

  test('with DEBUG set, the stack follows the error line', async ({ dir }) => {
    const result = await runCli(['stats', '--out', path.join(dir, 'nope')], { env: { DEBUG: '1' } });
    expect(result.code).toBe(1);
    expect(result.stderr.split('\n')[0]).toMatch(/^experience-store: --out .*nope does not exist/);
    expect(result.stderr).toMatch(/^\s+at /m);
  });

  test.each([
    [['top', '--domain', 'review', '--limit', 'abc'], /--limit must be a positive integer, got "abc"/],
    [['top', '--domain', 'review', '--limit', '0'], /--limit must be a positive integer, got "0"/],
    // A negative number is a value, not an option: the check of the value answers.
    [['top', '--domain', 'review', '--limit', '-1'], /--limit must be a positive integer, got "-1"/],
    [['rebuild', '--k', '-3'], /--k must be a positive integer, got "-3"/],
    [['top', '--domain', 'review', '--strength', '1'], /--strength needs --policy competitive/],
    [['top', '--domain', 'review', '--explain'], /--explain needs --policy competitive/],
    [['top', '--domain', 'review', '--policy', 'fancy'], /--policy must be plain or competitive, got "fancy"/],
    [['top', '--domain', 'review', '--policy', 'competitive', '--strength', '-0.5'], /--strength must be >= 0, got -0.5/],
    [['top', '--domain', 'review', '--policy', 'competitive', '--min-reward', '-1'], /--min-reward must be >= 0 with --policy competitive/],
    [['top', '--domain', 'review', '--min-reward', 'high'], /--min-reward must be a decimal number/],
    [['rebuild', '--k', '0'], /--k must be a positive integer, got "0"; see experience-store rebuild --help/],
    [['rebuild', '--k', '1.5'], /--k must be a positive integer/],
    [['top', '--limit', '3'], /top needs --domain D/],
    [['top', '--domain', 'review', '--limit'], /option --limit needs a value/],
    [['verify', '--fix=yes'], /option --fix takes no value/],
    [['stats', '--task', '../escape'], /--task must not contain a slash/],
    [['stats', '--task', '.hidden'], /--task must not start with "\."/],
    [['top', '--domain', 'review', '--task', 'task-a', '--task', 'task-b'], /top reads one task or all of them/],
    [[], /missing command/],
    [['frobnicate'], /unknown command "frobnicate"; see experience-store --help/],
    [['stats', 'extra'], /unexpected argument "extra"/],
  ])('%j is a usage error: exit 2, one line naming the problem', async (args, pattern) => {
    // The store does not exist: usage errors are reported before the disk is looked at.
    const result = await runCli([...args, '--out', '/nonexistent/experience-store-out']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expectOneErrorLine(result, pattern);
  });

  test('a --out that does not exist exits 1 naming it, not an empty store', async ({ dir }) => {
    const missing = path.join(dir, 'no-such-out');
    const result = await runCli(['stats', '--json', '--out', missing]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expectOneErrorLine(result, /--out .*no-such-out does not exist/);
  });

  test('a --out that is a task directory exits 1 saying to pass its parent', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    const result = await runCli(['stats', '--out', path.join(s.outDir, 'task-a')]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expectOneErrorLine(result, /--out .*task-a is a task directory \(it holds experiences\.jsonl\); pass its parent, .*out, and --task task-a/);
  });

  test('joins a value-taking option with a following negative number, and nothing else', () => {
    const options = { 'min-reward': { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } } as const;
    expect(joinNegativeValues(['top', '--min-reward', '-0.5', '--limit', '-1', '--json', '-2'], options)).toEqual([
      'top', '--min-reward=-0.5', '--limit=-1', '--json', '-2',
    ]);
    expect(joinNegativeValues(['--limit', '--json', '--min-reward', '-.5', '--', '--limit', '-1'], options)).toEqual([
      '--limit', '--json', '--min-reward=-.5', '--', '--limit', '-1',
    ]);
  });

  test('a --task with no directory exits 1 naming the task', async ({ dir }) => {
    const { outDir } = await makeSampleStore(dir, { tasks: ['task-a'] });
    const result = await runCli(['stats', '--out', outDir, '--task', 'task-z']);
    expect(result.code).toBe(1);
    expectOneErrorLine(result, /no task "task-z"/);
  });

  test('without --out, the store is $CODEX_ORCHESTRATOR_OUT_DIR under $CODEX_ORCHESTRATOR_ROOT', async ({ dir }) => {
    await makeSampleStore(dir, { tasks: ['task-a'] });
    const result = await runCli(['stats', '--json'], { env: { CODEX_ORCHESTRATOR_ROOT: dir, CODEX_ORCHESTRATOR_OUT_DIR: 'out' } });
    expect(result.code).toBe(0);
    expect(parseJson<StatsJson[]>(result).map((t) => t.taskId)).toEqual(['task-a']);
  });
});

describe('stats', () => {
  test('counts records, malformed lines and domains of every task by a full scan', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 3 });
    // A malformed line, a JSON line of the wrong shape, a blank line (not counted), then a valid
    // record appended by hand; afterwards the index is rebuilt so it is fresh again.
    const record = JSON.parse(readFileSync(s.logOf('task-b'), 'utf8').split('\n')[0]!) as ExperienceRecord;
    appendLines(s.logOf('task-b'), ['{not json', '{"id":"x"}', '', JSON.stringify({ ...record, id: 'exp-hand', domain: 'triage' })]);
    await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).rebuildIndex('task-b');

    const result = await runCli(['stats', '--json', '--out', s.outDir, '--runs', s.runsDir]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    const tasks = parseJson<StatsJson[]>(result);
    expect(tasks.map((t) => t.taskId)).toEqual(['task-a', 'task-b']);
    const [a, b] = tasks;
    expect(a).toMatchObject({ records: 9, malformed: 0, index: { state: 'fresh', k: 16 }, strayTempFiles: [] });
    expect(a!.logBytes).toBe(readFileSync(s.logOf('task-a')).length);
    expect(b).toMatchObject({ records: 10, malformed: 2, index: { state: 'fresh' } });
    expect(b!.domains).toEqual([
      { domain: 'implementation', count: 3 },
      { domain: 'review', count: 3 },
      { domain: 'testing', count: 3 },
      { domain: 'triage', count: 1 },
    ]);
  });

  test('reports a stale index by the bytes the log grew, a missing one, and stray temp files', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a', 'task-b'] });
    const grown = JSON.stringify({ ...makeInput(), id: 'exp-foreign' }) + '\n';
    appendLines(s.logOf('task-a'), [grown.trimEnd()]);
    rmSync(s.indexOf('task-b'));
    writeFileSync(`${s.indexOf('task-b')}.4142`, '{"half":');

    const json = await runCli(['stats', '--json', '--out', s.outDir]);
    const [a, b] = parseJson<StatsJson[]>(json);
    expect(a!.index).toMatchObject({ state: 'stale', staleBytes: Buffer.byteLength(grown) });
    expect(b!.index).toEqual({ state: 'missing' });
    expect(b!.strayTempFiles).toEqual(['experiences.top.json.4142']);

    const table = await runCli(['stats', '--out', s.outDir]);
    expect(table.code).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0]).toMatch(/^task\s+log bytes\s+records\s+malformed\s+index\s+domains$/);
    expect(lines.find((l) => l.startsWith('task-a '))).toContain(`stale by ${Buffer.byteLength(grown)} bytes`);
    expect(lines.find((l) => l.startsWith('task-b '))).toMatch(/missing\s+implementation 4, review 4, testing 4$/);
    expect(table.stdout).toContain('task-b: 1 stray index temp file(s), left by a killed writer: experiences.top.json.4142');
  });

  test('reports an index whose checksum fails as invalid, and one beside a shrunk log as stale-replaced', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    const index = readFileSync(s.indexOf('task-a'));
    const headerAt = index.indexOf(0x0a) + 1;
    index[headerAt + 2] = index[headerAt + 2]! ^ 1; // one bit of the header line: its CRC-32 no longer matches
    writeFileSync(s.indexOf('task-a'), index);
    truncateSync(s.logOf('task-b'), 100);

    const [a, b] = parseJson<StatsJson[]>(await runCli(['stats', '--json', '--out', s.outDir]));
    expect(a!.index).toEqual({ state: 'invalid', reason: 'header checksum mismatch' });
    expect(b!.index).toMatchObject({ state: 'stale-replaced', reason: 'shrunk' });
    expect(b).toMatchObject({ logBytes: 100, records: 0 });
  });
});

describe('verify', () => {
  test('passes on indexes written by the store', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    const result = await runCli(['verify', '--out', s.outDir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^task-a: ok, index fresh \(k 16, 12 records in 3 domain\(s\)\)$/m);
    expect(result.stdout).toMatch(/^verify: 2 task\(s\) checked, no differences$/m);
    expect(result.stderr).toBe('');
  });

  test('catches a tampered index that still parses, naming task and domain, and --fix repairs it', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    const logHashes = [sha256(s.logOf('task-a')), sha256(s.logOf('task-b'))];
    editIndex(s.indexOf('task-b'), (_header, domains) => {
      const first = domainLine(domains, 'review').top[0]!;
      first.summary32 = 'a summary nobody ever wrote';
    });

    const failed = await runCli(['verify', '--out', s.outDir]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^task-a: ok/m);
    expect(failed.stdout).toMatch(/^task-b: FAIL domain "review": top\[0\] \(exp-[^)]+\) differs from the log in summary32$/m);
    expectOneErrorLine(failed, /1 of 2 task\(s\) failed \(task-b\); run experience-store verify --fix/);

    const json = parseJson<VerifyJson>(await runCli(['verify', '--json', '--out', s.outDir]));
    expect(json.ok).toBe(false);
    const problems = json.tasks.find((t) => t.taskId === 'task-b')!.problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]!.domain).toBe('review');
    expect(problems[0]!.message).toContain('summary32');

    const fixed = await runCli(['verify', '--fix', '--out', s.outDir, '--runs', s.runsDir]);
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toMatch(/^task-b: after rebuild: ok, index fresh/m);
    expect(fixed.stdout).toMatch(/^verify: rebuilt 1 failing task index\(es\); they verify now$/m);
    expect(fixed.stderr).toBe('');
    // The rebuilt index holds the log's record again; the logs were never touched.
    expect(readFileSync(s.indexOf('task-b'), 'utf8')).not.toContain('a summary nobody ever wrote');
    expect((await runCli(['verify', '--out', s.outDir])).code).toBe(0);
    expect([sha256(s.logOf('task-a')), sha256(s.logOf('task-b'))]).toEqual(logHashes);
  });

  test('catches domain counts that do not match the log', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    editIndex(s.indexOf('task-a'), (header) => {
      // Still schema-valid: the domain counts add up to `records`.
      const domains = header.domains as Array<{ domain: string; count: number }>;
      domains.find((d) => d.domain === 'testing')!.count += 1;
      header.records = (header.records as number) + 1;
    });
    const result = parseJson<VerifyJson>(await runCli(['verify', '--json', '--out', s.outDir]));
    expect(result.ok).toBe(false);
    const problems = result.tasks[0]!.problems;
    const logBytes = readFileSync(s.logOf('task-a')).length.toLocaleString('en-US');
    expect(problems[0]).toEqual({ message: `records: the index says 13, the log's first ${logBytes} bytes hold 12` });
    expect(problems.slice(1).every((p) => p.domain === 'testing')).toBe(true);
    expect(problems[1]!.message).toMatch(/^count: the index says 5, .* hold 4$/);
  });

  test('fails on an invalid index, saying why, and --fix rebuilds it with the same exit 0', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    writeFileSync(s.indexOf('task-a'), '{"format":"experience-store/top-index"\n');

    const failed = await runCli(['verify', '--out', s.outDir]);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^task-a: FAIL index invalid: not an experience-store index$/m);
    expectOneErrorLine(failed, /task-a/);

    const fixed = parseJson<VerifyJson>(await runCli(['verify', '--fix', '--json', '--out', s.outDir, '--runs', s.runsDir]));
    expect(fixed.ok).toBe(true);
    // ok says how the task stands now; problems say what the check found before the rebuild.
    expect(fixed.tasks[0]).toMatchObject({ ok: true, index: { state: 'invalid' }, fix: { rebuilt: true, problems: [], index: { state: 'fresh' } } });
    expect(fixed.tasks[0]!.problems).toEqual([{ message: 'index invalid: not an experience-store index' }]);
  });

  test('reports a stale index (the log grew) without failing, after checking the prefix it covers', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    appendLines(s.logOf('task-a'), ['{"foreign": "garbage"}', JSON.stringify({ ...makeInput(), id: 'x' })]);
    const result = await runCli(['verify', '--out', s.outDir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^task-a: ok, index stale by \d+ bytes \(k 16, 12 records/m);

    // Tampering is still caught while the index is stale.
    editIndex(s.indexOf('task-a'), (_h, domains) => {
      domainLine(domains, 'testing').top[0]!.id = 'exp-forged';
    });
    const tampered = await runCli(['verify', '--out', s.outDir]);
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toMatch(/^task-a: FAIL domain "testing": top\[0\] is exp-forged in the index but exp-\S+ in the log$/m);
  });

  test('reports a missing index and a log replaced under its index, without failing', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    rmSync(s.indexOf('task-a'));
    const log = readFileSync(s.logOf('task-b'));
    rmSync(s.logOf('task-b'));
    writeFileSync(s.logOf('task-b'), log.subarray(0, log.indexOf(0x0a) + 1)); // a new, shorter file

    const result = await runCli(['verify', '--out', s.outDir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^task-a: no index \(not a failure/m);
    expect(result.stdout).toMatch(/^task-b: index stale-replaced \((file-replaced|shrunk)\).*not a failure\)$/m);
    const json = parseJson<VerifyJson>(await runCli(['verify', '--json', '--out', s.outDir]));
    expect(json.ok).toBe(true);
    expect(json.tasks.map((t) => t.index.state)).toEqual(['missing', 'stale-replaced']);
  });

  test('--task limits the check to the named tasks', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    writeFileSync(s.indexOf('task-b'), 'garbage\n');
    expect((await runCli(['verify', '--out', s.outDir, '--task', 'task-a'])).code).toBe(0);
    expect((await runCli(['verify', '--out', s.outDir, '--task', 'task-a', '--task', 'task-b'])).code).toBe(1);
  });
});

describe('rebuild', () => {
  test('rebuilds every index with --k and prints a JSON summary, no progress when stderr is not a terminal', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    rmSync(s.indexOf('task-a'));
    appendLines(s.logOf('task-b'), ['not a record']);

    const result = await runCli(['rebuild', '--k', '2', '--json', '--out', s.outDir, '--runs', s.runsDir]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(parseJson<Record<string, number>>(result)).toMatchObject({ tasks: 2, records: 24, malformed: 1, k: 2 });
    for (const task of ['task-a', 'task-b']) {
      const header = JSON.parse(readFileSync(s.indexOf(task), 'utf8').split('\n')[1]!) as { k: number };
      expect(header.k).toBe(2);
    }
    const verified = parseJson<VerifyJson>(await runCli(['verify', '--json', '--out', s.outDir]));
    expect(verified.tasks.map((t) => [t.taskId, t.ok, t.index.state])).toEqual([
      ['task-a', true, 'fresh'],
      ['task-b', true, 'fresh'],
    ]);
  });

  test('prints one summary line on stdout', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    const result = await runCli(['rebuild', '--out', s.outDir, '--runs', s.runsDir, '--task', 'task-b']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^rebuilt 1 task index\(es\) with k 16: 12 records, 0 malformed line\(s\), \d+\.\d\d s\n$/);
    expect(result.stderr).toBe('');
  });

  test('shows progress on stderr only when it is a terminal', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    const argv = ['rebuild', '--out', s.outDir, '--runs', s.runsDir];

    const tty = fakeIo(true);
    expect(await main(argv, tty)).toBe(0);
    expect(tty.err()).toMatch(/rebuild task-a \(1\/1\): .*B \/ .*B \(\d+%\), \d+ records/);
    expect(tty.out()).toMatch(/^rebuilt 1 task index\(es\)/);

    const pipe = fakeIo(false);
    expect(await main(argv, pipe)).toBe(0);
    expect(pipe.err()).toBe('');
    expect(pipe.out()).toMatch(/^rebuilt 1 task index\(es\)/);
  });
});

describe('top', () => {
  test('prints the injections fetchTop gives, 5 by default', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 8 });
    const store = new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir });
    const want = formatExperienceInjections(await store.fetchTop({ domain: 'review', limit: 5 }), 5);
    expect(want).toHaveLength(5);

    const result = await runCli(['top', '--domain', 'review', '--out', s.outDir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(want.join('\n') + '\n');
    expect(result.stderr).toBe('');
  });

  test('--json prints the records of one task above --min-reward', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 8 });
    const store = new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir });
    const want = await store.fetchTop({ domain: 'testing', limit: 10, minReward: 0.5, taskId: 'task-b' });
    expect(want.length).toBeGreaterThan(0);
    expect(want.length).toBeLessThan(8);

    const result = await runCli([
      'top', '--json', '--domain', 'testing', '--limit', '10', '--min-reward', '0.5', '--task', 'task-b', '--out', s.outDir,
    ]);
    expect(result.code).toBe(0);
    const records = parseJson<ExperienceRecord[]>(result);
    expect(records).toEqual(want);
    expect(records.every((r) => r.taskId === 'task-b' && r.reward.gtScore + r.reward.relativeRank >= 0.5)).toBe(true);
  });

  test('prints nothing for a domain with no records', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    mkdirSync(path.join(s.outDir, 'empty-task'));
    const result = await runCli(['top', '--domain', 'no-such-domain', '--out', s.outDir]);
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(parseJson<unknown[]>(await runCli(['top', '--json', '--domain', 'x', '--out', s.outDir]))).toEqual([]);
  });
});

describe('read-only commands', () => {
  test('stats, top and verify create nothing: no .runs in the working directory, no file in the store', async ({ dir }) => {
    const s = await makeSampleStore(dir);
    // A stale index and a missing one: a fetch would like to heal both.
    appendLines(s.logOf('task-a'), [JSON.stringify({ ...makeInput({ taskId: 'task-a', domain: 'review' }), id: 'exp-foreign' })]);
    rmSync(s.indexOf('task-b'));
    rmSync(s.runsDir, { recursive: true, force: true });
    const before = treeOf(s.outDir);
    const cwd = path.join(dir, 'cwd');
    mkdirSync(cwd);

    for (const args of [
      ['stats'],
      ['stats', '--json'],
      ['verify'],
      ['verify', '--json'],
      ['top', '--domain', 'review'],
      ['top', '--domain', 'review', '--task', 'task-b'],
      ['top', '--domain', 'review', '--policy', 'competitive', '--explain'],
    ]) {
      const result = await runCli([...args, '--out', s.outDir], { cwd });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      expect(readdirSync(cwd), args.join(' ')).toEqual([]);
      expect(existsSync(s.runsDir), args.join(' ')).toBe(false);
      expect(treeOf(s.outDir), args.join(' ')).toEqual(before);
    }
  });
});

describe('top --policy competitive', () => {
  test('prints what selectTop selects, with its source and competitive score, and --json its records', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 6 });
    const store = new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir });
    const query = { domain: 'review', limit: 4, policy: { antiDominanceNormalization: { strength: 2 } } };
    const want = await store.selectTop(query);

    const text = await runCli(['top', '--out', s.outDir, '--domain', 'review', '--limit', '4', '--policy', 'competitive', '--strength', '2']);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe(formatExperienceInjections(want.records, 4, want.diagnostics).join('\n') + '\n');
    expect(text.stdout).toMatch(/\| source run_id:run-\d+ \| competitive -?\d+\.\d\d/);

    const json = await runCli(['top', '--json', '--out', s.outDir, '--domain', 'review', '--limit', '4', '--policy', 'competitive', '--strength', '2']);
    expect(parseJson<ExperienceRecord[]>(json)).toEqual(want.records);
  });

  test('--explain prints every candidate (a table, or the diagnostics with --json)', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 6 });
    const store = new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir });
    const want = await store.selectTop({ domain: 'testing', limit: 3, minScore: 0.2 }, { diagnostics: 'full' });
    const args = ['top', '--out', s.outDir, '--domain', 'testing', '--limit', '3', '--min-reward', '0.2', '--policy', 'competitive', '--explain'];

    const json = parseJson<{ records: ExperienceRecord[]; diagnostics: typeof want.diagnostics }>(await runCli([...args, '--json']));
    expect(json).toEqual({ records: want.records, diagnostics: want.diagnostics });
    expect(json.diagnostics.candidates_complete).toBe(true);
    expect(json.diagnostics.candidates).toHaveLength(12);

    const text = await runCli(args);
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines).toContain(`${want.diagnostics.selected_count} of 12 candidate(s) selected (competitive_scoring_v1, strength 0.5, min score 0.2)`);
    const table = lines.slice(lines.findIndex((l) => l.startsWith('slot')));
    expect(table[0]).toMatch(/^slot\s+id\s+source\s+raw\s+penalty\s+competitive\s+result$/);
    for (const c of want.diagnostics.candidates) {
      const row = table.find((l) => l.includes(c.id));
      expect(row, c.id).toContain(c.selected ? 'selected' : c.exclusion_reason!.replaceAll('_', ' '));
    }
  });

  test('--min-reward -0.5 is a value: top answers as fetchTop does', async ({ dir }) => {
    const s = await makeSampleStore(dir, { perDomain: 3 });
    const want = await new ExperienceStore({ outDir: s.outDir, runsDir: s.runsDir }).fetchTop({ domain: 'review', limit: 3, minReward: -0.5 });
    const result = await runCli(['top', '--json', '--out', s.outDir, '--domain', 'review', '--limit', '3', '--min-reward', '-0.5']);
    expect(result.code).toBe(0);
    expect(parseJson<ExperienceRecord[]>(result)).toEqual(want);
  });
});

describe('terminal output', () => {
  test('the progress line is cut to the terminal width and erased at the end', async ({ dir }) => {
    const s = await makeSampleStore(dir, { tasks: ['task-a'] });
    const tty = fakeIo(true, 24);
    expect(await main(['rebuild', '--out', s.outDir, '--runs', s.runsDir], tty)).toBe(0);
    const redraws = tty.err().split('\r\x1b[2K');
    expect(redraws[0]).toBe('');
    expect(redraws.at(-1)).toBe(''); // the last write erases the line
    const shown = redraws.slice(1, -1);
    expect(shown.length).toBeGreaterThan(0);
    for (const text of shown) {
      expect([...text].length).toBeLessThanOrEqual(23);
      expect(text).not.toContain('\n');
    }
    expect(shown[0]).toMatch(/^rebuild task-a \(1\/1\): .*…$/);
  });

  test('fitWidth keeps short text, cuts long text with an ellipsis, and leaves it alone without a width', () => {
    expect(fitWidth('short', 80)).toBe('short');
    expect(fitWidth('0123456789', 8)).toBe('012345…');
    expect(fitWidth('0123456789', undefined)).toBe('0123456789');
  });

  test('colour only on a terminal, and never with NO_COLOR set', () => {
    expect(wantsColor({ isTTY: true }, {})).toBe(true);
    expect(wantsColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColor({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    expect(wantsColor({ isTTY: false }, {})).toBe(false);
  });
});

/** Every file under `dir`, relative, with its SHA-256. */
function treeOf(dir: string): Record<string, string> {
  const tree: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const file = path.join(entry.parentPath, entry.name);
      tree[path.relative(dir, file)] = sha256(file);
    }
  }
  return tree;
}

describe('output into a pipe closed early', () => {
  test('exits 0 with no stack trace when the reader stops after the first line (| head -1)', async ({ dir }) => {
    const out = path.join(dir, 'out');
    await new ExperienceStore({ outDir: out, runsDir: path.join(dir, 'runs') }).recordBatch(
      Array.from({ length: 2000 }, (_, i) => makeInput({ runId: `run-${i}`, summary: `a longer summary for line ${i} `.repeat(4) })),
      'manifest.json',
    );
    const child = spawn(process.execPath, [BIN, 'top', '--out', out, '--domain', 'implementation', '--limit', '2000'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});
