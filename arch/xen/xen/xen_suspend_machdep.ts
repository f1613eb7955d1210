/*
 * The low half of save/restore (NetBSD's xen_prepare_suspend and
 * xen_prepare_resume, Linux's xen_pre_suspend / xen_post_suspend): what
 * must change in the guest's own memory and mappings so that a domain can
 * be written out as pages + vCPU context and come back, and the pmf resume
 * that tells a cancelled suspend from a restore.
 *
 * Before the suspend hypercall (xen_prepare_suspend), with devices,
 * xenstore, events and grants already quiet:
 *   - the tick stops (one-shot timer cancelled); guest time and the wall
 *     clock at this moment are kept;
 *   - start_info.store_mfn and console.domU.mfn become PFNs (through the
 *     M2P): the toolstack finds them so in the image and writes the new
 *     MFNs back on restore;
 *   - events are masked for this vCPU (evtchn_upcall_mask) and shared_info
 *     is unmapped (it is not our frame: a page table naming it cannot be
 *     saved).
 *
 * After it (xen_prepare_resume, at the resume continuation, before anything
 * else runs), with `newDomain` = the hypercall returned 0:
 *   new domain (restore)             same domain (cancelled, rax = 1)
 *   start_info copy refreshed        -
 *   shared_info mapped (new MA)      shared_info mapped again (same MA)
 *   P2M frame lists rebuilt          - (the same frames, still published)
 *   callbacks registered again       -
 *   -                                store/console PFN -> MFN again
 *   grant table set up afresh        grant frames mapped again
 *   VIRQs bound; other ports gone    VIRQs bound again; other ports kept
 *   clock: offset, tick, wall clock  tick, wall clock
 *
 * The caller then resumes the console, lets events in (the upcall mask)
 * and hands over to the xenbus thread for xenstore and the other devices.
 *
 * pmf on a cancelled suspend: a driver whose resume handler is `foo_resume`
 * and whose kernel also has `foo_resume_cancelled` (same signature) gets the
 * latter: the same domain, the same rings, grants and ports, nothing to
 * redo (Linux's thaw against restore). Otherwise its resume handler runs
 * in both cases and asks xen_resume_kind(cpu) if it must know.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { start_info, vcpu_info } from '../../../hypervisor/public/xen.js';
import { SHUTDOWN_suspend } from '../../../hypervisor/public/sched.js';
import { u64ToSafeNumber } from '../../../hypervisor/public/layout.js';
import { ksymtab, ksymaddr, ksymname, kcall } from '../../../sys/kern/kern_ksyms.js';
import { aprint_error, aprint_debug } from '../../../sys/kern/subr_prf.js';
import { pmf_device_resume, pmf_roots_first } from '../../../sys/kern/kern_pmf.js';
import { device_is_active, device_parent } from '../../../sys/kern/subr_autoconf.js';
import { device, DVF_ACTIVE, DVF_DRIVER_SUSPENDED } from '../../../sys/sys/device.js';
import { vptr } from '../../../sys/lib/libkern/libkern.js';
import { xmd, xmd_addr, xen_vcpu_info_va } from '../include/xen.js';
import { xen_suspend_state } from '../include/xen_suspend.js';
import { HYPERVISOR_set_callbacks, HYPERVISOR_suspend } from '../include/hypercalls.js';
import { xpmap_ptom, xpmap_mtop, xpmap_kva_to_mfn } from '../x86/x86_xpmap.js';
import { xen_map_shared_info, xen_unmap_shared_info } from '../x86/machdep.js';
import { xen_build_p2m_frame_list_list } from '../x86/hypervisor_machdep.js';
import { events_suspend, events_resume } from './evtchn.js';
import { xengnt_suspend, xengnt_resume } from './xengnt.js';
import { xen_suspendclocks, xen_resumeclocks, xen_wallclock_ns } from './xen_clock.js';
import { ksymlookup } from './xen_machdep.js';

const dbg = createDebug('guest:suspend');

const UPCALL_MASK = vcpu_info.offsetOf('evtchn_upcall_mask');
/** xs_store_pfn / xs_console_pfn when the field could not be converted (left as it was). */
const NOT_CONVERTED = 0xffff_ffff_ffff_ffffn;

export function xss(cpu: GuestCpu) {
  return xen_suspend_state.view(cpu.mem, xmd_addr('xm_suspend'));
}

/** start_info as the builder (or the restore) left it in our memory: the live page, not the boot copy. */
function start_info_live(cpu: GuestCpu) {
  return start_info.view(cpu.mem, vptr(xmd(cpu), 'xm_start_info_va'));
}

/** MFN of the start_info page (the suspend hypercall's rdx). */
export function xen_start_info_mfn(cpu: GuestCpu): number {
  return xpmap_kva_to_mfn(cpu, vptr(xmd(cpu), 'xm_start_info_va'));
}

/** Take a fresh copy of the live start_info into the machdep globals (after a restore rewrote it). */
export function xen_start_info_reload(cpu: GuestCpu): void {
  const live = vptr(xmd(cpu), 'xm_start_info_va');
  cpu.mem.writeBytes(xmd_addr('xm_start_info'), cpu.mem.readBytes(live, start_info.size));
}

/** A frame field of start_info as a PFN of ours; NOT_CONVERTED when the frame is not ours. */
function mfn_field_to_pfn(cpu: GuestCpu, v: bigint): bigint {
  const mfn = u64ToSafeNumber(v);
  const pfn = mfn === undefined ? -1 : xpmap_mtop(cpu, mfn);
  return pfn < 0 ? NOT_CONVERTED : BigInt(pfn);
}

/**
 * Everything between the devices' suspend and the suspend hypercall
 * (NetBSD's xen_prepare_suspend), in this order: events and grants off,
 * the tick stopped, start_info's store and console frames as PFNs, events
 * masked, shared_info unmapped.
 */
export function xen_prepare_suspend(cpu: GuestCpu): void {
  const s = xss(cpu);
  const virqs = events_suspend(cpu);
  xengnt_suspend(cpu);
  s.set('xs_suspend_wallclock', xen_wallclock_ns(cpu));
  s.set('xs_suspend_systime', xen_suspendclocks(cpu));
  const si = start_info_live(cpu);
  const con = si.sub('console').sub('domU');
  const storePfn = mfn_field_to_pfn(cpu, si.get('store_mfn'));
  const consPfn = mfn_field_to_pfn(cpu, con.get('mfn'));
  if (storePfn === NOT_CONVERTED) aprint_error(cpu, 'xen_suspend: store frame %lu is not ours; left as it is\n', si.get('store_mfn'));
  else si.set('store_mfn', storePfn);
  if (consPfn === NOT_CONVERTED) aprint_error(cpu, 'xen_suspend: console frame %lu is not ours; left as it is\n', con.get('mfn'));
  else con.set('mfn', consPfn);
  s.set('xs_store_pfn', storePfn);
  s.set('xs_console_pfn', consPfn);
  cpu.mem.setUint8(xen_vcpu_info_va(cpu) + UPCALL_MASK, 1);
  xen_unmap_shared_info(cpu);
  if (dbg.enabled) dbg('vcpu%d: prepared: %d VIRQs closed, store pfn %d, console pfn %d', cpu.vcpuId, virqs, storePfn, consPfn);
}

/**
 * The suspend hypercall (NetBSD's HYPERVISOR_suspend): `cont` becomes the
 * vCPU's continuation, then SCHEDOP_shutdown(SHUTDOWN_suspend) with rdx =
 * start_info's MFN. The caller's step must end right after.
 */
export function xen_suspend_hypercall(cpu: GuestCpu, cont: string): number {
  const s = xss(cpu);
  s.sub('xs_shutdown').set('reason', SHUTDOWN_suspend);
  s.set('xs_suspends', s.get('xs_suspends') + 1n);
  const mfn = xen_start_info_mfn(cpu);
  cpu.regs.setVa('rip', ksymaddr(cpu, cont));
  if (dbg.enabled) dbg('vcpu%d: SCHEDOP_shutdown(SHUTDOWN_suspend), start_info mfn %d, continuing at %s', cpu.vcpuId, mfn, cont);
  return HYPERVISOR_suspend(cpu, xmd_addr('xm_suspend.xs_shutdown'), mfn);
}

/**
 * Undo xen_prepare_suspend at the resume continuation (NetBSD's
 * xen_prepare_resume); see the table at the top. Events stay masked: the
 * caller lets them in once the console is back.
 */
export function xen_prepare_resume(cpu: GuestCpu, newDomain: boolean): void {
  const s = xss(cpu);
  if (newDomain) xen_start_info_reload(cpu);
  xen_map_shared_info(cpu);
  if (newDomain) {
    xen_build_p2m_frame_list_list(cpu);
    const rc = HYPERVISOR_set_callbacks(cpu, ksymaddr(cpu, 'hypervisor_callback'), ksymaddr(cpu, 'failsafe_callback'));
    if (rc !== 0) aprint_error(cpu, 'xen_suspend: set_callbacks after the restore failed (%d)\n', rc);
    const si = start_info_live(cpu);
    if (mfn_field_to_pfn(cpu, si.get('store_mfn')) === NOT_CONVERTED) {
      aprint_error(cpu, 'xen_suspend: the restored start_info names store frame %lu, which is not ours\n', si.get('store_mfn'));
    }
  } else {
    const si = start_info_live(cpu);
    const storePfn = s.get('xs_store_pfn');
    const consPfn = s.get('xs_console_pfn');
    if (storePfn !== NOT_CONVERTED) si.set('store_mfn', BigInt(xpmap_ptom(cpu, Number(storePfn))));
    if (consPfn !== NOT_CONVERTED) si.sub('console').sub('domU').set('mfn', BigInt(xpmap_ptom(cpu, Number(consPfn))));
  }
  if (!xengnt_resume(cpu, newDomain)) aprint_error(cpu, 'xen_suspend: the grant table is not back in full\n');
  const virqs = events_resume(cpu, newDomain);
  s.set('xs_resume_systime', xen_resumeclocks(cpu, newDomain));
  s.set('xs_resume_wallclock', xen_wallclock_ns(cpu));
  if (dbg.enabled) dbg('vcpu%d: resumed (%s): %d VIRQs bound', cpu.vcpuId, newDomain ? 'new domain' : 'same domain', virqs);
}

/** Let events in for this vCPU (the upcall may run from the next entry on). */
export function xen_resume_events(cpu: GuestCpu): void {
  cpu.mem.setUint8(xen_vcpu_info_va(cpu) + UPCALL_MASK, 0);
}

/** The `<resume handler>_cancelled` symbol of a device, or 0. */
function pmf_cancel_handler(cpu: GuestCpu, dev: number): number {
  const fn = vptr(device.view(cpu.mem, dev), 'dv_driver_resume');
  return fn === 0 ? 0 : ksymlookup(cpu, `${ksymname(cpu, fn)}_cancelled`);
}

/**
 * Resume one device: after a cancelled suspend through its
 * `*_resume_cancelled` handler if it has one, else pmf_device_resume.
 */
export function xen_pmf_device_resume(cpu: GuestCpu, dev: number, cancelled: boolean): boolean {
  const v = device.view(cpu.mem, dev);
  if ((v.get('dv_flags') & DVF_DRIVER_SUSPENDED) === 0) return true;
  const alt = cancelled ? pmf_cancel_handler(cpu, dev) : 0;
  if (alt === 0) return pmf_device_resume(cpu, dev);
  if (dbg.enabled) dbg('resume %s (cancelled): %s', v.getString('dv_xname'), ksymname(cpu, alt));
  if (kcall(cpu, alt, dev) === 0) return false;
  v.set('dv_flags', v.get('dv_flags') & ~DVF_DRIVER_SUSPENDED);
  return true;
}

/**
 * pmf_system_resume, roots first, choosing each device's handler for a
 * cancelled suspend. A device whose parent is still suspended is skipped.
 * False if any handler failed.
 */
export function xen_pmf_system_resume(cpu: GuestCpu, cancelled: boolean): boolean {
  let ok = true;
  for (const d of pmf_roots_first(cpu)) {
    const flags = device.view(cpu.mem, d).get('dv_flags');
    if ((flags & DVF_ACTIVE) === 0 || device_is_active(cpu, d)) continue;
    const parent = device_parent(cpu, d);
    if (parent !== 0 && !device_is_active(cpu, parent)) continue;
    if (!xen_pmf_device_resume(cpu, d, cancelled)) {
      aprint_debug(cpu, 'xen_suspend: %s failed to resume\n', device.view(cpu.mem, d).getString('dv_xname'));
      ok = false;
    }
  }
  return ok;
}

export const xen_suspend_machdep_ksyms = ksymtab({
  xss, start_info_live, xen_start_info_mfn, xen_start_info_reload, mfn_field_to_pfn, xen_prepare_suspend,
  xen_suspend_hypercall, xen_prepare_resume, xen_resume_events, pmf_cancel_handler, xen_pmf_device_resume,
  xen_pmf_system_resume,
});
