/*
 * The domain ring transport: xenstored's side of a domain's store page
 * (`struct xenstore_domain_interface`: a 1024-byte request ring, a 1024-byte
 * response ring, free-running u32 indices, feature/connection/error words).
 *
 * It takes the page (ByteMem + base) and a `notify` callback standing in for
 * the event channel; the host calls `kick()` when the guest signals. Index
 * arithmetic is unsigned 32-bit and wraps; messages may be split across the
 * end of a ring. The guest is hostile: indices are read once per step and
 * checked, and a guest whose indices are inconsistent or who announces a
 * message longer than XENSTORE_PAYLOAD_MAX is disconnected (the error word
 * says why). Only that domain notices. A guest may ask to reconnect (the
 * connection word set to XENSTORE_RECONNECT): its ring then starts afresh.
 */
import type { ByteMem } from '../../public/layout.js';
import type { DomId } from '../../public/types.js';
import {
  XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX, XENSTORE_RECONNECT,
  XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION, XS_WATCH_EVENT,
  MASK_XENSTORE_IDX, xenstore_domain_interface,
} from '../../public/io/xs_wire.js';
import { encodeMsg, FrameDecoder, XS_HEADER_SIZE, type XsMsg } from './wire.js';

export const XS_RING_PAGE_BYTES = xenstore_domain_interface.size;

interface Pending {
  readonly bytes: Uint8Array;
  written: number;
  /** A reply (not a watch event): counts against the outstanding limit. */
  readonly reply: boolean;
}

export interface RingOptions {
  /** Replies waiting for ring space before requests stop being read (xenstored's "outstanding" quota). */
  readonly maxOutstanding?: number;
  /** Bytes that may wait for ring space; watch events beyond it are dropped (xenstored's memory quota). */
  readonly maxQueuedBytes?: number;
}

/** xenstored's default memory quota per domain: 2.5 MiB. */
export const DEFAULT_MAX_QUEUED_BYTES = 2.5 * 1024 * 1024;

export class XsRingTransport {
  /** A complete request arrived. */
  onMessage: (msg: XsMsg) => void = () => undefined;
  /** The domain broke the protocol and was disconnected. */
  onDisconnect: (reason: string) => void = () => undefined;
  /** The domain reset its ring: drop its watches and transactions. */
  onReconnect: () => void = () => undefined;

  private readonly decoder = new FrameDecoder();
  private readonly queue: Pending[] = [];
  private outstanding = 0;
  private queuedBytes = 0;
  private readonly maxQueuedBytes: number;
  private dead = false;
  private closed = false;
  private busy = false;
  private again = false;
  private signal = false;
  private readonly maxOutstanding: number;
  private readonly reqAt: number;
  private readonly rspAt: number;

  constructor(
    private readonly mem: ByteMem,
    private readonly base: number,
    private readonly notify: () => void,
    readonly domid: DomId,
    opts: RingOptions = {},
  ) {
    this.maxOutstanding = opts.maxOutstanding ?? 20;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    const v = this.view();
    // Offsets within the page: every access below adds `base` itself.
    this.reqAt = v.addr('req') - base;
    this.rspAt = v.addr('rsp') - base;
    v.set('server_features', v.get('server_features') | XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR);
    if (v.get('connection') === XENSTORE_RECONNECT) {
      v.set('connection', XENSTORE_CONNECTED);
      this.notify();
    }
  }

  /** Disconnected for a protocol violation (until the domain reconnects). */
  get disconnected(): boolean {
    return this.dead;
  }

  /** Messages waiting for room in the response ring. */
  get queued(): number {
    return this.queue.length;
  }

  /** The guest signalled: take its requests, give it what is queued. */
  kick(): void {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      let moved: boolean;
      do {
        this.again = false;
        if (this.view().get('connection') === XENSTORE_RECONNECT) this.reconnect();
        if (this.dead) break;
        this.flush();
        moved = this.readRequests();
        this.flush();
      } while ((moved || this.again) && !this.dead && !this.closed);
    } finally {
      this.busy = false;
    }
    this.signalGuest();
  }

  send(msg: XsMsg): void {
    if (this.dead || this.closed) return;
    const event = msg.type === XS_WATCH_EVENT;
    const bytes = encodeMsg(msg);
    // A domain that stops reading loses events, not the server's memory.
    if (event && (this.queuedBytes + bytes.length > this.maxQueuedBytes || this.duplicateEvent(bytes))) return;
    this.queue.push({ bytes, written: 0, reply: !event });
    this.queuedBytes += bytes.length;
    if (!event) this.outstanding += 1;
    if (this.busy) return;
    this.flush();
    this.signalGuest();
  }

  /** Start over (re-introduction): empty rings, nothing queued, no error. */
  reset(): void {
    this.decoder.reset();
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.outstanding = 0;
    this.dead = false;
    const v = this.view();
    v.set('req_cons', 0);
    v.set('req_prod', 0);
    v.set('rsp_cons', 0);
    v.set('rsp_prod', 0);
    v.set('error', XENSTORE_ERROR_NONE);
    v.set('connection', XENSTORE_CONNECTED);
    this.signal = true;
    if (!this.busy) this.signalGuest();
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private view() {
    return xenstore_domain_interface.view(this.mem, this.base);
  }

  private reconnect(): void {
    this.reset();
    this.onReconnect();
  }

  private disconnect(error: number, reason: string): void {
    if (this.dead) return;
    this.dead = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.outstanding = 0;
    this.view().set('error', error);
    this.signal = true;
    this.onDisconnect(reason);
  }

  /** xenstored drops a non-special event identical to one still waiting to be sent. */
  private duplicateEvent(bytes: Uint8Array): boolean {
    if (bytes[XS_HEADER_SIZE] === 0x40 /* '@' */) return false;
    return this.queue.some((p) => !p.reply && p.written === 0 && p.bytes.length === bytes.length && p.bytes.every((b, i) => b === bytes[i]));
  }

  /** Take requests until the ring is empty or too many replies wait; true if anything was taken. */
  private readRequests(): boolean {
    const v = this.view();
    let moved = false;
    while (!this.dead && !this.closed) {
      if (this.decoder.atBoundary && this.outstanding >= this.maxOutstanding) return moved;
      const cons = v.get('req_cons');
      const prod = v.get('req_prod');
      const avail = (prod - cons) >>> 0;
      if (avail > XENSTORE_RING_SIZE) {
        this.disconnect(XENSTORE_ERROR_RINGIDX, `request ring indices cons=${cons} prod=${prod}`);
        return moved;
      }
      if (avail === 0) return moved;
      const at = MASK_XENSTORE_IDX(cons);
      const n = Math.min(avail, this.decoder.need(), XENSTORE_RING_SIZE - at);
      const bytes = this.mem.readBytes(this.base + this.reqAt + at, n);
      v.set('req_cons', (cons + n) >>> 0);
      this.signal = true;
      moved = true;
      const { event } = this.decoder.push(bytes);
      if (event?.kind === 'oversize') {
        this.disconnect(XENSTORE_ERROR_PROTO, `message of ${event.header.len} bytes`);
        return moved;
      }
      if (event?.kind === 'msg') this.onMessage(event.msg);
    }
    return moved;
  }

  private flush(): void {
    const v = this.view();
    while (!this.dead && !this.closed) {
      const head = this.queue[0];
      if (head === undefined) return;
      const cons = v.get('rsp_cons');
      const prod = v.get('rsp_prod');
      const used = (prod - cons) >>> 0;
      if (used > XENSTORE_RING_SIZE) {
        this.disconnect(XENSTORE_ERROR_RINGIDX, `response ring indices cons=${cons} prod=${prod}`);
        return;
      }
      const at = MASK_XENSTORE_IDX(prod);
      const n = Math.min(XENSTORE_RING_SIZE - used, XENSTORE_RING_SIZE - at, head.bytes.length - head.written);
      if (n === 0) return;
      this.mem.writeBytes(this.base + this.rspAt + at, head.bytes.subarray(head.written, head.written + n));
      v.set('rsp_prod', (prod + n) >>> 0);
      this.signal = true;
      head.written += n;
      if (head.written === head.bytes.length) {
        this.queue.shift();
        this.queuedBytes -= head.bytes.length;
        if (head.reply) this.outstanding -= 1;
      }
    }
  }

  private signalGuest(): void {
    if (!this.signal || this.closed) return;
    this.signal = false;
    this.notify();
  }
}
