/*
 * Migration stream constants: the xl save-file header, the libxl stream (v2)
 * and the libxc stream (v3), as Xen 4.17 defines them.
 *
 * Sources (facts only): tools/xl/xl.h (struct save_file_header and its
 * flags), docs/specs/libxl-migration-stream.pandoc and
 * tools/libs/light/libxl_sr_stream_format.h, docs/specs/
 * libxc-migration-stream.pandoc and tools/libs/guest/xg_sr_stream_format.h.
 * The authoritative numbers for this project are in
 * shared/abi/migration-stream.json; tests/stream/constants.test.ts compares
 * every key of that file with the values below.
 *
 * Record type numbers are plain `number`s (they are u32 on the wire); 64-bit
 * quantities (the image marker, the libxl ident, PAGE_DATA type bits) are
 * `bigint`, as every u64 is in this project.
 */

// ---------------------------------------------------------------------------
// xl save-file header (struct save_file_header, xl.h)

/** The 32-byte magic at offset 0 of every file `xl save` writes. */
export const XL_MAGIC = 'Xen saved domain, xl format\n \0 \r';
/** `byteorder`: written in the saving host's order; we only read and write little-endian. */
export const XL_BYTEORDER = 0x01020304;
/** mandatory_flags bit 0: the config data is libxl JSON (clear: xl.cfg text). */
export const XL_MANDATORY_FLAG_JSON = 1 << 0;
/** mandatory_flags bit 1: what follows the header is a libxl v2 stream. */
export const XL_MANDATORY_FLAG_STREAMV2 = 1 << 1;
/** Every mandatory flag a reader knows; any other bit means "cannot restore". */
export const XL_MANDATORY_FLAGS_KNOWN = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2;
/** Size of the fixed part: magic + four u32. */
export const XL_HEADER_SIZE = 48;

// ---------------------------------------------------------------------------
// libxl stream, version 2

/** "LibxlFmt" in ASCII, big-endian. */
export const LIBXL_IDENT = 0x4c6962786c466d74n;
export const LIBXL_VERSION = 2;
export const LIBXL_OPT_BIT_ENDIAN = 0;
export const LIBXL_OPT_BIT_LEGACY = 1;
export const LIBXL_OPT_LE = 0 << LIBXL_OPT_BIT_ENDIAN;
export const LIBXL_OPT_BE = 1 << LIBXL_OPT_BIT_ENDIAN;
/** Set by the legacy-stream conversion tool; informative only. */
export const LIBXL_OPT_LEGACY = 1 << LIBXL_OPT_BIT_LEGACY;
/** The spec reserves option bits 2..31 (verify.py checks only bits 2..15). */
export const LIBXL_OPT_RESERVED = 0xfffffffc;

export const LIBXL_REC = {
  END: 0x00000000,
  LIBXC_CONTEXT: 0x00000001,
  EMULATOR_XENSTORE_DATA: 0x00000002,
  EMULATOR_CONTEXT: 0x00000003,
  CHECKPOINT_END: 0x00000004,
  CHECKPOINT_STATE: 0x00000005,
} as const;
export type LibxlRecName = keyof typeof LIBXL_REC;

export const EMULATOR_ID = {
  UNKNOWN: 0x00000000,
  QEMU_TRADITIONAL: 0x00000001,
  QEMU_UPSTREAM: 0x00000002,
} as const;

// ---------------------------------------------------------------------------
// libxc stream, version 3

export const IHDR_MARKER = 0xffffffffffffffffn;
/** "XENF" in ASCII. */
export const IHDR_ID = 0x58454e46;
/** What we write. Readers accept 2 and 3, as Xen 4.17 does. */
export const IHDR_VERSION = 3;
export const IHDR_VERSION_MIN = 2;
export const IHDR_OPT_BIT_ENDIAN = 0;
export const IHDR_OPT_LE = 0 << IHDR_OPT_BIT_ENDIAN;
export const IHDR_OPT_BE = 1 << IHDR_OPT_BIT_ENDIAN;
/** Option bits 1..15 are reserved. */
export const IHDR_OPT_RESERVED = 0xfffe;

export const DHDR_TYPE = {
  X86_PV: 0x00000001,
  X86_HVM: 0x00000002,
} as const;

export const LIBXC_REC = {
  END: 0x00000000,
  PAGE_DATA: 0x00000001,
  X86_PV_INFO: 0x00000002,
  X86_PV_P2M_FRAMES: 0x00000003,
  X86_PV_VCPU_BASIC: 0x00000004,
  X86_PV_VCPU_EXTENDED: 0x00000005,
  X86_PV_VCPU_XSAVE: 0x00000006,
  SHARED_INFO: 0x00000007,
  TSC_INFO: 0x00000008,
  HVM_CONTEXT: 0x00000009,
  HVM_PARAMS: 0x0000000a,
  TOOLSTACK: 0x0000000b,
  X86_PV_VCPU_MSRS: 0x0000000c,
  VERIFY: 0x0000000d,
  CHECKPOINT: 0x0000000e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0000000f,
  STATIC_DATA_END: 0x00000010,
  X86_CPUID_POLICY: 0x00000011,
  X86_MSR_POLICY: 0x00000012,
} as const;
export type LibxcRecName = keyof typeof LIBXC_REC;

/** Record types with bit 31 set are optional: a reader may skip them. */
export const REC_TYPE_OPTIONAL = 0x80000000;
/** Every record (header + body + padding) is a multiple of 8 bytes. */
export const REC_ALIGN = 8;
/** Xen's restore refuses records longer than this (xg_sr_common.h). */
export const REC_LENGTH_MAX = 128 << 20;

// ---------------------------------------------------------------------------
// PAGE_DATA: each pfn word is `type << 60 | pfn`, bits 52..59 reserved.

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Xen's saver never puts more pfns than this in one record (MAX_BATCH_SIZE). */
export const PAGE_DATA_MAX_BATCH = 1024;

export const PAGE_DATA_PFN_MASK = (1n << 52n) - 1n;
export const PAGE_DATA_PFN_RESZ_MASK = ((1n << 60n) - 1n) & ~((1n << 52n) - 1n);
export const PAGE_DATA_TYPE_SHIFT = 60n;

/**
 * The 4-bit page type of a pfn word (XEN_DOMCTL_PFINFO_* >> 28). Values 5..8
 * are reserved; 9..12 are the pinned page-table types.
 */
export const PageType = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PIN: 0x9,
  L2TAB_PIN: 0xa,
  L3TAB_PIN: 0xb,
  L4TAB_PIN: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;
export type PageType = (typeof PageType)[keyof typeof PageType];

/** The pinned bit within the 4-bit type (LPINTAB). */
export const PAGE_TYPE_PINNED = 0x8;
/** The table-level bits within the 4-bit type (LTABTYPE). */
export const PAGE_TYPE_LEVEL_MASK = 0x7;

const typeBits = (t: number): bigint => BigInt(t) << PAGE_DATA_TYPE_SHIFT;
export const PAGE_DATA_TYPE_NOTAB = typeBits(PageType.NOTAB);
export const PAGE_DATA_TYPE_L1TAB = typeBits(PageType.L1TAB);
export const PAGE_DATA_TYPE_L2TAB = typeBits(PageType.L2TAB);
export const PAGE_DATA_TYPE_L3TAB = typeBits(PageType.L3TAB);
export const PAGE_DATA_TYPE_L4TAB = typeBits(PageType.L4TAB);
export const PAGE_DATA_TYPE_LPINTAB = typeBits(PAGE_TYPE_PINNED);
export const PAGE_DATA_TYPE_LTABTYPE_MASK = typeBits(PAGE_TYPE_LEVEL_MASK);
export const PAGE_DATA_TYPE_LTAB_MASK = typeBits(0xf);
export const PAGE_DATA_TYPE_BROKEN = typeBits(PageType.BROKEN);
export const PAGE_DATA_TYPE_XALLOC = typeBits(PageType.XALLOC);
export const PAGE_DATA_TYPE_XTAB = typeBits(PageType.XTAB);

const KNOWN_PAGE_TYPES: ReadonlySet<number> = new Set(Object.values(PageType));

/** A 4-bit value Xen's restore accepts (is_known_page_type). */
export function isKnownPageType(t: number): t is PageType {
  return KNOWN_PAGE_TYPES.has(t);
}

/** Whether a pfn of this type carries 4096 bytes of page data in its record. */
export function pageTypeHasData(t: PageType): boolean {
  return t !== PageType.BROKEN && t !== PageType.XALLOC && t !== PageType.XTAB;
}

/** Page-table level 1..4 of a (possibly pinned) table type, 0 for anything else. */
export function pageTableLevel(t: PageType): number {
  if (t >= PageType.BROKEN) return 0;
  return t & PAGE_TYPE_LEVEL_MASK;
}

export function pageTypeName(t: number): string {
  for (const [k, v] of Object.entries(PageType)) if (v === t) return k;
  return `reserved(0x${t.toString(16)})`;
}

// ---------------------------------------------------------------------------
// x86 PV record bodies

/** X86_PV_INFO values this project saves and restores: a 64-bit guest, 4 levels. */
export const X86_PV_GUEST_WIDTH = 8;
export const X86_PV_PT_LEVELS = 4;
/** P2M entries per P2M frame for a 64-bit guest (PAGE_SIZE / guest width). */
export const P2M_FRAME_ENTRIES = PAGE_SIZE / X86_PV_GUEST_WIDTH;
/** TSC_INFO body length (mode, khz, nsec, incarnation, reserved). */
export const TSC_INFO_LENGTH = 24;
/** X86_PV_VCPU_EXTENDED context is at most 128 bytes (xg_sr_restore_x86_pv.c). */
export const VCPU_EXTENDED_MAX = 128;
/** X86_PV_VCPU_XSAVE context is at least 16 bytes. */
export const VCPU_XSAVE_MIN = 16;
/** X86_PV_VCPU_MSRS context is an array of xen_domctl_vcpu_msr_t (16 bytes). */
export const VCPU_MSR_ENTRY_SIZE = 16;
/** X86_CPUID_POLICY is an array of xen_cpuid_leaf_t (24 bytes). */
export const CPUID_LEAF_SIZE = 24;
/** X86_MSR_POLICY is an array of xen_msr_entry_t (16 bytes). */
export const MSR_ENTRY_SIZE = 16;

/*
 * vcpu_guest_context (x86_64) and shared_info: the few offsets the stream
 * checker needs. Copied from shared/abi/xen-public-abi.json rather than
 * imported from hypervisor/public/, whose layouts are being written
 * concurrently; tests/stream/constants.test.ts compares them with that file.
 */
export const VCPU_CONTEXT_SIZE = 5168;
/** user_regs (struct cpu_user_regs) inside vcpu_guest_context. */
export const VCPU_CONTEXT_USER_REGS = 520;
/** user_regs.rdx: on vCPU 0 of a suspended guest, the start_info frame. */
export const VCPU_CONTEXT_RDX = VCPU_CONTEXT_USER_REGS + 96;
export const VCPU_CONTEXT_GDT_FRAMES = 4832;
export const VCPU_CONTEXT_GDT_ENTS = 4960;
export const VCPU_CONTEXT_CTRLREG = 4984;
/** ctrlreg[3]: for a 64-bit PV guest xen_pfn_to_cr3(pfn) = pfn << 12. */
export const VCPU_CONTEXT_CR3 = VCPU_CONTEXT_CTRLREG + 3 * 8;
/** gdt_frames has 16 entries; at most FIRST_RESERVED_GDT_ENTRY (14 * 512) descriptors. */
export const VCPU_GDT_FRAMES_MAX = 16;
export const GDT_ENTRIES_MAX = 14 * 512;
export const SHARED_INFO_ARCH_MAX_PFN = 3088;

// ---------------------------------------------------------------------------
// x86-64 page-table entries

export const PTE_PRESENT = 1n << 0n;
export const PTE_PSE = 1n << 7n;
/** Frame number bits 12..51 of a PTE. */
export const PTE_FRAME_BITS = 40;
/** L4 slots Xen keeps for itself (HYPERVISOR_VIRT_START..END); the saver zeroes them. */
export const L4_XEN_SLOT_FIRST = 256;
export const L4_XEN_SLOT_LAST = 272;
