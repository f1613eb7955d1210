import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { HypercallTable } from '../../hypervisor/xen/dispatch.js';
import { VcpuRegs, VCPU_CONTEXT_SIZE } from '../../hypervisor/xen/vcpu.js';
import { HostArenaMem } from '../../hypervisor/xen/mm-vamem.js';
import { GuestPageFault } from '../../hypervisor/public/cpu.js';
import type { CallCtx } from '../../hypervisor/xen/hcall.js';
import {
  __HYPERVISOR_xen_version, __HYPERVISOR_console_io, __HYPERVISOR_vm_assist, __HYPERVISOR_multicall,
  __HYPERVISOR_sched_op, XENVER_version, XENVER_extraversion, XENVER_pagesize, XENVER_capabilities,
  CONSOLEIO_read, CONSOLEIO_write, VMASST_CMD_enable, VMASST_TYPE_writable_pagetables, VMASST_TYPE_m2p_strict,
  multicall_entry,
} from '../../hypervisor/public/xen.js';
import { SCHEDOP_remote_shutdown, SHUTDOWN_reboot, sched_remote_shutdown } from '../../hypervisor/public/sched.js';
import { EFAULT, EINVAL, ENOSYS, EPERM } from '../../hypervisor/public/errno.js';
import { vaddr } from '../../hypervisor/public/types.js';
import { spinKernel } from '../kernels/basic.js';
import { build } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 16 * 1024 * 1024 });

test('register file: signed numbers, canonical addresses, 16-bit selectors', (t) => {
  const r = new VcpuRegs(new Uint8Array(VCPU_CONTEXT_SIZE));
  r.setNum('rax', -38);
  t.is(r.get('rax'), 0xffff_ffff_ffff_ffdan);
  t.is(r.getNum('rax'), -38);
  r.setNum('rbx', 2 ** 53 - 1);
  t.is(r.getNum('rbx'), 2 ** 53 - 1);
  r.setVa('rip', vaddr(0x8800_0000_1000));
  t.is(r.get('rip'), 0xffff_8800_0000_1000n);
  t.is(r.getVa('rip') as number, 0x8800_0000_1000);
  r.set('rsp', 0x0000_8000_0000_0000n);
  t.throws(() => r.getVa('rsp'), { instanceOf: RangeError });
  r.set('cs', 0x1e033n);
  t.is(r.get('cs'), 0xe033n);
  t.throws(() => r.setNum('rcx', 1.5), { instanceOf: TypeError });
});

test('dispatch: unknown numbers are -ENOSYS, guest faults -EFAULT, other exceptions go to onBug', (t) => {
  const table = new HypercallTable();
  const ctx: CallCtx = { domid: 1, vcpuId: 0, privileged: false, mem: new HostArenaMem(4096) };
  const bug = (): number => -999;
  t.is(table.call(ctx, 7, 0n, 0n, 0n, 0n, 0n, bug), -ENOSYS);
  t.is(table.call(ctx, 99, 0n, 0n, 0n, 0n, 0n, bug), -ENOSYS);
  table.register(7, () => { throw new GuestPageFault(0x1000, 0); });
  t.is(table.call(ctx, 7, 0n, 0n, 0n, 0n, 0n, bug), -EFAULT);
  table.register(8, () => { throw new Error('oops'); });
  t.is(table.call(ctx, 8, 0n, 0n, 0n, 0n, 0n, bug), -999);
  t.is(table.counts[7], 1);
});

test('xen_version answers 4.17 and fills its buffers', (t) => {
  const m = small();
  const h = m.xc.h;
  t.is(h.call(__HYPERVISOR_xen_version, XENVER_version), (4 << 16) | 17);
  t.is(h.call(__HYPERVISOR_xen_version, XENVER_pagesize), 4096);
  h.arena.reset();
  const buf = h.arena.alloc(1024);
  t.is(h.call(__HYPERVISOR_xen_version, XENVER_extraversion, buf), 0);
  t.is(Buffer.from(h.arena.readBytes(buf, 16)).toString('latin1').replace(/\0+$/, ''), '.0-xenport');
  t.is(h.call(__HYPERVISOR_xen_version, XENVER_capabilities, buf), 0);
  t.regex(Buffer.from(h.arena.readBytes(buf, 32)).toString('latin1'), /^xen-3\.0-x86_64/);
  t.is(h.call(__HYPERVISOR_xen_version, 99, buf), -ENOSYS);
});

test('console_io: dom0 reads host input; only a privileged caller may read', (t) => {
  const m = small();
  const h = m.xc.h;
  m.log.pushInput('ls\n');
  h.arena.reset();
  const buf = h.arena.alloc(64);
  t.is(h.call(__HYPERVISOR_console_io, CONSOLEIO_read, 64, buf), 3);
  t.is(Buffer.from(h.arena.readBytes(buf, 3)).toString(), 'ls\n');
  const guest: CallCtx = { domid: 5, vcpuId: 0, privileged: false, mem: h.arena };
  const bug = (): number => { throw new Error('bug'); };
  t.is(m.hypercalls.call(guest, __HYPERVISOR_console_io, BigInt(CONSOLEIO_read), 64n, BigInt(buf), 0n, 0n, bug), -EPERM);
  h.arena.writeBytes(buf, Buffer.from('dom0 says hi\n'));
  t.is(h.call(__HYPERVISOR_console_io, CONSOLEIO_write, 13, buf), 0);
  t.regex(m.log.ring(), /\(d0\) dom0 says hi/);
});

test('vm_assist: known types toggle, others are -EINVAL', (t) => {
  const m = small();
  const h = m.xc.h;
  t.is(h.call(__HYPERVISOR_vm_assist, VMASST_CMD_enable, VMASST_TYPE_writable_pagetables), 0);
  t.is(m.dom0.vmAssist, 1 << VMASST_TYPE_writable_pagetables);
  t.is(h.call(__HYPERVISOR_vm_assist, VMASST_CMD_enable, VMASST_TYPE_m2p_strict), -EINVAL);
  t.is(h.call(__HYPERVISOR_vm_assist, VMASST_CMD_enable, 31), -EINVAL);
  t.is(h.call(__HYPERVISOR_vm_assist, 7, VMASST_TYPE_writable_pagetables), -ENOSYS);
});

test('multicall runs each entry and writes each result back', (t) => {
  const m = small();
  const h = m.xc.h;
  h.arena.reset();
  const list = h.arena.alloc(3 * multicall_entry.size);
  const e = (i: number) => multicall_entry.view(h.arena, list + i * multicall_entry.size);
  e(0).set('op', BigInt(__HYPERVISOR_xen_version));
  e(0).setAt('args', 0, BigInt(XENVER_version));
  e(1).set('op', BigInt(__HYPERVISOR_xen_version));
  e(1).setAt('args', 0, BigInt(XENVER_pagesize));
  e(2).set('op', 63n);
  t.is(h.call(__HYPERVISOR_multicall, list, 3), 0);
  t.is(e(0).get('result'), BigInt((4 << 16) | 17));
  t.is(e(1).get('result'), 4096n);
  t.is(BigInt.asIntN(64, e(2).get('result')), BigInt(-ENOSYS));
});

test('SCHEDOP_remote_shutdown: dom0 shuts a guest down with a reason', (t) => {
  const m = small();
  const b = build(m, spinKernel);
  m.runUntil(() => false, 5);
  const h = m.xc.h;
  h.arena.reset();
  const r = sched_remote_shutdown.view(h.arena, h.arena.alloc(sched_remote_shutdown.size));
  r.set('domain_id', b.domid);
  r.set('reason', SHUTDOWN_reboot);
  t.is(h.call(__HYPERVISOR_sched_op, SCHEDOP_remote_shutdown, r.base), 0);
  t.true(b.d.shuttingDown);
  t.is(m.xc.getDomainInfo(b.domid)!.shutdownReason, SHUTDOWN_reboot);
  r.set('domain_id', 77);
  t.is(h.call(__HYPERVISOR_sched_op, SCHEDOP_remote_shutdown, r.base), -3);
});

test('sysctl: physinfo, the console ring, the domain list', (t) => {
  const m = small();
  build(m, spinKernel);
  const p = m.xc.physinfo();
  if (typeof p === 'number') return t.fail(String(p));
  t.is(p.totalPages, 4096);
  t.is(p.cpuKhz, 2_000_000);
  t.is(p.maxMfn, 4095);
  t.is(p.freePages, m.frames.freeFrames);
  const ring = m.xc.readConsole();
  t.regex(typeof ring === 'string' ? ring : '', /\(XEN\) machine up/);
  const list = m.xc.listDomains();
  t.deepEqual(Array.isArray(list) ? list.map((d) => d.domid) : list, [0, 1]);
});
