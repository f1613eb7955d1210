/*
 * The 2-level event channel ABI: where a port's bits live and how raising,
 * unmasking and consuming them works (Xen's event_2l.c).
 *
 *   shared_info.evtchn_pending[]   one bit per port, set by Xen, cleared by the guest
 *   shared_info.evtchn_mask[]      one bit per port, owned by the guest
 *   vcpu_info.evtchn_pending_sel   one bit per word of evtchn_pending
 *   vcpu_info.evtchn_upcall_pending  "look at the selector"
 *
 * The bitmaps are arrays of little-endian 64-bit words, so bit n of a bitmap
 * is bit (n & 7) of byte (n >> 3): everything here is byte access, no bigint.
 * All writes go through the ByteMem, i.e. the machine memory write path.
 */
import type { ByteMem } from '../public/layout.js';
import { shared_info, vcpu_info, XEN_LEGACY_MAX_VCPUS } from '../public/xen.js';

const PENDING_OFF = shared_info.offsetOf('evtchn_pending');
const MASK_OFF = shared_info.offsetOf('evtchn_mask');
const VCPU_INFO_OFF = shared_info.offsetOf('vcpu_info');
const UPCALL_PENDING_OFF = vcpu_info.offsetOf('evtchn_upcall_pending');
const PENDING_SEL_OFF = vcpu_info.offsetOf('evtchn_pending_sel');
/** Ports per evtchn_pending word (bits of xen_ulong_t). */
export const BITS_PER_EVTCHN_WORD = 64;

/** Where one vCPU's vcpu_info is. */
export interface VcpuInfoLoc {
  readonly mem: ByteMem;
  readonly base: number;
}

/** vcpu_info[vcpu] inside shared_info, for the vCPUs that have one there. */
export function sharedVcpuInfo(sh: ByteMem, vcpu: number): VcpuInfoLoc | undefined {
  if (!(Number.isInteger(vcpu) && vcpu >= 0 && vcpu < XEN_LEGACY_MAX_VCPUS)) return undefined;
  return { mem: sh, base: VCPU_INFO_OFF + vcpu * vcpu_info.size };
}

function testBit(mem: ByteMem, base: number, bit: number): boolean {
  return ((mem.getUint8(base + (bit >>> 3)) >>> (bit & 7)) & 1) !== 0;
}
function testAndSetBit(mem: ByteMem, base: number, bit: number): boolean {
  const at = base + (bit >>> 3);
  const b = mem.getUint8(at);
  const m = 1 << (bit & 7);
  if ((b & m) !== 0) return true;
  mem.setUint8(at, b | m);
  return false;
}
function testAndClearBit(mem: ByteMem, base: number, bit: number): boolean {
  const at = base + (bit >>> 3);
  const b = mem.getUint8(at);
  const m = 1 << (bit & 7);
  if ((b & m) === 0) return false;
  mem.setUint8(at, b & ~m);
  return true;
}

export const isPending2l = (sh: ByteMem, port: number): boolean => testBit(sh, PENDING_OFF, port);
export const isMasked2l = (sh: ByteMem, port: number): boolean => testBit(sh, MASK_OFF, port);
export const clearPending2l = (sh: ByteMem, port: number): void => { testAndClearBit(sh, PENDING_OFF, port); };

/** What raising a port did. */
export const Raised = {
  /** It was pending already: nothing changed (and pollers were told before). */
  Already: 0,
  /** Newly pending; masked, or the vCPU's upcall was already signalled. */
  Pending: 1,
  /** Newly pending and evtchn_upcall_pending newly set: kick the vCPU. */
  Upcall: 2,
} as const;
export type Raised = (typeof Raised)[keyof typeof Raised];

/** Set the upcall flag; true if it was clear (the vCPU needs a kick). */
function markEventsPending(vi: VcpuInfoLoc): boolean {
  const at = vi.base + UPCALL_PENDING_OFF;
  const b = vi.mem.getUint8(at);
  if ((b & 1) !== 0) return false;
  vi.mem.setUint8(at, b | 1);
  return true;
}

/** Select the port's word for the vCPU and signal the upcall; true if a kick is due. */
function selectAndSignal(vi: VcpuInfoLoc | undefined, port: number): boolean {
  if (vi === undefined) return false;
  if (testAndSetBit(vi.mem, vi.base + PENDING_SEL_OFF, Math.floor(port / BITS_PER_EVTCHN_WORD))) return false;
  return markEventsPending(vi);
}

/** evtchn_2l_set_pending: the port goes pending; unmasked, it reaches the vCPU. */
export function setPending2l(sh: ByteMem, vi: VcpuInfoLoc | undefined, port: number): Raised {
  if (testAndSetBit(sh, PENDING_OFF, port)) return Raised.Already;
  if (testBit(sh, MASK_OFF, port)) return Raised.Pending;
  return selectAndSignal(vi, port) ? Raised.Upcall : Raised.Pending;
}

/** evtchn_2l_unmask: clear the mask; a pending port is delivered now. True if a kick is due. */
export function unmask2l(sh: ByteMem, vi: VcpuInfoLoc | undefined, port: number): boolean {
  if (!testAndClearBit(sh, MASK_OFF, port) || !testBit(sh, PENDING_OFF, port)) return false;
  return selectAndSignal(vi, port);
}

/**
 * The guest side of the ABI, for host-side dom0: clear upcall_pending, take
 * the selector, and collect and clear every pending unmasked port of the
 * selected words below `nrPorts`. Masked pending ports stay pending.
 */
export function drain2l(sh: ByteMem, vi: VcpuInfoLoc, nrPorts: number): number[] {
  vi.mem.setUint8(vi.base + UPCALL_PENDING_OFF, 0);
  const out: number[] = [];
  const words = Math.ceil(nrPorts / BITS_PER_EVTCHN_WORD);
  for (let word = 0; word < words; word++) {
    if (!testAndClearBit(vi.mem, vi.base + PENDING_SEL_OFF, word)) continue;
    for (let byte = word * 8; byte < word * 8 + 8; byte++) {
      const pending = sh.getUint8(PENDING_OFF + byte);
      let ready = pending & ~sh.getUint8(MASK_OFF + byte) & 0xff;
      if (ready === 0) continue;
      sh.setUint8(PENDING_OFF + byte, pending & ~ready);
      for (let bit = 0; ready !== 0; bit++, ready >>>= 1) if ((ready & 1) !== 0) out.push(byte * 8 + bit);
    }
  }
  return out;
}
