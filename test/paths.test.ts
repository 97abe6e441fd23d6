import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isValidTaskId, resolveStoreDirs, taskIdProblem, taskPaths } from '../src/paths.js';

describe('taskIdProblem', () => {
  // Every kind of bad task id SPEC lists: each would escape outDir or be unrepresentable on some file system.
  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['a slash', 'a/b', /slash/],
    ['a leading slash', '/etc', /slash/],
    ['a backslash', 'a\\b', /backslash/],
    ['a leading dot', '.hidden', /start with "\."/],
    ['dot-dot', '..', /start with "\."/],
    ['a single dot', '.', /start with "\."/],
    ['a NUL', 'a\u0000b', /control/],
    ['a newline', 'a\nb', /control/],
    ['a tab', 'a\tb', /control/],
    ['DEL', 'a\u007fb', /control/],
    ['<', 'a<b', /< > :/],
    ['>', 'a>b', /< > :/],
    [':', 'a:b', /< > :/],
    ['"', 'a"b', /< > :/],
    ['|', 'a|b', /< > :/],
    ['?', 'a?b', /< > :/],
    ['*', 'a*b', /< > :/],
  ];

  it.each(bad)('rejects a task id with %s', (_what, taskId, reason) => {
    expect(taskIdProblem(taskId)).toMatch(reason);
    expect(isValidTaskId(taskId)).toBe(false);
  });

  it.each(['task-a', 't1', 'a.b', 'a..b', 'trailing.', 'with space', 'ünïcødé-任务', 'UPPER_case-9', 'a'.repeat(200)])(
    'accepts %j',
    (taskId) => {
      expect(taskIdProblem(taskId)).toBeUndefined();
      expect(isValidTaskId(taskId)).toBe(true);
    },
  );
});

describe('taskPaths', () => {
  it('puts the log and index in <outDir>/<taskId>/ and the lock in <runsDir>/<taskId>.experiences.lock', () => {
    const p = taskPaths(path.join('root', 'out'), path.join('root', '.runs'), 'task-a');
    expect(p).toEqual({
      taskId: 'task-a',
      dir: path.join('root', 'out', 'task-a'),
      log: path.join('root', 'out', 'task-a', 'experiences.jsonl'),
      index: path.join('root', 'out', 'task-a', 'experiences.top.json'),
      lock: path.join('root', '.runs', 'task-a.experiences.lock'),
    });
  });
});

describe('resolveStoreDirs', () => {
  const root = path.resolve('project-root');

  it('defaults to out and .runs under the working directory', () => {
    expect(resolveStoreDirs({}, {})).toEqual({ outDir: path.resolve('out'), runsDir: path.resolve('.runs') });
  });

  it('takes the environment variables, resolved against CODEX_ORCHESTRATOR_ROOT', () => {
    const env = { CODEX_ORCHESTRATOR_ROOT: root, CODEX_ORCHESTRATOR_OUT_DIR: 'o', CODEX_ORCHESTRATOR_RUNS_DIR: 'r' };
    expect(resolveStoreDirs({}, env)).toEqual({ outDir: path.join(root, 'o'), runsDir: path.join(root, 'r') });
  });

  it('prefers explicit options over the environment, and keeps absolute paths as they are', () => {
    const env = { CODEX_ORCHESTRATOR_ROOT: root, CODEX_ORCHESTRATOR_OUT_DIR: 'o', CODEX_ORCHESTRATOR_RUNS_DIR: 'r' };
    const abs = path.resolve('elsewhere');
    expect(resolveStoreDirs({ outDir: 'mine', runsDir: abs }, env)).toEqual({ outDir: path.join(root, 'mine'), runsDir: abs });
  });

  it('treats empty environment variables as unset', () => {
    const env = { CODEX_ORCHESTRATOR_ROOT: '', CODEX_ORCHESTRATOR_OUT_DIR: '', CODEX_ORCHESTRATOR_RUNS_DIR: '' };
    expect(resolveStoreDirs({}, env)).toEqual({ outDir: path.resolve('out'), runsDir: path.resolve('.runs') });
  });
});
