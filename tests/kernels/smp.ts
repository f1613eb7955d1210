/*
 * Test kernels for vCPU operations: bringing a second vCPU up and down,
 * moving vcpu_info, and the periodic timer.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import { __HYPERVISOR_vcpu_op, VIRQ_TIMER } from '../../hypervisor/public/xen.js';
import {
  VCPUOP_initialise, VCPUOP_up, VCPUOP_down, VCPUOP_is_up, VCPUOP_register_vcpu_info, VCPUOP_set_periodic_timer,
  VCPUOP_stop_periodic_timer, vcpu_register_vcpu_info, vcpu_set_periodic_timer,
} from '../../hypervisor/public/vcpu.js';
import { vcpu_guest_context, FLAT_KERNEL_CS, VGCF_in_kernel } from '../../hypervisor/public/arch-x86_64.js';
import { SHUTDOWN_poweroff } from '../../hypervisor/public/sched.js';
import { defineKernel, type TestKernel } from './image.js';
import {
  VIRT_BASE, A_PARAM, A_L4_MFN, arg, argBig, setResult, getVar, incVar, setVar, mapSharedInfo, setCallbacks, block,
  yieldCpu, shutdown, allocUnbound, bindVirq, takeEvents, jump, scratch,
} from './guest.js';

const IMAGE = { virtBase: VIRT_BASE, imageSize: 4096 } as const;
/** PFN holding the context vCPU 0 builds for vCPU 1 (5168 bytes: two pages). */
const CTX_PFN = 2;

function vcpuOp(cpu: GuestCpu, cmd: number, vcpu: number, argVa: number | bigint = 0): number {
  return cpu.hypercall(__HYPERVISOR_vcpu_op, cmd, vcpu, argVa);
}

/*
 * vCPU 0 brings vCPU 1 up with VCPUOP_initialise + VCPUOP_up, waits until
 * vCPU 1 has counted 10 entries (var 1), takes it down and powers off.
 * results: 0 is_up before, 1 up before initialise, 2 initialise,
 * 3 initialise again, 4 up, 5 is_up, 6 down(1), 7 is_up after, 8 down(0),
 * which, vCPU 0 being the last one up, powers the domain off.
 */
export const smpKernel: TestKernel = defineKernel({
  name: 'smp',
  ...IMAGE,
  textBase: 0x8000_8000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      const ctxVa = VIRT_BASE + CTX_PFN * 4096;
      cpu.mem.fill(ctxVa, vcpu_guest_context.size, 0);
      const c = vcpu_guest_context.view(cpu.mem, ctxVa);
      c.set('flags', BigInt(VGCF_in_kernel));
      c.sub('user_regs').set('rip', canonicalVa(smpKernel.addr.secondary!));
      c.sub('user_regs').set('rsp', canonicalVa((VIRT_BASE + 5 * 4096 - 8) as Vaddr));
      c.sub('user_regs').set('cs', FLAT_KERNEL_CS);
      c.setAt('ctrlreg', 3, argBig(cpu, A_L4_MFN) << 12n);
      setResult(cpu, 0, vcpuOp(cpu, VCPUOP_is_up, 1));
      setResult(cpu, 1, vcpuOp(cpu, VCPUOP_up, 1));
      setResult(cpu, 2, vcpuOp(cpu, VCPUOP_initialise, 1, ctxVa));
      setResult(cpu, 3, vcpuOp(cpu, VCPUOP_initialise, 1, ctxVa));
      setResult(cpu, 4, vcpuOp(cpu, VCPUOP_up, 1));
      setResult(cpu, 5, vcpuOp(cpu, VCPUOP_is_up, 1));
      jump(cpu, smpKernel.addr.wait!);
    },
    wait(cpu: GuestCpu) {
      if (getVar(cpu, 1) < 10) {
        incVar(cpu, 0);
        yieldCpu(cpu);
        return;
      }
      setResult(cpu, 6, vcpuOp(cpu, VCPUOP_down, 1));
      setResult(cpu, 7, vcpuOp(cpu, VCPUOP_is_up, 1));
      // vCPU 0 is the last one up: this powers the domain off.
      setResult(cpu, 8, vcpuOp(cpu, VCPUOP_down, 0));
    },
    secondary(cpu: GuestCpu) {
      setResult(cpu, 10, cpu.vcpuId);
      incVar(cpu, 1);
      yieldCpu(cpu);
    },
  },
});

/*
 * Moves its vcpu_info to (MFN A_PARAM, offset 64): results 0 and 1 are the
 * first and a second registration; result 2 a port offered to dom0. Then
 * spins.
 */
export const vcpuInfoKernel: TestKernel = defineKernel({
  name: 'vcpuinfo',
  ...IMAGE,
  textBase: 0x8000_9000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      const r = scratch(cpu, vcpu_register_vcpu_info);
      r.set('mfn', argBig(cpu, A_PARAM));
      r.set('offset', 64);
      setResult(cpu, 0, vcpuOp(cpu, VCPUOP_register_vcpu_info, 0, r.base));
      setResult(cpu, 1, vcpuOp(cpu, VCPUOP_register_vcpu_info, 0, r.base));
      setResult(cpu, 2, allocUnbound(cpu, 0));
      jump(cpu, vcpuInfoKernel.addr.spin!);
    },
    spin(cpu: GuestCpu) {
      incVar(cpu, 0);
      yieldCpu(cpu);
    },
  },
});

/*
 * Periodic timer of A_PARAM ns; counts VIRQ_TIMER upcalls in var 1 and
 * stops the timer after A_PARAM+1 of them, then powers off. result 0 is
 * the set_periodic_timer answer, result 1 a period below Xen's minimum.
 */
export const periodicKernel: TestKernel = defineKernel({
  name: 'periodic',
  ...IMAGE,
  textBase: 0x8000_a000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      mapSharedInfo(cpu);
      setCallbacks(cpu, periodicKernel.addr.upcall!);
      setVar(cpu, 0, bindVirq(cpu, VIRQ_TIMER));
      const p = scratch(cpu, vcpu_set_periodic_timer);
      p.set('period_ns', 1000n);
      setResult(cpu, 1, vcpuOp(cpu, VCPUOP_set_periodic_timer, 0, p.base));
      p.set('period_ns', argBig(cpu, A_PARAM));
      setResult(cpu, 0, vcpuOp(cpu, VCPUOP_set_periodic_timer, 0, p.base));
      jump(cpu, periodicKernel.addr.idle!);
      block(cpu);
    },
    upcall(cpu: GuestCpu) {
      for (const port of takeEvents(cpu)) if (port === getVar(cpu, 0)) incVar(cpu, 1);
    },
    idle(cpu: GuestCpu) {
      if (getVar(cpu, 1) >= arg(cpu, A_PARAM + 1)) {
        vcpuOp(cpu, VCPUOP_stop_periodic_timer, 0);
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      block(cpu);
    },
  },
});
