/*
 * xenbus_probe on the harness: devices under device/ offered to drivers
 * through autoconf, "not configured" lines for types without a driver
 * (once), hotplug through the device/ watch, and a driver's use of the
 * xenbus_client calls (state switching, the backend's state watch, error
 * reporting).
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { XenbusStateConnected, XenbusStateInitialised } from '../../hypervisor/public/io/xenbus.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { aprint_normal, printf } from '../../sys/kern/subr_prf.js';
import { device_private } from '../../sys/kern/subr_autoconf.js';
import { ptr_get, ptr_set, vptr } from '../../sys/lib/libkern/libkern.js';
import { xenbusdev_attach_args } from '../../arch/xen/xenbus/xenbus_var.js';
import { xs_result } from '../../arch/xen/xenbus/xenbus_xs.js';
import {
  xenbus_watch_otherend, xenbus_switch_state, xenbus_switch_state_async, xenbus_dev_fatal, xenbus_device_path,
  xenbus_otherend_id, xenbus_otherend_path,
} from '../../arch/xen/xenbus/xenbus_client.js';
import { xenbus_device_list } from '../../arch/xen/xenbus/xenbus_probe.js';
import { world, addDevice, bootDone, DOMPATH, DOMID, settle, type XbWorld } from './fixture.js';

/* A test driver for type "tbx": its softc holds the xenbus_device. */
const tbdrv = ksymtab({
  tbdrv_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
    return xenbusdev_attach_args.view(cpu.mem, aux).getString('xa_type') === 'tbx' ? 1 : 0;
  },
  tbdrv_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
    const xbusd = vptr(xenbusdev_attach_args.view(cpu.mem, aux), 'xa_xbusd');
    aprint_normal(cpu, ': test frontend, backend %s in domain %d\n', xenbus_otherend_path(cpu, xbusd), xenbus_otherend_id(cpu, xbusd));
    ptr_set(cpu.mem, device_private(cpu, self), xbusd);
    xenbus_watch_otherend(cpu, xbusd, 'tbdrv_backend_changed');
    xenbus_switch_state_async(cpu, xbusd, XenbusStateInitialised);
  },
  /* On the xenbus thread: state is the backend's; the chain's arg is the xenbus_device. */
  tbdrv_backend_changed(cpu: GuestCpu, dev: number, state: number): void {
    const xbusd = ptr_get(cpu.mem, device_private(cpu, dev));
    printf(cpu, 'tbdrv: %s backend state %d\n', xenbus_device_path(cpu, xbusd), state);
    if (state === XenbusStateConnected) xenbus_switch_state(cpu, xbusd, XenbusStateConnected, 'tbdrv_connected');
    else if (state === 5) xenbus_dev_fatal(cpu, xbusd, 5, 'backend went %s', 'away');
  },
  tbdrv_connected(cpu: GuestCpu, xbusd: number): void {
    printf(cpu, 'tbdrv: %s connected (%d)\n', xenbus_device_path(cpu, xbusd), xs_result(cpu).error);
  },
});

const TBDRV = Object.freeze([{ name: 'tbdrv', atname: 'xenbus', match: 'tbdrv_match', attach: 'tbdrv_attach', devsize: 16 }]);

async function bootWith(before: (dom0: XbWorld['dom0']) => Promise<void>): Promise<XbWorld> {
  const w = await world({ extra: [tbdrv], cfdata: TBDRV, before });
  if (!w.run(30000, () => bootDone(w))) throw new Error(`boot did not finish:\n${w.console()}`);
  return w;
}

test('devices without a driver are announced once, as NetBSD does; console and suspend are not devices', async (t) => {
  const w = await bootWith(async (dom0) => {
    await addDevice(dom0, 'vbd', 768);
    await addDevice(dom0, 'vif', 0);
    await addDevice(dom0, 'frob', 2);
    await dom0.write(`${DOMPATH}/device/console/0/state`, '1');
    await dom0.write(`${DOMPATH}/device/vif/junk/state`, '1');
  });
  const c = w.console();
  t.regex(c, /^xbd at xenbus0 id 768 not configured$/m);
  t.regex(c, /^xennet at xenbus0 id 0 not configured$/m);
  t.regex(c, /^unknown type frob at xenbus0 id 2 not configured$/m);
  t.regex(c, /xenbus device type vif: id junk is not a number/);
  t.false(/console|suspend/.test(c.replace(/device type/g, '')), `nothing about console or suspend:\n${c}`);
  t.deepEqual(xenbus_device_list(w.h.cpu, w.sc).map((d) => d.path).sort(), ['device/frob/2', 'device/vbd/768', 'device/vif/0']);
  // More writes under known devices do not announce them again.
  await w.dom0.write(`${DOMPATH}/device/vbd/768/foo`, 'bar');
  w.run(3000);
  t.is(w.console().match(/xbd at xenbus0 id 768/g)?.length, 1);
});

test('hotplug: a device added later is found through the device/ watch', async (t) => {
  const w = await bootWith(async () => undefined);
  t.false(w.console().includes('not configured'));
  await addDevice(w.dom0, 'vif', 3);
  t.true(w.run(30000, () => w.console().includes('xennet at xenbus0 id 3 not configured')));
  await addDevice(w.dom0, 'vif', 4);
  t.true(w.run(30000, () => w.console().includes('xennet at xenbus0 id 4 not configured')));
  t.is(w.console().match(/id 3 not configured/g)?.length, 1);
});

test('a device whose state is not Initialising is left alone (not new)', async (t) => {
  const w = await bootWith(async (dom0) => {
    await addDevice(dom0, 'vbd', 51712);
    await dom0.write(`${DOMPATH}/device/vbd/51712/state`, '4');
  });
  t.false(w.console().includes('51712'));
  t.deepEqual(xenbus_device_list(w.h.cpu, w.sc), []);
});

test('a driver attaches through autoconf and drives the handshake with xenbus_client', async (t) => {
  const w = await bootWith(async (dom0) => {
    await addDevice(dom0, 'tbx', 0);
  });
  const be = `/local/domain/0/backend/tbx/${DOMID}/0`;
  t.regex(w.console(), new RegExp(`^tbdrv0 at xenbus0 id 0: test frontend, backend ${be} in domain 0$`, 'm'));
  t.true(w.run(30000, () => w.console().includes('backend state 1')), 'the otherend watch fired at once');
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/device/tbx/0/state`), String(XenbusStateInitialised));
  await w.dom0.write(`${be}/state`, String(XenbusStateConnected));
  t.true(w.run(30000, () => w.console().includes('tbdrv: device/tbx/0 connected (0)')));
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/device/tbx/0/state`), String(XenbusStateConnected));
  await w.dom0.write(`${be}/state`, '5');
  t.true(w.run(30000, () => w.console().includes('backend state 5')));
  w.run(2000);
  await settle();
  t.is(await w.dom0.read(`${DOMPATH}/error/device/tbx/0/error`), '5 backend went away');
  t.is(await w.dom0.read(`${DOMPATH}/device/tbx/0/state`), '5', 'fatal: Closing');
  t.regex(w.console(), /xenbus: device\/tbx\/0: 5 backend went away/);
});
