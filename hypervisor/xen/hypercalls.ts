/*
 * The hypercall table of a machine: every handler, under Xen's number.
 * Subsystems export handler factories; this is the one place that says
 * which number runs which.
 */
import {
  __HYPERVISOR_set_trap_table, __HYPERVISOR_mmu_update, __HYPERVISOR_set_callbacks, __HYPERVISOR_memory_op,
  __HYPERVISOR_multicall, __HYPERVISOR_update_va_mapping, __HYPERVISOR_set_timer_op,
  __HYPERVISOR_event_channel_op_compat, __HYPERVISOR_xen_version, __HYPERVISOR_console_io,
  __HYPERVISOR_grant_table_op, __HYPERVISOR_vm_assist, __HYPERVISOR_update_va_mapping_otherdomain,
  __HYPERVISOR_vcpu_op, __HYPERVISOR_mmuext_op, __HYPERVISOR_sched_op, __HYPERVISOR_event_channel_op,
  __HYPERVISOR_sysctl, __HYPERVISOR_domctl,
} from '../public/xen.js';
import { makeMmuUpdate, makeMmuextOp, makeUpdateVaMapping, makeUpdateVaMappingOtherdomain } from './mm-hypercalls.js';
import { makeMemoryOp } from './mm-memop.js';
import { makeEventChannelOp, makeEventChannelOpCompat } from './evtchn-hcall.js';
import { makeGrantTableOp } from './gnttab-hcall.js';
import { makeSchedOp, makeSetTimerOp, makeVcpuOp } from './schedop.js';
import { makeSetCallbacks, makeSetTrapTable, makeConsoleIo, makeXenVersion, makeVmAssist, makeMulticall } from './platform.js';
import { makeDomctl } from './domctl.js';
import { makeSysctl } from './sysctl.js';
import type { Machine } from './machine.js';

export function installHypercalls(m: Machine): void {
  const t = m.hypercalls;
  const find = m.domainMemory;
  t.register(__HYPERVISOR_set_trap_table, makeSetTrapTable(m));
  t.register(__HYPERVISOR_mmu_update, makeMmuUpdate(m.mmEnv, find));
  t.register(__HYPERVISOR_set_callbacks, makeSetCallbacks(m));
  t.register(__HYPERVISOR_memory_op, makeMemoryOp(m.mmEnv, find));
  t.register(__HYPERVISOR_multicall, makeMulticall(m));
  t.register(__HYPERVISOR_update_va_mapping, makeUpdateVaMapping(m.mmEnv, find));
  t.register(__HYPERVISOR_set_timer_op, makeSetTimerOp(m));
  t.register(__HYPERVISOR_event_channel_op_compat, makeEventChannelOpCompat(m.evtchn));
  t.register(__HYPERVISOR_xen_version, makeXenVersion(m));
  t.register(__HYPERVISOR_console_io, makeConsoleIo(m));
  t.register(__HYPERVISOR_grant_table_op, makeGrantTableOp(m.gnttab));
  t.register(__HYPERVISOR_vm_assist, makeVmAssist(m));
  t.register(__HYPERVISOR_update_va_mapping_otherdomain, makeUpdateVaMappingOtherdomain(m.mmEnv, find));
  t.register(__HYPERVISOR_vcpu_op, makeVcpuOp(m));
  t.register(__HYPERVISOR_mmuext_op, makeMmuextOp(m.mmEnv, find));
  t.register(__HYPERVISOR_sched_op, makeSchedOp(m));
  t.register(__HYPERVISOR_event_channel_op, makeEventChannelOp(m.evtchn));
  t.register(__HYPERVISOR_sysctl, makeSysctl(m));
  t.register(__HYPERVISOR_domctl, makeDomctl(m));
}
