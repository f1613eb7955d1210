/*
 * What xenbus needs from the rest of arch/xen, in one place: where the
 * store page and port are (start_info), and the store port's handler.
 *
 * The store page is the machine frame start_info.store_mfn; the M2P
 * (checked against our P2M) turns it into our PFN, and the direct map
 * gives its address. The port was made by the builder (interdomain to
 * xenstored's dom0 end); the guest only installs its handler and unmasks.
 * After a restore the toolstack rewrites start_info in place with the new
 * frame and port, so resume reads the live page, not the boot-time copy.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { start_info } from '../../../hypervisor/public/xen.js';
import { u64ToSafeNumber } from '../../../hypervisor/public/layout.js';
import { ksymtab, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { vptr } from '../../../sys/lib/libkern/libkern.js';
import { xmd } from '../include/xen.js';
import { xpmap_mfn_to_kva } from '../x86/x86_xpmap.js';
import {
  event_set_handler, event_remove_handler, hypervisor_unmask_event, hypervisor_notify_via_evtchn,
} from '../xen/evtchn.js';

/* NetBSD errno values used here (sys/sys/errno.ts has the common ones). */
const ENXIO = 6;
const EINVAL = 22;

export interface StoreParams {
  /** Direct-map address of the store page, 0 when the frame is not ours. */
  readonly intf: number;
  readonly mfn: number;
  readonly port: number;
}

/** start_info's view of the store: the live page if known, else the boot copy. */
export function xb_store_params(cpu: GuestCpu): StoreParams {
  const x = xmd(cpu);
  const live = vptr(x, 'xm_start_info_va');
  const si = live !== 0 ? start_info.view(cpu.mem, live) : x.sub('xm_start_info');
  const mfn = u64ToSafeNumber(si.get('store_mfn')) ?? -1;
  const port = si.get('store_evtchn');
  const intf = mfn < 0 ? 0 : xpmap_mfn_to_kva(cpu, mfn);
  return { intf, mfn, port };
}

/** Take `port`'s events with `fn(cpu, arg, port)`, and unmask it. 0 or a NetBSD errno. */
export function xb_evtchn_bind(cpu: GuestCpu, port: number, fn: KSym, arg: number): number {
  if (!(Number.isInteger(port) && port > 0)) return EINVAL;
  if (event_set_handler(cpu, port, fn, arg, 'xenbus') < 0) return ENXIO;
  if (hypervisor_unmask_event(cpu, port) < 0) {
    event_remove_handler(cpu, port);
    return ENXIO;
  }
  return 0;
}

/** Stop taking `port`'s events (masked; the port stays open). */
export function xb_evtchn_unbind(cpu: GuestCpu, port: number): void {
  event_remove_handler(cpu, port);
}

/** Signal xenstored. */
export function xb_evtchn_notify(cpu: GuestCpu, port: number): void {
  hypervisor_notify_via_evtchn(cpu, port);
}

export const xenbus_machdep_ksyms = ksymtab({ xb_store_params, xb_evtchn_bind, xb_evtchn_unbind, xb_evtchn_notify });
