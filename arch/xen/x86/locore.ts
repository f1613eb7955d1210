/*
 * The kernel's entry point (NetBSD's amd64 locore.S, Xen flavour).
 *
 * Xen starts vCPU 0 at `start` with rsi = the virtual address of
 * start_info, rsp = the top of a boot stack, CR3 = the builder's L4, and
 * events masked. Before anything trusts start_info it must look like one:
 * a page-aligned address in the direct map whose magic is
 * "xen-3.0-x86_64". If it is not, there is nothing to boot with; the
 * kernel says so on Xen's emergency console and crashes the domain
 * (panic: SHUTDOWN_crash), which leaves the machine and other domains be.
 *
 * Then: clear the machdep globals, copy start_info into them (NetBSD's
 * xen_start_info), read the command line, set up the MI kernel (kern_init)
 * and hand over to xen_main (machdep.ts).
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { vaFromCanonical } from '../../../hypervisor/public/types.js';
import { start_info, XEN_START_INFO_MAGIC } from '../../../hypervisor/public/xen.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { kern_init } from '../../../sys/kern/init_main.js';
import { panic } from '../../../sys/kern/subr_prf.js';
import { kstr_get, vptr_set, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { KERNBASE, KERNEL_IMAGE_SIZE, MACHDEP_DATA_VA, PAGE_SIZE } from '../include/vmparam.js';
import { L4_PAGETABLE_SHIFT } from '../../../hypervisor/public/arch-x86_64.js';
import { xen_machdep, xmd, xmd_addr, XEN_MACHDEP_MAGIC, XEN_MACHDEP_LAYOUT } from '../include/xen.js';
import { xen_parse_cmdline } from '../xen/xen_machdep.js';
import { xen_main } from './machdep.js';

/** Why `va` cannot be start_info, or '' when it may be. */
export function start_info_check(cpu: GuestCpu, va: number | undefined): string {
  if (va === undefined) return 'rsi is not a canonical address';
  if (va % PAGE_SIZE !== 0) return `start_info at ${va.toString(16)} is not page-aligned`;
  if (va < KERNBASE + KERNEL_IMAGE_SIZE || va >= KERNBASE + 2 ** L4_PAGETABLE_SHIFT) {
    return `start_info at ${va.toString(16)} is not in the direct map after the kernel`;
  }
  const magic = kstr_get(cpu.mem, va + start_info.offsetOf('magic'), 32);
  if (magic !== XEN_START_INFO_MAGIC) return `start_info magic "${magic}" is not "${XEN_START_INFO_MAGIC}"`;
  return '';
}

/** The entry point. */
export function start(cpu: GuestCpu): void {
  const stackTop = vaFromCanonical(cpu.regs.get('rsp')) ?? 0;
  const siva = vaFromCanonical(cpu.regs.get('rsi'));
  cpu.mem.fill(MACHDEP_DATA_VA, xen_machdep.size, 0);
  const bad = start_info_check(cpu, siva);
  if (bad !== '' || siva === undefined) {
    kern_init(cpu, 0);
    panic(cpu, 'start: %s', bad);
  }
  const x = xmd(cpu);
  x.set('xm_magic', XEN_MACHDEP_MAGIC);
  x.set('xm_layout', XEN_MACHDEP_LAYOUT);
  vptr_set(x, 'xm_start_info_va', siva);
  cpu.mem.writeBytes(xmd_addr('xm_start_info'), cpu.mem.readBytes(siva, start_info.size));
  const si = x.sub('xm_start_info');
  vu64_set(x, 'xm_nr_pages', Number(si.get('nr_pages')));
  vptr_set(x, 'xm_p2m_va', vaFromCanonical(si.get('mfn_list')) ?? 0);
  const howto = xen_parse_cmdline(cpu);
  kern_init(cpu, howto);
  const nr = Number(si.get('nr_pages'));
  if (!(nr > 0 && nr <= 2 ** 27)) panic(cpu, 'start: start_info says %lu pages', si.get('nr_pages'));
  xen_main(cpu, stackTop);
}

export const locore_ksyms = ksymtab({ start_info_check, start });
