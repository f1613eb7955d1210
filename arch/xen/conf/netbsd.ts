/*
 * The `netbsd` kernel image: the MI kernel, arch/xen, and its drivers,
 * linked in a fixed order (the order fixes every symbol's address and so
 * the version hash), entered at `start`.
 *
 * Notes, as a toolstack reads them from the ELF notes of a real kernel:
 *   XEN_ELFNOTE_GUEST_OS        "NetBSD"
 *   XEN_ELFNOTE_XEN_VERSION     "xen-3.0"
 *   XEN_ELFNOTE_FEATURES        "pae_pgdir_above_4gb"
 *       XENFEAT_* names the kernel can use ("!name": cannot boot without).
 *       None of writable_page_tables, writable_descriptor_tables,
 *       auto_translated_physmap: this is a classic direct-paging PV guest,
 *       every page-table change goes through mmu_update/update_va_mapping
 *       and its page tables hold machine frames. Its top-level table may
 *       sit in any frame.
 *   XEN_ELFNOTE_SUSPEND_CANCEL  1: a suspend hypercall returning 1 resumes
 *       the same domain (the save/restore work builds on it)
 *
 * `defineNetbsdImage(extra)` links more symbol tables after these, for a
 * kernel with extra workloads (tests, demos): init runs `workload_<name>`
 * when the command line says `workload=<name>`. Every image has the same
 * addresses for the symbols of the base kernel.
 */
import type { KernelNotes } from '../../../hypervisor/public/cpu.js';
import type { KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { MI_KSYMTABS } from '../../../sys/conf/files.js';
import { defineKernelImage, type LinkedKernelImage } from './image.js';
import { XEN_KSYMTABS } from './files.xen.js';

export const NETBSD_NOTES: KernelNotes = Object.freeze({
  guestOs: 'NetBSD',
  xenVersion: 'xen-3.0',
  features: 'pae_pgdir_above_4gb',
  suspendCancel: true,
});

/** A netbsd kernel image with `extra` symbol tables linked after the standard ones. */
export function defineNetbsdImage(extra: readonly KSymTab[] = [], name = 'netbsd'): LinkedKernelImage {
  return defineKernelImage({
    name,
    symbols: [...MI_KSYMTABS, ...XEN_KSYMTABS, ...extra],
    entry: 'start',
    notes: NETBSD_NOTES,
  });
}

/** The kernel `xl create` boots for `kernel = "netbsd"`. */
export const netbsdImage: LinkedKernelImage = defineNetbsdImage();
