/*
 * Sleeping, waking and switching, continuation style.
 *
 * The vCPU's `rip` normally holds `mi_switch`. Each time the machine enters
 * it, mi_switch takes the first lwp off the run queue and runs ONE step of
 * it: `cont(cpu, arg, error)`. The step ends by saying where to continue:
 *
 *   tsleep(cpu, wchan, timo, cont)   sleep until wakeup(wchan) or timo ticks
 *   kpause(cpu, wmesg, timo, cont)   sleep timo ticks
 *   preempt(cpu, cont)               stay runnable, behind its equals
 *   (nothing) or lwp_exit(cpu)       the thread is finished and is freed
 *
 * and then returns; the JS stack unwinds to mi_switch, which returns to the
 * machine. Nothing of the step survives except what it wrote to guest
 * memory (the lwp, its frame, the queues) and the registers, so the vCPU
 * can be saved between any two entries.
 *
 * When nothing is runnable, mi_switch sets `rip` to `cpu_idle` and blocks
 * the vCPU with SCHEDOP_block. The next event (a timer tick, a ring
 * notification) enters the kernel again: the upcall runs first, its
 * handlers wake threads, then cpu_idle looks at the run queue again.
 *
 * A step may itself make a descheduling hypercall (the suspend hypercall):
 * it sets `rip` to its own continuation before the call, and mi_switch,
 * which set `rip` before starting the step, never touches it afterwards.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import type { Vaddr } from '../../hypervisor/public/types.js';
import { __HYPERVISOR_sched_op } from '../../hypervisor/public/xen.js';
import { SCHEDOP_block } from '../../hypervisor/public/sched.js';
import { lwp, LSONPROC, LSSLEEP, LSZOMB, LW_TIMEDOUT } from '../sys/lwp.js';
import { kglobals, kg_addr, curlwp, curlwp_set, curcpu_addr, cpu_data, SLEEPQ_HASH_SIZE } from '../sys/kernel.js';
import { tailq_entry, TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE, TAILQ_INSERT_TAIL } from '../sys/queue.js';
import { EWOULDBLOCK } from '../sys/errno.js';
import { strlcpy, vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab, ksymaddr, ksymname, ksymresolve, ksymvalid, kcall, type KSym } from './kern_ksyms.js';
import { callout_reset, callout_stop } from './kern_timeout.js';
import { sched_nextlwp, setrunnable } from './kern_runq.js';
import { lwp_reap, lwp_frame_of } from './kern_lwp.js';
import { panic } from './subr_prf.js';

/** Host-side trace of the scheduler (DEBUG=guest:sched); never guest state. */
const dbg = createDebug('guest:sched');

const L_RUNQ = lwp.offsetOf('l_runq');
const L_TIMEOUT = lwp.offsetOf('l_timeout_ch');
const L_WMESG = lwp.offsetOf('l_wmesg');

/** Sleep queue bucket of a wait channel. */
function sleepq_hash(wchan: number): number {
  return kg_addr('kg_sleepq') + ((Math.floor(wchan / 16) ^ Math.floor(wchan / 65536)) & (SLEEPQ_HASH_SIZE - 1)) * tailq_entry.size;
}

/** Put the current lwp to sleep: shared by tsleep and kpause. */
function sleepq_enter(cpu: GuestCpu, who: string, wchan: number, wmesg: string, timo: number, cont: KSym): void {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, '%s: not called from an lwp', who);
  const v = lwp.view(cpu.mem, l);
  if (v.get('l_stat') !== LSONPROC) panic(cpu, '%s: lwp %u already gave up the cpu this step', who, v.get('l_lid'));
  const contAddr = ksymresolve(cpu, cont);
  if (contAddr === 0) panic(cpu, '%s: no continuation', who);
  vptr_set(v, 'l_cont', contAddr);
  vptr_set(v, 'l_wchan', wchan);
  strlcpy(cpu.mem, l + L_WMESG, wmesg, 16);
  vu64_set(v, 'l_slptime', vu64(kglobals(cpu), 'kg_hardclock_ticks'));
  v.set('l_flag', v.get('l_flag') & ~LW_TIMEDOUT);
  v.set('l_sleeperr', 0);
  v.set('l_stat', LSSLEEP);
  if (wchan !== 0) TAILQ_INSERT_TAIL(cpu.mem, sleepq_hash(wchan), l + L_RUNQ);
  if (timo > 0) callout_reset(cpu, l + L_TIMEOUT, timo, 'sleepq_timeout', l);
}

/** End a sleep with result `error` and make the lwp runnable. */
function sleepq_wake(cpu: GuestCpu, l: number, error: number): void {
  const v = lwp.view(cpu.mem, l);
  if (vptr(v, 'l_wchan') !== 0) TAILQ_REMOVE(cpu.mem, l + L_RUNQ);
  callout_stop(cpu, l + L_TIMEOUT);
  vptr_set(v, 'l_wchan', 0);
  cpu.mem.fill(l + L_WMESG, 16, 0);
  v.set('l_sleeperr', error);
  setrunnable(cpu, l);
}

/**
 * Sleep on `wchan` (any non-zero address) until wakeup(wchan), or for at
 * most `timo` ticks when timo > 0. The thread continues at
 * `cont(cpu, arg, error)` with error 0 when woken, EWOULDBLOCK on timeout.
 * The calling step must return right after.
 */
export function tsleep(cpu: GuestCpu, wchan: number, timo: number, cont: KSym, wmesg = 'tsleep'): void {
  if (wchan === 0) panic(cpu, 'tsleep: wait channel 0');
  sleepq_enter(cpu, 'tsleep', wchan, wmesg, timo, cont);
}

/**
 * Sleep for `timo` ticks (at least 1); nothing but the timeout ends it.
 * Continues at `cont(cpu, arg, EWOULDBLOCK)`.
 */
export function kpause(cpu: GuestCpu, wmesg: string, timo: number, cont: KSym): void {
  sleepq_enter(cpu, 'kpause', 0, wmesg, Math.max(1, timo), cont);
}

/** Give up the cpu but stay runnable; continue at `cont` (NetBSD's yield). */
export function preempt(cpu: GuestCpu, cont: KSym): void {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, 'preempt: not called from an lwp');
  const v = lwp.view(cpu.mem, l);
  if (v.get('l_stat') !== LSONPROC) panic(cpu, 'preempt: lwp %u already gave up the cpu this step', v.get('l_lid'));
  vptr_set(v, 'l_cont', ksymresolve(cpu, cont));
  setrunnable(cpu, l);
}

/** Wake every thread sleeping on `wchan`, in the order they went to sleep. */
export function wakeup(cpu: GuestCpu, wchan: number): number {
  const head = sleepq_hash(wchan);
  let n = 0;
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; ) {
    const next = TAILQ_NEXT(cpu.mem, head, link);
    const l = link - L_RUNQ;
    if (vptr(lwp.view(cpu.mem, l), 'l_wchan') === wchan) {
      sleepq_wake(cpu, l, 0);
      n++;
    }
    link = next;
  }
  return n;
}

/** Wake the thread that has slept longest on `wchan`, if any. */
export function wakeup_one(cpu: GuestCpu, wchan: number): number {
  const head = sleepq_hash(wchan);
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const l = link - L_RUNQ;
    if (vptr(lwp.view(cpu.mem, l), 'l_wchan') === wchan) {
      sleepq_wake(cpu, l, 0);
      return 1;
    }
  }
  return 0;
}

/** Callout handler of a sleep's timeout: end it with EWOULDBLOCK. */
export function sleepq_timeout(cpu: GuestCpu, l: number): void {
  const v = lwp.view(cpu.mem, l);
  if (v.get('l_stat') !== LSSLEEP) return;
  v.set('l_flag', v.get('l_flag') | LW_TIMEDOUT);
  sleepq_wake(cpu, l, EWOULDBLOCK);
}

/**
 * The scheduler: the continuation the vCPU sits at. Runs one step of the
 * next runnable lwp, or blocks the vCPU when there is none.
 */
export function mi_switch(cpu: GuestCpu): void {
  const l = sched_nextlwp(cpu);
  const ci = cpu_data.view(cpu.mem, curcpu_addr(cpu));
  if (l === 0) {
    if (dbg.enabled) dbg('vcpu%d: idle, SCHEDOP_block', cpu.vcpuId);
    vu64_set(ci, 'cpu_nidle', vu64(ci, 'cpu_nidle') + 1);
    cpu.regs.setVa('rip', ksymaddr(cpu, 'cpu_idle'));
    cpu.hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0);
    return;
  }
  cpu.regs.setVa('rip', ksymaddr(cpu, 'mi_switch'));
  const v = lwp.view(cpu.mem, l);
  v.set('l_stat', LSONPROC);
  v.set('l_cpu', cpu.vcpuId);
  vu64_set(v, 'l_nsteps', vu64(v, 'l_nsteps') + 1);
  vu64_set(ci, 'cpu_nswtch', vu64(ci, 'cpu_nswtch') + 1);
  const error = v.get('l_sleeperr');
  v.set('l_sleeperr', 0);
  curlwp_set(cpu, l);
  if (dbg.enabled) dbg('vcpu%d: lwp %d step at %s', cpu.vcpuId, v.get('l_lid'), ksymname(cpu, vptr(v, 'l_cont')));
  const rsp = cpu.regs.get('rsp');
  cpu.regs.setVa('rsp', lwp_frame_of(l) as Vaddr);
  const cont = vptr(v, 'l_cont');
  if (!ksymvalid(cpu, cont)) panic(cpu, 'mi_switch: lwp %u has no valid continuation (%p)', v.get('l_lid'), cont);
  kcall(cpu, cont, vptr(v, 'l_arg'), error);
  cpu.regs.set('rsp', rsp);
  curlwp_set(cpu, 0);
  const stat = v.get('l_stat');
  if (stat === LSONPROC || stat === LSZOMB) {
    v.set('l_stat', LSZOMB);
    lwp_reap(cpu, l);
  }
}

/** Where a vCPU with nothing to do waits: look for work again. */
export function cpu_idle(cpu: GuestCpu): void {
  mi_switch(cpu);
}

export const kern_synch_ksyms = ksymtab({
  sleepq_hash, sleepq_enter, sleepq_wake, tsleep, kpause, preempt, wakeup, wakeup_one, sleepq_timeout, mi_switch, cpu_idle,
});
