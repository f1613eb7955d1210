/*
 * What save and restore need from the machine: the toolstack handle (real
 * hypercalls as dom0), the read-only M2P (libxc maps it with xc_map_m2p),
 * the grant table's seeding API (xc_dom_gnttab_seed writes the table frame
 * directly) and the registered kernel images. A Machine is all of these;
 * the narrow types say which parts each verb touches.
 *
 * Also the few hypercall shapes the toolstack handle does not offer.
 */
import { __HYPERVISOR_mmu_update, MMU_MACHPHYS_UPDATE } from '../../public/xen.js';
import { PAGE_SIZE } from '../../public/types.js';
import type { Machine } from '../../xen/machine.js';
import type { Xc } from '../../xen/toolstack.js';

/** What saving a domain touches. */
export type SaveMachine = Pick<Machine, 'xc' | 'frames' | 'domain'>;
/** What restoring a domain touches. */
export type RestoreMachine = Pick<Machine, 'xc' | 'gnttab' | 'image'>;
/** What `xl p2m` touches. */
export type P2mMachine = Pick<Machine, 'xc' | 'frames'>;

/** Entries per P2M frame (and per frame-list page) of a 64-bit guest. */
export const FPP = PAGE_SIZE / 8;
/** Largest P2M a 3-level frame list can describe: 512^3 PFNs. */
export const P2M_TREE_MAX_PFNS = FPP * FPP * FPP;
/** A P2M entry with no frame behind it (INVALID_P2M_ENTRY, ~0UL), as the toolstack keeps it. */
export const INVALID_MFN = -1;

/** M2P entry of `mfn` (-1 when the frame has none or does not exist). */
export function m2pOf(m: Pick<Machine, 'frames'>, mfn: number): number {
  const v = m.frames.m2p[mfn];
  return v === undefined ? -1 : v;
}

/** A little-endian u64 of a page as a number, INVALID_MFN when it cannot be a frame number (2^40 or more). */
export function readFrameNumber(dv: DataView, off: number): number {
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x100) return INVALID_MFN;
  return hi * 2 ** 32 + dv.getUint32(off, true);
}

/** Store a frame number (or ~0 for INVALID_MFN) as a little-endian u64. */
export function writeFrameNumber(dv: DataView, off: number, v: number): void {
  if (v < 0) {
    dv.setUint32(off, 0xffff_ffff, true);
    dv.setUint32(off + 4, 0xffff_ffff, true);
    return;
  }
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / 2 ** 32), true);
}

const MACHPHYS_BATCH = 1024;

/**
 * MMU_MACHPHYS_UPDATE for frames of `domid`: M2P[mfns[i]] = pfns[i]. The
 * page-table owner is dom0 itself and the page owner is `domid` (as libxc
 * issues it), which Xc.mmuUpdate cannot express: it names `domid` as both.
 * 0, or the first failure's -errno.
 */
export function machphysUpdate(xc: Xc, domid: number, mfns: ArrayLike<number>, pfns: ArrayLike<number>): number {
  const mem = xc.h.arena;
  for (let at = 0; at < mfns.length; at += MACHPHYS_BATCH) {
    const n = Math.min(MACHPHYS_BATCH, mfns.length - at);
    mem.reset();
    const base = mem.alloc(16 * n);
    for (let i = 0; i < n; i++) {
      mem.setBigUint64(base + 16 * i, (BigInt(mfns[at + i]!) << 12n) | BigInt(MMU_MACHPHYS_UPDATE), true);
      mem.setBigUint64(base + 16 * i + 8, BigInt(pfns[at + i]!), true);
    }
    const rc = xc.h.call(__HYPERVISOR_mmu_update, base, n, 0, domid);
    if (rc < 0) return rc;
  }
  return 0;
}
