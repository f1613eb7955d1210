/*
 * xbd, wire layer: blkif requests into ring slots, responses out of them.
 * Pure: memory in, memory or values out; no ring indices, no grants, no
 * xenstore. The layouts are io/blkif.h's (hypervisor/public/io/blkif.ts):
 *
 *   blkif_request_t  (112 bytes)          blkif_response_t (16 bytes)
 *     0  uint8_t  operation                 0  uint64_t id
 *     1  uint8_t  nr_segments               8  uint8_t  operation
 *     2  uint16_t handle                   10  int16_t  status
 *     8  uint64_t id
 *    16  uint64_t sector_number
 *    24  seg[11]: { uint32_t gref; uint8_t first_sect, last_sect; } (8 bytes each)
 *
 * The request id we send is the index of the shadow entry that remembers
 * the request (0 .. BLKIF_RING_SIZE-1). A response comes from the backend,
 * so it is hostile input: decoding never throws, and an id that names no
 * shadow entry, or an operation that is not the one we asked for, is an
 * error value on which the driver disconnects the device (NetBSD used
 * rsp.id as an index unchecked; Linux checks both, as we do).
 */
import type { MemView } from '../../../hypervisor/public/layout.js';
import { record } from '../../../hypervisor/public/layout.js';
import {
  blkif_request, blkif_request_segment, blkif_response, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_READ, BLKIF_OP_WRITE,
  BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RSP_OKAY, BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP, XEN_BLKIF_SECTOR_SIZE,
} from '../../../hypervisor/public/io/blkif.js';
import { ringGeometry, type RingGeometry } from '../../../hypervisor/public/io/ring.js';
import { PAGE_SIZE } from '../../../hypervisor/public/types.js';
import { EIO, EOPNOTSUPP } from '../../../sys/sys/errno.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';

/** The blkif ring in one page: 112-byte slots, 32 of them. */
export const XBD_RING_GEOMETRY: RingGeometry = Object.freeze(ringGeometry(record(blkif_request), record(blkif_response), PAGE_SIZE));
export const XBD_RING_SIZE = XBD_RING_GEOMETRY.size;
export const XBD_REQ_SIZE = blkif_request.size;
export const XBD_MAXSEGS = BLKIF_MAX_SEGMENTS_PER_REQUEST;
/** 512-byte sectors per 4 KiB page: first_sect/last_sect lie in 0..7. */
export const XBD_SECTORS_PER_PAGE = PAGE_SIZE / XEN_BLKIF_SECTOR_SIZE;

const SEG_OFF = blkif_request.offsetOf('seg');
const SEG_SIZE = blkif_request_segment.size;

/**
 * Write the fixed part of a request at `addr` (a ring slot or a shadow's
 * copy); segments follow with xbd_req_set_seg. Unused segment slots are
 * zeroed so the bytes are a function of the request alone.
 */
export function xbd_req_encode(mem: MemView, addr: number, operation: number, handle: number, id: number, sector: number, nseg: number): void {
  if (!(nseg >= 0 && nseg <= XBD_MAXSEGS)) throw new RangeError(`xbd_req_encode: ${nseg} segments`);
  for (let i = 0; i < XBD_REQ_SIZE; i += 4) mem.setUint32(addr + i, 0, true);
  const v = blkif_request.view(mem, addr);
  v.set('operation', operation);
  v.set('nr_segments', nseg);
  v.set('handle', handle);
  v.set('id', BigInt(id));
  v.set('sector_number', BigInt(sector));
}

/** Segment `i` of the request at `addr`: sectors first..last of page `gref`. */
export function xbd_req_set_seg(mem: MemView, addr: number, i: number, gref: number, first: number, last: number): void {
  if (!(i >= 0 && i < XBD_MAXSEGS)) throw new RangeError(`xbd_req_set_seg: segment ${i}`);
  if (!(first >= 0 && first <= last && last < XBD_SECTORS_PER_PAGE)) throw new RangeError(`xbd_req_set_seg: sectors ${first}..${last}`);
  const s = blkif_request.view(mem, addr).sub('seg', i);
  s.set('gref', gref >>> 0);
  s.set('first_sect', first);
  s.set('last_sect', last);
}

/** Rewrite the grant of segment `i` (a request sent again with fresh grants). */
export function xbd_req_set_gref(mem: MemView, addr: number, i: number, gref: number): void {
  if (!(i >= 0 && i < XBD_MAXSEGS)) throw new RangeError(`xbd_req_set_gref: segment ${i}`);
  mem.setUint32(addr + SEG_OFF + i * SEG_SIZE, gref >>> 0, true);
}

/** The grant reference of segment `i` (our own bytes: a shadow's copy). */
export function xbd_req_seg_gref(mem: MemView, addr: number, i: number): number {
  return mem.getUint32(addr + SEG_OFF + i * SEG_SIZE, true);
}

export function xbd_req_operation(mem: MemView, addr: number): number {
  return blkif_request.view(mem, addr).get('operation');
}

export function xbd_req_nseg(mem: MemView, addr: number): number {
  return blkif_request.view(mem, addr).get('nr_segments');
}

/** A response the driver may act on: the shadow it answers and the outcome as an errno. */
export interface XbdResponse {
  readonly id: number;
  readonly operation: number;
  readonly status: number;
  /** 0, EOPNOTSUPP (BLKIF_RSP_EOPNOTSUPP) or EIO (any other status). */
  readonly error: number;
}

export type XbdDecoded = { readonly ok: true; readonly value: XbdResponse } | { readonly ok: false; readonly error: string };

/**
 * Decode the response in the slot at `addr`. `expectedOp(id)` is the
 * operation of the request shadow entry `id` holds, or undefined when it
 * holds none. Never throws on the slot's contents.
 */
export function xbd_rsp_decode(mem: MemView, addr: number, nshadow: number, expectedOp: (id: number) => number | undefined): XbdDecoded {
  const v = blkif_response.view(mem, addr);
  const rawId = v.get('id');
  const operation = v.get('operation');
  const status = v.get('status');
  if (rawId >= BigInt(nshadow)) return { ok: false, error: `response id ${rawId} is not a request slot (0..${nshadow - 1})` };
  const id = Number(rawId);
  const want = expectedOp(id);
  if (want === undefined) return { ok: false, error: `response id ${id} answers no request in flight` };
  if (operation !== want) return { ok: false, error: `response id ${id} is for operation ${operation}, the request was operation ${want}` };
  const error = status === BLKIF_RSP_OKAY ? 0 : status === BLKIF_RSP_EOPNOTSUPP ? EOPNOTSUPP : EIO;
  return { ok: true, value: { id, operation, status, error } };
}

/** Name of a blkif operation, for messages. */
export function xbd_opname(op: number): string {
  switch (op) {
    case BLKIF_OP_READ: return 'read';
    case BLKIF_OP_WRITE: return 'write';
    case BLKIF_OP_FLUSH_DISKCACHE: return 'flush';
    default: return `op ${op}`;
  }
}

/** Is `status` one blkif.h defines? (Anything else still fails the request, as EIO.) */
export function xbd_status_known(status: number): boolean {
  return status === BLKIF_RSP_OKAY || status === BLKIF_RSP_ERROR || status === BLKIF_RSP_EOPNOTSUPP;
}

export const xbd_wire_ksyms = ksymtab({
  xbd_req_encode, xbd_req_set_seg, xbd_req_set_gref, xbd_req_seg_gref, xbd_req_operation, xbd_req_nseg, xbd_rsp_decode, xbd_opname, xbd_status_known,
});
