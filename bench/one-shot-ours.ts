/**
 * What a run pays with this package, in a fresh process (bench/cases.ts spawns it):
 *   node dist/bench/one-shot-ours.js import
 *   node dist/bench/one-shot-ours.js fetch <outDir> <runsDir> <taskId> <domain>
 *   node dist/bench/one-shot-ours.js fetch-write <outDir> <runsDir> <taskId> <domain> <batch JSON> <manifestPath>
 * Imports the built package through its published entry point (package.json
 * "exports": dist/lib/index.js, the bundle) the way a caller does, constructs
 * a store, fetches the top 5 (and writes one batch), prints the fetched ids and,
 * at exit, its CPU time.
 * Kept apart from one-shot-older.ts so that neither process loads the other's modules.
 */
import type * as Package from '../src/index.js';

// The path a consumer's `import 'experience-store'` resolves to (from dist/bench/).
const { ExperienceStore } = (await import(new URL('../lib/index.js', import.meta.url).href)) as typeof Package;

// This process's CPU time, for the parent (bench/measure.ts, measureProcesses).
process.on('exit', () => {
  const { user, system } = process.cpuUsage();
  process.stdout.write(`cpu-us ${user + system}\n`);
});

const [mode, outDir, runsDir, taskId, domain, batch, manifestPath] = process.argv.slice(2);
if (mode !== 'import') {
  const store = new ExperienceStore({ outDir, runsDir });
  const top = await store.fetchTop({ domain: domain!, limit: 5, taskId: taskId! });
  if (mode === 'fetch-write') await store.recordBatch(JSON.parse(batch!), manifestPath!);
  process.stdout.write(`${top.map((r) => r.id).join(',')}\n`);
}
