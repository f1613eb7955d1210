/*
 * Pseudo-physical <-> machine translation and the kernel VA area
 * (NetBSD's arch/xen/include/xenpmap.h).
 *
 * A PV guest's page tables hold machine frame numbers, so the kernel keeps
 * both directions at hand:
 *   - P2M: its own array at start_info.mfn_list, one 8-byte MFN per PFN
 *     (xpmap_ptom);
 *   - M2P: Xen's read-only table at MACH2PHYS_VIRT_START, one 8-byte PFN
 *     per machine frame (xpmap_mtop). A frame that is not ours reads as
 *     some other domain's PFN or as INVALID_P2M_ENTRY, so every M2P answer
 *     is checked against the P2M before it is believed.
 *
 * The kernel VA area (XEN_KVA_BASE) holds the mappings that are not part
 * of the direct map: shared_info, the grant table frames. It has its own
 * L4 slot, so the builder's bootstrap tables are never touched; its L3,
 * L2 and L1 tables are allocated as needed (x86_xpmap.ts).
 */
import type { Vaddr } from '../../../hypervisor/public/types.js';
import { L4_PAGETABLE_SHIFT } from '../../../hypervisor/public/arch-x86_64.js';
import { KERNBASE } from './vmparam.js';

/** L4 slot of the direct map (KERNBASE). */
export const L4_SLOT_DIRECT = Math.floor(KERNBASE / 2 ** L4_PAGETABLE_SHIFT) % 512;
/** L4 slot of the kernel VA area: the one after the direct map's. */
export const L4_SLOT_KVA = L4_SLOT_DIRECT + 1;
/** First address of the kernel VA area (canonical 0xffff_8900_0000_0000). */
export const XEN_KVA_BASE = (L4_SLOT_KVA * 2 ** L4_PAGETABLE_SHIFT) as Vaddr;
/** Bytes of kernel VA handed out at most (a bump allocator; never freed). */
export const XEN_KVA_SIZE = 64 * 1024 * 1024;

/** An M2P entry for a frame that has no PFN. */
export const INVALID_P2M_ENTRY = 0xffff_ffff_ffff_ffffn;
