/**
 * The README's examples are the first code a new user runs: run every one of
 * them as written (against the built package), each in a fresh directory, and
 * check that it prints what the README says it prints.
 *
 * A runnable example is a ```js block that imports from 'experience-store'; it
 * must be followed by a ```text block with its output. Record ids and lock ages
 * differ from run to run and are compared as placeholders; everything else
 * must match line for line.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect } from 'vitest';
import { ensureBuilt, PUBLISHED_ENTRY, ROOT } from './support/build.js';
import { test } from './support/temp-dir.js';

beforeAll(() => ensureBuilt(), 120_000);

interface Example {
  /** The nearest heading (level 1-3) above the example. */
  section: string;
  code: string;
  /** The ```text block after it: what it prints. */
  output: string;
}

const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

function runnableExamples(readme: string): Example[] {
  const examples: Example[] = [];
  const fence = /^```(\w*)\n([\s\S]*?)^```\n/gm;
  const blocks = [...readme.matchAll(fence)];
  blocks.forEach((block, i) => {
    const [, lang, body] = block;
    if (!body!.includes("from 'experience-store'")) return;
    const section = /^#{1,3} (.+)$/gm;
    const headings = [...readme.slice(0, block.index).matchAll(section)];
    const name = headings.at(-1)?.[1] ?? '(top)';
    if (lang !== 'js') throw new Error(`README example under "${name}" imports the package but is a \`\`\`${lang} block; runnable examples are \`\`\`js`);
    const next = blocks[i + 1];
    const between = next === undefined ? '' : readme.slice(block.index + block[0].length, next.index);
    if (next === undefined || next[1] !== 'text' || between.includes('```') || /^#/m.test(between)) {
      throw new Error(`README example under "${name}" must be followed by a \`\`\`text block with what it prints`);
    }
    examples.push({ section: name, code: body!, output: next[2]! });
  });
  return examples;
}

/** Ids and ages change from run to run. */
function normalize(text: string): string {
  return text
    .replace(/exp-[0-9a-z]+-[0-9a-f]{6}/g, 'exp-<id>')
    .replace(/\d+ ms ago/g, '<n> ms ago')
    .trimEnd();
}

/** Run an example as a user would: a file of its own, cwd a fresh directory, no store variables inherited. */
function run(example: Example, dir: string): string {
  const code = example.code.replaceAll("from 'experience-store'", `from '${pathToFileURL(PUBLISHED_ENTRY).href}'`);
  const file = path.join(dir, 'example.mjs');
  writeFileSync(file, code);
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CODEX_')));
  return execFileSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', env });
}

const examples = runnableExamples(README);

function example(section: string): Example {
  const found = examples.filter((e) => e.section === section);
  if (found.length !== 1) throw new Error(`expected one runnable README example under "${section}", found ${found.length}`);
  return found[0]!;
}

describe('README examples', () => {
  test('the README has runnable examples for the library, selectTop and error handling, each with its output', () => {
    expect(examples.map((e) => e.section)).toEqual(expect.arrayContaining(['Library', 'Competitive selection', 'Errors']));
  });

  for (const ex of examples) {
    test(`the example under "${ex.section}" runs as written and prints what the README shows`, ({ dir }) => {
      expect(normalize(run(ex, dir))).toBe(normalize(ex.output));
    });
  }

  test('the library example writes a log and an index, and its second fetch reads no log byte', ({ dir }) => {
    const stdout = run(example('Library'), dir);
    expect(stdout).toMatch(/\[exp exp-[0-9a-z]+-[0-9a-f]{6} \| epoch 3 \| reward 1\.50\] Replaced the hand-rolled retry loop/);
    expect(stdout).toContain('(stats: shell: 1840t/0.012usd/2310ms)');
    expect(stdout).toMatch(/indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0/);
    expect(existsSync(path.join(dir, 'out/checkout-service/experiences.jsonl'))).toBe(true);
    expect(existsSync(path.join(dir, 'out/checkout-service/experiences.top.json'))).toBe(true);
  });

  test('the selectTop example spreads the slots across sources, from the index, as fetchPolicy does', ({ dir }) => {
    const stdout = run(example('Competitive selection'), dir);
    expect(stdout).toContain('plain top 3: run-a1 run-a2 run-a3');
    expect(stdout).toContain('selectTop:   run-a1 run-b1 run-a2');
    expect(stdout).toContain('fetchPolicy:  run-a1 run-b1 run-a2');
    expect(stdout).toContain('| competitive 0.80 | anti-dom 0.50]');
    expect(stdout).toContain("suppressed_source_keys: [ 'group_id:sweep-a' ]");
    expect(stdout).toMatch(/candidates_complete: true\n\} false \{ indexHits: 1, tails: 0, fullScans: 0, bytesRead: 0, linesRead: 0 \}/);
  });

  test('the error example reaches the EXP_INVALID_INPUT and EXP_LOCKED branches, then writes once the lock is gone', ({ dir }) => {
    const stdout = run(example('Errors'), dir);
    expect(stdout).toMatch(/^rejected: inputs\[0\]\.stampSignature .*nothing was written$/m);
    expect(stdout).toMatch(/^busy: \.runs\/billing\.experiences\.lock is held by /m);
    expect(stdout).toMatch(/^written: 1$/m);
    const log = readFileSync(path.join(dir, 'out/billing/experiences.jsonl'), 'utf8');
    expect(log.trim().split('\n')).toHaveLength(1);
    expect(existsSync(path.join(dir, '.runs/billing.experiences.lock'))).toBe(false);
  });
});
