/*
 * Light-weight processes (<sys/lwp.h>), continuation style.
 *
 * A kernel thread here has no stack: between steps, everything it needs is
 * in its `struct lwp` in guest memory. A step is one call of the kernel
 * function whose address is in `l_cont`, as `cont(cpu, l_arg, error)` where
 * `error` is the result of the sleep that ended (0, or EWOULDBLOCK after a
 * timeout). Before returning, a step says where to continue: tsleep(),
 * kpause() or preempt() store the next continuation; a step that says
 * nothing has finished and the lwp exits.
 *
 * State a step carries across blocking goes in `l_frame` (the lwp's
 * "stack"): each thread overlays its own layout table on it.
 *
 *   struct lwp {
 *       struct tailq_entry l_runq;     // run queue or sleep queue bucket
 *       struct tailq_entry l_list;     // all lwps
 *       uint32_t l_lid;                // lwp id, from 1
 *       uint32_t l_stat;               // LS*
 *       int32_t  l_priority;           // higher runs first
 *       uint32_t l_flag;               // LW_*
 *       uint32_t l_cpu;                // vCPU it last ran on
 *       int32_t  l_sleeperr;           // result of the last sleep, for the continuation
 *       void    (*l_cont)(void *, int);// where the next step starts
 *       void    *l_arg;                // argument given at creation
 *       const void *l_wchan;           // what it sleeps on (0: kpause, or not asleep)
 *       uint64_t l_slptime;            // tick it went to sleep
 *       uint64_t l_nsteps;             // steps run
 *       char     l_wmesg[16];          // why it sleeps
 *       char     l_name[16];
 *       struct callout l_timeout_ch;   // sleep timeout
 *       uint64_t l_frame[L_FRAMESIZE / 8];
 *   };
 */
import { struct, record, array, u32, i32, u64, char } from '../../hypervisor/public/layout.js';
import { tailq_entry } from './queue.js';
import { callout } from './callout.js';
import { MAXCOMLEN } from './param.js';

/** Bytes of per-lwp frame area for a thread's own state. */
export const L_FRAMESIZE = 256;

export const lwp = struct('struct lwp', {
  l_runq: record(tailq_entry),
  l_list: record(tailq_entry),
  l_lid: u32,
  l_stat: u32,
  l_priority: i32,
  l_flag: u32,
  l_cpu: u32,
  l_sleeperr: i32,
  l_cont: u64,
  l_arg: u64,
  l_wchan: u64,
  l_slptime: u64,
  l_nsteps: u64,
  l_wmesg: array(char, 16),
  l_name: array(char, MAXCOMLEN),
  l_timeout_ch: record(callout),
  l_frame: array(u64, L_FRAMESIZE / 8),
});

/* l_stat: the values of NetBSD's LS* (set in stone there, kept here). */
/** Being created. */
export const LSIDL = 1;
/** On the run queue. */
export const LSRUN = 2;
/** Asleep on a wait channel, or in kpause. */
export const LSSLEEP = 3;
export const LSSTOP = 4;
/** Finished; reaped by the scheduler after its last step. */
export const LSZOMB = 5;
/** Running a step right now. */
export const LSONPROC = 7;
export const LSSUSPENDED = 8;

/* l_flag */
/** A kernel thread (every lwp here is one). */
export const LW_SYSTEM = 0x0000_0200;
/** The sleep was ended by its timeout. */
export const LW_TIMEDOUT = 0x0000_0001;
