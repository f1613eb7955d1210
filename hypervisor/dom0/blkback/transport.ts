/*
 * blkback, transport layer: the shared ring page, the grants that carry
 * the data, the event channel. Everything that touches the frontend's
 * memory goes through here, and everything here is an interface the
 * machine implements (over GNTTABOP_map_grant_ref / GNTTABOP_copy and
 * EVTCHNOP_bind_interdomain / send) or a test fakes over plain buffers.
 *
 * Requirement on implementations, for live migration: bytes written into
 * the frontend's pages (the ring page, copyToGrant) must go through the
 * machine's one write path so log-dirty mode sees them.
 */
import type { ByteMem } from '../../public/layout.js';
import type { DomId, EvtchnPort, GrantRef } from '../../public/types.js';
import { BackRing, type BackIndices, type RingResult } from '../../public/io/ring.js';
import { BLKIF_RING_SIZE, blkif_request, blkif_response } from '../../public/io/blkif.js';
import { ringGeometry } from '../../public/io/ring.js';
import { record } from '../../public/layout.js';
import { REQUEST_BYTES, encodeResponse, type BlkResponse } from './wire.js';

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

/** What a vbd needs from the machine to connect to a frontend. */
export interface BlkbackHost {
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

/** blkif ring geometry: 112-byte slots, 32 of them in a page. */
export const BLKIF_GEOMETRY = ringGeometry(record(blkif_request), record(blkif_response));
if (BLKIF_GEOMETRY.size !== BLKIF_RING_SIZE) throw new Error(`blkif ring geometry ${BLKIF_GEOMETRY.size} != BLKIF_RING_SIZE ${BLKIF_RING_SIZE}`);

/**
 * The back end of one blkif ring: take request snapshots in ring order,
 * answer them in the same order, publish. The private indices are plain
 * numbers held here (backend state is host state; a restored guest gets a
 * new ring and a new BlkRing).
 */
export class BlkRing {
  private readonly ring: BackRing;

  constructor(private readonly mem: ByteMem, base: number, at?: BackIndices) {
    this.ring = at === undefined ? BackRing.init(mem, base, BLKIF_GEOMETRY) : BackRing.attach(mem, base, BLKIF_GEOMETRY, at);
  }

  /** Requests the frontend has published and we have not taken; an error when its req_prod is garbage. */
  pending(): RingResult<number> {
    return this.ring.unconsumedRequests();
  }

  /**
   * Take the next request: a copy of its slot. Only as many times as
   * `pending` allowed, and each must be answered before the ring can hold
   * more.
   */
  take(): Uint8Array {
    return this.mem.readBytes(this.ring.consumeRequest(), REQUEST_BYTES);
  }

  /** Answer the oldest unanswered request. */
  respond(rsp: BlkResponse): void {
    encodeResponse(this.mem, this.ring.produceResponse(), rsp);
  }

  /** Publish the responses; true if the frontend asked to be notified. */
  push(): boolean {
    return this.ring.pushResponses();
  }

  /** Nothing pending: ask for a notification of the next request, and look once more. */
  finalCheck(): RingResult<number> {
    return this.ring.finalCheckForRequests();
  }

  indices(): BackIndices {
    return this.ring.indices();
  }
}
