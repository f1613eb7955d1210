/*
 * The clock interrupt, machine-independent half. The timer event handler
 * (arch/xen) works out how many ticks of 1/HZ s passed since the last one
 * and calls hardclock() once per tick, as NetBSD's xen_timer_handler does.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { kglobals } from '../sys/kernel.js';
import { vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab } from './kern_ksyms.js';
import { callout_hardclock } from './kern_timeout.js';

/** One tick: advance `hardclock_ticks` and run the callouts now due. */
export function hardclock(cpu: GuestCpu): void {
  const g = kglobals(cpu);
  vu64_set(g, 'kg_hardclock_ticks', vu64(g, 'kg_hardclock_ticks') + 1);
  callout_hardclock(cpu);
}

/** Ticks since boot (64-bit, never wraps in practice). */
export function getticks(cpu: GuestCpu): number {
  return vu64(kglobals(cpu), 'kg_hardclock_ticks');
}

/** The clock rate the kernel runs at. */
export function gethz(cpu: GuestCpu): number {
  return kglobals(cpu).get('kg_hz');
}

export const kern_clock_ksyms = ksymtab({ hardclock, getticks, gethz });
