/*
 * xen/include/public/memory.h: the memory hypercall (`memory_op(cmd, arg)`):
 * growing and shrinking a domain's reservation, populating its physmap,
 * and finding the machine-to-phys table.
 */
import { struct, union, record, u16, u32, ulong, domid_t, guest_handle } from './layout.js';

/** Allocate extents; OUT: their MFNs. */
export const XENMEM_increase_reservation = 0;
/** Free the extents whose GMFNs are listed. */
export const XENMEM_decrease_reservation = 1;
/** Back the listed PFNs with fresh memory; OUT: the MFNs used. */
export const XENMEM_populate_physmap = 6;
export const XENMEM_exchange = 11;
/** Returns the highest MFN of the machine; no argument. */
export const XENMEM_maximum_ram_page = 2;
/** Argument: domid_t; returns the domain's current page count. */
export const XENMEM_current_reservation = 3;
/** Argument: domid_t; returns the domain's page limit. */
export const XENMEM_maximum_reservation = 4;
/** Argument: domid_t; returns the domain's highest PFN. */
export const XENMEM_maximum_gpfn = 14;
/** Argument: struct xen_machphys_mfn_list. */
export const XENMEM_machphys_mfn_list = 5;
export const XENMEM_machphys_compat_mfn_list = 25;
/** Argument: struct xen_machphys_mapping. */
export const XENMEM_machphys_mapping = 12;
/** Argument: struct xen_add_to_physmap. */
export const XENMEM_add_to_physmap = 7;
export const XENMEM_add_to_physmap_batch = 23;
export const XENMEM_remove_from_physmap = 15;
export const XENMEM_memory_map = 9;
export const XENMEM_machine_memory_map = 10;
export const XENMEM_set_memory_map = 13;
export const XENMEM_set_pod_target = 16;
export const XENMEM_get_pod_target = 17;
export const XENMEM_get_sharing_freed_pages = 18;
export const XENMEM_get_sharing_shared_pages = 19;
export const XENMEM_paging_op = 20;
export const XENMEM_access_op = 21;
export const XENMEM_sharing_op = 22;
export const XENMEM_claim_pages = 24;
export const XENMEM_get_vnumainfo = 26;
export const XENMEM_reserved_device_memory_map = 27;
export const XENMEM_acquire_resource = 28;

/* xen_memory_reservation.mem_flags. The C macros taking an argument are functions here. */
/** Restrict allocations to machine addresses below 2^bits (0: no limit). */
export const XENMEMF_address_bits = (bits: number): number => bits;
export const XENMEMF_get_address_bits = (flags: number): number => flags & 0xff;
/** Allocate from this NUMA node. */
export const XENMEMF_node = (node: number): number => ((node + 1) << 8) >>> 0;
export const XENMEMF_get_node = (flags: number): number => ((flags >>> 8) - 1) & 0xff;
export const XENMEMF_populate_on_demand = 1 << 16;
export const XENMEMF_exact_node_request = 1 << 17;
export const XENMEMF_exact_node = (node: number): number => (XENMEMF_node(node) | XENMEMF_exact_node_request) >>> 0;
export const XENMEMF_vnode = 1 << 18;

/*
 * struct xen_memory_reservation {
 *     XEN_GUEST_HANDLE(xen_pfn_t) extent_start; // array of frame numbers
 *     xen_ulong_t    nr_extents;                 // how many extents
 *     unsigned int   extent_order;               // 2^order pages each
 *     unsigned int   mem_flags;                  // XENMEMF_*
 *     domid_t        domid;                      // DOMID_SELF unless privileged
 * };
 */
export const xen_memory_reservation = struct('struct xen_memory_reservation', {
  extent_start: guest_handle,
  nr_extents: ulong,
  extent_order: u32,
  mem_flags: u32,
  domid: domid_t,
});

/*
 * struct xen_memory_exchange {
 *     struct xen_memory_reservation in;   // IN: extents to give back
 *     struct xen_memory_reservation out;  // IN/OUT: extents to receive
 *     xen_ulong_t nr_exchanged;           // OUT (caller must zero it)
 * };
 */
export const xen_memory_exchange = struct('struct xen_memory_exchange', {
  in: record(xen_memory_reservation),
  out: record(xen_memory_reservation),
  nr_exchanged: ulong,
});

/*
 * struct xen_memory_domain {
 *     domid_t domid;  // IN
 * };
 */
export const xen_memory_domain = struct('struct xen_memory_domain', {
  domid: domid_t,
});

/*
 * struct xen_machphys_mfn_list {
 *     unsigned int max_extents;                  // IN: size of extent_start
 *     XEN_GUEST_HANDLE(xen_pfn_t) extent_start;  // OUT: MFNs of 2 MiB M2P chunks
 *     unsigned int nr_extents;                   // OUT
 * };
 */
export const xen_machphys_mfn_list = struct('struct xen_machphys_mfn_list', {
  max_extents: u32,
  extent_start: guest_handle,
  nr_extents: u32,
});

/*
 * struct xen_machphys_mapping {
 *     xen_ulong_t v_start, v_end; // Start and end virtual addresses of the M2P
 *     xen_ulong_t max_mfn;        // Maximum MFN that can be looked up
 * };
 */
export const xen_machphys_mapping = struct('struct xen_machphys_mapping', {
  v_start: ulong,
  v_end: ulong,
  max_mfn: ulong,
});

/* xen_add_to_physmap.space */
export const XENMAPSPACE_shared_info = 0;
export const XENMAPSPACE_grant_table = 1;
export const XENMAPSPACE_gmfn = 2;
export const XENMAPSPACE_gmfn_range = 3;
export const XENMAPSPACE_gmfn_foreign = 4;
export const XENMAPSPACE_dev_mmio = 5;
/** Ored into idx with XENMAPSPACE_grant_table: map a status frame. */
export const XENMAPIDX_grant_table_status = 0x8000_0000;

/*
 * struct xen_add_to_physmap {
 *     domid_t domid;        // domain whose physmap changes
 *     uint16_t size;        // pages, for XENMAPSPACE_gmfn_range
 *     unsigned int space;   // XENMAPSPACE_*
 *     xen_ulong_t idx;      // index into the space
 *     xen_pfn_t gpfn;       // where the page should appear
 * };
 */
export const xen_add_to_physmap = struct('struct xen_add_to_physmap', {
  domid: domid_t,
  size: u16,
  space: u32,
  idx: ulong,
  gpfn: ulong,
});

const xen_add_to_physmap_batch_extra = union('union xen_add_to_physmap_batch_extra', {
  foreign_domid: domid_t,
  res0: u16,
});

/*
 * struct xen_add_to_physmap_batch {
 *     domid_t domid;
 *     uint16_t space;  // XENMAPSPACE_*
 *     uint16_t size;
 *     union xen_add_to_physmap_batch_extra {
 *         domid_t foreign_domid;  // gmfn_foreign
 *         uint16_t res0;          // other spaces: zero
 *     } u;
 *     XEN_GUEST_HANDLE(xen_ulong_t) idxs;
 *     XEN_GUEST_HANDLE(xen_pfn_t) gpfns;
 *     XEN_GUEST_HANDLE(int) errs;  // OUT: per index
 * };
 */
export const xen_add_to_physmap_batch = struct('struct xen_add_to_physmap_batch', {
  domid: domid_t,
  space: u16,
  size: u16,
  u: record(xen_add_to_physmap_batch_extra),
  idxs: guest_handle,
  gpfns: guest_handle,
  errs: guest_handle,
});

/*
 * struct xen_remove_from_physmap {
 *     domid_t domid;
 *     xen_pfn_t gpfn;  // the mapping to remove
 * };
 */
export const xen_remove_from_physmap = struct('struct xen_remove_from_physmap', {
  domid: domid_t,
  gpfn: ulong,
});
