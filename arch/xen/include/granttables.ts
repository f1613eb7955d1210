/*
 * The guest's grant table state (NetBSD's arch/xen/include/granttables.h
 * and the globals of xengnt.c), in guest memory.
 *
 * The table frames (hypervisor frames, MFNs from GNTTABOP_setup_table) are
 * mapped one after the other in the kernel VA area from gs_table_va, so
 * entry `ref` is at gs_table_va + ref * sizeof(grant_entry_v1_t). Free
 * references are a stack of uint32_t in pages from uvm (gs_free), sized
 * for gs_maxframes frames; the table grows a frame at a time when the
 * stack runs dry.
 *
 *   struct xengnt_state {
 *       uint64_t gs_table_va;      // KVA of frame 0 (KVA reserved for gs_maxframes)
 *       uint32_t gs_nframes;       // frames set up and mapped
 *       uint32_t gs_maxframes;     // GNTTABOP_query_size's max, capped at XENGNT_MAX_FRAMES
 *       uint64_t gs_free;          // grant_ref_t stack[gs_maxframes * entries per frame]
 *       uint32_t gs_nfree;         // refs on the stack
 *       uint32_t gs_inuse;         // refs handed out
 *       uint32_t gs_flags;         // GSF_*
 *       uint32_t gs_generation;    // tables set up afresh after a restore
 *       uint64_t gs_grants;        // grant_access calls that succeeded
 *       uint64_t gs_busy;          // revokes refused because the peer still maps
 *       uint64_t gs_frame_list[XENGNT_MAX_FRAMES]; // setup_table's OUT list
 *       uint8_t  gs_op[32];        // gnttab_setup_table / gnttab_query_size
 *   };
 */
import { struct, array, u8, u32, u64 } from '../../../hypervisor/public/layout.js';
import { GRANT_ENTRIES_V1_PER_FRAME, GNTTAB_NR_RESERVED_ENTRIES } from '../../../hypervisor/public/grant_table.js';

/** Most grant frames this kernel maps (Xen's default max_grant_frames). */
export const XENGNT_MAX_FRAMES = 32;
/** Entries per table frame (v1). */
export const XENGNT_ENTRIES_PER_FRAME = GRANT_ENTRIES_V1_PER_FRAME;
/** First reference the kernel hands out: below it are the toolstack's. */
export const XENGNT_FIRST_REF = GNTTAB_NR_RESERVED_ENTRIES;

/* gs_flags */
/** xengnt_suspend unmapped the table frames: no grant may be made until resume. */
export const GSF_SUSPENDED = 0x1;

export const xengnt_state = struct('struct xengnt_state', {
  gs_table_va: u64,
  gs_nframes: u32,
  gs_maxframes: u32,
  gs_free: u64,
  gs_nfree: u32,
  gs_inuse: u32,
  gs_flags: u32,
  gs_generation: u32,
  gs_grants: u64,
  gs_busy: u64,
  gs_frame_list: array(u64, XENGNT_MAX_FRAMES),
  gs_op: array(u8, 32),
});
