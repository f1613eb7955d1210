/*
 * The machine-independent part of the kernel text, in link order (the
 * order fixes every symbol's address, so it changes only on purpose; an
 * image built from a different order has a different version hash).
 * arch/xen/conf appends its own tables and the drivers' after these.
 */
import type { KSymTab } from '../kern/kern_ksyms.js';
import { kern_ksyms_ksyms } from '../kern/kern_ksyms.js';
import { init_main_ksyms } from '../kern/init_main.js';
import { subr_log_ksyms } from '../kern/subr_log.js';
import { subr_prf_ksyms } from '../kern/subr_prf.js';
import { uvm_page_ksyms } from '../uvm/uvm_page.js';
import { subr_kmem_ksyms } from '../kern/subr_kmem.js';
import { kern_timeout_ksyms } from '../kern/kern_timeout.js';
import { kern_clock_ksyms } from '../kern/kern_clock.js';
import { kern_runq_ksyms } from '../kern/kern_runq.js';
import { kern_lwp_ksyms } from '../kern/kern_lwp.js';
import { kern_synch_ksyms } from '../kern/kern_synch.js';
import { subr_autoconf_ksyms } from '../kern/subr_autoconf.js';
import { kern_pmf_ksyms } from '../kern/kern_pmf.js';
import { libkern_ksyms } from '../lib/libkern/libkern.js';
import { queue_ksyms } from '../sys/queue.js';
import { kernel_ksyms } from '../sys/kernel.js';

export const MI_KSYMTABS: readonly KSymTab[] = Object.freeze([
  libkern_ksyms,
  queue_ksyms,
  kernel_ksyms,
  kern_ksyms_ksyms,
  init_main_ksyms,
  subr_log_ksyms,
  subr_prf_ksyms,
  uvm_page_ksyms,
  subr_kmem_ksyms,
  kern_timeout_ksyms,
  kern_clock_ksyms,
  kern_runq_ksyms,
  kern_lwp_ksyms,
  kern_synch_ksyms,
  subr_autoconf_ksyms,
  kern_pmf_ksyms,
]);
