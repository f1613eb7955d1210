/*
 * callout(9): functions run from the clock interrupt a number of ticks
 * from now, kept entirely in guest memory.
 *
 * A pending callout sits in bucket `c_time % CALLWHEEL_SIZE` of the timing
 * wheel in the kernel globals. Each hardclock tick looks at one bucket and
 * moves the callouts due now to the `calltodo` list, in the order they
 * were scheduled, then softclock runs that list. Moving first and running
 * second means a handler may stop, reset or reschedule any callout,
 * including itself and the ones due after it, without upsetting the walk.
 *
 * Handlers run in interrupt context (no curlwp): they may wake threads,
 * schedule callouts and print, never sleep. A handler is a kernel symbol
 * called as `func(cpu, arg)`.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { callout, CALLOUT_PENDING, CALLOUT_FIRED, CALLOUT_INVOKING, CALLOUT_MAGIC, CALLWHEEL_SIZE } from '../sys/callout.js';
import { kglobals, kg_addr } from '../sys/kernel.js';
import { tailq_entry, TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE, TAILQ_INSERT_TAIL } from '../sys/queue.js';
import { vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab, kcall, ksymresolve, type KSym } from './kern_ksyms.js';
import { panic } from './subr_prf.js';

const C_LIST = callout.offsetOf('c_list');

function callout_view(cpu: GuestCpu, c: number) {
  return callout.view(cpu.mem, c);
}

function callout_check(cpu: GuestCpu, c: number, who: string): ReturnType<typeof callout_view> {
  const v = callout_view(cpu, c);
  if (v.get('c_magic') !== CALLOUT_MAGIC) panic(cpu, '%s: callout %p not initialized', who, c);
  return v;
}

function callout_now(cpu: GuestCpu): number {
  return vu64(kglobals(cpu), 'kg_hardclock_ticks');
}

function callout_bucket(t: number): number {
  return kg_addr('kg_callwheel') + (t % CALLWHEEL_SIZE) * tailq_entry.size;
}

function callout_dequeue(cpu: GuestCpu, c: number): void {
  TAILQ_REMOVE(cpu.mem, c + C_LIST);
  const g = kglobals(cpu);
  g.set('kg_ncallout', g.get('kg_ncallout') - 1);
}

/** Prepare a callout (zeroes it; `flags` are kept for the owner). */
export function callout_init(cpu: GuestCpu, c: number, flags = 0): void {
  cpu.mem.fill(c, callout.size, 0);
  const v = callout_view(cpu, c);
  v.set('c_magic', CALLOUT_MAGIC);
  v.set('c_flags', flags & ~(CALLOUT_PENDING | CALLOUT_FIRED | CALLOUT_INVOKING));
}

/** A callout must not be pending when its memory goes away. */
export function callout_destroy(cpu: GuestCpu, c: number): void {
  const v = callout_check(cpu, c, 'callout_destroy');
  if (v.get('c_flags') & CALLOUT_PENDING) panic(cpu, 'callout_destroy: callout %p still pending', c);
  v.set('c_magic', 0);
}

/** Set what the callout will call: `func(cpu, arg)`. */
export function callout_setfunc(cpu: GuestCpu, c: number, func: KSym, arg: number): void {
  const v = callout_check(cpu, c, 'callout_setfunc');
  vptr_set(v, 'c_func', ksymresolve(cpu, func));
  vptr_set(v, 'c_arg', arg);
}

/**
 * Run the callout `ticks` ticks from now (at least 1), replacing any
 * earlier schedule.
 */
export function callout_schedule(cpu: GuestCpu, c: number, ticks: number): void {
  const v = callout_check(cpu, c, 'callout_schedule');
  if (vptr(v, 'c_func') === 0) panic(cpu, 'callout_schedule: callout %p has no function', c);
  const flags = v.get('c_flags');
  if (flags & CALLOUT_PENDING) callout_dequeue(cpu, c);
  const t = callout_now(cpu) + (ticks >= 1 ? Math.floor(ticks) : 1);
  vu64_set(v, 'c_time', t);
  TAILQ_INSERT_TAIL(cpu.mem, callout_bucket(t), c + C_LIST);
  v.set('c_flags', (flags | CALLOUT_PENDING) & ~(CALLOUT_FIRED | CALLOUT_INVOKING));
  const g = kglobals(cpu);
  g.set('kg_ncallout', g.get('kg_ncallout') + 1);
}

/** callout_setfunc + callout_schedule. */
export function callout_reset(cpu: GuestCpu, c: number, ticks: number, func: KSym, arg: number): void {
  callout_setfunc(cpu, c, func, arg);
  callout_schedule(cpu, c, ticks);
}

/**
 * Cancel the callout if pending. Returns true when it had already fired
 * since it was last scheduled (its handler ran or is running), as NetBSD.
 */
export function callout_stop(cpu: GuestCpu, c: number): boolean {
  const v = callout_check(cpu, c, 'callout_stop');
  const flags = v.get('c_flags');
  if (flags & CALLOUT_PENDING) callout_dequeue(cpu, c);
  v.set('c_flags', flags & ~(CALLOUT_PENDING | CALLOUT_FIRED));
  return (flags & CALLOUT_FIRED) !== 0;
}

/** On one vCPU with handlers run to completion, halting is stopping. */
export function callout_halt(cpu: GuestCpu, c: number): boolean {
  return callout_stop(cpu, c);
}

export function callout_pending(cpu: GuestCpu, c: number): boolean {
  return (callout_check(cpu, c, 'callout_pending').get('c_flags') & CALLOUT_PENDING) !== 0;
}

export function callout_expired(cpu: GuestCpu, c: number): boolean {
  return (callout_check(cpu, c, 'callout_expired').get('c_flags') & CALLOUT_FIRED) !== 0;
}

export function callout_invoking(cpu: GuestCpu, c: number): boolean {
  return (callout_check(cpu, c, 'callout_invoking').get('c_flags') & CALLOUT_INVOKING) !== 0;
}

export function callout_ack(cpu: GuestCpu, c: number): void {
  const v = callout_check(cpu, c, 'callout_ack');
  v.set('c_flags', v.get('c_flags') & ~CALLOUT_INVOKING);
}

/** Tick at which a pending callout is due. */
export function callout_when(cpu: GuestCpu, c: number): number {
  return vu64(callout_check(cpu, c, 'callout_when'), 'c_time');
}

/** From hardclock (ticks already advanced): move what is due, then run it. */
export function callout_hardclock(cpu: GuestCpu): void {
  const t = callout_now(cpu);
  const bucket = callout_bucket(t);
  const todo = kg_addr('kg_calltodo');
  for (let link = TAILQ_FIRST(cpu.mem, bucket); link !== 0; ) {
    const next = TAILQ_NEXT(cpu.mem, bucket, link);
    if (vu64(callout_view(cpu, link - C_LIST), 'c_time') <= t) {
      TAILQ_REMOVE(cpu.mem, link);
      TAILQ_INSERT_TAIL(cpu.mem, todo, link);
    }
    link = next;
  }
  softclock(cpu);
}

/** Run the callouts on the due list, in order. */
export function softclock(cpu: GuestCpu): void {
  const todo = kg_addr('kg_calltodo');
  for (let link = TAILQ_FIRST(cpu.mem, todo); link !== 0; link = TAILQ_FIRST(cpu.mem, todo)) {
    const c = link - C_LIST;
    callout_dequeue(cpu, c);
    const v = callout_view(cpu, c);
    v.set('c_flags', (v.get('c_flags') & ~CALLOUT_PENDING) | CALLOUT_FIRED | CALLOUT_INVOKING);
    kcall(cpu, vptr(v, 'c_func'), vptr(v, 'c_arg'));
  }
}

export const kern_timeout_ksyms = ksymtab({
  callout_view, callout_check, callout_now, callout_bucket, callout_dequeue,
  callout_init, callout_destroy, callout_setfunc, callout_schedule, callout_reset, callout_stop, callout_halt,
  callout_pending, callout_expired, callout_invoking, callout_ack, callout_when, callout_hardclock, softclock,
});
