/*
 * The hypercalls arch/xen makes, one wrapper each (NetBSD's
 * arch/xen/include/amd64/hypercalls.h).
 *
 * The gate (hypervisor/public/cpu.ts) passes up to five register values;
 * pointer arguments are kernel virtual addresses of argument structs the
 * caller built in guest memory, passed in canonical form (hcall_ptr).
 * Every wrapper returns rax: 0 or a value on success, a negative Xen errno
 * on failure. The descheduling ones (sched_op block/yield/shutdown) must be
 * made after the caller stored its continuation in rip.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import {
  __HYPERVISOR_mmu_update, __HYPERVISOR_update_va_mapping, __HYPERVISOR_set_callbacks, __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op, __HYPERVISOR_vcpu_op, __HYPERVISOR_sched_op, __HYPERVISOR_xen_version,
  __HYPERVISOR_console_io, __HYPERVISOR_mmuext_op, __HYPERVISOR_set_timer_op, DOMID_SELF,
} from '../../../hypervisor/public/xen.js';
import { SCHEDOP_shutdown } from '../../../hypervisor/public/sched.js';
import { hcall_ptr } from '../../../sys/lib/libkern/libkern.js';

/** mmu_update(req[], count, done*, DOMID_SELF): `req` is an array of mmu_update_t. */
export function HYPERVISOR_mmu_update(cpu: GuestCpu, req: number, count: number, pdone = 0): number {
  return cpu.hypercall(__HYPERVISOR_mmu_update, hcall_ptr(req), count, pdone === 0 ? 0 : hcall_ptr(pdone), DOMID_SELF);
}

/** mmuext_op(op[], count, done*, DOMID_SELF). */
export function HYPERVISOR_mmuext_op(cpu: GuestCpu, op: number, count: number, pdone = 0): number {
  return cpu.hypercall(__HYPERVISOR_mmuext_op, hcall_ptr(op), count, pdone === 0 ? 0 : hcall_ptr(pdone), DOMID_SELF);
}

/** update_va_mapping(va, pte, flags): `pte` is the whole 64-bit entry. */
export function HYPERVISOR_update_va_mapping(cpu: GuestCpu, va: number, pte: bigint, flags: number): number {
  return cpu.hypercall(__HYPERVISOR_update_va_mapping, hcall_ptr(va), BigInt.asUintN(64, pte), flags);
}

/** set_callbacks(event, failsafe, syscall): kernel symbol addresses (0: none). */
export function HYPERVISOR_set_callbacks(cpu: GuestCpu, event: number, failsafe: number, syscall = 0): number {
  return cpu.hypercall(__HYPERVISOR_set_callbacks, hcall_ptr(event), hcall_ptr(failsafe), hcall_ptr(syscall));
}

/** event_channel_op(cmd, arg*). */
export function HYPERVISOR_event_channel_op(cpu: GuestCpu, cmd: number, arg: number): number {
  return cpu.hypercall(__HYPERVISOR_event_channel_op, cmd, hcall_ptr(arg));
}

/** grant_table_op(cmd, uop*, count). */
export function HYPERVISOR_grant_table_op(cpu: GuestCpu, cmd: number, uop: number, count: number): number {
  return cpu.hypercall(__HYPERVISOR_grant_table_op, cmd, hcall_ptr(uop), count);
}

/** vcpu_op(cmd, vcpuid, arg*). */
export function HYPERVISOR_vcpu_op(cpu: GuestCpu, cmd: number, vcpuid: number, arg: number): number {
  return cpu.hypercall(__HYPERVISOR_vcpu_op, cmd, vcpuid, arg === 0 ? 0 : hcall_ptr(arg));
}

/** set_timer_op(absolute system time in ns; 0 stops the timer). */
export function HYPERVISOR_set_timer_op(cpu: GuestCpu, timeoutNs: bigint): number {
  return cpu.hypercall(__HYPERVISOR_set_timer_op, BigInt.asUintN(64, timeoutNs));
}

/** sched_op(cmd, arg*). Descheduling commands: set rip first. */
export function HYPERVISOR_sched_op(cpu: GuestCpu, cmd: number, arg = 0, rdx?: number | bigint): number {
  if (rdx === undefined) return cpu.hypercall(__HYPERVISOR_sched_op, cmd, arg === 0 ? 0 : hcall_ptr(arg));
  return cpu.hypercall(__HYPERVISOR_sched_op, cmd, arg === 0 ? 0 : hcall_ptr(arg), rdx);
}

/**
 * The PV suspend hypercall (Linux's HYPERVISOR_suspend): sched_op(
 * SCHEDOP_shutdown, arg) where `arg` is a struct sched_shutdown saying
 * SHUTDOWN_suspend, with rdx = the MFN of start_info, which the toolstack
 * reads from the saved context. Descheduling: set rip first. When the vCPU
 * runs again rax says how it ended: 0 in a new domain (restored), 1 in the
 * same one (suspend cancelled).
 */
export function HYPERVISOR_suspend(cpu: GuestCpu, arg: number, startInfoMfn: number): number {
  return HYPERVISOR_sched_op(cpu, SCHEDOP_shutdown, arg, BigInt(startInfoMfn));
}

/** xen_version(cmd, arg*): some commands take no argument (pass 0). */
export function HYPERVISOR_xen_version(cpu: GuestCpu, cmd: number, arg = 0): number {
  return cpu.hypercall(__HYPERVISOR_xen_version, cmd, arg === 0 ? 0 : hcall_ptr(arg));
}

/** console_io(cmd, count, buffer*). */
export function HYPERVISOR_console_io(cpu: GuestCpu, cmd: number, count: number, buf: number): number {
  return cpu.hypercall(__HYPERVISOR_console_io, cmd, count, hcall_ptr(buf));
}

/* Listed so the image's version hash covers this text (see kern_ksyms). */
export const hypercalls_ksyms = Object.freeze({
  HYPERVISOR_mmu_update, HYPERVISOR_mmuext_op, HYPERVISOR_update_va_mapping, HYPERVISOR_set_callbacks,
  HYPERVISOR_event_channel_op, HYPERVISOR_grant_table_op, HYPERVISOR_vcpu_op, HYPERVISOR_set_timer_op,
  HYPERVISOR_sched_op, HYPERVISOR_suspend, HYPERVISOR_xen_version, HYPERVISOR_console_io,
});
