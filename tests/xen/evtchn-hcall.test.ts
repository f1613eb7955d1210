import test from 'ava';
import { evFixture, fakeGuestMem, callCtx } from './evtchn-fixture.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_send, EVTCHNOP_status,
  EVTCHNOP_init_control, EVTCHNOP_bind_pirq, EVTCHNSTAT_interdomain, EVTCHNSTAT_virq,
  evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_send, evtchn_status, evtchn_op,
} from '../../hypervisor/public/event_channel.js';
import { DOMID_SELF, VIRQ_TIMER } from '../../hypervisor/public/xen.js';
import { EFAULT, ENOSYS, EPERM, EINVAL } from '../../hypervisor/public/errno.js';
import { makeEventChannelOp, makeEventChannelOpCompat } from '../../hypervisor/xen/evtchn-hcall.js';

const BASE = 0x10_0000;

function setup() {
  const f = evFixture();
  f.addDomain(0, 1);
  f.addDomain(1, 2);
  const op = makeEventChannelOp(f.ev);
  const mem1 = fakeGuestMem(BASE, 2 * 4096, [BASE + 4096]);
  const mem0 = fakeGuestMem(BASE, 4096);
  const c1 = callCtx(1, mem1);
  const c0 = callCtx(0, mem0);
  const call = (c: typeof c1, cmd: number, va = BASE) => op(c, BigInt(cmd), BigInt(va), 0n, 0n, 0n);
  return { f, op, mem0, mem1, c0, c1, call };
}

test('alloc_unbound and bind_interdomain write their OUT port into the argument', (t) => {
  const { f, mem0, mem1, c0, c1, call } = setup();
  const a = evtchn_alloc_unbound.view(mem0, BASE);
  a.set('dom', DOMID_SELF);
  a.set('remote_dom', 1);
  t.is(call(c0, EVTCHNOP_alloc_unbound), 0);
  const back = a.get('port');
  t.is(back, 1);
  const b = evtchn_bind_interdomain.view(mem1, BASE);
  b.set('remote_dom', 0);
  b.set('remote_port', back);
  t.is(call(c1, EVTCHNOP_bind_interdomain), 0);
  const front = b.get('local_port');
  t.like(f.ev.status(f.caller(1), DOMID_SELF, front), { status: EVTCHNSTAT_interdomain, dom: 0, port: back });
});

test('status fills the union member of the port kind', (t) => {
  const { f, mem1, c1, call } = setup();
  const p = f.ev.bindVirq(f.caller(1), VIRQ_TIMER, 1);
  const s = evtchn_status.view(mem1, BASE);
  s.set('dom', DOMID_SELF);
  s.set('port', p);
  t.is(call(c1, EVTCHNOP_status), 0);
  t.is(s.get('status'), EVTCHNSTAT_virq);
  t.is(s.get('vcpu'), 1);
  t.is(s.sub('u').get('virq'), VIRQ_TIMER);
});

test('a bad argument pointer is -EFAULT and nothing is allocated', (t) => {
  const { f, c1, call } = setup();
  t.is(call(c1, EVTCHNOP_alloc_unbound, BASE + 8192), -EFAULT);
  t.deepEqual(f.ev.channels(1), [], 'no port was taken by the failed call');
});

test('a result that cannot be written back is -EFAULT, the port stays allocated (as Xen)', (t) => {
  const { f, call, c1, mem1 } = setup();
  // dom and remote_dom sit at the end of the writable page; port lands in the read-only one.
  evtchn_alloc_unbound.view(mem1, BASE + 4096 - 4).set('dom', DOMID_SELF);
  t.is(call(c1, EVTCHNOP_alloc_unbound, BASE + 4096 - 4), -EFAULT);
  t.is(f.ev.channels(1).length, 1);
});

test('an argument straddling the end of the mapping is -EFAULT before anything happens', (t) => {
  const { f, op, c1 } = setup();
  const va = BASE + 2 * 4096 - 4;
  t.is(op(c1, BigInt(EVTCHNOP_alloc_unbound), BigInt(va), 0n, 0n, 0n), -EFAULT);
  t.deepEqual(f.ev.channels(1), []);
});

test('a non-canonical pointer is -EFAULT', (t) => {
  const { op, c1 } = setup();
  t.is(op(c1, BigInt(EVTCHNOP_send), 0x0000_8000_0000_0000n, 0n, 0n, 0n), -EFAULT);
});

test('send reads its argument from a read-only page', (t) => {
  const { f, mem1, c1, call } = setup();
  const p = f.ev.bindIpi(f.caller(1), 0);
  // Write through the backing bytes: the page is read-only to the guest.
  evtchn_send.view(fakeView(mem1.bytes), 4096).set('port', p);
  t.is(call(c1, EVTCHNOP_send, BASE + 4096), 0);
  t.true(f.ev.isPending(1, p));
});

test('bind_virq with vCPU 0xffffffff is -ENOENT (a negative int in Xen)', (t) => {
  const { mem1, c1, call } = setup();
  const v = evtchn_bind_virq.view(mem1, BASE);
  v.set('virq', VIRQ_TIMER);
  v.set('vcpu', 0xffff_ffff);
  t.is(call(c1, EVTCHNOP_bind_virq), -2);
  v.set('virq', 0xffff_ffff);
  t.is(call(c1, EVTCHNOP_bind_virq), -EINVAL);
});

test('unknown, FIFO and PIRQ commands are refused', (t) => {
  const { c1, call } = setup();
  t.is(call(c1, 99), -ENOSYS);
  t.is(call(c1, EVTCHNOP_init_control), -ENOSYS);
  t.is(call(c1, EVTCHNOP_bind_pirq), -EPERM);
});

test('the compat hypercall takes struct evtchn_op with the command inside', (t) => {
  const { f, mem1, c1 } = setup();
  const compat = makeEventChannelOpCompat(f.ev);
  const o = evtchn_op.view(mem1, BASE);
  o.set('cmd', EVTCHNOP_alloc_unbound);
  o.sub('u').sub('alloc_unbound').set('dom', DOMID_SELF);
  o.sub('u').sub('alloc_unbound').set('remote_dom', 0);
  t.is(compat(c1, BigInt(BASE), 0n, 0n, 0n, 0n), 0);
  t.is(o.sub('u').sub('alloc_unbound').get('port'), 1);
});

function fakeView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
