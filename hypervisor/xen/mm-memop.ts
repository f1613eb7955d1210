/*
 * memory_op: a domain's reservation (how many frames it owns) and its
 * physmap (which PFN each frame stands for, in the M2P).
 *
 * The reservation commands answer in extents done, not in errno: Xen
 * returns how far it got (a short count when memory, max_pages or a guest
 * pointer gives out), and even a struct it cannot read is "0 done". Only a
 * permission failure is an errno. Extents are single pages (order 0): the
 * allocator hands out scattered frames on purpose, so there are no larger
 * contiguous extents to give; a larger order does nothing, as on a Xen
 * whose max_order is 0.
 *
 * current/maximum_reservation read a domid_t at `arg` and return a page
 * count; machphys_mapping tells a guest where its read-only M2P is.
 */
import { EFAULT, EINVAL, ENOSYS, EPERM, ESRCH } from '../public/errno.js';
import {
  XENMEM_current_reservation, XENMEM_decrease_reservation, XENMEM_increase_reservation, XENMEM_maximum_ram_page,
  XENMEM_machphys_mapping, XENMEM_maximum_reservation, XENMEM_populate_physmap, xen_machphys_mapping,
  xen_memory_reservation,
} from '../public/memory.js';
import { MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START } from '../public/arch-x86_64.js';
import { GuestPageFault, type GuestMem } from '../public/cpu.js';
import { MAX_FRAME } from '../public/types.js';
import { DOMID_SELF } from '../public/xen.js';
import { guestAccess, ptrArg, type CallCtx, type HypercallHandler } from './hcall.js';
import type { DomainLookup, DomainMemory, MmEnv } from './mm.js';
import { guestRangeOk } from './mm-vamem.js';

/** cmd = op | start_extent << 6 (Xen-internal, not in the public headers). */
const MEMOP_EXTENT_SHIFT = 6n;
const MEMOP_CMD_MASK = (1n << MEMOP_EXTENT_SHIFT) - 1n;
const XEN_PFN_SIZE = 8;

const R_EXTENT_START = xen_memory_reservation.offsetOf('extent_start');
const R_NR_EXTENTS = xen_memory_reservation.offsetOf('nr_extents');
const R_EXTENT_ORDER = xen_memory_reservation.offsetOf('extent_order');
const R_DOMID = xen_memory_reservation.offsetOf('domid');

interface Reservation {
  extentStart: bigint;
  nrExtents: bigint;
  extentOrder: number;
  domid: number;
}

function readReservation(mem: GuestMem, va: number): Reservation | undefined {
  try {
    return {
      extentStart: mem.getBigUint64(va + R_EXTENT_START, true),
      nrExtents: mem.getBigUint64(va + R_NR_EXTENTS, true),
      extentOrder: mem.getUint32(va + R_EXTENT_ORDER, true),
      domid: mem.getUint16(va + R_DOMID, true),
    };
  } catch (e) {
    if (e instanceof GuestPageFault) return undefined;
    throw e;
  }
}

/** A xen_pfn_t from the guest's extent array, or undefined on a fault. */
function readPfn(mem: GuestMem, va: number): number | undefined {
  try {
    return mem.getUint32(va + 4, true) * 2 ** 32 + mem.getUint32(va, true);
  } catch (e) {
    if (e instanceof GuestPageFault) return undefined;
    throw e;
  }
}

function writePfn(mem: GuestMem, va: number, v: number): boolean {
  try {
    mem.setBigUint64(va, BigInt(v), true);
    return true;
  } catch (e) {
    if (e instanceof GuestPageFault) return false;
    throw e;
  }
}

/** rcu_lock_domain_by_any_id: DOMID_SELF or any existing domid. */
const targetOf = (caller: DomainMemory, domid: number, find: DomainLookup): DomainMemory | undefined =>
  domid === DOMID_SELF ? caller : find(domid);

function reservationOp(env: MmEnv, c: CallCtx, caller: DomainMemory, find: DomainLookup, op: number, start: bigint, arg: number | undefined): number {
  const startN = Number(start);
  const r = arg === undefined ? undefined : readReservation(c.mem, arg);
  if (r === undefined) return startN;
  // Xen refuses counts it could not encode in a continuation.
  if (r.nrExtents > BigInt(0xffff_ffff >>> Number(MEMOP_EXTENT_SHIFT)) || start >= r.nrExtents) return startN;
  const d = targetOf(caller, r.domid, find);
  if (d === undefined || r.extentOrder !== 0) return startN;
  if (d !== caller && !c.privileged) return -EPERM;
  const nr = Number(r.nrExtents);
  const list = ptrArg(r.extentStart) ?? -1;
  const hasList = list !== 0;
  // The whole remaining array must be guest memory before anything is done.
  if (hasList && !guestRangeOk(list + startN * XEN_PFN_SIZE, (nr - startN) * XEN_PFN_SIZE)) return startN;
  if (!hasList && op !== XENMEM_increase_reservation) return startN;

  let i = startN;
  for (; i < nr; i++) {
    const slot = list + i * XEN_PFN_SIZE;
    if (op === XENMEM_increase_reservation) {
      const got = d.allocPages(env, 1);
      if (got === undefined) break;
      // The frame stays allocated even if the guest cannot be told: Xen too.
      if (hasList && !writePfn(c.mem, slot, got[0]!)) break;
    } else if (op === XENMEM_decrease_reservation) {
      const mfn = readPfn(c.mem, slot);
      if (mfn === undefined || d.removePage(env, mfn) !== 0) break;
    } else {
      const pfn = readPfn(c.mem, slot);
      if (pfn === undefined || pfn > MAX_FRAME) break;
      const got = d.allocPages(env, 1);
      if (got === undefined) break;
      d.setM2p(env, got[0]!, pfn);
      // For a PV guest the "GMFN" handed back is the MFN itself.
      if (!writePfn(c.mem, slot, got[0]!)) break;
    }
  }
  return i;
}

/** memory_op(cmd, arg). */
export function makeMemoryOp(env: MmEnv, find: DomainLookup): HypercallHandler {
  return (c, a1, a2) => guestAccess(() => {
    const caller = find(c.domid);
    if (caller === undefined) return -ESRCH;
    const cmd = BigInt.asUintN(64, a1);
    const op = Number(cmd & MEMOP_CMD_MASK);
    const start = cmd >> MEMOP_EXTENT_SHIFT;
    const arg = ptrArg(a2);
    switch (op) {
      case XENMEM_increase_reservation:
      case XENMEM_decrease_reservation:
      case XENMEM_populate_physmap:
        return reservationOp(env, c, caller, find, op, start, arg);
      case XENMEM_maximum_ram_page:
        return start !== 0n ? -EINVAL : env.frames.nrFrames;
      case XENMEM_current_reservation:
      case XENMEM_maximum_reservation: {
        if (start !== 0n) return -EINVAL;
        if (arg === undefined) return -EFAULT;
        const d = targetOf(caller, c.mem.getUint16(arg, true), find);
        if (d === undefined) return -ESRCH;
        if (d !== caller && !c.privileged) return -EPERM;
        return op === XENMEM_current_reservation ? d.totPages : d.maxPages;
      }
      case XENMEM_machphys_mapping: {
        if (arg === undefined) return -EFAULT;
        // Xen tells a domU the whole window's size; only frames that exist
        // are mapped in it, and this machine never grows, so say that.
        const v = xen_machphys_mapping.view(c.mem, arg);
        v.set('v_start', MACH2PHYS_VIRT_START);
        v.set('v_end', MACH2PHYS_VIRT_END);
        v.set('max_mfn', BigInt(env.frames.nrFrames - 1));
        return 0;
      }
      default:
        return -ENOSYS;
    }
  });
}
