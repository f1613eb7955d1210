import test from 'ava';
import { Clock, Timer, TimerQueue, scaleDelta, timeScaleFor, writeTimeInfo, readGuestTime, writeWallClock } from '../../hypervisor/xen/time.js';
import { Machine } from '../../hypervisor/xen/machine.js';
import { bytesMem } from '../../hypervisor/public/layout.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import { A_PARAM } from '../kernels/guest.js';
import { clockKernel } from '../kernels/basic.js';
import { build, result } from './builder.js';

test('time scale: Xen set_time_scale for common TSC frequencies', (t) => {
  t.deepEqual(timeScaleFor(2_000_000_000n), { mul: 2 ** 31, shift: 0 });
  t.deepEqual(timeScaleFor(3_000_000_000n), { mul: 2863311530, shift: -1 });
  t.deepEqual(timeScaleFor(1_000_000_000n), { mul: 2 ** 31, shift: 1 });
  t.deepEqual(timeScaleFor(1_000_000n), { mul: 4194304000, shift: 10 });
});

test('scaleDelta turns ticks into ns within a tick for any frequency', (t) => {
  for (const khz of [1000, 999_999, 1_000_000, 2_394_454, 3_000_000, 4_200_000]) {
    const scale = timeScaleFor(BigInt(khz) * 1000n);
    const ticks = BigInt(khz) * 1000n * 7n; // 7 seconds
    const ns = scaleDelta(ticks, scale);
    const err = Number(7_000_000_000n - ns);
    t.true(err >= 0 && err < 10, `${khz} kHz: ${err} ns off`);
  }
});

test('the clock: TSC follows raw time, system time is the scaled TSC and never runs ahead', (t) => {
  const c = new Clock({ kind: 'simulated', tscKhz: 2_500_000 });
  c.advance(1_000_000);
  t.is(c.tsc(), 2_500_000n);
  // The scale truncates: system time trails raw time by under a tick.
  t.true(c.now() <= 1_000_000 && c.now() >= 999_999, `${c.now()}`);
  c.advanceTo(5_000_000_123);
  t.true(c.now() >= 5_000_000_123);
  t.true(c.now() - 5_000_000_123 < 5);
  t.deepEqual(c.wallAtBoot(), { sec: 1_704_067_200, nsec: 0 });
});

test('vcpu_time_info: the guest formula is exact at the update and monotonic across updates', (t) => {
  for (const khz of [1000, 1_000_000, 2_394_454, 3_000_000]) {
    const c = new Clock({ kind: 'simulated', tscKhz: khz });
    const mem = bytesMem(new Uint8Array(64));
    let last = -1;
    for (let i = 0; i < 50; i++) {
      c.advance(i * 7919 + 13);
      if (i % 3 === 0) {
        const s = c.sample();
        writeTimeInfo(mem, 0, s.tsc, s.systemTime, c.scale);
        t.is(readGuestTime(mem, 0, s.tsc), s.systemTime);
      }
      const now = readGuestTime(mem, 0, c.tsc())!;
      t.true(now >= last, `${khz} kHz: ${now} < ${last}`);
      t.true(now <= c.now());
      last = now;
    }
    t.is(mem.getUint32(0, true) % 2, 0, 'version even after an update');
  }
});

test('wall clock: wc_version even, seconds split into wc_sec/wc_sec_hi', (t) => {
  const bytes = new Uint8Array(shared_info.size);
  const s = shared_info.view(bytesMem(bytes), 0);
  writeWallClock(bytesMem(bytes), { sec: 2 ** 33 + 5, nsec: 42 });
  t.is(s.get('wc_sec'), 5);
  t.is(s.get('wc_sec_hi'), 2);
  t.is(s.get('wc_nsec'), 42);
  t.is(s.get('wc_version') % 2, 0);
});

test('timer queue: earliest first, equal deadlines in arming order, re-arm and cancel', (t) => {
  const q = new TimerQueue();
  const fired: string[] = [];
  const mk = (n: string): Timer => new Timer(() => fired.push(n));
  const a = mk('a');
  const b = mk('b');
  const c = mk('c');
  const d = mk('d');
  q.set(a, 30);
  q.set(b, 10);
  q.set(c, 10);
  q.set(d, 20);
  q.set(a, 5); // re-armed earlier
  q.cancel(d);
  t.is(q.next(), 5);
  t.is(q.runDue(10), 3);
  t.deepEqual(fired, ['a', 'b', 'c']);
  t.false(d.active);
  t.is(q.size, 0);
});

test('a guest reading vcpu_time_info the Xen way sees monotonic ns that track system time', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024, tscKhz: 2_394_454 });
  const b = build(m, clockKernel, { args: { [A_PARAM]: 40 } });
  t.is(m.runUntil(() => b.d.shuttingDown, 1000), 'done');
  let prev = 0n;
  for (let i = 0; i < 40; i++) {
    const now = result(m, b, i);
    t.true(now > prev, `reading ${i}: ${now} after ${prev}`);
    prev = now;
  }
  t.true(prev <= BigInt(m.clock.now()));
});

test('shared_info carries the wall clock of system time 0, shifted by settimeoffset', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024 });
  const id = m.xc.createDomain();
  const d = m.domain(id)!;
  const s = shared_info.view(d.sharedInfo, 0);
  t.is(s.get('wc_sec'), 1_704_067_200);
  t.is(m.xc.setTimeOffset(id, 3600), 0);
  t.is(s.get('wc_sec'), 1_704_067_200 + 3600);
});
