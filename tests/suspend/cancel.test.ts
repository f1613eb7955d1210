/*
 * Suspends that end in the same domain, on a real Machine booting the
 * netbsd kernel: cancelled ones (what `xl save -c` and a failed save do:
 * rax = 1, resumedomain, XS_RESUME), asked through control/shutdown and
 * through the suspend event channel, and one a device refuses.
 */
import test from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import {
  host, boot, drive, node, consoleText, count, suspended, cancelSuspend, ticks, resumeTimes, nonDecreasing, ping,
  grantHoldsPattern,
} from './fixture.js';

const RESUMED = /^susp: resumed kind=(\d+) gen=(\d+) cancels=(\d+) ports=(\d+) masked=(\d+) inuse=(\d+)$/gm;

function lastResumed(text: string): { kind: number; gen: number; cancels: number; ports: number; masked: number; inuse: number } | undefined {
  const all = [...text.matchAll(RESUMED)];
  const m = all[all.length - 1];
  if (m === undefined) return undefined;
  const [kind, gen, cancels, ports, masked, inuse] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return { kind, gen, cancels, ports, masked, inuse };
}

function gref(text: string): number {
  const m = [...text.matchAll(/^susp: gref (\d+) mfn \d+$/gm)];
  return Number(m[m.length - 1]?.[1] ?? -1);
}

test('control/shutdown = suspend, cancelled ten times: the same domain runs on, clock, xenstore, console and grants intact', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'susp');
  const dom = domainPath(b.domid);
  const text = (): string => consoleText(h, b.domid);
  await drive(t, h, () => node(h, `${dom}/data/gref`) !== undefined, 'data/gref');
  const ref = gref(text());
  t.true(ref >= 8, `a ref the kernel handed out (${ref})`);
  t.is(node(h, `${dom}/data/gref`), String(ref));
  t.is(grantHoldsPattern(h, b.domid, ref), 'ok');
  let ports = -1;

  for (let i = 1; i <= 10; i++) {
    await h.xs.write(`${dom}/control/shutdown`, 'suspend');
    await drive(t, h, () => suspended(h, b.domid), `suspend ${i}`);
    t.is(node(h, `${dom}/control/shutdown`), '', 'acked');
    t.is(count(text(), 'xen_suspend: suspending domain'), i);
    // Suspended: the vCPU stays down however long the machine runs.
    h.m.runUntil(() => false, 2000);
    t.true(suspended(h, b.domid));

    await cancelSuspend(h, b.domid);
    await drive(t, h, () => count(text(), 'xen_suspend: suspend cancelled, resumed in the same domain') === i, `resume ${i}`);
    await drive(t, h, () => count(text(), 'susp: resumed') === i, `the workload saw resume ${i}`);
    const u = lastResumed(text());
    t.deepEqual(u && { kind: u.kind, gen: u.gen, cancels: u.cancels, masked: u.masked, inuse: u.inuse }, { kind: 1, gen: 0, cancels: i, masked: 0, inuse: 1 },
      'cancelled, no new domain, every port with a handler unmasked, the one grant still in use');
    if (i === 1) ports = u?.ports ?? -1;
    t.is(u?.ports, ports, 'as many event channels bound after each cancel');
    await ping(t, h, b.domid, `ping-${i}`);
    t.is(grantHoldsPattern(h, b.domid, ref), 'ok', `grant ref ${ref} still maps our page after cancel ${i}`);
    const ticksNow = count(text(), 'susp: tick');
    await drive(t, h, () => count(text(), 'susp: tick') >= ticksNow + 2, 'ticks after the resume');
  }
  const out = text();
  t.false(out.includes('BACKWARDS'));
  const times = ticks(out);
  t.true(nonDecreasing(times), 'guest time never went back');
  const resumes = resumeTimes(out);
  t.is(resumes.length, 10);
  t.true(nonDecreasing([...times.slice(0, 1), ...resumes]), 'resume lines in order');
  t.is(count(out, 'susp: gref'), 1, 'never granted again: the ref stayed valid');
  t.false(h.m.xc.getDomainInfo(b.domid)?.shutdown ?? true);
  t.is(h.m.domain(b.domid)?.crash ?? null, null);
  t.deepEqual(h.m.log.bugs, []);
});

test('the suspend event channel: dom0 binds the advertised port and signals it; no ack; cancelled, it works again', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'susp');
  const dom = domainPath(b.domid);
  const text = (): string => consoleText(h, b.domid);
  await drive(t, h, () => /^\d+$/.test(node(h, `${dom}/device/suspend/event-channel`) ?? ''), 'device/suspend/event-channel');
  const port = Number(node(h, `${dom}/device/suspend/event-channel`));
  const local = h.m.xc.bindInterdomain(b.domid, port);
  t.true(local > 0, `dom0 bound the guest's port ${port}: ${local}`);
  for (let i = 1; i <= 2; i++) {
    // Twice: the second signal comes while the suspend it asked for is
    // under way (before the hypercall), and asks for nothing more.
    t.is(h.m.xc.notify(local), 0);
    const under = count(text(), 'xen_suspend: suspending domain') + 1;
    for (let n = 0; n < 1000 && count(text(), 'xen_suspend: suspending domain') < under && !suspended(h, b.domid); n++) h.m.step();
    t.is(count(text(), 'xen_suspend: suspending domain'), under, 'the suspend started');
    t.false(suspended(h, b.domid), 'and is not over yet');
    t.is(h.m.xc.notify(local), 0);
    await drive(t, h, () => suspended(h, b.domid), `suspend ${i} through the event channel`);
    t.is(node(h, `${dom}/control/shutdown`), '', 'control/shutdown untouched');
    t.false(text().includes('xenbus: suspend requested'), 'not through xenstore');
    t.is(count(text(), 'xen_suspend: suspending domain'), i, 'one suspend per request, however often signalled');
    await cancelSuspend(h, b.domid);
    await drive(t, h, () => count(text(), 'suspend cancelled, resumed in the same domain') === i, `resume ${i}`);
    await ping(t, h, b.domid, `evtchn-${i}`);
  }
  t.is(node(h, `${dom}/device/suspend/event-channel`), String(port), 'the same port after a cancel');
  t.deepEqual(h.m.log.bugs, []);
});

test('a suspend asked for through the event channel while the guest resumes from a cancel is carried out once the resume is over', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'susp');
  const dom = domainPath(b.domid);
  const text = (): string => consoleText(h, b.domid);
  await drive(t, h, () => /^\d+$/.test(node(h, `${dom}/device/suspend/event-channel`) ?? ''), 'device/suspend/event-channel');
  const local = h.m.xc.bindInterdomain(b.domid, Number(node(h, `${dom}/device/suspend/event-channel`)));
  t.true(local > 0);
  t.is(h.m.xc.notify(local), 0);
  await drive(t, h, () => suspended(h, b.domid), 'the first suspend');
  await cancelSuspend(h, b.domid);
  // At once, before the guest ran again: the event reaches it when it lets
  // events in again half-way through its resume (xen_resume_events).
  t.false(text().includes('suspend cancelled, resumed in the same domain'), 'the guest has not resumed yet');
  t.is(h.m.xc.notify(local), 0);
  await drive(t, h, () => suspended(h, b.domid), 'the second suspend, once the resume is over');
  t.is(count(text(), 'suspend cancelled, resumed in the same domain'), 1, 'the first resume finished before the second suspend');
  t.is(count(text(), 'xen_suspend: a suspend was asked for while resuming: suspending again'), 1);
  t.is(count(text(), 'xen_suspend: suspending domain'), 2);
  await cancelSuspend(h, b.domid);
  await drive(t, h, () => count(text(), 'suspend cancelled, resumed in the same domain') === 2, 'the second resume');
  await ping(t, h, b.domid, 'after-two');
  t.is(count(text(), 'xen_suspend: suspending domain'), 2, 'no third suspend');
  t.deepEqual(h.m.log.bugs, []);
});

test('a device that refuses to suspend: the suspend fails cleanly, every device resumes and the guest runs on', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'susprefuse');
  const dom = domainPath(b.domid);
  const text = (): string => consoleText(h, b.domid);
  t.regex(text(), /susrefuse0 at mainbus0: refuses to suspend/);
  await h.xs.write(`${dom}/control/shutdown`, 'suspend');
  await drive(t, h, () => text().includes('xen_suspend: a device refused to suspend; the domain runs on'), 'the refusal');
  t.false(suspended(h, b.domid));
  t.regex(text(), /susrefuse0: suspend refused\n(.|\n)*pmf_system_suspend: susrefuse0 refused to suspend, resuming \d+ device\(s\)/);
  await drive(t, h, () => count(text(), 'susp: resumed kind=3') === 1, 'the workload saw the refused suspend');
  // xenstore (suspended by pmf before the refusal, resumed by the rollback) and the console work.
  await ping(t, h, b.domid, 'after-refusal');
  const n = count(text(), 'susp: tick');
  await drive(t, h, () => count(text(), 'susp: tick') >= n + 2, 'ticks go on');
  // Now it accepts: the next suspend goes through, and is cancelled.
  await ping(t, h, b.domid, 'accept');
  await h.xs.write(`${dom}/control/shutdown`, 'suspend');
  await drive(t, h, () => suspended(h, b.domid), 'the second suspend');
  await cancelSuspend(h, b.domid);
  await drive(t, h, () => text().includes('suspend cancelled, resumed in the same domain'), 'the resume');
  await drive(t, h, () => text().includes('susrefuse0: resumed (cancelled)'), 'the device resumed through its *_resume_cancelled handler');
  t.false(text().includes('susrefuse0: resumed\n'), 'never through the plain resume handler (a cancel, and a refusal resumes only the devices suspended)');
  t.false(text().includes('BACKWARDS'));
  t.deepEqual(h.m.log.bugs, []);
});

test('ctrl_if: CMSG_SHUTDOWN_SUSPEND from the domain controller suspends the same way; cancelled, the guest runs on', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'susp');
  const text = (): string => consoleText(h, b.domid);
  let answered: boolean | undefined;
  void h.controller.sendShutdown(toDomId(b.domid), 'suspend').then((r) => {
    answered = r.ok;
  });
  await drive(t, h, () => suspended(h, b.domid), 'the suspend through ctrl_if');
  t.regex(text(), /ctrl_if0: suspend requested\n(.|\n)*xen_suspend: suspending domain/);
  await cancelSuspend(h, b.domid);
  await drive(t, h, () => text().includes('suspend cancelled, resumed in the same domain'), 'the resume');
  await drive(t, h, () => answered !== undefined, 'the controller heard back');
  t.true(answered);
  await ping(t, h, b.domid, 'after-ctrl-if');
  t.deepEqual(h.m.log.bugs, []);
});
