/*
 * xen/include/public/arch-x86/xen.h + arch-x86/xen-x86_64.h: the x86_64
 * half of the PV ABI (register file, virtual IDT, vCPU context, the arch
 * parts of shared_info and vcpu_info, the fixed virtual address layout).
 *
 * Address constants: Xen's names (HYPERVISOR_VIRT_START, ...) are exported
 * as `bigint`, the exact canonical 64-bit value the C macro has (they are
 * above 2^53, so a JS number could not hold them). Inside xenport virtual
 * addresses are 48-bit numbers (types.ts); the `*_VA` companions are the
 * same addresses in that form, ready for the MMU.
 *
 * At the end: x86 page-table entry bits. Those are the processor's, not
 * Xen's (Xen keeps them in its private asm-x86 headers); they live here
 * because every PV guest and the hypervisor's MMU need the same numbers.
 */
import { struct, record, array, u8, u16, u32, u64, char, ulong } from './layout.js';
import { vaFromCanonical, type Vaddr } from './types.js';

// ---------------------------------------------------------------------------
// Flat segment selectors (GDT entries Xen reserves for PV guests)

export const FLAT_RING3_CS32 = 0xe023;
export const FLAT_RING3_CS64 = 0xe033;
export const FLAT_RING3_DS32 = 0xe02b;
/** The null selector: 64-bit data segments need none. */
export const FLAT_RING3_DS64 = 0x0000;
export const FLAT_RING3_SS32 = 0xe02b;
export const FLAT_RING3_SS64 = 0xe02b;

/* A 64-bit PV kernel runs in ring 3 too, so its selectors are the ring-3 ones. */
export const FLAT_KERNEL_DS64 = FLAT_RING3_DS64;
export const FLAT_KERNEL_DS32 = FLAT_RING3_DS32;
export const FLAT_KERNEL_DS = FLAT_KERNEL_DS64;
export const FLAT_KERNEL_CS64 = FLAT_RING3_CS64;
export const FLAT_KERNEL_CS32 = FLAT_RING3_CS32;
export const FLAT_KERNEL_CS = FLAT_KERNEL_CS64;
export const FLAT_KERNEL_SS64 = FLAT_RING3_SS64;
export const FLAT_KERNEL_SS32 = FLAT_RING3_SS32;
export const FLAT_KERNEL_SS = FLAT_KERNEL_SS64;
export const FLAT_USER_DS64 = FLAT_RING3_DS64;
export const FLAT_USER_DS32 = FLAT_RING3_DS32;
export const FLAT_USER_DS = FLAT_USER_DS64;
export const FLAT_USER_CS64 = FLAT_RING3_CS64;
export const FLAT_USER_CS32 = FLAT_RING3_CS32;
export const FLAT_USER_CS = FLAT_USER_CS64;
export const FLAT_USER_SS64 = FLAT_RING3_SS64;
export const FLAT_USER_SS32 = FLAT_RING3_SS32;
export const FLAT_USER_SS = FLAT_USER_SS64;

// ---------------------------------------------------------------------------
// Virtual address layout (bigint: exact canonical 64-bit values)

/** Start of the hole Xen reserves in every PV address space. */
export const HYPERVISOR_VIRT_START = 0xffff_8000_0000_0000n;
/** End (exclusive) of Xen's reserved hole. */
export const HYPERVISOR_VIRT_END = 0xffff_8800_0000_0000n;
/** The read-only machine-to-phys table mapped into every PV guest. */
export const MACH2PHYS_VIRT_START = 0xffff_8000_0000_0000n;
export const MACH2PHYS_VIRT_END = 0xffff_8040_0000_0000n;
/** Entries of the M2P table: one 8-byte PFN per machine frame. */
export const MACH2PHYS_NR_ENTRIES = Number((MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3n);

function va48(v: bigint): Vaddr {
  const va = vaFromCanonical(v);
  if (va === undefined) throw new Error(`non-canonical address ${v.toString(16)}`);
  return va;
}
/* The same addresses as 48-bit xenport virtual addresses (numbers). */
export const HYPERVISOR_VIRT_START_VA: Vaddr = va48(HYPERVISOR_VIRT_START);
export const HYPERVISOR_VIRT_END_VA: Vaddr = va48(HYPERVISOR_VIRT_END);
export const MACH2PHYS_VIRT_START_VA: Vaddr = va48(MACH2PHYS_VIRT_START);
export const MACH2PHYS_VIRT_END_VA: Vaddr = va48(MACH2PHYS_VIRT_END);

/* Which segment base `set_segment_base` changes. */
export const SEGBASE_FS = 0;
export const SEGBASE_GS_USER = 1;
export const SEGBASE_GS_KERNEL = 2;
/** Load the user %gs selector given in the low 16 bits of the base. */
export const SEGBASE_GS_USER_SEL = 3;

/* Reserved GDT area: the guest's GDT may use entries below this one. */
export const FIRST_RESERVED_GDT_PAGE = 14;
export const FIRST_RESERVED_GDT_BYTE = FIRST_RESERVED_GDT_PAGE * 4096;
export const FIRST_RESERVED_GDT_ENTRY = FIRST_RESERVED_GDT_BYTE / 8;

/** Number of vcpu_info slots in shared_info (more vCPUs register their own). */
export const XEN_LEGACY_MAX_VCPUS = 32;

/** CR3 holds a frame number shifted into place (`xen_pfn_to_cr3`). */
export const xen_pfn_to_cr3 = (pfn: number): number => pfn * 4096;
/** Frame number of a CR3 value (`xen_cr3_to_pfn`). */
export const xen_cr3_to_pfn = (cr3: number): number => Math.floor(cr3 / 4096);

// ---------------------------------------------------------------------------
// Register file

/*
 * struct cpu_user_regs {            // x86_64; with __XEN_TOOLS__ each
 *     __DECL_REG_HI(15);            // register is a union of its 64/32/16/8-bit
 *     __DECL_REG_HI(14);            // names (rax/eax/ax/al); we keep the
 *     __DECL_REG_HI(13);            // 64-bit name only
 *     __DECL_REG_HI(12);
 *     __DECL_REG_LO8(bp);
 *     __DECL_REG_LOHI(b);
 *     __DECL_REG_HI(11);
 *     __DECL_REG_HI(10);
 *     __DECL_REG_HI(9);
 *     __DECL_REG_HI(8);
 *     __DECL_REG_LOHI(a);
 *     __DECL_REG_LOHI(c);
 *     __DECL_REG_LOHI(d);
 *     __DECL_REG_LO8(si);
 *     __DECL_REG_LO8(di);
 *     uint32_t error_code;    // private
 *     uint32_t entry_vector;  // private
 *     __DECL_REG_LO16(ip);
 *     uint16_t cs, _pad0[1];
 *     uint8_t  saved_upcall_mask;
 *     uint8_t  _pad1[3];
 *     __DECL_REG_LO16(flags); // rflags.IF == !saved_upcall_mask
 *     __DECL_REG_LO8(sp);
 *     uint16_t ss, _pad2[3];
 *     uint16_t es, _pad3[3];
 *     uint16_t ds, _pad4[3];
 *     uint16_t fs, _pad5[3];
 *     uint16_t gs, _pad6[3];
 * };
 */
export const cpu_user_regs = struct('struct cpu_user_regs', {
  r15: u64,
  r14: u64,
  r13: u64,
  r12: u64,
  rbp: u64,
  rbx: u64,
  r11: u64,
  r10: u64,
  r9: u64,
  r8: u64,
  /** Hypercall number on entry, result on return (the continuation reads it). */
  rax: u64,
  rcx: u64,
  /** SHUTDOWN_suspend: start_info MFN (PFN in a saved image). */
  rdx: u64,
  /** At boot: virtual address of start_info. */
  rsi: u64,
  rdi: u64,
  error_code: u32,
  entry_vector: u32,
  /** Virtual address of the kernel symbol to enter at. */
  rip: u64,
  cs: u16,
  _pad0: array(u16, 1),
  saved_upcall_mask: u8,
  _pad1: array(u8, 3),
  rflags: u64,
  rsp: u64,
  ss: u16,
  _pad2: array(u16, 3),
  es: u16,
  _pad3: array(u16, 3),
  ds: u16,
  _pad4: array(u16, 3),
  fs: u16,
  _pad5: array(u16, 3),
  gs: u16,
  _pad6: array(u16, 3),
});

/*
 * struct trap_info {
 *     uint8_t       vector;  // exception vector
 *     uint8_t       flags;   // 0-3: privilege level; 4: clear event enable?
 *     uint16_t      cs;      // code selector
 *     unsigned long address; // code offset
 * };
 */
export const trap_info = struct('struct trap_info', {
  vector: u8,
  flags: u8,
  cs: u16,
  address: ulong,
});
/* trap_info.flags: bits 0-1 are the DPL, bit 2 says "mask events on entry". */
export const TI_DPL_MASK = 3;
export const TI_IF = 4;

// ---------------------------------------------------------------------------
// vCPU context (set/get vcpucontext, VCPUOP_initialise, the migration stream)

/* vcpu_guest_context.flags */
export const VGCF_I387_VALID = 1 << 0;
export const VGCF_IN_KERNEL = 1 << 2;
export const _VGCF_i387_valid = 0;
export const VGCF_i387_valid = 1 << _VGCF_i387_valid;
export const _VGCF_in_kernel = 2;
export const VGCF_in_kernel = 1 << _VGCF_in_kernel;
export const _VGCF_failsafe_disables_events = 3;
export const VGCF_failsafe_disables_events = 1 << _VGCF_failsafe_disables_events;
export const _VGCF_syscall_disables_events = 4;
export const VGCF_syscall_disables_events = 1 << _VGCF_syscall_disables_events;
export const _VGCF_online = 5;
export const VGCF_online = 1 << _VGCF_online;
/** x86_64: the guest left through SYSCALL; return with SYSRET. */
export const _VGCF_in_syscall = 8;
export const VGCF_in_syscall = 1 << _VGCF_in_syscall;
export const VGCF_IN_SYSCALL = VGCF_in_syscall;

/* The anonymous `struct { char x[512]; }` that holds the FXSAVE image. */
const fpu_ctxt = struct('struct vcpu_guest_context fpu_ctxt', { x: array(char, 512) });

/*
 * struct vcpu_guest_context {
 *     struct { char x[512]; } fpu_ctxt;       // User-level FPU registers
 *     unsigned long flags;                    // VGCF_* flags
 *     struct cpu_user_regs user_regs;         // User-level CPU registers
 *     struct trap_info trap_ctxt[256];        // Virtual IDT
 *     unsigned long ldt_base, ldt_ents;       // LDT (linear address, # ents)
 *     unsigned long gdt_frames[16], gdt_ents; // GDT (machine frames, # ents)
 *     unsigned long kernel_ss, kernel_sp;     // Virtual TSS (only SS1/SP1)
 *     unsigned long ctrlreg[8];               // CR0-CR7; ctrlreg[1] = user CR3
 *     unsigned long debugreg[8];              // DB0-DB7
 *     unsigned long event_callback_eip;
 *     unsigned long failsafe_callback_eip;
 *     unsigned long syscall_callback_eip;
 *     unsigned long vm_assist;                // VMASST_TYPE_* bitmap
 *     uint64_t      fs_base;
 *     uint64_t      gs_base_kernel;
 *     uint64_t      gs_base_user;
 * };  // 5168 bytes on x86_64
 */
export const vcpu_guest_context = struct('vcpu_guest_context_t', {
  fpu_ctxt: record(fpu_ctxt),
  flags: ulong,
  user_regs: record(cpu_user_regs),
  trap_ctxt: array(record(trap_info), 256),
  ldt_base: ulong,
  ldt_ents: ulong,
  gdt_frames: array(ulong, 16),
  gdt_ents: ulong,
  kernel_ss: ulong,
  kernel_sp: ulong,
  /** ctrlreg[3] is CR3: the L4 table's MFN, shifted (xen_pfn_to_cr3). */
  ctrlreg: array(ulong, 8),
  debugreg: array(ulong, 8),
  event_callback_eip: ulong,
  failsafe_callback_eip: ulong,
  syscall_callback_eip: ulong,
  vm_assist: ulong,
  fs_base: u64,
  gs_base_kernel: u64,
  gs_base_user: u64,
});
/** Xen's typedef name for the same struct. */
export const vcpu_guest_context_t = vcpu_guest_context;

// ---------------------------------------------------------------------------
// Arch parts of shared_info and vcpu_info

/*
 * struct arch_shared_info {
 *     unsigned long max_pfn;                  // entries in the P2M
 *     xen_pfn_t     pfn_to_mfn_frame_list_list; // MFN of the P2M's top level
 *     unsigned long nmi_reason;
 *     unsigned long p2m_cr3;         // cr3 value of the p2m address space
 *     unsigned long p2m_vaddr;       // virtual address of the p2m list
 *     unsigned long p2m_generation;  // generation count of p2m mapping
 * };
 */
export const arch_shared_info = struct('struct arch_shared_info', {
  max_pfn: ulong,
  /** 0: not set up yet; ~0: too large for the 3-level tree (use p2m_vaddr). */
  pfn_to_mfn_frame_list_list: ulong,
  nmi_reason: ulong,
  p2m_cr3: ulong,
  p2m_vaddr: ulong,
  /** Odd while the guest changes its P2M mappings. */
  p2m_generation: ulong,
});

/*
 * struct arch_vcpu_info {
 *     unsigned long cr2;
 *     unsigned long pad; // sizeof(vcpu_info_t) == 64
 * };
 */
export const arch_vcpu_info = struct('struct arch_vcpu_info', {
  /** Faulting address of the last page fault. */
  cr2: ulong,
  pad: ulong,
});

/*
 * struct iret_context {
 *     // Top of stack (%rsp at point of hypercall).
 *     uint64_t rax, r11, rcx, flags, rip, cs, rflags, rsp, ss;
 *     // Bottom of iret stack frame.
 * };
 */
export const iret_context = struct('struct iret_context', {
  rax: u64,
  r11: u64,
  rcx: u64,
  flags: u64,
  rip: u64,
  cs: u64,
  rflags: u64,
  rsp: u64,
  ss: u64,
});

// ---------------------------------------------------------------------------
// x86 page-table entries. PROCESSOR ARCHITECTURE, not Xen ABI: these are the
// bits the CPU defines for a 4-level long-mode PTE. Xen's public headers do
// not export them; PV guests and the hypervisor's MMU share them here.

export const _PAGE_PRESENT = 0x001;
export const _PAGE_RW = 0x002;
export const _PAGE_USER = 0x004;
export const _PAGE_PWT = 0x008;
export const _PAGE_PCD = 0x010;
export const _PAGE_ACCESSED = 0x020;
export const _PAGE_DIRTY = 0x040;
/** In an L2/L3 entry: a superpage. In an L1 entry the same bit is PAT. */
export const _PAGE_PSE = 0x080;
export const _PAGE_PAT = 0x080;
export const _PAGE_GLOBAL = 0x100;
/** Bits 9..11 are free for software. */
export const _PAGE_AVAIL0 = 0x200;
export const _PAGE_AVAIL1 = 0x400;
export const _PAGE_AVAIL2 = 0x800;
/** No-execute: bit 63, so only as a bigint. */
export const _PAGE_NX = 1n << 63n;
/** Bits 0..11 of a PTE: the flag bits above (all fit in a JS number). */
export const PTE_FLAGS_MASK = 0xfff;
/** Frame number field of a PTE: bits 12..51. */
export const PTE_FRAME_SHIFT = 12;
export const PTE_FRAME_MASK = 0x000f_ffff_ffff_f000n;

/* 4-level paging geometry. */
export const L1_PAGETABLE_SHIFT = 12;
export const L2_PAGETABLE_SHIFT = 21;
export const L3_PAGETABLE_SHIFT = 30;
export const L4_PAGETABLE_SHIFT = 39;
/** Entries in a page-table page at every level (4096 / 8). */
export const PAGETABLE_ENTRIES = 512;
