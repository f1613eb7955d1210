/*
 * The frame table: per machine frame, who owns it and what it is used as;
 * the machine-to-phys table (M2P); and the frame allocator.
 *
 * Types follow Xen's PV memory model: a frame is at any moment "none",
 * one of the page-table levels L1..L4, "writable" (mapped writable
 * somewhere) or "segdesc". A frame's type can change only when its type
 * count is zero, which is what stops a guest from holding a writable
 * mapping of its own page tables. The MMU (mm.ts) takes and drops type
 * references; this file only stores them and hands frames out.
 *
 * The allocator never hands MFNs out in request order: the free stack is a
 * seeded permutation of all frames, so a guest's PFN->MFN map is never the
 * identity and restore always has to remap.
 */
import { MachineMemory } from './physmem.js';

export const PageType = {
  None: 0,
  L1: 1,
  L2: 2,
  L3: 3,
  L4: 4,
  Writable: 5,
  SegDesc: 6,
} as const;
export type PageType = (typeof PageType)[keyof typeof PageType];

/** Owner value of a free frame. */
export const OWNER_FREE = 0xffff;
/** Owner value of frames the hypervisor itself holds (DOMID_XEN). */
export const OWNER_XEN = 0x7ff2;
/**
 * Owner value of a frame whose domain was destroyed while another domain
 * still mapped it (a grant mapping): nobody owns it, nobody may newly map
 * it, and it returns to the free pool at its last unmap (mm.ts
 * `releaseIfUnreferenced`). Without this state the frame would either be
 * reused under a live mapping or leak.
 */
export const OWNER_ZOMBIE = 0xfffe;
/** M2P entry of a frame no PFN maps to (INVALID_M2P_ENTRY, ~0UL). */
export const M2P_INVALID = -1;

/** Deterministic PRNG (mulberry32) for the allocator's permutation. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FrameTable {
  readonly nrFrames: number;
  /** Owning domain (OWNER_FREE when free, OWNER_XEN for hypervisor frames). */
  readonly owner: Uint16Array;
  /** PageType of the frame. */
  readonly type: Uint8Array;
  /** References held on the current type (mappings/uses as that type). */
  readonly typeCount: Uint32Array;
  /** 1 when pinned as a page table (MMUEXT_PIN_Lx_TABLE). */
  readonly pinned: Uint8Array;
  /** General references: mappings of the frame from any page table. */
  readonly refCount: Uint32Array;
  /** Grant mappings of the frame currently held by other domains. */
  readonly grantMaps: Uint16Array;
  /** M2P: machine frame -> the owner's PFN (M2P_INVALID when none). */
  readonly m2p: Float64Array;

  private readonly free: Uint32Array;
  private nrFree: number;

  constructor(readonly memory: MachineMemory, seed = 1) {
    const n = memory.nrFrames;
    this.nrFrames = n;
    this.owner = new Uint16Array(n).fill(OWNER_FREE);
    this.type = new Uint8Array(n);
    this.typeCount = new Uint32Array(n);
    this.pinned = new Uint8Array(n);
    this.refCount = new Uint32Array(n);
    this.grantMaps = new Uint16Array(n);
    this.m2p = new Float64Array(n).fill(M2P_INVALID);
    // Free stack: a seeded Fisher-Yates permutation of every frame.
    this.free = new Uint32Array(n);
    for (let i = 0; i < n; i++) this.free[i] = i;
    const rnd = mulberry32(seed);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      const t = this.free[i]!;
      this.free[i] = this.free[j]!;
      this.free[j] = t;
    }
    this.nrFree = n;
  }

  get freeFrames(): number {
    return this.nrFree;
  }

  /** A frame with no type, references, pin, grant maps or M2P entry, owned by `owner`. */
  private reset(mfn: number, owner: number): void {
    this.owner[mfn] = owner;
    this.type[mfn] = PageType.None;
    this.typeCount[mfn] = 0;
    this.pinned[mfn] = 0;
    this.refCount[mfn] = 0;
    this.grantMaps[mfn] = 0;
    this.m2p[mfn] = M2P_INVALID;
  }

  /** Give a frame just taken from the pool to `owner`, scrubbed. */
  private hand(mfn: number, owner: number): void {
    this.reset(mfn, owner);
    this.memory.zeroFrame(mfn);
  }

  /**
   * Allocate one zeroed frame for `owner`, or undefined when memory is
   * exhausted. Frames are scrubbed on allocation so nothing leaks from the
   * previous owner.
   */
  alloc(owner: number): number | undefined {
    if (this.nrFree === 0) return undefined;
    const mfn = this.free[--this.nrFree]!;
    this.hand(mfn, owner);
    return mfn;
  }

  /** Allocate `n` frames, all or nothing. */
  allocMany(owner: number, n: number): number[] | undefined {
    if (n > this.nrFree) return undefined;
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.alloc(owner)!);
    return out;
  }

  /**
   * Take one particular free frame out of the pool for `owner` (the MMU
   * reserves MFN 0 for the hypervisor so that 0 can mean "no page table",
   * as it does in Xen's CR3 and vcpu context). False when it is not free.
   * Linear in the pool size: meant for boot, not for hot paths.
   */
  claim(mfn: number, owner: number): boolean {
    if (!this.memory.isValid(mfn) || this.owner[mfn] !== OWNER_FREE) return false;
    const at = this.free.subarray(0, this.nrFree).indexOf(mfn);
    if (at < 0) return false;
    this.free[at] = this.free[--this.nrFree]!;
    this.hand(mfn, owner);
    return true;
  }

  /** Return a frame to the free pool. The caller has dropped every reference. */
  release(mfn: number): void {
    if (this.owner[mfn] === OWNER_FREE) throw new Error(`double free of mfn ${mfn}`);
    this.reset(mfn, OWNER_FREE);
    this.free[this.nrFree++] = mfn;
  }

  /** Frames owned by `owner`, in MFN order. */
  framesOf(owner: number): number[] {
    const out: number[] = [];
    for (let m = 0; m < this.nrFrames; m++) if (this.owner[m] === owner) out.push(m);
    return out;
  }
}
