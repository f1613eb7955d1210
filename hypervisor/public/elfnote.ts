/*
 * xen/include/public/elfnote.h: the "Xen" ELF notes a PV kernel image
 * carries to tell the domain builder how to load and start it.
 *
 * xenport kernels are TypeScript, not ELF, but a kernel image still
 * declares the same notes (as a table keyed by these numbers) so the
 * builder reads them the Xen way, e.g. XEN_ELFNOTE_SUSPEND_CANCEL to learn
 * that the guest supports fast resume (ARCHITECTURE §6.2).
 */

/** Free-form info string (unused). */
export const XEN_ELFNOTE_INFO = 0;
/** Virtual address of the entry point (numeric). */
export const XEN_ELFNOTE_ENTRY = 1;
/** Virtual address of the hypercall page (numeric). */
export const XEN_ELFNOTE_HYPERCALL_PAGE = 2;
/** Virtual address the image is linked at (numeric). */
export const XEN_ELFNOTE_VIRT_BASE = 3;
/** Offset between virtual and pseudo-physical addresses (numeric). */
export const XEN_ELFNOTE_PADDR_OFFSET = 4;
/** Xen version the kernel expects, e.g. "xen-3.0" (string). */
export const XEN_ELFNOTE_XEN_VERSION = 5;
/** Guest OS name, e.g. "NetBSD" (string). */
export const XEN_ELFNOTE_GUEST_OS = 6;
/** Guest OS version (string). */
export const XEN_ELFNOTE_GUEST_VERSION = 7;
/** Loader type, "generic" (string). */
export const XEN_ELFNOTE_LOADER = 8;
/** PAE mode: "yes", "no", "bimodal" (string). */
export const XEN_ELFNOTE_PAE_MODE = 9;
/** Features required/supported, "|"-separated XENFEAT names (string). */
export const XEN_ELFNOTE_FEATURES = 10;
/** The builder should load the symbol table too ("yes"). */
export const XEN_ELFNOTE_BSD_SYMTAB = 11;
/** Lowest address the hypervisor hole may start at (numeric). */
export const XEN_ELFNOTE_HV_START_LOW = 12;
/** Mask and value identifying valid MFNs in L1 entries (numeric pair). */
export const XEN_ELFNOTE_L1_MFN_VALID = 13;
/** The kernel can resume after a cancelled suspend (fast resume, rax = 1). */
export const XEN_ELFNOTE_SUSPEND_CANCEL = 14;
/** Virtual address at which to place the initial P2M list (numeric). */
export const XEN_ELFNOTE_INIT_P2M = 15;
/** The kernel accepts mod_start as a PFN (SIF_MOD_START_PFN). */
export const XEN_ELFNOTE_MOD_START_PFN = 16;
/** Bitmap of XENFEAT_* the kernel supports (numeric). */
export const XEN_ELFNOTE_SUPPORTED_FEATURES = 17;
/** 32-bit physical entry point for PVH (numeric). */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
export const XEN_ELFNOTE_MAX = XEN_ELFNOTE_PHYS32_ENTRY;

/* Notes in core dumps (not in kernel images). */
export const XEN_ELFNOTE_CRASH_INFO = 0x1000001;
export const XEN_ELFNOTE_CRASH_REGS = 0x1000002;
export const XEN_ELFNOTE_DUMPCORE_NONE = 0x2000000;
export const XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001;
export const XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002;
export const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003;
