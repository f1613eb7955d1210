/*
 * The PV MMU of the emulated hypervisor: per-domain memory, per-vCPU MMU
 * state, and the entry points the core calls. The pieces:
 *
 *   mm.ts            MmEnv, DomainMemory (allocation, teardown), VcpuMmu,
 *                    base pointers (CR3)
 *   mm-validate.ts   page-table validation: Xen's reference/type discipline
 *   mm-vamem.ts      GuestVaMem (guest virtual memory through a software
 *                    TLB and page walks), HostArenaMem (dom0's arguments)
 *   mm-hypercalls.ts mmu_update, mmuext_op, update_va_mapping, and
 *                    mmHypercalls(): all of them by hypercall number
 *   mm-memop.ts      memory_op (reservations, populate_physmap)
 *   mm-logdirty.ts   log-dirty bitmaps and XEN_DOMCTL_shadow_op
 *   mm-foreign.ts    toolstack access to a domain's frames, page types
 *
 * Invariant the whole MMU keeps: a frame reachable through a domain's page
 * tables (or its CR3, or a pin) holds a reference, so it cannot be freed or
 * change type underneath a mapping; and a vCPU's TLB never outlives a
 * change of the tables it caches (every change drops what it could have
 * made stale from the owner's TLBs).
 *
 * MFN 0 is reserved for the hypervisor, as on real machines under Xen, so
 * that 0 can mean "no page table" in CR3 and in vCPU contexts.
 */
import { EBUSY, EINVAL } from '../public/errno.js';
import { MAX_FRAME } from '../public/types.js';
import { M2P_INVALID, OWNER_FREE, OWNER_XEN, OWNER_ZOMBIE, PageType } from './frametable.js';
import type { FrameTable } from './frametable.js';
import type { MachineMemory } from './physmem.js';
import { dbg } from './log.js';
import { DomainLogDirty, LogDirtyRegistry, disableLogDirty } from './mm-logdirty.js';
import { getPageAndType, isPtType, putPageAndType, type PtOwner, type RefEnv } from './mm-validate.js';

export interface MmEnv extends RefEnv {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  readonly logDirty: LogDirtyRegistry;
  /**
   * Grant hook (set by the grant table): may `l1Owner` map `mfn`, a frame
   * it does not own, through its L1 tables? Default: never.
   */
  isForeignMappable(l1Owner: number, mfn: number, writable: boolean): boolean;
}

/** Whoever owns domains tells the MMU how to find one by domid. */
export type DomainLookup = (domid: number) => DomainMemory | undefined;

/**
 * The MMU's view of a machine. Call once at boot, before any frame is
 * allocated (it reserves MFN 0). Assign `isForeignMappable` later if the
 * grant table comes up after the MMU.
 */
export function createMmEnv(memory: MachineMemory, frames: FrameTable): MmEnv {
  if (frames.owner[0] === OWNER_FREE) frames.claim(0, OWNER_XEN);
  return {
    memory,
    frames,
    logDirty: new LogDirtyRegistry(memory, frames),
    isForeignMappable: () => false,
  };
}

// ---------------------------------------------------------------------------
// Per-vCPU MMU state

const TLB_BITS = 10;
/** Entries of each vCPU's direct-mapped software TLB (4 MiB of reach). */
export const TLB_SIZE = 1 << TLB_BITS;

/**
 * One vCPU's MMU: its base pointers and its software TLB. The TLB is
 * parallel typed arrays indexed by the low bits of the virtual page number:
 * tag (the VPN, NaN when empty, so no number ever matches it), MFN, whether
 * writes are allowed, and where the frame sits in machine memory (chunk and
 * byte offset) so a hit reads without recomputing or rechecking that.
 */
export class VcpuMmu {
  /** MFN of the L4 in use (CR3), 0 when none. Holds a typed L4 reference. */
  cr3Mfn = 0;
  /** MMUEXT_NEW_USER_BASEPTR's L4, 0 when none. Kept, not walked: no user mode here. */
  userCr3Mfn = 0;
  /** MMUEXT_SET_LDT: recorded for the vCPU context; nothing here uses segments. */
  ldtBase = 0;
  ldtEnts = 0;
  readonly tlbTag = new Float64Array(TLB_SIZE).fill(NaN);
  readonly tlbMfn = new Int32Array(TLB_SIZE);
  readonly tlbWritable = new Uint8Array(TLB_SIZE);
  readonly tlbChunk = new Uint8Array(TLB_SIZE);
  readonly tlbBase = new Int32Array(TLB_SIZE);
  /** False when every entry is already empty, so a flush is free. */
  tlbUsed = false;
  /** TLB flushes done (tests and the bench look at it). */
  flushes = 0;

  constructor(readonly dm: DomainMemory, readonly id: number) {}

  flushTlb(): void {
    if (!this.tlbUsed) return;
    this.tlbTag.fill(NaN);
    this.tlbUsed = false;
    this.flushes++;
  }

  /** Forget every translation to `mfn` (an L1 entry that mapped it changed). */
  invalidateMfn(mfn: number): void {
    if (!this.tlbUsed) return;
    const tag = this.tlbTag;
    const mfns = this.tlbMfn;
    for (let i = 0; i < TLB_SIZE; i++) if (mfns[i] === mfn) tag[i] = NaN;
  }
}

/**
 * NEW_BASEPTR for a vCPU (also what setvcpucontext/restore and the builder
 * use for the initial CR3): take a typed L4 reference on the new table,
 * validating it if needed, then drop the old one. -EINVAL when `mfn` is not
 * a valid L4 of the vCPU's domain.
 */
export function setBaseptr(env: MmEnv, vm: VcpuMmu, mfn: number): number {
  if (mfn === vm.cr3Mfn && mfn !== 0) {
    vm.flushTlb();
    return 0;
  }
  const rc = getPageAndType(env, mfn, vm.dm.domid, PageType.L4);
  if (rc !== 0) {
    dbg.mm('d%d v%d: cannot install baseptr %s (%d)', vm.dm.domid, vm.id, mfn.toString(16), rc);
    return rc;
  }
  const old = vm.cr3Mfn;
  vm.cr3Mfn = mfn;
  vm.flushTlb();
  if (old !== 0) putPageAndType(env, old);
  return 0;
}

/** MMUEXT_NEW_USER_BASEPTR: 0 clears it. */
export function setUserBaseptr(env: MmEnv, vm: VcpuMmu, mfn: number): number {
  if (mfn === vm.userCr3Mfn) return 0;
  if (mfn !== 0) {
    const rc = getPageAndType(env, mfn, vm.dm.domid, PageType.L4);
    if (rc !== 0) return rc;
  }
  const old = vm.userCr3Mfn;
  vm.userCr3Mfn = mfn;
  if (old !== 0) putPageAndType(env, old);
  return 0;
}

/** Drop a vCPU's base pointers (vCPU reset, domain teardown). */
export function clearBaseptrs(env: MmEnv, vm: VcpuMmu): void {
  const { cr3Mfn, userCr3Mfn } = vm;
  vm.cr3Mfn = 0;
  vm.userCr3Mfn = 0;
  vm.flushTlb();
  if (cr3Mfn !== 0) putPageAndType(env, cr3Mfn);
  if (userCr3Mfn !== 0) putPageAndType(env, userCr3Mfn);
}

// ---------------------------------------------------------------------------
// Per-domain memory

export interface RelinquishResult {
  /** Frames returned to the free pool. */
  readonly released: number;
  /** Frames still mapped by other domains, freed at their last unmap. */
  readonly zombies: number;
}

export class DomainMemory implements PtOwner {
  /** XEN_DOMCTL_max_mem, in pages. */
  maxPages: number;
  /** Bumped on every page-table change (observability, tests). */
  ptGeneration = 0;
  logDirty: DomainLogDirty | null = null;
  /** Set by relinquish: the domain can no longer gain memory. */
  dying = false;
  private readonly owned = new Set<number>();
  private readonly vcpuMmus: VcpuMmu[] = [];

  constructor(readonly domid: number, maxPages: number) {
    this.maxPages = maxPages;
  }

  /** tot_pages: frames the domain owns. */
  get totPages(): number {
    return this.owned.size;
  }

  owns(mfn: number): boolean {
    return this.owned.has(mfn);
  }

  /** The domain's frames in allocation order. */
  ownedFrames(): number[] {
    return [...this.owned];
  }

  /** The MMU state of vCPU `id`, created on first use. */
  vcpu(id: number): VcpuMmu {
    let vm = this.vcpuMmus[id];
    if (vm === undefined) {
      if (!Number.isInteger(id) || id < 0 || id > 0xffff) throw new Error(`mm: vcpu id ${id}`);
      vm = new VcpuMmu(this, id);
      this.vcpuMmus[id] = vm;
    }
    return vm;
  }

  /** vCPUs that have MMU state, in id order. */
  get vcpus(): VcpuMmu[] {
    return this.vcpuMmus.filter((v) => v !== undefined);
  }

  /**
   * Page tables changed: every vCPU of the domain forgets what may be stale.
   * A changed L1 entry can only have been cached as a translation to the
   * frame it mapped, so only those go (a guest remapping pages one by one
   * keeps the rest of its TLB); any other change flushes everything. -1:
   * nothing was cached through the entry.
   */
  ptChanged(oldL1Target?: number): void {
    this.ptGeneration++;
    if (oldL1Target === -1) return;
    for (const vm of this.vcpuMmus) {
      if (vm === undefined) continue;
      if (oldL1Target === undefined) vm.flushTlb();
      else vm.invalidateMfn(oldL1Target);
    }
  }

  /**
   * Allocate `n` zeroed frames, all or nothing: undefined when it would
   * exceed maxPages, memory is short, or the domain is dying.
   */
  allocPages(env: MmEnv, n: number): number[] | undefined {
    if (this.dying || !Number.isInteger(n) || n < 0 || this.owned.size + n > this.maxPages) return undefined;
    const mfns = env.frames.allocMany(this.domid, n);
    if (mfns === undefined) return undefined;
    for (const m of mfns) this.owned.add(m);
    return mfns;
  }

  /**
   * populate_physmap for host callers (the builder, restore): one frame per
   * PFN, M2P set. All or nothing; undefined as allocPages, or for a PFN out
   * of range.
   */
  populate(env: MmEnv, pfns: ArrayLike<number>): number[] | undefined {
    for (let i = 0; i < pfns.length; i++) {
      const p = pfns[i]!;
      if (!Number.isInteger(p) || p < 0 || p > MAX_FRAME) return undefined;
    }
    const mfns = this.allocPages(env, pfns.length);
    if (mfns === undefined) return undefined;
    for (let i = 0; i < mfns.length; i++) this.setM2p(env, mfns[i]!, pfns[i]!);
    return mfns;
  }

  /** Set the M2P entry of an owned frame; a new PFN counts as dirty. */
  setM2p(env: MmEnv, mfn: number, pfn: number): void {
    env.frames.m2p[mfn] = pfn;
    if (pfn >= 0) this.logDirty?.mark(pfn);
  }

  /**
   * Give one frame back (decrease_reservation). Xen would let a frame that
   * is still mapped linger until its last reference goes; here such a frame
   * is refused (-EBUSY), so the guest must unmap it first, as balloon
   * drivers do anyway. -EINVAL for a frame the domain does not own.
   */
  removePage(env: MmEnv, mfn: number): number {
    const f = env.frames;
    if (!this.owned.has(mfn)) return -EINVAL;
    if (f.pinned[mfn] !== 0 || f.typeCount[mfn] !== 0 || f.refCount[mfn] !== 0 || f.grantMaps[mfn] !== 0) {
      dbg.mm('d%d: mfn %s still in use, not freed', this.domid, mfn.toString(16));
      return -EBUSY;
    }
    this.owned.delete(mfn);
    f.release(mfn);
    return 0;
  }

  /**
   * Domain destruction: drop every reference this domain's vCPUs, pins and
   * page tables hold, then free its frames. A frame another domain still
   * maps (a grant mapping, or a foreign L1 entry) becomes a zombie and is
   * freed by `releaseIfUnreferenced` at its last unmap. Idempotent.
   */
  relinquish(env: MmEnv): RelinquishResult {
    this.dying = true;
    disableLogDirty(env, this);
    for (const vm of this.vcpuMmus) if (vm !== undefined) clearBaseptrs(env, vm);
    const f = env.frames;
    // Unpinning cascades: each table devalidated drops what its entries
    // held, down to the data frames and any foreign frames mapped here.
    for (const mfn of this.owned) {
      if (f.pinned[mfn] !== 0) {
        f.pinned[mfn] = 0;
        putPageAndType(env, mfn);
      }
    }
    let released = 0;
    let zombies = 0;
    for (const mfn of this.owned) {
      // Typed page-table references can only come from this domain's own
      // roots, all gone now; one left over is a bookkeeping bug.
      if (f.typeCount[mfn] !== 0 && isPtType(f.type[mfn]!)) {
        throw new Error(`mm: d${this.domid} mfn ${mfn} still an L${f.type[mfn]} (${f.typeCount[mfn]} refs) after teardown`);
      }
      if (f.refCount[mfn] !== 0 || f.typeCount[mfn] !== 0 || f.grantMaps[mfn] !== 0) {
        f.owner[mfn] = OWNER_ZOMBIE;
        f.m2p[mfn] = M2P_INVALID;
        zombies++;
      } else {
        f.release(mfn);
        released++;
      }
    }
    this.owned.clear();
    this.ptChanged();
    dbg.mm('d%d: relinquished %d frames, %d still mapped elsewhere', this.domid, released, zombies);
    return { released, zombies };
  }
}

export { releaseIfUnreferenced, pinTable, unpinTable, getPageType, putPageType, getPage, putPage, getPageAndType, putPageAndType } from './mm-validate.js';
export { shadowOp, enableLogDirty, disableLogDirty, DomainLogDirty, LogDirtyRegistry } from './mm-logdirty.js';
export type { ShadowOpArgs, ShadowOpResult } from './mm-logdirty.js';
