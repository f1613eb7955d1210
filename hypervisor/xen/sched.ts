/*
 * The scheduler: one run queue of vCPUs, round-robin.
 *
 * A vCPU is runnable when it is up, not blocked, and its domain may run
 * (not paused, not shut down, not dying). Every change that can make a
 * vCPU runnable calls `wake`, which queues it once; `next` pops vCPUs and
 * skips any that stopped being runnable while queued. A vCPU that returns
 * from an entry still runnable goes to the back of the queue, so every
 * runnable vCPU of every domain gets one entry per round.
 *
 * Blocking follows Xen: SCHEDOP_block blocks until an event is delivered
 * to the vCPU (evtchn_upcall_pending goes 0 -> 1, the kick); SCHEDOP_poll
 * until one of its ports becomes pending (masked or not), a kick, or its
 * timeout.
 */
import type { Vcpu } from './vcpu.js';
import { dbg } from './log.js';

/** What the scheduler asks of a domain. */
export interface SchedDomain {
  readonly id: number;
  /** Not paused, not shutting down, not dying. */
  canRun(): boolean;
}

export class Scheduler {
  private queue: Vcpu[] = [];
  private head = 0;
  /** Entries made (all vCPUs), for tests and the bench. */
  entries = 0;

  constructor(private readonly domainOf: (domid: number) => SchedDomain | undefined) {}

  isRunnable(v: Vcpu): boolean {
    if (!v.up || v.blocked !== 'none') return false;
    const d = this.domainOf(v.domid);
    return d !== undefined && d.canRun();
  }

  /** Queue `v` if it is runnable and not queued yet. */
  wake(v: Vcpu): void {
    if (v.queued || !this.isRunnable(v)) return;
    v.queued = true;
    this.queue.push(v);
  }

  /** Re-examine every vCPU of a domain (unpause, resume). */
  wakeAll(vcpus: readonly Vcpu[]): void {
    for (const v of vcpus) this.wake(v);
  }

  /** The next vCPU to run, or undefined when none is runnable. */
  next(): Vcpu | undefined {
    while (this.head < this.queue.length) {
      const v = this.queue[this.head++]!;
      v.queued = false;
      if (this.head > 1024 && this.head * 2 > this.queue.length) this.compact();
      if (this.isRunnable(v)) return v;
    }
    this.compact();
    return undefined;
  }

  /** Nothing queued (some queued vCPUs may no longer be runnable). */
  get idle(): boolean {
    return this.head >= this.queue.length;
  }

  /** Block `v` (SCHEDOP_block or SCHEDOP_poll). */
  block(v: Vcpu, kind: 'block' | 'poll'): void {
    v.blocked = kind;
    dbg.sched('d%d v%d blocks (%s)', v.domid, v.id, kind);
  }

  /** Unblock `v` (an event, a poll port, a poll timeout) and queue it. */
  unblock(v: Vcpu): void {
    if (v.blocked === 'none') return;
    dbg.sched('d%d v%d wakes from %s', v.domid, v.id, v.blocked);
    v.blocked = 'none';
    this.wake(v);
  }

  /** Forget every queued vCPU of a dying domain (they are skipped anyway). */
  purge(domid: number): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const v = this.queue[i]!;
      if (v.domid === domid) v.queued = false;
    }
    this.queue = this.queue.filter((v, i) => i >= this.head && v.domid !== domid);
    this.head = 0;
  }

  private compact(): void {
    this.queue = this.queue.slice(this.head);
    this.head = 0;
  }
}
