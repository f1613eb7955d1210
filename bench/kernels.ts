/*
 * Kernels the benchmarks run: a hypercall loop. (The event channel bench
 * uses the ping kernel of the tests.)
 */
import type { GuestCpu } from '../hypervisor/public/cpu.js';
import { __HYPERVISOR_xen_version, XENVER_version } from '../hypervisor/public/xen.js';
import { SHUTDOWN_poweroff } from '../hypervisor/public/sched.js';
import { defineKernel, type TestKernel } from '../tests/kernels/image.js';
import { VIRT_BASE, A_PARAM, arg, getVar, setVar, shutdown, yieldCpu } from '../tests/kernels/guest.js';

/** Calls per entry: long enough that the entry itself does not dominate. */
export const CALLS_PER_ENTRY = 10_000;

/** Makes A_PARAM xen_version calls, CALLS_PER_ENTRY per entry, then powers off. */
export const hypercallLoopKernel: TestKernel = defineKernel({
  name: 'bench-hypercall',
  virtBase: VIRT_BASE,
  imageSize: 4096,
  textBase: 0x8000_f000_0000,
  symbols: {
    start(cpu: GuestCpu) {
      const done = getVar(cpu, 0);
      const total = arg(cpu, A_PARAM);
      if (done >= total) {
        shutdown(cpu, SHUTDOWN_poweroff);
        return;
      }
      const n = Math.min(CALLS_PER_ENTRY, total - done);
      let bad = 0;
      for (let i = 0; i < n; i++) if (cpu.hypercall(__HYPERVISOR_xen_version, XENVER_version) <= 0) bad++;
      if (bad !== 0) throw new Error(`${bad} xen_version calls failed`);
      setVar(cpu, 0, done + n);
      yieldCpu(cpu);
    },
  },
});
