/*
 * xen/include/public/features.h: feature bits reported by
 * `xen_version(XENVER_get_features)` (submap 0) and named in a kernel's
 * XEN_ELFNOTE_FEATURES note.
 */

/** The guest may write its page tables directly (Xen traps and checks). */
export const XENFEAT_writable_page_tables = 0;
export const XENFEAT_writable_descriptor_tables = 1;
/** The guest sees pseudo-physical = machine (HVM/PVH style); not for PV. */
export const XENFEAT_auto_translated_physmap = 2;
export const XENFEAT_supervisor_mode_kernel = 3;
export const XENFEAT_pae_pgdir_above_4gb = 4;
/** MMU_PT_UPDATE_PRESERVE_AD is available. */
export const XENFEAT_mmu_pt_update_preserve_ad = 5;
/** MMUEXT_CLEAR_PAGE / MMUEXT_COPY_PAGE are available. */
export const XENFEAT_highmem_assist = 6;
export const XENFEAT_gnttab_map_avail_bits = 7;
export const XENFEAT_hvm_callback_vector = 8;
export const XENFEAT_hvm_safe_pvclock = 9;
export const XENFEAT_hvm_pirqs = 10;
/** The kernel can run as dom0. */
export const XENFEAT_dom0 = 11;
/* 12 was XENFEAT_grant_map_identity: retired, commented out of the header. */
export const XENFEAT_memory_op_vnode_supported = 13;
export const XENFEAT_ARM_SMCCC_supported = 14;
export const XENFEAT_linux_rsdp_unrestricted = 15;
export const XENFEAT_not_direct_mapped = 16;
export const XENFEAT_direct_mapped = 17;

/** Number of 32-bit submaps XENVER_get_features can return. */
export const XENFEAT_NR_SUBMAPS = 1;
