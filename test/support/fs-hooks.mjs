/**
 * A seam in `fs` for forcing an order of events or a failure in a real process.
 *
 * In a child: `node --import <this file> child.mjs` with EXP_FS_HOOK set to a
 * rule or an array of rules (JSON). In a test process: `installFsHooks(rules)`
 * and `removeFsHooks()`. Either way the functions of `node:fs` are replaced and
 * `module.syncBuiltinESMExports()` is called, so code that did
 * `import { linkSync } from 'node:fs'` (the built package) sees the hooks.
 *
 * A rule:
 *   fn       name of any `fs` function ("linkSync", "unlinkSync", "futimesSync", ...)
 *   path     optional substring: only calls with a string argument containing it count
 *   pathEnd  optional suffix: only calls with a string argument ending with it count
 *   nth      the rule fires at the nth counted call (1-based, default 1)
 *   action   "pause": write `reached` (default `${until}.reached`), then block the
 *                     whole process synchronously until the file `until` exists,
 *                     then make the call
 *            "fail":  throw an fs-like error with `errno` (default "EIO") instead
 *                     of making the call; `times` calls in a row (default 1;
 *                     "always" = every counted call from the nth on)
 *            "kill":  write `reached`, then SIGKILL the process before the call
 *   when     optional "after": pause or kill after the call returned instead of before
 * Calls are counted per rule (by function name and path filter). `onCall`
 * (in-process only) sees every call to a hooked function: `{ fn, args }`.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const originals = new Map();
const pauseCell = new Int32Array(new SharedArrayBuffer(4));

const ERRNOS = { EIO: -5, EPERM: -1, EACCES: -13, ENOSPC: -28, EEXIST: -17, ENOENT: -2, EBUSY: -16, EROFS: -30, EMFILE: -24 };

/** Replace `fs` functions as the rules say; returns the per-rule call counts. */
export function installFsHooks(rules, options = {}) {
  removeFsHooks();
  const list = Array.isArray(rules) ? rules : [rules];
  const counts = list.map(() => 0);
  const names = new Set([...list.map((r) => r.fn), ...(options.trace ?? [])]);
  for (const fn of names) {
    const original = fs[fn];
    if (typeof original !== 'function') throw new Error(`fs.${fn} is not a function`);
    originals.set(fn, original);
    fs[fn] = function hooked(...args) {
      options.onCall?.({ fn, args });
      const firing = [];
      list.forEach((rule, i) => {
        if (rule.fn !== fn || !matchesPath(rule, args)) return;
        counts[i]++;
        const nth = rule.nth ?? 1;
        const times = rule.times === 'always' ? Infinity : (rule.times ?? 1);
        if (counts[i] >= nth && counts[i] < nth + times) firing.push(rule);
      });
      for (const rule of firing) if (rule.when !== 'after') act(rule, fn, args);
      const result = original.apply(this, args);
      for (const rule of firing) if (rule.when === 'after') act(rule, fn, args);
      return result;
    };
    Object.assign(fs[fn], original); // keeps realpathSync.native and the like
  }
  syncBuiltinESMExports();
  return counts;
}

/** Put every hooked function back. */
export function removeFsHooks() {
  for (const [fn, original] of originals) fs[fn] = original;
  originals.clear();
  syncBuiltinESMExports();
}

function matchesPath(rule, args) {
  const paths = args.map((a) => (a instanceof URL ? a.pathname : a)).filter((a) => typeof a === 'string');
  if (rule.path !== undefined && !paths.some((p) => p.includes(rule.path))) return false;
  if (rule.pathEnd !== undefined && !paths.some((p) => p.endsWith(rule.pathEnd))) return false;
  return true;
}

function act(rule, fn, args) {
  const original = (name) => originals.get(name) ?? fs[name];
  if (rule.action === 'fail') {
    const errno = rule.errno ?? 'EIO';
    const target = args.find((a) => typeof a === 'string') ?? String(args[0]);
    throw Object.assign(new Error(`${errno}: injected failure, ${fn} '${target}'`), {
      code: errno,
      errno: ERRNOS[errno] ?? -5,
      syscall: fn.replace(/Sync$/, ''),
      path: target,
    });
  }
  const reached = rule.reached ?? `${rule.until}.reached`;
  if (rule.action === 'kill') {
    if (rule.reached !== undefined) original('writeFileSync')(reached, `${process.pid}\n`);
    process.kill(process.pid, 'SIGKILL');
    Atomics.wait(pauseCell, 0, 0, 10_000);
  }
  if (rule.action === 'pause') {
    original('writeFileSync')(reached, `${process.pid}\n`);
    while (!original('existsSync')(rule.until)) Atomics.wait(pauseCell, 0, 0, 5);
  }
}

const fromEnv = process.env.EXP_FS_HOOK;
if (fromEnv) installFsHooks(JSON.parse(fromEnv));
