/*
 * netback, wire layer: ring slots <-> requests and responses, and the
 * delimiting and checking of one TX packet. Pure: no ring, no grants, no
 * I/O. Every decoder works on a snapshot of a slot that the transport
 * copied out of the shared page, so a frontend rewriting a slot while we
 * look at it cannot make the checked value and the used value differ.
 *
 * A TX packet on the ring (io/netif.h):
 *
 *   slot 0      netif_tx_request   size = the whole packet; flags may hold
 *                                  NETTXF_extra_info and/or NETTXF_more_data
 *   [extras]    netif_extra_info   only when slot 0 has NETTXF_extra_info;
 *                                  chained by XEN_NETIF_EXTRA_FLAG_MORE
 *   [fragments] netif_tx_request   while the previous request has
 *                                  NETTXF_more_data; size = this slot's bytes
 *
 * Slot 0 carries `size - (sum of the fragments' sizes)` bytes itself. Every
 * slot gets one response, in slot order: the request's id with
 * NETIF_RSP_OKAY or NETIF_RSP_ERROR, and NETIF_RSP_NULL for extra slots.
 *
 * What is refused, and how. The rule: a packet the backend can delimit is
 * answered (ERROR on each of its requests) and the vif carries on; the vif
 * is closed only when the slots cannot be delimited any more.
 *
 *   more than TX_FATAL_SLOTS (20) requests chained        fatal (vif closed)
 *   more than TX_MAX_SLOTS (18) requests chained          ERROR
 *   fragment sizes adding up to more than the packet     ERROR
 *   a slot's bytes not inside its page (offset + len)     ERROR
 *   packet smaller than an Ethernet header                ERROR
 *   an extra-info type of 0 or >= XEN_NETIF_EXTRA_TYPE_MAX ERROR
 *   a GSO extra (feature-gso-* is not offered)            ERROR
 *   more than TX_MAX_EXTRAS (4) extra-info slots chained  fatal
 *   a chain not yet published to its end                  wait (not consumed)
 *
 * Multicast-control and hash extras are accepted and ignored (neither
 * feature is offered). NETTXF_extra_info is honoured on slot 0 only, as
 * every backend does; on a fragment it means nothing.
 */
import {
  netif_tx_request, netif_tx_response, netif_rx_request, netif_rx_response, netif_extra_info,
  NETTXF_extra_info, NETTXF_more_data, NETRXF_more_data, XEN_NETIF_NR_SLOTS_MIN, XEN_NETIF_MAX_TX_SIZE,
  XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_FLAG_MORE,
} from '../../public/io/netif.js';
import { bytesMem, type MemView } from '../../public/layout.js';
import { PAGE_SIZE, grantRef, type GrantRef } from '../../public/types.js';

/** Requests one packet may chain and still be sent (XEN_NETBK_LEGACY_SLOTS_MAX). */
export const TX_MAX_SLOTS = XEN_NETIF_NR_SLOTS_MIN;
/** Past this many chained requests the frontend is broken (Linux's fatal_skb_slots). */
export const TX_FATAL_SLOTS = 20;
/** Extra-info slots one packet may carry: one per type. */
export const TX_MAX_EXTRAS = XEN_NETIF_EXTRA_TYPE_MAX - 1;
/** Smallest packet: an Ethernet header. */
export const MIN_PACKET_BYTES = 14;
/** Largest frame the RX side hands a frontend (the TX limit, for symmetry). */
export const MAX_FRAME_BYTES = XEN_NETIF_MAX_TX_SIZE;

/** Bytes of a slot snapshot, per ring. */
export const TX_SLOT_BYTES = netif_tx_request.size;
export const RX_SLOT_BYTES = netif_rx_request.size;

/** netif_tx_request_t, decoded. */
export interface TxRequest {
  readonly gref: GrantRef;
  readonly offset: number;
  readonly flags: number;
  readonly id: number;
  readonly size: number;
}

/** netif_extra_info, decoded (the union read as the member its type names). */
export interface ExtraInfo {
  readonly type: number;
  readonly flags: number;
  /** GSO extras: segment size and type. */
  readonly gso?: { readonly size: number; readonly type: number; readonly features: number };
}

/** netif_rx_request_t, decoded. */
export interface RxRequest {
  readonly id: number;
  readonly gref: GrantRef;
}

export interface TxResponse {
  readonly id: number;
  readonly status: number;
}

export interface RxResponse {
  readonly id: number;
  readonly offset: number;
  readonly flags: number;
  /** Bytes placed in the buffer (> 0), or a NETIF_RSP_* error (<= 0). */
  readonly status: number;
}

/** One piece of a packet: `size` bytes at `offset` of page `gref`. */
export interface TxFragment {
  readonly gref: GrantRef;
  readonly offset: number;
  readonly size: number;
}

/** What each consumed slot must be answered with, in slot order. */
export interface SlotAnswer {
  readonly id: number;
  /** An extra-info slot: answered NETIF_RSP_NULL whatever became of the packet. */
  readonly extra: boolean;
}

export interface TxPacket {
  /** Total bytes (slot 0's size). */
  readonly size: number;
  /** Slot 0's flags (csum_blank, data_validated). */
  readonly flags: number;
  /** The data, in order; slot 0 first, with its own share of the bytes. */
  readonly fragments: readonly TxFragment[];
  readonly extras: readonly ExtraInfo[];
  readonly answers: readonly SlotAnswer[];
}

/** The next packet on the ring, as far as the published slots tell. */
export type TxParse =
  | { readonly kind: 'packet'; readonly packet: TxPacket }
  /** Delimited but refused: consume `answers.length` slots, answer each ERROR (NULL for extras). */
  | { readonly kind: 'drop'; readonly answers: readonly SlotAnswer[]; readonly reason: string }
  /** The chain goes on past the published requests: take nothing, wait for more. */
  | { readonly kind: 'incomplete'; readonly seen: number }
  /** The slots cannot be delimited: the vif must be closed. */
  | { readonly kind: 'fatal'; readonly reason: string };

// --- slot decoders (backend) ------------------------------------------------

function need(slot: Uint8Array, bytes: number, what: string): void {
  if (slot.length < bytes) throw new RangeError(`${what}: slot of ${slot.length} bytes, need ${bytes}`);
}

export function decodeTxRequest(slot: Uint8Array): TxRequest {
  need(slot, TX_SLOT_BYTES, 'decodeTxRequest');
  const v = netif_tx_request.view(bytesMem(slot), 0);
  return { gref: grantRef(v.get('gref')), offset: v.get('offset'), flags: v.get('flags'), id: v.get('id'), size: v.get('size') };
}

export function decodeExtraInfo(slot: Uint8Array): ExtraInfo {
  need(slot, netif_extra_info.size, 'decodeExtraInfo');
  const v = netif_extra_info.view(bytesMem(slot), 0);
  const type = v.get('type');
  const flags = v.get('flags');
  if (type !== XEN_NETIF_EXTRA_TYPE_GSO) return { type, flags };
  const g = v.sub('u').sub('gso');
  return { type, flags, gso: { size: g.get('size'), type: g.get('type'), features: g.get('features') } };
}

export function decodeRxRequest(slot: Uint8Array): RxRequest {
  need(slot, RX_SLOT_BYTES, 'decodeRxRequest');
  const v = netif_rx_request.view(bytesMem(slot), 0);
  return { id: v.get('id'), gref: grantRef(v.get('gref')) };
}

export function encodeTxResponse(mem: MemView, addr: number, rsp: TxResponse): void {
  const v = netif_tx_response.view(mem, addr);
  v.set('id', rsp.id & 0xffff);
  v.set('status', rsp.status);
}

export function encodeRxResponse(mem: MemView, addr: number, rsp: RxResponse): void {
  const v = netif_rx_response.view(mem, addr);
  v.set('id', rsp.id & 0xffff);
  v.set('offset', rsp.offset);
  v.set('flags', rsp.flags);
  v.set('status', rsp.status);
}

// --- frontend side (the loopback frontend, tests) ---------------------------

export interface TxRequestFields {
  readonly gref: number;
  readonly offset: number;
  readonly flags: number;
  readonly id: number;
  readonly size: number;
}

export function encodeTxRequest(mem: MemView, addr: number, r: TxRequestFields): void {
  const v = netif_tx_request.view(mem, addr);
  v.set('gref', r.gref >>> 0);
  v.set('offset', r.offset & 0xffff);
  v.set('flags', r.flags & 0xffff);
  v.set('id', r.id & 0xffff);
  v.set('size', r.size & 0xffff);
}

export function encodeExtraInfo(mem: MemView, addr: number, e: ExtraInfo): void {
  const v = netif_extra_info.view(mem, addr);
  v.set('type', e.type & 0xff);
  v.set('flags', e.flags & 0xff);
  const g = v.sub('u').sub('gso');
  g.set('size', e.gso?.size ?? 0);
  g.set('type', e.gso?.type ?? 0);
  g.set('pad', 0);
  g.set('features', e.gso?.features ?? 0);
}

export function encodeRxRequest(mem: MemView, addr: number, r: { readonly id: number; readonly gref: number }): void {
  const v = netif_rx_request.view(mem, addr);
  v.set('id', r.id & 0xffff);
  v.set('pad', 0);
  v.set('gref', r.gref >>> 0);
}

export function decodeTxResponse(mem: MemView, addr: number): TxResponse {
  const v = netif_tx_response.view(mem, addr);
  return { id: v.get('id'), status: v.get('status') };
}

export function decodeRxResponse(mem: MemView, addr: number): RxResponse {
  const v = netif_rx_response.view(mem, addr);
  return { id: v.get('id'), offset: v.get('offset'), flags: v.get('flags'), status: v.get('status') };
}

// --- TX packets -----------------------------------------------------------------

/**
 * Delimit and check the packet that starts at the first of `available`
 * published requests; `peek(i)` is a snapshot of the i-th (0-based). Never
 * throws on the slots' contents.
 */
export function parseTxPacket(available: number, peek: (i: number) => Uint8Array): TxParse {
  if (available < 1) return { kind: 'incomplete', seen: 0 };
  const first = decodeTxRequest(peek(0));
  const answers: SlotAnswer[] = [{ id: first.id, extra: false }];
  const extras: ExtraInfo[] = [];
  let i = 1;

  if ((first.flags & NETTXF_extra_info) !== 0) {
    for (;;) {
      if (i >= available) return { kind: 'incomplete', seen: i };
      const ex = decodeExtraInfo(peek(i++));
      // The extra slot has no id of its own; its NULL answer carries the packet's.
      answers.push({ id: first.id, extra: true });
      extras.push(ex);
      if ((ex.flags & XEN_NETIF_EXTRA_FLAG_MORE) === 0) break;
      if (extras.length >= TX_MAX_EXTRAS)
        return { kind: 'fatal', reason: `packet id ${first.id}: more than ${TX_MAX_EXTRAS} extra-info slots chained` };
    }
  }

  const requests: TxRequest[] = [first];
  for (let more = (first.flags & NETTXF_more_data) !== 0; more;) {
    if (requests.length >= TX_FATAL_SLOTS)
      return { kind: 'fatal', reason: `packet id ${first.id}: more than ${TX_FATAL_SLOTS} requests chained with NETTXF_more_data` };
    if (i >= available) return { kind: 'incomplete', seen: i };
    const r = decodeTxRequest(peek(i++));
    answers.push({ id: r.id, extra: false });
    requests.push(r);
    more = (r.flags & NETTXF_more_data) !== 0;
  }

  const drop = (reason: string): TxParse => ({ kind: 'drop', answers, reason: `packet id ${first.id}: ${reason}` });
  if (requests.length > TX_MAX_SLOTS) return drop(`${requests.length} requests chained, at most ${TX_MAX_SLOTS}`);
  let rest = 0;
  for (let k = 1; k < requests.length; k++) {
    const r = requests[k]!;
    if (r.offset + r.size > PAGE_SIZE) return drop(`fragment ${k} (id ${r.id}) covers ${r.offset}+${r.size}, past the end of its page`);
    rest += r.size;
  }
  if (rest > first.size) return drop(`fragments carry ${rest} bytes, more than the packet's ${first.size}`);
  const own = first.size - rest;
  if (first.offset + own > PAGE_SIZE) return drop(`slot 0 covers ${first.offset}+${own}, past the end of its page`);
  if (first.size < MIN_PACKET_BYTES) return drop(`${first.size} bytes, less than an Ethernet header`);
  for (const ex of extras) {
    if (ex.type === XEN_NETIF_EXTRA_TYPE_NONE || ex.type >= XEN_NETIF_EXTRA_TYPE_MAX) return drop(`extra-info type ${ex.type} is not defined`);
    if (ex.type === XEN_NETIF_EXTRA_TYPE_GSO) return drop('GSO extra-info, but feature-gso-* is not offered');
  }

  const fragments: TxFragment[] = requests.map((r, k) => ({ gref: r.gref, offset: r.offset, size: k === 0 ? own : r.size }));
  return { kind: 'packet', packet: { size: first.size, flags: first.flags, fragments, extras, answers } };
}

// --- RX frames --------------------------------------------------------------------

/** Buffers (pages) a frame of `bytes` takes on the RX ring: each response fills one from offset 0. */
export function rxSlotsFor(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / PAGE_SIZE));
}

/** The RX responses' flags for buffer `k` of `n` of one frame. */
export function rxFlags(k: number, n: number): number {
  return k < n - 1 ? NETRXF_more_data : 0;
}
