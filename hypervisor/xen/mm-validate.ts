/*
 * Page-table validation: Xen's reference and type discipline for x86-64 PV
 * direct paging (4 levels, no superpages).
 *
 * Every frame has a general reference count (how many things point at it)
 * and a typed use: none, L1..L4 page table, or writable. The type can only
 * change while its count is zero, and the first typed reference to a page
 * table *validates* it: each present entry must itself be acceptable, and
 * takes its own reference on what it points to (L4 -> L3 -> L2 -> L1 as
 * type references, L1 -> data frames as general references, plus a
 * writable type reference when the entry is RW). Dropping the last typed
 * reference devalidates the table, releasing what its entries held.
 *
 * That one rule is what makes PV safe: a frame in use as a page table can
 * never also be mapped writable (its type would have to be both), so the
 * guest can only change its page tables through the checked hypercalls.
 *
 * PTEs are handled as two 32-bit halves (`lo`, `hi`) so that validating a
 * whole tree never allocates bigints.
 *
 * Linear ("recursive") page tables: as Xen, an L2/L3/L4 entry may point at
 * its own table read-only (the self-map NetBSD's pmap uses); it takes no
 * reference. Entries pointing at *another* table of the same level are
 * refused: Xen allows them only under nesting rules that are not worth
 * their risk here.
 */
import { _PAGE_PRESENT, _PAGE_RW, _PAGE_ACCESSED, _PAGE_DIRTY } from '../public/arch-x86_64.js';
import { EBUSY, EINVAL, EPERM } from '../public/errno.js';
import { PAGE_SIZE } from '../public/types.js';
import { PageType, OWNER_FREE, OWNER_ZOMBIE } from './frametable.js';
import type { FrameTable } from './frametable.js';
import type { MachineMemory } from './physmem.js';
import { dbg } from './log.js';

/** What validation needs from the machine; MmEnv (mm.ts) is one. */
export interface RefEnv {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  /**
   * May an L1 table owned by `l1Owner` map `mfn`, which it does not own?
   * The grant table answers yes for frames granted to `l1Owner` (and
   * writable only when the grant allows it).
   */
  isForeignMappable(l1Owner: number, mfn: number, writable: boolean): boolean;
}

/** The owner of a page table whose entries changed: its TLBs must forget. */
export interface PtOwner {
  readonly domid: number;
  /**
   * An entry changed. `oldL1Target` is the frame a changed L1 entry used to
   * map (only translations ending there can be stale); undefined means an
   * upper level changed and everything cached may be.
   */
  ptChanged(oldL1Target?: number): void;
}

export const PTES_PER_TABLE = PAGE_SIZE / 8;

/*
 * Flag bits a guest may not set (Xen's *_DISALLOW_MASK on x86-64):
 * PWT, PCD and PAT/PSE at every level (no cache games, no superpages),
 * GLOBAL above L1; and bits 52..62 of the high half. NX (bit 63), the
 * software-available bits 9..11, A, D, US are the guest's.
 */
const L1_DISALLOW = 0x098;
const UPPER_DISALLOW = 0x198;
const HI_DISALLOW = 0x7ff0_0000;
/** Bits whose change forces revalidation (frame, P, RW, PWT, PCD, PSE). */
const LO_SIGNIFICANT = 0xffff_f000 | 0x09b;
const HI_FRAME = 0x000f_ffff;

/** L4 slots 256..271 cover 0xffff800000000000..0xffff880000000000: Xen's. */
export const XEN_L4_FIRST = 256;
export const XEN_L4_LAST = 271;
export const isXenL4Slot = (i: number): boolean => i >= XEN_L4_FIRST && i <= XEN_L4_LAST;

export const pteMfn = (lo: number, hi: number): number => (hi & HI_FRAME) * 0x10_0000 + (lo >>> 12);
export const isPtType = (t: number): boolean => t >= PageType.L1 && t <= PageType.L4;

function markDirty(env: RefEnv, mfn: number): void {
  const h = env.memory.dirtyHook;
  if (h !== null) h(mfn);
}

// ---------------------------------------------------------------------------
// General references

/** `mfn` is a real frame owned by `owner` (as the frame table says). */
export function ownedBy(env: RefEnv, mfn: number, owner: number): boolean {
  return env.memory.isValid(mfn) && env.frames.owner[mfn] === owner;
}

/** Take a general reference on `mfn` if `owner` owns it. */
export function getPage(env: RefEnv, mfn: number, owner: number): boolean {
  if (!ownedBy(env, mfn, owner)) return false;
  env.frames.refCount[mfn]!++;
  return true;
}

/**
 * Drop a general reference. A frame orphaned by its dead owner goes back to
 * the pool when this was the last thing holding it.
 */
export function putPage(env: RefEnv, mfn: number): void {
  const f = env.frames;
  if (f.refCount[mfn] === 0) throw new Error(`mm: refcount underflow on mfn ${mfn}`);
  f.refCount[mfn]!--;
  if (f.owner[mfn] === OWNER_ZOMBIE) releaseIfUnreferenced(env, mfn);
}

/**
 * Free a frame whose domain died while others still mapped it, once the
 * last mapping (page-table reference or grant mapping) is gone. The grant
 * table calls this after decrementing `grantMaps`. True when freed.
 */
export function releaseIfUnreferenced(env: RefEnv, mfn: number): boolean {
  const f = env.frames;
  if (!env.memory.isValid(mfn) || f.owner[mfn] !== OWNER_ZOMBIE) return false;
  if (f.refCount[mfn] !== 0 || f.typeCount[mfn] !== 0 || f.grantMaps[mfn] !== 0) return false;
  f.release(mfn);
  return true;
}

// ---------------------------------------------------------------------------
// Type references

/**
 * Take a typed reference. On a frame's first typed use the type is set,
 * and a page table is validated (its entries take their references); a
 * frame already in use as another type is refused with -EINVAL.
 */
export function getPageType(env: RefEnv, mfn: number, type: PageType): number {
  const f = env.frames;
  const count = f.typeCount[mfn]!;
  if (count === 0) {
    f.type[mfn] = type;
    // Counted before validating, so an entry of this very table that asks
    // for another type of it (e.g. maps it writable) sees the conflict.
    f.typeCount[mfn] = 1;
    if (isPtType(type)) {
      const rc = validateTable(env, mfn, type);
      if (rc !== 0) {
        f.typeCount[mfn] = 0;
        f.type[mfn] = PageType.None;
        return rc;
      }
      // A page table's contents matter to a migration the moment it
      // becomes one (the stream tags it), so it counts as written.
      markDirty(env, mfn);
    }
    return 0;
  }
  if (f.type[mfn] !== type || count === 0xffff_ffff) return -EINVAL;
  f.typeCount[mfn] = count + 1;
  return 0;
}

/** Drop a typed reference; the last one devalidates a page table. */
export function putPageType(env: RefEnv, mfn: number): void {
  const f = env.frames;
  const count = f.typeCount[mfn]!;
  if (count === 0) throw new Error(`mm: type count underflow on mfn ${mfn}`);
  f.typeCount[mfn] = count - 1;
  if (count !== 1) return;
  const type = f.type[mfn]!;
  if (isPtType(type)) devalidateTable(env, mfn, type);
  f.type[mfn] = PageType.None;
}

/** General reference plus typed reference, both or neither. */
export function getPageAndType(env: RefEnv, mfn: number, owner: number, type: PageType): number {
  if (!getPage(env, mfn, owner)) return -EINVAL;
  const rc = getPageType(env, mfn, type);
  if (rc !== 0) putPage(env, mfn);
  return rc;
}

export function putPageAndType(env: RefEnv, mfn: number): void {
  putPageType(env, mfn);
  putPage(env, mfn);
}

// ---------------------------------------------------------------------------
// Entries

/**
 * References for one present L1 entry: the frame must belong to `pgOwner`
 * (normally the table's owner) or be mappable through a grant; RW takes
 * the writable type, which fails for any page table.
 * Errors as Xen's get_page_from_l1e: -EINVAL bad flags, -EPERM a frame
 * that is not RAM, -EBUSY a frame not ours or not mappable writable.
 */
export function getFromL1e(env: RefEnv, l1Owner: number, pgOwner: number, lo: number, hi: number): number {
  if ((lo & L1_DISALLOW) !== 0 || (hi & HI_DISALLOW) !== 0) {
    dbg.mm('d%d: bad L1 flags %s', l1Owner, (lo & 0xfff).toString(16));
    return -EINVAL;
  }
  const mfn = pteMfn(lo, hi);
  const f = env.frames;
  if (!env.memory.isValid(mfn)) {
    dbg.mm('d%d: attempt to map non-RAM mfn %s', l1Owner, mfn.toString(16));
    return -EPERM;
  }
  const writable = (lo & _PAGE_RW) !== 0;
  const owner = f.owner[mfn]!;
  const foreignOk = owner !== OWNER_FREE && owner !== OWNER_ZOMBIE && env.isForeignMappable(l1Owner, mfn, writable);
  if (owner !== pgOwner && !foreignOk) {
    dbg.mm('d%d: mfn %s belongs to %d, not %d', l1Owner, mfn.toString(16), owner, pgOwner);
    return -EBUSY;
  }
  f.refCount[mfn]!++;
  if (writable && getPageType(env, mfn, PageType.Writable) !== 0) {
    dbg.mm('d%d: mfn %s cannot be mapped writable (type %d)', l1Owner, mfn.toString(16), f.type[mfn]);
    putPage(env, mfn);
    return -EBUSY;
  }
  return 0;
}

export function putFromL1e(env: RefEnv, lo: number, hi: number): void {
  if ((lo & _PAGE_PRESENT) === 0) return;
  const mfn = pteMfn(lo, hi);
  if ((lo & _PAGE_RW) !== 0) putPageType(env, mfn);
  putPage(env, mfn);
}

/**
 * References for one present entry of an L2/L3/L4 table `tableMfn`: the
 * next-level table, owned by the same domain, typed one level down (which
 * validates it on first use). A read-only entry pointing back at its own
 * table is the recursive self-map and takes nothing.
 */
export function getFromUpper(env: RefEnv, level: number, tableMfn: number, owner: number, lo: number, hi: number): number {
  if ((lo & UPPER_DISALLOW) !== 0 || (hi & HI_DISALLOW) !== 0) {
    dbg.mm('d%d: bad L%d flags %s', owner, level, (lo & 0xfff).toString(16));
    return -EINVAL;
  }
  const mfn = pteMfn(lo, hi);
  if (mfn === tableMfn) return (lo & _PAGE_RW) !== 0 ? -EINVAL : 0;
  return getPageAndType(env, mfn, owner, (level - 1) as PageType);
}

export function putFromUpper(env: RefEnv, tableMfn: number, lo: number, hi: number): void {
  if ((lo & _PAGE_PRESENT) === 0) return;
  const mfn = pteMfn(lo, hi);
  if (mfn !== tableMfn) putPageAndType(env, mfn);
}

// ---------------------------------------------------------------------------
// Whole tables

/** Validate every guest entry of a table; all or nothing. */
function validateTable(env: RefEnv, mfn: number, level: number): number {
  const m = env.memory;
  const owner = env.frames.owner[mfn]!;
  for (let i = 0; i < PTES_PER_TABLE; i++) {
    if (level === 4 && isXenL4Slot(i)) continue;
    const lo = m.readU64Lo(mfn, i * 8);
    if ((lo & _PAGE_PRESENT) === 0) continue;
    const hi = m.lastHigh;
    const rc = level === 1 ? getFromL1e(env, owner, owner, lo, hi) : getFromUpper(env, level, mfn, owner, lo, hi);
    if (rc !== 0) {
      dbg.mm('d%d: mfn %s is not a valid L%d: slot %d refused (%d)', owner, mfn.toString(16), level, i, rc);
      for (let j = i - 1; j >= 0; j--) putEntryAt(env, mfn, level, j);
      return rc;
    }
  }
  if (level === 4) clearXenSlots(env, mfn);
  return 0;
}

function devalidateTable(env: RefEnv, mfn: number, level: number): void {
  for (let i = PTES_PER_TABLE - 1; i >= 0; i--) putEntryAt(env, mfn, level, i);
}

function putEntryAt(env: RefEnv, mfn: number, level: number, i: number): void {
  if (level === 4 && isXenL4Slot(i)) return;
  const lo = env.memory.readU64Lo(mfn, i * 8);
  if ((lo & _PAGE_PRESENT) === 0) return;
  const hi = env.memory.lastHigh;
  if (level === 1) putFromL1e(env, lo, hi);
  else putFromUpper(env, mfn, lo, hi);
}

/*
 * Xen fills the hypervisor slots of every validated L4 with its own
 * entries, overwriting whatever the guest left there. Ours has nothing to
 * put there (the M2P is served by the MMU directly), so it clears them:
 * a saved L4 then never carries a stale "MFN" in those slots.
 */
function clearXenSlots(env: RefEnv, mfn: number): void {
  const m = env.memory;
  for (let i = XEN_L4_FIRST; i <= XEN_L4_LAST; i++) {
    if (m.readU64Lo(mfn, i * 8) !== 0 || m.lastHigh !== 0) m.writeU64Halves(mfn, i * 8, 0, 0);
  }
}

// ---------------------------------------------------------------------------
// Changing one entry

/**
 * Checked `table[index] = (lo, hi)` in a validated table of `level`:
 * references for the new entry are taken before the old one's are dropped,
 * so re-pointing an entry at what it already maps never frees anything.
 * `pgOwner` is whose frames an L1 entry may map (the table owner, or a
 * target domain for a privileged caller). Xen's mod_lN_entry.
 */
export function modEntry(
  env: RefEnv, pt: PtOwner, pgOwner: number, tableMfn: number, level: number,
  index: number, lo: number, hi: number, preserveAd: boolean,
): number {
  if (level === 4 && isXenL4Slot(index)) {
    dbg.mm('d%d: L4 update in Xen-private slot %d', pt.domid, index);
    return -EINVAL;
  }
  const m = env.memory;
  const off = index * 8;
  const oLo = m.readU64Lo(tableMfn, off);
  const oHi = m.lastHigh;
  lo >>>= 0;
  hi >>>= 0;
  if ((lo & _PAGE_PRESENT) !== 0) {
    const bad = level === 1 ? L1_DISALLOW : UPPER_DISALLOW;
    if ((lo & bad) !== 0 || (hi & HI_DISALLOW) !== 0) return -EINVAL;
    if (preserveAd) lo = (lo | (oLo & (_PAGE_ACCESSED | _PAGE_DIRTY))) >>> 0;
    const same = ((oLo ^ lo) & LO_SIGNIFICANT) === 0 && ((oHi ^ hi) & HI_FRAME) === 0;
    if (same) {
      // Same frame, same P/RW: the references the old entry holds still
      // fit the new one; only harmless bits (A, D, US, NX, AVL) change.
      m.writeU64Halves(tableMfn, off, lo, hi);
      pt.ptChanged(level === 1 ? pteMfn(oLo, oHi) : undefined);
      return 0;
    }
    const rc = level === 1
      ? getFromL1e(env, pt.domid, pgOwner, lo, hi)
      : getFromUpper(env, level, tableMfn, pt.domid, lo, hi);
    if (rc !== 0) return rc;
  }
  m.writeU64Halves(tableMfn, off, lo, hi);
  if (level === 1) putFromL1e(env, oLo, oHi);
  else putFromUpper(env, tableMfn, oLo, oHi);
  // A translation is only cached if its L1 entry was present.
  if (level !== 1) pt.ptChanged();
  else if ((oLo & _PAGE_PRESENT) !== 0) pt.ptChanged(pteMfn(oLo, oHi));
  else pt.ptChanged(-1);
  return 0;
}

// ---------------------------------------------------------------------------
// Pinning

/**
 * MMUEXT_PIN_Lx_TABLE: hold a general and a typed reference on a table so
 * it stays validated with nothing pointing at it (a process's page tables
 * while it is not running). -EINVAL for a frame the domain does not own,
 * one that does not validate as that level, or one already pinned.
 */
export function pinTable(env: RefEnv, owner: number, mfn: number, level: number): number {
  const rc = getPageAndType(env, mfn, owner, level as PageType);
  if (rc !== 0) return rc;
  const f = env.frames;
  if (f.pinned[mfn] !== 0) {
    putPageAndType(env, mfn);
    dbg.mm('d%d: mfn %s already pinned', owner, mfn.toString(16));
    return -EINVAL;
  }
  f.pinned[mfn] = 1;
  markDirty(env, mfn);
  return 0;
}

/** MMUEXT_UNPIN_TABLE: drop the pin's references (-EINVAL when not pinned). */
export function unpinTable(env: RefEnv, owner: number, mfn: number): number {
  const f = env.frames;
  if (!ownedBy(env, mfn, owner)) return -EINVAL;
  if (f.pinned[mfn] === 0) {
    dbg.mm('d%d: mfn %s not pinned', owner, mfn.toString(16));
    return -EINVAL;
  }
  f.pinned[mfn] = 0;
  putPageAndType(env, mfn);
  markDirty(env, mfn);
  return 0;
}
