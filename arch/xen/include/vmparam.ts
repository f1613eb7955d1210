/*
 * Where the kernel lives in the guest's virtual address space (x86_64 Xen PV).
 *
 * Two regions matter to the kernel image:
 *
 *  - KERNTEXT: kernel text. TypeScript functions are not fetched from
 *    memory, so this range is never mapped; it only gives every kernel
 *    function a stable address (KERNTEXT + KSYM_STRIDE * i, in link order)
 *    that guest memory and `rip` can hold instead of a JS reference.
 *  - KERNBASE: the direct map of guest RAM (PFN p at KERNBASE + p * PAGE_SIZE,
 *    as on amd64's PMAP_DIRECT_BASE). The image's .data/.bss is the start of
 *    it, PFN 0 upward, `KERNEL_IMAGE_SIZE` bytes; the builder puts
 *    start_info, the P2M array and the bootstrap page tables after that.
 *
 * Addresses are 48-bit numbers (see hypervisor/public/types.ts); both lie in
 * the upper half, so their canonical 64-bit forms are 0xffff_ffff_8000_0000
 * and 0xffff_8880_0000_0000.
 *
 * The data segment map (below) is fixed at build time: kernel code reaches
 * its globals at constant addresses, the way C code reaches `.data`.
 */
import { PAGE_SIZE, PAGE_SHIFT, type Vaddr } from '../../../hypervisor/public/types.js';

export { PAGE_SIZE, PAGE_SHIFT };

/** First kernel symbol address (canonical 0xffff_ffff_8000_0000). */
export const KERNTEXT = 0xffff_8000_0000 as Vaddr;
/** Distance between consecutive kernel symbols. */
export const KSYM_STRIDE = 16;

/** Base of the direct map and of the kernel image's data (canonical 0xffff_8880_0000_0000). */
export const KERNBASE = 0x8880_0000_0000 as Vaddr;

/** Pseudo-physical address -> its direct-mapped kernel virtual address. */
export function PMAP_DIRECT_MAP(pa: number): Vaddr {
  return (KERNBASE + pa) as Vaddr;
}
/** Direct-mapped kernel virtual address -> pseudo-physical address. */
export function PMAP_DIRECT_UNMAP(va: number): number {
  return va - KERNBASE;
}
/** Bytes -> pages (truncating), as in uvm_param.h. */
export function atop(n: number): number {
  return Math.floor(n / PAGE_SIZE);
}
/** Pages -> bytes. */
export function ptoa(n: number): number {
  return n * PAGE_SIZE;
}
/** Round a byte count or address up to a page boundary. */
export function round_page(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}
/** PFN of a direct-mapped address. */
export function kva_to_pfn(va: number): number {
  return atop(va - KERNBASE);
}
/** Direct-mapped address of a PFN. */
export function pfn_to_kva(pfn: number): Vaddr {
  return (KERNBASE + pfn * PAGE_SIZE) as Vaddr;
}

// ---------------------------------------------------------------------------
// The data segment map. Each area starts on a page boundary.

/** `struct kernel_globals` (sys/sys/kernel.ts): every MI root. */
export const KERNEL_GLOBALS_VA = KERNBASE;
export const KERNEL_GLOBALS_SIZE = 4 * PAGE_SIZE;

/** The message buffer (dmesg): `struct kern_msgbuf` header then the ring. */
export const MSGBUF_VA = (KERNEL_GLOBALS_VA + KERNEL_GLOBALS_SIZE) as Vaddr;
export const MSGBUFSIZE = 8 * PAGE_SIZE;

/**
 * Reserved for machine-dependent globals (arch/xen: start_info and
 * shared_info pointers, event channel handler table, xenbus state, ...).
 * arch/xen declares its own layout table for it and checks it fits.
 */
export const MACHDEP_DATA_VA = (MSGBUF_VA + MSGBUFSIZE) as Vaddr;
export const MACHDEP_DATA_SIZE = 64 * PAGE_SIZE;

/** Bytes from KERNBASE the image occupies: `KernelImage.imageSize`. */
export const KERNEL_IMAGE_SIZE = MACHDEP_DATA_VA + MACHDEP_DATA_SIZE - KERNBASE;
/** First PFN after the image (the builder places its own pages from here). */
export const KERNEL_IMAGE_PAGES = KERNEL_IMAGE_SIZE / PAGE_SIZE;

/** Most vCPUs the MI per-CPU tables have room for. */
export const MAXCPUS = 8;
