/**
 * One rebuildIndex in a process of its own, so that its peak RSS is its own:
 *   node dist/bench/rebuild-child.js <outDir> <runsDir> <taskId>
 * prints one JSON line { ms, maxRssBytes, records }.
 */
import { performance } from 'node:perf_hooks';
import { ExperienceStore } from '../src/index.js';

const [outDir, runsDir, taskId] = process.argv.slice(2);
if (outDir === undefined || runsDir === undefined || taskId === undefined) {
  console.error('usage: rebuild-child <outDir> <runsDir> <taskId>');
  process.exit(2);
}
const store = new ExperienceStore({ outDir, runsDir });
const start = performance.now();
const result = await store.rebuildIndex(taskId);
const ms = performance.now() - start;
// maxRSS is in KiB on Linux and macOS.
const maxRssBytes = process.resourceUsage().maxRSS * 1024;
console.log(JSON.stringify({ ms, maxRssBytes, records: result.records }));
