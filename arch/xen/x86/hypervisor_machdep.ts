/*
 * The x86 side of talking to Xen (NetBSD's arch/xen/x86/hypervisor_machdep.c):
 * the event upcall, and the P2M frame lists the toolstack reads to find our
 * P2M when it saves us.
 *
 * The upcall (`hypervisor_callback`, registered with set_callbacks) is
 * entered by the machine before the continuation whenever
 * evtchn_upcall_pending is set and not masked, with the mask set for the
 * duration (Xen's bounce frame; the machine's iret clears it). It does
 * the 2-level scan: take evtchn_pending_sel (exchange with 0), then for
 * each word it names the pending and not masked bits, clear them, and
 * hand each port to evtchn_do_event. Handlers can make more events
 * pending (a send to ourselves, an unmask of a pending port), so it goes
 * round again while evtchn_upcall_pending is set.
 *
 * The frame lists: Xen's tools find a PV guest's P2M through
 * shared_info.arch.pfn_to_mfn_frame_list_list, the MFN of a page of MFNs
 * of pages of MFNs of the P2M's own frames (three levels), and max_pfn.
 * The pages are allocated once at boot; the MFNs in them are written by
 * xen_build_p2m_frame_list_list, which resume calls again after a restore
 * gave every page a new MFN.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { shared_info, vcpu_info } from '../../../hypervisor/public/xen.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { panic } from '../../../sys/kern/subr_prf.js';
import { uvm_km_alloc } from '../../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../../sys/uvm/uvm.js';
import { vptr, vptr_set, vu64 } from '../../../sys/lib/libkern/libkern.js';
import { PAGE_SIZE, kva_to_pfn } from '../include/vmparam.js';
import { xmd, xen_shared_info_va, xen_vcpu_info_va, XMF_SHINFO_MAPPED } from '../include/xen.js';
import { evtchn_do_event, evtchn_upcall_count } from '../xen/evtchn.js';
import { xpmap_ptom, xpmap_kva_to_mfn } from './x86_xpmap.js';

const dbg = createDebug('guest:evtchn');

const UPCALL_PENDING = vcpu_info.offsetOf('evtchn_upcall_pending');
const PENDING_SEL = vcpu_info.offsetOf('evtchn_pending_sel');
const SHI_PENDING = shared_info.offsetOf('evtchn_pending');
const SHI_MASK = shared_info.offsetOf('evtchn_mask');
const SHI_MAX_PFN = shared_info.offsetOf('arch.max_pfn');
const SHI_FLL = shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list');
/** Rescans per upcall before leaving the rest for the next entry. */
const UPCALL_MAX_PASSES = 16;
/** MFNs per page of a frame list. */
const FPP = PAGE_SIZE / 8;

/** The event callback: entered by the machine with events masked. */
export function hypervisor_callback(cpu: GuestCpu): void {
  do_hypervisor_callback(cpu);
}

/**
 * The failsafe callback: Xen could not return to us (bad segment state).
 * Nothing here uses segments, so arriving here is a bug.
 */
export function failsafe_callback(cpu: GuestCpu): void {
  panic(cpu, 'failsafe callback: Xen could not restore the kernel context');
}

/** Take and clear the pending, unmasked bits of one 32-bit half of word `w`. */
function evtchn_take_half(cpu: GuestCpu, sh: number, w: number, half: number): number {
  const pend = sh + SHI_PENDING + w * 8 + half * 4;
  const p = cpu.mem.getUint32(pend, true);
  const ready = (p & ~cpu.mem.getUint32(sh + SHI_MASK + w * 8 + half * 4, true)) >>> 0;
  if (ready !== 0) cpu.mem.setUint32(pend, (p & ~ready) >>> 0, true);
  return ready;
}

/** The 2-level scan (NetBSD's do_hypervisor_callback / evtchn_do_event loop). */
export function do_hypervisor_callback(cpu: GuestCpu): void {
  const sh = xen_shared_info_va(cpu);
  // Not mapped (between the suspend hypercall's preparation and resume): nothing to scan.
  if (sh === 0 || (xmd(cpu).get('xm_flags') & XMF_SHINFO_MAPPED) === 0) return;
  const vci = xen_vcpu_info_va(cpu);
  const mem = cpu.mem;
  evtchn_upcall_count(cpu);
  for (let pass = 0; pass < UPCALL_MAX_PASSES && mem.getUint8(vci + UPCALL_PENDING) !== 0; pass++) {
    mem.setUint8(vci + UPCALL_PENDING, 0);
    // xchg(&evtchn_pending_sel, 0): nothing else runs while we hold the vCPU.
    const sel = [mem.getUint32(vci + PENDING_SEL, true), mem.getUint32(vci + PENDING_SEL + 4, true)];
    mem.setUint32(vci + PENDING_SEL, 0, true);
    mem.setUint32(vci + PENDING_SEL + 4, 0, true);
    for (let sh32 = 0; sh32 < 2; sh32++) {
      for (let s = sel[sh32]!; s !== 0; s = (s & (s - 1)) >>> 0) {
        const w = sh32 * 32 + (31 - Math.clz32(s & -s));
        for (let half = 0; half < 2; half++) {
          for (let r = evtchn_take_half(cpu, sh, w, half); r !== 0; r = (r & (r - 1)) >>> 0) {
            evtchn_do_event(cpu, w * 64 + half * 32 + (31 - Math.clz32(r & -r)));
          }
        }
      }
    }
  }
  if (dbg.enabled && mem.getUint8(vci + UPCALL_PENDING) !== 0) dbg('vcpu%d: upcall left events for the next entry', cpu.vcpuId);
}

/** Boot: allocate the frame-list pages for a P2M of xm_nr_pages entries. */
export function xen_p2m_frame_list_alloc(cpu: GuestCpu): void {
  const x = xmd(cpu);
  const p2mFrames = Math.ceil(vu64(x, 'xm_nr_pages') / FPP);
  const flPages = Math.ceil(p2mFrames / FPP);
  if (flPages > FPP) panic(cpu, 'xen_p2m_frame_list_alloc: P2M of %lu frames is too big for three levels', p2mFrames);
  if (vptr(x, 'xm_p2m_va') % PAGE_SIZE !== 0) panic(cpu, 'xen_p2m_frame_list_alloc: P2M at %p is not page-aligned', vptr(x, 'xm_p2m_va'));
  const fl = uvm_km_alloc(cpu, flPages * PAGE_SIZE, UVM_KMF_ZERO);
  const fll = uvm_km_alloc(cpu, PAGE_SIZE, UVM_KMF_ZERO);
  if (fl === 0 || fll === 0) panic(cpu, 'xen_p2m_frame_list_alloc: out of memory');
  vptr_set(x, 'xm_p2m_fl_va', fl);
  vptr_set(x, 'xm_p2m_fll_va', fll);
  x.set('xm_p2m_fl_pages', flPages);
}

/**
 * Write the MFNs of the P2M's frames into the frame lists and publish the
 * top page and max_pfn in shared_info. At boot and after every restore.
 */
export function xen_build_p2m_frame_list_list(cpu: GuestCpu): void {
  const x = xmd(cpu);
  const nr = vu64(x, 'xm_nr_pages');
  const p2mPfn = kva_to_pfn(vptr(x, 'xm_p2m_va'));
  const fl = vptr(x, 'xm_p2m_fl_va');
  const fll = vptr(x, 'xm_p2m_fll_va');
  const flPages = x.get('xm_p2m_fl_pages');
  if (fl === 0 || fll === 0) panic(cpu, 'xen_build_p2m_frame_list_list: frame lists not allocated');
  const p2mFrames = Math.ceil(nr / FPP);
  for (let i = 0; i < p2mFrames; i++) cpu.mem.setBigUint64(fl + i * 8, BigInt(xpmap_ptom(cpu, p2mPfn + i)), true);
  for (let j = 0; j < flPages; j++) cpu.mem.setBigUint64(fll + j * 8, BigInt(xpmap_kva_to_mfn(cpu, fl + j * PAGE_SIZE)), true);
  const sh = xen_shared_info_va(cpu);
  cpu.mem.setBigUint64(sh + SHI_MAX_PFN, BigInt(nr), true);
  cpu.mem.setBigUint64(sh + SHI_FLL, BigInt(xpmap_kva_to_mfn(cpu, fll)), true);
}

export const hypervisor_machdep_ksyms = ksymtab({
  hypervisor_callback, failsafe_callback, evtchn_take_half, do_hypervisor_callback, xen_p2m_frame_list_alloc,
  xen_build_p2m_frame_list_list,
});
