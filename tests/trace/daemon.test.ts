/*
 * A real machine daemon (the shipped program, real clock) writes its
 * protocol trace to <dir>/trace.jsonl: after `xl save` and `xl machine
 * stop`, every line is a record, seq only goes up, and the save's steps are
 * there about the saved domain.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTraceLine, type TraceRecord } from '../../hypervisor/xen/trace.js';
import { createGuest, startMachine, tempDir } from '../saverestore/fixture.js';

test('xl save on a machine daemon: trace.jsonl holds parseable records of the save, in order', async (t) => {
  const dir = tempDir(t);
  const mdir = join(dir, 'm');
  const m = await startMachine(t, mdir);
  const { domid } = await createGuest(t, m, dir, 'tr');
  await m.ok(t, ['save', 'tr', join(dir, 'tr.img')]);
  await m.ok(t, ['machine', 'stop']);
  const file = join(mdir, 'trace.jsonl');
  t.true(existsSync(file), `${file} is missing`);
  const lines = readFileSync(file, 'utf8').split('\n');
  t.is(lines.pop(), '', 'the file ends with a newline');
  const records = lines.map((l) => parseTraceLine(l));
  const bad = lines.filter((_l, i) => records[i] === undefined);
  t.deepEqual(bad, [], 'every line is a trace record');
  const rs = records.filter((r): r is TraceRecord => r !== undefined);
  t.true(rs.every((r, i) => i === 0 || r.seq > rs[i - 1]!.seq), 'seq only goes up');
  t.true(rs.every((r) => Number.isFinite(r.hostMs)));
  const mine = rs.filter((r) => r.domid === domid);
  const at = (event: string): number => mine.findIndex((r) => r.event === event);
  const steps = ['XS_INTRODUCE', 'suspend requested', 'shared_info unmapped', 'SCHEDOP_shutdown', 'SHUTDOWN_suspend seen', 'image written', 'domctl destroydomain'];
  const idx = steps.map(at);
  t.true(idx.every((i) => i >= 0), `every step is there: ${steps.map((s, k) => `${s} #${idx[k]}`).join(', ')}`);
  t.deepEqual([...idx].sort((x, y) => x - y), idx, `in order: ${steps.join(' < ')}`);
});
