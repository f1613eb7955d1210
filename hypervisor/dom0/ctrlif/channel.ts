/*
 * The domain controller's side of one guest's control_if_t: the ring
 * arithmetic and flow control, with no promises, timers or event channels.
 *
 * Two rings of 8 slots, four shared free-running u32 indices:
 *   tx_ring  guest -> dom0 requests. The guest advances tx_req_prod; dom0
 *            answers each request in its own slot and advances
 *            tx_resp_prod. dom0 answers as it takes, so its private
 *            consumer equals tx_resp_prod.
 *   rx_ring  dom0 -> guest requests. dom0 advances rx_req_prod (kept
 *            privately, never read back); the guest answers in the slots,
 *            in order, and advances rx_resp_prod. dom0 may only send while
 *            fewer than 8 of its requests are unanswered.
 *
 * Shared indices are read once per step and checked against what the
 * protocol allows: more than 8 guest requests outstanding, or more
 * answers than dom0 asked for, is an error value (the controller then
 * stops serving the domain).
 */
import { CONTROL_RING_SIZE } from '../../public/domain_controller.js';
import type { Outcome } from '../console/env.js';
import type { CtrlIfPage, CtrlMsg, SlotRead } from './wire.js';

export class CtrlIfChannel {
  private constructor(
    readonly page: CtrlIfPage,
    /** Next guest request to take (== the tx_resp_prod dom0 last wrote). */
    private txReqCons: number,
    /** dom0's rx_req_prod. */
    private rxReqProd: number,
    /** Guest answers taken so far. */
    private rxRespCons: number,
  ) {}

  /**
   * Take over a page as it is: a fresh one (all zero) at boot, or the
   * guest's saved one after a restore, where requests may be waiting on
   * either side. Indices that no correct peer could have left are an error.
   */
  static attach(page: CtrlIfPage): Outcome<CtrlIfChannel> {
    const v = page.view();
    const txReqProd = v.get('tx_req_prod');
    const txRespProd = v.get('tx_resp_prod');
    const rxReqProd = v.get('rx_req_prod');
    const rxRespProd = v.get('rx_resp_prod');
    const txOut = (txReqProd - txRespProd) >>> 0;
    if (txOut > CONTROL_RING_SIZE) {
      return { ok: false, error: `tx_req_prod ${txReqProd} is ${txOut} past tx_resp_prod ${txRespProd} (ring of ${CONTROL_RING_SIZE})` };
    }
    const rxOut = (rxReqProd - rxRespProd) >>> 0;
    if (rxOut > CONTROL_RING_SIZE) {
      return { ok: false, error: `rx_req_prod ${rxReqProd} is ${rxOut} past rx_resp_prod ${rxRespProd} (ring of ${CONTROL_RING_SIZE})` };
    }
    return { ok: true, value: new CtrlIfChannel(page, txRespProd, rxReqProd, rxRespProd) };
  }

  /** dom0 requests in the ring and not answered yet. */
  get outstanding(): number {
    return (this.rxReqProd - this.rxRespCons) >>> 0;
  }

  /** Slots free for new dom0 requests. */
  get space(): number {
    return CONTROL_RING_SIZE - this.outstanding;
  }

  /** Put one dom0 request on rx_ring; false (nothing written) when the ring is full. */
  send(msg: CtrlMsg): boolean {
    if (this.space === 0) return false;
    this.page.writeSlot('rx_ring', this.rxReqProd, msg);
    // The message is in place before the guest may see the index move.
    this.rxReqProd = (this.rxReqProd + 1) >>> 0;
    this.page.view().set('rx_req_prod', this.rxReqProd);
    return true;
  }

  /** Take the guest's answers to dom0's requests, oldest first. */
  takeResponses(): Outcome<SlotRead[]> {
    const prod = this.page.view().get('rx_resp_prod');
    const n = (prod - this.rxRespCons) >>> 0;
    if (n > this.outstanding) {
      return { ok: false, error: `rx_resp_prod ${prod} answers ${n} requests but only ${this.outstanding} are outstanding (rx_req_prod ${this.rxReqProd})` };
    }
    const out: SlotRead[] = [];
    for (let i = 0; i < n; i++) {
      out.push(this.page.readSlot('rx_ring', this.rxRespCons));
      this.rxRespCons = (this.rxRespCons + 1) >>> 0;
    }
    return { ok: true, value: out };
  }

  /**
   * Answer every waiting guest request in its own slot with what `answer`
   * returns, then publish tx_resp_prod. The number answered.
   */
  serveRequests(answer: (req: SlotRead) => CtrlMsg): Outcome<number> {
    const prod = this.page.view().get('tx_req_prod');
    const n = (prod - this.txReqCons) >>> 0;
    if (n > CONTROL_RING_SIZE) {
      return { ok: false, error: `tx_req_prod jumped to ${prod}: ${n} requests past tx_resp_prod ${this.txReqCons} (ring of ${CONTROL_RING_SIZE})` };
    }
    for (let i = 0; i < n; i++) {
      const req = this.page.readSlot('tx_ring', this.txReqCons);
      this.page.writeSlot('tx_ring', this.txReqCons, answer(req));
      this.txReqCons = (this.txReqCons + 1) >>> 0;
    }
    if (n > 0) this.page.view().set('tx_resp_prod', this.txReqCons);
    return { ok: true, value: n };
  }
}
