/*
 * The PV MMU from the guest's side (NetBSD's arch/xen/x86/x86_xpmap.c):
 * P2M/M2P lookups, page-table updates through the hypervisor, the boot-time
 * memory layout (xen_pmap_bootstrap) and the kernel VA area.
 *
 * What the builder left us (libxc's x86_64 PV layout), PFN 0 upward: the
 * kernel image, the P2M array, start_info, the xenstore and console pages,
 * the ctrl_if page, the bootstrap page tables (L4 first, read-only in the
 * direct map), a boot stack. Every PFN is mapped at KERNBASE + pfn * 4096.
 * Everything after the last of those pages is free and goes to uvm.
 *
 * A new page-table page is made the way Xen demands: zeroed while still
 * writable, its direct-map mapping made read-only (update_va_mapping),
 * then linked into its parent with a checked mmu_update on the parent's
 * machine address. The tables are found again by walking from CR3 through
 * the M2P, so nothing about them needs remembering (and a restore, which
 * renumbers every frame, changes nothing here).
 */
import createDebug from 'debug';
import { GuestPageFault, type GuestCpu } from '../../../hypervisor/public/cpu.js';
import { vaFromCanonical, type Vaddr } from '../../../hypervisor/public/types.js';
import { MMU_NORMAL_PT_UPDATE, UVMF_INVLPG, mmu_update } from '../../../hypervisor/public/xen.js';
import {
  MACH2PHYS_VIRT_START_VA, MACH2PHYS_NR_ENTRIES, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY,
  PTE_FRAME_MASK, L4_PAGETABLE_SHIFT, L3_PAGETABLE_SHIFT, L2_PAGETABLE_SHIFT,
} from '../../../hypervisor/public/arch-x86_64.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { panic } from '../../../sys/kern/subr_prf.js';
import { uvm_page_physload, uvm_pagealloc } from '../../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../../sys/uvm/uvm.js';
import { vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { KERNBASE, PAGE_SIZE, KERNEL_IMAGE_PAGES, pfn_to_kva, kva_to_pfn } from '../include/vmparam.js';
import { XEN_KVA_BASE, XEN_KVA_SIZE } from '../include/xenpmap.js';
import { xmd, xmd_addr } from '../include/xen.js';
import { HYPERVISOR_mmu_update, HYPERVISOR_update_va_mapping } from '../include/hypercalls.js';

const dbg = createDebug('guest:boot');

const LEVEL_SHIFT = Object.freeze([L4_PAGETABLE_SHIFT, L3_PAGETABLE_SHIFT, L2_PAGETABLE_SHIFT]);
/** Flags of an entry pointing at a lower-level table (64-bit PV kernels run in ring 3: U is set). */
const PTE_UPPER = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_USER;
/** Flags of a read-only kernel page mapping. */
export const PTE_KERNEL_RO = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER;
/** Flags of a writable kernel page mapping. */
export const PTE_KERNEL_RW = PTE_KERNEL_RO | _PAGE_RW | _PAGE_DIRTY;

/** Entries of the P2M array (the PFNs this domain has). */
export function xpmap_nr_pages(cpu: GuestCpu): number {
  return vu64(xmd(cpu), 'xm_nr_pages');
}

/** MFN of our `pfn` (NetBSD's xpmap_ptom), read from the P2M array. */
export function xpmap_ptom(cpu: GuestCpu, pfn: number): number {
  const x = xmd(cpu);
  if (!(pfn >= 0 && pfn < vu64(x, 'xm_nr_pages'))) panic(cpu, 'xpmap_ptom: pfn %lu out of range', pfn);
  return Number(cpu.mem.getBigUint64(vptr(x, 'xm_p2m_va') + pfn * 8, true) & 0xff_ffff_ffffn);
}

/**
 * PFN of machine frame `mfn` (xpmap_mtop), or -1 when the frame is not
 * ours: the M2P says what it says, the P2M must agree.
 */
export function xpmap_mtop(cpu: GuestCpu, mfn: number): number {
  if (!(Number.isInteger(mfn) && mfn >= 0 && mfn < MACH2PHYS_NR_ENTRIES)) return -1;
  let raw: bigint;
  try {
    raw = cpu.mem.getBigUint64(MACH2PHYS_VIRT_START_VA + mfn * 8, true);
  } catch (e) {
    // Past the frames the machine has: the M2P window ends there.
    if (e instanceof GuestPageFault) return -1;
    throw e;
  }
  const n = xpmap_nr_pages(cpu);
  if (raw >= BigInt(n)) return -1;
  const pfn = Number(raw);
  return xpmap_ptom(cpu, pfn) === mfn ? pfn : -1;
}

/** Machine frame of a direct-mapped kernel address (what a grant or a frame list names). */
export function xpmap_kva_to_mfn(cpu: GuestCpu, va: number): number {
  return xpmap_ptom(cpu, kva_to_pfn(va));
}

/** Machine address of a direct-mapped kernel address. */
export function xpmap_kva_to_ma(cpu: GuestCpu, va: number): number {
  return xpmap_kva_to_mfn(cpu, va) * PAGE_SIZE + (va % PAGE_SIZE);
}

/** Direct-map address of a machine frame of ours, or 0. */
export function xpmap_mfn_to_kva(cpu: GuestCpu, mfn: number): number {
  const pfn = xpmap_mtop(cpu, mfn);
  return pfn < 0 ? 0 : pfn_to_kva(pfn);
}

/** One checked page-table update: *(ptrMa) = val (MMU_NORMAL_PT_UPDATE). */
export function xpq_update(cpu: GuestCpu, ptrMa: number, val: bigint): number {
  const req = xmd_addr('xm_scratch');
  const v = mmu_update.view(cpu.mem, req);
  v.set('ptr', BigInt(ptrMa) | BigInt(MMU_NORMAL_PT_UPDATE));
  v.set('val', val);
  return HYPERVISOR_mmu_update(cpu, req, 1);
}

/** A PTE for machine address `ma` with x86 `flags`. */
export function xpmap_pte(ma: number, flags: number): bigint {
  return (BigInt(ma) & PTE_FRAME_MASK) | BigInt(flags);
}

/** Turn a page of ours into a page-table page: zeroed, then read-only in the direct map. */
function xpmap_pt_prepare(cpu: GuestCpu, va: number): number {
  const pfn = kva_to_pfn(va);
  const mfn = xpmap_ptom(cpu, pfn);
  cpu.mem.fill(va, PAGE_SIZE, 0);
  const rc = HYPERVISOR_update_va_mapping(cpu, va, xpmap_pte(mfn * PAGE_SIZE, PTE_KERNEL_RO), UVMF_INVLPG);
  if (rc !== 0) panic(cpu, 'xpmap_pt_prepare: cannot make %p read-only (%d)', va, rc);
  return mfn;
}

/** Direct-map address of the L4 in CR3. */
function xpmap_l4_va(cpu: GuestCpu): number {
  const mfn = Number((cpu.regs.getCr(3) & PTE_FRAME_MASK) >> 12n);
  const va = xpmap_mfn_to_kva(cpu, mfn);
  if (va === 0) panic(cpu, 'xpmap_l4_va: CR3 frame %lu is not ours', mfn);
  return va;
}

/**
 * Direct-map address of the L1 table that maps `va`, creating the L3, L2
 * and L1 on the way as needed.
 */
export function xpmap_l1_ensure(cpu: GuestCpu, va: number): number {
  let table = xpmap_l4_va(cpu);
  for (const shift of LEVEL_SHIFT) {
    const index = Math.floor(va / 2 ** shift) % 512;
    const entryVa = table + index * 8;
    const pte = cpu.mem.getBigUint64(entryVa, true);
    if ((pte & BigInt(_PAGE_PRESENT)) !== 0n) {
      const next = xpmap_mfn_to_kva(cpu, Number((pte & PTE_FRAME_MASK) >> 12n));
      if (next === 0) panic(cpu, 'xpmap_l1_ensure: table entry %lx at %p is not our frame', pte, entryVa);
      table = next;
      continue;
    }
    const page = uvm_pagealloc(cpu, UVM_KMF_ZERO);
    if (page === 0) panic(cpu, 'xpmap_l1_ensure: out of memory for page tables');
    const mfn = xpmap_pt_prepare(cpu, page);
    const rc = xpq_update(cpu, xpmap_kva_to_ma(cpu, entryVa), xpmap_pte(mfn * PAGE_SIZE, PTE_UPPER));
    if (rc !== 0) panic(cpu, 'xpmap_l1_ensure: linking a page table for %p failed (%d)', va, rc);
    if (dbg.enabled) dbg('vcpu%d: new page table pfn %d (mfn %d) under %s', cpu.vcpuId, kva_to_pfn(page), mfn, entryVa.toString(16));
    table = page;
  }
  return table;
}

/** Reserve `npages` pages of the kernel VA area (never given back). */
export function xen_kva_alloc(cpu: GuestCpu, npages: number): Vaddr {
  const x = xmd(cpu);
  const va = vptr(x, 'xm_kva_next');
  if (va < XEN_KVA_BASE || va + npages * PAGE_SIZE > XEN_KVA_BASE + XEN_KVA_SIZE) panic(cpu, 'xen_kva_alloc: kernel VA area exhausted');
  vptr_set(x, 'xm_kva_next', va + npages * PAGE_SIZE);
  return va as Vaddr;
}

/** Map machine address `ma` at kernel address `va` (NetBSD's pmap_kenter_ma). */
export function pmap_kenter_ma(cpu: GuestCpu, va: number, ma: number, writable: boolean): number {
  xpmap_l1_ensure(cpu, va);
  return HYPERVISOR_update_va_mapping(cpu, va, xpmap_pte(ma, writable ? PTE_KERNEL_RW : PTE_KERNEL_RO), UVMF_INVLPG);
}

/** Remove the mapping at `va` of the kernel VA area. */
export function pmap_kremove(cpu: GuestCpu, va: number): number {
  return HYPERVISOR_update_va_mapping(cpu, va, 0n, UVMF_INVLPG);
}

/** PFN of a direct-map address from a canonical 64-bit field, or -1. */
function xpmap_field_pfn(v: bigint, nrPages: number): number {
  const va = vaFromCanonical(v);
  if (va === undefined || va < KERNBASE) return -1;
  const pfn = kva_to_pfn(va);
  return pfn < nrPages ? pfn : -1;
}

/**
 * Find the free memory and give it to uvm; set up the kernel VA area.
 * `stackTop` is rsp at entry (the boot stack's top). Returns the first
 * free PFN.
 */
export function xen_pmap_bootstrap(cpu: GuestCpu, stackTop: number): number {
  const x = xmd(cpu);
  const si = x.sub('xm_start_info');
  const nr = vu64(x, 'xm_nr_pages');
  let first = KERNEL_IMAGE_PAGES;
  const after = (pfn: number, pages = 1): void => {
    if (pfn >= 0) first = Math.max(first, pfn + pages);
  };
  const p2m = xpmap_field_pfn(si.get('mfn_list'), nr);
  if (p2m < 0) panic(cpu, 'xen_pmap_bootstrap: P2M at %lx is not in the direct map', si.get('mfn_list'));
  after(p2m, Math.ceil((nr * 8) / PAGE_SIZE));
  after(kva_to_pfn(vptr(x, 'xm_start_info_va')));
  after(xpmap_field_pfn(si.get('pt_base'), nr), Number(si.get('nr_pt_frames')));
  after(xpmap_mtop(cpu, Number(si.get('store_mfn'))));
  after(xpmap_mtop(cpu, Number(si.sub('console').sub('domU').get('mfn'))));
  const ctrlIf = vu64(x, 'xm_ctrl_if_pfn');
  if (ctrlIf > 0 && ctrlIf < nr) after(ctrlIf);
  if (stackTop > KERNBASE) after(Math.ceil((stackTop - KERNBASE) / PAGE_SIZE) - 1);
  if (first >= nr) panic(cpu, 'xen_pmap_bootstrap: no free memory (%lu pages, first free %lu)', nr, first);
  vu64_set(x, 'xm_first_free_pfn', first);
  uvm_page_physload(cpu, first, nr);
  vptr_set(x, 'xm_kva_next', XEN_KVA_BASE);
  if (dbg.enabled) dbg('vcpu%d: %d pages, free from pfn %d', cpu.vcpuId, nr, first);
  return first;
}

export const x86_xpmap_ksyms = ksymtab({
  xpmap_kva_to_mfn,
  xpmap_nr_pages, xpmap_ptom, xpmap_mtop, xpmap_kva_to_ma, xpmap_mfn_to_kva, xpq_update, xpmap_pte, xpmap_pt_prepare,
  xpmap_l4_va, xpmap_l1_ensure, xen_kva_alloc, pmap_kenter_ma, pmap_kremove, xpmap_field_pfn, xen_pmap_bootstrap,
});
