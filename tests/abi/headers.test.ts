/*
 * ABI test 2: our mirrors against the real Xen 4.17 headers. Compiles
 * tests/abi/probe.c with `cc` against /usr/include/xen (Debian libxen-dev)
 * in a temporary directory, runs it, and compares every size, offset and
 * constant it prints with ours. Missing headers or compiler make the tests
 * FAIL with what to install: the check is the point, it must not vanish.
 *
 * Coverage runs both ways: every fact the probe prints must match one of
 * ours, and every layout (with all its members) and constant our mirrors
 * export must be printed by the probe, unless abi-tables.ts lists it as
 * xenport's own with a reason.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { XSD_ERRORS } from '../../hypervisor/public/io/xs_wire.js';
import {
  findRepoRoot,
  collectExports,
  memberPaths,
  probeMustMeasure,
  probeMustPrint,
  compareStruct,
  sameAsC,
  JSON_STRUCTS,
  CONST_ALIASES,
} from './abi-tables.js';

const XEN_H = '/usr/include/xen/xen.h';
const root = findRepoRoot();
const probeSource = path.join(root, 'tests', 'abi', 'probe.c');

interface ProbeFacts {
  sizes: Map<string, number>;
  offsets: Map<string, Map<string, number>>;
  consts: Map<string, bigint>;
  strs: Map<string, string>;
  xsErrors: [number, string][];
}

function compileAndRun(): ProbeFacts {
  if (!fs.existsSync(XEN_H))
    throw new Error(`${XEN_H} is missing: install the Xen public headers (Debian: apt-get install libxen-dev)`);
  const ccVersion = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (ccVersion.error !== undefined || ccVersion.status !== 0)
    throw new Error(`no working C compiler \`cc\` on PATH (Debian: apt-get install gcc): ${ccVersion.error?.message ?? ccVersion.stderr}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-abi-probe-'));
  try {
    const exe = path.join(dir, 'probe');
    const cc = spawnSync('cc', ['-std=gnu11', '-Wall', '-o', exe, probeSource], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc failed to compile ${probeSource} against /usr/include/xen:\n${cc.stderr}`);
    const run = spawnSync(exe, [], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`the probe exited with ${String(run.status)}: ${run.stderr}`);
    return parse(run.stdout);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function parse(out: string): ProbeFacts {
  const facts: ProbeFacts = { sizes: new Map(), offsets: new Map(), consts: new Map(), strs: new Map(), xsErrors: [] };
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const [kind, name, a, b] = line.split('\t');
    if (name === undefined || a === undefined) throw new Error(`probe line not understood: ${JSON.stringify(line)}`);
    if (kind === 'size') facts.sizes.set(name, Number(a));
    else if (kind === 'offset' && b !== undefined) {
      const m = facts.offsets.get(name) ?? new Map<string, number>();
      m.set(a, Number(b));
      facts.offsets.set(name, m);
    } else if (kind === 'const') facts.consts.set(name, BigInt(a));
    else if (kind === 'str') facts.strs.set(name, a);
    else if (kind === 'xserr') facts.xsErrors.push([Number(a), name]);
    else throw new Error(`probe line not understood: ${JSON.stringify(line)}`);
  }
  return facts;
}

let cached: { facts: ProbeFacts } | { error: string } | undefined;
function probe(t: ExecutionContext): ProbeFacts | undefined {
  if (cached === undefined) {
    try {
      cached = { facts: compileAndRun() };
    } catch (e) {
      cached = { error: e instanceof Error ? e.message : String(e) };
    }
  }
  if ('error' in cached) {
    t.fail(cached.error);
    return undefined;
  }
  return cached.facts;
}

const ours = collectExports();
const exportedLayouts = new Set([...ours.layouts.values()].map((e) => e.layout));

test('the probe compiles against /usr/include/xen and reports facts', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  t.true(facts.sizes.size > 50, `expected many struct sizes, got ${facts.sizes.size}`);
  t.true(facts.consts.size > 500, `expected many constants, got ${facts.consts.size}`);
});

test('every struct the probe measures has our size and member offsets', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  const diffs: string[] = [];
  for (const [name, size] of facts.sizes) {
    const e = ours.layouts.get(name);
    if (e === undefined) {
      diffs.push(`${name}: probed, but none of our layouts is named so`);
      continue;
    }
    diffs.push(...compareStruct(name, e.layout, size, Object.fromEntries(facts.offsets.get(name) ?? [])));
  }
  for (const name of facts.offsets.keys()) if (!facts.sizes.has(name)) diffs.push(`${name}: offsets probed without its size`);
  t.deepEqual(diffs, [], 'our layouts differ from /usr/include/xen');
});

test('every constant the probe prints equals ours', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  const diffs: string[] = [];
  for (const [name, c] of facts.consts) {
    const e = ours.constants.get(name);
    if (e === undefined) diffs.push(`${name}: probed as ${c}, but we export no such constant`);
    else if (!sameAsC(e.value, c)) diffs.push(`${name}: ours (${e.module}) is ${String(e.value)}, the header says ${c}`);
  }
  for (const [name, s] of facts.strs) {
    const e = ours.constants.get(name);
    if (e?.value !== s) diffs.push(`${name}: ours is ${e === undefined ? 'missing' : JSON.stringify(e.value)}, the header says ${JSON.stringify(s)}`);
  }
  t.deepEqual(diffs, [], 'our constants differ from /usr/include/xen');
});

test('every layout and member our mirrors export is probed', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  const missing: string[] = [];
  for (const [name, e] of ours.layouts) {
    if (!probeMustMeasure(e)) continue;
    if (!facts.sizes.has(name)) {
      missing.push(`${name} (${e.module} ${e.exportName}): add SIZE/OFF lines to tests/abi/probe.c`);
      continue;
    }
    const probed = facts.offsets.get(name);
    for (const p of memberPaths(e.layout, exportedLayouts))
      if (probed?.has(p) !== true) missing.push(`${name}.${p}: add OFF("${name}", ${name}, ${p}) to tests/abi/probe.c`);
  }
  t.deepEqual(missing, []);
});

test('every constant our mirrors export is probed, or listed as xenport\'s own', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  const missing: string[] = [];
  for (const [name, e] of ours.constants) {
    if (!probeMustPrint(name, e)) continue;
    if (!facts.consts.has(name) && !facts.strs.has(name))
      missing.push(`${name} (${e.module}): add it to tests/abi/probe.c, or to XENPORT_OWN in tests/abi/abi-tables.ts with a reason`);
  }
  t.deepEqual(missing, []);
});

test('everything the JSON lists is also checked against the headers', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  const abi = JSON.parse(fs.readFileSync(path.join(root, '..', 'shared', 'abi', 'xen-public-abi.json'), 'utf8')) as {
    structs: Record<string, unknown>;
    constants: Record<string, unknown>;
  };
  const missing: string[] = [];
  for (const name of Object.keys(abi.structs)) {
    const layout = JSON_STRUCTS[name];
    if (layout === undefined || !facts.sizes.has(layout.name)) missing.push(`struct ${name}`);
  }
  for (const name of Object.keys(abi.constants)) {
    const ourName = CONST_ALIASES[name] ?? name;
    if (!facts.consts.has(ourName)) missing.push(`constant ${name}`);
  }
  t.deepEqual(missing, []);
});

test('xenstored error table equals xs_wire.h\'s xsd_errors, in order', (t) => {
  const facts = probe(t);
  if (facts === undefined) return;
  t.deepEqual(
    XSD_ERRORS.map(([n, s]) => [n, s]),
    facts.xsErrors,
  );
});

test('probe output parsing rejects lines it does not understand', (t) => {
  t.throws(() => parse('size\n'), { message: /not understood/ });
  t.throws(() => parse('weird\tx\t1\n'), { message: /not understood/ });
  const f = parse('size\tstruct a\t8\noffset\tstruct a\tb.c\t4\nconst\tX\t-1\nstr\tS\tv\nxserr\tEPERM\t1\n');
  t.is(f.sizes.get('struct a'), 8);
  t.is(f.offsets.get('struct a')?.get('b.c'), 4);
  t.is(f.consts.get('X'), -1n);
  t.is(f.strs.get('S'), 'v');
  t.deepEqual(f.xsErrors, [[1, 'EPERM']]);
});
