/**
 * The shape of a command, and what main.ts hands it once the global options
 * are parsed and checked (the store directory exists, every --task is valid).
 */
import type { ParseArgsConfig } from 'node:util';
import type { ExperienceStore } from '../store.js';
import type { CliIo } from './io.js';

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandSpec {
  name: string;
  /** After the program name, e.g. `top --domain D [--limit N] [--min-reward X]`. */
  usage: string;
  summary: string;
  /** Options only this command takes; the global ones are added by main.ts. */
  options: NonNullable<ParseArgsConfig['options']>;
  /** [flag, description] lines for `<command> --help`. */
  optionHelp: Array<[string, string]>;
  /**
   * Check this command's own flags (a UsageError, exit 2) before anything
   * touches the disk, and return the run they configure.
   */
  prepare(values: OptionValues, taskIds: readonly string[]): (ctx: CommandContext) => Promise<number>;
}

export interface CommandContext {
  io: CliIo;
  /** Absolute paths. */
  outDir: string;
  runsDir: string;
  /** --out as the user wrote it, or the resolved default: for messages. */
  outLabel: string;
  /** The --task values, validated, each an existing task directory; empty = every task. */
  taskIds: string[];
  json: boolean;
  /** A store on outDir/runsDir; `indexTopK` only matters to rebuilds. */
  store(options?: { indexTopK?: number }): ExperienceStore;
  /** The --task values, or every task under outDir. */
  tasks(): string[];
}
