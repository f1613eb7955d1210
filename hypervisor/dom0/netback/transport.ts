/*
 * netback, transport layer: the two shared rings of a vif (TX and RX, each
 * in a page the frontend granted and the host mapped) and what moves data
 * (the host's grant copies). The event channel is the host's too; one port
 * serves both rings (feature-split-event-channels is not offered).
 *
 * Unlike blkif, a netif back end looks ahead before it consumes: a TX
 * packet spans a chain of slots that must be read whole before any of it
 * is taken (peek, then consume), and an RX frame needs as many posted
 * buffers as it has pages before any is taken. When what it needs is not
 * there yet it asks to be told of the next request (waitBeyond), so a
 * frontend that publishes the rest later wakes it.
 *
 * Requirement on hosts, for live migration: every byte written into the
 * frontend's pages (ring responses, RX data) goes through the machine's
 * write path (see ../backend-host.ts).
 */
import { record, type ByteMem } from '../../public/layout.js';
import { BackRing, ringGeometry, type BackIndices, type RingGeometry, type RingResult } from '../../public/io/ring.js';
import {
  NET_RX_RING_SIZE, NET_TX_RING_SIZE, netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response,
  netif_tx_sring,
} from '../../public/io/netif.js';
/** netif TX ring: 12-byte slots, 256 of them. */
export const NETIF_TX_GEOMETRY = ringGeometry(record(netif_tx_request), record(netif_tx_response));
/** netif RX ring: 8-byte slots, 256 of them. */
export const NETIF_RX_GEOMETRY = ringGeometry(record(netif_rx_request), record(netif_rx_response));
if (NETIF_TX_GEOMETRY.size !== NET_TX_RING_SIZE) throw new Error(`netif TX geometry ${NETIF_TX_GEOMETRY.size} != ${NET_TX_RING_SIZE}`);
if (NETIF_RX_GEOMETRY.size !== NET_RX_RING_SIZE) throw new Error(`netif RX geometry ${NETIF_RX_GEOMETRY.size} != ${NET_RX_RING_SIZE}`);

/** Same offset in both sring layouts (ring.h's header). */
const REQ_EVENT = netif_tx_sring.offsetOf('req_event');

/**
 * The back end of one netif ring. Private indices are plain numbers held
 * here (backend state is host state: a restored guest brings a new ring).
 */
export class NetBackRing {
  private readonly ring: BackRing;

  constructor(
    /** The mapped ring page, for the wire layer's response encoders. */
    readonly mem: ByteMem,
    private readonly base: number,
    geometry: RingGeometry,
    private readonly reqBytes: number,
    at?: BackIndices,
  ) {
    this.ring = at === undefined ? BackRing.init(mem, base, geometry) : BackRing.attach(mem, base, geometry, at);
  }

  get size(): number {
    return this.ring.size;
  }

  /** Requests published and not taken; an error when req_prod is garbage. */
  pending(): RingResult<number> {
    return this.ring.unconsumedRequests();
  }

  /** A snapshot of the i-th request not yet taken (i below what `pending` said). */
  peek(i: number): Uint8Array {
    return this.mem.readBytes(this.ring.slotAddr(this.ring.reqCons + i), this.reqBytes);
  }

  /** Take `n` requests (those peeked at), in order. */
  consume(n: number): void {
    for (let k = 0; k < n; k++) this.ring.consumeRequest();
  }

  /** Address of the slot for the response to the oldest unanswered request. */
  respondAt(): number {
    return this.ring.produceResponse();
  }

  /**
   * Publish responses; true if the frontend asked to be notified. With
   * nothing new to publish the page is not written (the answer would be
   * false anyway), so an idle ring does not dirty its page in log-dirty
   * mode every time the other ring is served.
   */
  push(): boolean {
    if (this.ring.rspProdPvt === this.ring.rspProd) return false;
    return this.ring.pushResponses();
  }

  /** Nothing pending: ask for a notification of the next request, and look once more. */
  finalCheck(): RingResult<number> {
    const first = this.ring.unconsumedRequests();
    if (!first.ok || first.value > 0) return first;
    return this.waitBeyond(0);
  }

  /**
   * `seen` requests are pending and they are not enough: ask to be notified
   * when the frontend publishes past them (req_event = req_cons + seen + 1),
   * then look again. More than `seen` means some arrived meanwhile. As with
   * push(), a req_event that already says so is not rewritten.
   */
  waitBeyond(seen: number): RingResult<number> {
    const want = (this.ring.reqCons + seen + 1) >>> 0;
    if (this.ring.reqEvent !== want) this.mem.setUint32(this.base + REQ_EVENT, want, true);
    return this.ring.unconsumedRequests();
  }

  indices(): BackIndices {
    return this.ring.indices();
  }
}
