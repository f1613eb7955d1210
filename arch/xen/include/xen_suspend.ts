/*
 * Save/restore state of the guest (the globals of NetBSD's
 * xen_suspend_domain and of Linux's manage.c), in guest memory: what the
 * suspend path must still know when the vCPU comes back at the resume
 * continuation, possibly in a new domain on another machine and in a
 * fresh OS process. Nothing else carries over: registers and this.
 *
 *   struct xen_suspend_state {
 *       uint32_t xs_state;         // XSS_*: where the suspend sequence is
 *       uint32_t xs_flags;         // XSF_*
 *       uint32_t xs_resumed;       // XEN_RESUME_*: how the last suspend ended
 *       uint32_t xs_evtchn;        // the suspend event channel (0: none)
 *       uint64_t xs_generation;    // restores into a new domain so far
 *       uint64_t xs_suspends;      // suspend hypercalls made
 *       uint64_t xs_cancels;       // ... that returned 1 (same domain)
 *       uint64_t xs_refusals;      // suspends a device refused
 *       uint64_t xs_requests;      // requests (xenstore, event channel, ctrl_if)
 *       int64_t  xs_rax;           // the suspend hypercall's result, last time
 *       uint64_t xs_store_pfn;     // what suspend left in start_info.store_mfn
 *       uint64_t xs_console_pfn;   // ... and in console.domU.mfn
 *       uint64_t xs_suspend_systime;   // guest time at the suspend hypercall
 *       uint64_t xs_resume_systime;    // guest time when resume finished
 *       uint64_t xs_suspend_wallclock; // wall clock (ns since the epoch) then
 *       uint64_t xs_resume_wallclock;  // ... and as re-read after resume
 *       struct sched_shutdown xs_shutdown;   // SCHEDOP_shutdown argument block
 *   };
 */
import { struct, record, u32, u64, i64 } from '../../../hypervisor/public/layout.js';
import { sched_shutdown } from '../../../hypervisor/public/sched.js';

export const xen_suspend_state = struct('struct xen_suspend_state', {
  xs_state: u32,
  xs_flags: u32,
  xs_resumed: u32,
  xs_evtchn: u32,
  xs_generation: u64,
  xs_suspends: u64,
  xs_cancels: u64,
  xs_refusals: u64,
  xs_requests: u64,
  xs_rax: i64,
  xs_store_pfn: u64,
  xs_console_pfn: u64,
  xs_suspend_systime: u64,
  xs_resume_systime: u64,
  xs_suspend_wallclock: u64,
  xs_resume_wallclock: u64,
  xs_shutdown: record(sched_shutdown),
});

/* xs_state */
/** Running normally. */
export const XSS_IDLE = 0;
/** A suspend was asked for: queued for the xenbus thread or under way there. */
export const XSS_SUSPENDING = 1;
/** The suspend hypercall was made: the next entry is the resume continuation. */
export const XSS_SUSPENDED = 2;
/** Back from the hypercall: the xenbus thread finishes the resume. */
export const XSS_RESUMING = 3;

/* xs_flags */
/** New work must wait: threads park (xen_suspend_park), drivers hold their queues. */
export const XSF_SUSPENDING = 0x1;
/** xen_suspend_request queued the hook on the xenbus thread (a second request is refused). */
export const XSF_REQUESTED = 0x2;
/**
 * A request came while the last suspend was still resuming: the hook is
 * queued once the resume is over (xen_suspend_resumed), not dropped; the
 * toolstack cannot tell when the resume ends and would wait in vain.
 */
export const XSF_REQUESTED_LATER = 0x4;

/* xs_resumed: what the last suspend turned into */
export const XEN_RESUME_NONE = 0;
/** The suspend hypercall returned 1: the same domain runs on (xl save -c, a failed save). */
export const XEN_RESUME_CANCELLED = 1;
/** It returned 0: a new domain, restored from an image (other frames, ports, grants, clock). */
export const XEN_RESUME_RESTORED = 2;
/** A device refused: the suspend never reached the hypervisor. */
export const XEN_RESUME_REFUSED = 3;
