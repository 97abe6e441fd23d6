/**
 * An fs seam for fault injection in the test process: wraps the synchronous fs
 * functions the library uses (its named imports read the module's exports,
 * which `syncBuiltinESMExports` refreshes), counts the calls that touch files
 * under one directory, and makes the Nth of them fail — once, or for good from
 * then on. A failing `writeSync` can first write half its bytes, as a disk that
 * fills up mid-write does.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const PATH_FUNCTIONS = [
  'openSync',
  'statSync',
  'lstatSync',
  'mkdirSync',
  'readdirSync',
  'unlinkSync',
  'renameSync',
  'linkSync',
  'utimesSync',
  'chmodSync',
  'chownSync',
  'readFileSync',
  'writeFileSync',
  'readlinkSync',
  'realpathSync',
  'rmSync',
  'truncateSync',
] as const;
const FD_FUNCTIONS = ['closeSync', 'readSync', 'writeSync', 'writevSync', 'fstatSync', 'ftruncateSync', 'futimesSync', 'fsyncSync'] as const;

export interface FaultPlan {
  /** 1-based index of the first call that fails. */
  nth: number;
  /** Every later call fails too. */
  persistent: boolean;
  /** errno code of the failure, e.g. 'EIO' or 'ENOSPC'. */
  code: string;
  /** A failing writeSync first writes half its bytes and returns that count (a short write); the next call fails. */
  shortWrite?: boolean;
  /** Only these functions fail (a full disk refuses writes, not truncates or closes); default all. */
  only?: readonly string[];
}

export interface FaultSeam {
  /** Calls counted so far (touching `root`). */
  readonly calls: number;
  /** What failed, as "fn(path)". */
  readonly failed: string[];
  restore(): void;
}

/** Wrap fs so calls under `root` count; with `plan`, the planned ones fail. */
export function injectFaults(root: string, plan?: FaultPlan): FaultSeam {
  const originals = new Map<string, unknown>();
  const fds = new Set<number>();
  const failed: string[] = [];
  let calls = 0;
  let shortWritten = false;
  const f = fs as unknown as Record<string, (...args: unknown[]) => unknown>;

  const decide = (label: string): 'fail' | 'short' | 'pass' => {
    calls++;
    if (plan === undefined) return 'pass';
    if (plan.only !== undefined && !plan.only.some((fn) => label.startsWith(`${fn}(`))) return 'pass';
    const hit = calls === plan.nth || (plan.persistent && calls > plan.nth);
    if (!hit) return 'pass';
    if (plan.shortWrite && (label.startsWith('writeSync') || label.startsWith('writevSync')) && !shortWritten) {
      shortWritten = true;
      return 'short';
    }
    failed.push(label);
    return 'fail';
  };
  const failure = (fn: string, where: string) =>
    Object.assign(new Error(`${plan!.code}: injected failure, ${fn} '${where}'`), { code: plan!.code, syscall: fn, path: where });

  const underRoot = (p: unknown) => (typeof p === 'string' || p instanceof URL) && String(p).startsWith(root);

  for (const name of PATH_FUNCTIONS) {
    const original = f[name]!;
    originals.set(name, original);
    const wrapped = (...args: unknown[]) => {
      if (!underRoot(args[0]) && !(name === 'linkSync' || name === 'renameSync' ? underRoot(args[1]) : false)) return original(...args);
      if (decide(`${name}(${String(args[0])})`) === 'fail') throw failure(name, String(args[0]));
      const result = original(...args);
      if (name === 'openSync') fds.add(result as number);
      return result;
    };
    if (name === 'realpathSync') (wrapped as unknown as { native: unknown }).native = (original as unknown as { native: unknown }).native;
    f[name] = wrapped;
  }
  for (const name of FD_FUNCTIONS) {
    const original = f[name]!;
    originals.set(name, original);
    f[name] = (...args: unknown[]) => {
      const fd = args[0] as number;
      if (!fds.has(fd)) return original(...args);
      const verdict = decide(`${name}(fd ${fd})`);
      if (verdict === 'fail') {
        if (name === 'closeSync') {
          // A failed close still releases the descriptor (POSIX leaves it unspecified; Linux closes it).
          original(...args);
          fds.delete(fd);
        }
        throw failure(name, `fd ${fd}`);
      }
      if (verdict === 'short' && name === 'writevSync') {
        const first = (args[1] as Buffer[])[0]!;
        return original(fd, [first.subarray(0, Math.max(1, first.length >> 1))]);
      }
      if (verdict === 'short') {
        const [, buffer, offset = 0, length] = args as [number, Buffer, number | undefined, number | undefined];
        const total = length ?? buffer.length - offset;
        return original(fd, buffer, offset, Math.max(1, Math.floor(total / 2)), ...args.slice(4));
      }
      if (name === 'closeSync') fds.delete(fd);
      return original(...args);
    };
  }
  syncBuiltinESMExports();
  return {
    get calls() {
      return calls;
    },
    failed,
    restore() {
      for (const [name, original] of originals) f[name] = original as (...args: unknown[]) => unknown;
      syncBuiltinESMExports();
    },
  };
}
