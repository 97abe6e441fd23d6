/**
 * The package's entry point as one ESM file (plus a chunk for what loads
 * lazily): `dist/lib/index.js`, built from tsc's output in `dist/src`.
 *
 * Why: a fresh process that imports the package pays the module loader for
 * every file it reaches, and an orchestrator run is a fresh process. One file
 * instead of twenty-one halves the import (docs/benchmarks.md, "What a run
 * pays"). The CLI and the tests use `dist/src` as tsc wrote it; the bundle is
 * the same code, concatenated. Dependencies stay external (they load lazily:
 * write-file-atomic on the first index write, zod only to explain bad input).
 */
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/src/index.js'],
  outdir: 'dist/lib',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['write-file-atomic', 'zod'],
  legalComments: 'none',
  logLevel: 'warning',
});
