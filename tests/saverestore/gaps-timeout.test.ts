/*
 * A guest that never answers the suspend request: `xl save --timeout 1`
 * fails with one line naming the timeout, exits non-zero, leaves neither
 * FILE nor a temporary file, and the domain runs on. The guest is the
 * `probe` test kernel with `nostore` (it never touches xenstore, so it
 * neither acknowledges control/shutdown nor suspends).
 */
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { consoleUntil, startMachine, tempDir, writeConfig, xl } from '../tools/xl-fixture.js';

test('xl save --timeout 1 of a guest that ignores the request: one clear line, non-zero, no file, the domain still runs', async (t) => {
  const { dir } = await startMachine(t);
  const out = tempDir(t);
  const cfg = writeConfig(out, 'deaf', 'name = "deaf"\nkernel = "probe"\nmemory = 16\nextra = "nostore"\n');
  const c = await xl(['--dir', dir, 'create', cfg]);
  t.is(c.code, 0, c.err);
  const domid = Number(c.out.trim());
  await consoleUntil(dir, 'deaf', /probe: booted/);
  const img = join(out, 'deaf.img');
  const t0 = Date.now();
  const r = await xl(['--dir', dir, 'save', '--timeout', '1', 'deaf', img]);
  const ms = Date.now() - t0;
  t.not(r.code, 0, 'xl save fails');
  t.regex(r.err, /^xl: [^\n]*\b(within 1000 ms|timed? ?out)[^\n]*\n$/i, 'one line naming the timeout');
  t.regex(r.err, /deaf/, 'it names the domain');
  t.is(r.out, '');
  t.true(ms < 8000, `gave up after ${ms} ms`);
  t.false(existsSync(img), 'no FILE');
  t.deepEqual(readdirSync(out).filter((n) => n.includes('deaf.img')), [], 'no temporary file');
  const list = await xl(['--dir', dir, 'list']);
  t.is(list.code, 0, list.err);
  const row = new RegExp(`^deaf\\s+${domid}\\s.*$`, 'm').exec(list.out);
  t.not(row, null, list.out);
  const state = row?.[0].trim().split(/\s+/)[4] ?? '';
  t.regex(state, /^[r-][b-][p-]---$/, `not shut down, crashed or dying: ${row?.[0]}`);
  t.log(r.err.trim(), `(${ms} ms)`);
});
