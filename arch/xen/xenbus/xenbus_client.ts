/*
 * xenbus_client: what a split driver's frontend does with its xenbus
 * device (NetBSD's xenbus_client.c), given the `struct xenbus_device`
 * its attach args carry (xa_xbusd).
 *
 * Nodes, in the frontend's directory <path> = device/<type>/<id>:
 *   state        our XenbusState, in decimal (xenbus_switch_state)
 *   backend      the backend's directory (read by the probe: xbusd_otherend)
 *   backend-id   the backend's domain (xbusd_otherend_id)
 * and error/<path>/error = "<errno> <message>" (xenbus_dev_error), the
 * node Linux and NetBSD frontends report into.
 *
 * Continuation-style calls (an lwp, or a chain on the xenbus thread) take
 * the step to continue at and are collected with xs_result; the `_async`
 * ones and the synchronous helpers may be called from attach or interrupt
 * context.
 *
 *   xenbus_switch_state(cpu, xbusd, state, cont)   write <path>/state
 *   xenbus_switch_state_async(cpu, xbusd, state)   the same, nobody waits
 *   xenbus_read_driver_state(cpu, path, cont)      then xenbus_result_state(cpu)
 *   xenbus_watch_otherend(cpu, xbusd, func)        func(cpu, dev, state) on the
 *                                                   xenbus thread at each change of
 *                                                   <otherend>/state (may sleep)
 *   xenbus_grant_ring(cpu, xbusd, ringVa)          -> grant ref | -errno
 *   xenbus_alloc_evtchn(cpu, xbusd)                -> port | -errno (unbound, for the backend)
 *   xenbus_dev_error / xenbus_dev_fatal(cpu, xbusd, err, fmt, ...args)
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { XenbusStateClosed, XenbusStateClosing, parseXenbusState, type XenbusState } from '../../../hypervisor/public/io/xenbus.js';
import { ksymtab, ksymresolve, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { preempt } from '../../../sys/kern/kern_synch.js';
import { printf, ksprintf, type PrintfArg } from '../../../sys/kern/subr_prf.js';
import { vptr, vptr_set } from '../../../sys/lib/libkern/libkern.js';
import { xpmap_kva_to_mfn } from '../x86/x86_xpmap.js';
import { xengnt_grant_access } from '../xen/xengnt.js';
import { evtchn_alloc_unbound } from '../xen/evtchn.js';
import { xenbus_device } from './xenbus_var.js';
import { xs_read, xs_write, xs_result, xs_write_async, xs_complete_now } from './xenbus_xs.js';
import { xenbus_watch_path_async, xenbus_unwatch, xenwatch_path } from './xenbus_watch.js';

function xbusd_view(cpu: GuestCpu, xbusd: number) {
  return xenbus_device.view(cpu.mem, xbusd);
}

/** The device's directory, "device/<type>/<id>". */
export function xenbus_device_path(cpu: GuestCpu, xbusd: number): string {
  return xbusd_view(cpu, xbusd).getString('xbusd_path');
}

/** The backend's directory. */
export function xenbus_otherend_path(cpu: GuestCpu, xbusd: number): string {
  return xbusd_view(cpu, xbusd).getString('xbusd_otherend');
}

/** The backend's domain. */
export function xenbus_otherend_id(cpu: GuestCpu, xbusd: number): number {
  return xbusd_view(cpu, xbusd).get('xbusd_otherend_id');
}

/** The driver instance attached for this xenbus device (0 before its attach returned). */
export function xenbus_device_dev(cpu: GuestCpu, xbusd: number): number {
  return vptr(xbusd_view(cpu, xbusd), 'xbusd_dev');
}

/**
 * Write our state. Continues at `cont` (xs_result: 0 or errno). Writing
 * the state we last wrote is skipped: every write fires the backend's
 * watch, as NetBSD avoids.
 */
export function xenbus_switch_state(cpu: GuestCpu, xbusd: number, state: XenbusState, cont: KSym): void {
  const v = xbusd_view(cpu, xbusd);
  if (v.get('xbusd_state') === state) {
    xs_complete_now(cpu, 0, cont);
    return;
  }
  v.set('xbusd_state', state);
  xs_write(cpu, 0, `${v.getString('xbusd_path')}/state`, String(state), cont);
}

/** xenbus_switch_state for attach or interrupt context. 0 or an errno. */
export function xenbus_switch_state_async(cpu: GuestCpu, xbusd: number, state: XenbusState): number {
  const v = xbusd_view(cpu, xbusd);
  if (v.get('xbusd_state') === state) return 0;
  v.set('xbusd_state', state);
  return xs_write_async(cpu, `${v.getString('xbusd_path')}/state`, String(state));
}

/** Read `<path>/state`; collect with xenbus_result_state. */
export function xenbus_read_driver_state(cpu: GuestCpu, path: string, cont: KSym): void {
  xs_read(cpu, 0, `${path}/state`, cont);
}

/** The state read by xenbus_read_driver_state: Closed when missing or not a state, as NetBSD. */
export function xenbus_result_state(cpu: GuestCpu): XenbusState {
  const r = xs_result(cpu);
  if (r.error !== 0) return XenbusStateClosed;
  return parseXenbusState(r.value) ?? XenbusStateClosed;
}

/**
 * Watch the backend's state: `func(cpu, dev, state)` runs on the xenbus
 * thread after each change (and once at once), where it may sleep and
 * continue with further steps (arg = the xenbus_device). Replaces an
 * earlier otherend watch. Returns the watch id, or 0.
 */
export function xenbus_watch_otherend(cpu: GuestCpu, xbusd: number, func: KSym): number {
  const v = xbusd_view(cpu, xbusd);
  const old = v.get('xbusd_otherend_watch');
  if (old !== 0) xenbus_unwatch(cpu, old);
  vptr_set(v, 'xbusd_otherend_changed', ksymresolve(cpu, func));
  const id = xenbus_watch_path_async(cpu, `${v.getString('xbusd_otherend')}/state`, 'xenbus_otherend_changed', xbusd);
  v.set('xbusd_otherend_watch', id);
  return id;
}

/** Stop watching the backend's state. */
export function xenbus_unwatch_otherend(cpu: GuestCpu, xbusd: number): void {
  const v = xbusd_view(cpu, xbusd);
  const id = v.get('xbusd_otherend_watch');
  if (id !== 0) xenbus_unwatch(cpu, id);
  v.set('xbusd_otherend_watch', 0);
}

/** The otherend watch fired (xenbus thread): read its state. */
export function xenbus_otherend_changed(cpu: GuestCpu, xbusd: number): void {
  const otherend = xenbus_otherend_path(cpu, xbusd);
  // A watch that fires on old details (the backend moved after a restore) is ignored.
  if (otherend === '' || !xenwatch_path(cpu).startsWith(otherend)) return;
  xenbus_read_driver_state(cpu, otherend, 'xenbus_otherend_state');
}

/** ... and hand it to the driver. */
export function xenbus_otherend_state(cpu: GuestCpu, xbusd: number): void {
  const state = xenbus_result_state(cpu);
  const v = xbusd_view(cpu, xbusd);
  const fn = vptr(v, 'xbusd_otherend_changed');
  const dev = vptr(v, 'xbusd_dev');
  if (fn !== 0 && dev !== 0) kcall(cpu, fn, dev, state);
}

/**
 * Grant the backend access to the ring page at `ringVa` (direct-mapped,
 * page-aligned). The grant ref, or -errno (and the device reports it).
 */
export function xenbus_grant_ring(cpu: GuestCpu, xbusd: number, ringVa: number): number {
  const ref = xengnt_grant_access(cpu, xenbus_otherend_id(cpu, xbusd), xpmap_kva_to_mfn(cpu, ringVa), false);
  if (ref < 0) xenbus_dev_fatal(cpu, xbusd, -ref, 'granting access to ring page');
  return ref;
}

/** An unbound port for the backend to bind. The port, or -errno (reported). */
export function xenbus_alloc_evtchn(cpu: GuestCpu, xbusd: number): number {
  const port = evtchn_alloc_unbound(cpu, xenbus_otherend_id(cpu, xbusd));
  if (port < 0) xenbus_dev_fatal(cpu, xbusd, -port, 'allocating event channel');
  return port;
}

/**
 * Report an error on the device: printed, and written to
 * error/<path>/error as "<err> <message>" for the toolstack.
 */
export function xenbus_dev_error(cpu: GuestCpu, xbusd: number, err: number, fmt: string, ...args: PrintfArg[]): void {
  const v = xbusd_view(cpu, xbusd);
  const path = v.getString('xbusd_path');
  const msg = `${err} ${ksprintf(cpu, fmt, ...args)}`;
  v.set('xbusd_has_error', 1);
  printf(cpu, 'xenbus: %s: %s\n', path, msg);
  if (xs_write_async(cpu, `error/${path}/error`, msg) !== 0) printf(cpu, 'xenbus: failed to write error node for %s (%s)\n', path, msg);
}

/** xenbus_dev_error, then state Closing: the device gives up. */
export function xenbus_dev_fatal(cpu: GuestCpu, xbusd: number, err: number, fmt: string, ...args: PrintfArg[]): void {
  xenbus_dev_error(cpu, xbusd, err, fmt, ...args);
  xenbus_switch_state_async(cpu, xbusd, XenbusStateClosing);
}

/** Continue at `cont` right away (for a driver chain that has nothing to wait for). */
export function xenbus_continue(cpu: GuestCpu, cont: KSym): void {
  preempt(cpu, cont);
}

export const xenbus_client_ksyms = ksymtab({
  xbusd_view, xenbus_device_path, xenbus_otherend_path, xenbus_otherend_id, xenbus_device_dev, xenbus_switch_state,
  xenbus_switch_state_async, xenbus_read_driver_state, xenbus_result_state, xenbus_watch_otherend,
  xenbus_unwatch_otherend, xenbus_otherend_changed, xenbus_otherend_state, xenbus_grant_ring, xenbus_alloc_evtchn,
  xenbus_dev_error, xenbus_dev_fatal, xenbus_continue,
});
