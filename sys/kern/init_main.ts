/*
 * Machine-independent initialization: the first thing the boot path does
 * once it can reach the data segment, before anything prints or allocates.
 *
 *   kern_init(cpu, boothowto)                  globals, queues, msgbuf
 *   uvm_page_physload(cpu, firstPfn, endPfn)   the free pages (boot path)
 *   config_cfdata_attach / config_rootfound    the device tree
 *   lwp_create(...) for the kernel threads, then rip = mi_switch.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { KERNEL_GLOBALS_VA, MSGBUF_VA, MSGBUFSIZE, MAXCPUS } from '../../arch/xen/include/vmparam.js';
import { kernel_globals, kglobals, kg_addr, cpu_data, KERNEL_GLOBALS_MAGIC, KERNEL_GLOBALS_LAYOUT, SLEEPQ_HASH_SIZE } from '../sys/kernel.js';
import { CALLWHEEL_SIZE } from '../sys/callout.js';
import { tailq_entry, TAILQ_INIT } from '../sys/queue.js';
import { HZ } from '../sys/param.js';
import { ksymtab } from './kern_ksyms.js';
import { initmsgbuf } from './subr_log.js';

/**
 * Zero and set up the kernel globals. The message buffer keeps its
 * contents if it survived (a warm reboot), like NetBSD's.
 */
export function kern_init(cpu: GuestCpu, boothowto = 0): void {
  cpu.mem.fill(KERNEL_GLOBALS_VA, kernel_globals.size, 0);
  const g = kglobals(cpu);
  g.set('kg_magic', KERNEL_GLOBALS_MAGIC);
  g.set('kg_layout', KERNEL_GLOBALS_LAYOUT);
  g.set('kg_hz', HZ);
  g.set('kg_boothowto', boothowto);
  g.set('kg_nextlid', 1);
  for (const q of ['kg_runq', 'kg_alllwp', 'kg_calltodo', 'kg_alldevs', 'kg_cfdata']) TAILQ_INIT(cpu.mem, kg_addr(q));
  for (let i = 0; i < SLEEPQ_HASH_SIZE; i++) TAILQ_INIT(cpu.mem, kg_addr('kg_sleepq') + i * tailq_entry.size);
  for (let i = 0; i < CALLWHEEL_SIZE; i++) TAILQ_INIT(cpu.mem, kg_addr('kg_callwheel') + i * tailq_entry.size);
  for (let i = 0; i < MAXCPUS; i++) cpu_data.view(cpu.mem, kg_addr('kg_cpus') + i * cpu_data.size).set('cpu_index', i);
  initmsgbuf(cpu, MSGBUF_VA, MSGBUFSIZE);
}

/** Has kern_init run on this memory (and with this layout)? */
export function kern_initialized(cpu: GuestCpu): boolean {
  const g = kglobals(cpu);
  return g.get('kg_magic') === KERNEL_GLOBALS_MAGIC && g.get('kg_layout') === KERNEL_GLOBALS_LAYOUT;
}

export const init_main_ksyms = ksymtab({ kern_init, kern_initialized });
