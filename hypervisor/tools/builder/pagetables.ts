/*
 * The bootstrap page tables (libxc's setup_pgtables for x86_64): a 4-level
 * tree that maps every PFN of the domain at virtBase + pfn * 4096, built
 * host-side as frame contents and then written into the domain's frames.
 *
 * Entries hold MFNs (direct paging). Flags, as a PV builder sets them:
 * upper levels P|RW|US|A|D; leaf entries P|US|A and RW|D except for the
 * page-table frames themselves, which the hypervisor only accepts mapped
 * read-only (a guest changes its tables with mmu_update, never by a plain
 * store). Leaf entries also carry NX: kernel text is TypeScript and never
 * fetched, so nothing in the direct map is executable.
 */
import {
  _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, PAGETABLE_ENTRIES,
} from '../../public/arch-x86_64.js';
import { PAGE_SIZE } from '../../public/types.js';
import { isPageTablePfn, type DomainLayout, type TableRun } from './layout.js';

export const UPPER_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;
export const LEAF_RW_FLAGS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;
export const LEAF_RO_FLAGS = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
/** Bit 63 (NX) as seen in the high 32-bit half of an entry. */
const NX_HI = 0x8000_0000;

/** Store one PTE: frame `mfn` with `flags` (bits 0..11), NX when asked. */
function putPte(dv: DataView, slot: number, mfn: number, flags: number, nx: boolean): void {
  const lo = ((mfn % 0x10_0000) * PAGE_SIZE + flags) >>> 0;
  const hi = (Math.floor(mfn / 0x10_0000) | (nx ? NX_HI : 0)) >>> 0;
  dv.setUint32(slot * 8, lo, true);
  dv.setUint32(slot * 8 + 4, hi, true);
}

/** A page-table frame being filled, by PFN. */
export interface TableFrame {
  readonly pfn: number;
  readonly bytes: Uint8Array;
}

/**
 * Contents of every bootstrap page-table frame, L4 first, in PFN order.
 * `p2m[pfn]` is the MFN backing each PFN.
 */
export function buildPageTables(l: DomainLayout, p2m: ArrayLike<number>): TableFrame[] {
  const frames: TableFrame[] = [];
  const views: DataView[] = [];
  for (let i = 0; i < l.nrPtFrames; i++) {
    const bytes = new Uint8Array(PAGE_SIZE);
    frames.push({ pfn: l.ptPfn + i, bytes });
    views.push(new DataView(bytes.buffer));
  }
  const view = (pfn: number): DataView => views[pfn - l.ptPfn]!;
  const mfnOf = (pfn: number): number => p2m[pfn]!;

  // Link each table of a level into its parent: table t of `run` covers
  // region x = first + t; its parent covers x >> 9 and holds it in slot x % 512.
  const link = (run: TableRun, parent: TableRun | undefined): void => {
    const first = run.firstIndex / PAGETABLE_ENTRIES;
    for (let t = 0; t < run.count; t++) {
      const x = first + t;
      const parentPfn = parent === undefined ? l.l4Pfn : parent.pfn + (Math.floor(x / PAGETABLE_ENTRIES) - parent.firstIndex / PAGETABLE_ENTRIES);
      putPte(view(parentPfn), x % PAGETABLE_ENTRIES, mfnOf(run.pfn + t), UPPER_FLAGS, false);
    }
  };
  link(l.l3, undefined);
  link(l.l2, l.l3);
  link(l.l1, l.l2);

  // Leaves: PFN p at VPN (virtBase >> 12) + p.
  const firstVpn = l.virtBase / PAGE_SIZE;
  for (let pfn = 0; pfn < l.nrPages; pfn++) {
    const rel = firstVpn + pfn - l.l1.firstIndex;
    const table = l.l1.pfn + Math.floor(rel / PAGETABLE_ENTRIES);
    const ro = isPageTablePfn(l, pfn);
    putPte(view(table), rel % PAGETABLE_ENTRIES, mfnOf(pfn), ro ? LEAF_RO_FLAGS : LEAF_RW_FLAGS, true);
  }
  return frames;
}
