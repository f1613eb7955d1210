/*
 * The hypercall table: handlers keyed by Xen's hypercall numbers.
 *
 * Every caller goes through `call`: guests from their vCPU's GuestCpu,
 * dom0 (host code) from its Dom0Hypercalls handle with a host-side arena
 * as its address space. An unknown number is -ENOSYS. A fault on the
 * caller's memory is -EFAULT (each handler uses guestAccess; `call` is the
 * backstop). Anything else a handler throws is a hypervisor bug: for a
 * guest it is logged to the machine log and reported to the caller's
 * `onBug` (which crashes that domain) instead of taking the machine down;
 * for host callers it propagates, since it is the host's own bug.
 */
import * as xen from '../public/xen.js';
import { ENOSYS, errnoName } from '../public/errno.js';
import { GuestPageFault } from '../public/cpu.js';
import { EFAULT_RC, type CallCtx, type HypercallHandler } from './hcall.js';
import { dbg } from './log.js';

/** Hypercall numbers are below 64 (arch hypercalls end at 55). */
export const NR_HYPERCALLS = 64;

/** __HYPERVISOR_* names by number, for logs. */
export const HYPERCALL_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [k, v] of Object.entries(xen)) {
    if (k.startsWith('__HYPERVISOR_') && typeof v === 'number' && names[v] === undefined) names[v] = k.slice(13);
  }
  return Object.freeze(names);
})();

export function hypercallName(nr: number): string {
  return HYPERCALL_NAMES[nr] ?? `hypercall_${nr}`;
}

/**
 * Sees every hypercall (the trace's tap): `before` runs ahead of the
 * handler and may return a note for `after`, which runs once the handler
 * returned `rc`. Neither may change anything the caller can see.
 */
export interface HypercallObserver {
  before(c: CallCtx, nr: number, a1: bigint, a2: bigint, a3: bigint, a4: bigint, a5: bigint): unknown;
  after(c: CallCtx, nr: number, a1: bigint, a2: bigint, a3: bigint, a4: bigint, a5: bigint, rc: number, note: unknown): void;
}

export class HypercallTable {
  /** The trace's observer while tracing is on; null otherwise (one check per call). */
  observer: HypercallObserver | null = null;
  private readonly table: (HypercallHandler | undefined)[] = new Array<HypercallHandler | undefined>(NR_HYPERCALLS).fill(undefined);
  /** Calls made per hypercall number (xl debug, tests). */
  readonly counts = new Float64Array(NR_HYPERCALLS);

  register(nr: number, h: HypercallHandler): void {
    if (!(Number.isInteger(nr) && nr >= 0 && nr < NR_HYPERCALLS)) throw new RangeError(`hypercall number ${nr}`);
    this.table[nr] = h;
  }

  has(nr: number): boolean {
    return this.table[nr] !== undefined;
  }

  /**
   * Run hypercall `nr` for `c`. `onBug` decides what a hypervisor exception
   * means for this caller; it returns the value to hand back (or rethrows).
   */
  call(c: CallCtx, nr: number, a1: bigint, a2: bigint, a3: bigint, a4: bigint, a5: bigint, onBug: (e: unknown, nr: number) => number): number {
    const h = Number.isInteger(nr) && nr >= 0 && nr < NR_HYPERCALLS ? this.table[nr] : undefined;
    if (h === undefined) {
      if (dbg.hypercall.enabled) dbg.hypercall('d%d v%d %s = -ENOSYS', c.domid, c.vcpuId, hypercallName(nr));
      return -ENOSYS;
    }
    this.counts[nr]!++;
    const obs = this.observer;
    const note = obs === null ? undefined : obs.before(c, nr, a1, a2, a3, a4, a5);
    let rc: number;
    try {
      rc = h(c, a1, a2, a3, a4, a5);
    } catch (e) {
      if (e instanceof GuestPageFault || e instanceof RangeError) rc = EFAULT_RC;
      else rc = onBug(e, nr);
    }
    if (obs !== null) obs.after(c, nr, a1, a2, a3, a4, a5, rc, note);
    if (dbg.hypercall.enabled) {
      dbg.hypercall('d%d v%d %s(%s, %s, %s) = %s', c.domid, c.vcpuId, hypercallName(nr),
        hex(a1), hex(a2), hex(a3), rc < 0 ? `-${errnoName(rc)}` : String(rc));
    }
    return rc;
  }
}

function hex(v: bigint): string {
  return `0x${BigInt.asUintN(64, v).toString(16)}`;
}
