import test from 'ava';
import { fixture, lintAs, describe, letVar, mutable, staticField } from './lint.js';

const cases: ReadonlyArray<{ title: string; fixture: string; as: string; expect: string[] }> = [
  {
    title: 'module-level let and exported var',
    fixture: 'bad/guest-module-let.ts.txt',
    as: 'sys/kern/bad.ts',
    expect: [letVar('let', 'ticks'), letVar('var', 'count')],
  },
  {
    title: 'module-level const = new Map()',
    fixture: 'bad/guest-module-map.ts.txt',
    as: 'arch/xen/xen/bad.ts',
    expect: [mutable('handlers', 'new Map')],
  },
  {
    title: 'module-level const = [] and const = {} (also behind `as`)',
    fixture: 'bad/guest-module-literals.ts.txt',
    as: 'dev/bad.ts',
    expect: [mutable('queue', 'array'), mutable('softc', 'object')],
  },
  {
    title: 'static mutable class field (a readonly one passes)',
    fixture: 'bad/guest-static-field.ts.txt',
    as: 'dev/xbd/bad.ts',
    expect: [staticField('instances')],
  },
];

for (const c of cases) {
  test(`rejected in guest code: ${c.title}`, async (t) => {
    const got = describe(await lintAs(fixture(c.fixture), c.as));
    t.deepEqual(got, c.expect, `${c.fixture} linted as ${c.as}: exactly these module-state errors, in order`);
  });
}

test('the module-state rule is for guest code only: the same snippets pass in the hypervisor', async (t) => {
  for (const c of cases) {
    const got = describe(await lintAs(fixture(c.fixture), 'hypervisor/xen/ok.ts'));
    t.deepEqual(got, [], `${c.fixture} linted as hypervisor/xen/ok.ts: no messages`);
  }
});

test('function-local state is fine in guest code', async (t) => {
  const code = 'export function f(): number {\n  let n = 0;\n  const m = new Map<number, number>();\n  const a: number[] = [];\n  m.set(n, a.length);\n  return ++n;\n}\n';
  t.deepEqual(describe(await lintAs(code, 'sys/kern/ok.ts')), [], 'locals are rebuilt on every entry');
});
