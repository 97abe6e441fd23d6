/**
 * What a run paid with the older design (bench/older-store.ts), in a fresh process:
 *   node dist/bench/one-shot-older.js import
 *   node dist/bench/one-shot-older.js fetch <outDir> <runsDir> <taskId> <domain>
 *   node dist/bench/one-shot-older.js fetch-write <outDir> <runsDir> <taskId> <domain> <batch JSON> <manifestPath>
 * The same steps as one-shot-ours.ts with the older store: import, construct,
 * fetch the top 5 (and write one batch), print the fetched ids and, at exit, its CPU time.
 * Kept apart from one-shot-ours.ts so that neither process loads the other's modules.
 */
import { OlderExperienceStore } from './older-store.js';

// This process's CPU time, for the parent (bench/measure.ts, measureProcesses).
process.on('exit', () => {
  const { user, system } = process.cpuUsage();
  process.stdout.write(`cpu-us ${user + system}\n`);
});

const [mode, outDir, runsDir, taskId, domain, batch, manifestPath] = process.argv.slice(2);
if (mode !== 'import') {
  const store = new OlderExperienceStore({ outDir, runsDir });
  const top = await store.fetchTop({ domain: domain!, limit: 5, taskId: taskId! });
  if (mode === 'fetch-write') await store.recordBatch(JSON.parse(batch!), manifestPath!);
  process.stdout.write(`${top.map((r) => r.id).join(',')}\n`);
}
