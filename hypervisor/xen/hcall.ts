/*
 * The shape of a hypercall handler, shared by every subsystem.
 *
 * Each subsystem (mm, evtchn, gnttab, sched, time, domctl, ...) exports
 * factories that take the narrow environment it needs and return handlers
 * of this one type; the core registers them in the dispatch table keyed by
 * Xen's hypercall number. Handlers read and write their arguments through
 * the caller's own address space (`CallCtx.mem`): for a guest that is its
 * virtual memory through its page tables; for dom0, which is host code, it
 * is a host-side arena. So the same handler serves both, and a guest's
 * bad pointer becomes -EFAULT instead of anything worse.
 */
import { GuestPageFault, type GuestMem } from '../public/cpu.js';

/** -EFAULT (Xen's errno 14). */
export const EFAULT_RC = -14;

export interface CallCtx {
  /** Calling domain. */
  readonly domid: number;
  /** Calling vCPU. */
  readonly vcpuId: number;
  /** dom0 (or another privileged domain): may use domctl/sysctl, foreign maps. */
  readonly privileged: boolean;
  /** The caller's address space: copy_from_guest / copy_to_guest. */
  readonly mem: GuestMem;
}

/** Arguments arrive as the raw 64-bit registers rdi, rsi, rdx, r10, r8. */
export type HypercallHandler = (c: CallCtx, a1: bigint, a2: bigint, a3: bigint, a4: bigint, a5: bigint) => number;

/**
 * Run `fn`, turning a fault on the caller's memory into -EFAULT. Any other
 * exception is a hypervisor bug and is rethrown.
 */
export function guestAccess(fn: () => number): number {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GuestPageFault) return EFAULT_RC;
    if (e instanceof RangeError) return EFAULT_RC;
    throw e;
  }
}

/** A guest pointer argument as a JS number (VA), or undefined when it cannot be one. */
export function ptrArg(v: bigint): number | undefined {
  const u = BigInt.asUintN(64, v);
  const high = u >> 47n;
  if (high !== 0n && high !== 0x1ffffn) return undefined;
  return Number(u & 0xffff_ffff_ffffn);
}

/** A 32-bit unsigned argument (command numbers, counts). */
export const u32Arg = (v: bigint): number => Number(BigInt.asUintN(32, v));
/** A signed 32-bit argument. */
export const i32Arg = (v: bigint): number => Number(BigInt.asIntN(32, v));
