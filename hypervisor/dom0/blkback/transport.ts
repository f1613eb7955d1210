/*
 * blkback, transport layer: the blkif ring on the frontend's shared page.
 * The page, the grants that carry the data and the event channel come from
 * the machine through ../backend-host.ts (BackendHost), which a test fakes
 * over plain buffers (loopback.ts).
 *
 * Requirement on hosts, for live migration: bytes written into the
 * frontend's pages (the ring page, copyToGrant) must go through the
 * machine's one write path so log-dirty mode sees them.
 */
import type { ByteMem } from '../../public/layout.js';
import { BackRing, type BackIndices, type RingResult } from '../../public/io/ring.js';
import { BLKIF_RING_SIZE, blkif_request, blkif_response } from '../../public/io/blkif.js';
import { ringGeometry } from '../../public/io/ring.js';
import { record } from '../../public/layout.js';
import { REQUEST_BYTES, encodeResponse, type BlkResponse } from './wire.js';

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
