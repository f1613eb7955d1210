/*
 * `xl save` and `xl restore` through the shipped program and real machine
 * daemons: a netbsd guest running workload=mem,clock is saved (Xen's own
 * verify-stream-v2 accepts the file), its machine stopped, and the image
 * restored in a NEW machine process with another frame scramble and TSC
 * frequency: the counters carry on without errors, and `xl p2m` shows its
 * pseudo-physical pages on other machine frames.
 */
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { COUNTERS, VERIFY, createGuest, growing, startMachine, tempDir, until, verifyStream } from './fixture.js';

test('verify-stream-v2 is installed', (t) => {
  t.true(existsSync(VERIFY), `${VERIFY} is missing: install xen-utils-4.17 or set XEN_VERIFY_STREAM`);
});

test('xl save, verify-stream-v2, stop the machine, xl restore in a new machine process: counters carry on, PFNs moved', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '3', '--tsc-khz', '2400000']);
  const { domid } = await createGuest(t, a, dir, 'sr');
  const p2mBefore = await a.p2m(t, 'sr');
  t.true(p2mBefore.size > 1000, `${p2mBefore.size} P2M entries`);
  const img = join(dir, 'sr.img');
  const before = await a.counters(domid, COUNTERS);
  const saved = await a.ok(t, ['save', 'sr', img]);
  t.regex(saved, /saved domain sr to .* \(\d+ bytes, suspended via (evtchn|xenstore)\): destroyed/);
  t.false((await a.ok(t, ['list'])).includes(' sr '), 'the domain is gone after the save');
  t.deepEqual(readdirSync(dir).filter((f) => f.includes('partial')), [], 'no temporary file left');
  const v = await verifyStream(img);
  t.is(v.code, 0, v.out + v.err);
  t.regex(v.out + v.err, /Libxl Record: End/);
  await a.ok(t, ['machine', 'stop']);

  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '17', '--tsc-khz', '3100000']);
  const restored = await b.ok(t, ['restore', img]);
  const nd = Number(restored.trim());
  t.true(nd > 0, restored);
  const after = await until('counters published on the new machine', 60_000, async () => {
    const c = await b.counters(nd, COUNTERS);
    return c !== undefined && Number.isFinite(c['clock/ticks']) ? c : undefined;
  });
  const later = await growing(b, nd, after);
  t.log(`d${domid} -> d${nd}: after restore ${JSON.stringify(after)}, later ${JSON.stringify(later)}`);
  t.true(later['clock/ticks']! > before!['clock/ticks']!, 'ticks carried on from before the save');
  t.true(later['mem/passes']! >= before!['mem/passes']!, 'mem passes carried on');
  t.is(later['mem/errors'], 0);
  t.is(later['clock/backwards'], 0);
  const p2mAfter = await b.p2m(t, 'sr');
  t.is(p2mAfter.size, p2mBefore.size, 'the same pseudo-physical pages');
  let moved = 0;
  for (const [pfn, mfn] of p2mBefore) if (p2mAfter.get(pfn) !== mfn) moved++;
  t.true(moved > p2mBefore.size / 2, `${moved} of ${p2mBefore.size} PFNs on other machine frames`);
  const list = await b.ok(t, ['list']);
  t.regex(list, /^sr\s+\d+\s+\d+\s+1\s+r-----|^sr\s+\d+\s+\d+\s+1\s+-b----/m);
  // A second restore of the same name is refused in one line, nothing left behind.
  const again = await b.xl(['restore', img]);
  t.is(again.code, 1);
  t.regex(again.err, /^xl: restore of .*: a domain named "sr" already exists\n$/);
  t.is((await b.ok(t, ['list'])).trim().split('\n').length, 3, 'Domain-0 and sr only');
});
