/*
 * The kernel memory allocator's structures (<sys/kmem.h>, the pool caches
 * behind it). kmem hands out blocks from power-of-two size classes carved
 * from whole pages; anything bigger than the largest class gets whole pages
 * straight from uvm. Every block starts with a header, so kmem_free can
 * check the caller's size and catch double frees.
 *
 *   struct kmem_header {            // 16 bytes, so the payload is 16-aligned
 *       uint32_t kh_magic;          // KMEM_MAGIC_ALLOC or KMEM_MAGIC_FREE
 *       uint32_t kh_size;           // size the caller asked for
 *       struct kmem_header *kh_next;// next free block of the class, while free
 *   };
 *
 *   struct kmem_state {             // in the kernel globals
 *       struct kmem_header *ks_freelist[KMEM_NCLASSES];
 *       uint32_t ks_inuse[KMEM_NCLASSES];   // blocks handed out
 *       uint32_t ks_nfree[KMEM_NCLASSES];   // blocks on the free list
 *       uint32_t ks_npages[KMEM_NCLASSES];  // pages carved into the class
 *       uint32_t ks_large_inuse;            // large allocations outstanding
 *       uint32_t ks_large_pages;            // pages they hold
 *       uint64_t ks_nalloc;                 // calls that succeeded
 *       uint64_t ks_nfail;                  // calls that found no memory
 *   };
 */
import { struct, array, u32, u64 } from '../../hypervisor/public/layout.js';

export const kmem_header = struct('struct kmem_header', {
  kh_magic: u32,
  kh_size: u32,
  kh_next: u64,
});
export const KMEM_HDRSIZE = kmem_header.size;
/** Payload alignment. */
export const KMEM_ALIGN = 16;

/** Block sizes (header included) of the size classes. */
export const KMEM_CLASS_SIZES = Object.freeze([32, 64, 128, 256, 512, 1024, 2048, 4096] as const);
export const KMEM_NCLASSES = KMEM_CLASS_SIZES.length;
/** Largest request served from a size class. */
export const KMEM_MAXCLASSED = 4096 - KMEM_HDRSIZE;

export const KMEM_MAGIC_ALLOC = 0x6b6d656d; // 'kmem'
export const KMEM_MAGIC_FREE = 0x66726565; // 'free'
/** Header of a large (whole-page) allocation. */
export const KMEM_MAGIC_LARGE = 0x6c617267; // 'larg'

export const kmem_state = struct('struct kmem_state', {
  ks_freelist: array(u64, KMEM_NCLASSES),
  ks_inuse: array(u32, KMEM_NCLASSES),
  ks_nfree: array(u32, KMEM_NCLASSES),
  ks_npages: array(u32, KMEM_NCLASSES),
  ks_large_inuse: u32,
  ks_large_pages: u32,
  ks_nalloc: u64,
  ks_nfail: u64,
});
