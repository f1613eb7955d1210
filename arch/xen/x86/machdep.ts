/*
 * Machine-dependent startup (NetBSD's amd64 machdep.c init_x86_64 and
 * cpu_startup, plus the MD half of main()): from a validated start_info to
 * a running scheduler, in one entry.
 *
 *   init_x86_64     memory: free pages to uvm, shared_info mapped, the P2M
 *                   published, events set up, callbacks registered
 *   cpu_startup     the banner and the memory lines
 *   xen_configure   autoconfiguration: mainbus0, hypervisor0, xencons0, ...
 *   xen_initclocks  the tick starts; the clock line
 *   xen_suspend_init  save/restore: the suspend hook and event channel
 *   xen_start_init  init, the first thread
 * then events are unmasked and `rip` becomes mi_switch: from the next
 * entry on the kernel runs threads, callouts and event handlers.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { vcpu_info } from '../../../hypervisor/public/xen.js';
import { ksymtab, ksymaddr } from '../../../sys/kern/kern_ksyms.js';
import { panic, printf, aprint_normal, aprint_verbose } from '../../../sys/kern/subr_prf.js';
import { config_cfdata_attach, config_rootfound, alldevs } from '../../../sys/kern/subr_autoconf.js';
import { uvm_availmem } from '../../../sys/uvm/uvm_page.js';
import { vptr, vptr_set, vu64 } from '../../../sys/lib/libkern/libkern.js';
import { xmd, xen_vcpu_info_va, XMF_BOOTED, XMF_SHINFO_MAPPED } from '../include/xen.js';
import { HYPERVISOR_set_callbacks } from '../include/hypercalls.js';
import { XEN3_DOMU_CFDATA } from '../conf/ioconf.js';
import { events_default_setup } from '../xen/evtchn.js';
import { xen_initclocks, xen_global_systime_ns, NS_PER_SEC } from '../xen/xen_clock.js';
import { xen_cmdline, xen_start_init } from '../xen/xen_machdep.js';
import { xen_suspend_init } from '../xen/xen_suspend.js';
import { xen_pmap_bootstrap, xen_kva_alloc, pmap_kenter_ma, pmap_kremove } from './x86_xpmap.js';
import { xen_p2m_frame_list_alloc, xen_build_p2m_frame_list_list } from './hypervisor_machdep.js';

const dbg = createDebug('guest:boot');

/** The line that ends a successful boot (tests and tools wait for it). */
export const BOOT_COMPLETE = 'boot complete';

const UPCALL_MASK = vcpu_info.offsetOf('evtchn_upcall_mask');
const PAGES_PER_MB = 256;

/** Map shared_info (its machine address is in start_info) into the kernel VA area. */
export function xen_map_shared_info(cpu: GuestCpu): void {
  const x = xmd(cpu);
  const ma = Number(x.sub('xm_start_info').get('shared_info') & 0xf_ffff_ffff_f000n);
  let va = vptr(x, 'xm_shared_info_va');
  if (va === 0) va = xen_kva_alloc(cpu, 1);
  const rc = pmap_kenter_ma(cpu, va, ma, true);
  if (rc !== 0) panic(cpu, 'xen_map_shared_info: cannot map shared_info (machine address %lx): %d', ma, rc);
  vptr_set(x, 'xm_shared_info_va', va);
  x.set('xm_flags', x.get('xm_flags') | XMF_SHINFO_MAPPED);
}

/**
 * Unmap shared_info before a suspend (a saved image must not map a frame
 * the domain does not own). xm_shared_info_va is kept: resume maps the new
 * (or the same) shared_info at the same address.
 */
export function xen_unmap_shared_info(cpu: GuestCpu): void {
  const x = xmd(cpu);
  const va = vptr(x, 'xm_shared_info_va');
  if (va === 0 || (x.get('xm_flags') & XMF_SHINFO_MAPPED) === 0) return;
  const rc = pmap_kremove(cpu, va);
  if (rc !== 0) panic(cpu, 'xen_unmap_shared_info: cannot unmap shared_info (%d)', rc);
  x.set('xm_flags', x.get('xm_flags') & ~XMF_SHINFO_MAPPED);
}

/** Memory, shared_info, P2M lists, event table, callbacks. */
export function init_x86_64(cpu: GuestCpu, stackTop: number): void {
  xen_pmap_bootstrap(cpu, stackTop);
  xen_map_shared_info(cpu);
  xen_p2m_frame_list_alloc(cpu);
  xen_build_p2m_frame_list_list(cpu);
  events_default_setup(cpu);
  const rc = HYPERVISOR_set_callbacks(cpu, ksymaddr(cpu, 'hypervisor_callback'), ksymaddr(cpu, 'failsafe_callback'));
  if (rc !== 0) panic(cpu, 'init_x86_64: set_callbacks failed (%d)', rc);
}

/** The banner and the memory lines (NetBSD's cpu_startup). */
export function cpu_startup(cpu: GuestCpu): void {
  printf(cpu, 'NetBSD/xen (xenport) XEN3_DOMU: a NetBSD-style Xen PV kernel\n');
  const cmdline = xen_cmdline(cpu);
  if (cmdline !== '') aprint_verbose(cpu, 'command line: %s\n', cmdline);
  const nr = vu64(xmd(cpu), 'xm_nr_pages');
  printf(cpu, 'total memory = %lu MB\n', Math.floor(nr / PAGES_PER_MB));
  printf(cpu, 'avail memory = %lu MB\n', Math.floor(uvm_availmem(cpu) / PAGES_PER_MB));
}

/** Autoconfiguration: load the device table and attach from the root. */
export function xen_configure(cpu: GuestCpu): void {
  config_cfdata_attach(cpu, XEN3_DOMU_CFDATA);
  if (config_rootfound(cpu, 'mainbus', 0) === 0) panic(cpu, 'xen_configure: no mainbus');
}

/** Let events in: the upcall may run from the next entry on (spl0). */
export function xen_enable_events(cpu: GuestCpu): void {
  cpu.mem.setUint8(xen_vcpu_info_va(cpu) + UPCALL_MASK, 0);
}

/** Everything after start() validated start_info and set up the globals. */
export function xen_main(cpu: GuestCpu, stackTop: number): void {
  init_x86_64(cpu, stackTop);
  cpu_startup(cpu);
  xen_configure(cpu);
  xen_initclocks(cpu);
  xen_suspend_init(cpu);
  xen_start_init(cpu);
  const x = xmd(cpu);
  x.set('xm_flags', x.get('xm_flags') | XMF_BOOTED);
  const t = xen_global_systime_ns(cpu);
  printf(cpu, '%s: %u devices, %lu MB free, system time %lu.%03lu s\n', BOOT_COMPLETE, alldevs(cpu).length,
    Math.floor(uvm_availmem(cpu) / PAGES_PER_MB), t / NS_PER_SEC, (t % NS_PER_SEC) / 1_000_000n);
  if (dbg.enabled) dbg('vcpu%d: booted', cpu.vcpuId);
  cpu.regs.setVa('rip', ksymaddr(cpu, 'mi_switch'));
  xen_enable_events(cpu);
}

/** Has the kernel finished booting (machdep globals say so)? */
export function xen_booted(cpu: GuestCpu): boolean {
  return (xmd(cpu).get('xm_flags') & XMF_BOOTED) !== 0;
}

export const machdep_ksyms = ksymtab({
  xen_map_shared_info, xen_unmap_shared_info, init_x86_64, cpu_startup, xen_configure, xen_enable_events, xen_main, xen_booted,
});
