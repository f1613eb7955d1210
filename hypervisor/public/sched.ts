/*
 * xen/include/public/sched.h: the scheduler hypercall (`sched_op`).
 */
import { struct, i32, u32, u64, domid_t, guest_handle } from './layout.js';

/** Give up the CPU voluntarily; stay runnable. */
export const SCHEDOP_yield = 0;
/** Block until an event is pending (events unmasked by the call). */
export const SCHEDOP_block = 1;
/** Halt this domain; argument `struct sched_shutdown`. */
export const SCHEDOP_shutdown = 2;
/** Block until one of a set of ports is pending, or timeout; `struct sched_poll`. */
export const SCHEDOP_poll = 3;
/** Privileged: shut another domain down; `struct sched_remote_shutdown`. */
export const SCHEDOP_remote_shutdown = 4;
/** Latch a shutdown code without shutting down; `struct sched_shutdown`. */
export const SCHEDOP_shutdown_code = 5;
export const SCHEDOP_watchdog = 6;
export const SCHEDOP_pin_override = 7;

/* Reasons for SCHEDOP_shutdown (`sched_shutdown.reason`). */
export const SHUTDOWN_poweroff = 0;
export const SHUTDOWN_reboot = 1;
/** Clean up, save suspend info, kill: the save/restore entry point. */
export const SHUTDOWN_suspend = 2;
export const SHUTDOWN_crash = 3;
export const SHUTDOWN_watchdog = 4;
export const SHUTDOWN_soft_reset = 5;
/** Largest valid shutdown reason. */
export const SHUTDOWN_MAX = 5;

/*
 * struct sched_shutdown {
 *     unsigned int reason; // SHUTDOWN_*
 * };
 */
export const sched_shutdown = struct('struct sched_shutdown', {
  reason: u32,
});

/*
 * struct sched_poll {
 *     XEN_GUEST_HANDLE(evtchn_port_t) ports;
 *     unsigned int nr_ports;
 *     uint64_t timeout;
 * };
 */
export const sched_poll = struct('struct sched_poll', {
  ports: guest_handle,
  nr_ports: u32,
  timeout: u64,
});

/*
 * struct sched_remote_shutdown {
 *     domid_t domain_id;    // Remote domain ID
 *     unsigned int reason;  // SHUTDOWN_* => shutdown reason
 * };
 */
export const sched_remote_shutdown = struct('struct sched_remote_shutdown', {
  domain_id: domid_t,
  reason: u32,
});

/*
 * struct sched_watchdog {
 *     uint32_t id;       // watchdog ID (0: allocate a new one)
 *     uint32_t timeout;  // seconds (0: destroy the watchdog)
 * };
 */
export const sched_watchdog = struct('struct sched_watchdog', {
  id: u32,
  timeout: u32,
});

/*
 * struct sched_pin_override {
 *     int32_t pcpu;  // pin to this physical CPU; -1: undo
 * };
 */
export const sched_pin_override = struct('struct sched_pin_override', {
  pcpu: i32,
});
