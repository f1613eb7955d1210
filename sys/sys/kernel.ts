/*
 * The kernel's global variables (<sys/kernel.h> and friends), gathered in
 * one struct at a fixed address of the data segment (KERNEL_GLOBALS_VA).
 *
 * Everything the machine-independent kernel remembers between two entries
 * is reachable from here: the run queue, every lwp, the sleep queues, the
 * callout wheel, the page and kmem allocators, the device tree, the message
 * buffer. A saved image is guest memory, so saving this struct (and what it
 * points to) is saving the kernel.
 *
 *   struct cpu_data {                   // per vCPU (MI part of cpu_info)
 *       struct lwp *cpu_curlwp;         // running a step, else NULL
 *       uint64_t cpu_nswtch;            // lwp steps run
 *       uint64_t cpu_nidle;             // times it blocked for lack of work
 *       uint32_t cpu_index;
 *       uint32_t cpu_flags;
 *   };
 *
 *   struct kernel_globals {             // every member is prefixed kg_
 *       uint32_t kg_magic, kg_layout;   // KERNEL_GLOBALS_MAGIC, _LAYOUT
 *       uint32_t hz, boothowto;
 *       uint64_t hardclock_ticks;
 *       void (*cn_putc)(int c);         // console output; NULL: HYPERVISOR_console_io
 *       struct kern_msgbuf *msgbufp;
 *       const char *panicstr;           // NULL, or kg_panicmsg once panicking
 *       uint32_t nextlid, nlwp;
 *       uint32_t ncallout;              // callouts pending
 *       uint32_t ndevs;
 *       struct tailq_entry runq;        // LSRUN lwps, by priority then FIFO
 *       struct tailq_entry alllwp;
 *       struct tailq_entry sleepq[SLEEPQ_HASH_SIZE];  // by hash of wchan
 *       struct tailq_entry callwheel[CALLWHEEL_SIZE];
 *       struct tailq_entry calltodo;    // callouts due this tick, in order
 *       struct tailq_entry alldevs;
 *       struct tailq_entry cfdata;
 *       struct cpu_data cpus[MAXCPUS];
 *       struct uvm uvm;
 *       struct kmem_state kmem;
 *       struct sched_shutdown shutdown; // argument block for SCHEDOP_shutdown
 *       char panicmsg[256];
 *       char prfbuf[256];               // bounce buffer for CONSOLEIO_write
 *   };
 */
import { struct, record, array, u32, u64, char } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { sched_shutdown } from '../../hypervisor/public/sched.js';
import { KERNEL_GLOBALS_VA, KERNEL_GLOBALS_SIZE, MAXCPUS } from '../../arch/xen/include/vmparam.js';
import { ptr_get, ptr_set } from '../lib/libkern/libkern.js';
import { tailq_entry } from './queue.js';
import { CALLWHEEL_SIZE } from './callout.js';
import { kmem_state } from './kmem.js';
import { uvm } from '../uvm/uvm.js';

/** Buckets of the sleep queue hash (a power of two). */
export const SLEEPQ_HASH_SIZE = 32;

export const cpu_data = struct('struct cpu_data', {
  cpu_curlwp: u64,
  cpu_nswtch: u64,
  cpu_nidle: u64,
  cpu_index: u32,
  cpu_flags: u32,
});

export const PANICMSG_LEN = 256;
export const PRFBUF_LEN = 256;

export const kernel_globals = struct('struct kernel_globals', {
  kg_magic: u32,
  kg_layout: u32,
  kg_hz: u32,
  kg_boothowto: u32,
  kg_hardclock_ticks: u64,
  kg_cn_putc: u64,
  kg_msgbufp: u64,
  kg_panicstr: u64,
  kg_nextlid: u32,
  kg_nlwp: u32,
  kg_ncallout: u32,
  kg_ndevs: u32,
  kg_runq: record(tailq_entry),
  kg_alllwp: record(tailq_entry),
  kg_sleepq: array(record(tailq_entry), SLEEPQ_HASH_SIZE),
  kg_callwheel: array(record(tailq_entry), CALLWHEEL_SIZE),
  kg_calltodo: record(tailq_entry),
  kg_alldevs: record(tailq_entry),
  kg_cfdata: record(tailq_entry),
  kg_cpus: array(record(cpu_data), MAXCPUS),
  kg_uvm: record(uvm),
  kg_kmem: record(kmem_state),
  kg_shutdown: record(sched_shutdown),
  kg_panicmsg: array(char, PANICMSG_LEN),
  kg_prfbuf: array(char, PRFBUF_LEN),
});

/** 'kern' */
export const KERNEL_GLOBALS_MAGIC = 0x6b65726e;
/** Bumped whenever kernel_globals changes shape. */
export const KERNEL_GLOBALS_LAYOUT = 1;

if (kernel_globals.size > KERNEL_GLOBALS_SIZE) {
  throw new Error(`struct kernel_globals (${kernel_globals.size} bytes) outgrew its ${KERNEL_GLOBALS_SIZE}-byte area`);
}

export type KernelGlobalsView = ReturnType<typeof kernel_globals.view>;

/** View of the kernel globals (rebuild it on every entry; never keep it). */
export function kglobals(cpu: GuestCpu): KernelGlobalsView {
  return kernel_globals.view(cpu.mem, KERNEL_GLOBALS_VA);
}

/** Address of a member of the kernel globals (dotted paths allowed). */
export function kg_addr(path: string): number {
  return KERNEL_GLOBALS_VA + kernel_globals.offsetOf(path);
}

const CPUS_OFF = kernel_globals.offsetOf('kg_cpus');
const CURLWP_OFF = cpu_data.offsetOf('cpu_curlwp');

/** Address of this vCPU's `struct cpu_data`. */
export function curcpu_addr(cpu: GuestCpu): number {
  if (!(cpu.vcpuId >= 0 && cpu.vcpuId < MAXCPUS)) throw new RangeError(`vCPU ${cpu.vcpuId} beyond MAXCPUS ${MAXCPUS}`);
  return KERNEL_GLOBALS_VA + CPUS_OFF + cpu.vcpuId * cpu_data.size;
}

/** The lwp running a step on this vCPU, or 0 (interrupt or idle context). */
export function curlwp(cpu: GuestCpu): number {
  return ptr_get(cpu.mem, curcpu_addr(cpu) + CURLWP_OFF);
}

export function curlwp_set(cpu: GuestCpu, l: number): void {
  ptr_set(cpu.mem, curcpu_addr(cpu) + CURLWP_OFF, l);
}

/* Listed so the image's version hash covers this text (see kern_ksyms). */
export const kernel_ksyms = Object.freeze({ kglobals, kg_addr, curcpu_addr, curlwp, curlwp_set });
