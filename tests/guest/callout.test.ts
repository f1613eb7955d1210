import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import {
  callout_init, callout_setfunc, callout_schedule, callout_reset, callout_stop, callout_pending, callout_expired,
  callout_invoking, callout_ack, callout_destroy,
} from '../../sys/kern/kern_timeout.js';
import { getticks } from '../../sys/kern/kern_clock.js';
import { kmem_zalloc } from '../../sys/kern/subr_kmem.js';
import { KernelPanic } from '../../sys/kern/subr_prf.js';
import { callout, CALLWHEEL_SIZE } from '../../sys/sys/callout.js';
import { kglobals } from '../../sys/sys/kernel.js';
import { Harness, tlog, tlogRead } from './harness.js';

const handlers = ksymtab({
  t_co_log(cpu: GuestCpu, arg: number): void {
    tlog(cpu, `${String.fromCharCode(arg)}@${getticks(cpu)} `);
  },
  /** Reschedules itself (arg = its own callout) every 2 ticks until tick 6. */
  t_co_periodic(cpu: GuestCpu, c: number): void {
    tlog(cpu, `p@${getticks(cpu)} `);
    if (getticks(cpu) < 6) callout_schedule(cpu, c, 2);
  },
  /** Stops the callout whose address is in its arg. */
  t_co_stopper(cpu: GuestCpu, victim: number): void {
    tlog(cpu, 'S ');
    callout_stop(cpu, victim);
  },
});

function mkCallout(h: Harness): number {
  const c = kmem_zalloc(h.cpu, callout.size);
  callout_init(h.cpu, c);
  return c;
}

const boot = (): Harness => Harness.boot({ extra: [handlers] });

test('callouts fire at their tick, in the order they were scheduled', (t) => {
  const h = boot();
  const sched = (ch: string, ticks: number): void => callout_reset(h.cpu, mkCallout(h), ticks, 't_co_log', ch.charCodeAt(0));
  sched('a', 5);
  sched('b', 3);
  sched('c', 5);
  sched('d', 1);
  sched('e', 0);
  t.is(kglobals(h.cpu).get('kg_ncallout'), 5);
  h.tick(6);
  t.is(tlogRead(h), 'd@1 e@1 b@3 a@5 c@5 ', '0 ticks means 1; ties keep scheduling order');
  t.is(kglobals(h.cpu).get('kg_ncallout'), 0);
});

test('delays longer than the wheel fire on the right revolution', (t) => {
  const h = boot();
  callout_reset(h.cpu, mkCallout(h), CALLWHEEL_SIZE + 5, 't_co_log', 'x'.charCodeAt(0));
  callout_reset(h.cpu, mkCallout(h), 5, 't_co_log', 'y'.charCodeAt(0));
  callout_reset(h.cpu, mkCallout(h), 2 * CALLWHEEL_SIZE + 5, 't_co_log', 'z'.charCodeAt(0));
  h.tick(3 * CALLWHEEL_SIZE);
  t.is(tlogRead(h), `y@5 x@${CALLWHEEL_SIZE + 5} z@${2 * CALLWHEEL_SIZE + 5} `);
});

test('stop cancels a pending callout; stop reports whether it had fired', (t) => {
  const h = boot();
  const c = mkCallout(h);
  callout_reset(h.cpu, c, 2, 't_co_log', 'q'.charCodeAt(0));
  t.true(callout_pending(h.cpu, c));
  t.false(callout_stop(h.cpu, c), 'not expired: it never ran');
  t.false(callout_pending(h.cpu, c));
  h.tick(5);
  t.is(tlogRead(h), '');
  callout_schedule(h.cpu, c, 1);
  h.tick();
  t.true(callout_expired(h.cpu, c));
  t.true(callout_invoking(h.cpu, c));
  callout_ack(h.cpu, c);
  t.false(callout_invoking(h.cpu, c));
  t.true(callout_stop(h.cpu, c), 'expired: it ran');
  t.false(callout_expired(h.cpu, c), 'stop clears the fired state');
});

test('rescheduling moves a pending callout', (t) => {
  const h = boot();
  const c = mkCallout(h);
  callout_reset(h.cpu, c, 2, 't_co_log', 'm'.charCodeAt(0));
  h.tick();
  callout_schedule(h.cpu, c, 4);
  h.tick(10);
  t.is(tlogRead(h), 'm@5 ');
  t.is(kglobals(h.cpu).get('kg_ncallout'), 0, 'counted once');
});

test('a handler may reschedule itself (periodic callout)', (t) => {
  const h = boot();
  const c = mkCallout(h);
  callout_setfunc(h.cpu, c, 't_co_periodic', c);
  callout_schedule(h.cpu, c, 2);
  h.tick(12);
  t.is(tlogRead(h), 'p@2 p@4 p@6 ');
});

test('a handler may stop a callout due in the same tick, after it', (t) => {
  const h = boot();
  const victim = mkCallout(h);
  callout_reset(h.cpu, mkCallout(h), 3, 't_co_stopper', victim);
  callout_reset(h.cpu, victim, 3, 't_co_log', 'v'.charCodeAt(0));
  h.tick(5);
  t.is(tlogRead(h), 'S ');
  t.is(kglobals(h.cpu).get('kg_ncallout'), 0);
});

test('using an uninitialized callout or destroying a pending one panics', (t) => {
  const h = boot();
  const raw = kmem_zalloc(h.cpu, callout.size);
  t.throws(() => callout_schedule(h.cpu, raw, 1), { instanceOf: KernelPanic, message: /not initialized/ });
  const h2 = boot();
  const c = mkCallout(h2);
  callout_reset(h2.cpu, c, 1, 't_co_log', 1);
  t.throws(() => callout_destroy(h2.cpu, c), { instanceOf: KernelPanic, message: /still pending/ });
});
