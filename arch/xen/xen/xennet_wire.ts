/*
 * xennet, wire layer: netif requests into ring slots, responses out of
 * them, and how a packet is cut into TX slots. Pure: memory in, memory or
 * values out; no ring indices, no grants, no xenstore. The layouts are
 * io/netif.h's (hypervisor/public/io/netif.ts):
 *
 *   netif_tx_request_t (12 bytes)      netif_tx_response_t (4 bytes)
 *     0  grant_ref_t gref                0  uint16_t id
 *     4  uint16_t offset                 2  int16_t  status
 *     6  uint16_t flags   (NETTXF_*)
 *     8  uint16_t id
 *    10  uint16_t size    first slot: the whole packet; others: this slot
 *
 *   netif_rx_request_t (8 bytes)       netif_rx_response_t (8 bytes)
 *     0  uint16_t id                     0  uint16_t id
 *     2  uint16_t pad                    2  uint16_t offset
 *     4  grant_ref_t gref                4  uint16_t flags   (NETRXF_*)
 *                                        6  int16_t  status  > 0: bytes; <= 0: NETIF_RSP_*
 *
 * Request ids are ours: a TX id indexes the TX request table, an RX id the
 * RX buffer table. Responses come from the backend, so they are hostile:
 * decoding never throws, and an id outside the table is an error value on
 * which the driver disconnects (the driver also checks the id is in use).
 * Extra-info slots are never asked for (no GSO, no multicast control), so
 * a response that announces one is an error as well.
 */
import type { MemView } from '../../../hypervisor/public/layout.js';
import { record } from '../../../hypervisor/public/layout.js';
import {
  netif_tx_request, netif_tx_response, netif_rx_request, netif_rx_response, NET_TX_RING_SIZE, NET_RX_RING_SIZE,
  NETTXF_more_data, NETRXF_extra_info, NETIF_RSP_OKAY, NETIF_RSP_ERROR, NETIF_RSP_DROPPED, NETIF_RSP_NULL,
} from '../../../hypervisor/public/io/netif.js';
import { ringGeometry, type RingGeometry, type RingResult } from '../../../hypervisor/public/io/ring.js';
import { PAGE_SIZE } from '../../../hypervisor/public/types.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';

/** The TX ring in one page: 12-byte slots, 256 of them. */
export const XENNET_TX_GEOMETRY: RingGeometry = Object.freeze(ringGeometry(record(netif_tx_request), record(netif_tx_response), PAGE_SIZE));
/** The RX ring in one page: 8-byte slots, 256 of them. */
export const XENNET_RX_GEOMETRY: RingGeometry = Object.freeze(ringGeometry(record(netif_rx_request), record(netif_rx_response), PAGE_SIZE));
export const XENNET_TX_RING_SIZE = NET_TX_RING_SIZE;
export const XENNET_RX_RING_SIZE = NET_RX_RING_SIZE;

const TXQ_GREF = netif_tx_request.offsetOf('gref');
const TXQ_OFFSET = netif_tx_request.offsetOf('offset');
const TXQ_FLAGS = netif_tx_request.offsetOf('flags');
const TXQ_ID = netif_tx_request.offsetOf('id');
const TXQ_SIZE = netif_tx_request.offsetOf('size');
const TXS_ID = netif_tx_response.offsetOf('id');
const TXS_STATUS = netif_tx_response.offsetOf('status');
const RXQ_ID = netif_rx_request.offsetOf('id');
const RXQ_PAD = netif_rx_request.offsetOf('pad');
const RXQ_GREF = netif_rx_request.offsetOf('gref');
const RXS_ID = netif_rx_response.offsetOf('id');
const RXS_OFFSET = netif_rx_response.offsetOf('offset');
const RXS_FLAGS = netif_rx_response.offsetOf('flags');
const RXS_STATUS = netif_rx_response.offsetOf('status');

export interface TxRequest {
  readonly gref: number;
  readonly offset: number;
  readonly flags: number;
  readonly id: number;
  readonly size: number;
}

/** Write a TX request into the slot at `addr`. Our own values: a bad one is a bug. */
export function xennet_tx_req_encode(mem: MemView, addr: number, r: TxRequest): void {
  if (!(r.offset >= 0 && r.offset < PAGE_SIZE && r.id >= 0 && r.id < XENNET_TX_RING_SIZE && r.size >= 0 && r.size <= 0xffff)) {
    throw new RangeError(`xennet_tx_req_encode: offset ${r.offset} id ${r.id} size ${r.size}`);
  }
  mem.setUint32(addr + TXQ_GREF, r.gref >>> 0, true);
  mem.setUint16(addr + TXQ_OFFSET, r.offset, true);
  mem.setUint16(addr + TXQ_FLAGS, r.flags & 0xffff, true);
  mem.setUint16(addr + TXQ_ID, r.id, true);
  mem.setUint16(addr + TXQ_SIZE, r.size, true);
}

/** Write an RX request (post buffer `id`, granted as `gref`) into the slot at `addr`. */
export function xennet_rx_req_encode(mem: MemView, addr: number, id: number, gref: number): void {
  if (!(id >= 0 && id < XENNET_RX_RING_SIZE)) throw new RangeError(`xennet_rx_req_encode: id ${id}`);
  mem.setUint16(addr + RXQ_ID, id, true);
  mem.setUint16(addr + RXQ_PAD, 0, true);
  mem.setUint32(addr + RXQ_GREF, gref >>> 0, true);
}

export interface TxResponse {
  readonly id: number;
  /** NETIF_RSP_*; anything else is reported as NETIF_RSP_ERROR. */
  readonly status: number;
}

/** Read the TX response at `addr`; its id must lie in 0..nids-1. */
export function xennet_tx_rsp_decode(mem: MemView, addr: number, nids: number): RingResult<TxResponse> {
  const id = mem.getUint16(addr + TXS_ID, true);
  const raw = mem.getInt16(addr + TXS_STATUS, true);
  if (id >= nids) return { ok: false, error: `TX response id ${id} is not one of our ${nids} request ids` };
  const known = raw === NETIF_RSP_OKAY || raw === NETIF_RSP_ERROR || raw === NETIF_RSP_DROPPED || raw === NETIF_RSP_NULL;
  return { ok: true, value: { id, status: known ? raw : NETIF_RSP_ERROR } };
}

export interface RxResponse {
  readonly id: number;
  readonly offset: number;
  readonly flags: number;
  /** > 0: bytes received at `offset`; <= 0: NETIF_RSP_* (the buffer is unused). */
  readonly status: number;
}

/**
 * Read the RX response at `addr`; its id must lie in 0..nids-1 and it may
 * not announce an extra-info slot (never negotiated). Whether offset and
 * size fit the page is the caller's check: a bad one costs that frame,
 * not the connection.
 */
export function xennet_rx_rsp_decode(mem: MemView, addr: number, nids: number): RingResult<RxResponse> {
  const id = mem.getUint16(addr + RXS_ID, true);
  const offset = mem.getUint16(addr + RXS_OFFSET, true);
  const flags = mem.getUint16(addr + RXS_FLAGS, true);
  const status = mem.getInt16(addr + RXS_STATUS, true);
  if (id >= nids) return { ok: false, error: `RX response id ${id} is not one of our ${nids} buffers` };
  if ((flags & NETRXF_extra_info) !== 0) return { ok: false, error: `RX response id ${id} announces an extra-info slot we never asked for` };
  return { ok: true, value: { id, offset, flags, status } };
}

/** Does an RX response's data lie within its page? */
export function xennet_rx_rsp_fits(r: RxResponse): boolean {
  return r.status > 0 && r.offset + r.status <= PAGE_SIZE;
}

export interface TxSegment {
  /** Page-aligned kernel address of the page. */
  readonly page: number;
  readonly offset: number;
  readonly len: number;
}

/**
 * Cut `len` bytes at kernel address `va` at page boundaries: one TX slot
 * per piece (NETTXF_more_data on all but the last).
 */
export function xennet_tx_segments(va: number, len: number): TxSegment[] {
  const out: TxSegment[] = [];
  let at = va;
  let left = len;
  while (left > 0) {
    const offset = at % PAGE_SIZE;
    const n = Math.min(left, PAGE_SIZE - offset);
    out.push({ page: at - offset, offset, len: n });
    at += n;
    left -= n;
  }
  return out;
}

/** The request for piece `i` of `segs` (of a `total`-byte packet), given its id and grant. */
export function xennet_tx_req_for(segs: readonly TxSegment[], i: number, total: number, id: number, gref: number): TxRequest {
  const s = segs[i];
  if (s === undefined) throw new RangeError(`xennet_tx_req_for: segment ${i} of ${segs.length}`);
  return { gref, offset: s.offset, flags: i < segs.length - 1 ? NETTXF_more_data : 0, id, size: i === 0 ? total : s.len };
}

export const xennet_wire_ksyms = ksymtab({
  xennet_tx_req_encode, xennet_rx_req_encode, xennet_tx_rsp_decode, xennet_rx_rsp_decode, xennet_rx_rsp_fits,
  xennet_tx_segments, xennet_tx_req_for,
});
