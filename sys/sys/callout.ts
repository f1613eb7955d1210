/*
 * Callouts (<sys/callout.h>): a function to call from the clock interrupt
 * a number of ticks from now. The callout lives in guest memory, usually
 * embedded in the struct that owns it (an lwp's sleep timeout, a softc).
 *
 *   struct callout {
 *       struct tailq_entry c_list;   // wheel bucket or the due list, while pending
 *       void   (*c_func)(void *);    // kernel symbol address
 *       void   *c_arg;
 *       uint64_t c_time;             // absolute tick it is due at
 *       uint32_t c_flags;            // CALLOUT_*
 *       uint32_t c_magic;            // CALLOUT_MAGIC once callout_init ran
 *   };
 */
import { struct, record, u32, u64 } from '../../hypervisor/public/layout.js';
import { tailq_entry } from './queue.js';

export const callout = struct('struct callout', {
  c_list: record(tailq_entry),
  c_func: u64,
  c_arg: u64,
  c_time: u64,
  c_flags: u32,
  c_magic: u32,
});

/** Scheduled and not yet run. */
export const CALLOUT_PENDING = 0x0002;
/** Ran since it was last scheduled (callout_expired). */
export const CALLOUT_FIRED = 0x0004;
/** Ran and its owner has not yet acknowledged it (callout_ack). */
export const CALLOUT_INVOKING = 0x0008;

export const CALLOUT_MAGIC = 0x11deeba1;

/** Buckets of the timing wheel in the kernel globals (a power of two). */
export const CALLWHEEL_SIZE = 64;
