/*
 * Log-dirty mode: which of a domain's pages were written since the
 * toolstack last looked (XEN_DOMCTL_shadow_op), the engine of live
 * migration's pre-copy rounds.
 *
 * Machine memory has one write path, and while any domain is in log-dirty
 * mode that path reports every written frame to a hook installed here. The
 * hook finds the frame's owner and, through the M2P, the PFN, and sets the
 * PFN's bit in that domain's bitmap. Bitmaps are by PFN, as Xen's are,
 * because PFNs are what the migration stream and the receiving side know.
 * With no domain in log-dirty mode the hook is removed, so the write path
 * costs nothing extra.
 */
import {
  XEN_DOMCTL_SHADOW_OP_OFF, XEN_DOMCTL_SHADOW_OP_ENABLE, XEN_DOMCTL_SHADOW_OP_ENABLE_TEST,
  XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, XEN_DOMCTL_SHADOW_OP_CLEAN, XEN_DOMCTL_SHADOW_OP_PEEK,
  XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION, XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION, XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY,
} from '../public/domctl.js';
import { EFAULT, EINVAL, EOPNOTSUPP } from '../public/errno.js';
import type { FrameTable } from './frametable.js';
import type { DirtyHook, MachineMemory } from './physmem.js';
import { dbg } from './log.js';

/*
 * PFNs below this are kept in a flat bitmap (2 MiB covers a 64 GiB guest);
 * the M2P is guest-written, so a PFN beyond it is possible but odd, and goes
 * to a small set instead of growing the bitmap without bound.
 */
const BITMAP_PFN_LIMIT = 1 << 24;

/** One domain's dirty bitmap and Xen's two counters. */
export class DomainLogDirty {
  private bits = new Uint8Array(0);
  private readonly far = new Set<number>();
  /** Pages that became dirty since the last CLEAN (Xen's dirty_count). */
  dirtyCount = 0;
  /** Writes seen since the last CLEAN, dirty or not (our fault_count). */
  faultCount = 0;

  mark(pfn: number): void {
    this.faultCount++;
    if (pfn < this.bits.length * 8) {
      const byte = pfn >>> 3;
      const bit = 1 << (pfn & 7);
      const b = this.bits[byte]!;
      if ((b & bit) === 0) {
        this.bits[byte] = b | bit;
        this.dirtyCount++;
      }
      return;
    }
    if (pfn < BITMAP_PFN_LIMIT) {
      this.grow(pfn);
      this.mark(pfn);
      this.faultCount--;
      return;
    }
    if (!this.far.has(pfn)) {
      this.far.add(pfn);
      this.dirtyCount++;
    }
  }

  isDirty(pfn: number): boolean {
    if (pfn < this.bits.length * 8) return (this.bits[pfn >>> 3]! & (1 << (pfn & 7))) !== 0;
    return this.far.has(pfn);
  }

  /** Dirty PFNs in ascending order (host-side callers, tests). */
  dirtyPfns(): number[] {
    const out: number[] = [];
    for (let byte = 0; byte < this.bits.length; byte++) {
      const b = this.bits[byte]!;
      if (b === 0) continue;
      for (let k = 0; k < 8; k++) if ((b & (1 << k)) !== 0) out.push(byte * 8 + k);
    }
    return out.concat([...this.far].sort((a, b) => a - b));
  }

  /**
   * Copy the bits of PFNs 0..pages-1 into `out` (bit k of byte n is PFN
   * 8n+k, Xen's layout); with `clean`, clear exactly those bits and reset
   * the counters, as XEN_DOMCTL_SHADOW_OP_CLEAN does.
   */
  read(out: Uint8Array | null, pages: number, clean: boolean): void {
    const fullBytes = Math.floor(pages / 8);
    const tailBits = pages % 8;
    if (out !== null) {
      const n = Math.min(this.bits.length, Math.ceil(pages / 8));
      out.fill(0, 0, Math.ceil(pages / 8));
      out.set(this.bits.subarray(0, n));
      if (tailBits !== 0 && fullBytes < out.length) out[fullBytes] = out[fullBytes]! & ((1 << tailBits) - 1);
      for (const pfn of this.far) if (pfn < pages) out[pfn >>> 3] = out[pfn >>> 3]! | (1 << (pfn & 7));
    }
    if (!clean) return;
    this.bits.fill(0, 0, Math.min(fullBytes, this.bits.length));
    if (tailBits !== 0 && fullBytes < this.bits.length) this.bits[fullBytes] = this.bits[fullBytes]! & ~((1 << tailBits) - 1);
    for (const pfn of this.far) if (pfn < pages) this.far.delete(pfn);
    this.dirtyCount = 0;
    this.faultCount = 0;
  }

  private grow(pfn: number): void {
    const need = (pfn >>> 3) + 1;
    const size = Math.min(BITMAP_PFN_LIMIT / 8, Math.max(need, this.bits.length * 2, 4096));
    const next = new Uint8Array(size);
    next.set(this.bits);
    this.bits = next;
  }
}

/**
 * The machine-wide side: which domains are in log-dirty mode, and the
 * write-path hook that is installed exactly while at least one is.
 */
export class LogDirtyRegistry {
  /** Indexed by owner domid (frame table owner values are 16-bit). */
  private readonly byOwner: (DomainLogDirty | undefined)[] = [];
  private active = 0;
  private readonly hook: DirtyHook;

  constructor(private readonly memory: MachineMemory, frames: FrameTable) {
    const owner = frames.owner;
    const m2p = frames.m2p;
    this.hook = (mfn: number): void => {
      const ld = this.byOwner[owner[mfn]!];
      if (ld === undefined) return;
      // A frame the domain has not given a PFN yet cannot be named in
      // the stream; Xen skips it the same way.
      const pfn = m2p[mfn]!;
      if (pfn >= 0) ld.mark(pfn);
    };
  }

  get activeDomains(): number {
    return this.active;
  }

  attach(domid: number, ld: DomainLogDirty): void {
    if (this.byOwner[domid] === undefined) this.active++;
    this.byOwner[domid] = ld;
    this.memory.dirtyHook = this.hook;
  }

  detach(domid: number): void {
    if (this.byOwner[domid] === undefined) return;
    this.byOwner[domid] = undefined;
    if (--this.active === 0) this.memory.dirtyHook = null;
  }
}

/** The part of a domain log-dirty needs (DomainMemory is one). */
export interface LogDirtyDomain {
  readonly domid: number;
  logDirty: DomainLogDirty | null;
}

export interface ShadowOpArgs {
  /** XEN_DOMCTL_SHADOW_OP_* */
  readonly op: number;
  /** OP_ENABLE: XEN_DOMCTL_SHADOW_ENABLE_*; CLEAN/PEEK: XEN_DOMCTL_SHADOW_LOGDIRTY_* */
  readonly mode?: number;
  /** CLEAN/PEEK: buffer for one bit per PFN, or null to clean without reading. */
  readonly bitmap?: Uint8Array | null;
  /** CLEAN/PEEK: PFNs the bitmap covers. */
  readonly pages?: number;
}

export interface ShadowOpResult {
  /** 0 or a negative errno. */
  readonly rc: number;
  /** CLEAN/PEEK: PFNs reported (the domctl's `pages` OUT). */
  readonly pages: number;
  readonly faultCount: number;
  readonly dirtyCount: number;
  /** GET_ALLOCATION: shadow pool size in MiB (always 0: PV needs none). */
  readonly mb: number;
}

/**
 * XEN_DOMCTL_shadow_op on one domain, with the guest-memory marshalling
 * left to the domctl code. Only log-dirty exists: a PV domain here never
 * runs on shadow page tables, so the other enable modes are refused.
 */
export function shadowOp(env: { readonly logDirty: LogDirtyRegistry }, d: LogDirtyDomain, args: ShadowOpArgs): ShadowOpResult {
  const result = (rc: number, pages = 0, ld: DomainLogDirty | null = null): ShadowOpResult =>
    ({ rc, pages, faultCount: ld?.faultCount ?? 0, dirtyCount: ld?.dirtyCount ?? 0, mb: 0 });
  switch (args.op) {
    case XEN_DOMCTL_SHADOW_OP_OFF:
      disableLogDirty(env, d);
      return result(0);
    case XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY:
      return result(enableLogDirty(env, d));
    case XEN_DOMCTL_SHADOW_OP_ENABLE:
      if (((args.mode ?? 0) & XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY) === 0) return result(-EOPNOTSUPP);
      return result(enableLogDirty(env, d));
    case XEN_DOMCTL_SHADOW_OP_ENABLE_TEST:
      return result(-EOPNOTSUPP);
    case XEN_DOMCTL_SHADOW_OP_CLEAN:
    case XEN_DOMCTL_SHADOW_OP_PEEK: {
      const ld = d.logDirty;
      if (ld === null) return result(-EINVAL);
      const pages = args.pages ?? 0;
      const bitmap = args.bitmap ?? null;
      if (!Number.isInteger(pages) || pages < 0) return result(-EINVAL);
      if (bitmap !== null && bitmap.length * 8 < pages) return result(-EFAULT);
      // Counters are reported as they were before a CLEAN resets them.
      const before = result(0, pages, ld);
      ld.read(bitmap, pages, args.op === XEN_DOMCTL_SHADOW_OP_CLEAN);
      return before;
    }
    case XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION:
    case XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION:
      return result(0);
    default:
      return result(-EINVAL);
  }
}

/** Start tracking; -EINVAL when already on (as Xen). */
export function enableLogDirty(env: { readonly logDirty: LogDirtyRegistry }, d: LogDirtyDomain): number {
  if (d.logDirty !== null) return -EINVAL;
  d.logDirty = new DomainLogDirty();
  env.logDirty.attach(d.domid, d.logDirty);
  dbg.mm('d%d: log-dirty on', d.domid);
  return 0;
}

export function disableLogDirty(env: { readonly logDirty: LogDirtyRegistry }, d: LogDirtyDomain): void {
  if (d.logDirty === null) return;
  env.logDirty.detach(d.domid);
  d.logDirty = null;
  dbg.mm('d%d: log-dirty off', d.domid);
}
