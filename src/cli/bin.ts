#!/usr/bin/env node
import { main } from './main.js';

// A reader that stops early (`experience-store top ... | head`) closes the pipe:
// that is the reader's choice, not a failure worth a stack trace. The command
// still runs to its end (a `verify --fix` finishes its rebuilds); output is dropped.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
