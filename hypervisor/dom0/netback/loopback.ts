/*
 * A netif frontend over plain buffers, with no hypervisor: the two rings
 * (FrontRing, io/ring.ts) in pages granted through blkback's LoopbackHost
 * (BufferGrants: GrantIo with GNTTABOP_copy's refusals), written and read
 * with the public netif layouts only. Used by the netback tests and the
 * bench; hostile tests use the raw helpers (queueTxRaw, the ring pages).
 *
 * Pages: TX slot i (ring index & 255) sends from its own data page, RX
 * slot i receives into its own; both are granted on first use and reused,
 * which is safe because a slot is not reused before its response is read.
 * Request ids are slot numbers, as netfront's are.
 */
import { bytesMem, type ByteMem } from '../../public/layout.js';
import { FrontRing, sharedRingInit, type BackIndices } from '../../public/io/ring.js';
import { netif_tx_sring, NETRXF_more_data, NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE } from '../../public/io/netif.js';
import { PAGE_SIZE, evtchnPort, ringIdx, type DomId, type EvtchnPort, type GrantRef } from '../../public/types.js';
import type { LoopbackHost } from '../blkback/loopback.js';
import { NETIF_RX_GEOMETRY, NETIF_TX_GEOMETRY } from './transport.js';
import {
  decodeRxResponse, decodeTxResponse, encodeExtraInfo, encodeRxRequest, encodeTxRequest,
  type ExtraInfo, type RxResponse, type TxRequestFields, type TxResponse,
} from './wire.js';
import type { VifConnectParams } from './nodes.js';
import type { VifRingsAt } from './vif.js';

export interface LoopbackNetFrontOptions {
  /** The frontend's event channel port (default 7). */
  readonly port?: number;
  /** Start every ring index here instead of 0 (to test wrapping past 2^32). */
  readonly startIndex?: number;
  /** feature-sg (default true). */
  readonly sg?: boolean;
}

export interface QueueFrameOptions {
  /** Leave the checksum to the backend (NETTXF_csum_blank). */
  readonly csumBlank?: boolean;
  /** Offset of the data in the first page (default 0). */
  readonly offset?: number;
  /** Bytes per fragment at most (default a page; the first also ends at its page's end). */
  readonly fragmentBytes?: number;
  /** Extra-info slots after the first request. */
  readonly extras?: readonly ExtraInfo[];
}

/** A frame the frontend got, or the error status its responses carried. */
export type Received = { readonly ok: true; readonly frame: Uint8Array } | { readonly ok: false; readonly status: number };

export interface GrantedPage {
  readonly gref: GrantRef;
  readonly page: Uint8Array;
}

const SLOT_MASK = NETIF_TX_GEOMETRY.size - 1;

export class LoopbackNetFront {
  readonly txPage = new Uint8Array(PAGE_SIZE);
  readonly rxPage = new Uint8Array(PAGE_SIZE);
  readonly txMem: ByteMem = bytesMem(this.txPage);
  readonly rxMem: ByteMem = bytesMem(this.rxPage);
  readonly tx: FrontRing;
  readonly rx: FrontRing;
  readonly txRef: GrantRef;
  readonly rxRef: GrantRef;
  readonly port: EvtchnPort;
  readonly sg: boolean;
  private readonly startAt: BackIndices | undefined;
  private readonly txPool = new Map<number, GrantedPage>();
  private readonly rxPool = new Map<number, GrantedPage>();
  private partial: Uint8Array[] = [];
  private partialError: number | undefined;

  constructor(readonly host: LoopbackHost, readonly domid: DomId, opts: LoopbackNetFrontOptions = {}) {
    this.txRef = host.grants.grant(domid, this.txPage);
    this.rxRef = host.grants.grant(domid, this.rxPage);
    this.port = evtchnPort(opts.port ?? 7);
    this.sg = opts.sg ?? true;
    if (opts.startIndex === undefined) {
      this.tx = FrontRing.init(this.txMem, 0, NETIF_TX_GEOMETRY);
      this.rx = FrontRing.init(this.rxMem, 0, NETIF_RX_GEOMETRY);
      this.startAt = undefined;
    } else {
      const s = opts.startIndex >>> 0;
      this.startAt = { rspProdPvt: ringIdx(s), reqCons: ringIdx(s) };
      this.tx = startedRing(this.txMem, NETIF_TX_GEOMETRY, s);
      this.rx = startedRing(this.rxMem, NETIF_RX_GEOMETRY, s);
    }
  }

  /** What the frontend publishes in xenstore, parsed. */
  connectParams(): VifConnectParams {
    return { txRingRef: this.txRef, rxRingRef: this.rxRef, eventChannel: this.port, requestRxCopy: true, rxNotify: true, sg: this.sg };
  }

  /** Where the back rings attach (with `startIndex`). */
  ringsAt(): VifRingsAt {
    return this.startAt === undefined ? {} : { tx: this.startAt, rx: this.startAt };
  }

  /** A fresh page granted by this frontend. */
  dataPage(opts: { readOnly?: boolean } = {}): GrantedPage {
    const page = new Uint8Array(PAGE_SIZE);
    return { gref: this.host.grants.grant(this.domid, page, opts), page };
  }

  /** Queue one raw TX request (not yet visible); false when the ring is full. */
  queueTxRaw(r: TxRequestFields): boolean {
    const addr = this.tx.produceRequest();
    if (addr === undefined) return false;
    encodeTxRequest(this.txMem, addr, r);
    return true;
  }

  /** Queue one raw extra-info slot; false when the ring is full. */
  queueExtra(e: ExtraInfo): boolean {
    const addr = this.tx.produceRequest();
    if (addr === undefined) return false;
    encodeExtraInfo(this.txMem, addr, e);
    return true;
  }

  /** The data page TX slot `idx` sends from. */
  txPageAt(idx: number): GrantedPage {
    return pooled(this.txPool, idx & SLOT_MASK, () => this.dataPage());
  }

  /**
   * Queue a frame as one chain of requests (first, extras, fragments).
   * Returns the requests' ids, or undefined when the ring has no room
   * (nothing queued then).
   */
  queueFrame(frame: Uint8Array, opts: QueueFrameOptions = {}): number[] | undefined {
    const offset = opts.offset ?? 0;
    const step = opts.fragmentBytes ?? PAGE_SIZE;
    const extras = opts.extras ?? [];
    const pieces: { offset: number; bytes: Uint8Array }[] = [];
    let at = Math.min(frame.length, step, PAGE_SIZE - offset);
    pieces.push({ offset, bytes: frame.subarray(0, at) });
    while (at < frame.length) {
      const n = Math.min(step, PAGE_SIZE, frame.length - at);
      pieces.push({ offset: 0, bytes: frame.subarray(at, at + n) });
      at += n;
    }
    if (this.tx.freeRequests() < pieces.length + extras.length) return undefined;
    const ids: number[] = [];
    pieces.forEach((p, k) => {
      const idx = this.tx.reqProdPvt;
      const page = this.txPageAt(idx);
      page.page.set(p.bytes, p.offset);
      let flags = k < pieces.length - 1 ? NETTXF_more_data : 0;
      if (k === 0) {
        if (opts.csumBlank === true) flags |= NETTXF_csum_blank;
        if (extras.length > 0) flags |= NETTXF_extra_info;
      }
      const id = idx & SLOT_MASK;
      ids.push(id);
      this.queueTxRaw({ gref: page.gref, offset: p.offset, flags, id, size: k === 0 ? frame.length : p.bytes.length });
      if (k === 0) {
        extras.forEach((e, j) => this.queueExtra({ ...e, flags: j < extras.length - 1 ? e.flags | XEN_NETIF_EXTRA_FLAG_MORE : e.flags }));
      }
    });
    return ids;
  }

  /** Publish queued TX and RX requests; notify the backend if either ring asked. True if notified. */
  push(): boolean {
    const a = this.tx.pushRequests();
    const b = this.rx.pushRequests();
    if (!a && !b) return false;
    this.host.send(this.domid, this.port);
    return true;
  }

  /** Take every TX response; throws if the indices are garbage (a test's backend is ours). */
  txResponses(): TxResponse[] {
    const ready = this.tx.unconsumedResponses();
    if (!ready.ok) throw new Error(`loopback net front (TX): ${ready.error}`);
    return Array.from({ length: ready.value }, () => decodeTxResponse(this.txMem, this.tx.consumeResponse()));
  }

  /** Post up to `n` RX buffers (as many as the ring has room for); returns how many. */
  postRx(n: number): number {
    let posted = 0;
    for (; posted < n; posted++) {
      const idx = this.rx.reqProdPvt;
      const addr = this.rx.produceRequest();
      if (addr === undefined) break;
      const id = idx & SLOT_MASK;
      const page = pooled(this.rxPool, id, () => this.dataPage());
      encodeRxRequest(this.rxMem, addr, { id, gref: page.gref });
    }
    return posted;
  }

  /** The page RX buffer `id` lands in. */
  rxPageOf(id: number): GrantedPage {
    return pooled(this.rxPool, id & SLOT_MASK, () => this.dataPage());
  }

  /** Post RX buffer `id` as this page from now on (a read-only grant, a bad ref). */
  useRxPage(id: number, page: GrantedPage): void {
    this.rxPool.set(id & SLOT_MASK, page);
  }

  /** Take every RX response, raw. */
  rxResponses(): RxResponse[] {
    const ready = this.rx.unconsumedResponses();
    if (!ready.ok) throw new Error(`loopback net front (RX): ${ready.error}`);
    return Array.from({ length: ready.value }, () => decodeRxResponse(this.rxMem, this.rx.consumeResponse()));
  }

  /** Take every RX response and put frames back together (more_data chains). */
  received(): Received[] {
    const out: Received[] = [];
    for (const r of this.rxResponses()) {
      if (r.status < 0) this.partialError ??= r.status;
      else {
        const page = this.rxPool.get(r.id);
        if (page === undefined) throw new Error(`loopback net front: response for RX id ${r.id}, never posted`);
        this.partial.push(page.page.slice(r.offset, r.offset + r.status));
      }
      if ((r.flags & NETRXF_more_data) !== 0) continue;
      out.push(this.partialError === undefined ? { ok: true, frame: concat(this.partial) } : { ok: false, status: this.partialError });
      this.partial = [];
      this.partialError = undefined;
    }
    return out;
  }

  /** Backend notifications received on our port. */
  get notifications(): number {
    return this.host.notifications(this.domid, this.port);
  }
}

function pooled(pool: Map<number, GrantedPage>, id: number, make: () => GrantedPage): GrantedPage {
  let p = pool.get(id);
  if (p === undefined) {
    p = make();
    pool.set(id, p);
  }
  return p;
}

/** A fresh ring page whose indices all start at `s`. */
function startedRing(mem: ByteMem, geometry: typeof NETIF_TX_GEOMETRY, s: number): FrontRing {
  sharedRingInit(mem, 0);
  for (const [field, v] of [['req_prod', s], ['req_event', s + 1], ['rsp_prod', s], ['rsp_event', s + 1]] as const)
    mem.setUint32(netif_tx_sring.offsetOf(field), v >>> 0, true);
  return FrontRing.attach(mem, 0, geometry, { reqProdPvt: s, rspCons: s });
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
