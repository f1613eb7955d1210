/*
 * The guest's end of a store ring, for tests and the benchmark: writes
 * requests into the request ring (waiting for room, splitting at the ring's
 * end), reads replies and events from the response ring, and signals the
 * server through `kickServer` (the event channel stand-in). The real guest
 * driver lives in the kernel; this one only exists to drive xenstored.
 */
import type { ByteMem } from '../../public/layout.js';
import { MASK_XENSTORE_IDX, XENSTORE_RING_SIZE, xenstore_domain_interface } from '../../public/io/xs_wire.js';
import { encodeMsg, FrameDecoder, type XsMsg } from './wire.js';

export class XsRingFront {
  /** A reply or event arrived. */
  onMessage: (msg: XsMsg) => void = () => undefined;
  private readonly decoder = new FrameDecoder();
  private readonly outq: Uint8Array[] = [];
  private outOff = 0;
  private pumping = false;
  private again = false;
  private readonly reqAt: number;
  private readonly rspAt: number;

  constructor(
    private readonly mem: ByteMem,
    private readonly base: number,
    private readonly kickServer: () => void,
  ) {
    const v = this.view();
    // Offsets within the page: every access below adds `base` itself.
    this.reqAt = v.addr('req') - base;
    this.rspAt = v.addr('rsp') - base;
  }

  send(msg: XsMsg): void {
    this.outq.push(encodeMsg(msg));
    this.pump();
  }

  /** The server signalled. */
  notified(): void {
    this.pump();
  }

  private view() {
    return xenstore_domain_interface.view(this.mem, this.base);
  }

  /** Move bytes both ways until nothing moves; a signal arriving meanwhile just asks for another pass. */
  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      this.pass();
    } finally {
      this.pumping = false;
    }
  }

  private pass(): void {
    let signal = false;
    for (let progress = true; progress || this.again;) {
      progress = false;
      this.again = false;
      const v = this.view();
      // Requests: as much as the ring has room for.
      for (let head = this.outq[0]; head !== undefined; head = this.outq[0]) {
        const cons = v.get('req_cons');
        const prod = v.get('req_prod');
        const room = XENSTORE_RING_SIZE - ((prod - cons) >>> 0);
        if (room <= 0) break;
        const at = MASK_XENSTORE_IDX(prod);
        const n = Math.min(room, XENSTORE_RING_SIZE - at, head.length - this.outOff);
        this.mem.writeBytes(this.base + this.reqAt + at, head.subarray(this.outOff, this.outOff + n));
        v.set('req_prod', (prod + n) >>> 0);
        this.outOff += n;
        signal = true;
        progress = true;
        if (this.outOff === head.length) {
          this.outq.shift();
          this.outOff = 0;
        }
      }
      // Replies and events.
      const received: XsMsg[] = [];
      for (;;) {
        const cons = v.get('rsp_cons');
        const prod = v.get('rsp_prod');
        const avail = (prod - cons) >>> 0;
        if (avail === 0 || avail > XENSTORE_RING_SIZE) break;
        const at = MASK_XENSTORE_IDX(cons);
        const n = Math.min(avail, XENSTORE_RING_SIZE - at);
        const bytes = this.mem.readBytes(this.base + this.rspAt + at, n);
        v.set('rsp_cons', (cons + n) >>> 0);
        signal = true;
        progress = true;
        for (const ev of this.decoder.pushAll(bytes)) if (ev.kind === 'msg') received.push(ev.msg);
      }
      if (signal) {
        signal = false;
        this.kickServer();
      }
      for (const m of received) this.onMessage(m);
    }
  }
}
