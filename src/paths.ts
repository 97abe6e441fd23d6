/**
 * Where a task's files live, and which task ids are safe to turn into paths.
 *
 *   <outDir>/<taskId>/experiences.jsonl       the append-only log
 *   <outDir>/<taskId>/experiences.top.json    the sidecar top-K index
 *   <runsDir>/<taskId>.experiences.lock       the writers' lock file
 */
import path from 'node:path';

export const LOG_FILE = 'experiences.jsonl';
export const INDEX_FILE = 'experiences.top.json';

// A task id becomes a directory name, so it must not escape outDir or be
// unrepresentable on common file systems.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const RESERVED_CHARS = /[<>:"|?*]/;

/** Why `taskId` is not a valid task id, or undefined when it is. */
export function taskIdProblem(taskId: string): string | undefined {
  if (taskId === '') return 'must not be empty';
  if (taskId.includes('/') || taskId.includes('\\')) return `must not contain a slash or backslash, got "${taskId}"`;
  if (taskId.startsWith('.')) return `must not start with ".", got "${taskId}"`;
  if (CONTROL_CHARS.test(taskId)) return 'must not contain control characters';
  if (RESERVED_CHARS.test(taskId)) return `must not contain any of < > : " | ? *, got "${taskId}"`;
  return undefined;
}

export function isValidTaskId(taskId: string): boolean {
  return taskIdProblem(taskId) === undefined;
}

export interface TaskPaths {
  taskId: string;
  dir: string;
  log: string;
  index: string;
  lock: string;
}

export function taskPaths(outDir: string, runsDir: string, taskId: string): TaskPaths {
  const dir = path.join(outDir, taskId);
  return {
    taskId,
    dir,
    log: path.join(dir, LOG_FILE),
    index: path.join(dir, INDEX_FILE),
    lock: path.join(runsDir, `${taskId}.experiences.lock`),
  };
}

export interface StoreDirs {
  outDir: string;
  runsDir: string;
}

/**
 * The older store's defaults: `$CODEX_ORCHESTRATOR_OUT_DIR` or `out`, and
 * `$CODEX_ORCHESTRATOR_RUNS_DIR` or `.runs`, both resolved against
 * `$CODEX_ORCHESTRATOR_ROOT` or the working directory.
 */
export function resolveStoreDirs(
  options: { outDir?: string; runsDir?: string },
  env: Record<string, string | undefined> = process.env,
): StoreDirs {
  const root = env.CODEX_ORCHESTRATOR_ROOT || process.cwd();
  return {
    outDir: path.resolve(root, options.outDir ?? (env.CODEX_ORCHESTRATOR_OUT_DIR || 'out')),
    runsDir: path.resolve(root, options.runsDir ?? (env.CODEX_ORCHESTRATOR_RUNS_DIR || '.runs')),
  };
}
