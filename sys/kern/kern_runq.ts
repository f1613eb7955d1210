/*
 * The run queue: lwps in state LSRUN, highest priority first, FIFO among
 * equal priorities. One queue shared by all vCPUs: each kernel entry runs
 * to completion before any other vCPU's entry starts (the machine runs
 * entries one at a time), so no lock is needed between them.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { lwp, LSRUN } from '../sys/lwp.js';
import { kg_addr } from '../sys/kernel.js';
import { TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE, TAILQ_INSERT_TAIL, TAILQ_INSERT_BEFORE, TAILQ_ONLIST, TAILQ_COUNT } from '../sys/queue.js';
import { ksymtab } from './kern_ksyms.js';
import { panic } from './subr_prf.js';

const L_RUNQ = lwp.offsetOf('l_runq');
const L_PRIORITY = lwp.offsetOf('l_priority');

function sched_prio(cpu: GuestCpu, l: number): number {
  return cpu.mem.getInt32(l + L_PRIORITY, true);
}

/** Queue `l` behind every lwp of its priority or higher. */
export function sched_enqueue(cpu: GuestCpu, l: number): void {
  if (TAILQ_ONLIST(cpu.mem, l + L_RUNQ)) panic(cpu, 'sched_enqueue: lwp %p already queued', l);
  const head = kg_addr('kg_runq');
  const p = sched_prio(cpu, l);
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    if (sched_prio(cpu, link - L_RUNQ) < p) {
      TAILQ_INSERT_BEFORE(cpu.mem, link, l + L_RUNQ);
      return;
    }
  }
  TAILQ_INSERT_TAIL(cpu.mem, head, l + L_RUNQ);
}

/** Take `l` off the run queue. */
export function sched_dequeue(cpu: GuestCpu, l: number): void {
  TAILQ_REMOVE(cpu.mem, l + L_RUNQ);
}

/** Dequeue and return the next lwp to run, or 0 when none is runnable. */
export function sched_nextlwp(cpu: GuestCpu): number {
  const link = TAILQ_FIRST(cpu.mem, kg_addr('kg_runq'));
  if (link === 0) return 0;
  TAILQ_REMOVE(cpu.mem, link);
  return link - L_RUNQ;
}

/** Make `l` runnable (it must be on no queue). */
export function setrunnable(cpu: GuestCpu, l: number): void {
  lwp.view(cpu.mem, l).set('l_stat', LSRUN);
  sched_enqueue(cpu, l);
}

/** How many lwps wait to run. */
export function sched_nrunnable(cpu: GuestCpu): number {
  return TAILQ_COUNT(cpu.mem, kg_addr('kg_runq'));
}

export const kern_runq_ksyms = ksymtab({ sched_prio, sched_enqueue, sched_dequeue, sched_nextlwp, setrunnable, sched_nrunnable });
