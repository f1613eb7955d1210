/*
 * The page allocator's structures (the part of <uvm/uvm.h> and
 * <uvm/uvm_page.h> this kernel needs).
 *
 * Free pages are kept as runs of contiguous pages, in address order. Each
 * run describes itself in its own first page, so the free list costs no
 * memory and lives entirely in guest memory (a saved image carries it).
 * Allocation is first fit, taking pages from the end of a run so the run's
 * header stays put; freeing merges with both neighbours.
 *
 *   struct uvm_free_run {          // at the start of the run's first page
 *       uint32_t fr_magic;         // UVM_FREE_MAGIC
 *       uint32_t fr_pad;
 *       uint64_t fr_npages;
 *       struct uvm_free_run *fr_next;  // next run up in memory, or NULL
 *   };
 *
 *   struct uvm {                   // in the kernel globals
 *       struct uvm_free_run *u_freelist;
 *       uint64_t u_npages;         // pages ever given to uvm_page_physload
 *       uint64_t u_free;           // pages on the free list
 *       uint64_t u_nruns;          // runs on the free list
 *       uint64_t u_lowest;         // lowest managed address (sanity checks)
 *       uint64_t u_highest;        // one past the highest managed address
 *   };
 */
import { struct, u32, u64 } from '../../hypervisor/public/layout.js';

export const uvm_free_run = struct('struct uvm_free_run', {
  fr_magic: u32,
  fr_pad: u32,
  fr_npages: u64,
  fr_next: u64,
});

export const UVM_FREE_MAGIC = 0x66726e21; // 'frn!'

export const uvm = struct('struct uvm', {
  u_freelist: u64,
  u_npages: u64,
  u_free: u64,
  u_nruns: u64,
  u_lowest: u64,
  u_highest: u64,
});

/* uvm_km_alloc flags */
/** Zero the pages. */
export const UVM_KMF_ZERO = 0x1;
