/*
 * The workloads' part of the kernel text, in link order: the framework
 * (workload.ts), then each workload. arch/xen/conf/files.xen.ts links
 * WORKLOAD_KSYMTABS into the netbsd image, so `workload=mem,clock` works
 * with the kernel `xl create` boots. Workloads that come with their
 * drivers (blk, net) export their own table and are linked after these.
 */
import type { KSymTab } from '../kern/kern_ksyms.js';
import { workload_ksyms } from './workload.js';
import { wl_mem_ksyms } from './wl_mem.js';
import { wl_clock_ksyms } from './wl_clock.js';

export const WORKLOAD_KSYMTABS: readonly KSymTab[] = Object.freeze([workload_ksyms, wl_mem_ksyms, wl_clock_ksyms]);
