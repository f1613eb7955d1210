/*
 * domctl and sysctl: xenport's OWN toolstack ABI, modelled on Xen 4.17's
 * xen/include/public/domctl.h and sysctl.h.
 *
 * Xen makes no stability promise for domctl/sysctl (they change with every
 * release and are gated by XEN_DOMCTL_INTERFACE_VERSION), and only the
 * toolstack uses them, so xenport defines its own. It stays as close to
 * Xen as is useful:
 *
 *  - Command numbers and names are Xen's wherever Xen has the command
 *    (XEN_DOMCTL_createdomain 1, ..., getpageframeinfo3 61, gettscinfo 59).
 *  - Constants Xen defines (XEN_DOMINF_*, XEN_DOMCTL_PFINFO_*,
 *    XEN_DOMCTL_SHADOW_OP_*, XEN_DOMCTL_CDF_*, XEN_SYSCTL_PHYSCAP_*) have
 *    Xen's values; the ABI header test compares them with the real headers.
 *    The PFINFO page types are also the page-type tags of the migration
 *    stream's PAGE_DATA records, so they must not drift.
 *  - Every member struct declared below has Xen 4.17's x86_64 layout,
 *    field for field (compared by hand with the 4.17 headers when written;
 *    the ABI tests leave these layouts alone, since the ABI is ours).
 *    Guest handles are 8-byte addresses in the caller's address space, as
 *    in Xen.
 *
 * Where it differs from Xen:
 *  - Only the members xenport implements are in the `u` unions (Xen's have
 *    ~60); `u.pad[128]` keeps the union, and so `struct xen_domctl`, at
 *    Xen's size (16 + 128 bytes) so adding a member never moves anything.
 *  - XEN_DOMCTL_set_kernel (number 0x8000, far above Xen's range) is
 *    xenport's: a PV domain's kernel is TypeScript registered by name, not
 *    an ELF loaded into memory, so the builder names it with this command
 *    and the hypervisor checks the image's version hash (see
 *    ARCHITECTURE §3: a restore with different kernel text is refused).
 *  - createdomain ignores HVM/HAP/IOMMU flags (PV only) and the arch config.
 */
import { struct, union, record, array, u8, u16, i32, u32, u64, i64, char, domid_t, guest_handle } from './layout.js';
import { xen_domain_handle_t } from './xen.js';

// ---------------------------------------------------------------------------
// domctl commands

/** Same value as Xen 4.17: every member kept has 4.17's layout. */
export const XEN_DOMCTL_INTERFACE_VERSION = 0x0000_0015;

/** `domain` 0 asks for a fresh id; OUT: the id (also in `domain`). */
export const XEN_DOMCTL_createdomain = 1;
export const XEN_DOMCTL_destroydomain = 2;
export const XEN_DOMCTL_pausedomain = 3;
export const XEN_DOMCTL_unpausedomain = 4;
/** Info of `domain`, or of the next existing domain above it. */
export const XEN_DOMCTL_getdomaininfo = 5;
export const XEN_DOMCTL_setvcpuaffinity = 9;
/** Log-dirty control for live migration. */
export const XEN_DOMCTL_shadow_op = 10;
export const XEN_DOMCTL_max_mem = 11;
export const XEN_DOMCTL_setvcpucontext = 12;
export const XEN_DOMCTL_getvcpucontext = 13;
export const XEN_DOMCTL_getvcpuinfo = 14;
export const XEN_DOMCTL_max_vcpus = 15;
export const XEN_DOMCTL_scheduler_op = 16;
export const XEN_DOMCTL_setdomainhandle = 17;
export const XEN_DOMCTL_setdebugging = 18;
export const XEN_DOMCTL_irq_permission = 19;
export const XEN_DOMCTL_iomem_permission = 20;
export const XEN_DOMCTL_ioport_permission = 21;
export const XEN_DOMCTL_hypercall_init = 22;
export const XEN_DOMCTL_settimeoffset = 24;
export const XEN_DOMCTL_getvcpuaffinity = 25;
/** Undo a suspend in place (fast resume, `xl save -c`). */
export const XEN_DOMCTL_resumedomain = 27;
export const XEN_DOMCTL_sendtrigger = 28;
/** Give Xen a port (of the caller) to signal when this domain suspends. */
export const XEN_DOMCTL_subscribe = 29;
export const XEN_DOMCTL_set_address_size = 35;
export const XEN_DOMCTL_get_address_size = 36;
export const XEN_DOMCTL_set_ext_vcpucontext = 42;
export const XEN_DOMCTL_get_ext_vcpucontext = 43;
export const XEN_DOMCTL_set_target = 46;
export const XEN_DOMCTL_gettscinfo = 59;
export const XEN_DOMCTL_settscinfo = 60;
/** Page types of a batch of frames (save: which pages are page tables). */
export const XEN_DOMCTL_getpageframeinfo3 = 61;
export const XEN_DOMCTL_soft_reset = 79;

/** xenport only: bind a registered TypeScript kernel image to the domain. */
export const XEN_DOMCTL_set_kernel = 0x8000;

// ---------------------------------------------------------------------------
// createdomain

export const _XEN_DOMCTL_CDF_hvm = 0;
export const XEN_DOMCTL_CDF_hvm = 1 << _XEN_DOMCTL_CDF_hvm;
export const _XEN_DOMCTL_CDF_hap = 1;
export const XEN_DOMCTL_CDF_hap = 1 << _XEN_DOMCTL_CDF_hap;
export const _XEN_DOMCTL_CDF_s3_integrity = 2;
export const XEN_DOMCTL_CDF_s3_integrity = 1 << _XEN_DOMCTL_CDF_s3_integrity;
export const _XEN_DOMCTL_CDF_oos_off = 3;
export const XEN_DOMCTL_CDF_oos_off = 1 << _XEN_DOMCTL_CDF_oos_off;
export const _XEN_DOMCTL_CDF_xs_domain = 4;
export const XEN_DOMCTL_CDF_xs_domain = 1 << _XEN_DOMCTL_CDF_xs_domain;
export const _XEN_DOMCTL_CDF_iommu = 5;
export const XEN_DOMCTL_CDF_iommu = 1 << _XEN_DOMCTL_CDF_iommu;
export const _XEN_DOMCTL_CDF_nested_virt = 6;
export const XEN_DOMCTL_CDF_nested_virt = 1 << _XEN_DOMCTL_CDF_nested_virt;
export const XEN_DOMCTL_CDF_vpmu = 1 << 7;
export const XEN_DOMCTL_CDF_MAX = XEN_DOMCTL_CDF_vpmu;

/*
 * struct xen_arch_domainconfig {   // x86
 *     uint32_t emulation_flags;    // XEN_X86_EMU_* (0 for PV)
 *     uint32_t misc_flags;
 * };
 */
export const xen_arch_domainconfig = struct('struct xen_arch_domainconfig', {
  emulation_flags: u32,
  misc_flags: u32,
});

/*
 * struct xen_domctl_createdomain {
 *     uint32_t ssidref;
 *     xen_domain_handle_t handle;   // UUID
 *     uint32_t flags;               // XEN_DOMCTL_CDF_*
 *     uint32_t iommu_opts;
 *     uint32_t max_vcpus;
 *     uint32_t max_evtchn_port;
 *     int32_t max_grant_frames;     // < 0: hypervisor default
 *     int32_t max_maptrack_frames;  // < 0: hypervisor default
 *     uint32_t grant_opts;          // low 4 bits: grant table version
 *     uint32_t vmtrace_size;
 *     uint32_t cpupool_id;
 *     struct xen_arch_domainconfig arch;
 * };
 */
export const xen_domctl_createdomain = struct('struct xen_domctl_createdomain', {
  ssidref: u32,
  handle: xen_domain_handle_t,
  flags: u32,
  iommu_opts: u32,
  max_vcpus: u32,
  max_evtchn_port: u32,
  max_grant_frames: i32,
  max_maptrack_frames: i32,
  grant_opts: u32,
  vmtrace_size: u32,
  cpupool_id: u32,
  arch: record(xen_arch_domainconfig),
});

// ---------------------------------------------------------------------------
// getdomaininfo

export const _XEN_DOMINF_dying = 0;
/** Being destroyed. */
export const XEN_DOMINF_dying = 1 << _XEN_DOMINF_dying;
export const _XEN_DOMINF_hvm_guest = 1;
export const XEN_DOMINF_hvm_guest = 1 << _XEN_DOMINF_hvm_guest;
export const _XEN_DOMINF_shutdown = 2;
/** The guest shut down; the reason is in the shutdown code bits. */
export const XEN_DOMINF_shutdown = 1 << _XEN_DOMINF_shutdown;
export const _XEN_DOMINF_paused = 3;
/** Paused by the toolstack. */
export const XEN_DOMINF_paused = 1 << _XEN_DOMINF_paused;
export const _XEN_DOMINF_blocked = 4;
/** Every vCPU is blocked waiting for an event. */
export const XEN_DOMINF_blocked = 1 << _XEN_DOMINF_blocked;
export const _XEN_DOMINF_running = 5;
export const XEN_DOMINF_running = 1 << _XEN_DOMINF_running;
export const _XEN_DOMINF_debugged = 6;
export const XEN_DOMINF_debugged = 1 << _XEN_DOMINF_debugged;
export const _XEN_DOMINF_xs_domain = 7;
export const XEN_DOMINF_xs_domain = 1 << _XEN_DOMINF_xs_domain;
export const _XEN_DOMINF_hap = 8;
export const XEN_DOMINF_hap = 1 << _XEN_DOMINF_hap;
/** The SHUTDOWN_* code: (flags >> shift) & mask. */
export const XEN_DOMINF_shutdownmask = 255;
export const XEN_DOMINF_shutdownshift = 16;

/** xen_domctl_getdomaininfo.max_vcpu_id of a domain without vCPUs. */
export const XEN_INVALID_MAX_VCPU_ID = 0xffff_ffff;

/*
 * struct xen_domctl_getdomaininfo {
 *     domid_t  domain;              // Also echoed in domctl.domain
 *     uint16_t pad1;
 *     uint32_t flags;               // XEN_DOMINF_*
 *     uint64_aligned_t tot_pages;
 *     uint64_aligned_t max_pages;
 *     uint64_aligned_t outstanding_pages;
 *     uint64_aligned_t shr_pages;
 *     uint64_aligned_t paged_pages;
 *     uint64_aligned_t shared_info_frame; // GMFN of shared_info struct
 *     uint64_aligned_t cpu_time;          // ns
 *     uint32_t nr_online_vcpus;
 *     uint32_t max_vcpu_id;
 *     uint32_t ssidref;
 *     xen_domain_handle_t handle;
 *     uint32_t cpupool;
 *     uint8_t gpaddr_bits;
 *     uint8_t pad2[7];
 *     struct xen_arch_domainconfig arch_config;
 * };
 */
export const xen_domctl_getdomaininfo = struct('struct xen_domctl_getdomaininfo', {
  domain: domid_t,
  pad1: u16,
  flags: u32,
  tot_pages: u64,
  max_pages: u64,
  outstanding_pages: u64,
  shr_pages: u64,
  paged_pages: u64,
  shared_info_frame: u64,
  cpu_time: u64,
  nr_online_vcpus: u32,
  max_vcpu_id: u32,
  ssidref: u32,
  handle: xen_domain_handle_t,
  cpupool: u32,
  gpaddr_bits: u8,
  pad2: array(u8, 7),
  arch_config: record(xen_arch_domainconfig),
});

// ---------------------------------------------------------------------------
// getpageframeinfo3: page types, also the PAGE_DATA tags of the stream

export const XEN_DOMCTL_PFINFO_LTAB_SHIFT = 28;
export const XEN_DOMCTL_PFINFO_NOTAB = 0x0000_0000;
export const XEN_DOMCTL_PFINFO_L1TAB = 0x1000_0000;
export const XEN_DOMCTL_PFINFO_L2TAB = 0x2000_0000;
export const XEN_DOMCTL_PFINFO_L3TAB = 0x3000_0000;
export const XEN_DOMCTL_PFINFO_L4TAB = 0x4000_0000;
export const XEN_DOMCTL_PFINFO_LTABTYPE_MASK = 0x7000_0000;
/** ORed into a page-table type: the table is pinned. */
export const XEN_DOMCTL_PFINFO_LPINTAB = 0x8000_0000;
/** Not a valid page (no frame behind this PFN). */
export const XEN_DOMCTL_PFINFO_XTAB = 0xf000_0000;
/** Allocate only, no data follows. */
export const XEN_DOMCTL_PFINFO_XALLOC = 0xe000_0000;
export const XEN_DOMCTL_PFINFO_BROKEN = 0xd000_0000;
export const XEN_DOMCTL_PFINFO_LTAB_MASK = 0xf000_0000;

/*
 * struct xen_domctl_getpageframeinfo3 {
 *     uint64_aligned_t num;                     // IN: entries in array
 *     XEN_GUEST_HANDLE_64(xen_pfn_t) array;     // IN: frame numbers;
 *                                               // OUT: the PFINFO type of each
 *                                               // (as Xen: the frame number is
 *                                               // not kept; mask with LTAB_MASK)
 * };
 */
export const xen_domctl_getpageframeinfo3 = struct('struct xen_domctl_getpageframeinfo3', {
  num: u64,
  array: guest_handle,
});

// ---------------------------------------------------------------------------
// shadow_op (log-dirty)

export const XEN_DOMCTL_SHADOW_OP_OFF = 0;
export const XEN_DOMCTL_SHADOW_OP_ENABLE = 32;
/** Copy the dirty bitmap out and clear it for the next round. */
export const XEN_DOMCTL_SHADOW_OP_CLEAN = 11;
/** Copy the dirty bitmap out, leave it as it is. */
export const XEN_DOMCTL_SHADOW_OP_PEEK = 12;
export const XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION = 30;
export const XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION = 31;
export const XEN_DOMCTL_SHADOW_OP_ENABLE_TEST = 1;
/** ENABLE with ENABLE_LOG_DIRTY: what live migration uses. */
export const XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY = 2;
export const XEN_DOMCTL_SHADOW_ENABLE_REFCOUNT = 1 << 1;
export const XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY = 1 << 2;
export const XEN_DOMCTL_SHADOW_ENABLE_TRANSLATE = 1 << 3;
export const XEN_DOMCTL_SHADOW_ENABLE_EXTERNAL = 1 << 4;
/** CLEAN/PEEK mode: last round, include pages Xen itself maps writable. */
export const XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL = 1 << 0;

/*
 * struct xen_domctl_shadow_op_stats {
 *     uint32_t fault_count;
 *     uint32_t dirty_count;
 * };
 */
export const xen_domctl_shadow_op_stats = struct('struct xen_domctl_shadow_op_stats', {
  fault_count: u32,
  dirty_count: u32,
});

/*
 * struct xen_domctl_shadow_op {
 *     uint32_t       op;       // IN: XEN_DOMCTL_SHADOW_OP_*
 *     uint32_t       mode;     // IN: ENABLE flags, or LOGDIRTY_* for CLEAN/PEEK
 *     uint32_t       mb;       // shadow memory allocation in MB
 *     XEN_GUEST_HANDLE_64(uint8) dirty_bitmap;  // CLEAN/PEEK: one bit per PFN
 *     uint64_aligned_t pages;  // bits in dirty_bitmap; OUT: bits written
 *     struct xen_domctl_shadow_op_stats stats;
 * };
 */
export const xen_domctl_shadow_op = struct('struct xen_domctl_shadow_op', {
  op: u32,
  mode: u32,
  mb: u32,
  dirty_bitmap: guest_handle,
  pages: u64,
  stats: record(xen_domctl_shadow_op_stats),
});

// ---------------------------------------------------------------------------
// Small members

/*
 * struct xen_domctl_max_mem {
 *     uint64_aligned_t max_memkb;  // IN
 * };
 */
export const xen_domctl_max_mem = struct('struct xen_domctl_max_mem', {
  max_memkb: u64,
});

/*
 * struct xen_domctl_vcpucontext {   // setvcpucontext / getvcpucontext
 *     uint32_t              vcpu;                     // IN
 *     XEN_GUEST_HANDLE_64(vcpu_guest_context_t) ctxt; // IN/OUT
 * };
 */
export const xen_domctl_vcpucontext = struct('struct xen_domctl_vcpucontext', {
  vcpu: u32,
  ctxt: guest_handle,
});

/*
 * struct xen_domctl_getvcpuinfo {
 *     uint32_t vcpu;             // IN
 *     uint8_t  online;           // OUT
 *     uint8_t  blocked;
 *     uint8_t  running;
 *     uint64_aligned_t cpu_time; // ns
 *     uint32_t cpu;              // physical CPU it runs on
 * };
 */
export const xen_domctl_getvcpuinfo = struct('struct xen_domctl_getvcpuinfo', {
  vcpu: u32,
  online: u8,
  blocked: u8,
  running: u8,
  cpu_time: u64,
  cpu: u32,
});

/*
 * struct xen_domctl_max_vcpus {
 *     uint32_t max;
 * };
 */
export const xen_domctl_max_vcpus = struct('struct xen_domctl_max_vcpus', {
  max: u32,
});

/*
 * struct xen_domctl_subscribe {
 *     uint32_t port;  // IN: the GUEST's port (Xen's suspend_evtchn), signalled
 *                     //     when the domain shuts down with SHUTDOWN_suspend
 * };
 */
export const xen_domctl_subscribe = struct('struct xen_domctl_subscribe', {
  port: u32,
});

/*
 * struct xen_domctl_settimeoffset {
 *     int64_aligned_t time_offset_seconds;  // added to the domain's wall clock
 * };
 */
export const xen_domctl_settimeoffset = struct('struct xen_domctl_settimeoffset', {
  time_offset_seconds: i64,
});

/*
 * struct xen_domctl_address_size {
 *     uint32_t size;  // guest width in bits (64)
 * };
 */
export const xen_domctl_address_size = struct('struct xen_domctl_address_size', {
  size: u32,
});

/*
 * struct xen_domctl_tsc_info {   // gettscinfo / settscinfo (stream TSC_INFO)
 *     uint32_t tsc_mode;
 *     uint32_t gtsc_khz;
 *     uint32_t incarnation;
 *     uint32_t pad;
 *     uint64_aligned_t elapsed_nsec;
 * };
 */
export const xen_domctl_tsc_info = struct('struct xen_domctl_tsc_info', {
  tsc_mode: u32,
  gtsc_khz: u32,
  incarnation: u32,
  pad: u32,
  elapsed_nsec: u64,
});

/** Longest kernel image name set_kernel accepts (NUL-padded). */
export const XEN_DOMCTL_KERNEL_NAME_LEN = 64;
/** Bytes of a kernel image's version hash (SHA-256). */
export const XEN_DOMCTL_KERNEL_HASH_LEN = 32;

/*
 * xenport only (no Xen equivalent):
 * struct xen_domctl_set_kernel {
 *     char    name[64];          // IN: registered image name ("netbsd")
 *     uint8_t version_hash[32];  // IN: all zero = accept the registered image;
 *                                //     else it must equal the image's hash
 *                                //     (-EINVAL otherwise): restore check
 *                                // OUT: the image's hash
 * };
 */
export const xen_domctl_set_kernel = struct('struct xen_domctl_set_kernel', {
  name: array(char, XEN_DOMCTL_KERNEL_NAME_LEN),
  version_hash: array(u8, XEN_DOMCTL_KERNEL_HASH_LEN),
});

/** Size of `xen_domctl.u` / `xen_sysctl.u`: Xen's `uint8_t pad[128]`. */
export const XEN_DOMCTL_U_PAD = 128;

const xen_domctl_u = union('struct xen_domctl u', {
  createdomain: record(xen_domctl_createdomain),
  getdomaininfo: record(xen_domctl_getdomaininfo),
  getpageframeinfo3: record(xen_domctl_getpageframeinfo3),
  shadow_op: record(xen_domctl_shadow_op),
  max_mem: record(xen_domctl_max_mem),
  vcpucontext: record(xen_domctl_vcpucontext),
  getvcpuinfo: record(xen_domctl_getvcpuinfo),
  max_vcpus: record(xen_domctl_max_vcpus),
  settimeoffset: record(xen_domctl_settimeoffset),
  tsc_info: record(xen_domctl_tsc_info),
  address_size: record(xen_domctl_address_size),
  subscribe: record(xen_domctl_subscribe),
  set_kernel: record(xen_domctl_set_kernel),
  pad: array(u8, XEN_DOMCTL_U_PAD),
});

/*
 * struct xen_domctl {
 *     uint32_t cmd;                // XEN_DOMCTL_*
 *     uint32_t interface_version;  // XEN_DOMCTL_INTERFACE_VERSION
 *     domid_t  domain;
 *     uint16_t _pad[3];
 *     union {
 *         struct xen_domctl_createdomain      createdomain;
 *         struct xen_domctl_getdomaininfo     getdomaininfo;
 *         struct xen_domctl_getpageframeinfo3 getpageframeinfo3;
 *         struct xen_domctl_shadow_op         shadow_op;
 *         struct xen_domctl_max_mem           max_mem;
 *         struct xen_domctl_vcpucontext       vcpucontext;
 *         struct xen_domctl_getvcpuinfo       getvcpuinfo;
 *         struct xen_domctl_max_vcpus         max_vcpus;
 *         struct xen_domctl_settimeoffset     settimeoffset;
 *         struct xen_domctl_tsc_info          tsc_info;
 *         struct xen_domctl_address_size      address_size;
 *         struct xen_domctl_subscribe         subscribe;
 *         struct xen_domctl_set_kernel        set_kernel;  // xenport only
 *         uint8_t                             pad[128];
 *     } u;
 * };  // 144 bytes, as Xen's
 */
export const xen_domctl = struct('struct xen_domctl', {
  cmd: u32,
  interface_version: u32,
  domain: domid_t,
  _pad: array(u16, 3),
  u: record(xen_domctl_u),
});

// ---------------------------------------------------------------------------
// sysctl

/** Same value as Xen 4.17. */
export const XEN_SYSCTL_INTERFACE_VERSION = 0x0000_0015;

/** Read (and optionally clear) the hypervisor console ring: `xl dmesg`. */
export const XEN_SYSCTL_readconsole = 1;
export const XEN_SYSCTL_tbuf_op = 2;
/** Machine facts for `xl info`. */
export const XEN_SYSCTL_physinfo = 3;
export const XEN_SYSCTL_sched_id = 4;
export const XEN_SYSCTL_perfc_op = 5;
/** getdomaininfo for many domains at once: `xl list`. */
export const XEN_SYSCTL_getdomaininfolist = 6;
export const XEN_SYSCTL_debug_keys = 7;
export const XEN_SYSCTL_getcpuinfo = 8;
export const XEN_SYSCTL_availheap = 9;

/*
 * struct xen_sysctl_readconsole {
 *     uint8_t clear;        // IN: non-zero: clear after reading
 *     uint8_t incremental;  // IN: non-zero: start at `index`
 *     uint8_t pad0, pad1;
 *     uint32_t index;       // IN: start index (if incremental); OUT: end index
 *     XEN_GUEST_HANDLE_64(char) buffer;  // IN
 *     uint32_t count;       // IN: size of buffer; OUT: bytes written
 * };
 */
export const xen_sysctl_readconsole = struct('struct xen_sysctl_readconsole', {
  clear: u8,
  incremental: u8,
  pad0: u8,
  pad1: u8,
  index: u32,
  buffer: guest_handle,
  count: u32,
});

export const _XEN_SYSCTL_PHYSCAP_hvm = 0;
export const XEN_SYSCTL_PHYSCAP_hvm = 1 << _XEN_SYSCTL_PHYSCAP_hvm;
export const _XEN_SYSCTL_PHYSCAP_pv = 1;
export const XEN_SYSCTL_PHYSCAP_pv = 1 << _XEN_SYSCTL_PHYSCAP_pv;
export const _XEN_SYSCTL_PHYSCAP_directio = 2;
export const XEN_SYSCTL_PHYSCAP_directio = 1 << _XEN_SYSCTL_PHYSCAP_directio;
export const _XEN_SYSCTL_PHYSCAP_hap = 3;
export const XEN_SYSCTL_PHYSCAP_hap = 1 << _XEN_SYSCTL_PHYSCAP_hap;
export const _XEN_SYSCTL_PHYSCAP_shadow = 4;
export const XEN_SYSCTL_PHYSCAP_shadow = 1 << _XEN_SYSCTL_PHYSCAP_shadow;
export const XEN_SYSCTL_PHYSCAP_gnttab_v1 = 1 << 8;
export const XEN_SYSCTL_PHYSCAP_gnttab_v2 = 1 << 9;

/*
 * struct xen_sysctl_physinfo {
 *     uint32_t threads_per_core;
 *     uint32_t cores_per_socket;
 *     uint32_t nr_cpus;     // # CPUs currently online
 *     uint32_t max_cpu_id;  // Largest possible CPU ID on this host
 *     uint32_t nr_nodes;    // # nodes currently online
 *     uint32_t max_node_id; // Largest possible node ID on this host
 *     uint32_t cpu_khz;
 *     uint32_t capabilities;// XEN_SYSCTL_PHYSCAP_*
 *     uint32_t arch_capabilities;
 *     uint32_t pad;
 *     uint64_aligned_t total_pages;
 *     uint64_aligned_t free_pages;
 *     uint64_aligned_t scrub_pages;
 *     uint64_aligned_t outstanding_pages;
 *     uint64_aligned_t max_mfn; // Largest possible MFN on this host
 *     uint32_t hw_cap[8];
 * };
 */
export const xen_sysctl_physinfo = struct('struct xen_sysctl_physinfo', {
  threads_per_core: u32,
  cores_per_socket: u32,
  nr_cpus: u32,
  max_cpu_id: u32,
  nr_nodes: u32,
  max_node_id: u32,
  cpu_khz: u32,
  capabilities: u32,
  arch_capabilities: u32,
  pad: u32,
  total_pages: u64,
  free_pages: u64,
  scrub_pages: u64,
  outstanding_pages: u64,
  max_mfn: u64,
  hw_cap: array(u32, 8),
});

/*
 * struct xen_sysctl_getdomaininfolist {
 *     domid_t               first_domain;   // IN
 *     uint32_t              max_domains;    // IN: entries in buffer
 *     XEN_GUEST_HANDLE_64(xen_domctl_getdomaininfo_t) buffer;  // OUT
 *     uint32_t              num_domains;    // OUT
 * };
 */
export const xen_sysctl_getdomaininfolist = struct('struct xen_sysctl_getdomaininfolist', {
  first_domain: domid_t,
  max_domains: u32,
  buffer: guest_handle,
  num_domains: u32,
});

const xen_sysctl_u = union('struct xen_sysctl u', {
  readconsole: record(xen_sysctl_readconsole),
  physinfo: record(xen_sysctl_physinfo),
  getdomaininfolist: record(xen_sysctl_getdomaininfolist),
  pad: array(u8, XEN_DOMCTL_U_PAD),
});

/*
 * struct xen_sysctl {
 *     uint32_t cmd;                // XEN_SYSCTL_*
 *     uint32_t interface_version;  // XEN_SYSCTL_INTERFACE_VERSION
 *     union {
 *         struct xen_sysctl_readconsole       readconsole;
 *         struct xen_sysctl_physinfo          physinfo;
 *         struct xen_sysctl_getdomaininfolist getdomaininfolist;
 *         uint8_t                             pad[128];
 *     } u;
 * };  // 136 bytes, as Xen's
 */
export const xen_sysctl = struct('struct xen_sysctl', {
  cmd: u32,
  interface_version: u32,
  u: record(xen_sysctl_u),
});
