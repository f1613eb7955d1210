/*
 * xen/include/public/vcpu.h: per-vCPU operations (`vcpu_op(cmd, vcpuid, arg)`):
 * bring vCPUs up and down, one-shot and periodic timers, and moving a
 * vCPU's vcpu_info out of shared_info.
 */
import { struct, union, record, array, i32, u32, u64, guest_handle } from './layout.js';

/** Argument: vcpu_guest_context (arch-x86_64.ts). Only for a vCPU not yet up. */
export const VCPUOP_initialise = 0;
export const VCPUOP_up = 1;
export const VCPUOP_down = 2;
/** Returns 1 if the vCPU is up. */
export const VCPUOP_is_up = 3;
export const VCPUOP_get_runstate_info = 4;
export const VCPUOP_register_runstate_memory_area = 5;
/** Argument: struct vcpu_set_periodic_timer. */
export const VCPUOP_set_periodic_timer = 6;
export const VCPUOP_stop_periodic_timer = 7;
/** Argument: struct vcpu_set_singleshot_timer. */
export const VCPUOP_set_singleshot_timer = 8;
export const VCPUOP_stop_singleshot_timer = 9;
/** Argument: struct vcpu_register_vcpu_info. */
export const VCPUOP_register_vcpu_info = 10;
export const VCPUOP_send_nmi = 11;
export const VCPUOP_get_physid = 12;
export const VCPUOP_register_vcpu_time_memory_area = 13;

/* vcpu_runstate_info.state */
export const RUNSTATE_running = 0;
export const RUNSTATE_runnable = 1;
export const RUNSTATE_blocked = 2;
export const RUNSTATE_offline = 3;
/** Bit 63 of state_entry_time: the record is being updated. */
export const XEN_RUNSTATE_UPDATE = 1n << 63n;

/*
 * struct vcpu_runstate_info {
 *     int      state;              // RUNSTATE_*
 *     uint64_t state_entry_time;   // system time the state was entered
 *     uint64_t time[4];            // ns spent in each RUNSTATE_*
 * };
 */
export const vcpu_runstate_info = struct('struct vcpu_runstate_info', {
  state: i32,
  state_entry_time: u64,
  time: array(u64, 4),
});

const runstate_area_addr = union('struct vcpu_register_runstate_memory_area addr', {
  h: guest_handle,
  v: guest_handle,
  p: u64,
});

/*
 * struct vcpu_register_runstate_memory_area {
 *     union {
 *         XEN_GUEST_HANDLE(vcpu_runstate_info_t) h;
 *         struct vcpu_runstate_info *v;
 *         uint64_t p;
 *     } addr;
 * };
 */
export const vcpu_register_runstate_memory_area = struct('struct vcpu_register_runstate_memory_area', {
  addr: record(runstate_area_addr),
});

/*
 * struct vcpu_set_periodic_timer {
 *     uint64_t period_ns;
 * };
 */
export const vcpu_set_periodic_timer = struct('struct vcpu_set_periodic_timer', {
  period_ns: u64,
});

/*
 * struct vcpu_set_singleshot_timer {
 *     uint64_t timeout_abs_ns;   // Absolute system time value in nanoseconds
 *     uint32_t flags;            // VCPU_SSHOTTMR_*
 * };
 */
export const vcpu_set_singleshot_timer = struct('struct vcpu_set_singleshot_timer', {
  timeout_abs_ns: u64,
  flags: u32,
});

export const _VCPU_SSHOTTMR_future = 0;
/** Fail with -ETIME if the timeout is already in the past (Xen may ignore it). */
export const VCPU_SSHOTTMR_future = 1 << _VCPU_SSHOTTMR_future;

/*
 * struct vcpu_register_vcpu_info {
 *     uint64_t mfn;    // mfn of page to place vcpu_info
 *     uint32_t offset; // offset within page
 *     uint32_t rsvd;   // unused
 * };
 */
export const vcpu_register_vcpu_info = struct('struct vcpu_register_vcpu_info', {
  mfn: u64,
  offset: u32,
  rsvd: u32,
});

/*
 * struct vcpu_get_physid {
 *     uint64_t phys_id;
 * };
 */
export const vcpu_get_physid = struct('struct vcpu_get_physid', {
  phys_id: u64,
});

const time_area_addr = union('struct vcpu_register_time_memory_area addr', {
  h: guest_handle,
  v: guest_handle,
  p: u64,
});

/*
 * struct vcpu_register_time_memory_area {
 *     union {
 *         XEN_GUEST_HANDLE(vcpu_time_info_t) h;
 *         struct vcpu_time_info *v;
 *         uint64_t p;
 *     } addr;
 * };
 */
export const vcpu_register_time_memory_area = struct('struct vcpu_register_time_memory_area', {
  addr: record(time_area_addr),
});

