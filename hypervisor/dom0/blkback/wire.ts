/*
 * blkback, wire layer: a ring slot's bytes -> a validated request, or the
 * response that refuses it. Pure: no I/O, no ring, no grants.
 *
 * The slot is decoded from a snapshot the transport copied out of the
 * shared page, so a frontend rewriting the slot while we work cannot make
 * the checked value and the used value differ (no double fetch).
 *
 * Every `id` and `operation` is echoed, so even a refused request is
 * answered in a way the frontend can match. What is refused, and how:
 *
 *   operation not defined by blkif.h            BLKIF_RSP_ERROR
 *   defined but not offered (DISCARD, INDIRECT,
 *     RESERVED_1)                                BLKIF_RSP_EOPNOTSUPP
 *   READ/WRITE/WRITE_BARRIER with nr_segments 0
 *     or > BLKIF_MAX_SEGMENTS_PER_REQUEST        BLKIF_RSP_ERROR
 *   a segment with first_sect or last_sect > 7,
 *     or first_sect > last_sect                  BLKIF_RSP_ERROR
 *   sectors [sector_number, +n) not inside the
 *     disk (no partial transfer at the end)      BLKIF_RSP_ERROR
 *   WRITE/WRITE_BARRIER on a read-only disk      BLKIF_RSP_ERROR
 *   FLUSH_DISKCACHE carrying segments            BLKIF_RSP_ERROR
 *
 * The `handle` field is not checked: one ring serves one vbd, so it says
 * nothing the ring does not.
 */
import {
  blkif_request, blkif_response, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
  BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, XEN_BLKIF_SECTOR_SIZE, VDISK_READONLY,
  BLKIF_NODE_SECTORS, BLKIF_NODE_SECTOR_SIZE, BLKIF_NODE_PHYSICAL_SECTOR_SIZE, BLKIF_NODE_INFO,
  BLKIF_NODE_FEATURE_BARRIER, BLKIF_NODE_FEATURE_FLUSH_CACHE,
} from '../../public/io/blkif.js';
import { bytesMem, type MemView } from '../../public/layout.js';
import { PAGE_SIZE, grantRef, type GrantRef } from '../../public/types.js';

/** Sectors in one granted page: first_sect/last_sect lie in 0..7. */
export const SECTORS_PER_PAGE = PAGE_SIZE / XEN_BLKIF_SECTOR_SIZE;
/** Bytes of one request slot as the backend snapshots it. */
export const REQUEST_BYTES = blkif_request.size;

/** One data page of a request: the sectors first..last (inclusive) of page `gref`. */
export interface Segment {
  readonly gref: GrantRef;
  readonly firstSect: number;
  readonly lastSect: number;
}

/** What the wire layer needs to know of the disk. */
export interface DiskShape {
  /** Size in 512-byte sectors. */
  readonly sectors: number;
  readonly readOnly: boolean;
}

interface Common {
  /** The frontend's private value, echoed in the response. */
  readonly id: bigint;
  /** The operation byte as the frontend wrote it, echoed in the response. */
  readonly operation: number;
}

/** A data transfer: `segments` map, in order, onto consecutive sectors from `sector`. */
export interface TransferRequest extends Common {
  readonly kind: 'read' | 'write';
  /** WRITE_BARRIER: also durable before it is answered. */
  readonly barrier: boolean;
  readonly sector: number;
  readonly nrSectors: number;
  readonly segments: readonly Segment[];
}

export interface FlushRequest extends Common {
  readonly kind: 'flush';
}

export type BlkRequest = TransferRequest | FlushRequest;

/** A request refused at decode time: answer `status` with its id and operation. */
export interface Refusal extends Common {
  readonly status: number;
  readonly reason: string;
}

export type Decoded = { readonly ok: true; readonly request: BlkRequest } | { readonly ok: false; readonly refusal: Refusal };

/** blkif_response_t as the backend writes it. */
export interface BlkResponse {
  readonly id: bigint;
  readonly operation: number;
  readonly status: number;
}

const refuse = (id: bigint, operation: number, status: number, reason: string): Decoded =>
  ({ ok: false, refusal: { id, operation, status, reason } });

const opName = (op: number): string =>
  ['read', 'write', 'write-barrier', 'flush-diskcache', 'reserved-1', 'discard', 'indirect'][op] ?? `op ${op}`;

/**
 * Decode one request from a snapshot of its slot (at least REQUEST_BYTES
 * long). Never throws on the bytes' contents.
 */
export function decodeRequest(slot: Uint8Array, disk: DiskShape): Decoded {
  if (slot.length < REQUEST_BYTES) throw new RangeError(`decodeRequest: slot of ${slot.length} bytes, need ${REQUEST_BYTES}`);
  const v = blkif_request.view(bytesMem(slot), 0);
  // id sits at offset 8 in every request variant (plain, discard, indirect),
  // so it can be echoed whatever the operation says.
  const id = v.get('id');
  const operation = v.get('operation');
  const nr = v.get('nr_segments');

  switch (operation) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
    case BLKIF_OP_WRITE_BARRIER:
      break;
    case BLKIF_OP_FLUSH_DISKCACHE:
      if (nr !== 0) return refuse(id, operation, BLKIF_RSP_ERROR, `flush-diskcache carries ${nr} segments; it must carry none`);
      return { ok: true, request: { kind: 'flush', id, operation } };
    case BLKIF_OP_DISCARD:
    case BLKIF_OP_INDIRECT:
    case BLKIF_OP_RESERVED_1:
      return refuse(id, operation, BLKIF_RSP_EOPNOTSUPP, `${opName(operation)} is not offered by this backend`);
    default:
      return refuse(id, operation, BLKIF_RSP_ERROR, `operation ${operation} is not a blkif operation`);
  }

  const name = opName(operation);
  if (nr === 0 || nr > BLKIF_MAX_SEGMENTS_PER_REQUEST)
    return refuse(id, operation, BLKIF_RSP_ERROR, `${name} with ${nr} segments (must be 1..${BLKIF_MAX_SEGMENTS_PER_REQUEST})`);
  const write = operation !== BLKIF_OP_READ;
  if (write && disk.readOnly) return refuse(id, operation, BLKIF_RSP_ERROR, `${name} on a read-only disk`);

  const segments: Segment[] = [];
  let nrSectors = 0;
  for (let i = 0; i < nr; i++) {
    const s = v.sub('seg', i);
    const firstSect = s.get('first_sect');
    const lastSect = s.get('last_sect');
    if (firstSect >= SECTORS_PER_PAGE || lastSect >= SECTORS_PER_PAGE || firstSect > lastSect) {
      return refuse(id, operation, BLKIF_RSP_ERROR,
        `segment ${i}: sectors ${firstSect}..${lastSect} are not an ascending range inside 0..${SECTORS_PER_PAGE - 1}`);
    }
    segments.push({ gref: grantRef(s.get('gref')), firstSect, lastSect });
    nrSectors += lastSect - firstSect + 1;
  }

  const start = v.get('sector_number');
  if (start + BigInt(nrSectors) > BigInt(disk.sectors)) {
    return refuse(id, operation, BLKIF_RSP_ERROR,
      `${name} of sectors ${start}..${start + BigInt(nrSectors) - 1n} beyond the disk's ${disk.sectors} sectors`);
  }
  return {
    ok: true,
    request: {
      kind: write ? 'write' : 'read',
      barrier: operation === BLKIF_OP_WRITE_BARRIER,
      id,
      operation,
      // Below disk.sectors, itself a safe integer (a file size / 512).
      sector: Number(start),
      nrSectors,
      segments,
    },
  };
}

/** Write a response into the slot at `addr`. */
export function encodeResponse(mem: MemView, addr: number, rsp: BlkResponse): void {
  const v = blkif_response.view(mem, addr);
  v.set('id', rsp.id);
  v.set('operation', rsp.operation & 0xff);
  v.set('status', rsp.status);
}

/** Read back a response (for frontends and tests). */
export function decodeResponse(mem: MemView, addr: number): BlkResponse {
  const v = blkif_response.view(mem, addr);
  return { id: v.get('id'), operation: v.get('operation'), status: v.get('status') };
}

/** The request a frontend writes; fields the operation does not use may be omitted. */
export interface RequestFields {
  readonly operation: number;
  readonly id: bigint;
  readonly sector?: bigint | number;
  readonly handle?: number;
  readonly segments?: readonly Segment[];
  /** Override nr_segments (to forge a bad request); defaults to segments.length. */
  readonly nrSegments?: number;
}

/** Write a request into the slot at `addr` (frontend side: loopback, tests). */
export function encodeRequest(mem: MemView, addr: number, req: RequestFields): void {
  const v = blkif_request.view(mem, addr);
  const segs = req.segments ?? [];
  if (segs.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) throw new RangeError(`encodeRequest: ${segs.length} segments do not fit in a slot`);
  v.set('operation', req.operation);
  v.set('nr_segments', req.nrSegments ?? segs.length);
  v.set('handle', req.handle ?? 0);
  v.set('id', req.id);
  v.set('sector_number', BigInt(req.sector ?? 0));
  segs.forEach((s, i) => {
    const sv = v.sub('seg', i);
    sv.set('gref', s.gref);
    sv.set('first_sect', s.firstSect);
    sv.set('last_sect', s.lastSect);
  });
}

/** What the backend offers: the feature nodes this engine implements. */
export const BLKBACK_FEATURES = Object.freeze({ flushCache: true, barrier: true });

/**
 * The nodes the backend writes in its directory before switching to
 * Connected (io/blkif.h names), for the xenbus wiring.
 */
export function backendConnectNodes(disk: DiskShape): Readonly<Record<string, string>> {
  return Object.freeze({
    [BLKIF_NODE_SECTORS]: String(disk.sectors),
    [BLKIF_NODE_SECTOR_SIZE]: String(XEN_BLKIF_SECTOR_SIZE),
    [BLKIF_NODE_PHYSICAL_SECTOR_SIZE]: String(XEN_BLKIF_SECTOR_SIZE),
    [BLKIF_NODE_INFO]: String(disk.readOnly ? VDISK_READONLY : 0),
    [BLKIF_NODE_FEATURE_FLUSH_CACHE]: BLKBACK_FEATURES.flushCache ? '1' : '0',
    [BLKIF_NODE_FEATURE_BARRIER]: BLKBACK_FEATURES.barrier ? '1' : '0',
  });
}
