/*
 * Waiting for a suspend (VIRQ_DOM_EXC + getdomaininfo), and what saveDomain
 * says about a domain that is not suspended.
 */
import test from 'ava';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { SaveError, WaitError, domExcSource, saveDomain, waitForSuspend } from '../../hypervisor/tools/save/index.js';
import { V_ENTRIES, V_ERRORS, memtestKernel } from './kernels/memtest.js';
import { askSuspend, guest, machine, readVar, Collector } from './fixture.js';

test('a guest that never suspends: the wait times out with a clear error and the guest keeps running', async (t) => {
  const m = machine({ seed: 60 });
  const g = guest(m, memtestKernel, { pages: 128 });
  const t0 = m.clock.now();
  const e = await t.throwsAsync(waitForSuspend(m, g.domid, 50_000_000), { instanceOf: WaitError });
  t.is(e?.code, 'timeout');
  t.regex(e?.message ?? '', /domain 1 to suspend: no suspend within 50 ms of system time \(the domain keeps running\)/);
  t.true(m.clock.now() - t0 >= 50_000_000, 'the timeout is in system time');
  const info = m.xc.getDomainInfo(g.domid);
  t.false(info?.shutdown);
  const entries = readVar(m, g.domid, V_ENTRIES);
  m.runUntil(() => readVar(m, g.domid, V_ENTRIES) > entries + 20, 100_000);
  t.true(readVar(m, g.domid, V_ENTRIES) > entries + 20);
  t.is(readVar(m, g.domid, V_ERRORS), 0);
});

test('a guest asked to suspend: the wait resolves with its domain info', async (t) => {
  const m = machine({ seed: 61 });
  const g = guest(m, memtestKernel, { pages: 128 });
  askSuspend(m, g.domid);
  const info = await waitForSuspend(m, g.domid, 1e9);
  t.true(info.shutdown);
  t.is(info.shutdownReason, 2);
  // Already suspended: answered at once.
  const again = await waitForSuspend(m, g.domid, 1);
  t.is(again.domid, g.domid);
});

test('a guest that powers off instead, or a domain that is gone', async (t) => {
  const m = machine({ seed: 62 });
  const g = guest(m, memtestKernel, { pages: 128 });
  m.shutdownDomain(m.domain(g.domid)!, SHUTDOWN_poweroff);
  const e = await t.throwsAsync(waitForSuspend(m, g.domid, 1e9), { instanceOf: WaitError });
  t.is(e?.code, 'wrong-shutdown');
  t.regex(e?.message ?? '', /shut down \(poweroff\) instead of suspending/);
  const gone = await t.throwsAsync(waitForSuspend(m, 77, 1e9), { instanceOf: WaitError });
  t.is(gone?.code, 'no-domain');
});

test('two waiters share one VIRQ_DOM_EXC binding', async (t) => {
  const m = machine({ seed: 63 });
  const a = guest(m, memtestKernel, { pages: 128 });
  const b = guest(m, memtestKernel, { pages: 128 });
  const src = domExcSource(m);
  t.not(typeof src, 'number');
  t.is(domExcSource(m), src, 'bound once per machine');
  askSuspend(m, a.domid);
  askSuspend(m, b.domid);
  const [ia, ib] = await Promise.all([waitForSuspend(m, a.domid, 1e9), waitForSuspend(m, b.domid, 1e9)]);
  t.is(ia.domid, a.domid);
  t.is(ib.domid, b.domid);
});

test('saving a domain that is not suspended is refused, and it keeps running', async (t) => {
  const m = machine({ seed: 64 });
  const g = guest(m, memtestKernel, { pages: 128 });
  const e = await t.throwsAsync(saveDomain(m, g.domid, new Collector().sink), { instanceOf: SaveError });
  t.is(e?.code, 'not-suspended');
  t.regex(e?.message ?? '', /the domain is running, not suspended/);
  t.false(m.xc.getDomainInfo(g.domid)?.shutdown);
  const none = await t.throwsAsync(saveDomain(m, 99, new Collector().sink), { instanceOf: SaveError });
  t.is(none?.code, 'no-domain');
});
