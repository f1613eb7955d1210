/*
 * The execution gate between a PV guest kernel and the (emulated) machine.
 *
 * This is xenport's analogue of "the CPU": what Xen gives a PV kernel is
 * not a header but an instruction set, a register file and the `syscall`
 * into the hypercall page. Here kernel text is TypeScript, so the gate is
 * an interface:
 *
 *  - The kernel image is a table of symbols (virtual address -> function).
 *    The machine runs a vCPU by calling the function whose address is in
 *    `rip`, passing a `GuestCpu`. The function runs to a stop point and
 *    returns. Nothing JS-side survives the return: all guest state is in
 *    guest memory and in the register file.
 *  - A hypercall that deschedules the vCPU (SCHEDOP_block/yield/poll/
 *    shutdown, the suspend hypercall) is made *after* the kernel has stored
 *    its continuation in `rip`; the kernel then returns. When the vCPU next
 *    runs, it enters at `rip` and finds the hypercall's result in `rax`.
 *  - Event delivery: when the vCPU is entered with `evtchn_upcall_pending`
 *    set and `evtchn_upcall_mask` clear, the machine first calls the
 *    registered `event_callback_eip` (with the mask set, as Xen does on
 *    the way into the callback; it is cleared again on return, which is
 *    the `iret`), then the continuation at `rip`.
 *
 * Registers are the x86_64 `cpu_user_regs` of the vCPU's context
 * (see arch-x86_64.ts); 64-bit values are bigint, with number helpers.
 */
import type { MemView } from './layout.js';
import type { Vaddr } from './types.js';

/** Names of the general registers and segment fields of `cpu_user_regs`. */
export type RegName =
  | 'r15' | 'r14' | 'r13' | 'r12' | 'rbp' | 'rbx' | 'r11' | 'r10' | 'r9' | 'r8'
  | 'rax' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rip' | 'cs' | 'rflags' | 'rsp' | 'ss'
  | 'es' | 'ds' | 'fs' | 'gs';

export interface RegisterFile {
  /** Raw 64-bit register value. */
  get(r: RegName): bigint;
  set(r: RegName, v: bigint): void;
  /** Register as a signed JS number (hypercall results, small values). */
  getNum(r: RegName): number;
  /** Store a JS number (negative numbers as two's complement). */
  setNum(r: RegName, v: number): void;
  /** Register holding a canonical virtual address, as a 48-bit Vaddr. */
  getVa(r: RegName): Vaddr;
  setVa(r: RegName, va: Vaddr): void;
  /** Control registers (ctrlreg[n] of vcpu_guest_context); CR3 holds an MFN<<12. */
  getCr(n: number): bigint;
}

/**
 * Guest-virtual memory of the running vCPU: every access goes through the
 * vCPU's page tables (software TLB or walk). Offsets are virtual addresses.
 * A not-present page or a write to a read-only page throws `GuestPageFault`.
 */
export interface GuestMem extends MemView {
  readBytes(va: number, len: number): Uint8Array;
  writeBytes(va: number, data: Uint8Array): void;
  /** memset within guest memory. */
  fill(va: number, len: number, byte: number): void;
  /** memmove within guest memory. */
  copyWithin(dstVa: number, srcVa: number, len: number): void;
}

/** Raised by GuestMem on a faulting access; `errorCode` uses x86 #PF bits. */
export class GuestPageFault extends Error {
  static readonly PF_PRESENT = 1;
  static readonly PF_WRITE = 2;
  constructor(readonly va: number, readonly errorCode: number) {
    super(`page fault at ${va.toString(16)} (${errorCode & 1 ? 'protection' : 'not present'}, ${errorCode & 2 ? 'write' : 'read'})`);
    this.name = 'GuestPageFault';
  }
}

export interface GuestCpu {
  /** Index of the vCPU being run. */
  readonly vcpuId: number;
  readonly regs: RegisterFile;
  readonly mem: GuestMem;
  /**
   * Make hypercall `nr` with up to five arguments (rdi, rsi, rdx, r10, r8),
   * pointers as guest virtual addresses. Returns rax: 0 or a positive value
   * on success, a negative Xen errno on failure. For a descheduling
   * hypercall the value returned here is only provisional: the real result
   * is in rax when the vCPU is next entered at its continuation.
   *
   * A number argument in [2^47, 2^48) is taken as an upper-half virtual
   * address and sign-extended to its canonical 64-bit form (so 48-bit
   * Vaddrs can be passed as they are); any other value above 2^53 must be
   * passed as a bigint. Pointers written INTO structs in guest memory are
   * the guest's business: store them with canonicalVa().
   */
  hypercall(nr: number, a1?: number | bigint, a2?: number | bigint, a3?: number | bigint, a4?: number | bigint, a5?: number | bigint): number;
  /** `rdtsc`: this machine's time stamp counter. */
  rdtsc(): bigint;
}

/** A function of kernel text: runs one step of the kernel on a vCPU. */
export type KernelFn = (cpu: GuestCpu) => void;

/** ELF-note style facts a toolstack reads from the image (XEN_ELFNOTE_*). */
export interface KernelNotes {
  /** XEN_ELFNOTE_GUEST_OS */
  readonly guestOs: string;
  /** XEN_ELFNOTE_XEN_VERSION */
  readonly xenVersion: string;
  /** XEN_ELFNOTE_FEATURES, e.g. "writable_page_tables|..." */
  readonly features: string;
  /** XEN_ELFNOTE_SUSPEND_CANCEL: the kernel handles a suspend hypercall returning 1. */
  readonly suspendCancel: boolean;
}

/**
 * A bootable kernel image, registered with a machine by name
 * (`kernel = "netbsd"` in an xl.cfg). The machine never imports guest code;
 * whoever starts the machine hands it the images it may boot.
 */
export interface KernelImage {
  readonly name: string;
  /** Hash of the kernel text; recorded in saved images and checked on restore. */
  readonly versionHash: string;
  /** Virtual address of the entry point (`start`), entered with rsi = start_info VA. */
  readonly entry: Vaddr;
  /** Kernel text: virtual address -> function. */
  readonly symbols: ReadonlyMap<number, KernelFn>;
  /** Symbol names by address, for diagnostics. */
  readonly symbolNames: ReadonlyMap<number, string>;
  /**
   * Virtual address at which the kernel wants guest RAM direct-mapped:
   * PFN p is at virtBase + p * 4096. Kernel text (the symbol addresses) lies
   * elsewhere and is never mapped: TypeScript functions are not fetched.
   */
  readonly virtBase: Vaddr;
  /**
   * Bytes of guest memory the loaded image occupies from virtBase (its
   * .data and .bss: the kernel's global variables live there, at fixed
   * addresses). The builder places start_info, the P2M array, the bootstrap
   * page tables and the stack after it, like libxc after the ELF segments.
   */
  readonly imageSize: number;
  readonly notes: KernelNotes;
}
