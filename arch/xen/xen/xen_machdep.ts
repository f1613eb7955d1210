/*
 * Xen-specific machine-dependent glue (NetBSD's arch/xen/xen/xen_machdep.c):
 * the command line, and the first user of the kernel, init.
 *
 * Command line (start_info.cmd_line), words separated by blanks:
 *   -s -a -q -v -x -z    boot flags (single user, ask name, quiet, verbose,
 *                        debug messages, silent); may be combined ("-vx")
 *   ctrl_if=<pfn>,<port> the Xen 2.0 control interface page and event
 *                        channel the builder set up (kept for the ctrl_if driver)
 *   workload=<name>      what init runs: the kernel symbol workload_<name>
 * Anything else is left for others to read (xen_cmdline_value).
 *
 * init: the first kernel thread. With a workload it becomes that workload
 * (its next step is `workload_<name>(cpu, 0, 0)`, continuation style);
 * without one it sleeps until something (shutdown handling, later) wakes it.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { ksymtab, type KernCpu } from '../../../sys/kern/kern_ksyms.js';
import { printf } from '../../../sys/kern/subr_prf.js';
import { tsleep, preempt } from '../../../sys/kern/kern_synch.js';
import { lwp_create } from '../../../sys/kern/kern_lwp.js';
import { RB_SINGLE, RB_ASKNAME, AB_QUIET, AB_VERBOSE, AB_DEBUG, AB_SILENT } from '../../../sys/sys/reboot.js';
import { kstr_get, strlcpy, vptr, vptr_set, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { MAX_GUEST_CMDLINE } from '../../../hypervisor/public/xen.js';
import { xmd, xmd_addr, WORKLOAD_NAMELEN } from '../include/xen.js';

/** The command line as the builder gave it. */
export function xen_cmdline(cpu: GuestCpu): string {
  return kstr_get(cpu.mem, xmd_addr('xm_start_info.cmd_line'), MAX_GUEST_CMDLINE);
}

/** Value of `key=value` on the command line, or undefined. */
export function xen_cmdline_value(cpu: GuestCpu, key: string): string | undefined {
  for (const w of xen_cmdline(cpu).split(/\s+/)) {
    if (w.startsWith(`${key}=`)) return w.slice(key.length + 1);
  }
  return undefined;
}

/** Boot flags word (RB_* | AB_*) of one `-xyz` argument. */
export function xen_bootflags(word: string): number {
  let howto = 0;
  for (const c of word.slice(1)) {
    switch (c) {
      case 's': howto |= RB_SINGLE; break;
      case 'a': howto |= RB_ASKNAME; break;
      case 'q': howto |= AB_QUIET; break;
      case 'v': howto |= AB_VERBOSE; break;
      case 'x': howto |= AB_DEBUG; break;
      case 'z': howto |= AB_SILENT; break;
      default: break;
    }
  }
  return howto;
}

/**
 * Read the command line into the machdep globals (boot flags, ctrl_if,
 * workload); returns boothowto. Runs before kern_init: it prints nothing.
 */
export function xen_parse_cmdline(cpu: GuestCpu): number {
  const x = xmd(cpu);
  let howto = 0;
  for (const w of xen_cmdline(cpu).split(/\s+/)) {
    if (w.startsWith('-')) howto |= xen_bootflags(w);
    else if (w.startsWith('workload=')) strlcpy(cpu.mem, xmd_addr('xm_workload'), w.slice(9), WORKLOAD_NAMELEN);
    else if (w.startsWith('ctrl_if=')) {
      const m = /^ctrl_if=(\d+),(\d+)$/.exec(w);
      if (m !== null) {
        vu64_set(x, 'xm_ctrl_if_pfn', Number(m[1]));
        x.set('xm_ctrl_if_port', Number(m[2]) >>> 0);
      }
    }
  }
  x.set('xm_boothowto', howto >>> 0);
  return howto;
}

/** Address of kernel symbol `name`, or 0 when the image has none. */
export function ksymlookup(cpu: GuestCpu, name: string): number {
  return (cpu as Partial<KernCpu>).ktext?.addrOf(name) ?? 0;
}

/** The workload named on the command line ('' for none). */
export function xen_workload(cpu: GuestCpu): string {
  return kstr_get(cpu.mem, xmd_addr('xm_workload'), WORKLOAD_NAMELEN);
}

/** Create init, the first kernel thread. */
export function xen_start_init(cpu: GuestCpu): number {
  const l = lwp_create(cpu, 'init', 'xen_init_main', 0);
  vptr_set(xmd(cpu), 'xm_init_lwp', l);
  return l;
}

/** What init sleeps on when it has nothing to run. */
export function xen_init_wchan(): number {
  return xmd_addr('xm_init_lwp');
}

/** init's first step: become the workload, or wait. */
export function xen_init_main(cpu: GuestCpu, _arg: number, _error: number): void {
  const name = xen_workload(cpu);
  if (name === '') {
    tsleep(cpu, xen_init_wchan(), 0, 'xen_init_idle', 'init');
    return;
  }
  const sym = ksymlookup(cpu, name.includes(',') ? 'workload_list' : `workload_${name}`);
  if (sym === 0) {
    printf(cpu, 'init: no workload "%s" in this kernel\n', name);
    tsleep(cpu, xen_init_wchan(), 0, 'xen_init_idle', 'init');
    return;
  }
  printf(cpu, 'init: running workload %s\n', name);
  preempt(cpu, sym);
}

/** init with nothing to do: go back to sleep whenever woken. */
export function xen_init_idle(cpu: GuestCpu, _arg: number, _error: number): void {
  tsleep(cpu, xen_init_wchan(), 0, 'xen_init_idle', 'init');
}

/** The init lwp (0 before boot made it). */
export function xen_init_lwp(cpu: GuestCpu): number {
  return vptr(xmd(cpu), 'xm_init_lwp');
}

export const xen_machdep_ksyms = ksymtab({
  xen_cmdline, xen_cmdline_value, xen_bootflags, xen_parse_cmdline, ksymlookup, xen_workload, xen_start_init,
  xen_init_wchan, xen_init_main, xen_init_idle, xen_init_lwp,
});
