/*
 * hypervisor0: the bus every Xen device hangs off (NetBSD's
 * arch/xen/xen/hypervisor.c). Attaching it says which Xen we run on, sets
 * up what all the Xen drivers share (the debug VIRQ, the grant table) and
 * then looks for its children: the console now; xenbus and, through it,
 * the block and network frontends when they exist.
 *
 * Children are offered a `struct xen_attach_args` naming the device
 * ("xencons", ...); each driver's match compares the name. Which children
 * exist is the kernel configuration's business: every driver the device
 * table (arch/xen/conf/ioconf.ts) attaches at hypervisor is offered, in
 * table order, so a new Xen driver needs a table line and nothing here.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { XENVER_version, XENVER_extraversion, XEN_EXTRAVERSION_LEN } from '../../../hypervisor/public/xen.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal } from '../../../sys/kern/subr_prf.js';
import { config_found } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { kmem_zalloc, kmem_free } from '../../../sys/kern/subr_kmem.js';
import { kstr_get, strlcpy } from '../../../sys/lib/libkern/libkern.js';
import { cfdata } from '../../../sys/sys/device.js';
import { kg_addr } from '../../../sys/sys/kernel.js';
import { TAILQ_FIRST, TAILQ_NEXT } from '../../../sys/sys/queue.js';
import { xen_attach_args, XEN_DEVNAMELEN, xmd_addr } from '../include/xen.js';
import { HYPERVISOR_xen_version } from '../include/hypercalls.js';
import { events_init } from './evtchn.js';
import { xengnt_init } from './xengnt.js';

const CF_LIST = cfdata.offsetOf('cf_list');

/** Matches the attach args mainbus0 offers for "hypervisor". */
export function hypervisor_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  return kstr_get(cpu.mem, aux + xen_attach_args.offsetOf('xa_device'), XEN_DEVNAMELEN) === 'hypervisor' ? 1 : 0;
}

/** "Xen version 4.17.0-xenport", from xen_version. */
export function hypervisor_version_string(cpu: GuestCpu): string {
  const v = HYPERVISOR_xen_version(cpu, XENVER_version);
  const buf = xmd_addr('xm_scratch');
  cpu.mem.fill(buf, XEN_EXTRAVERSION_LEN, 0);
  const extra = HYPERVISOR_xen_version(cpu, XENVER_extraversion, buf) === 0 ? kstr_get(cpu.mem, buf, XEN_EXTRAVERSION_LEN) : '';
  return `${v >>> 16}.${v & 0xffff}${extra}`;
}

export function hypervisor_attach(cpu: GuestCpu, _parent: number, self: number, _aux: number): void {
  aprint_normal(cpu, ': Xen version %s\n', hypervisor_version_string(cpu));
  // Events and grants are suspended and resumed by the save/restore path
  // (xen_suspend.ts) around the devices, not by hypervisor0's pmf handlers.
  pmf_device_register(cpu, self);
  events_init(cpu);
  xengnt_init(cpu);
  for (const name of hypervisor_children(cpu)) hypervisor_attach_child(cpu, self, name);
}

/** Drivers of the device table that attach at hypervisor, once each, in table order. */
export function hypervisor_children(cpu: GuestCpu): string[] {
  const names: string[] = [];
  const head = kg_addr('kg_cfdata');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const v = cfdata.view(cpu.mem, link - CF_LIST);
    const name = v.getString('cf_name');
    if (v.getString('cf_atname') === 'hypervisor' && !names.includes(name)) names.push(name);
  }
  return names;
}

/** Offer child `name` to the drivers that attach at hypervisor0. */
export function hypervisor_attach_child(cpu: GuestCpu, self: number, name: string): number {
  const xa = kmem_zalloc(cpu, xen_attach_args.size);
  if (xa === 0) return 0;
  strlcpy(cpu.mem, xa + xen_attach_args.offsetOf('xa_device'), name, XEN_DEVNAMELEN);
  const dev = config_found(cpu, self, xa);
  kmem_free(cpu, xa, xen_attach_args.size);
  return dev;
}

export const hypervisor_ksyms = ksymtab({
  hypervisor_match, hypervisor_children, hypervisor_version_string, hypervisor_attach, hypervisor_attach_child,
});
