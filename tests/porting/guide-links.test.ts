/*
 * docs/porting-guide.md links every step to the function that does it and
 * backs every "what breaks" claim with a named test. Both kinds of
 * reference rot silently when code moves or a test is renamed, so they are
 * checked here against the tree:
 *
 *   [`name`](../path.ts)          the file exists and declares `name`
 *   [text](../path)               the file exists
 *   `tests/x.test.ts › title`     the test file exists and has a test with
 *                                 that title (a title ending in "…" is a
 *                                 prefix)
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The source tree (this file runs from build/tests/porting or .tmp/NAME/tests/porting). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'docs', 'porting-guide.md'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('docs/porting-guide.md not found above this test');
    dir = up;
  }
  return dir;
}

const root = repoRoot();
const guide = readFileSync(path.join(root, 'docs', 'porting-guide.md'), 'utf8');
const source = (rel: string): string => readFileSync(path.join(root, rel), 'utf8');

/** Titles of the ava tests in a file: test('…'), test.serial("…"), test(`…`) without substitutions. */
function testTitles(text: string): string[] {
  const out: string[] = [];
  const re = /\btest(?:\.serial)?\(\s*(['"`])((?:\\.|(?!\1)[^\\])*)\1/g;
  for (const m of text.matchAll(re)) out.push(m[2]!.replace(/\\(.)/g, '$1'));
  return out;
}

/** The file declares `name` (function, const, class, or a method/field of that name). */
function declares(text: string, name: string): boolean {
  const n = name.replace(/[$]/g, '\\$&');
  return new RegExp(`(?:function\\*?\\s+${n}\\b|(?:const|let|class|interface|type)\\s+${n}\\b|^\\s*(?:async\\s+)?${n}\\s*\\()`, 'm').test(text);
}

test('every [`function`](file) link of the porting guide names a function declared in that file', (t) => {
  const links = [...guide.matchAll(/\[`([A-Za-z_$][\w$]*)`\]\(\.\.\/([^)#]+)\)/g)];
  t.true(links.length >= 40, `only ${links.length} function links found: has the guide's link syntax changed?`);
  for (const [, name, rel] of links) {
    if (!existsSync(path.join(root, rel!))) {
      t.fail(`${name}: ${rel} does not exist`);
      continue;
    }
    t.true(declares(source(rel!), name!), `${rel} does not declare ${name}`);
  }
});

test('every other relative link of the porting guide points at a file that exists', (t) => {
  const links = [...guide.matchAll(/\]\(\.\.\/([^)#]+)\)/g)].map((m) => m[1]!);
  t.true(links.length > 0);
  for (const rel of new Set(links)) t.true(existsSync(path.join(root, rel)), `${rel} does not exist`);
});

test('every test the porting guide names exists under that title', (t) => {
  const refs = [...guide.matchAll(/`(tests\/[\w/.-]+\.test\.ts) › ([^`]+)`/g)];
  t.true(refs.length >= 30, `only ${refs.length} test references found`);
  const titles = new Map<string, string[]>();
  for (const [, rel, title] of refs) {
    if (!existsSync(path.join(root, rel!))) {
      t.fail(`${rel} does not exist (named with "${title}")`);
      continue;
    }
    if (!titles.has(rel!)) titles.set(rel!, testTitles(source(rel!)));
    const all = titles.get(rel!)!;
    const want = title!.replace(/\s+/g, ' ').trim();
    const found = want.endsWith('…')
      ? all.some((x) => x.startsWith(want.slice(0, -1).trimEnd()))
      : all.includes(want);
    t.true(found, `${rel} has no test "${want}"`);
  }
});

test('the title matcher reads quoted titles with escapes and finds none that are not there', (t) => {
  const titles = testTitles("test('it\\'s a title', () => {});\ntest.serial(\"two\", f);\nfoo('not a test');");
  t.deepEqual(titles, ["it's a title", 'two']);
  t.true(declares('export function xen_prepare_suspend(cpu) {', 'xen_prepare_suspend'));
  t.false(declares('xen_prepare_suspend_more(cpu);', 'xen_prepare_suspend'));
});
