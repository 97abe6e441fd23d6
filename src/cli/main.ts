/**
 * The maintainer CLI: parse the arguments, check the global options, run one
 * command, and turn what happened into an exit code. 0 ok, 1 a check or an
 * operation failed, 2 usage error. Every error is one line on stderr naming what
 * to fix; the stack follows only when DEBUG is set.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorCode } from '../errors.js';
import { LOG_FILE, resolveStoreDirs, taskIdProblem } from '../paths.js';
import { ExperienceStore } from '../store.js';
import type { CommandContext, CommandSpec, OptionValues } from './context.js';
import { OperationError, PROGRAM, UsageError, writeLines, type CliIo } from './io.js';
import { rebuild } from './rebuild.js';
import { stats } from './stats.js';
import { top } from './top.js';
import { verify } from './verify.js';

const COMMANDS: readonly CommandSpec[] = [rebuild, verify, stats, top];

const GLOBAL_OPTIONS = {
  out: { type: 'string' },
  runs: { type: 'string' },
  task: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} satisfies NonNullable<ParseArgsConfig['options']>;

const GLOBAL_HELP: Array<[string, string]> = [
  ['--out DIR', "the store's outDir (default $CODEX_ORCHESTRATOR_OUT_DIR or out, against $CODEX_ORCHESTRATOR_ROOT or the working directory)"],
  ['--runs DIR', 'where the lock files live (default $CODEX_ORCHESTRATOR_RUNS_DIR or .runs, resolved the same way)'],
  ['--task ID', 'only this task; repeat for more (default: every task)'],
  ['--json', 'machine-readable output on stdout'],
  ['-h, --help', `show help (${PROGRAM} <command> --help for one command)`],
  ['--version', 'print the version'],
];

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.stderr.write(`${PROGRAM}: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
    if ((io.env ?? process.env).DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

async function run(argv: readonly string[], io: CliIo): Promise<number> {
  // A lenient first pass only finds the command, so the strict pass knows which
  // options are allowed and an error can point at that command's help.
  const args = joinNegativeValues(argv, allOptions());
  const guess = parseArgs({ args, options: allOptions(), strict: false, allowPositionals: true });
  const command = COMMANDS.find((c) => c.name === guess.positionals[0]);

  let parsed: { values: OptionValues; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...command?.options },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(describeParseError(err), command?.name);
  }
  const { values, positionals } = parsed;

  if (values.help === true) {
    writeLines(io.stdout, command === undefined ? globalHelp() : commandHelp(command));
    return 0;
  }
  if (values.version === true) {
    writeLines(io.stdout, [version()]);
    return 0;
  }
  if (command === undefined) {
    const name = positionals[0];
    throw new UsageError(name === undefined ? 'missing command (rebuild, verify, stats or top)' : `unknown command ${JSON.stringify(name)}`);
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])}`, command.name);

  // Usage first (exit 2), then the disk (exit 1): a typo is reported as a typo.
  for (const flag of ['out', 'runs'] as const) {
    if (values[flag] === '') throw new UsageError(`--${flag} must not be empty`, command.name);
  }
  const taskIds = ((values.task as string[] | undefined) ?? []).filter((id, i, all) => all.indexOf(id) === i);
  for (const id of taskIds) {
    const problem = taskIdProblem(id);
    if (problem !== undefined) throw new UsageError(`--task ${problem}`, command.name);
  }
  const runCommand = command.prepare(values, taskIds);
  return runCommand(contextFor(values, taskIds, io));
}

function contextFor(values: OptionValues, taskIds: string[], io: CliIo): CommandContext {
  const env = io.env ?? process.env;

  // A flag is a path typed at a shell: relative to the working directory.
  const defaults = resolveStoreDirs({}, env);
  const out = values.out as string | undefined;
  const runs = values.runs as string | undefined;
  const outDir = out !== undefined ? path.resolve(out) : defaults.outDir;
  const runsDir = runs !== undefined ? path.resolve(runs) : defaults.runsDir;
  const outLabel = out ?? outDir;
  const label = out === undefined ? `the store directory ${outDir} (the default; pass --out DIR)` : `--out ${out}`;
  checkOutDir(outDir, label);
  checkNotTaskDir(outDir, label, out ?? outDir);
  for (const id of taskIds) {
    if (!isDirectory(path.join(outDir, id))) {
      throw new OperationError(`no task "${id}" in ${outLabel}: it has no directory "${id}"; run ${PROGRAM} stats to list the tasks`);
    }
  }

  let defaultStore: ExperienceStore | undefined;
  const store = (options: { indexTopK?: number } = {}) =>
    options.indexTopK === undefined
      ? (defaultStore ??= new ExperienceStore({ outDir, runsDir }))
      : new ExperienceStore({ outDir, runsDir, indexTopK: options.indexTopK });
  return {
    io,
    outDir,
    runsDir,
    outLabel,
    taskIds,
    json: values.json === true,
    store,
    tasks: () => (taskIds.length > 0 ? taskIds : store().listTasks()),
  };
}

/** A store directory that is missing is an error, never an empty store. */
function checkOutDir(outDir: string, label: string): void {
  try {
    if (statSync(outDir).isDirectory()) return;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') throw new OperationError(`${label} does not exist; pass the directory that holds the task directories`);
    throw new OperationError(`cannot read ${label}: ${errorCode(err) ?? String(err)}; check the path and its permissions`, { cause: err });
  }
  throw new OperationError(`${label} is not a directory; pass the directory that holds the task directories`);
}

/** A task directory passed as the store would read as a store of no tasks: say so instead. */
function checkNotTaskDir(outDir: string, label: string, shown: string): void {
  if (!isFile(path.join(outDir, LOG_FILE))) return;
  throw new OperationError(
    `${label} is a task directory (it holds ${LOG_FILE}); pass its parent, ${path.dirname(shown)}, and --task ${path.basename(outDir)} for this task alone`,
  );
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * util.parseArgs takes an argument that starts with "-" for an option, never for
 * a value, so `--min-reward -0.5` would read as a missing value. Join a
 * value-taking long option with a following negative number (`--min-reward=-0.5`),
 * the spelling parseArgs accepts; the command then checks the number.
 */
export function joinNegativeValues(argv: readonly string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      args.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${arg}=${next}`);
      i++;
    } else {
      args.push(arg);
    }
  }
  return args;
}

function allOptions(): NonNullable<ParseArgsConfig['options']> {
  return Object.assign({}, GLOBAL_OPTIONS, ...COMMANDS.map((c) => c.options));
}

/** util.parseArgs messages are long and suggest `--`; say what is wrong in our words. */
function describeParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const option = /'(-[^' ]*)/.exec(message)?.[1];
  switch (errorCode(err)) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${option} takes no value`;
      return `option ${option} needs a value`;
    default:
      return message.split('\n')[0]!;
  }
}

function version(): string {
  // The package's own package.json, by self-reference (it is in "exports").
  const require = createRequire(import.meta.url);
  return (require('experience-store/package.json') as { version: string }).version;
}

function helpLines(entries: Array<[string, string]>): string[] {
  const width = Math.max(...entries.map(([flag]) => flag.length));
  return entries.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`);
}

function globalHelp(): string[] {
  return [
    `Usage: ${PROGRAM} <command> [options]`,
    '',
    'Maintain the sidecar top-K indexes of an experience store (<outDir>/<taskId>/experiences.top.json).',
    'No command writes a log. rebuild and verify --fix write index files, under the task\'s lock in --runs.',
    'top may write one as any fetch does (healing a stale or missing index), but only when --runs exists',
    'and the lock is free at once. stats and verify only read.',
    '',
    'Commands:',
    ...helpLines(COMMANDS.map((c) => [c.usage, c.summary])),
    '',
    'Options (every command):',
    ...helpLines(GLOBAL_HELP),
    '',
    'Exit codes: 0 ok, 1 a check or an operation failed, 2 usage error.',
  ];
}

function commandHelp(command: CommandSpec): string[] {
  const own = command.optionHelp.length > 0 ? ['Options:', ...helpLines(command.optionHelp), ''] : [];
  return [
    `Usage: ${PROGRAM} ${command.usage} [--out DIR] [--task ID]... [--json]`,
    '',
    `${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.`,
    '',
    ...own,
    'Options (every command):',
    ...helpLines(GLOBAL_HELP),
    '',
    'Exit codes: 0 ok, 1 a check or an operation failed, 2 usage error.',
  ];
}
