// Subtler ways to keep module state or reach the host from guest code, each
// once a hole in the rules and now caught. Kept as regression tests.
//
// Each fixture marks the lines that should get an error with `// expect-error`.
import test from 'ava';
import { fixture, lintAs, describe } from './lint.js';

const holes: ReadonlyArray<{ title: string; fixture: string; as: string }> = [
  { title: '`export default new Map()`', fixture: 'holes/export-default.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'state in a closure made by an IIFE at module load', fixture: 'holes/iife-closure.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'Object.freeze of a Map, and shallow freeze of a nested array', fixture: 'holes/frozen-mutable.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'Object.create(null) and Array.from at module level', fixture: 'holes/mutable-factories.ts.txt', as: 'sys/kern/bad.ts' },
  { title: '`static readonly` field holding a Map', fixture: 'holes/static-readonly-mutable.ts.txt', as: 'dev/bad.ts' },
  { title: '`var` nested in a top-level block or for', fixture: 'holes/nested-var.ts.txt', as: 'sys/kern/bad.ts' },
  { title: '`let` exported from a namespace', fixture: 'holes/namespace-let.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'top-level assignment hanging state on a function', fixture: 'holes/top-level-assignment.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'globalThis, host timers and process used without an import', fixture: 'holes/host-globals.ts.txt', as: 'sys/kern/bad.ts' },
  { title: 'module state in hypervisor/public/, which guest code runs', fixture: 'holes/public-module-state.ts.txt', as: 'hypervisor/public/io/bad.ts' },
  { title: 'a guest .mts file is not linted at all', fixture: 'holes/mts-file.ts.txt', as: 'sys/kern/bad.mts' },
];

for (const h of holes) {
  test(`caught: ${h.title}`, async (t) => {
    const code = fixture(h.fixture);
    const marked = code.split('\n').flatMap((line, i) => (line.includes('// expect-error') ? [i + 1] : []));
    const flagged = new Set((await lintAs(code, h.as)).filter((m) => m.severity === 2).map((m) => m.line));
    const missed = marked.filter((line) => !flagged.has(line));
    t.deepEqual(missed, [], `${h.fixture} linted as ${h.as}: every // expect-error line should have an error`);
  });
}

// The opposite kind of hole: an error where there should be none.
test('no false positive: a computed import() outside the three worlds is reported', async (t) => {
  const got = describe(await lintAs(fixture('good/other-dynamic-import.ts.txt'), 'tests/tools/loader.ts'));
  t.deepEqual(got, [], 'tests/ and tools/ may import anything, computed paths included');
});
