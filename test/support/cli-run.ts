/**
 * Run the built CLI as a user does: `node dist/src/cli/bin.js ...` in a child
 * process, collecting exit code, stdout and stderr. `ensureBuilt` compiles
 * first when dist/ is missing or older than a source file (`npm test` builds
 * before the run; `npx vitest run test/cli.test.ts` may not have).
 */
import { spawn } from 'node:child_process';
import { BIN, ROOT } from './build.js';

export { BIN, ensureBuilt, ROOT } from './build.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the CLI with `args`. The environment is cleared of the variables that
 * change defaults, so only what a test passes applies.
 */
export function runCli(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('CODEX_') || name === 'DEBUG') delete env[name];
  }
  Object.assign(env, options.env);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
