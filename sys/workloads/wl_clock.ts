/*
 * The `clock` workload: once a tick, check the guest's two clocks.
 *
 * System time (xen_global_systime_ns, guest time) must never go back. The
 * clock code clamps what it hands out, so the check keeps its own record
 * of the latest value it saw, in this workload's state: a resume that
 * rewound the clock's memory (or its offset) is caught here, as are two
 * reads within one step that disagree. Counter `backwards`.
 *
 * Wall clock: the reference is dom0's, i.e. the wall clock the hypervisor
 * publishes (shared_info wc_sec/wc_nsec + Xen system time, read through
 * xen_wallclock_ns). The guest's own notion of the time of day, like a
 * NetBSD timecounter's, is "the wall time at a baseline plus the system
 * time elapsed since": W0 + (S - S0). The check measures how far that
 * drifts from the published wall clock:
 *
 *     skew = (W - W0) - (S - S0)
 *
 * `wallclock_skew_ms` is the largest |skew| (ms, rounded down) since the
 * last baseline. On one machine both clocks come from the same Xen time,
 * so it stays 0. When |skew| exceeds `clock_tol_ms=` (default 100 ms) the
 * guest's time of day is resynchronised to the published one (new
 * baseline, counted in `wallclock_resyncs`, one console line): what a
 * restore or migration does, since system time does not advance while a
 * domain is saved but the wall clock does (NetBSD never re-reads the wall
 * clock on resume; this does). The skew seen just before a resync is
 * printed, not kept in the counter.
 *
 * Counters: ticks (samples), backwards, wallclock_skew_ms,
 * wallclock_resyncs.
 *
 *   struct clock_wl {
 *       uint64_t cw_last;       // latest system time seen (ns)
 *       uint64_t cw_base_sys;   // S0
 *       uint64_t cw_base_wall;  // W0
 *       uint64_t cw_skew_ns;    // max |skew| since the baseline
 *       uint32_t cw_tol_ms;
 *       uint32_t cw_reported;   // backwards steps printed
 *       int32_t  cw_c[4];       // counter indices
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, i32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kpause } from '../kern/kern_synch.js';
import { printf } from '../kern/subr_prf.js';
import { xen_global_systime_ns, xen_wallclock_ns } from '../../arch/xen/xen/xen_clock.js';
import { xen_suspending, xen_suspend_park } from '../../arch/xen/xen/xen_suspend.js';
import { wl_from_init, wl_counter, wl_add, wl_set, wl_status, wl_fail, wl_param, wl_private, wl_private_alloc } from './workload.js';

const C_TICKS = 0;
const C_BACKWARDS = 1;
const C_SKEW = 2;
const C_RESYNCS = 3;
const CLOCK_REPORT_MAX = 8;
const NS_PER_MS = 1_000_000n;

export const clock_wl = struct('struct clock_wl', {
  cw_last: u64,
  cw_base_sys: u64,
  cw_base_wall: u64,
  cw_skew_ns: u64,
  cw_tol_ms: u32,
  cw_reported: u32,
  cw_c: array(i32, 4),
});

function cw_view(cpu: GuestCpu, wl: number) {
  return clock_wl.view(cpu.mem, wl_private(cpu, wl));
}

/** First step: counters, tolerance, baseline. */
export function workload_clock(cpu: GuestCpu, wl: number, _error: number): void {
  if (wl_from_init(cpu, wl)) return;
  if (wl_private_alloc(cpu, wl, clock_wl.size) === 0) {
    wl_fail(cpu, wl, 'no memory for its state');
    return;
  }
  const v = cw_view(cpu, wl);
  for (const [i, name] of ['ticks', 'backwards', 'wallclock_skew_ms', 'wallclock_resyncs'].entries()) v.setAt('cw_c', i, wl_counter(cpu, wl, name));
  v.set('cw_tol_ms', wl_param(cpu, 'clock_tol_ms', 100, 1, 86_400_000));
  const s = xen_global_systime_ns(cpu);
  v.set('cw_last', s);
  v.set('cw_base_sys', s);
  v.set('cw_base_wall', xen_wallclock_ns(cpu));
  wl_status(cpu, wl, 'running');
  kpause(cpu, 'clock', 1, 'clock_step');
}

function clock_backwards(cpu: GuestCpu, wl: number, now: bigint, last: bigint): void {
  const v = cw_view(cpu, wl);
  wl_add(cpu, wl, v.getAt('cw_c', C_BACKWARDS));
  const n = v.get('cw_reported');
  if (n < CLOCK_REPORT_MAX) {
    printf(cpu, 'clock: system time went back %lu ns (%lu after %lu)\n', last - now, now, last);
    v.set('cw_reported', n + 1);
  }
}

/** One sample a tick. */
export function clock_step(cpu: GuestCpu, wl: number, _error: number): void {
  if (xen_suspending(cpu)) {
    xen_suspend_park(cpu, 'clock_step');
    return;
  }
  const v = cw_view(cpu, wl);
  const s = xen_global_systime_ns(cpu);
  const w = xen_wallclock_ns(cpu);
  const again = xen_global_systime_ns(cpu);
  const last = v.get('cw_last');
  if (s < last) clock_backwards(cpu, wl, s, last);
  if (again < s) clock_backwards(cpu, wl, again, s);
  const top = [last, s, again].reduce((a, b) => (b > a ? b : a));
  v.set('cw_last', top);

  const skew = (w - v.get('cw_base_wall')) - (s - v.get('cw_base_sys'));
  const abs = skew < 0n ? -skew : skew;
  if (abs > BigInt(v.get('cw_tol_ms')) * NS_PER_MS) {
    printf(cpu, 'clock: wall clock %s system time by %lu ms; time of day resynchronised\n', skew > 0n ? 'ahead of' : 'behind',
      abs / NS_PER_MS);
    wl_add(cpu, wl, v.getAt('cw_c', C_RESYNCS));
    v.set('cw_base_sys', s);
    v.set('cw_base_wall', w);
    v.set('cw_skew_ns', 0n);
  } else if (abs > v.get('cw_skew_ns')) {
    v.set('cw_skew_ns', abs);
  }
  wl_set(cpu, wl, v.getAt('cw_c', C_SKEW), v.get('cw_skew_ns') / NS_PER_MS);
  wl_add(cpu, wl, v.getAt('cw_c', C_TICKS));
  kpause(cpu, 'clock', 1, 'clock_step');
}

export const wl_clock_ksyms = ksymtab({ cw_view, workload_clock, clock_backwards, clock_step });
