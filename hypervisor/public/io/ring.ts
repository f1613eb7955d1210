/*
 * xen/include/public/io/ring.h: shared I/O rings in one granted page.
 *
 * A shared ring page starts with four free-running 32-bit indices and 48
 * bytes of padding, followed by an array of entries; each entry is a union
 * of the request and the response type, so a slot is reused in place. The
 * number of slots is the largest power of two that fits in the page.
 *
 * Layout (DEFINE_RING_TYPES):
 *   struct __name##_sring {
 *       RING_IDX req_prod, req_event;
 *       RING_IDX rsp_prod, rsp_event;
 *       union {
 *           struct { uint8_t smartpoll_active; } netif;
 *           struct { uint8_t msg; } tapif_user;
 *           uint8_t pvt_pad[4];
 *       } pvt;
 *       uint8_t __pad[44];
 *       union __name##_sring_entry ring[1]; // variable-length
 *   };
 */
import { struct, union, record, array, u8, u32, type CType, type Fields, type MemView, type StructLayout } from '../layout.js';
import { PAGE_SIZE, ringIdx, type RingIdx } from '../types.js';

/** `typedef unsigned int RING_IDX;` */
export const RING_IDX = u32;

/** Offset of `ring[]` in every shared ring page. */
export const SRING_HEADER_SIZE = 64;

const sring_pvt = union('sring pvt', {
  netif: record(struct('sring pvt netif', { smartpoll_active: u8 })),
  tapif_user: record(struct('sring pvt tapif_user', { msg: u8 })),
  pvt_pad: array(u8, 4),
});

/** The entry union of a ring: one slot holds a request or a response. */
export function sringEntry(name: string, req: CType, rsp: CType): StructLayout<{ req: CType; rsp: CType }> {
  return union(`union ${name}_sring_entry`, { req, rsp });
}

export type SringFields = {
  req_prod: typeof u32;
  req_event: typeof u32;
  rsp_prod: typeof u32;
  rsp_event: typeof u32;
  pvt: CType;
  __pad: CType;
  ring: CType;
};

/** `struct NAME_sring` with its one-element `ring[1]`, as sizeof() sees it. */
export function sringLayout(name: string, req: CType, rsp: CType): StructLayout<SringFields> {
  return struct(`struct ${name}_sring`, {
    req_prod: RING_IDX,
    req_event: RING_IDX,
    rsp_prod: RING_IDX,
    rsp_event: RING_IDX,
    pvt: record(sring_pvt),
    __pad: array(u8, 44),
    ring: array(record(sringEntry(name, req, rsp)), 1),
  } satisfies Fields);
}

/** Round down to a power of two (__RD32). */
function roundDownPow2(n: number): number {
  if (n < 1) return 0;
  return 2 ** Math.floor(Math.log2(n));
}

/** `__CONST_RING_SIZE(name, size)`: slots of a ring in a `pageSize` page. */
export function constRingSize(req: CType, rsp: CType, pageSize: number): number {
  const entry = sringEntry('size', req, rsp);
  return roundDownPow2(Math.floor((pageSize - SRING_HEADER_SIZE) / entry.size));
}

// ---------------------------------------------------------------------------
// Runtime: the ring.h macros as two short-lived views.
//
// A `FrontRing` or `BackRing` is a cheap view over (memory, base address,
// geometry, private indices). It keeps nothing that is not also handed back
// by `indices()`: guest code builds one on entry from indices it stored in
// guest memory, works, and stores `indices()` again before it returns. That
// is what lets the private indices survive a save/restore.
//
// Every index is a free-running unsigned 32-bit counter; a slot is
// `idx & (size - 1)`, and every difference is taken modulo 2^32 (`>>> 0`),
// so the arithmetic is the same before and after the counters wrap.
//
// The shared indices are written by the peer and are hostile input: reading
// them never throws and never makes a caller loop; an impossible value comes
// back as `{ ok: false, error }`, and the driver disconnects. Private
// indices are the caller's own state, so an inconsistent one is a bug and
// throws.

/** A value, or why the peer's indices make no sense. */
export type RingResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** Size of one slot (the request/response union) and number of slots. */
export interface RingGeometry {
  readonly entrySize: number;
  /** A power of two. */
  readonly size: number;
}

/** The geometry of a ring of `req`/`rsp` entries in one page (`__CONST_RING_SIZE`). */
export function ringGeometry(req: CType, rsp: CType, pageSize: number = PAGE_SIZE): RingGeometry {
  return { entrySize: sringEntry('geometry', req, rsp).size, size: constRingSize(req, rsp, pageSize) };
}

/** `RING_IDX req_prod_pvt, rsp_cons` of a front ring. */
export interface FrontIndices {
  readonly reqProdPvt: RingIdx;
  readonly rspCons: RingIdx;
}

/** `RING_IDX rsp_prod_pvt, req_cons` of a back ring. */
export interface BackIndices {
  readonly rspProdPvt: RingIdx;
  readonly reqCons: RingIdx;
}

const header = sringLayout('header', u8, u8);
const REQ_PROD = header.offsetOf('req_prod');
const REQ_EVENT = header.offsetOf('req_event');
const RSP_PROD = header.offsetOf('rsp_prod');
const RSP_EVENT = header.offsetOf('rsp_event');
const PAD_START = header.offsetOf('pvt');

/** `a - b` modulo 2^32. */
const dist = (a: number, b: number): number => (a - b) >>> 0;

/**
 * SHARED_RING_INIT: both producers 0, both event indices 1 (the first
 * message notifies), the private and padding bytes zeroed. Slots are not
 * touched.
 */
export function sharedRingInit(mem: MemView, base: number): void {
  mem.setUint32(base + REQ_PROD, 0, true);
  mem.setUint32(base + RSP_PROD, 0, true);
  mem.setUint32(base + REQ_EVENT, 1, true);
  mem.setUint32(base + RSP_EVENT, 1, true);
  for (let off = PAD_START; off < SRING_HEADER_SIZE; off++) mem.setUint8(base + off, 0);
}

function checkGeometry(g: RingGeometry): void {
  const { size, entrySize } = g;
  if (!Number.isInteger(size) || size < 1 || size > 2 ** 31 || (size & (size - 1)) !== 0)
    throw new RangeError(`ring size ${size} is not a power of two in 1..2^31`);
  if (!Number.isInteger(entrySize) || entrySize < 1) throw new RangeError(`ring entry size ${entrySize} is not a positive integer`);
}

/** What both ends share: the page, its geometry, the four shared indices. */
export abstract class SharedRingView {
  readonly size: number;
  readonly entrySize: number;

  protected constructor(
    readonly mem: MemView,
    readonly base: number,
    geometry: RingGeometry,
  ) {
    checkGeometry(geometry);
    this.size = geometry.size;
    this.entrySize = geometry.entrySize;
  }

  /** Address of the slot that index `idx` uses (RING_GET_REQUEST / RING_GET_RESPONSE). */
  slotAddr(idx: number): number {
    return this.base + SRING_HEADER_SIZE + ((idx >>> 0) & (this.size - 1)) * this.entrySize;
  }

  get reqProd(): RingIdx { return this.read(REQ_PROD); }
  get reqEvent(): RingIdx { return this.read(REQ_EVENT); }
  get rspProd(): RingIdx { return this.read(RSP_PROD); }
  get rspEvent(): RingIdx { return this.read(RSP_EVENT); }

  protected read(off: number): RingIdx {
    return ringIdx(this.mem.getUint32(this.base + off, true));
  }

  protected write(off: number, v: number): void {
    this.mem.setUint32(this.base + off, v >>> 0, true);
  }

  /**
   * Publish a producer index and say whether the peer asked to be told:
   * it did if its event index lies in (old, new]
   * (RING_PUSH_*_AND_CHECK_NOTIFY).
   */
  protected push(prodOff: number, eventOff: number, next: number): boolean {
    const old = this.read(prodOff);
    this.write(prodOff, next);
    return dist(next, this.read(eventOff)) < dist(next, old);
  }
}

/** The front end of a ring: produces requests, consumes responses. */
export class FrontRing extends SharedRingView {
  private reqProdPvtValue: number;
  private rspConsValue: number;

  private constructor(mem: MemView, base: number, geometry: RingGeometry, reqProdPvt: number, rspCons: number) {
    super(mem, base, geometry);
    this.reqProdPvtValue = reqProdPvt >>> 0;
    this.rspConsValue = rspCons >>> 0;
    if (dist(this.reqProdPvtValue, this.rspConsValue) > this.size)
      throw new RangeError(`front ring indices req_prod_pvt ${this.reqProdPvtValue}, rsp_cons ${this.rspConsValue} are more than ${this.size} apart`);
  }

  /** SHARED_RING_INIT + FRONT_RING_INIT: a fresh page, private indices 0. */
  static init(mem: MemView, base: number, geometry: RingGeometry): FrontRing {
    sharedRingInit(mem, base);
    return new FrontRing(mem, base, geometry, 0, 0);
  }

  /** FRONT_RING_ATTACH: an initialized page, resuming from saved private indices. */
  static attach(mem: MemView, base: number, geometry: RingGeometry, at: { reqProdPvt: number; rspCons: number }): FrontRing {
    return new FrontRing(mem, base, geometry, at.reqProdPvt, at.rspCons);
  }

  get reqProdPvt(): RingIdx { return ringIdx(this.reqProdPvtValue); }
  get rspCons(): RingIdx { return ringIdx(this.rspConsValue); }

  /** The private indices, to be stored until the next `attach`. */
  indices(): FrontIndices {
    return { reqProdPvt: this.reqProdPvt, rspCons: this.rspCons };
  }

  /** RING_FREE_REQUESTS: slots neither holding a request nor an unread response. */
  freeRequests(): number {
    return this.size - dist(this.reqProdPvtValue, this.rspConsValue);
  }

  /** RING_FULL */
  isFull(): boolean {
    return this.freeRequests() === 0;
  }

  /** Claim the slot at req_prod_pvt for a new request: its address, or undefined when full. */
  produceRequest(): number | undefined {
    if (this.isFull()) return undefined;
    const addr = this.slotAddr(this.reqProdPvtValue);
    this.reqProdPvtValue = (this.reqProdPvtValue + 1) >>> 0;
    return addr;
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publish; true if the back end must be notified. */
  pushRequests(): boolean {
    return this.push(REQ_PROD, REQ_EVENT, this.reqProdPvtValue);
  }

  /**
   * RING_HAS_UNCONSUMED_RESPONSES, checked: the back end can only answer
   * requests that were produced, so rsp_prod must lie in
   * [rsp_cons, req_prod_pvt].
   */
  unconsumedResponses(): RingResult<number> {
    const rspProd = this.rspProd;
    const ready = dist(rspProd, this.rspConsValue);
    const outstanding = dist(this.reqProdPvtValue, this.rspConsValue);
    if (ready > outstanding) {
      return {
        ok: false,
        error: `rsp_prod ${rspProd} is not within the ${outstanding} outstanding requests after rsp_cons ${this.rspConsValue}`,
      };
    }
    return { ok: true, value: ready };
  }

  /**
   * Take the response at rsp_cons: its slot address. Call it at most as many
   * times as `unconsumedResponses` allowed.
   */
  consumeResponse(): number {
    if (this.rspConsValue === this.reqProdPvtValue) throw new RangeError(`consumeResponse at rsp_cons ${this.rspConsValue}: no request is outstanding`);
    const addr = this.slotAddr(this.rspConsValue);
    this.rspConsValue = (this.rspConsValue + 1) >>> 0;
    return addr;
  }

  /**
   * RING_FINAL_CHECK_FOR_RESPONSES: when nothing is waiting, ask to be
   * notified of the next response (rsp_event = rsp_cons + 1), then look
   * again so one that arrived meanwhile is not missed.
   */
  finalCheckForResponses(): RingResult<number> {
    const first = this.unconsumedResponses();
    if (!first.ok || first.value > 0) return first;
    this.write(RSP_EVENT, this.rspConsValue + 1);
    return this.unconsumedResponses();
  }
}

/** The back end of a ring: consumes requests, produces responses. */
export class BackRing extends SharedRingView {
  private rspProdPvtValue: number;
  private reqConsValue: number;

  private constructor(mem: MemView, base: number, geometry: RingGeometry, rspProdPvt: number, reqCons: number) {
    super(mem, base, geometry);
    this.rspProdPvtValue = rspProdPvt >>> 0;
    this.reqConsValue = reqCons >>> 0;
    if (dist(this.reqConsValue, this.rspProdPvtValue) > this.size)
      throw new RangeError(`back ring indices req_cons ${this.reqConsValue}, rsp_prod_pvt ${this.rspProdPvtValue} are more than ${this.size} apart`);
  }

  /**
   * BACK_RING_INIT: private indices 0 over a page the front end has
   * initialized. Like Xen, it does not write the page: the front end owns
   * its initialization and may already have pushed requests.
   */
  static init(mem: MemView, base: number, geometry: RingGeometry): BackRing {
    return new BackRing(mem, base, geometry, 0, 0);
  }

  /** BACK_RING_ATTACH: resume from saved private indices. */
  static attach(mem: MemView, base: number, geometry: RingGeometry, at: { rspProdPvt: number; reqCons: number }): BackRing {
    return new BackRing(mem, base, geometry, at.rspProdPvt, at.reqCons);
  }

  get rspProdPvt(): RingIdx { return ringIdx(this.rspProdPvtValue); }
  get reqCons(): RingIdx { return ringIdx(this.reqConsValue); }

  /** The private indices, to be stored until the next `attach`. */
  indices(): BackIndices {
    return { rspProdPvt: this.rspProdPvt, reqCons: this.reqCons };
  }

  /**
   * RING_HAS_UNCONSUMED_REQUESTS, checked. An honest front end never has
   * more than `size` requests unanswered, so req_prod lies in
   * [req_cons, rsp_prod_pvt + size]; the count is therefore already bounded
   * by the slots free for responses. Anything else (far ahead, or behind
   * req_cons) is garbage and an error.
   */
  unconsumedRequests(): RingResult<number> {
    const reqProd = this.reqProd;
    const ready = dist(reqProd, this.reqConsValue);
    const room = this.size - dist(this.reqConsValue, this.rspProdPvtValue);
    if (ready > room) {
      const where = ready > 2 ** 31 ? `${dist(this.reqConsValue, reqProd)} behind` : `${ready} ahead of`;
      return { ok: false, error: `req_prod ${reqProd} is ${where} req_cons ${this.reqConsValue}; at most ${room} requests can be pending` };
    }
    return { ok: true, value: ready };
  }

  /** RING_REQUEST_CONS_OVERFLOW: consuming at `cons` would reuse a slot still owed a response. */
  requestConsOverflow(cons: number): boolean {
    return dist(cons, this.rspProdPvtValue) >= this.size;
  }

  /**
   * Take the request at req_cons: its slot address. Call it at most as many
   * times as `unconsumedRequests` allowed.
   */
  consumeRequest(): number {
    if (this.requestConsOverflow(this.reqConsValue)) throw new RangeError(`consumeRequest at req_cons ${this.reqConsValue}: every slot is owed a response`);
    const addr = this.slotAddr(this.reqConsValue);
    this.reqConsValue = (this.reqConsValue + 1) >>> 0;
    return addr;
  }

  /** Claim the slot at rsp_prod_pvt for the response to a consumed request: its address. */
  produceResponse(): number {
    if (this.rspProdPvtValue === this.reqConsValue) throw new RangeError(`produceResponse at rsp_prod_pvt ${this.rspProdPvtValue}: no consumed request is unanswered`);
    const addr = this.slotAddr(this.rspProdPvtValue);
    this.rspProdPvtValue = (this.rspProdPvtValue + 1) >>> 0;
    return addr;
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publish; true if the front end must be notified. */
  pushResponses(): boolean {
    return this.push(RSP_PROD, RSP_EVENT, this.rspProdPvtValue);
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS: when nothing is waiting, ask to be
   * notified of the next request (req_event = req_cons + 1), then look
   * again.
   */
  finalCheckForRequests(): RingResult<number> {
    const first = this.unconsumedRequests();
    if (!first.ok || first.value > 0) return first;
    this.write(REQ_EVENT, this.reqConsValue + 1);
    return this.unconsumedRequests();
  }
}
