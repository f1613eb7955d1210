/*
 * Creating, finding and ending kernel threads (see sys/sys/lwp.ts for the
 * continuation model).
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { lwp, LSRUN, LSZOMB, LSONPROC, LW_SYSTEM } from '../sys/lwp.js';
import { kglobals, kg_addr, curlwp } from '../sys/kernel.js';
import { PRI_KTHREAD, MAXCOMLEN } from '../sys/param.js';
import { TAILQ_INSERT_TAIL, TAILQ_REMOVE, TAILQ_FIRST, TAILQ_NEXT, TAILQ_ONLIST } from '../sys/queue.js';
import { kstr_get, strlcpy, vptr, vptr_set } from '../lib/libkern/libkern.js';
import { ksymtab, ksymresolve, type KSym } from './kern_ksyms.js';
import { kmem_zalloc, kmem_free } from './subr_kmem.js';
import { callout_init, callout_stop, callout_destroy } from './kern_timeout.js';
import { sched_enqueue, sched_dequeue } from './kern_runq.js';
import { panic } from './subr_prf.js';

const L_LIST = lwp.offsetOf('l_list');
const L_RUNQ = lwp.offsetOf('l_runq');
const L_TIMEOUT = lwp.offsetOf('l_timeout_ch');
const L_FRAME = lwp.offsetOf('l_frame');
const L_NAME = lwp.offsetOf('l_name');
const L_WMESG = lwp.offsetOf('l_wmesg');

/**
 * Create a kernel thread whose first step is `cont(cpu, arg, 0)`, and make
 * it runnable. Returns the lwp's address, or 0 when memory is short.
 * (NetBSD's kthread_create, continuation style.)
 */
export function lwp_create(cpu: GuestCpu, name: string, cont: KSym, arg: number, pri = PRI_KTHREAD): number {
  const contAddr = ksymresolve(cpu, cont);
  if (contAddr === 0) panic(cpu, 'lwp_create: %s has no continuation', name);
  const l = kmem_zalloc(cpu, lwp.size);
  if (l === 0) return 0;
  const g = kglobals(cpu);
  const v = lwp.view(cpu.mem, l);
  const lid = g.get('kg_nextlid');
  g.set('kg_nextlid', lid + 1);
  v.set('l_lid', lid);
  v.set('l_stat', LSRUN);
  v.set('l_priority', pri);
  v.set('l_flag', LW_SYSTEM);
  vptr_set(v, 'l_cont', contAddr);
  vptr_set(v, 'l_arg', arg);
  strlcpy(cpu.mem, l + L_NAME, name, MAXCOMLEN);
  callout_init(cpu, l + L_TIMEOUT);
  TAILQ_INSERT_TAIL(cpu.mem, kg_addr('kg_alllwp'), l + L_LIST);
  g.set('kg_nlwp', g.get('kg_nlwp') + 1);
  sched_enqueue(cpu, l);
  return l;
}

/**
 * End the current thread: its memory is freed by the scheduler once this
 * step returns. (Returning from a step without arranging a next one does
 * the same.)
 */
export function lwp_exit(cpu: GuestCpu): void {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, 'lwp_exit: no current lwp');
  lwp.view(cpu.mem, l).set('l_stat', LSZOMB);
}

/** Free a finished lwp (the scheduler calls this after its last step). */
export function lwp_reap(cpu: GuestCpu, l: number): void {
  const v = lwp.view(cpu.mem, l);
  const stat = v.get('l_stat');
  if (stat !== LSZOMB && stat !== LSONPROC) panic(cpu, 'lwp_reap: lwp %u in state %u', v.get('l_lid'), stat);
  if (TAILQ_ONLIST(cpu.mem, l + L_RUNQ)) sched_dequeue(cpu, l);
  callout_stop(cpu, l + L_TIMEOUT);
  callout_destroy(cpu, l + L_TIMEOUT);
  TAILQ_REMOVE(cpu.mem, l + L_LIST);
  const g = kglobals(cpu);
  g.set('kg_nlwp', g.get('kg_nlwp') - 1);
  kmem_free(cpu, l, lwp.size);
}

/** Address of an lwp's frame area (L_FRAMESIZE bytes for its own state). */
export function lwp_frame_of(l: number): number {
  return l + L_FRAME;
}

/** The current thread's frame area. */
export function lwp_frame(cpu: GuestCpu): number {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, 'lwp_frame: no current lwp');
  return l + L_FRAME;
}

/** The lwp with id `lid`, or 0. */
export function lwp_find(cpu: GuestCpu, lid: number): number {
  const head = kg_addr('kg_alllwp');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    if (lwp.view(cpu.mem, link - L_LIST).get('l_lid') === lid) return link - L_LIST;
  }
  return 0;
}

export interface LwpInfo {
  readonly lid: number;
  readonly name: string;
  readonly stat: number;
  readonly priority: number;
  readonly wchan: number;
  readonly wmesg: string;
}

/** What `ps` would show about one lwp. */
export function lwp_info(cpu: GuestCpu, l: number): LwpInfo {
  const v = lwp.view(cpu.mem, l);
  return {
    lid: v.get('l_lid'), name: kstr_get(cpu.mem, l + L_NAME, MAXCOMLEN), stat: v.get('l_stat'),
    priority: v.get('l_priority'), wchan: vptr(v, 'l_wchan'), wmesg: kstr_get(cpu.mem, l + L_WMESG, 16),
  };
}

/** Every lwp, in creation order. */
export function lwp_list(cpu: GuestCpu): LwpInfo[] {
  const out: LwpInfo[] = [];
  const head = kg_addr('kg_alllwp');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) out.push(lwp_info(cpu, link - L_LIST));
  return out;
}

export const kern_lwp_ksyms = ksymtab({ lwp_create, lwp_exit, lwp_reap, lwp_frame_of, lwp_frame, lwp_find, lwp_info, lwp_list });
