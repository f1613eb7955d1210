/*
 * arch/xen's global variables (NetBSD's xen_start_info, HYPERVISOR_shared_info,
 * xpmap_phys_to_machine_mapping, the evtchn, xengnt and clock globals),
 * gathered in one struct at MACHDEP_DATA_VA, the area vmparam.ts reserves
 * for them. Like kernel_globals, it is plain guest memory: a saved image
 * carries it, a restored kernel finds everything from here.
 *
 *   struct xen_machdep {
 *       uint32_t xm_magic, xm_layout;     // XEN_MACHDEP_MAGIC, _LAYOUT
 *       uint64_t xm_start_info_va;        // where the builder put start_info (rsi at entry)
 *       start_info_t xm_start_info;       // copy taken at boot
 *       uint64_t xm_shared_info_va;       // HYPERVISOR_shared_info (kernel VA area)
 *       uint64_t xm_p2m_va;               // the P2M array (start_info.mfn_list)
 *       uint64_t xm_nr_pages;             // PFNs 0 .. nr_pages-1
 *       uint64_t xm_first_free_pfn;       // first PFN given to uvm
 *       uint64_t xm_kva_next;             // next free address of the kernel VA area
 *       uint64_t xm_p2m_fll_va;           // pfn_to_mfn_frame_list_list page
 *       uint64_t xm_p2m_fl_va;            // its frame-list pages (contiguous)
 *       uint32_t xm_p2m_fl_pages;
 *       uint32_t xm_flags;                // XMF_*
 *       uint64_t xm_ctrl_if_pfn;          // cmd line ctrl_if=<pfn>,<port>; 0: none
 *       uint32_t xm_ctrl_if_port;
 *       uint32_t xm_boothowto;            // as parsed from the command line
 *       char     xm_workload[64];         // cmd line workload=<name>
 *       uint64_t xm_xencons_sc;           // the console's softc (for cn_putc)
 *       uint64_t xm_init_lwp;
 *       struct evtchn_state xm_evtchn;
 *       struct xengnt_state xm_gnt;
 *       struct xen_clock_state xm_clock;
 *       struct xen_suspend_state xm_suspend;  // save/restore (include/xen_suspend.ts)
 *       uint8_t  xm_scratch[256];         // short-lived hypercall argument blocks
 *   };
 *
 *   struct xen_attach_args {              // what hypervisor0 hands its children
 *       char xa_device[16];               // "xencons", "xenbus", ...
 *   };
 */
import { struct, record, array, u8, u32, u64, char } from '../../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { start_info, shared_info, vcpu_info } from '../../../hypervisor/public/xen.js';
import { ptr_get } from '../../../sys/lib/libkern/libkern.js';
import { MACHDEP_DATA_VA, MACHDEP_DATA_SIZE } from './vmparam.js';
import { evtchn_state } from './evtchn.js';
import { xengnt_state } from './granttables.js';
import { xen_clock_state } from './xen_clock.js';
import { xen_suspend_state } from './xen_suspend.js';

export const WORKLOAD_NAMELEN = 64;
export const XM_SCRATCH_SIZE = 256;

export const xen_machdep = struct('struct xen_machdep', {
  xm_magic: u32,
  xm_layout: u32,
  xm_start_info_va: u64,
  xm_start_info: record(start_info),
  xm_shared_info_va: u64,
  xm_p2m_va: u64,
  xm_nr_pages: u64,
  xm_first_free_pfn: u64,
  xm_kva_next: u64,
  xm_p2m_fll_va: u64,
  xm_p2m_fl_va: u64,
  xm_p2m_fl_pages: u32,
  xm_flags: u32,
  xm_ctrl_if_pfn: u64,
  xm_ctrl_if_port: u32,
  xm_boothowto: u32,
  xm_workload: array(char, WORKLOAD_NAMELEN),
  xm_xencons_sc: u64,
  xm_init_lwp: u64,
  xm_evtchn: record(evtchn_state),
  xm_gnt: record(xengnt_state),
  xm_clock: record(xen_clock_state),
  xm_suspend: record(xen_suspend_state),
  xm_scratch: array(u8, XM_SCRATCH_SIZE),
});

/** 'xen!' */
export const XEN_MACHDEP_MAGIC = 0x216e6578;
/** Bumped whenever xen_machdep changes shape. */
export const XEN_MACHDEP_LAYOUT = 2;

/* xm_flags */
/** start() finished: events are live, the scheduler runs. */
export const XMF_BOOTED = 0x1;
/** shared_info is mapped at xm_shared_info_va. */
export const XMF_SHINFO_MAPPED = 0x2;

if (xen_machdep.size > MACHDEP_DATA_SIZE) {
  throw new Error(`struct xen_machdep (${xen_machdep.size} bytes) outgrew its ${MACHDEP_DATA_SIZE}-byte area`);
}

export const XEN_DEVNAMELEN = 16;
export const xen_attach_args = struct('struct xen_attach_args', {
  xa_device: array(char, XEN_DEVNAMELEN),
});

export type XenMachdepView = ReturnType<typeof xen_machdep.view>;

/** View of arch/xen's globals (rebuild on every entry; never keep it). */
export function xmd(cpu: GuestCpu): XenMachdepView {
  return xen_machdep.view(cpu.mem, MACHDEP_DATA_VA);
}

/** Address of a member of the machdep globals (dotted paths allowed). */
export function xmd_addr(path: string): number {
  return MACHDEP_DATA_VA + xen_machdep.offsetOf(path);
}

/** HYPERVISOR_shared_info: kernel address of shared_info (0 before it is mapped). */
export function xen_shared_info_va(cpu: GuestCpu): number {
  return ptr_get(cpu.mem, xmd_addr('xm_shared_info_va'));
}

/** This vCPU's vcpu_info in shared_info. */
export function xen_vcpu_info_va(cpu: GuestCpu): number {
  return xen_shared_info_va(cpu) + shared_info.offsetOf('vcpu_info') + cpu.vcpuId * vcpu_info.size;
}

/* Listed so the image's version hash covers this text (see kern_ksyms). */
export const xen_include_ksyms = Object.freeze({ xmd, xmd_addr, xen_shared_info_va, xen_vcpu_info_va });
