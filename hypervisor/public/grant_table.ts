/*
 * xen/include/public/grant_table.h: grant tables (`grant_table_op`).
 *
 * A domain lets another domain map or copy one of its pages by writing a
 * grant entry (v1: flags, domid, frame) into its own grant table, and
 * passing the entry's index (the grant reference) to the peer.
 */
import { struct, union, record, u16, i16, u32, u64, ulong, domid_t, grant_ref_t, guest_handle } from './layout.js';

export { grant_ref_t };
/** `typedef uint32_t grant_handle_t;` (returned by map, passed to unmap). */
export const grant_handle_t = u32;

/*
 * struct grant_entry_v1 {
 *     uint16_t flags;   // GTF_xxx: type and flag information [XEN,GST]
 *     domid_t  domid;   // The domain being granted foreign privileges [GST]
 *     uint32_t frame;   // permit_access: GFN the peer may map [GST];
 *                       // accept_transfer: GFN it may transfer into [GST];
 *                       // transfer_completed: MFN transferred [XEN]
 * };
 */
export const grant_entry_v1 = struct('grant_entry_v1_t', {
  flags: u16,
  domid: domid_t,
  frame: u32,
});
export const grant_entry_v1_t = grant_entry_v1;

/** Entries the toolstack owns and keeps across a guest's grant-table reset. */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
/** Grant of the console ring page, to the console backend. */
export const GNTTAB_RESERVED_CONSOLE = 0;
/** Grant of the xenstore ring page, to xenstored. */
export const GNTTAB_RESERVED_XENSTORE = 1;

/* Grant entry type (grant_entry.flags & GTF_type_mask). */
export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
/* Sub-flags of GTF_permit_access. */
export const _GTF_readonly = 2;
/** The peer may map read-only only. */
export const GTF_readonly = 1 << _GTF_readonly;
export const _GTF_reading = 3;
/** Set by Xen while the peer has the page mapped/copying (read). */
export const GTF_reading = 1 << _GTF_reading;
export const _GTF_writing = 4;
/** Set by Xen while the peer has the page mapped writable. */
export const GTF_writing = 1 << _GTF_writing;
export const _GTF_PWT = 5;
export const GTF_PWT = 1 << _GTF_PWT;
export const _GTF_PCD = 6;
export const GTF_PCD = 1 << _GTF_PCD;
export const _GTF_PAT = 7;
export const GTF_PAT = 1 << _GTF_PAT;
export const _GTF_sub_page = 8;
export const GTF_sub_page = 1 << _GTF_sub_page;
/* Sub-flags of GTF_accept_transfer. */
export const _GTF_transfer_committed = 2;
export const GTF_transfer_committed = 1 << _GTF_transfer_committed;
export const _GTF_transfer_completed = 3;
export const GTF_transfer_completed = 1 << _GTF_transfer_completed;

// ---------------------------------------------------------------------------
// Commands

export const GNTTABOP_map_grant_ref = 0;
export const GNTTABOP_unmap_grant_ref = 1;
export const GNTTABOP_setup_table = 2;
export const GNTTABOP_dump_table = 3;
export const GNTTABOP_transfer = 4;
export const GNTTABOP_copy = 5;
export const GNTTABOP_query_size = 6;
export const GNTTABOP_unmap_and_replace = 7;
export const GNTTABOP_set_version = 8;
export const GNTTABOP_get_status_frames = 9;
export const GNTTABOP_get_version = 10;
export const GNTTABOP_swap_grant_ref = 11;
export const GNTTABOP_cache_flush = 12;

/* gnttab_map_grant_ref.flags */
export const _GNTMAP_device_map = 0;
/** Map for device (DMA) access: fills dev_bus_addr. */
export const GNTMAP_device_map = 1 << _GNTMAP_device_map;
export const _GNTMAP_host_map = 1;
/** Map for CPU access at host_addr. */
export const GNTMAP_host_map = 1 << _GNTMAP_host_map;
export const _GNTMAP_readonly = 2;
export const GNTMAP_readonly = 1 << _GNTMAP_readonly;
export const _GNTMAP_application_map = 3;
/** host_map sub-flag: the mapping is usable by user space too. */
export const GNTMAP_application_map = 1 << _GNTMAP_application_map;
export const _GNTMAP_contains_pte = 4;
/** host_map sub-flag: host_addr is the machine address of a PTE to fill. */
export const GNTMAP_contains_pte = 1 << _GNTMAP_contains_pte;
export const _GNTMAP_guest_avail0 = 16;
/** Bits 16..31 are left to the guest. */
export const GNTMAP_guest_avail_mask = 0xffff_0000;

/*
 * struct gnttab_map_grant_ref {
 *     uint64_t host_addr;     // IN
 *     uint32_t flags;         // IN: GNTMAP_*
 *     grant_ref_t ref;        // IN
 *     domid_t  dom;           // IN: the granting domain
 *     int16_t  status;        // OUT: GNTST_*
 *     grant_handle_t handle;  // OUT
 *     uint64_t dev_bus_addr;  // OUT
 * };
 */
export const gnttab_map_grant_ref = struct('struct gnttab_map_grant_ref', {
  host_addr: u64,
  flags: u32,
  ref: grant_ref_t,
  dom: domid_t,
  status: i16,
  handle: grant_handle_t,
  dev_bus_addr: u64,
});

/*
 * struct gnttab_unmap_grant_ref {
 *     uint64_t host_addr;     // IN
 *     uint64_t dev_bus_addr;  // IN
 *     grant_handle_t handle;  // IN
 *     int16_t  status;        // OUT: GNTST_*
 * };
 */
export const gnttab_unmap_grant_ref = struct('struct gnttab_unmap_grant_ref', {
  host_addr: u64,
  dev_bus_addr: u64,
  handle: grant_handle_t,
  status: i16,
});

/*
 * struct gnttab_setup_table {
 *     domid_t  dom;           // IN
 *     uint32_t nr_frames;     // IN
 *     int16_t  status;        // OUT: GNTST_*
 *     XEN_GUEST_HANDLE(xen_pfn_t) frame_list; // OUT: MFNs of the table
 * };
 */
export const gnttab_setup_table = struct('struct gnttab_setup_table', {
  dom: domid_t,
  nr_frames: u32,
  status: i16,
  frame_list: guest_handle,
});

/*
 * struct gnttab_dump_table {
 *     domid_t dom;     // IN
 *     int16_t status;  // OUT
 * };
 */
export const gnttab_dump_table = struct('struct gnttab_dump_table', {
  dom: domid_t,
  status: i16,
});

/*
 * struct gnttab_transfer {
 *     xen_pfn_t     mfn;     // IN
 *     domid_t       domid;   // IN
 *     grant_ref_t   ref;     // IN
 *     int16_t       status;  // OUT
 * };
 */
export const gnttab_transfer = struct('struct gnttab_transfer', {
  mfn: ulong,
  domid: domid_t,
  ref: grant_ref_t,
  status: i16,
});

/* gnttab_copy.flags */
export const _GNTCOPY_source_gref = 0;
/** source.u is a grant reference of source.domid (else a frame of ours). */
export const GNTCOPY_source_gref = 1 << _GNTCOPY_source_gref;
export const _GNTCOPY_dest_gref = 1;
/** dest.u is a grant reference of dest.domid. */
export const GNTCOPY_dest_gref = 1 << _GNTCOPY_dest_gref;

const gnttab_copy_ptr_u = union('struct gnttab_copy_ptr u', {
  ref: grant_ref_t,
  gmfn: ulong,
});

/*
 * struct gnttab_copy_ptr {
 *     union {
 *         grant_ref_t ref;
 *         xen_pfn_t   gmfn;
 *     } u;
 *     domid_t  domid;
 *     uint16_t offset;
 * };
 */
export const gnttab_copy_ptr = struct('struct gnttab_copy_ptr', {
  u: record(gnttab_copy_ptr_u),
  domid: domid_t,
  offset: u16,
});

/*
 * struct gnttab_copy {
 *     struct gnttab_copy_ptr source, dest;  // IN
 *     uint16_t      len;                    // IN: bytes, within one page
 *     uint16_t      flags;                  // IN: GNTCOPY_*
 *     int16_t       status;                 // OUT: GNTST_*
 * };
 */
export const gnttab_copy = struct('struct gnttab_copy', {
  source: record(gnttab_copy_ptr),
  dest: record(gnttab_copy_ptr),
  len: u16,
  flags: u16,
  status: i16,
});

/*
 * struct gnttab_query_size {
 *     domid_t  dom;            // IN
 *     uint32_t nr_frames;      // OUT: current size of the table
 *     uint32_t max_nr_frames;  // OUT: the most setup_table will give
 *     int16_t  status;         // OUT: GNTST_*
 * };
 */
export const gnttab_query_size = struct('struct gnttab_query_size', {
  dom: domid_t,
  nr_frames: u32,
  max_nr_frames: u32,
  status: i16,
});

/*
 * struct gnttab_unmap_and_replace {
 *     uint64_t host_addr;     // IN
 *     uint64_t new_addr;      // IN
 *     grant_handle_t handle;  // IN
 *     int16_t  status;        // OUT
 * };
 */
export const gnttab_unmap_and_replace = struct('struct gnttab_unmap_and_replace', {
  host_addr: u64,
  new_addr: u64,
  handle: grant_handle_t,
  status: i16,
});

/*
 * struct gnttab_set_version {
 *     uint32_t version;  // IN/OUT
 * };
 */
export const gnttab_set_version = struct('struct gnttab_set_version', {
  version: u32,
});

/*
 * struct gnttab_get_version {
 *     domid_t dom;       // IN
 *     uint16_t pad;
 *     uint32_t version;  // OUT
 * };
 */
export const gnttab_get_version = struct('struct gnttab_get_version', {
  dom: domid_t,
  pad: u16,
  version: u32,
});

/*
 * struct gnttab_swap_grant_ref {
 *     grant_ref_t ref_a;  // IN
 *     grant_ref_t ref_b;  // IN
 *     int16_t status;     // OUT
 * };
 */
export const gnttab_swap_grant_ref = struct('struct gnttab_swap_grant_ref', {
  ref_a: grant_ref_t,
  ref_b: grant_ref_t,
  status: i16,
});

// ---------------------------------------------------------------------------
// Per-operation status (the `status` fields above; the hypercall itself
// returns 0 or a -errno for the whole batch).

export const GNTST_okay = 0;
export const GNTST_general_error = -1;
export const GNTST_bad_domain = -2;
export const GNTST_bad_gntref = -3;
export const GNTST_bad_handle = -4;
export const GNTST_bad_virt_addr = -5;
export const GNTST_bad_dev_addr = -6;
export const GNTST_no_device_space = -7;
export const GNTST_permission_denied = -8;
export const GNTST_bad_page = -9;
export const GNTST_bad_copy_arg = -10;
export const GNTST_address_too_big = -11;
export const GNTST_eagain = -12;
export const GNTST_no_space = -13;

/** GNTTABOP_error_msgs: text of status -i at index i. */
export const GNTTABOP_error_msgs: readonly string[] = Object.freeze([
  'okay',
  'undefined error',
  'unrecognised domain id',
  'invalid grant reference',
  'invalid mapping handle',
  'invalid virtual address',
  'invalid device address',
  'no spare translation slot in the I/O MMU',
  'permission denied',
  'bad page',
  'copy arguments cross page boundary',
  'page address size too large',
  'operation not done; try again',
  'out of space',
]);

/** Message for a GNTST_* status; unknown values say so instead of throwing. */
export function gnttabStatusMessage(status: number): string {
  return GNTTABOP_error_msgs[-status] ?? `unknown grant status ${status}`;
}

/** Entries of a v1 grant table per 4 KiB frame. */
export const GRANT_ENTRIES_V1_PER_FRAME = 4096 / grant_entry_v1.size;
