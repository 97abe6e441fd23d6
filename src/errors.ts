/**
 * Error classes. Callers branch on `code`, never on message text, so messages
 * can keep improving: each one names the field, file or variable, the problem
 * and what to do next.
 */
export type ErrorCode =
  | 'EXP_INVALID_INPUT' // a recordBatch input or fetch query is malformed; nothing was written
  | 'EXP_LOCKED' // the task's lock file could not be taken within the retry budget
  | 'EXP_BAD_ENV' // an environment variable has a value we cannot use (a bad option is EXP_INVALID_INPUT)
  | 'EXP_IO'; // the file system refused an operation we cannot treat as an answer

export class ExperienceStoreError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The task's lock file could not be taken within `lockRetry.maxAttempts` tries
 * (the first try counts). The message names the lock file, what its owner
 * record says (pid, host, age) and how to clear it by hand; `owner` is that
 * description alone.
 */
export class ExperienceStoreLockError extends ExperienceStoreError {
  readonly taskId: string;
  readonly lockPath: string;
  readonly owner: string | undefined;

  constructor(taskId: string, lockPath: string, attempts: number, options?: { cause?: unknown; owner?: string }) {
    super(
      'EXP_LOCKED',
      `could not take the lock ${lockPath} for task "${taskId}" after ${attempts} attempt(s); ` +
        `it is held by ${options?.owner ?? 'another writer'}. Retry later; if no writer of this task runs ` +
        `on any host, delete ${lockPath} by hand`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.taskId = taskId;
    this.lockPath = lockPath;
    this.owner = options?.owner;
  }
}

/** The `code` of a Node fs error (`ENOENT`, `EEXIST`, ...), or undefined for anything else. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Wrap an unexpected fs failure in an EXP_IO error that names the file and the next step. */
export function ioError(action: string, file: string, err: unknown): ExperienceStoreError {
  const code = errorCode(err) ?? 'unknown error';
  const hint =
    code === 'EACCES' || code === 'EPERM'
      ? "check the file's owner and permissions"
      : code === 'ENOSPC'
        ? 'free disk space and retry'
        : 'check the path and retry';
  return new ExperienceStoreError('EXP_IO', `cannot ${action} ${file}: ${code}; ${hint}`, { cause: err });
}
