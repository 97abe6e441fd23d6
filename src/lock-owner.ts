/**
 * Owner records inside lock files: the one we write, every format we read, and
 * the judgement of whether the owner still holds its lock. docs/locking.md is
 * the format and the argument; this module is its "Formats" and "Takeover"
 * sections in code. Only the process probes (/proc, kill 0) touch the system.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { errorCode } from './errors.js';

/** `kind` of an owner record, shared with the newer orchestrator. */
export const OWNER_KIND = 'codex-lock-owner';
/** `kind` of a record left by a holder whose unlink was refused: free to take at once. */
export const RELEASED_KIND = 'experience-store-released-lock';

// The newer orchestrator's tolerance when it compares a pid's start time with
// `acquired_at` (a process that started later reused the pid).
const START_AFTER_ACQUIRE_TOLERANCE_MS = 2_000;
// Linux reports process start times in USER_HZ ticks, 100 on every architecture.
const TICKS_PER_SECOND = 100;

export type LockOwner =
  | { kind: 'empty' } // an older writer's O_EXCL lock, or a newer orchestrator between open and write
  | { kind: 'unknown'; text: string }
  | { kind: 'released'; token: string }
  | {
      kind: 'owner';
      token: string;
      taskId: string | null;
      pid: number | null;
      host: string | null;
      acquiredAt: string | null;
      staleMs: number | null;
      bootId: string | null; // ours only: /proc/sys/kernel/random/boot_id
      pidNs: string | null; // ours only: readlink /proc/self/ns/pid
      procStart: string | null; // ours only: field 22 of /proc/<pid>/stat
    };

export interface LocalIdentity {
  host: string;
  bootId: string | null;
  pidNs: string | null;
  procStart: string | null;
}

let local: LocalIdentity | undefined;

/** Who we are, as owner records say it. Read once; what the OS does not tell is null. */
export function localIdentity(): LocalIdentity {
  local ??= {
    host: hostname(),
    bootId: tryRead(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()),
    pidNs: tryRead(() => readlinkSync('/proc/self/ns/pid')),
    procStart: readProcStat(process.pid)?.startTicks ?? null,
  };
  return local;
}

/** Our owner record: one JSON line in the newer orchestrator's format plus fields it ignores. */
export function formatOwnerRecord(token: string, taskId: string, staleMs: number | null): string {
  const me = localIdentity();
  return (
    JSON.stringify({
      schema_version: 1,
      kind: OWNER_KIND,
      token,
      task_id: taskId,
      pid: process.pid,
      host: me.host,
      acquired_at: new Date().toISOString(),
      stale_ms: staleMs,
      boot_id: me.bootId,
      pid_ns: me.pidNs,
      proc_start: me.procStart,
    }) + '\n'
  );
}

/**
 * The record a holder leaves when it may not unlink its lock. Padded with
 * spaces to `minLength` so that it overwrites the owner record in place with a
 * single write (JSON.parse ignores trailing white space).
 */
export function formatReleasedRecord(token: string, minLength: number): string {
  const text = JSON.stringify({ schema_version: 1, kind: RELEASED_KIND, token, pid: process.pid, host: localIdentity().host });
  return text.padEnd(Math.max(minLength - 1, text.length)) + '\n';
}

/** Read a lock file's content in any of the formats writers leave. */
export function parseOwner(text: string): LockOwner {
  if (text.trim() === '') return { kind: 'empty' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'unknown', text };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'unknown', text };
  const v = value as Record<string, unknown>;
  const token = nonBlank(v.token);
  if (v.schema_version !== 1 || token === null) return { kind: 'unknown', text };
  if (v.kind === RELEASED_KIND) return { kind: 'released', token };
  if (v.kind !== OWNER_KIND) return { kind: 'unknown', text };
  return {
    kind: 'owner',
    token,
    taskId: nonBlank(v.task_id),
    pid: typeof v.pid === 'number' && Number.isSafeInteger(v.pid) && v.pid > 0 ? v.pid : null,
    host: nonBlank(v.host),
    acquiredAt: nonBlank(v.acquired_at),
    staleMs: typeof v.stale_ms === 'number' && Number.isFinite(v.stale_ms) && v.stale_ms > 0 ? v.stale_ms : null,
    bootId: nonBlank(v.boot_id),
    pidNs: nonBlank(v.pid_ns),
    procStart: nonBlank(v.proc_start),
  };
}

/** The token that tells this lock instance apart, or null for formats without one. */
export function ownerToken(owner: LockOwner): string | null {
  return owner.kind === 'owner' || owner.kind === 'released' ? owner.token : null;
}

/**
 * Is the owner's process running? `dead` only when provable; `alive` when a
 * live owner is the best reading; `unknown` hands the lock to the age rule.
 */
export type Liveness = 'dead' | 'alive' | 'unknown';

export function judgeLiveness(owner: LockOwner, me: LocalIdentity = localIdentity()): Liveness {
  if (owner.kind === 'released') return 'dead';
  if (owner.kind !== 'owner' || owner.pid === null || owner.host !== me.host) return 'unknown';
  if (owner.bootId !== null || owner.pidNs !== null) {
    // Our own format: its pid means something here only on this boot and in this pid namespace.
    if (me.bootId === null || me.pidNs === null || owner.bootId !== me.bootId || owner.pidNs !== me.pidNs) return 'unknown';
    if (owner.pid === process.pid) return owner.procStart === null || owner.procStart === me.procStart ? 'alive' : 'dead';
    const probe = probeProcess(owner.pid);
    if (probe.kind === 'absent') return 'dead';
    if (probe.stat === undefined) return 'alive'; // exists, but /proc does not say which process it is
    if (probe.stat.isZombie) return 'dead';
    return owner.procStart !== null && probe.stat.startTicks !== owner.procStart ? 'dead' : 'alive';
  }
  // The newer orchestrator's format names no boot or pid namespace. A pid that
  // is absent here may be alive in a sibling container that shares our hostname
  // (pods do), so absence is not proof: the age rule decides, as the
  // orchestrator decides for its own dead owners. A present pid that started
  // before `acquired_at` is read as the owner, as the orchestrator reads it.
  const probe = probeProcess(owner.pid);
  if (probe.kind === 'absent' || probe.stat?.isZombie) return 'unknown';
  const startedAtMs = probe.stat === undefined ? null : processStartMs(probe.stat.startTicks);
  const acquiredAtMs = owner.acquiredAt === null ? NaN : Date.parse(owner.acquiredAt);
  if (startedAtMs !== null && Number.isFinite(acquiredAtMs) && startedAtMs > acquiredAtMs + START_AFTER_ACQUIRE_TOLERANCE_MS) {
    return 'unknown'; // the pid was reused since, or names a process of another namespace
  }
  return 'alive';
}

export type LockVerdict =
  | { isFree: true; reason: 'released' | 'owner-dead' | 'stale'; ageMs: number }
  | { isFree: false; reason: 'owner-alive' | 'young'; ageMs: number };

/**
 * Free to take now? A provably gone owner: at once. A live owner on this host:
 * never, whatever the age. Anything else: when its mtime is older than
 * `staleMs` (a future mtime counts as age 0).
 */
export function judgeLock(owner: LockOwner, mtimeMs: number, staleMs: number, nowMs = Date.now()): LockVerdict {
  const ageMs = Math.max(0, nowMs - mtimeMs);
  if (owner.kind === 'released') return { isFree: true, reason: 'released', ageMs };
  const liveness = judgeLiveness(owner);
  if (liveness === 'dead') return { isFree: true, reason: 'owner-dead', ageMs };
  if (liveness === 'alive') return { isFree: false, reason: 'owner-alive', ageMs };
  return ageMs > staleMs ? { isFree: true, reason: 'stale', ageMs } : { isFree: false, reason: 'young', ageMs };
}

/** What a lock's owner record says, for error messages. */
export function describeOwner(owner: LockOwner, verdict: LockVerdict): string {
  const age = `last refreshed ${formatAge(verdict.ageMs)} ago`;
  switch (owner.kind) {
    case 'empty':
      return `an empty lock file (an older writer's), ${age}`;
    case 'unknown':
      return `a lock file in an unknown format, ${age}`;
    case 'released':
      return `a lock its holder released but could not remove (free to take), ${age}`;
    case 'owner': {
      const status = verdict.reason === 'owner-alive' ? 'its process is alive on this host' : 'its process cannot be checked from here';
      return `pid ${owner.pid ?? '?'} on host ${owner.host ?? '?'} (task ${owner.taskId ?? '?'}, acquired ${owner.acquiredAt ?? '?'}), ${age}; ${status}`;
    }
  }
}

function formatAge(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${Math.round(ms / 1000)} s`;
}

interface ProcStat {
  isZombie: boolean;
  startTicks: string;
}

type Probe = { kind: 'absent' } | { kind: 'present'; stat: ProcStat | undefined };

function probeProcess(pid: number): Probe {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errorCode(err) === 'ESRCH') return { kind: 'absent' };
    // EPERM: it exists, owned by another user.
  }
  const stat = readProcStat(pid);
  // Gone between the two looks: absent too.
  if (stat === null) return { kind: 'absent' };
  return { kind: 'present', stat };
}

/** Fields 3 and 22 of /proc/<pid>/stat; null when the process is gone, undefined when /proc cannot tell. */
function readProcStat(pid: number): ProcStat | null | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    return errorCode(err) === 'ENOENT' && procIsMounted() ? null : undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces or ")".
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const startTicks = fields[19];
  if (startTicks === undefined || !/^\d+$/.test(startTicks)) return undefined;
  return { isZombie: fields[0] === 'Z' || fields[0] === 'X', startTicks };
}

let bootTimeMs: number | null | undefined;

function processStartMs(startTicks: string): number | null {
  if (bootTimeMs === undefined) {
    const btime = tryRead(() => /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? null);
    bootTimeMs = btime === null ? null : Number(btime) * 1000;
  }
  return bootTimeMs === null ? null : bootTimeMs + (Number(startTicks) * 1000) / TICKS_PER_SECOND;
}

function procIsMounted(): boolean {
  return tryRead(() => readlinkSync('/proc/self')) !== null;
}

function tryRead<T>(read: () => T | null): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}

function nonBlank(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
}
