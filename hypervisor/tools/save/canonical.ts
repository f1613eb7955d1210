/*
 * Page tables in the saved image are canonical: every present entry names a
 * PFN where the live table held an MFN (libxc's normalise_pagetable on save,
 * localise_page on restore). Flags, NX and the other bits stay as they are.
 *
 * Rules, as Xen's saver and restorer apply them:
 *  - save: an entry must name a frame in the guest's pseudo-physical map
 *    (M2P and P2M agree on it); a grant-mapped or foreign frame, or the
 *    guest's own shared_info, cannot be saved (a guest unmaps them before
 *    suspending). Superpages cannot be migrated.
 *  - Xen's own L4 slots are empty in the image. The saver clears slots
 *    256..272 (HYPERVISOR_VIRT_START..END, END inclusive as libxc computes
 *    it). Slots 256..271 hold nothing of the guest's here (the hypervisor
 *    clears them on validation); a guest mapping in slot 272 would be lost,
 *    so it is refused rather than silently dropped.
 *  - restore: an entry must name a PFN below max_pfn that the image gave
 *    data for.
 *
 * Pure functions over one page; the caller supplies the MFN<->PFN maps.
 */
import { PAGE_SIZE } from '../../public/types.js';

/** First and last L4 slot the image must leave empty (libxc's xen_first..xen_last). */
export const L4_IMAGE_XEN_FIRST = 256;
export const L4_IMAGE_XEN_LAST = 272;
/** The last slot the hypervisor itself reserves; 272 is the guest's but lost by Xen's saver. */
export const L4_HYPERVISOR_LAST = 271;

const PTE_PRESENT = 0x1;
const PTE_PSE = 0x80;
/** Frame bits 32..51 of an entry, in its high half. */
const HI_FRAME = 0xf_ffff;
const ENTRIES = PAGE_SIZE / 8;

export type PteProblemKind =
  /** save: the entry maps a frame outside the guest's pseudo-physical map. */
  | 'foreign'
  /** An L2/L3 superpage entry. */
  | 'superpage'
  /** An L4 entry in Xen's slots. */
  | 'xen-slot'
  /** restore: the entry names a pfn not below max_pfn. */
  | 'pfn-out-of-range'
  /** restore: the entry names a pfn the image has no data for. */
  | 'unpopulated';

export interface PteProblem {
  readonly kind: PteProblemKind;
  readonly entry: number;
  /** The frame number the entry holds (an MFN on save, a PFN on restore). */
  readonly frame: number;
}

function frameOf(lo: number, hi: number): number {
  return (hi & HI_FRAME) * 0x10_0000 + (lo >>> 12);
}

function setFrame(dv: DataView, off: number, lo: number, hi: number, frame: number): void {
  dv.setUint32(off, (((frame % 0x10_0000) * PAGE_SIZE) + (lo & 0xfff)) >>> 0, true);
  dv.setUint32(off + 4, ((hi & ~HI_FRAME) | Math.floor(frame / 0x10_0000)) >>> 0, true);
}

function viewOf(page: Uint8Array): DataView {
  if (page.length !== PAGE_SIZE) throw new RangeError(`a page table is ${PAGE_SIZE} bytes, not ${page.length}`);
  return new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
}

const isXenSlot = (level: number, i: number): boolean => level === 4 && i >= L4_IMAGE_XEN_FIRST && i <= L4_IMAGE_XEN_LAST;

/**
 * Canonicalize a copy of a level-`level` table in place: MFN -> PFN in
 * every present entry, Xen's L4 slots cleared. `toPfn` gives the PFN of an
 * MFN in the guest's pseudo-physical map, or -1. The first problem found,
 * or undefined.
 */
export function canonicalizeTable(page: Uint8Array, level: number, toPfn: (mfn: number) => number): PteProblem | undefined {
  const dv = viewOf(page);
  for (let i = 0; i < ENTRIES; i++) {
    const off = 8 * i;
    const lo = dv.getUint32(off, true);
    const hi = dv.getUint32(off + 4, true);
    if (isXenSlot(level, i)) {
      if (i > L4_HYPERVISOR_LAST && (lo & PTE_PRESENT) !== 0) return { kind: 'xen-slot', entry: i, frame: frameOf(lo, hi) };
      dv.setUint32(off, 0, true);
      dv.setUint32(off + 4, 0, true);
      continue;
    }
    if ((lo & PTE_PRESENT) === 0) continue;
    const mfn = frameOf(lo, hi);
    if ((level === 2 || level === 3) && (lo & PTE_PSE) !== 0) return { kind: 'superpage', entry: i, frame: mfn };
    const pfn = toPfn(mfn);
    if (pfn < 0) return { kind: 'foreign', entry: i, frame: mfn };
    setFrame(dv, off, lo, hi, pfn);
  }
  return undefined;
}

/**
 * Localize a canonical level-`level` table in place: PFN -> new MFN.
 * `toMfn` gives the MFN now backing a pfn below `maxPfn`, or -1 when the
 * image gave it no data. The first problem found, or undefined.
 */
export function localizeTable(page: Uint8Array, level: number, maxPfn: number, toMfn: (pfn: number) => number): PteProblem | undefined {
  const dv = viewOf(page);
  for (let i = 0; i < ENTRIES; i++) {
    const off = 8 * i;
    const lo = dv.getUint32(off, true);
    const hi = dv.getUint32(off + 4, true);
    if (isXenSlot(level, i)) {
      if (lo !== 0 || hi !== 0) return { kind: 'xen-slot', entry: i, frame: frameOf(lo, hi) };
      continue;
    }
    if ((lo & PTE_PRESENT) === 0) continue;
    const pfn = frameOf(lo, hi);
    if ((level === 2 || level === 3) && (lo & PTE_PSE) !== 0) return { kind: 'superpage', entry: i, frame: pfn };
    if (pfn >= maxPfn) return { kind: 'pfn-out-of-range', entry: i, frame: pfn };
    const mfn = toMfn(pfn);
    if (mfn < 0) return { kind: 'unpopulated', entry: i, frame: pfn };
    setFrame(dv, off, lo, hi, mfn);
  }
  return undefined;
}

/** A PteProblem as words: "L2 pfn 0x12 entry 7 maps mfn 0x3f0, ...". */
export function describePteProblem(p: PteProblem, level: number, where: string): string {
  const at = `${where} L${level} entry ${p.entry}`;
  const f = `0x${p.frame.toString(16)}`;
  switch (p.kind) {
    case 'foreign':
      return `${at} maps mfn ${f}, which is not one of the guest's pseudo-physical frames (a grant or foreign mapping, or shared_info, left mapped across suspend)`;
    case 'superpage':
      return `${at} is a superpage (frame ${f}), which cannot be migrated`;
    case 'xen-slot':
      return `${at} is in Xen's L4 slots ${L4_IMAGE_XEN_FIRST}..${L4_IMAGE_XEN_LAST} (frame ${f}), which a saved image leaves empty`;
    case 'pfn-out-of-range':
      return `${at} names pfn ${f}, not below max_pfn`;
    case 'unpopulated':
      return `${at} names pfn ${f}, which the image never gave data for`;
  }
}
