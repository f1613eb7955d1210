/*
 * Grant tables (v1) of the emulated hypervisor.
 *
 * Every domain gets a table of hypervisor-owned frames (OWNER_XEN in the
 * frame table) that it maps with its MMU after GNTTABOP_setup_table told it
 * their MFNs; the table grows on request up to a per-domain maximum and
 * never shrinks. Another domain, dom0's backends included, maps a grant
 * with map_grant_ref: the entry must permit access to the mapper, a
 * writable map needs a writable grant, and while the grant is in use Xen
 * keeps GTF_reading / GTF_writing set in the entry so the granter can see
 * it cannot take the page back yet. The granted frame's `grantMaps` count
 * in the frame table tells the core not to free it while mapped, even after
 * its owner died; the last unmap then hands it to env.releaseFrameIfUnused.
 *
 * Every failure is a GNTST_* status; nothing here throws on guest input.
 * The copy operation is in gnttab-copy.ts, the hypercall decoding in
 * gnttab-hcall.ts.
 */
import createDebug from 'debug';
import type { FrameTable } from './frametable.js';
import { OWNER_XEN, OWNER_ZOMBIE, PageType } from './frametable.js';
import { PAGE_SHIFT, type Mfn } from '../public/types.js';
import { DOMID_SELF } from '../public/xen.js';
import {
  GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_okay, GNTST_general_error, GNTST_bad_domain,
  GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_dev_addr, GNTST_permission_denied, GNTST_no_space,
} from '../public/grant_table.js';
import { EEXIST, EINVAL, ENOMEM, EPERM, ESRCH } from '../public/errno.js';
import {
  GrantTable, GNTPIN_MAX, checkGrantedFrame, isPinned, isWritePinned, type ActiveEntry, type GrantEntry, type MapTrackEntry,
} from './gnttab-table.js';
import { grantCopy, type GrantCopyOp } from './gnttab-copy.js';

export type { GrantEntry } from './gnttab-table.js';
export type { GrantCopyOp, GrantCopyPtr } from './gnttab-copy.js';

const log = createDebug('xen:gnttab');

/** What the core (and the MMU behind it) provides to the grant code. */
export interface GnttabEnv {
  /**
   * A frame of a destroyed domain lost its last grant mapping, or a grant
   * table frame was still referenced when its table was destroyed: free it
   * once nothing else holds it.
   */
  releaseFrameIfUnused(mfn: number): void;
  /**
   * Take a writable-type reference on a granted frame before a writable
   * grant map or grant copy into it (Xen's get_page_type(PGT_writable_page)).
   * False when the frame is in use as a page table or descriptor page.
   * Without this hook only the current type is checked.
   */
  getPageWritable?(mfn: number, owner: number): boolean;
  putPageWritable?(mfn: number): void;
  /** GNTMAP_host_map: map `mfn` at `hostAddr` in the mapper's page tables. A GNTST_* status. */
  createHostMapping?(domid: number, vcpu: number, hostAddr: bigint, mfn: number, flags: number): number;
  /** Undo createHostMapping. A GNTST_* status. */
  destroyHostMapping?(domid: number, vcpu: number, hostAddr: bigint, mfn: number, flags: number): number;
}

/** Who makes a call: the fields of CallCtx the grant code needs. */
export interface GnttabCaller {
  readonly domid: number;
  readonly vcpuId: number;
  readonly privileged: boolean;
}

export interface GnttabTableOptions {
  /** Frames the table starts with (Xen: 1). */
  initialFrames?: number;
  /** The most setup_table will give (Xen's max_grant_frames, default 32). */
  maxFrames?: number;
  /** Grant handles the domain may hold (Xen: 1024 maptrack frames of 512). */
  maxMaptrack?: number;
}

export const DEFAULT_MAX_GRANT_FRAMES = 32;
/** The grant table version every table has (v2 is not emulated). */
export const GRANT_TABLE_V1 = 1;
export const DEFAULT_MAX_MAPTRACK = 1024 * 512;

export interface MapGrantOp {
  /** The granting domain (DOMID_SELF is not accepted here, as Xen). */
  dom: number;
  ref: number;
  /** GNTMAP_*: device_map and/or host_map, readonly, ... */
  flags: number;
  /** host_map: where in the mapper's address space. */
  hostAddr?: bigint;
}

export interface MapGrantResult {
  status: number;
  /** Valid when status is GNTST_okay. */
  handle: number;
  /** Machine address of the frame (mfn << 12), as Xen reports it. */
  devBusAddr: bigint;
  mfn: Mfn;
}

export interface UnmapGrantOp {
  handle: number;
  /** Non-zero: remove the host mapping at this address. */
  hostAddr?: bigint;
  /** Non-zero: remove the device mapping; must match the frame. */
  devBusAddr?: bigint;
}

export interface SetupTableResult {
  status: number;
  frames: Mfn[];
}

export interface QuerySizeResult {
  status: number;
  nrFrames: number;
  maxNrFrames: number;
}

/** One grant in use, for the toolstack and tests. */
export interface ActiveGrantInfo {
  ref: number;
  mapper: number;
  mfn: Mfn;
  hostRead: number;
  hostWrite: number;
  devRead: number;
  devWrite: number;
}

export class GrantTables {
  private readonly tables = new Map<number, GrantTable>();
  /** Table frame -> the domain whose table it is (for the MMU's ownership checks). */
  private readonly tableFrameOwners = new Map<number, number>();

  constructor(readonly frames: FrameTable, private readonly env: GnttabEnv) {}

  // --- domain lifecycle ----------------------------------------------------

  /** Create a domain's table (at domain creation): 0, -EEXIST, -EINVAL or -ENOMEM. */
  createTable(domid: number, opts: GnttabTableOptions = {}): number {
    if (this.tables.has(domid)) return -EEXIST;
    const initial = opts.initialFrames ?? 1;
    const max = opts.maxFrames ?? DEFAULT_MAX_GRANT_FRAMES;
    const maxMaptrack = opts.maxMaptrack ?? DEFAULT_MAX_MAPTRACK;
    if (!(Number.isInteger(initial) && Number.isInteger(max) && initial >= 1 && max >= initial)) return -EINVAL;
    if (!(Number.isInteger(maxMaptrack) && maxMaptrack >= 0)) return -EINVAL;
    const t = new GrantTable(domid, this.frames.memory, max, maxMaptrack);
    if (!this.grow(t, initial)) return -ENOMEM;
    this.tables.set(domid, t);
    return 0;
  }

  hasTable(domid: number): boolean {
    return this.tables.has(domid);
  }

  /**
   * Domain destruction. First every mapping the domain holds is released
   * (its address space is going away, so host mappings are not torn down
   * one by one). Then its own table is retired: its frames are freed, and
   * grants of it that others still map stay valid until they unmap; the
   * granted frames keep grantMaps > 0 until then. Call after the MMU has
   * dropped the domain's mappings of its table frames.
   */
  destroy(domid: number): void {
    const t = this.tables.get(domid);
    if (t === undefined) return;
    for (let h = 0; h < t.maptrack.length; h++) {
      const m = t.maptrack[h];
      if (m === undefined) continue;
      const ro = (m.flags & GNTMAP_readonly) !== 0;
      this.unpin(m, (m.flags & GNTMAP_device_map) !== 0, (m.flags & GNTMAP_host_map) !== 0);
      m.granter.reduceStatus(m.ref, m.granter.act(m.ref), ro);
      m.granter.dropIfIdle(m.ref);
      this.dropGrantMap(m);
      t.putHandle(h);
    }
    t.dead = true;
    this.tables.delete(domid);
    for (const mfn of t.frames) {
      this.tableFrameOwners.delete(mfn);
      if (this.frames.refCount[mfn] === 0 && this.frames.typeCount[mfn] === 0) this.frames.release(mfn);
      else {
        // Still in someone's page tables: orphaned, freed at its last unmap.
        this.frames.owner[mfn] = OWNER_ZOMBIE;
        this.env.releaseFrameIfUnused(mfn);
      }
    }
    log.enabled && log('d%d table destroyed, %d grants still mapped by others', domid, t.active.size);
  }

  // --- GNTTABOP_setup_table / query_size ----------------------------------

  /**
   * GNTTABOP_setup_table: grow the table of `dom` (self, or any domain if
   * privileged) to at least `nrFrames` and return the MFNs of its first
   * `nrFrames` frames. Past the domain's maximum: GNTST_general_error.
   */
  setupTable(caller: GnttabCaller, dom: number, nrFrames: number): SetupTableResult {
    const t = this.lookupAny(caller, dom);
    if (t === undefined) return { status: GNTST_bad_domain, frames: [] };
    if (!this.mayTarget(caller, t)) return { status: GNTST_permission_denied, frames: [] };
    if (!(Number.isInteger(nrFrames) && nrFrames >= 0 && nrFrames <= t.maxFrames)) {
      return { status: GNTST_general_error, frames: [] };
    }
    if (nrFrames > t.frames.length && !this.grow(t, nrFrames)) return { status: GNTST_general_error, frames: [] };
    return { status: GNTST_okay, frames: t.frames.slice(0, nrFrames) as Mfn[] };
  }

  /** GNTTABOP_query_size. */
  querySize(caller: GnttabCaller, dom: number): QuerySizeResult {
    const t = this.lookupAny(caller, dom);
    if (t === undefined) return { status: GNTST_bad_domain, nrFrames: 0, maxNrFrames: 0 };
    if (!this.mayTarget(caller, t)) return { status: GNTST_permission_denied, nrFrames: 0, maxNrFrames: 0 };
    return { status: GNTST_okay, nrFrames: t.frames.length, maxNrFrames: t.maxFrames };
  }

  /** GNTTABOP_get_version: always 1, or -ESRCH / -EPERM. */
  getVersion(caller: GnttabCaller, dom: number): number {
    const t = this.lookupAny(caller, dom);
    if (t === undefined) return -ESRCH;
    if (!this.mayTarget(caller, t)) return -EPERM;
    return GRANT_TABLE_V1;
  }

  // --- GNTTABOP_map_grant_ref / unmap_grant_ref ------------------------------

  /** GNTTABOP_map_grant_ref, one op. */
  mapGrantRef(caller: GnttabCaller, op: MapGrantOp): MapGrantResult {
    const fail = (status: number): MapGrantResult => ({ status, handle: 0, devBusAddr: 0n, mfn: 0 as Mfn });
    const dev = (op.flags & GNTMAP_device_map) !== 0;
    const host = (op.flags & GNTMAP_host_map) !== 0;
    const ro = (op.flags & GNTMAP_readonly) !== 0;
    if (!dev && !host) return fail(GNTST_bad_gntref);
    const rt = this.tables.get(op.dom);
    if (rt === undefined) return fail(GNTST_bad_domain);
    const lt = this.tables.get(caller.domid);
    if (lt === undefined) return fail(GNTST_general_error);
    const handle = lt.getHandle();
    if (handle === undefined) return fail(GNTST_no_space);
    const failHandle = (status: number): MapGrantResult => {
      lt.putHandle(handle);
      return fail(status);
    };
    if (!rt.validRef(op.ref)) return failHandle(GNTST_bad_gntref);
    const ref = op.ref;
    const act = rt.act(ref);
    const wasPinned = isPinned(act);
    if (wasPinned && (act.domid !== caller.domid || this.wouldOverflow(act, dev, host, ro))) {
      return failHandle(GNTST_general_error);
    }
    if (!wasPinned || (!ro && !isWritePinned(act))) {
      const st = rt.setStatus(ref, act, ro, caller.domid);
      if (st !== GNTST_okay) {
        rt.dropIfIdle(ref);
        return failHandle(st);
      }
      if (!wasPinned) {
        const frame = rt.entryFrame(ref);
        const fst = checkGrantedFrame(this.frames, frame, rt.domid);
        if (fst !== GNTST_okay) {
          rt.reduceStatus(ref, act, ro);
          rt.dropIfIdle(ref);
          return failHandle(fst);
        }
        act.domid = caller.domid;
        act.mfn = frame;
      }
    }
    this.pin(act, dev, host, ro, +1);
    const mfn = act.mfn;

    // References on the frame itself: it must still be the granter's, and a
    // writable use must be allowed by its type.
    const undo = (status: number, writableTaken: number): MapGrantResult => {
      for (let i = 0; i < writableTaken; i++) this.putWritable(mfn);
      this.pin(act, dev, host, ro, -1);
      rt.reduceStatus(ref, act, ro);
      rt.dropIfIdle(ref);
      return failHandle(status);
    };
    if (this.frames.owner[mfn] !== rt.domid) return undo(GNTST_general_error, 0);
    if (this.frames.grantMaps[mfn]! >= 0xffff) return undo(GNTST_general_error, 0);
    let writable = 0;
    const wantWritable = ro ? 0 : (dev ? 1 : 0) + (host ? 1 : 0);
    for (; writable < wantWritable; writable++) {
      if (!this.getWritable(mfn, rt.domid)) return undo(GNTST_general_error, writable);
    }
    const hostAddr = op.hostAddr ?? 0n;
    if (host) {
      // Counted first: the MMU asks isForeignMappable while it installs the entry.
      lt.addHostMap(mfn, ro);
      const create = this.env.createHostMapping;
      const st = create === undefined ? GNTST_general_error : create(caller.domid, caller.vcpuId, hostAddr, mfn, op.flags);
      if (st !== GNTST_okay) {
        lt.removeHostMap(mfn, ro);
        return undo(st, writable);
      }
    }

    lt.setHandle(handle, { granter: rt, ref, flags: op.flags, mfn, hostAddr });
    this.frames.grantMaps[mfn]!++;
    log.enabled && log('d%d maps d%d ref %d (mfn %d, flags %s) -> handle %d', caller.domid, rt.domid, ref, mfn, op.flags.toString(16), handle);
    return { status: GNTST_okay, handle, devBusAddr: BigInt(mfn) << BigInt(PAGE_SHIFT), mfn: mfn as Mfn };
  }

  /**
   * GNTTABOP_unmap_grant_ref, one op. As on Xen, only the parts named are
   * removed: a non-zero hostAddr removes the host mapping, a non-zero
   * devBusAddr the device mapping; the handle is freed when neither is left.
   */
  unmapGrantRef(caller: GnttabCaller, op: UnmapGrantOp): number {
    const lt = this.tables.get(caller.domid);
    const m = lt?.mapping(op.handle);
    if (lt === undefined || m === undefined) return GNTST_bad_handle;
    const hostAddr = op.hostAddr ?? 0n;
    const devBusAddr = op.devBusAddr ?? 0n;
    if (devBusAddr !== 0n && (m.flags & GNTMAP_device_map) !== 0 && devBusAddr !== BigInt(m.mfn) << BigInt(PAGE_SHIFT)) {
      return GNTST_bad_dev_addr;
    }
    let unmapHost = false;
    let unmapDev = false;
    if (hostAddr !== 0n && (m.flags & GNTMAP_host_map) !== 0) {
      const destroy = this.env.destroyHostMapping;
      const st = destroy === undefined ? GNTST_okay : destroy(caller.domid, caller.vcpuId, hostAddr, m.mfn, m.flags);
      if (st < 0) return st;
      m.flags &= ~GNTMAP_host_map;
      lt.removeHostMap(m.mfn, (m.flags & GNTMAP_readonly) !== 0);
      unmapHost = true;
    }
    if (devBusAddr !== 0n && (m.flags & GNTMAP_device_map) !== 0) {
      m.flags &= ~GNTMAP_device_map;
      unmapDev = true;
    }
    const ro = (m.flags & GNTMAP_readonly) !== 0;
    if (unmapHost || unmapDev) {
      this.unpin(m, unmapDev, unmapHost);
      m.granter.reduceStatus(m.ref, m.granter.act(m.ref), ro);
      m.granter.dropIfIdle(m.ref);
      // A writable mapping going away may have dirtied the page.
      if (!ro) this.frames.memory.dirtyHook?.(m.mfn);
    }
    if ((m.flags & (GNTMAP_host_map | GNTMAP_device_map)) === 0) {
      this.dropGrantMap(m);
      lt.putHandle(op.handle);
      log.enabled && log('d%d unmapped handle %d (d%d ref %d)', caller.domid, op.handle, m.granter.domid, m.ref);
    }
    return GNTST_okay;
  }

  /** Host convenience: remove every part of a mapping by handle. */
  unmapHandle(caller: GnttabCaller, handle: number): number {
    const m = this.tables.get(caller.domid)?.mapping(handle);
    if (m === undefined) return GNTST_bad_handle;
    return this.unmapGrantRef(caller, {
      handle,
      hostAddr: (m.flags & GNTMAP_host_map) !== 0 ? m.hostAddr : 0n,
      devBusAddr: (m.flags & GNTMAP_device_map) !== 0 ? BigInt(m.mfn) << BigInt(PAGE_SHIFT) : 0n,
    });
  }

  /** GNTTABOP_copy, one op: a GNTST_* status. */
  copy(caller: GnttabCaller, op: GrantCopyOp): number {
    return grantCopy(
      {
        frames: this.frames,
        table: (domid) => this.tables.get(domid === DOMID_SELF ? caller.domid : domid),
        getWritable: (mfn, owner) => this.getWritable(mfn, owner),
        putWritable: (mfn) => this.putWritable(mfn),
      },
      caller,
      op,
    );
  }

  // --- host API for the builder and the toolstack ---------------------------

  /**
   * Write a grant entry, as the builder does for entries 0 (console) and 1
   * (xenstore) and restore does again (xc_dom_gnttab_seed). 0, -ESRCH, -EINVAL.
   */
  seedEntry(domid: number, ref: number, entry: GrantEntry): number {
    const t = this.tables.get(domid);
    if (t === undefined) return -ESRCH;
    if (!t.validRef(ref)) return -EINVAL;
    t.writeEntry(ref, entry);
    return 0;
  }

  readEntry(domid: number, ref: number): GrantEntry | undefined {
    const t = this.tables.get(domid);
    return t !== undefined && t.validRef(ref) ? t.readEntry(ref) : undefined;
  }

  /** MFNs of a domain's table frames. */
  tableFrames(domid: number): readonly Mfn[] {
    return (this.tables.get(domid)?.frames ?? []) as readonly number[] as readonly Mfn[];
  }

  /** The domain whose grant table frame `mfn` is (it may map it), if any. */
  tableFrameOwner(mfn: number): number | undefined {
    return this.tableFrameOwners.get(mfn);
  }

  /**
   * The MMU's question (MmEnv.isForeignMappable): may an L1 table of
   * `l1Owner` map `mfn`, a frame it does not own? Yes for its own grant
   * table frames, and for frames it holds a GNTMAP_host_map mapping of
   * (writable only if one such mapping is writable).
   */
  isForeignMappable(l1Owner: number, mfn: number, writable: boolean): boolean {
    if (this.tableFrameOwners.get(mfn) === l1Owner) return true;
    return this.tables.get(l1Owner)?.hostMappable(mfn, writable) ?? false;
  }

  /** A mapping held by `domid`, for host backends that want the frame of a handle. */
  mapping(domid: number, handle: number): { dom: number; ref: number; flags: number; mfn: Mfn } | undefined {
    const m = this.tables.get(domid)?.mapping(handle);
    return m === undefined ? undefined : { dom: m.granter.domid, ref: m.ref, flags: m.flags, mfn: m.mfn as Mfn };
  }

  /** How many grant mappings `domid` holds. */
  mapsHeldBy(domid: number): number {
    return this.tables.get(domid)?.mapsHeld ?? 0;
  }

  /** The grants of `domid` in use by other domains (maps or copies in flight). */
  activeGrants(domid: number): ActiveGrantInfo[] {
    const t = this.tables.get(domid);
    if (t === undefined) return [];
    return [...t.active].map(([ref, a]) => ({
      ref, mapper: a.domid, mfn: a.mfn as Mfn,
      hostRead: a.hostRead, hostWrite: a.hostWrite, devRead: a.devRead, devWrite: a.devWrite,
    }));
  }

  // --- internals --------------------------------------------------------------

  private lookupAny(caller: GnttabCaller, dom: number): GrantTable | undefined {
    return this.tables.get(dom === DOMID_SELF ? caller.domid : dom);
  }

  private mayTarget(caller: GnttabCaller, t: GrantTable): boolean {
    return caller.domid === t.domid || caller.privileged;
  }

  private grow(t: GrantTable, nrFrames: number): boolean {
    const got = this.frames.allocMany(OWNER_XEN, nrFrames - t.frames.length);
    if (got === undefined) return false;
    for (const mfn of got) {
      t.frames.push(mfn);
      this.tableFrameOwners.set(mfn, t.domid);
    }
    log.enabled && log('d%d table now %d frames', t.domid, t.frames.length);
    return true;
  }

  private wouldOverflow(a: ActiveEntry, dev: boolean, host: boolean, ro: boolean): boolean {
    if (dev && (ro ? a.devRead : a.devWrite) >= GNTPIN_MAX) return true;
    return host && (ro ? a.hostRead : a.hostWrite) >= GNTPIN_MAX;
  }

  private pin(a: ActiveEntry, dev: boolean, host: boolean, ro: boolean, by: number): void {
    if (dev) {
      if (ro) a.devRead += by;
      else a.devWrite += by;
    }
    if (host) {
      if (ro) a.hostRead += by;
      else a.hostWrite += by;
    }
  }

  /** Drop the pins (and writable references) of the named parts of a mapping. */
  private unpin(m: MapTrackEntry, dev: boolean, host: boolean): void {
    const ro = (m.flags & GNTMAP_readonly) !== 0;
    this.pin(m.granter.act(m.ref), dev, host, ro, -1);
    if (!ro) {
      if (dev) this.putWritable(m.mfn);
      if (host) this.putWritable(m.mfn);
    }
  }

  /**
   * The mapping is gone: the frame has one grant mapping less. If its owner
   * is gone too (our table retired, or the MMU orphaned the frame), the core
   * may free it now.
   */
  private dropGrantMap(m: MapTrackEntry): void {
    const left = --this.frames.grantMaps[m.mfn]!;
    if (left === 0 && (m.granter.dead || this.frames.owner[m.mfn] !== m.granter.domid)) this.env.releaseFrameIfUnused(m.mfn);
  }

  private getWritable(mfn: number, owner: number): boolean {
    const hook = this.env.getPageWritable;
    if (hook !== undefined) return hook(mfn, owner);
    const type = this.frames.type[mfn];
    return type === PageType.None || type === PageType.Writable;
  }

  private putWritable(mfn: number): void {
    this.env.putPageWritable?.(mfn);
  }
}
