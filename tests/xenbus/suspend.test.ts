/*
 * The parts of xenbus the save/restore path plugs into, on the harness:
 * xs_suspend waits for outstanding replies and holds new requests;
 * resume onto a new xenstored (a restore) sends every watch again and
 * lets the held requests go; a cancelled suspend keeps the connection.
 * The control/shutdown handler: a commit that conflicts with the
 * toolstack is retried and the request that won is carried out; the
 * suspend hook runs on the xenbus thread. And the whole of xenbus's state
 * survives a copy of guest memory into a freshly linked kernel.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create, lwp_info } from '../../sys/kern/kern_lwp.js';
import { curlwp } from '../../sys/sys/kernel.js';
import { kpause } from '../../sys/kern/kern_synch.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { device_lookup, device_private } from '../../sys/kern/subr_autoconf.js';
import { kcall } from '../../sys/kern/kern_ksyms.js';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { xs_read, xs_write, xs_result, xs_suspend, xs_outstanding } from '../../arch/xen/xenbus/xenbus_xs.js';
import { xenbus_watch_path, xenwatch_path, xenbus_watch_list } from '../../arch/xen/xenbus/xenbus_watch.js';
import { xs_resume_at } from '../../arch/xen/xenbus/xenbus_probe.js';
import { xenbus_set_suspend_hook } from '../../arch/xen/xenbus/xenbus_shutdown.js';
import { xenbus_softc, XBF_CONNECTED } from '../../arch/xen/xenbus/xenbus_var.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { FlatMem, Harness } from '../guest/harness.js';
import { KERNBASE } from '../../arch/xen/include/vmparam.js';
import {
  world, bootDone, sleepingOn, newXenstored, storePage, settle, xenbusTestImage, XbWorld, StoreCpu, DOMPATH, DOMID, STORE_PORT,
} from './fixture.js';

const syms = ksymtab({
  s_watch(cpu: GuestCpu): void {
    xenbus_watch_path(cpu, 'data/w', 's_fired', 0, 0, 's_watch_1');
  },
  s_watch_1(cpu: GuestCpu): void {
    printf(cpu, 'watch=%d\n', xs_result(cpu).error);
  },
  s_fired(cpu: GuestCpu): void {
    xs_read(cpu, 0, xenwatch_path(cpu), 's_fired_1');
  },
  s_fired_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'fired %s=%s\n', xenwatch_path(cpu), r.error === 0 ? r.value : `E${r.error}`);
  },
  s_read(cpu: GuestCpu): void {
    xs_read(cpu, 0, 'data/h', 's_read_1');
  },
  s_read_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'read %d %s\n', r.error, r.value);
  },
  s_queue(cpu: GuestCpu): void {
    xs_write(cpu, 0, 'data/queued', 'while suspended', 's_queue_1');
  },
  s_queue_1(cpu: GuestCpu): void {
    printf(cpu, 'queued write %d\n', xs_result(cpu).error);
  },
  /* The save path's first steps: drain xenstore, then the pmf suspend of xenbus0. */
  s_suspend(cpu: GuestCpu): void {
    xs_suspend(cpu, 's_suspend_1');
  },
  s_suspend_1(cpu: GuestCpu): void {
    const dev = device_lookup(cpu, 'xenbus', 0);
    printf(cpu, 'suspended: outstanding %d, pmf %d\n', xs_outstanding(cpu, device_private(cpu, dev)), kcall(cpu, 'xenbus_suspend', dev));
  },
  /* A suspend hook that sleeps: it runs on the xenbus thread. */
  s_hook(cpu: GuestCpu, sc: number): void {
    printf(cpu, 'hook: start (sc %s)\n', sc !== 0 ? 'ok' : 'none');
    kpause(cpu, 'hook', 3, 's_hook_1');
  },
  s_hook_1(cpu: GuestCpu): void {
    printf(cpu, 'hook: resumed on %s\n', lwp_name(cpu));
  },
});

function lwp_name(cpu: GuestCpu): string {
  return lwp_info(cpu, curlwp(cpu)).name;
}

async function booted(): Promise<XbWorld> {
  const w = await world({ extra: [syms] });
  if (!w.run(30000, () => bootDone(w))) throw new Error('no boot');
  await w.dom0.write(`${DOMPATH}/data/h`, 'here');
  await w.dom0.write(`${DOMPATH}/data/w`, 'one');
  return w;
}

const flags = (w: XbWorld): number => xenbus_softc.view(w.h.cpu.mem, w.sc).get('sc_flags');

test('suspend waits for the reply in flight, holds new requests; resume on a new xenstored re-sends watches and lets them go', async (t) => {
  const w = await booted();
  lwp_create(w.h.cpu, 's_watch', 's_watch', 0);
  t.true(w.run(30000, () => w.console().includes('fired data/w=one')));
  w.deaf = true;
  lwp_create(w.h.cpu, 's_read', 's_read', 0);
  w.run(100);
  lwp_create(w.h.cpu, 's_suspend', 's_suspend', 0);
  w.run(100);
  t.true(sleepingOn(w, 'xssuspend'), 'xs_suspend waits for the outstanding read');
  lwp_create(w.h.cpu, 's_queue', 's_queue', 0);
  w.run(100);
  w.deaf = false;
  w.ring().kick();
  t.true(w.run(30000, () => w.console().includes('suspended:')));
  t.regex(w.console(), /read 0 here\n(.|\n)*suspended: outstanding 0, pmf 1\n/);
  t.is(flags(w) & XBF_CONNECTED, 0, 'the store port is quiet');
  await settle();
  t.is(lookup(w.xs.state.root, `${DOMPATH}/data/queued`), undefined, 'the queued write was held back');

  // A restore: a new xenstored that knows nothing of our watches, a new store page.
  const old = w.xs;
  const fresh = await newXenstored(async (dom0) => {
    await dom0.write(`${DOMPATH}/data/w`, 'two');
    await dom0.setPerms(`${DOMPATH}/data/w`, [`n${DOMID}`]);
  });
  const page = storePage(w.h);
  w.attach(fresh.xs, fresh.dom0, page);
  old.close();
  t.is(xs_resume_at(w.h.cpu, w.sc, page, STORE_PORT, false), 0);
  t.true(w.run(30000, () => w.console().includes('fired data/w=two')), 'the watch was registered again (and fired at once)');
  t.true(w.run(30000, () => w.console().includes('queued write 0')));
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/data/queued`), 'while suspended');
  await w.dom0.write(`${DOMPATH}/data/w`, 'three');
  t.true(w.run(30000, () => w.console().includes('fired data/w=three')));
  t.is(xenbus_watch_list(w.h.cpu, w.sc).length, 3, 'device, control/shutdown, data/w, each once');
});

test('a cancelled suspend resumes on the same ring: watches are not sent again', async (t) => {
  const w = await booted();
  lwp_create(w.h.cpu, 's_watch', 's_watch', 0);
  t.true(w.run(30000, () => w.console().includes('fired data/w=one')));
  lwp_create(w.h.cpu, 's_suspend', 's_suspend', 0);
  t.true(w.run(30000, () => w.console().includes('suspended:')));
  lwp_create(w.h.cpu, 's_queue', 's_queue', 0);
  w.run(200);
  const kicks = w.kicks;
  t.is(xs_resume_at(w.h.cpu, w.sc, w.intf, STORE_PORT, true), 0);
  t.true(w.run(30000, () => w.console().includes('queued write 0')));
  t.false(/fired data\/w=one(.|\n)*fired data\/w=one/.test(w.console()), 'no second initial event: the watch was not re-sent');
  t.true(w.kicks > kicks);
  const conn = w.xs.state.domains.get(DOMID)?.conn;
  t.is(conn === undefined ? -1 : w.xs.state.conns.get(conn)?.watches.length, 3);
});

test('shutdown: a commit that conflicts with the toolstack is retried, and the request that won is carried out', async (t) => {
  const w = await booted();
  await w.dom0.write(`${DOMPATH}/control/shutdown`, 'reboot');
  const how = (): number => xenbus_softc.view(w.h.cpu.mem, w.sc).get('sc_shutdown_how');
  t.true(w.run(30000, () => how() === 2), 'the guest read "reboot" in its transaction');
  await w.dom0.write(`${DOMPATH}/control/shutdown`, 'poweroff');
  t.true(w.run(30000, () => w.fake.shutdownReason !== undefined));
  t.is(w.fake.shutdownReason, SHUTDOWN_poweroff);
  t.true(xenbus_softc.view(w.h.cpu.mem, w.sc).get('sc_shutdown_tries') >= 1, 'at least one retry');
  t.regex(w.console(), /xenbus: poweroff requested/);
  t.false(w.console().includes('reboot requested'));
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/control/shutdown`), '');
});

test('control/shutdown = suspend runs the suspend hook on the xenbus thread, where it may sleep', async (t) => {
  const w = await booted();
  t.is(xenbus_set_suspend_hook(w.h.cpu, 's_hook'), 0);
  await w.dom0.write(`${DOMPATH}/control/shutdown`, 'suspend');
  t.true(w.run(30000, () => w.console().includes('hook: resumed')));
  t.regex(w.console(), /xenbus: suspend requested\nhook: start \(sc ok\)\nhook: resumed on xenwatch\n/);
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/control/shutdown`), '', 'acked before the hook ran');
  t.is(w.fake.shutdownReason, undefined);
});

test('xenbus lives in guest memory: a copy of memory and registers carries on in a freshly linked kernel', async (t) => {
  const a = await booted();
  lwp_create(a.h.cpu, 's_watch', 's_watch', 0);
  t.true(a.run(30000, () => a.console().includes('fired data/w=one')));
  a.run(2000, () => bootDone(a));
  const snap = a.h.snapshot();
  // A new kernel text (same build), new CPU, the same bytes.
  const image = xenbusTestImage([syms]);
  const fake = new StoreCpu(new FlatMem(KERNBASE, snap.bytes.slice()));
  for (const [r, v] of snap.regs) fake.regs.set(r, v);
  fake.blocked = snap.blocked;
  const b = new XbWorld(new Harness(image, fake), fake, a.xs, a.dom0, a.intf);
  b.sc = a.sc;
  b.attach(a.xs, a.dom0, a.intf);
  t.truthy(a.xs.ringOf(toDomId(DOMID)));
  await b.dom0.write(`${DOMPATH}/data/w`, 'after the copy');
  t.true(b.run(30000, () => b.console().includes('fired data/w=after the copy')));
  lwp_create(b.h.cpu, 's_read', 's_read', 0);
  t.true(b.run(30000, () => b.console().includes('read 0 here')));
});
