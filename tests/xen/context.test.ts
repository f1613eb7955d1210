import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { vcpu_guest_context, VGCF_online } from '../../hypervisor/public/arch-x86_64.js';
import { SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { VIRQ_DOM_EXC } from '../../hypervisor/public/xen.js';
import { canonicalVa } from '../../hypervisor/public/types.js';
import { A_PARAM } from '../kernels/guest.js';
import { spinKernel, suspendKernel } from '../kernels/basic.js';
import { build, rc, variable } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 32 * 1024 * 1024 });
const view = (ctx: Uint8Array) => vcpu_guest_context.view(new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength), 0);

test('getvcpucontext returns Xen\'s 5168-byte layout: rip, CR3, flags', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true });
  const ctx = m.xc.getVcpuContext(b.domid, 0);
  if (typeof ctx === 'number') return t.fail(`getvcpucontext: ${ctx}`);
  t.is(ctx.length, 5168);
  const v = view(ctx);
  t.is(v.sub('user_regs').get('rip'), canonicalVa(spinKernel.entry));
  t.is(v.getAt('ctrlreg', 3), BigInt(b.l4) << 12n);
  t.true((Number(v.get('flags')) & VGCF_online) !== 0);
});

test('getvcpucontext / setvcpucontext round-trip byte for byte', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true, vcpus: 2 });
  t.is(m.xc.getVcpuContext(b.domid, 1), -61, 'an uninitialised vCPU has no context (-ENODATA)');
  const ctx = m.xc.getVcpuContext(b.domid, 0) as Uint8Array;
  const regs = view(ctx).sub('user_regs');
  regs.set('rbx', 0x1122_3344_5566_7788n);
  regs.set('r15', 0xffff_ffff_ffff_fffen);
  view(ctx).set('event_callback_eip', 0xffff_8000_0000_1230n);
  t.is(m.xc.setVcpuContext(b.domid, 0, ctx), 0);
  t.deepEqual(m.xc.getVcpuContext(b.domid, 0), ctx);
  // The same context loaded into the other vCPU (same L4), left offline.
  view(ctx).set('flags', view(ctx).get('flags') & ~BigInt(VGCF_online));
  t.is(m.xc.setVcpuContext(b.domid, 1, ctx), 0);
  t.deepEqual(m.xc.getVcpuContext(b.domid, 1), ctx);
  t.false(b.d.vcpus[1]!.up);
});

test('setvcpucontext validates CR3: a data page, a foreign L4 and no L4 are -EINVAL', (t) => {
  const m = small();
  const a = build(m, spinKernel, { paused: true, vcpus: 2 });
  const other = build(m, spinKernel, { paused: true });
  const ctx = m.xc.getVcpuContext(a.domid, 0) as Uint8Array;
  const withCr3 = (mfn: number): Uint8Array => {
    const c = ctx.slice();
    view(c).setAt('ctrlreg', 3, BigInt(mfn) << 12n);
    return c;
  };
  t.is(m.xc.setVcpuContext(a.domid, 1, withCr3(a.p2m[1]!)), -22, 'a writable data page is no L4');
  t.is(m.xc.setVcpuContext(a.domid, 1, withCr3(other.l4)), -22, 'another domain\'s L4');
  t.is(m.xc.setVcpuContext(a.domid, 1, withCr3(0)), -22, 'no L4 at all');
  t.is(m.xc.setVcpuContext(a.domid, 0, withCr3(a.l1s[0]!)), -95, 'a running vCPU keeps its CR3 (-EOPNOTSUPP)');
  t.is(m.xc.setVcpuContext(a.domid, 7, ctx), -3, 'no such vCPU');
  t.is(m.xc.setVcpuContext(a.domid, 1, null), 0, 'a null context resets');
});

test('SHUTDOWN_suspend records the start_info MFN from rdx; the context keeps rdx and rax = 0', (t) => {
  const m = small();
  const b = build(m, suspendKernel, { args: { [A_PARAM]: 0x1234 } });
  t.is(m.runUntil(() => b.d.shuttingDown, 100), 'done');
  t.is(b.d.shutdownCode, SHUTDOWN_suspend);
  t.is(b.d.suspendStartInfoMfn, 0x1234);
  const info = m.xc.getDomainInfo(b.domid)!;
  t.true(info.shutdown);
  t.is(info.shutdownReason, SHUTDOWN_suspend);
  const regs = view(m.xc.getVcpuContext(b.domid, 0) as Uint8Array).sub('user_regs');
  t.is(regs.get('rdx'), 0x1234n);
  t.is(regs.get('rax'), 0n);
  t.is(regs.get('rip'), canonicalVa(suspendKernel.addr.resumed!));
});

test('fast resume: rax = 1 then resumedomain; the guest sees 1, then 0 on a plain resume', (t) => {
  const m = small();
  const b = build(m, suspendKernel, { args: { [A_PARAM]: 0x99 } });
  m.runUntil(() => b.d.shuttingDown, 100);
  t.is(m.xc.setSuspendResult(b.domid, 1), 0);
  t.is(m.xc.resumeDomain(b.domid), 0);
  t.false(b.d.shuttingDown);
  t.is(m.runUntil(() => b.d.shuttingDown, 100), 'done');
  t.is(variable(m, b, 0), 1);
  t.is(rc(m, b, 1), 1, 'the cancelled suspend returned 1');
  t.is(m.xc.resumeDomain(b.domid), 0);
  m.runUntil(() => b.d.shuttingDown, 100);
  t.is(variable(m, b, 0), 2);
  t.is(rc(m, b, 1), 0);
});

test('the suspend event channel (subscribe) and VIRQ_DOM_EXC both tell dom0 of a suspend', (t) => {
  const m = small();
  const b = build(m, suspendKernel, { paused: true, args: { [A_PARAM]: 1 } });
  const guestPort = m.xc.allocUnbound(0, b.domid);
  t.true(guestPort > 0);
  const local = m.xc.bindInterdomain(b.domid, guestPort);
  t.true(local > 0);
  t.is(m.xc.subscribe(b.domid, guestPort), 0);
  const exc = m.xc.bindVirq(VIRQ_DOM_EXC);
  const seen: number[] = [];
  m.onDom0Event(local, (p) => seen.push(p));
  m.onDom0Event(exc, (p) => seen.push(p));
  // bind_interdomain leaves dom0's new port pending once: let that pass.
  m.runToIdle();
  seen.length = 0;
  m.xc.unpauseDomain(b.domid);
  m.runUntil(() => seen.length >= 2, 100);
  t.deepEqual([...seen].sort(), [local, exc].sort());
});
