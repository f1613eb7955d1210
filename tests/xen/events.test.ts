import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { A_PARAM } from '../kernels/guest.js';
import { pingKernel, timerKernel, pollKernel } from '../kernels/basic.js';
import { build, rc, result, variable, type Built } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 32 * 1024 * 1024 });

/** Two ping domains connected to each other, `rounds` events each way. */
function pingPair(m: Machine, rounds: number): { a: Built; b: Built } {
  const a = build(m, pingKernel, { paused: true, args: { [A_PARAM]: 0, [A_PARAM + 3]: rounds } });
  const b = build(m, pingKernel, { paused: true, args: { [A_PARAM]: 1, [A_PARAM + 3]: rounds } });
  m.memory.writeU64(a.mbox, 8 * (A_PARAM + 1), BigInt(b.domid));
  m.memory.writeU64(b.mbox, 8 * (A_PARAM + 1), BigInt(a.domid));
  // a allocates first; b binds to a's port once a has it.
  m.xc.unpauseDomain(a.domid);
  m.runUntil(() => a.d.state === 'blocked', 100);
  m.memory.writeU64(b.mbox, 8 * (A_PARAM + 2), result(m, a, 0));
  m.xc.unpauseDomain(b.domid);
  return { a, b };
}

test('a send to a blocked vCPU wakes it: two domains ping-pong over an interdomain channel', (t) => {
  const m = small();
  const { a, b } = pingPair(m, 50);
  t.is(m.runUntil(() => a.d.shuttingDown && b.d.shuttingDown, 10_000), 'done');
  t.is(rc(m, a, 1), 50, 'a saw every event');
  t.is(rc(m, b, 1), 50, 'b saw every event');
  t.is(a.d.shutdownCode, SHUTDOWN_poweroff);
  t.deepEqual(m.log.bugs, []);
});

test('a blocked domain stays blocked (no entries) until an event arrives', (t) => {
  const m = small();
  const a = build(m, pingKernel, { args: { [A_PARAM]: 0, [A_PARAM + 1]: 0, [A_PARAM + 3]: 1 } });
  m.runUntil(() => a.d.state === 'blocked', 100);
  const entries = a.d.vcpus[0]!.entries;
  t.is(m.runToIdle(1000), 'idle');
  t.is(a.d.vcpus[0]!.entries, entries);
  t.true(m.xc.getDomainInfo(a.domid)!.blocked);
  // dom0 binds the offered port and notifies it.
  const port = m.xc.bindInterdomain(a.domid, rc(m, a, 0));
  t.true(port > 0);
  t.is(m.xc.notify(port), 0);
  m.runUntil(() => a.d.shuttingDown, 100);
  t.is(variable(m, a, 1), 1);
});

test('timers fire in simulated time, deterministically', (t) => {
  const run = (): bigint[] => {
    const m = small();
    const b = build(m, timerKernel, { args: { [A_PARAM]: 1_000_000, [A_PARAM + 1]: 5 } });
    t.is(m.runUntil(() => b.d.shuttingDown, 10_000), 'done');
    return [1, 2, 3, 4, 5].map((i) => result(m, b, i));
  };
  const first = run();
  t.deepEqual(run(), first, 'same run, same times');
  for (let i = 1; i < first.length; i++) {
    const gap = first[i]! - first[i - 1]!;
    t.true(gap >= 1_000_000n && gap < 1_100_000n, `tick ${i} after ${gap} ns`);
  }
});

test('a timer wakes a blocked domain even with nothing else running (time jumps)', (t) => {
  const m = small();
  const b = build(m, timerKernel, { args: { [A_PARAM]: 3_000_000_000, [A_PARAM + 1]: 1 } });
  const t0 = m.clock.now();
  t.is(m.runUntil(() => b.d.shuttingDown, 1000), 'done');
  t.true(m.clock.now() - t0 >= 3_000_000_000);
  t.true(b.d.vcpus[0]!.entries < 10, 'no busy waiting');
});

test('SCHEDOP_poll on a set of ports: a send to either wakes it, and it times out', (t) => {
  const m = small();
  const b = build(m, pollKernel, { args: { [A_PARAM]: 5_000_000, [A_PARAM + 1]: 3 } });
  m.runUntil(() => b.d.state === 'blocked', 100);
  const p1 = rc(m, b, 1);
  const p2 = rc(m, b, 2);
  t.true(p1 > 0 && p2 > 0);
  const l1 = m.xc.bindInterdomain(b.domid, p1);
  const l2 = m.xc.bindInterdomain(b.domid, p2);
  // First poll: both ports fire before the guest runs again.
  t.is(m.xc.notify(l1), 0);
  t.is(m.xc.notify(l2), 0);
  m.runUntil(() => variable(m, b, 0) >= 1, 100);
  t.is(rc(m, b, 8), 0);
  t.is(rc(m, b, 10), 3, 'both ports were pending');
  // Second poll: only port 2 fires.
  m.runUntil(() => b.d.state === 'blocked', 100);
  const before = m.clock.now();
  t.is(m.xc.notify(l2), 0);
  m.runUntil(() => variable(m, b, 0) >= 2, 100);
  t.is(rc(m, b, 16), 0);
  t.is(rc(m, b, 18), 2, 'port 2 only');
  t.true(m.clock.now() - before < 5_000_000, 'woken by the event, not the timeout');
  // Third poll: nothing is sent; it times out after 5 ms.
  const start = BigInt(m.clock.now());
  t.is(m.runUntil(() => b.d.shuttingDown, 1000), 'done');
  t.is(rc(m, b, 24), 0, 'a timed-out poll returns 0');
  t.is(rc(m, b, 26), 0, 'nothing pending');
  t.true(result(m, b, 25) - start >= 5_000_000n);
});
