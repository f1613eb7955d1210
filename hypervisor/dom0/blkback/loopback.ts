/*
 * A blkif frontend and a fake host over plain buffers, with no hypervisor:
 * the MirageOS way of testing a split driver (a front and a back on one
 * page). Used by the blkback tests and by the bench.
 *
 *  * BufferGrants: GrantIo over pages a test "grants" (Uint8Arrays), with
 *    the refusals of GNTTABOP_copy (bad ref, wrong domain, read-only page,
 *    range outside the page).
 *  * LoopbackHost: BackendHost over BufferGrants; ring mapping and event
 *    channels are bookkeeping, and notifications are counted.
 *  * LoopbackFront: FrontRing (io/ring.ts) over a granted ring page, plus
 *    helpers to queue blkif requests and read responses.
 */
import { bytesMem, type ByteMem } from '../../public/layout.js';
import { FrontRing, sharedRingInit, type BackIndices } from '../../public/io/ring.js';
import { PAGE_SIZE, grantRef, ringIdx, evtchnPort, type DomId, type EvtchnPort, type GrantRef } from '../../public/types.js';
import { gnttabStatusMessage, GNTST_bad_copy_arg, GNTST_bad_domain, GNTST_bad_gntref, GNTST_permission_denied } from '../../public/grant_table.js';
import { err, ok, type BackendHost, type BoundChannel, type GrantIo, type MappedRing, type Outcome } from '../backend-host.js';
import { BLKIF_GEOMETRY } from './transport.js';
import { blkif_sring } from '../../public/io/blkif.js';
import { decodeResponse, encodeRequest, type BlkResponse, type RequestFields } from './wire.js';
import type { ConnectParams } from './vbd.js';

interface BufferGrant {
  readonly page: Uint8Array;
  readonly readOnly: boolean;
}

const gnttabErr = <T>(status: number, what: string): Outcome<T> => err(`${gnttabStatusMessage(status)} (${what})`);

/** Pages granted by frontends, by (domid, gref). */
export class BufferGrants implements GrantIo {
  private readonly grants = new Map<string, BufferGrant>();
  private readonly nextRef = new Map<DomId, number>();
  /** Bytes moved each way, for tests and the bench. */
  bytesFrom = 0;
  bytesTo = 0;

  /** Grant `page` (PAGE_SIZE bytes) from `domid`; returns its reference. */
  grant(domid: DomId, page: Uint8Array, opts: { readOnly?: boolean; ref?: number } = {}): GrantRef {
    if (page.length !== PAGE_SIZE) throw new RangeError(`grant: a page is ${PAGE_SIZE} bytes, not ${page.length}`);
    const ref = opts.ref ?? this.nextRef.get(domid) ?? 8; // refs 0..7 are the toolstack's
    this.nextRef.set(domid, Math.max(this.nextRef.get(domid) ?? 8, ref + 1));
    this.grants.set(`${domid}:${ref}`, { page, readOnly: opts.readOnly ?? false });
    return grantRef(ref);
  }

  revoke(domid: DomId, ref: GrantRef): void {
    this.grants.delete(`${domid}:${ref}`);
  }

  lookup(domid: DomId, ref: GrantRef): BufferGrant | undefined {
    return this.grants.get(`${domid}:${ref}`);
  }

  private find(domid: DomId, gref: GrantRef, offset: number, len: number): Outcome<BufferGrant> {
    if (!this.nextRef.has(domid)) return gnttabErr(GNTST_bad_domain, `d${domid}`);
    const g = this.lookup(domid, gref);
    if (g === undefined) return gnttabErr(GNTST_bad_gntref, `d${domid} gref ${gref}`);
    if (!(Number.isInteger(offset) && Number.isInteger(len) && offset >= 0 && len >= 0 && offset + len <= PAGE_SIZE))
      return gnttabErr(GNTST_bad_copy_arg, `${offset}+${len}`);
    return ok(g);
  }

  copyFromGrant(domid: DomId, gref: GrantRef, offset: number, len: number): Outcome<Uint8Array> {
    const g = this.find(domid, gref, offset, len);
    if (!g.ok) return g;
    this.bytesFrom += len;
    return ok(g.value.page.slice(offset, offset + len));
  }

  copyToGrant(domid: DomId, gref: GrantRef, offset: number, data: Uint8Array): Outcome<void> {
    const g = this.find(domid, gref, offset, data.length);
    if (!g.ok) return g;
    if (g.value.readOnly) return gnttabErr(GNTST_permission_denied, `d${domid} gref ${gref} is read-only`);
    g.value.page.set(data, offset);
    this.bytesTo += data.length;
    return ok(undefined);
  }
}

interface Binding {
  readonly onEvent: () => void;
  closed: boolean;
}

/** BackendHost over BufferGrants. */
export class LoopbackHost implements BackendHost {
  readonly grants = new BufferGrants();
  /** Rings currently mapped. */
  mappedRings = 0;
  /** Notifications the backend sent, by `domid:port`. */
  readonly notified = new Map<string, number>();
  private readonly bindings = new Map<string, Binding>();

  mapRing(domid: DomId, ref: GrantRef): Outcome<MappedRing> {
    const g = this.grants.lookup(domid, ref);
    if (g === undefined) return err(`d${domid} has not granted ref ${ref}`);
    if (g.readOnly) return err(`d${domid} granted ref ${ref} read-only`);
    this.mappedRings++;
    let mapped = true;
    return ok({
      mem: bytesMem(g.page),
      base: 0,
      unmap: () => {
        if (mapped) this.mappedRings--;
        mapped = false;
      },
    });
  }

  bindEventChannel(domid: DomId, remotePort: EvtchnPort, onEvent: () => void): Outcome<BoundChannel> {
    const k = `${domid}:${remotePort}`;
    const old = this.bindings.get(k);
    if (old !== undefined && !old.closed) return err(`port ${remotePort} of d${domid} is already bound`);
    const b: Binding = { onEvent, closed: false };
    this.bindings.set(k, b);
    return ok({
      notify: () => {
        if (!b.closed) this.notified.set(k, (this.notified.get(k) ?? 0) + 1);
      },
      close: () => {
        b.closed = true;
      },
    });
  }

  /** The frontend signals its port: the backend's handler runs if bound. False if nobody listens. */
  send(domid: DomId, port: EvtchnPort): boolean {
    const b = this.bindings.get(`${domid}:${port}`);
    if (b === undefined || b.closed) return false;
    b.onEvent();
    return true;
  }

  notifications(domid: DomId, port: EvtchnPort): number {
    return this.notified.get(`${domid}:${port}`) ?? 0;
  }
}

export interface LoopbackFrontOptions {
  /** The frontend's event channel port (default 5). */
  readonly port?: number;
  /**
   * Start every ring index at this value instead of 0, as if that many
   * requests had gone round already (to test wrapping past 2^32).
   */
  readonly startIndex?: number;
}

/** A blkif frontend over a granted page. */
export class LoopbackFront {
  readonly ringPage = new Uint8Array(PAGE_SIZE);
  readonly mem: ByteMem = bytesMem(this.ringPage);
  readonly ring: FrontRing;
  readonly ringRef: GrantRef;
  readonly port: EvtchnPort;
  private readonly initialAt: BackIndices | undefined;

  constructor(readonly host: LoopbackHost, readonly domid: DomId, opts: LoopbackFrontOptions = {}) {
    this.ringRef = host.grants.grant(domid, this.ringPage);
    this.port = evtchnPort(opts.port ?? 5);
    if (opts.startIndex === undefined) {
      this.ring = FrontRing.init(this.mem, 0, BLKIF_GEOMETRY);
      this.initialAt = undefined;
    } else {
      const s = opts.startIndex >>> 0;
      this.initialAt = { rspProdPvt: ringIdx(s), reqCons: ringIdx(s) };
      sharedRingInit(this.mem, 0);
      for (const [field, v] of [['req_prod', s], ['req_event', s + 1], ['rsp_prod', s], ['rsp_event', s + 1]] as const)
        this.mem.setUint32(blkif_sring.offsetOf(field), v >>> 0, true);
      this.ring = FrontRing.attach(this.mem, 0, BLKIF_GEOMETRY, { reqProdPvt: s, rspCons: s });
    }
  }

  /**
   * What the frontend publishes in xenstore, plus (with `startIndex`) where
   * the back ring must attach on this page.
   */
  connectParams(): ConnectParams {
    const base = { ringRef: this.ringRef, eventChannel: this.port };
    return this.initialAt === undefined ? base : { ...base, at: this.initialAt };
  }

  /** A fresh data page granted by this frontend. */
  dataPage(opts: { readOnly?: boolean } = {}): { gref: GrantRef; page: Uint8Array } {
    const page = new Uint8Array(PAGE_SIZE);
    return { gref: this.host.grants.grant(this.domid, page, opts), page };
  }

  /** Queue one request (not yet visible to the backend); false when the ring is full. */
  queue(req: RequestFields): boolean {
    const addr = this.ring.produceRequest();
    if (addr === undefined) return false;
    encodeRequest(this.mem, addr, req);
    return true;
  }

  /** Publish queued requests and notify the backend if it asked. True if it was notified. */
  push(): boolean {
    if (!this.ring.pushRequests()) return false;
    this.host.send(this.domid, this.port);
    return true;
  }

  /** Take every response the backend has published; throws if its indices are garbage (a test's backend is ours). */
  responses(): BlkResponse[] {
    const ready = this.ring.unconsumedResponses();
    if (!ready.ok) throw new Error(`loopback front: ${ready.error}`);
    const out: BlkResponse[] = [];
    for (let i = 0; i < ready.value; i++) out.push(decodeResponse(this.mem, this.ring.consumeResponse()));
    return out;
  }

  /** Backend notifications received on our port. */
  get notifications(): number {
    return this.host.notifications(this.domid, this.port);
  }
}
