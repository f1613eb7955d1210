/*
 * What a dom0 backend needs from the machine (the interfaces below), and
 * their implementation over the real hypervisor: grant copies (GNTTABOP_copy), the ring page mapped
 * (GNTTABOP_map_grant_ref) and one interdomain event channel
 * (EVTCHNOP_bind_interdomain / send / close), all made as dom0, through
 * the same checks as any domain's hypercalls.
 *
 * Ring pages are mapped with GNTMAP_device_map: dom0 is host code without
 * page tables and reaches the granted frame by its machine address, which
 * is what a device mapping gives; the grant stays pinned (GTF_writing)
 * until unmap, exactly as a host mapping would keep it. (A host_map at
 * host_addr 0 could not be removed again through GrantTables.unmapHandle.)
 *
 * One MachineBackendHost serves blkback and netback alike (BackendHost:
 * GrantIo + mapRing + bindEventChannel): `new Blkback({ host })` and
 * `new Netback({ host, ... })`. Tests fake the same interface over plain
 * buffers (blkback/loopback.ts).
 *
 * Copies. GNTTABOP_copy names a page either by a grant reference of the
 * domain that granted it or, with DOMID_SELF only, by the frame number of
 * one of the caller's own pages; dom0 cannot name a guest frame by number.
 * So the host keeps one bounce frame owned by dom0: copyFromGrant copies
 * guest grant -> bounce frame (same offset) and reads it out;
 * copyToGrant writes the bounce frame and copies bounce frame -> guest
 * grant. Both copies go through MachineMemory.copy, the one write path,
 * so a guest in log-dirty mode sees every page netback or blkback fills.
 * Ring pages are reached through MachineMemory.frameMem, the same path.
 *
 * Events. The bound port's events reach `onEvent` through
 * Machine.onDom0Event, which runs handlers between guest entries, never
 * inside a hypercall.
 */
import createDebug from 'debug';
import type { DomId, EvtchnPort, GrantRef } from '../public/types.js';
import { PAGE_SIZE } from '../public/types.js';
import { DOMID_SELF } from '../public/xen.js';
import {
  GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_device_map, GNTST_okay, gnttabStatusMessage,
} from '../public/grant_table.js';
import { errnoName } from '../public/errno.js';
import type { MachineMemory } from '../xen/physmem.js';
import type { FrameTable } from '../xen/frametable.js';
import type { GrantTables, GnttabCaller } from '../xen/gnttab.js';
import type { EventChannels, EvtchnCaller } from '../xen/evtchn.js';
import type { ByteMem } from '../public/layout.js';

/** A value or why not. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
export const err = <T = never>(error: string): Outcome<T> => ({ ok: false, error });

/**
 * Moving data between the backend and the frontend's granted pages, by
 * copy (GNTTABOP_copy on Xen). `offset + len` stays within one page; the
 * caller guarantees it. A refused grant (bad ref, wrong domain, read-only
 * grant for copyToGrant) is an error value carrying the GNTST_* text.
 */
export interface GrantIo {
  /** Bytes [offset, offset+len) of page `gref` granted by `domid`. */
  copyFromGrant(domid: DomId, gref: GrantRef, offset: number, len: number): Outcome<Uint8Array>;
  /** Store `data` at `offset` of page `gref` granted (writable) by `domid`. `data` is not kept. */
  copyToGrant(domid: DomId, gref: GrantRef, offset: number, data: Uint8Array): Outcome<void>;
}

/** The frontend's ring page, mapped into the backend. */
export interface MappedRing {
  readonly mem: ByteMem;
  /** Address of the page in `mem`. */
  readonly base: number;
  /** GNTTABOP_unmap_grant_ref. Called once. */
  unmap(): void;
}

/** dom0's end of the interdomain event channel. */
export interface BoundChannel {
  /** EVTCHNOP_send on our end. */
  notify(): void;
  /** EVTCHNOP_close. Called once. */
  close(): void;
}

/** What a backend device (a vbd, a vif) needs from the machine to connect to a frontend. */
export interface BackendHost {
  readonly grants: GrantIo;
  /** Map page `ref` granted by `domid` (read-write): the ring. */
  mapRing(domid: DomId, ref: GrantRef): Outcome<MappedRing>;
  /**
   * Bind to the frontend's unbound port `remotePort` of `domid`.
   * `onEvent` runs when the frontend notifies; it only marks work (the
   * machine should call it between guest entries, never inside one).
   */
  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<BoundChannel>;
}


const log = createDebug('dom0:host');


/** The parts of a Machine the host uses; a Machine fits as is. */
export interface MachineBackendDeps {
  readonly memory: MachineMemory;
  readonly frames: FrameTable;
  readonly gnttab: GrantTables;
  readonly evtchn: EventChannels;
  onDom0Event(port: number, handler: (port: number) => void): void;
  offDom0Event(port: number): void;
}

const DOM0: GnttabCaller & EvtchnCaller = Object.freeze({ domid: 0, vcpuId: 0, privileged: true });

const inPage = (offset: number, len: number): boolean =>
  Number.isInteger(offset) && Number.isInteger(len) && offset >= 0 && len >= 0 && offset + len <= PAGE_SIZE;

const gntErr = <T>(status: number, what: string): Outcome<T> => err(`${gnttabStatusMessage(status)} (${what})`);

/** Grant copies as dom0 through one bounce frame of dom0's own. */
export class MachineGrantIo implements GrantIo {
  private bounce: number | undefined;
  /** Bytes moved each way. */
  bytesFrom = 0;
  bytesTo = 0;

  constructor(private readonly m: MachineBackendDeps) {}

  copyFromGrant(domid: DomId, gref: GrantRef, offset: number, len: number): Outcome<Uint8Array> {
    if (!inPage(offset, len)) return err(`copy of ${offset}+${len} does not fit in a page`);
    const b = this.bounceFrame();
    if (!b.ok) return b;
    const rc = this.m.gnttab.copy(DOM0, {
      source: { u: gref, domid, offset },
      dest: { u: b.value, domid: DOMID_SELF, offset },
      len,
      flags: GNTCOPY_source_gref,
    });
    if (rc !== GNTST_okay) return gntErr(rc, `copy from d${domid} gref ${gref} ${offset}+${len}`);
    this.bytesFrom += len;
    return ok(this.m.memory.readBytes(b.value, offset, len));
  }

  copyToGrant(domid: DomId, gref: GrantRef, offset: number, data: Uint8Array): Outcome<void> {
    if (!inPage(offset, data.length)) return err(`copy of ${offset}+${data.length} does not fit in a page`);
    if (data.length === 0) return ok(undefined);
    const b = this.bounceFrame();
    if (!b.ok) return b;
    this.m.memory.writeBytes(b.value, offset, data);
    const rc = this.m.gnttab.copy(DOM0, {
      source: { u: b.value, domid: DOMID_SELF, offset },
      dest: { u: gref, domid, offset },
      len: data.length,
      flags: GNTCOPY_dest_gref,
    });
    if (rc !== GNTST_okay) return gntErr(rc, `copy to d${domid} gref ${gref} ${offset}+${data.length}`);
    this.bytesTo += data.length;
    return ok(undefined);
  }

  /** Give the bounce frame back to the machine. */
  close(): void {
    if (this.bounce === undefined) return;
    this.m.frames.release(this.bounce);
    this.bounce = undefined;
  }

  private bounceFrame(): Outcome<number> {
    if (this.bounce === undefined) {
      const mfn = this.m.frames.alloc(0);
      if (mfn === undefined) return err('machine memory exhausted: no frame for dom0 to copy through');
      this.bounce = mfn;
    }
    return ok(this.bounce);
  }
}

/** BackendHost over a Machine's grant tables and event channels. */
export class MachineBackendHost implements BackendHost {
  readonly grants: MachineGrantIo;
  private readonly bound = new Set<number>();
  private readonly handles = new Set<number>();

  constructor(private readonly m: MachineBackendDeps) {
    this.grants = new MachineGrantIo(m);
  }

  mapRing(domid: DomId, ref: GrantRef): Outcome<MappedRing> {
    const r = this.m.gnttab.mapGrantRef(DOM0, { dom: domid, ref, flags: GNTMAP_device_map });
    if (r.status !== GNTST_okay) return gntErr(r.status, `map d${domid} gref ${ref}`);
    const handle = r.handle;
    this.handles.add(handle);
    log.enabled && log('mapped d%d gref %d (mfn %d) as handle %d', domid, ref, r.mfn, handle);
    let mapped = true;
    return ok({
      mem: this.m.memory.frameMem(r.mfn),
      base: 0,
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        this.handles.delete(handle);
        const st = this.m.gnttab.unmapHandle(DOM0, handle);
        if (st !== GNTST_okay) log('unmap of handle %d (d%d gref %d): %s', handle, domid, ref, gnttabStatusMessage(st));
      },
    });
  }

  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<BoundChannel> {
    const port = this.m.evtchn.bindInterdomain(DOM0, domid, remotePort);
    if (port < 0) return err(`bind_interdomain to d${domid} port ${remotePort}: ${errnoName(-port)}`);
    this.bound.add(port);
    this.m.onDom0Event(port, () => onEvent());
    log.enabled && log('bound d0 port %d to d%d port %d', port, domid, remotePort);
    let open = true;
    return ok({
      notify: () => {
        if (open) this.m.evtchn.send(DOM0, port);
      },
      close: () => {
        if (!open) return;
        open = false;
        this.bound.delete(port);
        this.m.offDom0Event(port);
        this.m.evtchn.close(DOM0, port);
      },
    });
  }

  /** Ring pages currently mapped and ports currently bound (tests, leaks). */
  get mappedRings(): number {
    return this.handles.size;
  }

  get boundPorts(): number {
    return this.bound.size;
  }

  /** Release the bounce frame (after every backend using this host is gone). */
  close(): void {
    this.grants.close();
  }
}

/** The host for a Machine (or anything with its parts). */
export function machineBackendHost(m: MachineBackendDeps): MachineBackendHost {
  return new MachineBackendHost(m);
}
