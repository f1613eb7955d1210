/*
 * One domain's grant table (v1) and the bookkeeping Xen keeps beside it.
 *
 *  - Shared frames: hypervisor-owned machine frames holding grant_entry_v1
 *    records, 512 per frame. The granting guest writes entries; Xen only
 *    sets and clears GTF_reading / GTF_writing in `flags`.
 *  - Active entries: per granted ref currently in use, who uses it (one
 *    domain at a time, as Xen), the frame it resolved to when first pinned,
 *    and pin counts split host/device x read/write. While pinned, Xen goes
 *    by the active entry, not by what the guest has since written.
 *  - Maptrack: the mappings this domain holds of other domains' grants,
 *    indexed by grant handle.
 *
 * A table outlives its domain ("dead") while other domains still map its
 * grants, so their unmaps find their bookkeeping; the shared frames are
 * gone by then and flag updates are skipped.
 */
import type { MachineMemory } from './physmem.js';
import type { FrameTable } from './frametable.js';
import {
  grant_entry_v1, GRANT_ENTRIES_V1_PER_FRAME, GTF_type_mask, GTF_permit_access, GTF_readonly,
  GTF_reading, GTF_writing, GNTST_okay, GNTST_general_error, GNTST_bad_page,
} from '../public/grant_table.js';

/** Each pin count is a byte in Xen; one that reaches 128 refuses more pins. */
export const GNTPIN_MAX = 128;

const ENTRY_SIZE = grant_entry_v1.size;
const FLAGS_OFF = grant_entry_v1.offsetOf('flags');
const DOMID_OFF = grant_entry_v1.offsetOf('domid');
const FRAME_OFF = grant_entry_v1.offsetOf('frame');

export interface ActiveEntry {
  /** The domain using the grant. */
  domid: number;
  /** The frame the grant resolved to when first pinned. */
  mfn: number;
  hostRead: number;
  hostWrite: number;
  devRead: number;
  devWrite: number;
}

export function isPinned(a: ActiveEntry): boolean {
  return a.hostRead + a.hostWrite + a.devRead + a.devWrite !== 0;
}
export function isWritePinned(a: ActiveEntry): boolean {
  return a.hostWrite + a.devWrite !== 0;
}

/** One mapping of another domain's grant, held by the owner of the maptrack. */
export interface MapTrackEntry {
  readonly granter: GrantTable;
  readonly ref: number;
  /** GNTMAP_* still held: host_map and/or device_map, plus readonly etc. */
  flags: number;
  readonly mfn: number;
  readonly hostAddr: bigint;
}

/** A grant entry as the toolstack writes and reads it. */
export interface GrantEntry {
  flags: number;
  domid: number;
  frame: number;
}

export class GrantTable {
  /** MFNs of the shared frames, in table order. */
  readonly frames: number[] = [];
  readonly active = new Map<number, ActiveEntry>();
  readonly maptrack: (MapTrackEntry | undefined)[] = [];
  private readonly freeHandles: number[] = [];
  private liveMaps = 0;
  /** Frames this domain holds GNTMAP_host_map mappings of: [read-only, writable] counts. */
  private readonly hostMapped = new Map<number, [number, number]>();
  dead = false;

  constructor(
    readonly domid: number,
    private readonly memory: MachineMemory,
    readonly maxFrames: number,
    readonly maxMaptrack: number,
  ) {}

  get nrEntries(): number {
    return this.frames.length * GRANT_ENTRIES_V1_PER_FRAME;
  }

  /** A guest-supplied ref that names an entry of the table. */
  validRef(ref: number): boolean {
    return Number.isInteger(ref) && ref >= 0 && ref < this.nrEntries;
  }

  private mfnOf(ref: number): number {
    return this.frames[Math.floor(ref / GRANT_ENTRIES_V1_PER_FRAME)]!;
  }
  private offOf(ref: number): number {
    return (ref % GRANT_ENTRIES_V1_PER_FRAME) * ENTRY_SIZE;
  }

  flags(ref: number): number {
    return this.memory.readU16(this.mfnOf(ref), this.offOf(ref) + FLAGS_OFF);
  }
  entryDomid(ref: number): number {
    return this.memory.readU16(this.mfnOf(ref), this.offOf(ref) + DOMID_OFF);
  }
  entryFrame(ref: number): number {
    return this.memory.readU32(this.mfnOf(ref), this.offOf(ref) + FRAME_OFF);
  }

  readEntry(ref: number): GrantEntry {
    return { flags: this.flags(ref), domid: this.entryDomid(ref), frame: this.entryFrame(ref) };
  }

  writeEntry(ref: number, e: GrantEntry): void {
    const mfn = this.mfnOf(ref);
    const off = this.offOf(ref);
    this.memory.writeU32(mfn, off + FRAME_OFF, e.frame >>> 0);
    this.memory.writeU16(mfn, off + DOMID_OFF, e.domid & 0xffff);
    this.memory.writeU16(mfn, off + FLAGS_OFF, e.flags & 0xffff);
  }

  private setFlags(ref: number, flags: number): void {
    this.memory.writeU16(this.mfnOf(ref), this.offOf(ref) + FLAGS_OFF, flags);
  }

  /** Clear status flags of an entry (nothing to clear once the table is gone). */
  clearFlags(ref: number, mask: number): void {
    if (this.dead || !this.validRef(ref)) return;
    const f = this.flags(ref);
    if ((f & mask) !== 0) this.setFlags(ref, f & ~mask);
  }

  /** The active entry of a ref, created idle on first use. */
  act(ref: number): ActiveEntry {
    let a = this.active.get(ref);
    if (a === undefined) {
      a = { domid: 0, mfn: 0, hostRead: 0, hostWrite: 0, devRead: 0, devWrite: 0 };
      this.active.set(ref, a);
    }
    return a;
  }

  dropIfIdle(ref: number): void {
    const a = this.active.get(ref);
    if (a !== undefined && !isPinned(a)) this.active.delete(ref);
  }

  /**
   * Xen's _set_status (v1): on first pin the entry must permit access to
   * `mapper`; a writable use needs a writable grant. Sets GTF_reading (and
   * GTF_writing). A GNTST_* status.
   */
  setStatus(ref: number, a: ActiveEntry, readonly: boolean, mapper: number): number {
    const flags = this.flags(ref);
    if (!isPinned(a) && ((flags & GTF_type_mask) !== GTF_permit_access || this.entryDomid(ref) !== mapper)) {
      return GNTST_general_error;
    }
    let next = flags | GTF_reading;
    if (!readonly) {
      if ((flags & GTF_readonly) !== 0) return GNTST_general_error;
      next |= GTF_writing;
    }
    if (next !== flags) this.setFlags(ref, next);
    return GNTST_okay;
  }

  /** After unpinning: clear GTF_reading when unused, GTF_writing when no writer is left. */
  reduceStatus(ref: number, a: ActiveEntry, readonly: boolean): void {
    let clear = isPinned(a) ? 0 : GTF_reading;
    if (!readonly && !isWritePinned(a)) clear |= GTF_writing;
    if (clear !== 0) this.clearFlags(ref, clear);
  }

  // --- maptrack ---------------------------------------------------------------

  getHandle(): number | undefined {
    const h = this.freeHandles.pop();
    if (h !== undefined) return h;
    if (this.maptrack.length >= this.maxMaptrack) return undefined;
    this.maptrack.push(undefined);
    return this.maptrack.length - 1;
  }

  putHandle(h: number): void {
    if (this.maptrack[h] !== undefined) this.liveMaps--;
    this.maptrack[h] = undefined;
    this.freeHandles.push(h);
  }

  setHandle(h: number, m: MapTrackEntry): void {
    this.maptrack[h] = m;
    this.liveMaps++;
  }

  /** A guest-supplied handle that names a live mapping. */
  mapping(h: number): MapTrackEntry | undefined {
    return Number.isInteger(h) && h >= 0 ? this.maptrack[h] : undefined;
  }

  get mapsHeld(): number {
    return this.liveMaps;
  }

  /** Count a host mapping of `mfn` (the MMU asks hostMappable while installing it). */
  addHostMap(mfn: number, readonly: boolean): void {
    const c = this.hostMapped.get(mfn) ?? [0, 0];
    c[readonly ? 0 : 1]++;
    this.hostMapped.set(mfn, c);
  }

  removeHostMap(mfn: number, readonly: boolean): void {
    const c = this.hostMapped.get(mfn);
    if (c === undefined) return;
    c[readonly ? 0 : 1]--;
    if (c[0] === 0 && c[1] === 0) this.hostMapped.delete(mfn);
  }

  /** Does this domain hold a host mapping of `mfn` (a writable one, if asked)? */
  hostMappable(mfn: number, writable: boolean): boolean {
    const c = this.hostMapped.get(mfn);
    return c !== undefined && (writable ? c[1] > 0 : c[0] + c[1] > 0);
  }
}

/**
 * Xen's get_paged_frame for a PV granter: the entry's frame is a machine
 * frame, and it must belong to the granting domain.
 */
export function checkGrantedFrame(frames: FrameTable, mfn: number, granter: number): number {
  return frames.memory.isValid(mfn) && frames.owner[mfn] === granter ? GNTST_okay : GNTST_bad_page;
}
