/*
 * xen/include/public/xen.h: hypercall numbers, the MMU interface, domain
 * ids, VIRQs, and the three pages every PV guest starts from: start_info,
 * shared_info (with one vcpu_info per vCPU) and the time info inside it.
 *
 * Also here, because every caller of `xen_version` wants them next to the
 * hypercall: the XENVER_* commands of xen/include/public/version.h.
 *
 * x86_64 only: `unsigned long`, `xen_pfn_t` and `xen_ulong_t` are 8 bytes.
 */
import { struct, union, record, array, u8, i8, u32, u64, char, ulong, guest_handle } from './layout.js';
import { arch_shared_info, arch_vcpu_info, XEN_LEGACY_MAX_VCPUS } from './arch-x86_64.js';

export { XEN_LEGACY_MAX_VCPUS };

// ---------------------------------------------------------------------------
// Hypercall numbers (the value a guest puts in rax)

export const __HYPERVISOR_set_trap_table = 0;
export const __HYPERVISOR_mmu_update = 1;
export const __HYPERVISOR_set_gdt = 2;
export const __HYPERVISOR_stack_switch = 3;
export const __HYPERVISOR_set_callbacks = 4;
export const __HYPERVISOR_fpu_taskswitch = 5;
/** Pre-3.0.2 sched_op; kept so old guests still get an answer. */
export const __HYPERVISOR_sched_op_compat = 6;
export const __HYPERVISOR_platform_op = 7;
export const __HYPERVISOR_set_debugreg = 8;
export const __HYPERVISOR_get_debugreg = 9;
export const __HYPERVISOR_update_descriptor = 10;
export const __HYPERVISOR_memory_op = 12;
export const __HYPERVISOR_multicall = 13;
export const __HYPERVISOR_update_va_mapping = 14;
export const __HYPERVISOR_set_timer_op = 15;
export const __HYPERVISOR_event_channel_op_compat = 16;
export const __HYPERVISOR_xen_version = 17;
export const __HYPERVISOR_console_io = 18;
export const __HYPERVISOR_physdev_op_compat = 19;
export const __HYPERVISOR_grant_table_op = 20;
export const __HYPERVISOR_vm_assist = 21;
export const __HYPERVISOR_update_va_mapping_otherdomain = 22;
/** x86 only. */
export const __HYPERVISOR_iret = 23;
export const __HYPERVISOR_vcpu_op = 24;
/** x86_64 only. */
export const __HYPERVISOR_set_segment_base = 25;
export const __HYPERVISOR_mmuext_op = 26;
export const __HYPERVISOR_xsm_op = 27;
export const __HYPERVISOR_nmi_op = 28;
export const __HYPERVISOR_sched_op = 29;
export const __HYPERVISOR_callback_op = 30;
export const __HYPERVISOR_xenoprof_op = 31;
export const __HYPERVISOR_event_channel_op = 32;
export const __HYPERVISOR_physdev_op = 33;
export const __HYPERVISOR_hvm_op = 34;
export const __HYPERVISOR_sysctl = 35;
export const __HYPERVISOR_domctl = 36;
export const __HYPERVISOR_kexec_op = 37;
export const __HYPERVISOR_tmem_op = 38;
export const __HYPERVISOR_argo_op = 39;
export const __HYPERVISOR_xenpmu_op = 40;
export const __HYPERVISOR_dm_op = 41;
export const __HYPERVISOR_hypfs_op = 42;
/* 48..55 are left to each architecture. */
export const __HYPERVISOR_arch_0 = 48;
export const __HYPERVISOR_arch_1 = 49;
export const __HYPERVISOR_arch_2 = 50;
export const __HYPERVISOR_arch_3 = 51;
export const __HYPERVISOR_arch_4 = 52;
export const __HYPERVISOR_arch_5 = 53;
export const __HYPERVISOR_arch_6 = 54;
export const __HYPERVISOR_arch_7 = 55;

// ---------------------------------------------------------------------------
// Virtual interrupts (bind with EVTCHNOP_bind_virq). V = per vCPU, G = global.

/** V: timer tick or the requested timeout passed. */
export const VIRQ_TIMER = 0;
/** V: asked to dump debug information. */
export const VIRQ_DEBUG = 1;
/** G (dom0): input on the emergency console. */
export const VIRQ_CONSOLE = 2;
/** G (dom0): some domain shut down, crashed or died: look with getdomaininfo. */
export const VIRQ_DOM_EXC = 3;
export const VIRQ_TBUF = 4;
export const VIRQ_DEBUGGER = 6;
export const VIRQ_XENOPROF = 7;
export const VIRQ_CON_RING = 8;
export const VIRQ_PCPU_STATE = 9;
export const VIRQ_MEM_EVENT = 10;
export const VIRQ_ARGO = 11;
export const VIRQ_ENOMEM = 12;
export const VIRQ_XENPMU = 13;
export const VIRQ_ARCH_0 = 16;
export const VIRQ_ARCH_1 = 17;
export const VIRQ_ARCH_2 = 18;
export const VIRQ_ARCH_3 = 19;
export const VIRQ_ARCH_4 = 20;
export const VIRQ_ARCH_5 = 21;
export const VIRQ_ARCH_6 = 22;
export const VIRQ_ARCH_7 = 23;
export const NR_VIRQS = 24;

// ---------------------------------------------------------------------------
// mmu_update: the low 2 bits of `ptr` select the command.

/** Checked `*ptr = val`; ptr is the machine address of a PTE. */
export const MMU_NORMAL_PT_UPDATE = 0;
/** Set the M2P entry of frame `ptr >> 12` to `val` (a PFN). */
export const MMU_MACHPHYS_UPDATE = 1;
/** Like NORMAL, but keeps the accessed/dirty bits already in the PTE. */
export const MMU_PT_UPDATE_PRESERVE_AD = 2;
/** Like NORMAL, but `val` is never translated (auto-translated guests). */
export const MMU_PT_UPDATE_NO_TRANSLATE = 3;

/*
 * struct mmu_update {
 *     uint64_t ptr;       // Machine address of PTE (low 2 bits: MMU_* cmd)
 *     uint64_t val;       // New contents of PTE
 * };
 */
export const mmu_update = struct('mmu_update_t', {
  ptr: u64,
  val: u64,
});
export const mmu_update_t = mmu_update;

// ---------------------------------------------------------------------------
// mmuext_op commands

export const MMUEXT_PIN_L1_TABLE = 0;
export const MMUEXT_PIN_L2_TABLE = 1;
export const MMUEXT_PIN_L3_TABLE = 2;
export const MMUEXT_PIN_L4_TABLE = 3;
export const MMUEXT_UNPIN_TABLE = 4;
/** arg1.mfn: the new L4 (kernel CR3). */
export const MMUEXT_NEW_BASEPTR = 5;
export const MMUEXT_TLB_FLUSH_LOCAL = 6;
/** arg1.linear_addr: the address to flush. */
export const MMUEXT_INVLPG_LOCAL = 7;
export const MMUEXT_TLB_FLUSH_MULTI = 8;
export const MMUEXT_INVLPG_MULTI = 9;
export const MMUEXT_TLB_FLUSH_ALL = 10;
export const MMUEXT_INVLPG_ALL = 11;
export const MMUEXT_FLUSH_CACHE = 12;
export const MMUEXT_SET_LDT = 13;
/** x86_64: the L4 used while in user mode. */
export const MMUEXT_NEW_USER_BASEPTR = 15;
export const MMUEXT_CLEAR_PAGE = 16;
export const MMUEXT_COPY_PAGE = 17;
export const MMUEXT_FLUSH_CACHE_GLOBAL = 18;
export const MMUEXT_MARK_SUPER = 19;
export const MMUEXT_UNMARK_SUPER = 20;

const mmuext_op_arg1 = union('struct mmuext_op arg1', {
  mfn: ulong,
  linear_addr: ulong,
});
const mmuext_op_arg2 = union('struct mmuext_op arg2', {
  nr_ents: u32,
  vcpumask: guest_handle,
  src_mfn: ulong,
});

/*
 * struct mmuext_op {
 *     unsigned int cmd; // => enum mmuext_cmd
 *     union {
 *         xen_pfn_t     mfn;          // [UN]PIN_TABLE, NEW_BASEPTR, NEW_USER_BASEPTR,
 *                                     // CLEAR_PAGE, COPY_PAGE, [UN]MARK_SUPER
 *         unsigned long linear_addr;  // INVLPG_LOCAL, INVLPG_ALL, SET_LDT
 *     } arg1;
 *     union {
 *         unsigned int nr_ents;       // SET_LDT
 *         XEN_GUEST_HANDLE(const_void) vcpumask; // TLB_FLUSH_MULTI, INVLPG_MULTI
 *         xen_pfn_t src_mfn;          // COPY_PAGE
 *     } arg2;
 * };
 */
export const mmuext_op = struct('struct mmuext_op', {
  cmd: u32,
  arg1: record(mmuext_op_arg1),
  arg2: record(mmuext_op_arg2),
});

// ---------------------------------------------------------------------------
// update_va_mapping flags (ORed into the flags argument)

export const UVMF_NONE = 0;
export const UVMF_TLB_FLUSH = 1;
export const UVMF_INVLPG = 2;
export const UVMF_FLUSHTYPE_MASK = 3;
/** Flush the TLBs of the vCPUs in a bitmap whose pointer is ORed in. */
export const UVMF_MULTI = 0;
/** UVMF_MULTI with a null bitmap: this vCPU only. */
export const UVMF_LOCAL = 0;
export const UVMF_ALL = 4;

// ---------------------------------------------------------------------------
// console_io

export const CONSOLEIO_write = 0;
export const CONSOLEIO_read = 1;

// ---------------------------------------------------------------------------
// vm_assist

export const VMASST_CMD_enable = 0;
export const VMASST_CMD_disable = 1;
export const VMASST_TYPE_4gb_segments = 0;
export const VMASST_TYPE_4gb_segments_notify = 1;
/** Let the guest write its page tables directly (Xen emulates the write). */
export const VMASST_TYPE_writable_pagetables = 2;
export const VMASST_TYPE_pae_extended_cr3 = 3;
export const VMASST_TYPE_architectural_iopl = 4;
export const VMASST_TYPE_runstate_update_flag = 5;
export const VMASST_TYPE_m2p_strict = 32;

// ---------------------------------------------------------------------------
// Domain ids

/** Ids from here up never name an ordinary domain. */
export const DOMID_FIRST_RESERVED = 0x7ff0;
/** "The calling domain". */
export const DOMID_SELF = 0x7ff0;
/** Pseudo-owner of I/O memory. */
export const DOMID_IO = 0x7ff1;
/** Pseudo-owner of Xen's own frames. */
export const DOMID_XEN = 0x7ff2;
export const DOMID_COW = 0x7ff3;
/** Owner unknown. */
export const DOMID_INVALID = 0x7ff4;
export const DOMID_IDLE = 0x7fff;
export const DOMID_MASK = 0x7fff;

/*
 * struct multicall_entry {
 *     xen_ulong_t op, result;
 *     xen_ulong_t args[6];
 * };
 */
export const multicall_entry = struct('multicall_entry_t', {
  op: ulong,
  result: ulong,
  args: array(ulong, 6),
});

// ---------------------------------------------------------------------------
// Time

/* vcpu_time_info.flags */
export const XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0;
export const XEN_PVCLOCK_GUEST_STOPPED = 1 << 1;

/*
 * struct vcpu_time_info {
 *     uint32_t version;         // odd while Xen updates the record
 *     uint32_t pad0;
 *     uint64_t tsc_timestamp;   // TSC at last update of time vals
 *     uint64_t system_time;     // Time, in nanosecs, since boot
 *     uint32_t tsc_to_system_mul;
 *     int8_t   tsc_shift;
 *     uint8_t  flags;
 *     uint8_t  pad1[2];
 * }; // 32 bytes
 *
 * now = system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)
 * (a negative tsc_shift shifts right).
 */
export const vcpu_time_info = struct('vcpu_time_info_t', {
  version: u32,
  pad0: u32,
  tsc_timestamp: u64,
  system_time: u64,
  tsc_to_system_mul: u32,
  tsc_shift: i8,
  flags: u8,
  pad1: array(u8, 2),
});
export const vcpu_time_info_t = vcpu_time_info;

/*
 * struct vcpu_info {
 *     uint8_t evtchn_upcall_pending;  // set by Xen, cleared by the guest
 *     uint8_t evtchn_upcall_mask;     // guest's "interrupts off"
 *     xen_ulong_t evtchn_pending_sel; // which words of evtchn_pending to scan
 *     struct arch_vcpu_info arch;
 *     vcpu_time_info_t time;
 * }; // 64 bytes (x86)
 */
export const vcpu_info = struct('vcpu_info_t', {
  evtchn_upcall_pending: u8,
  evtchn_upcall_mask: u8,
  evtchn_pending_sel: ulong,
  arch: record(arch_vcpu_info),
  time: record(vcpu_time_info),
});
export const vcpu_info_t = vcpu_info;

/** Words in evtchn_pending / evtchn_mask: sizeof(xen_ulong_t) * 8. */
export const EVTCHN_WORDS = 64;

/*
 * struct shared_info {
 *     struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS];
 *     xen_ulong_t evtchn_pending[sizeof(xen_ulong_t) * 8];
 *     xen_ulong_t evtchn_mask[sizeof(xen_ulong_t) * 8];
 *     uint32_t wc_version;      // Version counter: see vcpu_time_info_t
 *     uint32_t wc_sec;          // wall clock at system time 0 (Unix epoch)
 *     uint32_t wc_nsec;
 *     uint32_t wc_sec_hi;       // upper 32 bits of wc_sec (not on i386)
 *     struct arch_shared_info arch;
 * };
 */
export const shared_info = struct('shared_info_t', {
  vcpu_info: array(record(vcpu_info), XEN_LEGACY_MAX_VCPUS),
  evtchn_pending: array(ulong, EVTCHN_WORDS),
  evtchn_mask: array(ulong, EVTCHN_WORDS),
  wc_version: u32,
  wc_sec: u32,
  wc_nsec: u32,
  wc_sec_hi: u32,
  arch: record(arch_shared_info),
});
export const shared_info_t = shared_info;

// ---------------------------------------------------------------------------
// start_info

export const MAX_GUEST_CMDLINE = 1024;

/**
 * `start_info.magic` of a 64-bit PV guest: "xen-<version>-<platform>". Not a
 * Xen macro (the builder writes it), named here so builder and guest agree.
 */
export const XEN_START_INFO_MAGIC = 'xen-3.0-x86_64';

const start_info_console_domU = struct('start_info console.domU', {
  mfn: ulong,
  evtchn: u32,
});
const start_info_console_dom0 = struct('start_info console.dom0', {
  info_off: u32,
  info_size: u32,
});
const start_info_console = union('start_info console', {
  domU: record(start_info_console_domU),
  dom0: record(start_info_console_dom0),
});

/*
 * struct start_info {
 *     // Filled in both on initial boot and on resume:
 *     char magic[32];             // "xen-<version>-<platform>"
 *     unsigned long nr_pages;     // Total pages allocated to this domain
 *     unsigned long shared_info;  // MACHINE address of shared info struct
 *     uint32_t flags;             // SIF_xxx flags
 *     xen_pfn_t store_mfn;        // MACHINE page number of shared page
 *     uint32_t store_evtchn;      // Event channel for store communication
 *     union {
 *         struct {
 *             xen_pfn_t mfn;      // MACHINE page number of console page
 *             uint32_t  evtchn;   // Event channel for console page
 *         } domU;
 *         struct {
 *             uint32_t info_off;  // Offset of console_info struct
 *             uint32_t info_size; // Size of console_info struct from start
 *         } dom0;
 *     } console;
 *     // Filled in only on initial boot:
 *     unsigned long pt_base;      // VIRTUAL address of page directory
 *     unsigned long nr_pt_frames; // Number of bootstrap p.t. frames
 *     unsigned long mfn_list;     // VIRTUAL address of page-frame list
 *     unsigned long mod_start;    // VIRTUAL address (or PFN) of a module
 *     unsigned long mod_len;      // Size (bytes) of pre-loaded module
 *     int8_t cmd_line[MAX_GUEST_CMDLINE];
 *     unsigned long first_p2m_pfn;// 1st pfn forming initial P->M table
 *     unsigned long nr_p2m_frames;// # of pfns forming initial P->M table
 * };
 */
export const start_info = struct('start_info_t', {
  magic: array(char, 32),
  nr_pages: ulong,
  shared_info: ulong,
  flags: u32,
  store_mfn: ulong,
  store_evtchn: u32,
  console: record(start_info_console),
  pt_base: ulong,
  nr_pt_frames: ulong,
  mfn_list: ulong,
  mod_start: ulong,
  mod_len: ulong,
  cmd_line: array(i8, MAX_GUEST_CMDLINE),
  first_p2m_pfn: ulong,
  nr_p2m_frames: ulong,
});
export const start_info_t = start_info;

/* start_info.flags */
/** The domain is privileged. */
export const SIF_PRIVILEGED = 1 << 0;
/** The domain is the initial control domain. */
export const SIF_INITDOMAIN = 1 << 1;
export const SIF_MULTIBOOT_MOD = 1 << 2;
/** mod_start is a PFN, not a virtual address. */
export const SIF_MOD_START_PFN = 1 << 3;
/** The tools understand a virtually mapped P2M (no 3-level tree needed). */
export const SIF_VIRT_P2M_4TOOLS = 1 << 4;
/** One byte reserved for power-management options. */
export const SIF_PM_MASK = 0xff << 8;

/*
 * struct xen_multiboot_mod_list {
 *     uint32_t mod_start;  // Address of first byte of the module
 *     uint32_t mod_end;    // Address of last byte of the module (inclusive)
 *     uint32_t cmdline;    // Address of zero-terminated command line
 *     uint32_t pad;        // Unused, must be zero
 * };
 */
export const xen_multiboot_mod_list = struct('struct xen_multiboot_mod_list', {
  mod_start: u32,
  mod_end: u32,
  cmdline: u32,
  pad: u32,
});

/** `typedef uint8_t xen_domain_handle_t[16];` (a UUID). */
export const xen_domain_handle_t = array(u8, 16);

/*
 * typedef struct { uint8_t a[16]; } xen_uuid_t;
 */
export const xen_uuid_t = struct('xen_uuid_t', { a: array(u8, 16) });

// ---------------------------------------------------------------------------
// xen_version (xen/include/public/version.h)

/** Returns (major << 16) | minor; no argument. */
export const XENVER_version = 0;
/** Argument: xen_extraversion_t (char[16]). */
export const XENVER_extraversion = 1;
export const XEN_EXTRAVERSION_LEN = 16;
/** Argument: struct xen_compile_info. */
export const XENVER_compile_info = 2;
/** Argument: char[1024], e.g. "xen-3.0-x86_64 ...". */
export const XENVER_capabilities = 3;
export const XEN_CAPABILITIES_INFO_LEN = 1024;
/** Argument: char[64]. */
export const XENVER_changeset = 4;
export const XEN_CHANGESET_INFO_LEN = 64;
/** Argument: struct xen_platform_parameters. */
export const XENVER_platform_parameters = 5;
/** Argument: struct xen_feature_info (XENFEAT_* in features.ts). */
export const XENVER_get_features = 6;
/** Returns the page size; no argument. */
export const XENVER_pagesize = 7;
/** Argument: xen_domain_handle_t. */
export const XENVER_guest_handle = 8;
/** Argument: char[1024]. */
export const XENVER_commandline = 9;
export const XENVER_build_id = 10;

/*
 * struct xen_compile_info {
 *     char compiler[64];
 *     char compile_by[16];
 *     char compile_domain[32];
 *     char compile_date[32];
 * };
 */
export const xen_compile_info = struct('struct xen_compile_info', {
  compiler: array(char, 64),
  compile_by: array(char, 16),
  compile_domain: array(char, 32),
  compile_date: array(char, 32),
});

/*
 * struct xen_platform_parameters {
 *     xen_ulong_t virt_start;   // start of Xen's hole in the address space
 * };
 */
export const xen_platform_parameters = struct('struct xen_platform_parameters', {
  virt_start: ulong,
});

/*
 * struct xen_feature_info {
 *     unsigned int submap_idx;    // IN: which 32-bit submap to return
 *     uint32_t     submap;        // OUT: 32-bit submap
 * };
 */
export const xen_feature_info = struct('struct xen_feature_info', {
  submap_idx: u32,
  submap: u32,
});
