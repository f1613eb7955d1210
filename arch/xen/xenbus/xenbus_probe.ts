/*
 * xenbus_probe: xenbus0 itself, and the devices it finds under device/.
 *
 * `xenbus0 at hypervisor0` connects to the store ring, starts the xenbus
 * thread, and queues the boot sequence there, each step a job run to its
 * end before the next:
 *
 *   1. probe: for each device/<type>/<id> whose frontend state is
 *      Initialising, read backend-id and backend and offer it to the
 *      drivers that attach at xenbus (matched by xa_type: vbd, vif, ...);
 *      with no driver, say "xbd at xenbus0 id 768 not configured" once,
 *      as NetBSD does. console (attached by hypervisor0) and suspend (the
 *      suspend event channel node, not a device) are skipped;
 *   2. watch device/ for hotplug (a change under a device not seen yet
 *      probes again);
 *   3. the shutdown watcher (xenbus_shutdown.ts);
 *   4. publish data/ for the host (xenbus_dev.ts): data/boot = complete.
 *
 * Every device found is remembered (struct xenbus_device on sc_devices),
 * attached or not, so it is announced once. A driver's attach gets a
 * `struct xenbusdev_attach_args` whose xa_xbusd stays valid while the
 * device exists; see xenbus_client.ts for what a driver does with it.
 *
 * pmf: xenbus0 suspends after its children (leaves first) and resumes
 * before them, so drivers find xenstore working on both sides.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { XenbusStateInitialising } from '../../../hypervisor/public/io/xenbus.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { kmem_zalloc, kmem_free, kmem_strdupsize } from '../../../sys/kern/subr_kmem.js';
import { aprint_normal, aprint_error, aprint_error_dev, printf } from '../../../sys/kern/subr_prf.js';
import { config_found, device_private } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { TAILQ_INIT, TAILQ_FIRST, TAILQ_NEXT, TAILQ_INSERT_TAIL } from '../../../sys/sys/queue.js';
import { UNCONF } from '../../../sys/sys/device.js';
import { kstr_get, vptr, vptr_set } from '../../../sys/lib/libkern/libkern.js';
import { xen_attach_args, XEN_DEVNAMELEN } from '../include/xen.js';
import {
  xenbus_softc, xenbus_device, xenbusdev_attach_args, xb_addr, XBF_DEAD, XBF_CONNECTED, XBF_SUSPENDED,
  XBUSD_TYPELEN, XBUSD_PATHLEN, XBUSD_OTHERENDLEN,
} from './xenbus_var.js';
import { xb_init_comms, xb_suspend_comms } from './xenbus_comms.js';
import { xb_store_params } from './xenbus_machdep.js';
import { xs_read, xs_directory, xs_result, xs_strings, xs_outstanding, xs_unsuspend, XS_ENOENT } from './xenbus_xs.js';
import { xenbus_watch_path, xenbus_defer, xenwatch_create, xenwatch_path, xs_rewatch_all } from './xenbus_watch.js';

const dbg = createDebug('guest:xenbus');

const XBUSD_LIST = xenbus_device.offsetOf('xbusd_list');

/** Device types under device/ that are not xenbus devices. */
const PROBE_SKIP = Object.freeze(['console', 'suspend']);
/** What a type's driver is called, for the "not configured" line. */
const PROBE_DRIVER_NAMES: Readonly<Record<string, string>> = Object.freeze({ vbd: 'xbd', vif: 'xennet', balloon: 'balloon' });

/* xbusd_flags */
/** No driver took it: announced once, left alone. */
export const XBUSDF_UNCONF = 0x1;

// ---------------------------------------------------------------------------
// autoconf

/** Matches the attach args hypervisor0 offers for "xenbus". */
export function xenbus_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  return kstr_get(cpu.mem, aux + xen_attach_args.offsetOf('xa_device'), XEN_DEVNAMELEN) === 'xenbus' ? 1 : 0;
}

export function xenbus_attach(cpu: GuestCpu, _parent: number, self: number, _aux: number): void {
  aprint_normal(cpu, ': Xen Virtual Bus Interface\n');
  const sc = devpriv(cpu, self);
  xenbus_softc_init(cpu, sc, self);
  pmf_device_register(cpu, self, 'xenbus_suspend', 'xenbus_resume');
  if (!xenwatch_create(cpu, sc)) {
    aprint_error_dev(cpu, self, 'cannot create the xenbus thread\n');
    return;
  }
  const store = xb_store_params(cpu);
  if (store.intf === 0) {
    aprint_error_dev(cpu, self, 'store page (mfn %d) is not ours; no xenstore\n', store.mfn);
    return;
  }
  const error = xb_init_comms(cpu, sc, store.intf, store.port, true);
  if (error !== 0) {
    aprint_error_dev(cpu, self, 'cannot listen on the store port %d (error %d)\n', store.port, error);
    return;
  }
  xenbus_boot_queue(cpu, sc);
}

function devpriv(cpu: GuestCpu, dev: number): number {
  return device_private(cpu, dev);
}

/** Empty queues and lists of a fresh softc. */
export function xenbus_softc_init(cpu: GuestCpu, sc: number, dev: number): void {
  vptr_set(xenbus_softc.view(cpu.mem, sc), 'sc_dev', dev);
  for (const q of ['sc_sendq', 'sc_owned', 'sc_watches', 'sc_jobs', 'sc_devices'] as const) TAILQ_INIT(cpu.mem, xb_addr(sc, q));
}

/**
 * Connect a softc to a store page by hand and start the thread (tests,
 * and attach's second half). 0 or an errno.
 */
export function xenbus_start(cpu: GuestCpu, sc: number, intf: number, port: number): number {
  if (!xenwatch_create(cpu, sc)) return 12; /* ENOMEM */
  return xb_init_comms(cpu, sc, intf, port, true);
}

/** Queue the boot sequence on the xenbus thread. */
export function xenbus_boot_queue(cpu: GuestCpu, sc: number): void {
  xenbus_defer(cpu, 'xenbus_probe_frontends', sc);
  xenbus_defer(cpu, 'xenbus_boot_watch', sc);
  xenbus_defer(cpu, 'xenbus_shutdown_setup', sc);
  xenbus_defer(cpu, 'xenbus_boot_publish', sc);
}

/** Boot step 2: watch device/ for hotplug. */
export function xenbus_boot_watch(cpu: GuestCpu, sc: number): void {
  xenbus_watch_path(cpu, 'device', 'xenbus_device_changed', sc, xb_addr(sc, 'sc_device_watch'), 'xenbus_boot_watched');
}

export function xenbus_boot_watched(cpu: GuestCpu, _sc: number): void {
  const r = xs_result(cpu);
  if (r.error !== 0) printf(cpu, 'xenbus: cannot watch device/ (error %d): no hotplug\n', r.error);
}

/** pmf suspend: xs_suspend must have drained the requests; the port goes quiet. */
export function xenbus_suspend(cpu: GuestCpu, dev: number): boolean {
  const sc = devpriv(cpu, dev);
  if (xenbus_softc.view(cpu.mem, sc).get('sc_flags') & XBF_DEAD) return true;
  if (xs_outstanding(cpu, sc) !== 0) {
    aprint_error_dev(cpu, dev, '%d xenstore requests outstanding; cannot suspend\n', xs_outstanding(cpu, sc));
    return false;
  }
  xb_suspend_comms(cpu, sc);
  return true;
}

/**
 * pmf resume: connect to the store page and port start_info names now (a
 * restore brings new ones), send every watch again, let queued requests
 * go. A cancelled suspend (same domain, same ring) calls xs_resume with
 * cancelled = true instead, keeping a half-read message.
 */
export function xenbus_resume(cpu: GuestCpu, dev: number): boolean {
  const sc = devpriv(cpu, dev);
  const f = xenbus_softc.view(cpu.mem, sc).get('sc_flags');
  // Already resumed (the suspend-cancel path called xs_resume itself).
  if ((f & XBF_CONNECTED) !== 0 && (f & XBF_SUSPENDED) === 0) return true;
  return xs_resume(cpu, sc, false) === 0;
}

/** Reconnect after suspend, to the store start_info names now. 0 or an errno. */
export function xs_resume(cpu: GuestCpu, sc: number, cancelled: boolean): number {
  const store = xb_store_params(cpu);
  if (store.intf === 0) {
    printf(cpu, 'xenbus: resume: store page (mfn %d) is not ours\n', store.mfn);
    return 6; /* ENXIO */
  }
  return xs_resume_at(cpu, sc, store.intf, store.port, cancelled);
}

/**
 * Reconnect after suspend to the store page at `intf` and `port`. After a
 * restore (not `cancelled`) the ring is new and starts on a message
 * boundary, and xenstored knows none of our watches: every one is sent
 * again. A cancelled suspend keeps both. Then the requests queued while
 * suspended go out. 0 or an errno.
 */
export function xs_resume_at(cpu: GuestCpu, sc: number, intf: number, port: number, cancelled: boolean): number {
  const v = xenbus_softc.view(cpu.mem, sc);
  if (v.get('sc_flags') & XBF_DEAD) return 0;
  if ((v.get('sc_flags') & XBF_CONNECTED) === 0) {
    const error = xb_init_comms(cpu, sc, intf, port, !cancelled);
    if (error !== 0) return error;
  }
  if (!cancelled) xs_rewatch_all(cpu, sc);
  xs_unsuspend(cpu, sc);
  return 0;
}

// ---------------------------------------------------------------------------
// The probe chain (runs on the xenbus thread; state in the softc)

/** Print function for config_found: what the device is, and whether it stayed unconfigured. */
export function xenbus_print(cpu: GuestCpu, aux: number, pnp: number): number {
  const a = xenbusdev_attach_args.view(cpu.mem, aux);
  const type = a.getString('xa_type');
  if (pnp !== 0) {
    const drv = PROBE_DRIVER_NAMES[type];
    if (drv !== undefined) aprint_normal(cpu, '%s', drv);
    else aprint_normal(cpu, 'unknown type %s', type);
    aprint_normal(cpu, ' at %s', pnp);
  }
  aprint_normal(cpu, ' id %d', a.get('xa_id'));
  return UNCONF;
}

/** The device at `path`, or 0. */
export function xenbus_device_find(cpu: GuestCpu, sc: number, path: string): number {
  const head = xb_addr(sc, 'sc_devices');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    if (xenbus_device.view(cpu.mem, link - XBUSD_LIST).getString('xbusd_path') === path) return link - XBUSD_LIST;
  }
  return 0;
}

/** Every device found: address, path, attached device (diagnostics, tests). */
export function xenbus_device_list(cpu: GuestCpu, sc: number): { xbusd: number; path: string; dev: number }[] {
  const out: { xbusd: number; path: string; dev: number }[] = [];
  const head = xb_addr(sc, 'sc_devices');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const v = xenbus_device.view(cpu.mem, link - XBUSD_LIST);
    out.push({ xbusd: link - XBUSD_LIST, path: v.getString('xbusd_path'), dev: vptr(v, 'xbusd_dev') });
  }
  return out;
}

/** Watch callback on device/: probe again unless the change is inside a known device. */
export function xenbus_device_changed(cpu: GuestCpu, sc: number): void {
  const parts = xenwatch_path(cpu).split('/');
  if (parts.length >= 3 && xenbus_device_find(cpu, sc, parts.slice(0, 3).join('/')) !== 0) return;
  xenbus_probe_frontends(cpu, sc);
}

/** Probe step 1: list the types under device/. */
export function xenbus_probe_frontends(cpu: GuestCpu, sc: number): void {
  xs_directory(cpu, 0, 'device', 'xenbus_probe_types');
}

/** Keep a directory listing in kmem: [address, size, count]. */
function probe_keep(cpu: GuestCpu, value: string): { va: number; size: number; n: number } {
  const names = xs_strings(value);
  const { va, size } = kmem_strdupsize(cpu, names.join('\0'));
  return { va, size, n: va === 0 ? 0 : names.length };
}

/** Name `i` of a kept listing (names separated by NUL, `size` bytes with the terminator). */
function probe_name(cpu: GuestCpu, va: number, size: number, i: number): string {
  if (va === 0) return '';
  let s = '';
  for (let k = 0; k < size - 1; k++) s += String.fromCharCode(cpu.mem.getUint8(va + k));
  return s.split('\0')[i] ?? '';
}

export function xenbus_probe_types(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const v = xenbus_softc.view(cpu.mem, sc);
  if (r.error !== 0) {
    if (r.error !== XS_ENOENT) printf(cpu, 'xenbus: cannot list device/ (error %d)\n', r.error);
    return;
  }
  const kept = probe_keep(cpu, r.value);
  vptr_set(v, 'sc_probe_types', kept.va);
  v.set('sc_probe_typessize', kept.size);
  v.set('sc_probe_ntypes', kept.n);
  v.set('sc_probe_ti', 0);
  xenbus_probe_next_type(cpu, sc);
}

/** Probe step 2: list the ids of the next type, or finish. */
function xenbus_probe_next_type(cpu: GuestCpu, sc: number): void {
  const v = xenbus_softc.view(cpu.mem, sc);
  const types = vptr(v, 'sc_probe_types');
  for (let ti = v.get('sc_probe_ti'); ti < v.get('sc_probe_ntypes'); ti++) {
    const type = probe_name(cpu, types, v.get('sc_probe_typessize'), ti);
    if (PROBE_SKIP.includes(type) || type === '' || type.length >= XBUSD_TYPELEN) continue;
    v.set('sc_probe_ti', ti);
    xs_directory(cpu, 0, `device/${type}`, 'xenbus_probe_ids');
    return;
  }
  if (types !== 0) kmem_free(cpu, types, v.get('sc_probe_typessize'));
  vptr_set(v, 'sc_probe_types', 0);
  v.set('sc_probe_ntypes', 0);
  if (dbg.enabled) dbg('probe done');
}

function probe_type(cpu: GuestCpu, sc: number): string {
  const v = xenbus_softc.view(cpu.mem, sc);
  return probe_name(cpu, vptr(v, 'sc_probe_types'), v.get('sc_probe_typessize'), v.get('sc_probe_ti'));
}

export function xenbus_probe_ids(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const v = xenbus_softc.view(cpu.mem, sc);
  if (r.error !== 0) {
    v.set('sc_probe_ti', v.get('sc_probe_ti') + 1);
    xenbus_probe_next_type(cpu, sc);
    return;
  }
  const kept = probe_keep(cpu, r.value);
  vptr_set(v, 'sc_probe_ids', kept.va);
  v.set('sc_probe_idssize', kept.size);
  v.set('sc_probe_nids', kept.n);
  v.set('sc_probe_ni', 0);
  xenbus_probe_next_id(cpu, sc);
}

/** Probe step 3: start on the next new id of this type, or go to the next type. */
function xenbus_probe_next_id(cpu: GuestCpu, sc: number): void {
  const v = xenbus_softc.view(cpu.mem, sc);
  const ids = vptr(v, 'sc_probe_ids');
  const type = probe_type(cpu, sc);
  for (let ni = v.get('sc_probe_ni'); ni < v.get('sc_probe_nids'); ni++) {
    const id = probe_name(cpu, ids, v.get('sc_probe_idssize'), ni);
    const path = `device/${type}/${id}`;
    if (!/^[0-9]{1,9}$/.test(id)) {
      printf(cpu, 'xenbus device type %s: id %s is not a number\n', type, id);
      continue;
    }
    if (path.length >= XBUSD_PATHLEN || xenbus_device_find(cpu, sc, path) !== 0) continue;
    const xbusd = kmem_zalloc(cpu, xenbus_device.size);
    if (xbusd === 0) {
      aprint_error(cpu, 'xenbus: no memory for %s\n', path);
      continue;
    }
    const d = xenbus_device.view(cpu.mem, xbusd);
    d.setString('xbusd_type', type);
    d.setString('xbusd_path', path);
    d.set('xbusd_id', Number(id));
    v.set('sc_probe_ni', ni);
    vptr_set(v, 'sc_probe_xbusd', xbusd);
    xs_read(cpu, 0, `${path}/state`, 'xenbus_probe_state');
    return;
  }
  if (ids !== 0) kmem_free(cpu, ids, v.get('sc_probe_idssize'));
  vptr_set(v, 'sc_probe_ids', 0);
  v.set('sc_probe_nids', 0);
  v.set('sc_probe_ti', v.get('sc_probe_ti') + 1);
  xenbus_probe_next_type(cpu, sc);
}

/** Give up on the device being probed and go on with the next id. */
function probe_skip(cpu: GuestCpu, sc: number): void {
  const v = xenbus_softc.view(cpu.mem, sc);
  const xbusd = vptr(v, 'sc_probe_xbusd');
  if (xbusd !== 0) kmem_free(cpu, xbusd, xenbus_device.size);
  vptr_set(v, 'sc_probe_xbusd', 0);
  v.set('sc_probe_ni', v.get('sc_probe_ni') + 1);
  xenbus_probe_next_id(cpu, sc);
}

function probe_path(cpu: GuestCpu, sc: number): string {
  return xenbus_device.view(cpu.mem, vptr(xenbus_softc.view(cpu.mem, sc), 'sc_probe_xbusd')).getString('xbusd_path');
}

export function xenbus_probe_state(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const path = probe_path(cpu, sc);
  if (r.error !== 0) {
    printf(cpu, "xenbus: can't get state for %s (%d)\n", path, r.error);
    probe_skip(cpu, sc);
    return;
  }
  if (r.value !== String(XenbusStateInitialising)) {
    // Not new: a device some earlier kernel (before a reboot or kexec) left behind.
    if (dbg.enabled) dbg('%s: state %s, not new', path, r.value);
    probe_skip(cpu, sc);
    return;
  }
  xs_read(cpu, 0, `${path}/backend-id`, 'xenbus_probe_backend_id');
}

export function xenbus_probe_backend_id(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const path = probe_path(cpu, sc);
  if (r.error !== 0 || !/^[0-9]{1,5}$/.test(r.value) || Number(r.value) >= 0x7ff0) {
    printf(cpu, "xenbus: can't get backend details for %s (%d)\n", path, r.error !== 0 ? r.error : 22);
    probe_skip(cpu, sc);
    return;
  }
  const xbusd = vptr(xenbus_softc.view(cpu.mem, sc), 'sc_probe_xbusd');
  xenbus_device.view(cpu.mem, xbusd).set('xbusd_otherend_id', Number(r.value));
  xs_read(cpu, 0, `${path}/backend`, 'xenbus_probe_backend');
}

export function xenbus_probe_backend(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  const v = xenbus_softc.view(cpu.mem, sc);
  const xbusd = vptr(v, 'sc_probe_xbusd');
  const d = xenbus_device.view(cpu.mem, xbusd);
  const path = d.getString('xbusd_path');
  if (r.error !== 0 || r.value === '' || r.value.length >= XBUSD_OTHERENDLEN || r.value.includes('\0')) {
    printf(cpu, "xenbus: can't get backend details for %s (%d)\n", path, r.error !== 0 ? r.error : 2);
    probe_skip(cpu, sc);
    return;
  }
  d.setString('xbusd_otherend', r.value);
  TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_devices'), xbusd + XBUSD_LIST);
  vptr_set(v, 'sc_probe_xbusd', 0);
  xenbus_probe_attach(cpu, sc, xbusd);
  v.set('sc_probe_ni', v.get('sc_probe_ni') + 1);
  xenbus_probe_next_id(cpu, sc);
}

/** Offer a new device to the drivers that attach at xenbus0. */
function xenbus_probe_attach(cpu: GuestCpu, sc: number, xbusd: number): void {
  const d = xenbus_device.view(cpu.mem, xbusd);
  const aa = kmem_zalloc(cpu, xenbusdev_attach_args.size);
  if (aa === 0) {
    aprint_error(cpu, 'xenbus: no memory to attach %s\n', d.getString('xbusd_path'));
    return;
  }
  const a = xenbusdev_attach_args.view(cpu.mem, aa);
  a.setString('xa_type', d.getString('xbusd_type'));
  a.set('xa_id', d.get('xbusd_id'));
  a.set('xa_otherend_id', d.get('xbusd_otherend_id'));
  vptr_set(a, 'xa_xbusd', xbusd);
  const dev = config_found(cpu, vptr(xenbus_softc.view(cpu.mem, sc), 'sc_dev'), aa, 'xenbus_print');
  kmem_free(cpu, aa, xenbusdev_attach_args.size);
  vptr_set(d, 'xbusd_dev', dev);
  if (dev === 0) d.set('xbusd_flags', d.get('xbusd_flags') | XBUSDF_UNCONF);
}

export const xenbus_probe_ksyms = ksymtab({
  xenbus_match, xenbus_attach, devpriv, xenbus_softc_init, xenbus_start, xenbus_boot_queue, xenbus_boot_watch,
  xenbus_boot_watched, xenbus_suspend, xenbus_resume, xs_resume, xs_resume_at, xenbus_print, xenbus_device_find, xenbus_device_list,
  xenbus_device_changed, xenbus_probe_frontends, probe_keep, probe_name, xenbus_probe_types,
  xenbus_probe_next_type, probe_type, xenbus_probe_ids, xenbus_probe_next_id, probe_skip, probe_path, xenbus_probe_state,
  xenbus_probe_backend_id, xenbus_probe_backend, xenbus_probe_attach,
});
