// Lint fixture snippets as if they lived at a given path of the tree, with
// the project's own eslint.config.js.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding package.json, found by walking up from this (compiled) file. */
export function findRepoRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const repoRoot = findRepoRoot();

export interface LintMessage {
  readonly ruleId: string | null;
  readonly message: string;
  readonly line: number;
  readonly severity: number;
}
interface LintResult {
  readonly messages: readonly LintMessage[];
}
interface ESLintApi {
  lintText(code: string, options: { filePath: string }): Promise<LintResult[]>;
}
type ESLintModule = { ESLint: new (options: { cwd: string }) => ESLintApi };

// eslint 9.9 ships no type declarations (they are bundled from 9.10 on) and
// @types/eslint is not a dependency, so this is `import { ESLint } from
// 'eslint'` with the slice of its API used here typed locally. (A plain
// `require('eslint')` keeps the specifier visible to the layer-boundary rule.)
const require = createRequire(import.meta.url);
const { ESLint } = require('eslint') as ESLintModule;
const eslint = new ESLint({ cwd: repoRoot });

/** The text of tests/fixtures/lint/<name>. */
export function fixture(name: string): string {
  return fs.readFileSync(path.join(repoRoot, 'tests', 'fixtures', 'lint', name), 'utf8');
}

/** Lint `code` as the file `filePath` (relative to the repo root; it need not exist). */
export async function lintAs(code: string, filePath: string): Promise<LintMessage[]> {
  const [result] = await eslint.lintText(code, { filePath });
  if (result === undefined) throw new Error(`eslint returned no result for ${filePath}`);
  return [...result.messages];
}

/** "rule: message" per message, in source order. */
export const describe = (messages: readonly LintMessage[]): string[] => messages.map((m) => `${m.ruleId ?? '(no rule)'}: ${m.message}`);

/* The reasons the plugin gives, one per boundary (tools/eslint-plugin-xenport.js). */
export const WHY = {
  guestToHost: 'guest code may import only hypervisor/public/ from the hypervisor side',
  guestToOther: 'guest code may import only guest code and hypervisor/public/',
  guestToNode: 'guest code reaches the host only through hypervisor/public/ (no Node modules, no packages but debug)',
  publicOut: 'hypervisor/public/ imports nothing outside itself',
  hostToGuest: 'the hypervisor never imports guest code (kernels are loaded by name)',
} as const;

export const boundary = (file: string, spec: string, why: string): string =>
  `xenport/layer-boundaries: ${file} imports "${spec}": ${why}`;
export const letVar = (kind: string, name: string): string =>
  `xenport/no-module-state: module-level \`${kind} ${name}\` in guest code: guest state lives in guest memory`;
export const mutable = (name: string, what: string): string =>
  `xenport/no-module-state: module-level \`const ${name}\` holds a mutable ${what}: freeze it or keep it in guest memory`;
export const staticField = (name: string): string =>
  `xenport/no-module-state: static class field \`${name}\` is module-level state: make it readonly or keep it in guest memory`;
