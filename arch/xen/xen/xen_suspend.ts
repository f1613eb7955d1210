/*
 * Suspending the domain for save, migration or checkpoint, and coming back
 * (NetBSD's xen_suspend_domain, in the order of Linux's do_suspend /
 * xen_suspend): the guest half of `xl save`, `xl save -c` and `xl restore`.
 *
 * Three ways to be asked (ARCHITECTURE §6), one sequence:
 *   1. xenstore: control/shutdown = "suspend". xenbus_shutdown.ts acks it
 *      and runs the hook installed at boot (xen_suspend_domain) on the
 *      xenbus thread.
 *   2. The suspend event channel: at boot an unbound port for dom0 is
 *      allocated and its number written to device/suspend/event-channel;
 *      the toolstack binds it and signals it, without an ack. Its handler
 *      queues the same hook on the xenbus thread.
 *   3. ctrl_if's CMSG_SHUTDOWN_SUSPEND: its driver calls
 *      xen_suspend_request(cpu), which does the same.
 *
 * The sequence, continuation style on the xenbus thread (it may sleep):
 *   xen_suspend_domain    1. stop new work: XSF_SUSPENDING is set; threads
 *                            that see it park (xen_suspend_park), drivers
 *                            hold their queues. xenstore stops taking new
 *                            requests (xs_suspend; they queue) and the
 *                            outstanding replies are awaited.
 *   xen_suspend_quiesced  2. pmf_system_suspend, leaves first, all or
 *                            nothing: the devices, then xenbus0 (its pmf
 *                            suspend silences the store port: step 3's
 *                            second half). A device that refuses: every
 *                            device resumes, xenstore goes on, the domain
 *                            runs on, and it is said on the console.
 *                         4-5. xen_prepare_suspend (xen_suspend_machdep.ts):
 *                            VIRQs unbound, grant frames unmapped, tick
 *                            stopped, store/console MFNs -> PFNs, shared_info
 *                            unmapped.
 *                         6. rip = xen_resume_entry, SCHEDOP_shutdown(
 *                            SHUTDOWN_suspend) with rdx = start_info's MFN;
 *                            the thread sleeps until resume wakes it.
 *   xen_resume_entry      the vCPU comes back here, rax = 0 in a new domain
 *                         (restore), 1 in the same one (cancelled), with
 *                         events masked: xen_prepare_resume, the console,
 *                         then rip = mi_switch, events in, the thread woken.
 *   xen_suspend_resumed   on the thread again: xenstore resumed (a new ring
 *                         and every watch sent again after a restore; the
 *                         same ring after a cancel), every other device
 *                         (roots first; `*_resume_cancelled` handlers after
 *                         a cancel), a new suspend event channel after a
 *                         restore, XSF_SUSPENDING cleared, parked threads
 *                         woken, and a line on the console.
 *
 * For threads and drivers:
 *   xen_suspending(cpu)             a suspend is under way: start nothing new
 *   xen_suspend_park(cpu, cont)     sleep until it is over, then cont(cpu, arg, 0)
 *   xen_resume_kind(cpu)            XEN_RESUME_*: how the last suspend ended (a
 *                                   resume handler reads it to tell a restore,
 *                                   where every grant ref and port of the old
 *                                   domain is void, from a cancel)
 *   xen_resume_generation(cpu)      restores into a new domain so far
 *   xen_suspend_request(cpu)        ask for a suspend (interrupt context is fine):
 *                                   0 (queued; while the last suspend is still
 *                                   resuming, carried out once it is over),
 *                                   EBUSY (one is under way or already asked
 *                                   for), ENXIO (no xenbus)
 *
 * Every piece of state is in guest memory (struct xen_suspend_state,
 * include/xen_suspend.ts), so the continuation works in a fresh process.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { ksymtab, ksymaddr, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { printf, aprint_error, aprint_verbose } from '../../../sys/kern/subr_prf.js';
import { tsleep, preempt, wakeup } from '../../../sys/kern/kern_synch.js';
import { pmf_system_suspend } from '../../../sys/kern/kern_pmf.js';
import { device_lookup } from '../../../sys/kern/subr_autoconf.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { xmd_addr } from '../include/xen.js';
import {
  XSS_IDLE, XSS_SUSPENDING, XSS_SUSPENDED, XSS_RESUMING, XSF_SUSPENDING, XSF_REQUESTED, XSF_REQUESTED_LATER,
  XEN_RESUME_CANCELLED, XEN_RESUME_RESTORED, XEN_RESUME_REFUSED,
} from '../include/xen_suspend.js';
import { xs_suspend, xs_resume, xs_write_async, xenbus_set_suspend_hook, xenbus_defer, xenbus_softc_of } from '../xenbus/xenbus.js';
import { evtchn_alloc_unbound, event_set_handler, hypervisor_unmask_event, evtchn_close } from './evtchn.js';
import { NS_PER_SEC, clock_format_utc } from './xen_clock.js';
import {
  xss, xen_prepare_suspend, xen_suspend_hypercall, xen_prepare_resume, xen_resume_events, xen_pmf_device_resume,
  xen_pmf_system_resume,
} from './xen_suspend_machdep.js';

const dbg = createDebug('guest:suspend');

/** The node the toolstack reads the suspend event channel from (relative to the domain's path). */
export const SUSPEND_EVTCHN_NODE = 'device/suspend/event-channel';

/* NetBSD errno values returned here. */
const ENXIO = 6;
const ENOMEM = 12;
const EBUSY = 16;

/** Where the suspending thread sleeps across the hypercall. */
function xen_suspend_wchan(): number {
  return xmd_addr('xm_suspend.xs_state');
}

/** Where parked threads sleep until the suspend is over. */
function xen_suspend_park_wchan(): number {
  return xmd_addr('xm_suspend.xs_flags');
}

function xss_setflags(cpu: GuestCpu, set: number, clear = 0): void {
  const s = xss(cpu);
  s.set('xs_flags', ((s.get('xs_flags') | set) & ~clear) >>> 0);
}

// ---------------------------------------------------------------------------
// For threads and drivers

/** Is a suspend under way (from the request until the resume is complete)? */
export function xen_suspending(cpu: GuestCpu): boolean {
  return (xss(cpu).get('xs_flags') & XSF_SUSPENDING) !== 0;
}

/**
 * A thread that must not start new work while the domain suspends sleeps
 * here; it continues at `cont(cpu, arg, 0)` once the suspend is over (at
 * once when none is under way). Call it as a step's last action.
 */
export function xen_suspend_park(cpu: GuestCpu, cont: KSym): void {
  if (xen_suspending(cpu)) tsleep(cpu, xen_suspend_park_wchan(), 0, cont, 'suspend');
  else preempt(cpu, cont);
}

/** How the last suspend ended: XEN_RESUME_NONE, _CANCELLED, _RESTORED or _REFUSED. */
export function xen_resume_kind(cpu: GuestCpu): number {
  return xss(cpu).get('xs_resumed');
}

/** Restores into a new domain so far. */
export function xen_resume_generation(cpu: GuestCpu): number {
  return Number(xss(cpu).get('xs_generation'));
}

/**
 * Ask for a suspend (the suspend event channel's handler, ctrl_if's
 * CMSG_SHUTDOWN_SUSPEND): it runs on the xenbus thread. 0, EBUSY when one
 * is already asked for or under way, ENXIO without xenbus, ENOMEM.
 */
export function xen_suspend_request(cpu: GuestCpu): number {
  const s = xss(cpu);
  s.set('xs_requests', s.get('xs_requests') + 1n);
  if ((s.get('xs_flags') & (XSF_REQUESTED | XSF_REQUESTED_LATER)) !== 0) return EBUSY;
  if (s.get('xs_state') === XSS_RESUMING) {
    // Carried out by xen_suspend_resumed once the devices are back.
    xss_setflags(cpu, XSF_REQUESTED_LATER);
    if (dbg.enabled) dbg('vcpu%d: suspend requested while resuming: after the resume', cpu.vcpuId);
    return 0;
  }
  if (s.get('xs_state') !== XSS_IDLE) return EBUSY;
  return xen_suspend_queue(cpu);
}

/** Queue the suspend hook on the xenbus thread. */
function xen_suspend_queue(cpu: GuestCpu): number {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return ENXIO;
  if (!xenbus_defer(cpu, 'xen_suspend_domain', sc)) return ENOMEM;
  xss_setflags(cpu, XSF_REQUESTED);
  if (dbg.enabled) dbg('vcpu%d: suspend requested', cpu.vcpuId);
  return 0;
}

// ---------------------------------------------------------------------------
// Boot: the hook and the suspend event channel

/**
 * Boot, once autoconf attached xenbus0: control/shutdown = "suspend" runs
 * xen_suspend_domain, and the suspend event channel is made and
 * advertised.
 */
export function xen_suspend_init(cpu: GuestCpu): void {
  if (xenbus_set_suspend_hook(cpu, 'xen_suspend_domain') !== 0) {
    aprint_verbose(cpu, 'xen_suspend: no xenbus; the domain cannot be suspended\n');
    return;
  }
  xen_suspend_evtchn_setup(cpu);
}

/**
 * Allocate the suspend event channel (an unbound port for dom0), take its
 * events, and write its number to device/suspend/event-channel (queued:
 * it goes out as soon as xenstore is up).
 */
export function xen_suspend_evtchn_setup(cpu: GuestCpu): number {
  const s = xss(cpu);
  const port = evtchn_alloc_unbound(cpu, 0);
  if (port < 0) {
    aprint_error(cpu, 'xen_suspend: cannot allocate the suspend event channel (%d)\n', port);
    s.set('xs_evtchn', 0);
    return port;
  }
  if (event_set_handler(cpu, port, 'xen_suspend_evtchn_handler', 0, 'suspend') !== 0) {
    evtchn_close(cpu, port);
    aprint_error(cpu, 'xen_suspend: suspend event channel %u taken\n', port);
    s.set('xs_evtchn', 0);
    return -EBUSY;
  }
  hypervisor_unmask_event(cpu, port);
  s.set('xs_evtchn', port);
  xs_write_async(cpu, SUSPEND_EVTCHN_NODE, String(port));
  if (dbg.enabled) dbg('vcpu%d: suspend event channel %d', cpu.vcpuId, port);
  return port;
}

/** The toolstack signalled the suspend event channel: suspend (no ack; it watches VIRQ_DOM_EXC). */
export function xen_suspend_evtchn_handler(cpu: GuestCpu, _arg: number, port: number): void {
  const error = xen_suspend_request(cpu);
  if (error !== 0 && dbg.enabled) dbg('vcpu%d: suspend event on port %d: %d', cpu.vcpuId, port, error);
}

// ---------------------------------------------------------------------------
// The sequence (steps of the xenbus thread; arg: xenbus0's softc)

/** The suspend hook (NetBSD's xen_suspend_domain): stop new work and drain xenstore. */
export function xen_suspend_domain(cpu: GuestCpu, sc: number, _error: number): void {
  const s = xss(cpu);
  xss_setflags(cpu, 0, XSF_REQUESTED);
  if (s.get('xs_state') !== XSS_IDLE) {
    printf(cpu, 'xen_suspend: a suspend is already under way\n');
    return;
  }
  if (curlwp(cpu) === 0) {
    aprint_error(cpu, 'xen_suspend: must run on a thread\n');
    return;
  }
  s.set('xs_state', XSS_SUSPENDING);
  xss_setflags(cpu, XSF_SUSPENDING);
  printf(cpu, 'xen_suspend: suspending domain\n');
  if (dbg.enabled) dbg('vcpu%d: suspend: draining xenstore (xenbus sc %s)', cpu.vcpuId, sc.toString(16));
  xs_suspend(cpu, 'xen_suspend_quiesced');
}

/** xenstore is quiet: devices, then everything else, then the hypercall. */
export function xen_suspend_quiesced(cpu: GuestCpu, sc: number, _error: number): void {
  const s = xss(cpu);
  if (!pmf_system_suspend(cpu)) {
    s.set('xs_refusals', s.get('xs_refusals') + 1n);
    s.set('xs_resumed', XEN_RESUME_REFUSED);
    if (sc !== 0) xs_resume(cpu, sc, true);
    xen_suspend_done(cpu);
    printf(cpu, 'xen_suspend: a device refused to suspend; the domain runs on\n');
    return;
  }
  xen_prepare_suspend(cpu);
  s.set('xs_state', XSS_SUSPENDED);
  xen_suspend_hypercall(cpu, 'xen_resume_entry');
  tsleep(cpu, xen_suspend_wchan(), 0, 'xen_suspend_resumed', 'suspended');
}

/**
 * The suspend hypercall's continuation: rax = 0 in a new domain (restored
 * from an image), anything else in the same one (1: cancelled; a negative
 * errno: the hypercall failed, which is handled the same way). Events are
 * masked: the low half comes back, then the console, then events, and the
 * xenbus thread is woken for the rest.
 */
export function xen_resume_entry(cpu: GuestCpu): void {
  const s = xss(cpu);
  const rax = cpu.regs.getNum('rax');
  if (s.get('xs_state') !== XSS_SUSPENDED) {
    aprint_error(cpu, 'xen_suspend: resume continuation entered while not suspended (rax %d)\n', rax);
    cpu.regs.setVa('rip', ksymaddr(cpu, 'mi_switch'));
    return;
  }
  const newDomain = rax === 0;
  s.set('xs_rax', BigInt(rax));
  xen_prepare_resume(cpu, newDomain);
  if (newDomain) {
    s.set('xs_generation', s.get('xs_generation') + 1n);
    s.set('xs_resumed', XEN_RESUME_RESTORED);
  } else {
    s.set('xs_cancels', s.get('xs_cancels') + 1n);
    s.set('xs_resumed', XEN_RESUME_CANCELLED);
  }
  const cons = device_lookup(cpu, 'xencons', 0);
  if (cons !== 0 && !xen_pmf_device_resume(cpu, cons, !newDomain)) aprint_error(cpu, 'xen_suspend: the console did not resume\n');
  s.set('xs_state', XSS_RESUMING);
  wakeup(cpu, xen_suspend_wchan());
  cpu.regs.setVa('rip', ksymaddr(cpu, 'mi_switch'));
  xen_resume_events(cpu);
  if (dbg.enabled) dbg('vcpu%d: back from the suspend hypercall, rax %d', cpu.vcpuId, rax);
}

/** On the xenbus thread again: xenstore, the devices, the suspend channel, and new work. */
export function xen_suspend_resumed(cpu: GuestCpu, sc: number, _error: number): void {
  const s = xss(cpu);
  const newDomain = s.get('xs_resumed') === XEN_RESUME_RESTORED;
  if (sc !== 0) {
    const error = xs_resume(cpu, sc, !newDomain);
    if (error !== 0) aprint_error(cpu, 'xen_suspend: xenstore did not resume (error %d)\n', error);
  }
  if (!xen_pmf_system_resume(cpu, !newDomain)) aprint_error(cpu, 'xen_suspend: some devices did not resume\n');
  // The old domain's port died with it; dom0 learns the new one from xenstore.
  if (newDomain) xen_suspend_evtchn_setup(cpu);
  xen_suspend_done(cpu);
  const t = s.get('xs_resume_systime');
  const wall = clock_format_utc(Number(s.get('xs_resume_wallclock') / NS_PER_SEC));
  if (newDomain) {
    printf(cpu, 'xen_suspend: resumed in a new domain (restore %lu): guest time %lu.%09lu s, wall clock %s UTC\n',
      s.get('xs_generation'), t / NS_PER_SEC, t % NS_PER_SEC, wall);
  } else {
    printf(cpu, 'xen_suspend: suspend cancelled, resumed in the same domain: guest time %lu.%09lu s, wall clock %s UTC\n',
      t / NS_PER_SEC, t % NS_PER_SEC, wall);
  }
  if ((s.get('xs_flags') & XSF_REQUESTED_LATER) !== 0) {
    xss_setflags(cpu, 0, XSF_REQUESTED_LATER);
    const error = xen_suspend_queue(cpu);
    printf(cpu, error === 0
      ? 'xen_suspend: a suspend was asked for while resuming: suspending again\n'
      : 'xen_suspend: a suspend was asked for while resuming, and cannot be queued (error %d)\n', error);
  }
}

/** The suspend is over (resumed, or refused): new work may start, parked threads go on. */
function xen_suspend_done(cpu: GuestCpu): void {
  xss(cpu).set('xs_state', XSS_IDLE);
  xss_setflags(cpu, 0, XSF_SUSPENDING);
  wakeup(cpu, xen_suspend_park_wchan());
}

export interface XenSuspendStats {
  readonly state: number;
  readonly suspending: boolean;
  readonly resumed: number;
  readonly evtchn: number;
  readonly generation: number;
  readonly suspends: number;
  readonly cancels: number;
  readonly refusals: number;
  readonly requests: number;
  readonly suspendSystime: bigint;
  readonly resumeSystime: bigint;
  readonly suspendWallclock: bigint;
  readonly resumeWallclock: bigint;
}

/** What the suspend path has done (tests, diagnostics). */
export function xen_suspend_stats(cpu: GuestCpu): XenSuspendStats {
  const s = xss(cpu);
  return {
    state: s.get('xs_state'), suspending: (s.get('xs_flags') & XSF_SUSPENDING) !== 0, resumed: s.get('xs_resumed'),
    evtchn: s.get('xs_evtchn'), generation: Number(s.get('xs_generation')), suspends: Number(s.get('xs_suspends')),
    cancels: Number(s.get('xs_cancels')), refusals: Number(s.get('xs_refusals')), requests: Number(s.get('xs_requests')),
    suspendSystime: s.get('xs_suspend_systime'), resumeSystime: s.get('xs_resume_systime'),
    suspendWallclock: s.get('xs_suspend_wallclock'), resumeWallclock: s.get('xs_resume_wallclock'),
  };
}

export const xen_suspend_ksyms = ksymtab({
  xen_suspend_wchan, xen_suspend_park_wchan, xss_setflags, xen_suspending, xen_suspend_park, xen_resume_kind,
  xen_resume_generation, xen_suspend_request, xen_suspend_init, xen_suspend_evtchn_setup, xen_suspend_evtchn_handler,
  xen_suspend_domain, xen_suspend_quiesced, xen_resume_entry, xen_suspend_resumed, xen_suspend_done, xen_suspend_stats,
});
