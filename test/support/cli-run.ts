/**
 * Run the built CLI as a user does: `node dist/src/cli/bin.js ...` in a child
 * process, collecting exit code, stdout and stderr. `ensureBuilt` compiles
 * first when dist/ is missing or older than a source file (`npm test` builds
 * before the run; `npx vitest run test/cli.test.ts` may not have).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN } from './build.js';

export { BIN, ensureBuilt, ROOT } from './build.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the CLI with `args`. The environment is cleared of the variables that
 * change defaults, so only what a test passes applies. Without `cwd`, the run
 * gets an empty working directory of its own, and fails if the CLI leaves
 * anything in it (such as a default `.runs`): no command may, and the
 * repository stays clean.
 */
export async function runCli(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<CliResult> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('CODEX_') || name === 'DEBUG') delete env[name];
  }
  Object.assign(env, options.env);
  const cwd = options.cwd ?? mkdtempSync(path.join(os.tmpdir(), 'experience-store-cli-cwd-'));
  try {
    const result = await new Promise<CliResult>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    if (options.cwd === undefined) {
      const left = readdirSync(cwd);
      if (left.length > 0) throw new Error(`experience-store ${args.join(' ')} left ${left.join(', ')} in its working directory`);
    }
    return result;
  } finally {
    if (options.cwd === undefined) rmSync(cwd, { recursive: true, force: true });
  }
}
