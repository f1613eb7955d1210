/*
 * The Xen clock's state in guest memory (the globals and per-CPU fields of
 * NetBSD's xen_clock.c).
 *
 * Guest time ("systime" below) is Xen system time plus xcs_offset, clamped
 * so that it never goes backwards (xcs_last_systime). The offset is 0 from
 * boot; after a restore on another machine Xen's system time restarts from
 * that machine's boot, and resume sets the offset so guest time carries on.
 *
 *   struct xen_clock_cpu {                // per vCPU
 *       uint64_t xc_hardclock_systime;    // guest time of the last tick run
 *       uint64_t xc_ticks;                // hardclock() calls made here
 *       uint64_t xc_lost;                 // ticks skipped after a long jump
 *       uint64_t xc_events;               // timer events taken
 *       uint32_t xc_timer_port;           // VIRQ_TIMER's port, 0: none
 *       uint32_t xc_pad;
 *       struct vcpu_set_singleshot_timer xc_sst;  // argument block
 *   };
 *
 *   struct xen_clock_state {
 *       uint64_t xcs_last_systime;        // latest guest time handed out
 *       int64_t  xcs_offset;              // guest time - Xen system time
 *       uint64_t xcs_boot_systime;        // guest time when the clock started
 *       uint64_t xcs_resumes;             // times the clock was resumed after a suspend
 *       struct xen_clock_cpu xcs_cpu[MAXCPUS];
 *   };
 */
import { struct, record, array, u32, u64, i64 } from '../../../hypervisor/public/layout.js';
import { vcpu_set_singleshot_timer } from '../../../hypervisor/public/vcpu.js';
import { MAXCPUS } from './vmparam.js';

export const xen_clock_cpu = struct('struct xen_clock_cpu', {
  xc_hardclock_systime: u64,
  xc_ticks: u64,
  xc_lost: u64,
  xc_events: u64,
  xc_timer_port: u32,
  xc_pad: u32,
  xc_sst: record(vcpu_set_singleshot_timer),
});

export const xen_clock_state = struct('struct xen_clock_state', {
  xcs_last_systime: u64,
  xcs_offset: i64,
  xcs_boot_systime: u64,
  xcs_resumes: u64,
  xcs_cpu: array(record(xen_clock_cpu), MAXCPUS),
});
