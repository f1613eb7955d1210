import test from 'ava';
import { evFixture, type EvFixture } from './evtchn-fixture.js';
import {
  EVTCHNSTAT_closed, EVTCHNSTAT_unbound, EVTCHNSTAT_interdomain, EVTCHNSTAT_virq, EVTCHNSTAT_ipi,
} from '../../hypervisor/public/event_channel.js';
import { DOMID_SELF, NR_VIRQS, VIRQ_TIMER, VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_CONSOLE } from '../../hypervisor/public/xen.js';
import { EINVAL, ENOSPC, ESRCH, EPERM, EEXIST, ENOENT, EBUSY } from '../../hypervisor/public/errno.js';
import { EVTCHNS_PER_BUCKET, EventChannels } from '../../hypervisor/xen/evtchn.js';
import { benchEvtchn } from '../../hypervisor/xen/evtchn-bench.js';

/** dom0 (privileged) and domU 1 with two vCPUs. */
function machine(): EvFixture {
  const f = evFixture();
  f.addDomain(0, 1);
  f.addDomain(1, 2);
  return f;
}

/** A connected pair: dom0 port `back` <-> dom1 port `front`, bind-time events cleared. */
function pair(f: EvFixture): { back: number; front: number } {
  const back = f.ev.allocUnbound(f.caller(0), DOMID_SELF, 1);
  const front = f.ev.bindInterdomain(f.caller(1), 0, back);
  f.ev.drainPending(1, 0);
  f.kicks.length = 0;
  return { back, front };
}

test('port 0 is reserved: the first port handed out is 1 and port 0 cannot be closed', (t) => {
  const f = machine();
  t.is(f.ev.allocUnbound(f.caller(1), DOMID_SELF, 0), 1);
  t.is(f.ev.close(f.caller(1), 0), -EINVAL);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, 0), { status: EVTCHNSTAT_closed });
});

test('bind_interdomain connects both ends and leaves the new local port pending', (t) => {
  const f = machine();
  const back = f.ev.allocUnbound(f.caller(0), DOMID_SELF, 1);
  t.like(f.ev.status(f.caller(0), DOMID_SELF, back), { status: EVTCHNSTAT_unbound, dom: 1 });
  const front = f.ev.bindInterdomain(f.caller(1), 0, back);
  t.true(front > 0);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, front), { status: EVTCHNSTAT_interdomain, dom: 0, port: back });
  t.like(f.ev.status(f.caller(0), DOMID_SELF, back), { status: EVTCHNSTAT_interdomain, dom: 1, port: front });
  t.true(f.pendingBit(1, front), 'Xen raises the local port in case the unbound end was signalled');
  t.deepEqual(f.kicks, ['d1v0']);
});

test('send raises the remote port: pending bit, selector bit, upcall_pending, one kick', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  t.is(f.ev.send(f.caller(0), back), 0);
  t.true(f.pendingBit(1, front));
  t.is(f.pendingSel(1, 0), 1n << BigInt(front >> 6));
  t.is(f.upcallPending(1, 0), 1);
  t.deepEqual(f.kicks, ['d1v0']);
});

test('a second send while the upcall is still pending does not kick again', (t) => {
  const f = machine();
  const { back } = pair(f);
  f.ev.send(f.caller(0), back);
  f.ev.send(f.caller(0), back);
  t.deepEqual(f.kicks, ['d1v0']);
});

test('the selector bit is the word of the port: port 70 sets bit 1', (t) => {
  const f = machine();
  for (let i = 1; i < 70; i++) f.ev.bindIpi(f.caller(1), 0);
  const p = f.ev.bindIpi(f.caller(1), 0);
  t.is(p, 70);
  f.ev.send(f.caller(1), p);
  t.is(f.pendingSel(1, 0), 2n);
});

test('send to a masked port stays pending without selector, upcall or kick', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  f.setMask(1, front, true);
  f.ev.send(f.caller(0), back);
  t.true(f.pendingBit(1, front));
  t.is(f.pendingSel(1, 0), 0n);
  t.is(f.upcallPending(1, 0), 0);
  t.deepEqual(f.kicks, []);
});

test('unmask of a pending port re-raises the upcall', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  f.setMask(1, front, true);
  f.ev.send(f.caller(0), back);
  t.is(f.ev.unmask(f.caller(1), front), 0);
  t.false(f.maskBit(1, front));
  t.is(f.pendingSel(1, 0), 1n << BigInt(front >> 6));
  t.is(f.upcallPending(1, 0), 1);
  t.deepEqual(f.kicks, ['d1v0']);
});

test('unmask of a port that is not pending raises nothing', (t) => {
  const f = machine();
  const { front } = pair(f);
  f.setMask(1, front, true);
  t.is(f.ev.unmask(f.caller(1), front), 0);
  t.false(f.maskBit(1, front));
  t.deepEqual(f.kicks, []);
  t.is(f.ev.unmask(f.caller(1), 4000), -EINVAL, 'a port that was never allocated');
});

test('closing one end of an interdomain channel leaves the other unbound to the closer', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  t.is(f.ev.close(f.caller(1), front), 0);
  t.like(f.ev.status(f.caller(0), DOMID_SELF, back), { status: EVTCHNSTAT_unbound, dom: 1 });
  t.like(f.ev.status(f.caller(1), DOMID_SELF, front), { status: EVTCHNSTAT_closed });
  t.is(f.ev.send(f.caller(0), back), 0, 'sending on an unbound port is silently dropped');
  const again = f.ev.bindInterdomain(f.caller(1), 0, back);
  t.true(again > 0, 'the closer can bind the now-unbound end again');
});

test('closing a port clears its pending bit so a re-bound port starts clean', (t) => {
  const f = machine();
  const p = f.ev.bindIpi(f.caller(1), 0);
  f.setMask(1, p, true);
  f.ev.send(f.caller(1), p);
  t.true(f.pendingBit(1, p));
  f.ev.close(f.caller(1), p);
  t.false(f.pendingBit(1, p));
  t.is(f.ev.bindIpi(f.caller(1), 0), p, 'the lowest free port is reused');
});

test('status reports each kind of port with its notify vCPU', (t) => {
  const f = machine();
  const ipi = f.ev.bindIpi(f.caller(1), 1);
  const virq = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 1);
  const unb = f.ev.allocUnbound(f.caller(1), DOMID_SELF, 0);
  t.deepEqual(f.ev.status(f.caller(1), DOMID_SELF, ipi), { status: EVTCHNSTAT_ipi, vcpu: 1 });
  t.deepEqual(f.ev.status(f.caller(1), DOMID_SELF, virq), { status: EVTCHNSTAT_virq, vcpu: 1, virq: VIRQ_TIMER });
  t.deepEqual(f.ev.status(f.caller(1), 1, unb), { status: EVTCHNSTAT_unbound, vcpu: 0, dom: 0 });
  t.deepEqual(f.ev.status(f.caller(1), DOMID_SELF, EVTCHNS_PER_BUCKET - 1), { status: EVTCHNSTAT_closed, vcpu: 0 });
  t.is(f.ev.status(f.caller(1), DOMID_SELF, EVTCHNS_PER_BUCKET), -EINVAL, 'past the allocated buckets');
});

test('status of another domain: -EPERM unless privileged, -ESRCH if it does not exist', (t) => {
  const f = machine();
  f.addDomain(2);
  const p = f.ev.bindIpi(f.caller(1), 0);
  t.is(f.ev.status(f.caller(2), 1, p), -EPERM);
  t.like(f.ev.status(f.caller(0), 1, p), { status: EVTCHNSTAT_ipi });
  t.is(f.ev.status(f.caller(0), 9, 1), -ESRCH);
});

test('alloc_unbound in another domain needs privilege; DOMID_SELF as remote means the caller', (t) => {
  const f = machine();
  f.addDomain(2);
  t.is(f.ev.allocUnbound(f.caller(2), 1, 0), -EPERM);
  const p = f.ev.allocUnbound(f.caller(0), 1, DOMID_SELF);
  t.true(p > 0);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, p), { status: EVTCHNSTAT_unbound, dom: 0 }, 'the port is dom1\'s, offered to dom0');
  t.is(f.ev.allocUnbound(f.caller(0), 9, 1), -ESRCH);
});

test('bind_interdomain to a port not offered to the caller is -EINVAL, to no domain -ESRCH', (t) => {
  const f = machine();
  f.addDomain(2);
  const forOne = f.ev.allocUnbound(f.caller(0), DOMID_SELF, 1);
  t.is(f.ev.bindInterdomain(f.caller(2), 0, forOne), -EINVAL);
  t.is(f.ev.bindInterdomain(f.caller(2), 0, 3000), -EINVAL, 'a port that does not exist');
  const ipi = f.ev.bindIpi(f.caller(0), 0);
  t.is(f.ev.bindInterdomain(f.caller(1), 0, ipi), -EINVAL, 'a port that is not unbound');
  t.is(f.ev.bindInterdomain(f.caller(1), 7, 1), -ESRCH);
  f.ev.bindInterdomain(f.caller(1), 0, forOne);
  t.is(f.ev.bindInterdomain(f.caller(1), 0, forOne), -EINVAL, 'already connected');
});

test('a domain can connect two of its own ports (DOMID_SELF on both sides)', (t) => {
  const f = machine();
  const a = f.ev.allocUnbound(f.caller(1), DOMID_SELF, DOMID_SELF);
  const b = f.ev.bindInterdomain(f.caller(1), DOMID_SELF, a);
  f.ev.drainPending(1, 0);
  f.ev.send(f.caller(1), b);
  t.true(f.pendingBit(1, a));
  t.false(f.pendingBit(1, b));
  f.ev.close(f.caller(1), a);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, b), { status: EVTCHNSTAT_unbound, dom: 1 });
});

test('per-vCPU VIRQs: one port per VIRQ per vCPU, -EEXIST on a second binding', (t) => {
  const f = machine();
  const p0 = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 0);
  const p1 = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 1);
  t.true(p0 > 0 && p1 > 0 && p0 !== p1);
  t.is(f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 1), -EEXIST);
  t.true(f.ev.bindVirq(f.caller(1), VIRQ_DEBUG, 1) > 0);
});

test('VIRQ argument checks: range -EINVAL, missing vCPU -ENOENT, global on vCPU 1 -EINVAL', (t) => {
  const f = machine();
  t.is(f.ev.bindVirq(f.caller(1), NR_VIRQS, 0), -EINVAL);
  t.is(f.ev.bindVirq(f.caller(1), -1, 0), -EINVAL);
  t.is(f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 2), -ENOENT);
  t.is(f.ev.bindVirq(f.caller(0), VIRQ_DOM_EXC, 1), -EINVAL);
});

test('global VIRQs bind only in their handler domain (dom0 by default)', (t) => {
  const f = machine();
  t.is(f.ev.bindVirq(f.caller(1, true), VIRQ_DOM_EXC, 0), -EBUSY);
  t.true(f.ev.bindVirq(f.caller(0), VIRQ_DOM_EXC, 0) > 0);
  t.is(f.ev.setGlobalVirqHandler(VIRQ_CONSOLE, 1), 0);
  t.true(f.ev.bindVirq(f.caller(1), VIRQ_CONSOLE, 0) > 0);
  t.is(f.ev.setGlobalVirqHandler(VIRQ_TIMER, 1), -EINVAL, 'per-vCPU VIRQs have no handler domain');
});

test('sendVirq raises the bound port on the right vCPU', (t) => {
  const f = machine();
  const p = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 1);
  t.true(f.ev.sendVirq(1, VIRQ_TIMER, 1));
  t.true(f.pendingBit(1, p));
  t.is(f.pendingSel(1, 1), 1n, 'selector of vCPU 1');
  t.is(f.pendingSel(1, 0), 0n);
  t.deepEqual(f.kicks, ['d1v1']);
  t.false(f.ev.sendVirq(1, VIRQ_TIMER, 0), 'vCPU 0 has not bound it');
});

test('VIRQ_DOM_EXC goes to dom0; closing the binding lets it be bound again', (t) => {
  const f = machine();
  const p = f.ev.bindVirq(f.caller(0), VIRQ_DOM_EXC, 0);
  t.true(f.ev.sendGlobalVirq(VIRQ_DOM_EXC));
  t.true(f.pendingBit(0, p));
  t.is(f.ev.close(f.caller(0), p), 0);
  t.false(f.ev.sendGlobalVirq(VIRQ_DOM_EXC), 'no binding any more');
  t.true(f.ev.bindVirq(f.caller(0), VIRQ_DOM_EXC, 0) > 0);
});

test('a global VIRQ moved to another vCPU with bind_vcpu notifies that vCPU', (t) => {
  const f = machine();
  f.vcpus.set(0, 2);
  const p = f.ev.bindVirq(f.caller(0), VIRQ_DOM_EXC, 0);
  t.is(f.ev.bindVcpu(f.caller(0), p, 1), 0);
  f.ev.sendGlobalVirq(VIRQ_DOM_EXC);
  t.deepEqual(f.kicks, ['d0v1']);
  const timer = f.ev.bindVirq(f.caller(0), VIRQ_TIMER, 0);
  t.is(f.ev.bindVcpu(f.caller(0), timer, 1), -EINVAL, 'per-vCPU VIRQs stay on their vCPU');
  t.is(f.ev.bindVcpu(f.caller(0), p, 5), -ENOENT);
});

test('an IPI port raises itself on its target vCPU', (t) => {
  const f = machine();
  const p = f.ev.bindIpi(f.caller(1, false, 0), 1);
  t.is(f.ev.send(f.caller(1), p), 0);
  t.true(f.pendingBit(1, p));
  t.deepEqual(f.kicks, ['d1v1']);
  t.is(f.ev.bindIpi(f.caller(1), 2), -ENOENT);
});

test('send on a port the caller does not have is -EINVAL', (t) => {
  const f = machine();
  const { back } = pair(f);
  t.is(f.ev.send(f.caller(1), 3000), -EINVAL, 'never allocated');
  t.is(f.ev.send(f.caller(1), EVTCHNS_PER_BUCKET - 1), -EINVAL, 'free');
  t.is(f.ev.send(f.caller(1), 0), -EINVAL, 'reserved port 0');
  const virq = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 0);
  t.is(f.ev.send(f.caller(1), virq), -EINVAL, 'VIRQ ports are raised by Xen only');
  t.is(f.ev.send(f.caller(9), back), -ESRCH, 'no such domain');
});

test('port exhaustion is -ENOSPC; a closed port is reused', (t) => {
  const f = evFixture();
  f.addDomain(3, 1, 100);
  const got: number[] = [];
  for (let i = 1; i < 100; i++) got.push(f.ev.bindIpi(f.caller(3), 0));
  t.deepEqual(got, Array.from({ length: 99 }, (_, i) => i + 1));
  t.is(f.ev.bindIpi(f.caller(3), 0), -ENOSPC);
  t.is(f.ev.allocUnbound(f.caller(3), DOMID_SELF, 0), -ENOSPC);
  f.ev.close(f.caller(3), 42);
  t.is(f.ev.bindIpi(f.caller(3), 0), 42);
});

test('the 2-level ABI gives a domain 4095 ports', (t) => {
  const f = machine();
  let last = 0;
  for (let i = 1; i < 4096; i++) last = f.ev.bindIpi(f.caller(1), 0);
  t.is(last, 4095);
  t.is(f.ev.bindIpi(f.caller(1), 0), -ENOSPC);
  t.is(f.ev.initDomain(5, { maxPorts: 4097 }), -EINVAL);
});

test('reset closes every port of the domain and unbinds the peers', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  const ipi = f.ev.bindIpi(f.caller(1), 0);
  t.is(f.ev.reset(f.caller(1), DOMID_SELF), 0);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, front), { status: EVTCHNSTAT_closed });
  t.like(f.ev.status(f.caller(1), DOMID_SELF, ipi), { status: EVTCHNSTAT_closed });
  t.like(f.ev.status(f.caller(0), DOMID_SELF, back), { status: EVTCHNSTAT_unbound, dom: 1 });
});

test('reset of another domain needs privilege', (t) => {
  const f = machine();
  f.addDomain(2);
  const p = f.ev.bindIpi(f.caller(1), 0);
  t.is(f.ev.reset(f.caller(2), 1), -EPERM);
  t.is(f.ev.reset(f.caller(0), 1), 0);
  t.like(f.ev.status(f.caller(1), DOMID_SELF, p), { status: EVTCHNSTAT_closed });
  t.is(f.ev.reset(f.caller(0), 9), -ESRCH);
});

test('closeAll on destroy unbinds the peers and removes the domain', (t) => {
  const f = machine();
  const { back } = pair(f);
  f.ev.closeAll(1);
  t.false(f.ev.hasDomain(1));
  t.like(f.ev.status(f.caller(0), DOMID_SELF, back), { status: EVTCHNSTAT_unbound, dom: 1 });
  t.is(f.ev.send(f.caller(0), back), 0, 'the backend can still send; nobody hears');
  t.is(f.ev.bindIpi(f.caller(1), 0), -ESRCH);
  t.is(f.ev.close(f.caller(0), back), 0);
});

test('poll returns 1 at once when a port is already pending', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  f.ev.send(f.caller(0), back);
  t.is(f.ev.poll(1, 0, [front]), 1);
  t.false(f.ev.isPolling(1, 0));
});

test('a send wakes a vCPU polling on that port, even a masked one', (t) => {
  const f = machine();
  const { back, front } = pair(f);
  f.setMask(1, front, true);
  t.is(f.ev.poll(1, 0, [front]), 0);
  t.true(f.ev.isPolling(1, 0));
  f.ev.send(f.caller(0), back);
  t.deepEqual(f.wakes, ['d1v0']);
  t.deepEqual(f.kicks, [], 'masked: no upcall');
  t.false(f.ev.isPolling(1, 0), 'woken pollers are no longer polling');
});

test('a poller is not woken by ports it did not ask for, and can cancel', (t) => {
  const f = machine();
  const { front } = pair(f);
  const ipi = f.ev.bindIpi(f.caller(1), 0);
  f.ev.poll(1, 0, [front]);
  f.ev.send(f.caller(1), ipi);
  t.deepEqual(f.wakes, []);
  t.true(f.ev.pollCancel(1, 0));
  t.false(f.ev.pollCancel(1, 0));
});

test('poll argument checks', (t) => {
  const f = machine();
  t.is(f.ev.poll(1, 0, [4096]), -EINVAL);
  t.is(f.ev.poll(1, 0, new Array<number>(129).fill(1)), -EINVAL);
  t.is(f.ev.poll(9, 0, [1]), -ESRCH);
});

test('drainPending hands out unmasked pending ports and leaves masked ones pending', (t) => {
  const f = machine();
  const a = f.ev.bindIpi(f.caller(1), 0);
  const b = f.ev.bindIpi(f.caller(1), 0);
  f.setMask(1, b, true);
  f.ev.send(f.caller(1), a);
  f.ev.send(f.caller(1), b);
  t.deepEqual(f.ev.drainPending(1, 0), [a]);
  t.false(f.pendingBit(1, a));
  t.true(f.pendingBit(1, b));
  t.is(f.upcallPending(1, 0), 0);
  t.is(f.pendingSel(1, 0), 0n);
});

test('notifyPort raises a bound port of a domain, refuses a free one', (t) => {
  const f = machine();
  const { front } = pair(f);
  t.is(f.ev.notifyPort(1, front), 0);
  t.true(f.ev.isPending(1, front));
  t.is(f.ev.notifyPort(1, 60), -EINVAL);
  t.is(f.ev.notifyPort(9, 1), -ESRCH);
});

test('channels() lists the ports in use with pending and mask state', (t) => {
  const f = machine();
  const { front } = pair(f);
  f.setMask(1, front, true);
  f.ev.notifyPort(1, front);
  t.deepEqual(f.ev.channels(1), [
    { status: EVTCHNSTAT_interdomain, vcpu: 0, dom: 0, port: 1, localPort: front, pending: true, masked: true },
  ]);
});

test('initDomain twice is -EEXIST', (t) => {
  const f = machine();
  t.is(f.ev.initDomain(1), -EEXIST);
});

test('benchEvtchn delivers every event of its ping-pong and reports rates', (t) => {
  const r = benchEvtchn(1000);
  t.is(r.sends, 2000);
  t.is(r.kicks, 2000, 'every send finds the upcall cleared by the previous drain and kicks');
  t.true(r.sendsPerSec > 0 && r.roundTripsPerSec > 0);
});

test('a vCPU whose vcpu_info is elsewhere (registered, or past 32) gets its bits there', (t) => {
  const f = evFixture();
  const elsewhere = f.frames.alloc(1)!;
  const sh = f.frames.alloc(1)!;
  const kicks: string[] = [];
  const ev = new EventChannels({
    vcpuCount: () => 40,
    sharedInfo: () => f.memory.frameMem(sh),
    vcpuInfo: (_d, v) => (v === 39 ? { mem: f.memory.frameMem(elsewhere), base: 128 } : undefined),
    kick: (d, v) => { kicks.push(`d${d}v${v}`); },
    wakePoller: () => {},
  });
  ev.initDomain(1);
  const p = ev.bindIpi({ domid: 1, vcpuId: 0, privileged: false }, 39);
  ev.send({ domid: 1, vcpuId: 0, privileged: false }, p);
  t.is(f.memory.readU8(elsewhere, 128), 1, 'evtchn_upcall_pending of the registered vcpu_info');
  t.is(f.memory.readU64(elsewhere, 136), 1n, 'its evtchn_pending_sel');
  t.deepEqual(kicks, ['d1v39']);
  t.deepEqual(ev.drainPending(1, 39), [p]);
});
