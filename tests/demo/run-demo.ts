/*
 * Running a built demo (bin/demo.js, bin/demo-migrate.js beside this
 * test's build) and reading its output back: its sections and whether
 * given steps appear in them in order.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built demo `name` (e.g. 'demo.js'), from this test's build tree. */
export function builtDemo(name: string): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', name);
}

export function runDemo(file: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, out, err }));
  });
}

/** The lines of the section that starts with `== title`, up to the next `==` line. */
export function section(out: string, title: string): string[] {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`== ${title}`));
  if (at < 0) return [];
  const end = lines.findIndex((l, i) => i > at && l.startsWith('=='));
  return lines.slice(at + 1, end < 0 ? undefined : end);
}

/** Indices of the first line matching each pattern, in order; -1 where one is missing or out of order. */
export function inOrder(lines: readonly string[], pats: readonly RegExp[]): number[] {
  let from = 0;
  return pats.map((p) => {
    const i = lines.findIndex((l, k) => k >= from && p.test(l));
    if (i >= 0) from = i + 1;
    return i;
  });
}

/** The patterns of `pats` that are missing from `lines` or out of order. */
export function missing(lines: readonly string[], pats: readonly RegExp[]): string[] {
  const at = inOrder(lines, pats);
  return pats.filter((_, i) => at[i]! < 0).map(String);
}
