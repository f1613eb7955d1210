/*
 * Where the builder puts things in a new domain's pseudo-physical memory:
 * a pure function of the kernel image and the domain's size, so it can be
 * tested alone and recomputed by anyone who wants to look at a domain.
 *
 * From PFN 0, as libxc's x86_64 PV builder lays out its segments after the
 * kernel's ELF segments (each region page-aligned, in this order):
 *
 *   kernel image    imageSize bytes at virtBase (its .data/.bss), zeroed
 *   P2M array       mfn_list: 8 bytes per PFN, entry p = MFN of PFN p
 *   start_info      (start_info_t; rsi points here at entry)
 *   xenstore page   (xenstore_domain_interface)
 *   console page    (xencons_interface)
 *   ctrl_if page    (the Xen 2.0 control interface; ARCHITECTURE §5)
 *   page tables     L4, then the L3s, L2s, L1s: they map ALL of the
 *                   domain's RAM at virtBase + pfn * 4096
 *   boot stack      one page; rsp starts at its top
 *
 * The rest is free RAM for the kernel. Everything the builder placed lies
 * inside the direct map, so the kernel reaches it at virtBase + pfn * 4096.
 */
import type { KernelImage } from '../../public/cpu.js';
import { PAGE_SIZE, VA_BITS } from '../../public/types.js';
import {
  L2_PAGETABLE_SHIFT, L3_PAGETABLE_SHIFT, L4_PAGETABLE_SHIFT, PAGETABLE_ENTRIES,
} from '../../public/arch-x86_64.js';
import { BuildError } from './errors.js';

/** L4 slots 256..271 are Xen's (HYPERVISOR_VIRT_START..END): a guest may not map there. */
export const XEN_L4_FIRST_SLOT = 256;
export const XEN_L4_LAST_SLOT = 271;

/** A run of consecutive page-table frames of one level. */
export interface TableRun {
  /** PFN of the first table of the level. */
  readonly pfn: number;
  readonly count: number;
  /** Index (va >> shift) of the first region the level's first table covers. */
  readonly firstIndex: number;
}

export interface DomainLayout {
  readonly nrPages: number;
  readonly virtBase: number;
  readonly imagePages: number;
  readonly p2mPfn: number;
  readonly p2mPages: number;
  readonly startInfoPfn: number;
  readonly storePfn: number;
  readonly consolePfn: number;
  readonly ctrlIfPfn: number;
  /** The L4 is the first page-table frame (pt_base). */
  readonly l4Pfn: number;
  readonly l3: TableRun;
  readonly l2: TableRun;
  readonly l1: TableRun;
  /** Every page-table frame: L4, L3s, L2s, L1s. */
  readonly ptPfn: number;
  readonly nrPtFrames: number;
  readonly stackPfn: number;
  /** First PFN the builder did not use. */
  readonly firstFreePfn: number;
}

const div = (n: number, shift: number): number => Math.floor(n / 2 ** shift);

/** Virtual address of a PFN in the direct map. */
export function pfnVa(l: Pick<DomainLayout, 'virtBase'>, pfn: number): number {
  return l.virtBase + pfn * PAGE_SIZE;
}

/** True when `pfn` is one of the bootstrap page-table frames. */
export function isPageTablePfn(l: DomainLayout, pfn: number): boolean {
  return pfn >= l.ptPfn && pfn < l.ptPfn + l.nrPtFrames;
}

/**
 * Plan a domain of `nrPages` pages for `image`. A BuildError ('layout')
 * when the direct map does not fit the address space or the boot pages do
 * not fit in the domain.
 */
export function planLayout(image: Pick<KernelImage, 'name' | 'virtBase' | 'imageSize'>, nrPages: number): DomainLayout {
  if (!Number.isInteger(nrPages) || nrPages <= 0) throw new BuildError('layout', `a domain of ${nrPages} pages makes no sense`);
  const virtBase = image.virtBase;
  if (virtBase % PAGE_SIZE !== 0) throw new BuildError('layout', `kernel ${image.name}: virtBase 0x${virtBase.toString(16)} is not page-aligned`);
  const end = virtBase + nrPages * PAGE_SIZE; // exclusive
  if (end > 2 ** VA_BITS) {
    throw new BuildError('layout', `kernel ${image.name}: ${nrPages} pages at 0x${virtBase.toString(16)} run past the 48-bit address space`);
  }
  const last = end - 1;
  const firstL4 = div(virtBase, L4_PAGETABLE_SHIFT);
  const lastL4 = div(last, L4_PAGETABLE_SHIFT);
  if (firstL4 <= XEN_L4_LAST_SLOT && lastL4 >= XEN_L4_FIRST_SLOT) {
    throw new BuildError('layout', `kernel ${image.name}: the direct map 0x${virtBase.toString(16)}..0x${last.toString(16)} overlaps Xen's reserved L4 slots ${XEN_L4_FIRST_SLOT}..${XEN_L4_LAST_SLOT}`);
  }
  const imagePages = Math.ceil(image.imageSize / PAGE_SIZE);
  const p2mPfn = imagePages;
  const p2mPages = Math.ceil((nrPages * 8) / PAGE_SIZE);
  const startInfoPfn = p2mPfn + p2mPages;
  const storePfn = startInfoPfn + 1;
  const consolePfn = storePfn + 1;
  const ctrlIfPfn = consolePfn + 1;
  const l4Pfn = ctrlIfPfn + 1;
  const level = (shift: number, pfn: number): TableRun => {
    // One table per region of 512 entries of this level touched by the map.
    const first = div(virtBase, shift + 9);
    return { pfn, count: div(last, shift + 9) - first + 1, firstIndex: first * PAGETABLE_ENTRIES };
  };
  const l3 = level(L3_PAGETABLE_SHIFT, l4Pfn + 1);
  const l2 = level(L2_PAGETABLE_SHIFT, l3.pfn + l3.count);
  const l1 = level(12, l2.pfn + l2.count);
  const nrPtFrames = 1 + l3.count + l2.count + l1.count;
  const stackPfn = l4Pfn + nrPtFrames;
  const firstFreePfn = stackPfn + 1;
  if (firstFreePfn > nrPages) {
    const needMiB = Math.ceil((firstFreePfn * PAGE_SIZE) / 2 ** 20);
    throw new BuildError('layout', `kernel ${image.name} needs ${firstFreePfn} pages for its image and boot pages, more than the domain's ${nrPages} (memory must be at least ${needMiB} MiB)`);
  }
  return {
    nrPages, virtBase, imagePages, p2mPfn, p2mPages, startInfoPfn, storePfn, consolePfn, ctrlIfPfn,
    l4Pfn, l3, l2, l1, ptPfn: l4Pfn, nrPtFrames, stackPfn, firstFreePfn,
  };
}

/** Which L1 table (index in the run) and slot map `pfn`. */
export function l1SlotOf(l: DomainLayout, pfn: number): { table: number; slot: number } {
  const vpn = div(pfnVa(l, pfn), 12);
  const rel = vpn - l.l1.firstIndex;
  return { table: Math.floor(rel / PAGETABLE_ENTRIES), slot: rel % PAGETABLE_ENTRIES };
}

export { L2_PAGETABLE_SHIFT, L3_PAGETABLE_SHIFT, L4_PAGETABLE_SHIFT };
