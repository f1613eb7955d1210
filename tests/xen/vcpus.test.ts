import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { vcpu_info } from '../../hypervisor/public/xen.js';
import { EINVAL, EEXIST } from '../../hypervisor/public/errno.js';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { A_PARAM } from '../kernels/guest.js';
import { smpKernel, vcpuInfoKernel, periodicKernel } from '../kernels/smp.js';
import { build, rc, variable } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 32 * 1024 * 1024 });

test('a second vCPU: initialise, up, is_up, down; the last vCPU going down powers off', (t) => {
  const m = small();
  const b = build(m, smpKernel, { vcpus: 2 });
  t.is(m.runUntil(() => b.d.shuttingDown, 10_000), 'done');
  t.is(b.d.shutdownCode, SHUTDOWN_poweroff, b.d.crash?.reason ?? '');
  t.is(rc(m, b, 0), 0, 'is_up before');
  t.is(rc(m, b, 1), -EINVAL, 'up before initialise');
  t.is(rc(m, b, 2), 0, 'initialise');
  t.is(rc(m, b, 3), -EEXIST, 'initialise twice');
  t.is(rc(m, b, 4), 0, 'up');
  t.is(rc(m, b, 5), 1, 'is_up');
  t.is(rc(m, b, 6), 0, 'down');
  t.is(rc(m, b, 7), 0, 'is_up after down');
  t.is(rc(m, b, 8), 0, 'the last online vCPU going down');
  t.true(b.d.vcpus[0]!.up, 'the domain powered off instead');
  t.is(rc(m, b, 10), 1, 'the secondary ran as vCPU 1');
  t.true(variable(m, b, 1) >= 10);
  // Round-robin between the two: vCPU 0 waited about as many entries.
  t.true(Math.abs(variable(m, b, 0) - variable(m, b, 1)) <= 2);
});

test('VCPUOP_register_vcpu_info moves vcpu_info: time and events land in the new place', (t) => {
  const m = small();
  const free = m.frames.freeFrames;
  const b = build(m, vcpuInfoKernel, { paused: true });
  const frame = b.p2m[3]!;
  m.memory.writeU64(b.mbox, 8 * A_PARAM, BigInt(frame));
  m.xc.unpauseDomain(b.domid);
  m.runUntil(() => variable(m, b, 0) >= 3, 100);
  t.is(rc(m, b, 0), 0);
  t.is(rc(m, b, 1), -EINVAL, 'a second registration');
  const base = 64;
  const time = base + vcpu_info.offsetOf('time');
  t.is(m.memory.readU32(frame, time) % 2, 0);
  t.true(m.memory.readU32(frame, time) > 0, 'the time record is kept up to date there');
  t.true(m.memory.readU64(frame, time + 16) > 0n, 'system_time');
  // Clear what registration set (pending + all selector bits), then send.
  m.memory.writeU8(frame, base + vcpu_info.offsetOf('evtchn_upcall_pending'), 0);
  m.memory.writeU64(frame, base + vcpu_info.offsetOf('evtchn_pending_sel'), 0n);
  const port = m.xc.bindInterdomain(b.domid, rc(m, b, 2));
  t.true(port > 0);
  t.is(m.xc.notify(port), 0);
  t.is(m.memory.readU8(frame, base + vcpu_info.offsetOf('evtchn_upcall_pending')), 1);
  t.not(m.memory.readU64(frame, base + vcpu_info.offsetOf('evtchn_pending_sel')), 0n);
  // Destroying the domain drops the reference registration took.
  t.is(m.xc.destroyDomain(b.domid), 0);
  t.is(m.frames.freeFrames, free);
});

test('the periodic timer ticks until stopped; periods under 1 ms are refused', (t) => {
  const m = small();
  const b = build(m, periodicKernel, { args: { [A_PARAM]: 2_000_000, [A_PARAM + 1]: 7 } });
  const t0 = m.clock.now();
  t.is(m.runUntil(() => b.d.shuttingDown, 10_000), 'done');
  t.is(rc(m, b, 0), 0);
  t.is(rc(m, b, 1), -EINVAL);
  t.is(variable(m, b, 1), 7);
  const elapsed = m.clock.now() - t0;
  t.true(elapsed >= 14_000_000 && elapsed < 16_000_000, `${elapsed} ns for 7 ticks of 2 ms`);
  t.is(m.runToIdle(), 'idle', 'no timer left armed');
});
