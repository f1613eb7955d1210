import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { VIRQ_DOM_EXC } from '../../hypervisor/public/xen.js';
import { helloKernel, spinKernel, timerKernel } from '../kernels/basic.js';
import { A_PARAM } from '../kernels/guest.js';
import { build, rc, result, variable } from './builder.js';

const small = (): Machine => new Machine({ memoryBytes: 32 * 1024 * 1024 });

test('a test kernel boots, maps shared_info, prints and powers off', (t) => {
  const m = small();
  const b = build(m, helloKernel);
  t.is(m.runUntil(() => b.d.shuttingDown, 1000), 'done');
  t.is(rc(m, b, 0), 0, 'update_va_mapping of shared_info');
  t.is(b.d.shutdownCode, SHUTDOWN_poweroff);
  t.is(b.d.state, 'shutdown');
  t.regex(m.log.console(b.domid), /hello from a test kernel/);
  t.regex(m.log.ring(), new RegExp(`\\(d${b.domid}\\) hello from a test kernel`));
  t.deepEqual(m.log.bugs, []);
});

test('VIRQ_DOM_EXC reaches dom0 when a domain shuts down and when it is destroyed', (t) => {
  const m = small();
  const port = m.xc.bindVirq(VIRQ_DOM_EXC);
  t.true(port > 0);
  let fired = 0;
  m.onDom0Event(port, () => { fired++; });
  const b = build(m, helloKernel);
  m.runUntil(() => fired > 0, 1000);
  t.is(fired, 1);
  const info = m.xc.getDomainInfo(b.domid);
  t.truthy(info);
  t.true(info!.shutdown);
  t.is(info!.shutdownReason, SHUTDOWN_poweroff);
  t.is(m.xc.destroyDomain(b.domid), 0);
  m.runUntil(() => fired > 1, 10);
  t.is(fired, 2);
  t.is(m.xc.getDomainInfo(b.domid), undefined);
});

test('getdomaininfo flags: paused at creation, running, blocked, shutdown with the code', (t) => {
  const m = small();
  const b = build(m, spinKernel, { paused: true });
  let info = m.xc.getDomainInfo(b.domid)!;
  t.true(info.paused);
  t.false(info.shutdown);
  t.is(info.nrOnlineVcpus, 1);
  t.is(info.maxVcpuId, 0);
  t.is(info.totPages, b.nrPages);
  t.is(info.sharedInfoFrame, b.d.sharedInfoMfn);
  t.is(m.xc.unpauseDomain(b.domid), 0);
  info = m.xc.getDomainInfo(b.domid)!;
  t.false(info.paused);
  t.true(info.running);
  m.runUntil(() => variable(m, b, 0) >= 10, 100);
  t.true(m.xc.getDomainInfo(b.domid)!.cpuTimeNs > 0);
  t.is(m.xc.pauseDomain(b.domid), 0);
  t.true(m.xc.getDomainInfo(b.domid)!.paused);
  const before = variable(m, b, 0);
  m.runUntil(() => false, 50);
  t.is(variable(m, b, 0), before, 'a paused domain does not run');
  t.is(m.xc.unpauseDomain(b.domid), 0);
  t.is(m.xc.unpauseDomain(b.domid), -22, 'unpausing an unpaused domain is -EINVAL');
});

test('fair round-robin: two spinning domains get the same number of entries', (t) => {
  const m = small();
  const a = build(m, spinKernel);
  const b = build(m, spinKernel);
  m.runUntil(() => false, 1000);
  const na = variable(m, a, 0);
  const nb = variable(m, b, 0);
  t.true(Math.abs(na - nb) <= 1, `${na} vs ${nb}`);
  t.true(na >= 499);
});

test('a busy guest sees simulated time move by one quantum per entry', (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024, quantumNs: 1000 });
  build(m, spinKernel);
  const t0 = m.clock.now();
  m.runUntil(() => false, 100);
  const dt = m.clock.now() - t0;
  t.true(dt >= 99_000 && dt <= 101_000, `${dt} ns`);
});

test('runUntil(time) on an idle machine jumps the clock there', (t) => {
  const m = small();
  t.is(m.runUntil(5_000_000_000), 'done');
  t.true(m.clock.now() >= 5_000_000_000);
  t.is(m.runToIdle(), 'idle');
});

test('createdomain picks fresh ids, refuses a taken one, and domctl is privileged', (t) => {
  const m = small();
  const a = m.xc.createDomain();
  const b = m.xc.createDomain();
  t.is(a, 1);
  t.is(b, 2);
  t.is(m.xc.createDomain({ domid: 2 }), -17);
  t.is(m.xc.createDomain({ domid: 7 }), 7);
  t.is(m.xc.createDomain({ maxVcpus: 0 }), -22);
  t.is(m.xc.destroyDomain(0), -22, 'dom0 cannot be destroyed');
  t.is(m.xc.destroyDomain(99), -3);
});

test('the realtime driver runs guests in the background until stopped', async (t) => {
  const m = new Machine({ memoryBytes: 16 * 1024 * 1024, clock: 'realtime' });
  const port = m.xc.bindVirq(VIRQ_DOM_EXC);
  const down = new Promise<void>((resolve) => m.onDom0Event(port, () => resolve()));
  m.start();
  const b = build(m, timerKernel, { args: { [A_PARAM]: 1_000_000, [A_PARAM + 1]: 3 } });
  m.poke();
  await down;
  await m.stop();
  t.is(b.d.shutdownCode, SHUTDOWN_poweroff);
  const first = result(m, b, 1);
  const third = result(m, b, 3);
  t.true(third - first >= 2_000_000n, 'three 1 ms ticks took real time');
  t.true(m.xc.getDomainInfo(b.domid)!.cpuTimeNs > 0);
});
