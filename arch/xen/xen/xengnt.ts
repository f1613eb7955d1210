/*
 * Grant tables, guest side (NetBSD's arch/xen/xen/xengnt.c).
 *
 * Our grant table is a few hypervisor frames we map (GNTTABOP_setup_table
 * gives their MFNs); entry `ref` says which domain may map which of our
 * frames. A driver grants a page to its backend, passes the ref through the
 * ring or xenstore, and revokes the grant when the backend is done.
 *
 * Driver API:
 *   xengnt_grant_access(cpu, domid, mfn, ro)  -> ref | -errno (ENOMEM: table full, EAGAIN: suspended)
 *   xengnt_revoke_access(cpu, ref)            -> 0 | -EBUSY (the peer still maps it, or suspended) | -EINVAL
 *   xengnt_status(cpu, ref)                   -> the entry's GTF_reading|GTF_writing bits
 *
 * Writing an entry: frame and domid first, flags last, so Xen never sees a
 * permit_access entry with a stale frame (a store barrier in C; here the
 * hypervisor only reads between our entries anyway). Revoking: an entry
 * Xen has marked GTF_reading or GTF_writing is mapped by the peer right
 * now and cannot be taken back; the caller keeps the ref and tries later,
 * as Linux's gnttab_end_foreign_access_ref does. Otherwise flags go to 0
 * (Xen would cmpxchg; nothing runs concurrently with us here) and the ref
 * returns to the free stack.
 *
 * Save/restore (xen_suspend.ts runs these):
 *   xengnt_suspend(cpu)             the table frames are unmapped (a saved image
 *                                   must not map hypervisor frames)
 *   xengnt_resume(cpu, newDomain)   a cancelled suspend maps the same frames again:
 *                                   every ref is as it was. A restore sets the table
 *                                   up afresh in the new domain, as large as it was:
 *                                   every ref handed out before is void (the entries
 *                                   are gone, the peer is a new backend) and all are
 *                                   free again. A driver must then forget its old
 *                                   refs, never revoke them: the number may already
 *                                   be someone else's grant.
 *   xengnt_generation(cpu)          tables set up afresh so far (a ref from an older
 *                                   generation is void)
 *
 * Refs below XENGNT_FIRST_REF belong to the toolstack (0: console,
 * 1: xenstore) and are never handed out.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import {
  GNTTABOP_setup_table, GNTTABOP_query_size, GNTST_okay, GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing,
  GTF_type_mask, gnttab_setup_table, gnttab_query_size, grant_entry_v1,
} from '../../../hypervisor/public/grant_table.js';
import { DOMID_SELF } from '../../../hypervisor/public/xen.js';
import { EAGAIN, EBUSY, EINVAL, ENOMEM } from '../../../hypervisor/public/errno.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { panic, aprint_verbose, aprint_error } from '../../../sys/kern/subr_prf.js';
import { uvm_km_alloc } from '../../../sys/uvm/uvm_page.js';
import { hcall_ptr, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { PAGE_SIZE } from '../include/vmparam.js';
import { XENGNT_MAX_FRAMES, XENGNT_ENTRIES_PER_FRAME, XENGNT_FIRST_REF, GSF_SUSPENDED, xengnt_state } from '../include/granttables.js';
import { xmd } from '../include/xen.js';
import { HYPERVISOR_grant_table_op } from '../include/hypercalls.js';
import { xen_kva_alloc, pmap_kenter_ma, pmap_kremove } from '../x86/x86_xpmap.js';

const dbg = createDebug('guest:xengnt');

const GS_OP = xengnt_state.offsetOf('gs_op');
const GS_FRAME_LIST = xengnt_state.offsetOf('gs_frame_list');
const GE_FLAGS = grant_entry_v1.offsetOf('flags');
const GE_DOMID = grant_entry_v1.offsetOf('domid');
const GE_FRAME = grant_entry_v1.offsetOf('frame');
/** grant_entry_v1.frame is 32 bits: MFNs must fit. */
const MAX_GRANT_FRAME = 0xffff_ffff;

function xengnt_view(cpu: GuestCpu) {
  return xmd(cpu).sub('xm_gnt');
}

function xengnt_op_block(cpu: GuestCpu, size: number): number {
  const at = xengnt_view(cpu).base + GS_OP;
  cpu.mem.fill(at, size, 0);
  return at;
}

/**
 * Boot (from hypervisor0's attach): learn how big the table may grow,
 * reserve kernel VA and the free-ref stack for that, and set up the first
 * frame.
 */
export function xengnt_init(cpu: GuestCpu): void {
  const gs = xengnt_view(cpu);
  const op = xengnt_op_block(cpu, gnttab_query_size.size);
  const q = gnttab_query_size.view(cpu.mem, op);
  q.set('dom', DOMID_SELF);
  const rc = HYPERVISOR_grant_table_op(cpu, GNTTABOP_query_size, op, 1);
  let max = rc === 0 && q.get('status') === GNTST_okay ? q.get('max_nr_frames') : 1;
  max = Math.max(1, Math.min(max, XENGNT_MAX_FRAMES));
  gs.set('gs_maxframes', max);
  gs.set('gs_nframes', 0);
  vptr_set(gs, 'gs_table_va', xen_kva_alloc(cpu, max));
  const stack = uvm_km_alloc(cpu, max * XENGNT_ENTRIES_PER_FRAME * 4);
  if (stack === 0) panic(cpu, 'xengnt_init: no memory for %u grant refs', max * XENGNT_ENTRIES_PER_FRAME);
  vptr_set(gs, 'gs_free', stack);
  gs.set('gs_nfree', 0);
  gs.set('gs_inuse', 0);
  if (!xengnt_more_entries(cpu)) panic(cpu, 'xengnt_init: cannot set up the grant table');
  aprint_verbose(cpu, 'xengnt: %u grant frame(s) mapped, up to %u\n', gs.get('gs_nframes'), max);
}

/**
 * Grow the table by one frame: setup_table for nframes + 1, map the new
 * frame, push its refs. False when the table is at its maximum or Xen
 * refuses.
 */
export function xengnt_more_entries(cpu: GuestCpu): boolean {
  const gs = xengnt_view(cpu);
  const n = gs.get('gs_nframes');
  if (n >= gs.get('gs_maxframes')) return false;
  const op = xengnt_op_block(cpu, gnttab_setup_table.size);
  const st = gnttab_setup_table.view(cpu.mem, op);
  const list = gs.base + GS_FRAME_LIST;
  st.set('dom', DOMID_SELF);
  st.set('nr_frames', n + 1);
  st.set('frame_list', hcall_ptr(list));
  const rc = HYPERVISOR_grant_table_op(cpu, GNTTABOP_setup_table, op, 1);
  if (rc !== 0 || st.get('status') !== GNTST_okay) {
    aprint_error(cpu, 'xengnt: setup_table for %u frames failed (%d, status %d)\n', n + 1, rc, st.get('status'));
    return false;
  }
  const mfn = Number(cpu.mem.getBigUint64(list + n * 8, true));
  const va = vptr(gs, 'gs_table_va') + n * PAGE_SIZE;
  const mrc = pmap_kenter_ma(cpu, va, mfn * PAGE_SIZE, true);
  if (mrc !== 0) {
    aprint_error(cpu, 'xengnt: cannot map grant frame %u (mfn %lu): %d\n', n, mfn, mrc);
    return false;
  }
  gs.set('gs_nframes', n + 1);
  // Push in reverse so the lowest refs are handed out first.
  const first = Math.max(n * XENGNT_ENTRIES_PER_FRAME, XENGNT_FIRST_REF);
  for (let ref = (n + 1) * XENGNT_ENTRIES_PER_FRAME - 1; ref >= first; ref--) xengnt_push(cpu, ref);
  if (dbg.enabled) dbg('vcpu%d: grant frame %d is mfn %d at %s', cpu.vcpuId, n, mfn, va.toString(16));
  return true;
}

function xengnt_push(cpu: GuestCpu, ref: number): void {
  const gs = xengnt_view(cpu);
  const n = gs.get('gs_nfree');
  cpu.mem.setUint32(vptr(gs, 'gs_free') + n * 4, ref, true);
  gs.set('gs_nfree', n + 1);
}

/** Address of grant entry `ref`, or 0 when the table does not have it. */
export function xengnt_entry_addr(cpu: GuestCpu, ref: number): number {
  const gs = xengnt_view(cpu);
  if (!(Number.isInteger(ref) && ref >= 0 && ref < gs.get('gs_nframes') * XENGNT_ENTRIES_PER_FRAME)) return 0;
  return vptr(gs, 'gs_table_va') + ref * grant_entry_v1.size;
}

/** A free ref (growing the table if needed), or -1. */
function xengnt_get_entry(cpu: GuestCpu): number {
  const gs = xengnt_view(cpu);
  if (gs.get('gs_nfree') === 0 && !xengnt_more_entries(cpu)) return -1;
  const n = gs.get('gs_nfree') - 1;
  gs.set('gs_nfree', n);
  gs.set('gs_inuse', gs.get('gs_inuse') + 1);
  return cpu.mem.getUint32(vptr(gs, 'gs_free') + n * 4, true);
}

/**
 * Let domain `domid` map our machine frame `mfn` (read-only if `ro`).
 * Returns the grant ref, or -ENOMEM when the table is full.
 */
export function xengnt_grant_access(cpu: GuestCpu, domid: number, mfn: number, ro: boolean | number): number {
  if (!(Number.isInteger(mfn) && mfn > 0 && mfn <= MAX_GRANT_FRAME)) panic(cpu, 'xengnt_grant_access: bad frame %lu', mfn);
  // Suspended: the table is not mapped (a driver's resume grants again later).
  if ((xengnt_view(cpu).get('gs_flags') & GSF_SUSPENDED) !== 0) return -EAGAIN;
  const ref = xengnt_get_entry(cpu);
  if (ref < 0) return -ENOMEM;
  const e = xengnt_entry_addr(cpu, ref);
  cpu.mem.setUint32(e + GE_FRAME, mfn, true);
  cpu.mem.setUint16(e + GE_DOMID, domid, true);
  cpu.mem.setUint16(e + GE_FLAGS, GTF_permit_access | (ro ? GTF_readonly : 0), true);
  const gs = xengnt_view(cpu);
  vu64_set(gs, 'gs_grants', vu64(gs, 'gs_grants') + 1);
  if (dbg.enabled) dbg('vcpu%d: ref %d: d%d may map mfn %d%s', cpu.vcpuId, ref, domid, mfn, ro ? ' read-only' : '');
  return ref;
}

/**
 * Take a grant back. -EBUSY while the peer still has it mapped (the ref
 * stays granted; try again after the peer unmapped), -EINVAL for a ref that
 * is not a grant of ours.
 */
export function xengnt_revoke_access(cpu: GuestCpu, ref: number): number {
  const e = ref >= XENGNT_FIRST_REF ? xengnt_entry_addr(cpu, ref) : 0;
  if (e === 0) return -EINVAL;
  if ((xengnt_view(cpu).get('gs_flags') & GSF_SUSPENDED) !== 0) return -EBUSY;
  const flags = cpu.mem.getUint16(e + GE_FLAGS, true);
  if ((flags & GTF_type_mask) !== GTF_permit_access) return -EINVAL;
  const gs = xengnt_view(cpu);
  if ((flags & (GTF_reading | GTF_writing)) !== 0) {
    vu64_set(gs, 'gs_busy', vu64(gs, 'gs_busy') + 1);
    if (dbg.enabled) dbg('vcpu%d: ref %d still mapped (flags %s)', cpu.vcpuId, ref, flags.toString(16));
    return -EBUSY;
  }
  cpu.mem.setUint16(e + GE_FLAGS, 0, true);
  cpu.mem.setUint16(e + GE_DOMID, 0, true);
  cpu.mem.setUint32(e + GE_FRAME, 0, true);
  gs.set('gs_inuse', gs.get('gs_inuse') - 1);
  xengnt_push(cpu, ref);
  return 0;
}

/** GTF_reading | GTF_writing of entry `ref` (what Xen says the peer does with it). */
export function xengnt_status(cpu: GuestCpu, ref: number): number {
  const e = xengnt_entry_addr(cpu, ref);
  if (e === 0 || (xengnt_view(cpu).get('gs_flags') & GSF_SUSPENDED) !== 0) return 0;
  return cpu.mem.getUint16(e + GE_FLAGS, true) & (GTF_reading | GTF_writing);
}

/**
 * Suspend (NetBSD's xengnt_suspend): unmap the table frames. They are the
 * hypervisor's, and a page table naming a frame the domain does not own
 * cannot be saved. The refs and the free stack stay as they are.
 */
export function xengnt_suspend(cpu: GuestCpu): void {
  const gs = xengnt_view(cpu);
  const va = vptr(gs, 'gs_table_va');
  for (let n = 0; n < gs.get('gs_nframes'); n++) {
    const rc = pmap_kremove(cpu, va + n * PAGE_SIZE);
    if (rc !== 0) aprint_error(cpu, 'xengnt: cannot unmap grant frame %u (%d)\n', n, rc);
  }
  gs.set('gs_flags', gs.get('gs_flags') | GSF_SUSPENDED);
  if (dbg.enabled) dbg('vcpu%d: suspend: %d grant frames unmapped, %d refs in use', cpu.vcpuId, gs.get('gs_nframes'), gs.get('gs_inuse'));
}

/**
 * Resume (NetBSD's xengnt_resume). In the same domain (a cancelled
 * suspend) the frames Xen gave us are still ours: map them again, every
 * ref still valid. In a new domain (a restore) the old table is gone: set
 * one up as large as the old one (setup_table, a frame at a time) and free
 * every ref. False when the new table could not be set up in full.
 */
export function xengnt_resume(cpu: GuestCpu, newDomain: boolean): boolean {
  const gs = xengnt_view(cpu);
  const va = vptr(gs, 'gs_table_va');
  const frames = gs.get('gs_nframes');
  gs.set('gs_flags', gs.get('gs_flags') & ~GSF_SUSPENDED);
  if (!newDomain) {
    let ok = true;
    for (let n = 0; n < frames; n++) {
      const mfn = Number(cpu.mem.getBigUint64(gs.base + GS_FRAME_LIST + n * 8, true));
      const rc = pmap_kenter_ma(cpu, va + n * PAGE_SIZE, mfn * PAGE_SIZE, true);
      if (rc !== 0) {
        aprint_error(cpu, 'xengnt: cannot map grant frame %u (mfn %lu) again: %d\n', n, mfn, rc);
        ok = false;
      }
    }
    return ok;
  }
  gs.set('gs_nframes', 0);
  gs.set('gs_nfree', 0);
  gs.set('gs_inuse', 0);
  gs.set('gs_generation', gs.get('gs_generation') + 1);
  for (let n = 0; n < Math.max(frames, 1); n++) {
    if (!xengnt_more_entries(cpu)) {
      aprint_error(cpu, 'xengnt: only %u of %u grant frames set up after the restore\n', gs.get('gs_nframes'), frames);
      return false;
    }
  }
  if (dbg.enabled) dbg('vcpu%d: resume: new grant table of %d frames, %d refs free', cpu.vcpuId, gs.get('gs_nframes'), gs.get('gs_nfree'));
  return true;
}

/** Tables set up afresh after a restore so far: refs of an older one are void. */
export function xengnt_generation(cpu: GuestCpu): number {
  return xengnt_view(cpu).get('gs_generation');
}

export interface XengntStats {
  readonly nframes: number;
  readonly maxframes: number;
  readonly nfree: number;
  readonly inuse: number;
  readonly grants: number;
  readonly busy: number;
}

export function xengnt_stats(cpu: GuestCpu): XengntStats {
  const gs = xengnt_view(cpu);
  return {
    nframes: gs.get('gs_nframes'), maxframes: gs.get('gs_maxframes'), nfree: gs.get('gs_nfree'),
    inuse: gs.get('gs_inuse'), grants: vu64(gs, 'gs_grants'), busy: vu64(gs, 'gs_busy'),
  };
}

export const xengnt_ksyms = ksymtab({
  xengnt_view, xengnt_op_block, xengnt_init, xengnt_more_entries, xengnt_push, xengnt_entry_addr, xengnt_get_entry,
  xengnt_grant_access, xengnt_revoke_access, xengnt_status, xengnt_suspend, xengnt_resume, xengnt_generation, xengnt_stats,
});
