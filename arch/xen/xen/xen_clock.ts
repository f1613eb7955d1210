/*
 * The Xen clock (NetBSD's arch/xen/xen/xen_clock.c): system time from the
 * vcpu_time_info Xen keeps in shared_info, the HZ tick, and the wall clock.
 *
 * System time: Xen publishes, per vCPU, a TSC stamp and the system time
 * (ns since the machine's boot) at that stamp, with the factor to scale
 * TSC ticks to ns. Now = system_time + ((tsc - tsc_timestamp) << shift) *
 * mul >> 32, read under the record's version (odd while Xen writes it;
 * changed if Xen wrote it while we read): retry until it is stable. Guest
 * time adds xcs_offset (0 until a resume needs it) and never goes back:
 * xen_global_systime_ns hands out at least the last value it handed out.
 *
 * The tick: a one-shot timer (VCPUOP_set_singleshot_timer) for the next
 * tick boundary, re-armed from the VIRQ_TIMER handler, which runs
 * hardclock() once per whole tick that has passed since the last one it
 * ran (several after a long block, none after an early event). After a
 * jump of more than a minute it runs a minute's worth and skips the rest
 * (counted in xc_lost): callouts stay in order, and a restored guest does
 * not spend its first entry running a day of ticks.
 *
 * Wall clock: wc_sec/wc_nsec (+ wc_sec_hi) is the wall time at system
 * time 0, under wc_version; the wall time now is that plus system time.
 * It is read afresh every time, so a restore onto a machine with another
 * clock is seen at once.
 *
 * Suspend and resume (xen_suspend.ts): xen_suspendclocks stops the tick;
 * xen_resumeclocks(cpu, newDomain) starts it again on the VIRQ_TIMER port
 * events_resume bound. After a restore into a new domain (another machine,
 * or the same one later) Xen's system time and the TSC are not the ones
 * the guest knew: the offset is set so that guest time carries on from
 * the last value it handed out (time spent saved does not count, as
 * CLOCK_MONOTONIC does not count a suspend), and the wall clock is read
 * afresh from the new shared_info (NetBSD never re-reads it). After a
 * cancelled suspend Xen's time went on and so does guest time.
 *
 * API: xen_global_systime_ns(cpu) -> bigint ns (guest time, monotonic);
 * xen_vcputime_systime_ns(cpu) -> bigint ns (Xen's, this vCPU);
 * xen_wallclock_ns(cpu) -> bigint ns since the Unix epoch.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { vcpu_info, vcpu_time_info, shared_info, VIRQ_TIMER } from '../../../hypervisor/public/xen.js';
import { VCPUOP_set_singleshot_timer, VCPUOP_stop_singleshot_timer } from '../../../hypervisor/public/vcpu.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { panic, aprint_normal, aprint_error } from '../../../sys/kern/subr_prf.js';
import { hardclock } from '../../../sys/kern/kern_clock.js';
import { HZ } from '../../../sys/sys/param.js';
import { MAXCPUS } from '../include/vmparam.js';
import { xmd, xen_vcpu_info_va, xen_shared_info_va } from '../include/xen.js';
import { HYPERVISOR_vcpu_op } from '../include/hypercalls.js';
import { bind_virq_to_evtch, event_set_handler, hypervisor_unmask_event, evtchn_virq_port } from './evtchn.js';

const dbg = createDebug('guest:clock');

export const NS_PER_SEC = 1_000_000_000n;
/** Length of a tick: 1/HZ s. */
export const NS_PER_TICK = NS_PER_SEC / BigInt(HZ);
/** Most ticks one timer event catches up on. */
export const XEN_CLOCK_MAX_CATCHUP = 60 * HZ;
/** Reads of a time record before giving up on it ever being stable. */
const VERSION_RETRIES = 1000;

const TIME = vcpu_info.offsetOf('time');
const T_VERSION = vcpu_time_info.offsetOf('version');
const T_TSC = vcpu_time_info.offsetOf('tsc_timestamp');
const T_SYS = vcpu_time_info.offsetOf('system_time');
const T_MUL = vcpu_time_info.offsetOf('tsc_to_system_mul');
const T_SHIFT = vcpu_time_info.offsetOf('tsc_shift');
const WC_VERSION = shared_info.offsetOf('wc_version');
const WC_SEC = shared_info.offsetOf('wc_sec');
const WC_NSEC = shared_info.offsetOf('wc_nsec');
const WC_SEC_HI = shared_info.offsetOf('wc_sec_hi');

function xen_clock_view(cpu: GuestCpu) {
  return xmd(cpu).sub('xm_clock');
}

function xen_clock_cpu_view(cpu: GuestCpu) {
  if (!(cpu.vcpuId >= 0 && cpu.vcpuId < MAXCPUS)) panic(cpu, 'xen_clock: vCPU %d beyond MAXCPUS', cpu.vcpuId);
  return xen_clock_view(cpu).sub('xcs_cpu', cpu.vcpuId);
}

/** Xen's scale_delta: (delta << shift) * mul >> 32, a negative shift shifting right. */
export function xen_tsc_to_ns_delta(delta: bigint, mul: number, shift: number): bigint {
  const d = shift < 0 ? delta >> BigInt(-shift) : delta << BigInt(shift);
  return (d * BigInt(mul)) >> 32n;
}

/** Xen system time now, from this vCPU's time record (NetBSD's xen_vcputime_systime_ns). */
export function xen_vcputime_systime_ns(cpu: GuestCpu): bigint {
  const t = xen_vcpu_info_va(cpu) + TIME;
  const mem = cpu.mem;
  for (let i = 0; i < VERSION_RETRIES; i++) {
    const version = mem.getUint32(t + T_VERSION, true);
    if ((version & 1) !== 0) continue;
    const stamp = mem.getBigUint64(t + T_TSC, true);
    const sys = mem.getBigUint64(t + T_SYS, true);
    const mul = mem.getUint32(t + T_MUL, true);
    const shift = mem.getInt8(t + T_SHIFT);
    const tsc = cpu.rdtsc();
    if (mem.getUint32(t + T_VERSION, true) !== version) continue;
    // A TSC behind the stamp (another vCPU's record, a migration) counts as no time.
    const delta = tsc > stamp ? tsc - stamp : 0n;
    return sys + xen_tsc_to_ns_delta(delta, mul, shift);
  }
  panic(cpu, 'xen_vcputime_systime_ns: the time record never became stable');
}

/** Guest time: Xen time + offset, never less than the last value returned. */
export function xen_global_systime_ns(cpu: GuestCpu): bigint {
  const c = xen_clock_view(cpu);
  const raw = xen_vcputime_systime_ns(cpu) + c.get('xcs_offset');
  const last = c.get('xcs_last_systime');
  if (raw <= last) return last;
  c.set('xcs_last_systime', raw);
  return raw;
}

/** Wall time at Xen system time 0, in ns since the epoch (wc_version loop). */
export function xen_wallclock_base_ns(cpu: GuestCpu): bigint {
  const sh = xen_shared_info_va(cpu);
  const mem = cpu.mem;
  for (let i = 0; i < VERSION_RETRIES; i++) {
    const version = mem.getUint32(sh + WC_VERSION, true);
    if ((version & 1) !== 0) continue;
    const sec = BigInt(mem.getUint32(sh + WC_SEC, true)) + (BigInt(mem.getUint32(sh + WC_SEC_HI, true)) << 32n);
    const nsec = BigInt(mem.getUint32(sh + WC_NSEC, true));
    if (mem.getUint32(sh + WC_VERSION, true) !== version) continue;
    return sec * NS_PER_SEC + nsec;
  }
  panic(cpu, 'xen_wallclock_base_ns: the wall clock never became stable');
}

/** Wall time now, ns since the Unix epoch (NetBSD's xen_wallclock_time). */
export function xen_wallclock_ns(cpu: GuestCpu): bigint {
  return xen_wallclock_base_ns(cpu) + xen_vcputime_systime_ns(cpu);
}

/** Arm this vCPU's one-shot timer for guest time `when`. */
export function xen_timer_arm(cpu: GuestCpu, when: bigint): number {
  const xc = xen_clock_cpu_view(cpu);
  const sst = xc.sub('xc_sst');
  const deadline = when - xen_clock_view(cpu).get('xcs_offset');
  sst.set('timeout_abs_ns', deadline > 0n ? deadline : 1n);
  sst.set('flags', 0);
  return HYPERVISOR_vcpu_op(cpu, VCPUOP_set_singleshot_timer, cpu.vcpuId, sst.base);
}

/**
 * VIRQ_TIMER: run hardclock() once per tick passed since the last, then
 * arm the timer for the next tick boundary.
 */
export function xen_timer_handler(cpu: GuestCpu, _arg: number, _port: number): void {
  const xc = xen_clock_cpu_view(cpu);
  const now = xen_global_systime_ns(cpu);
  let last = xc.get('xc_hardclock_systime');
  let ticks = 0;
  while (now - last >= NS_PER_TICK && ticks < XEN_CLOCK_MAX_CATCHUP) {
    last += NS_PER_TICK;
    ticks++;
    // One vCPU drives the kernel's tick count and callouts.
    if (cpu.vcpuId === 0) hardclock(cpu);
  }
  if (now - last >= NS_PER_TICK) {
    const lost = (now - last) / NS_PER_TICK;
    last += lost * NS_PER_TICK;
    xc.set('xc_lost', xc.get('xc_lost') + lost);
    if (dbg.enabled) dbg('vcpu%d: skipped %d ticks', cpu.vcpuId, lost);
  }
  xc.set('xc_hardclock_systime', last);
  xc.set('xc_ticks', xc.get('xc_ticks') + BigInt(ticks));
  xc.set('xc_events', xc.get('xc_events') + 1n);
  const rc = xen_timer_arm(cpu, last + NS_PER_TICK);
  if (rc !== 0) panic(cpu, 'xen_timer_handler: cannot arm the timer (%d)', rc);
}

/** Days since 1970-01-01 -> civil date (proleptic Gregorian). */
export function clock_days_to_ymd(days: number): { year: number; month: number; day: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

/** Seconds since the epoch as "YYYY-MM-DD hh:mm:ss" (UTC). */
export function clock_format_utc(secs: number): string {
  const days = Math.floor(secs / 86400);
  const rem = secs - days * 86400;
  const { year, month, day } = clock_days_to_ymd(days);
  const p2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);
  return `${year}-${p2(month)}-${p2(day)} ${p2(Math.floor(rem / 3600))}:${p2(Math.floor((rem % 3600) / 60))}:${p2(rem % 60)}`;
}

/**
 * Start the clock on this vCPU (NetBSD's xen_initclocks / cpu_initclocks):
 * bind VIRQ_TIMER, take the current time as the last tick, arm the timer,
 * and say so.
 */
export function xen_initclocks(cpu: GuestCpu): void {
  const xc = xen_clock_cpu_view(cpu);
  const port = bind_virq_to_evtch(cpu, VIRQ_TIMER);
  if (port < 0) panic(cpu, 'xen_initclocks: cannot bind VIRQ_TIMER (%d)', port);
  const now = xen_global_systime_ns(cpu);
  xc.set('xc_timer_port', port);
  xc.set('xc_hardclock_systime', now);
  if (cpu.vcpuId === 0) xen_clock_view(cpu).set('xcs_boot_systime', now);
  if (event_set_handler(cpu, port, 'xen_timer_handler', 0, 'clock') !== 0) panic(cpu, 'xen_initclocks: timer port %u taken', port);
  const rc = xen_timer_arm(cpu, now + NS_PER_TICK);
  if (rc !== 0) panic(cpu, 'xen_initclocks: cannot arm the timer (%d)', rc);
  hypervisor_unmask_event(cpu, port);
  if (cpu.vcpuId !== 0) return;
  const wall = xen_wallclock_ns(cpu);
  aprint_normal(cpu, 'timecounter: Timecounter "xen_system_time" frequency 1000000000 Hz quality 10000\n');
  aprint_normal(cpu, 'xen_clock: %s UTC, system time %lu.%09lu s, %u Hz tick on event channel %u\n',
    clock_format_utc(Number(wall / NS_PER_SEC)), now / NS_PER_SEC, now % NS_PER_SEC, HZ, port);
}

/**
 * Suspend (NetBSD's xen_suspendclocks): stop this vCPU's one-shot timer.
 * (events_suspend closes the VIRQ_TIMER port itself.) Returns guest time
 * now, the last the kernel sees before the suspend hypercall.
 */
export function xen_suspendclocks(cpu: GuestCpu): bigint {
  const now = xen_global_systime_ns(cpu);
  const rc = HYPERVISOR_vcpu_op(cpu, VCPUOP_stop_singleshot_timer, cpu.vcpuId, 0);
  if (rc !== 0 && dbg.enabled) dbg('vcpu%d: stop_singleshot_timer: %d', cpu.vcpuId, rc);
  return now;
}

/**
 * Resume (NetBSD's xen_resumeclocks): in a new domain, make guest time
 * carry on from the last value handed out whatever Xen's system time is
 * now; then take the tick again on the port events_resume bound VIRQ_TIMER
 * to. Ticks missed meanwhile are caught up by the timer handler (at most
 * a minute's worth). Returns guest time now.
 */
export function xen_resumeclocks(cpu: GuestCpu, newDomain: boolean): bigint {
  const c = xen_clock_view(cpu);
  const xc = xen_clock_cpu_view(cpu);
  if (newDomain) {
    const xen = xen_vcputime_systime_ns(cpu);
    const last = c.get('xcs_last_systime');
    c.set('xcs_offset', last - xen);
    if (dbg.enabled) dbg('vcpu%d: resume: Xen time %d, guest time %d, offset %d', cpu.vcpuId, xen, last, last - xen);
  }
  c.set('xcs_resumes', c.get('xcs_resumes') + 1n);
  const port = evtchn_virq_port(cpu, VIRQ_TIMER);
  xc.set('xc_timer_port', port);
  if (port === 0) aprint_error(cpu, 'xen_clock: VIRQ_TIMER is not bound after resume: no tick\n');
  const rc = xen_timer_arm(cpu, xc.get('xc_hardclock_systime') + NS_PER_TICK);
  if (rc !== 0) aprint_error(cpu, 'xen_clock: cannot arm the timer after resume (%d)\n', rc);
  return xen_global_systime_ns(cpu);
}

export interface XenClockStats {
  readonly ticks: bigint;
  readonly lost: bigint;
  readonly events: bigint;
  readonly lastTickSystime: bigint;
  readonly timerPort: number;
  readonly bootSystime: bigint;
  readonly offset: bigint;
  readonly resumes: bigint;
  readonly lastSystime: bigint;
}

export function xen_clock_stats(cpu: GuestCpu): XenClockStats {
  const xc = xen_clock_cpu_view(cpu);
  return {
    ticks: xc.get('xc_ticks'), lost: xc.get('xc_lost'), events: xc.get('xc_events'),
    lastTickSystime: xc.get('xc_hardclock_systime'), timerPort: xc.get('xc_timer_port'),
    bootSystime: xen_clock_view(cpu).get('xcs_boot_systime'), offset: xen_clock_view(cpu).get('xcs_offset'),
    resumes: xen_clock_view(cpu).get('xcs_resumes'), lastSystime: xen_clock_view(cpu).get('xcs_last_systime'),
  };
}

export const xen_clock_ksyms = ksymtab({
  xen_clock_view, xen_clock_cpu_view, xen_tsc_to_ns_delta, xen_vcputime_systime_ns, xen_global_systime_ns,
  xen_wallclock_base_ns, xen_wallclock_ns, xen_timer_arm, xen_timer_handler, clock_days_to_ymd, clock_format_utc,
  xen_initclocks, xen_suspendclocks, xen_resumeclocks, xen_clock_stats,
});
