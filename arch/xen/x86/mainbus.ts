/*
 * mainbus0: the root of the device tree (NetBSD's arch/xen/x86/mainbus.c).
 * A PV domain has no firmware tables and no buses of its own: everything
 * it can talk to is behind the hypervisor, so mainbus has one child.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal } from '../../../sys/kern/subr_prf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { hypervisor_attach_child } from '../xen/hypervisor.js';

export function mainbus_match(_cpu: GuestCpu, _parent: number, _cf: number, _aux: number): number {
  return 1;
}

export function mainbus_attach(cpu: GuestCpu, _parent: number, self: number, _aux: number): void {
  aprint_normal(cpu, '\n');
  // No state of its own to save: it takes part in suspend with no handlers.
  pmf_device_register(cpu, self);
  hypervisor_attach_child(cpu, self, 'hypervisor');
}

export const mainbus_ksyms = ksymtab({ mainbus_match, mainbus_attach });
