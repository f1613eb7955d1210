/*
 * Kernel-wide parameters (the part of <sys/param.h> this kernel uses).
 */

/** Clock ticks per second: NetBSD/xen runs hardclock at HZ = 100. */
export const HZ = 100;
/** Longest lwp or device-driver name, including no terminator (MAXCOMLEN). */
export const MAXCOMLEN = 16;

/*
 * Scheduling priorities: higher runs first, FIFO among equals. The values
 * follow NetBSD's bands (user threads below kernel threads below soft
 * interrupts) without claiming its exact numbers.
 */
export const PRI_USER = 0;
export const PRI_KERNEL = 64;
export const PRI_KTHREAD = 96;
export const PRI_SOFTCLOCK = 160;

/** Milliseconds -> ticks, rounding up (never 0 for a positive delay). */
export function mstohz(ms: number): number {
  return ms <= 0 ? 0 : Math.ceil((ms * HZ) / 1000);
}
/** Ticks -> milliseconds. */
export function hztoms(ticks: number): number {
  return Math.floor((ticks * 1000) / HZ);
}
