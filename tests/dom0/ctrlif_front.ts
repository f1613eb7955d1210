/*
 * A guest's ctrl_if, reduced to the ring discipline of Xen 2.0's guest
 * driver: private tx_resp_cons and rx_req_cons, TX_FULL when 8 requests
 * are unanswered, answers written at rx_resp_prod. Written against the
 * public layout, not the controller's own slot code.
 */
import type { ByteMem } from '../../hypervisor/public/layout.js';
import { CONTROL_MSG_PAYLOAD, CONTROL_RING_SIZE, MASK_CONTROL_IDX, control_if } from '../../hypervisor/public/domain_controller.js';

export interface Msg {
  type: number;
  subtype: number;
  id: number;
  payload: number[];
}

export class CtrlIfFront {
  txRespCons = 0;
  rxReqCons = 0;

  constructor(readonly mem: ByteMem) {}

  view() {
    return control_if.view(this.mem, 0);
  }

  /** Start every shared and private index at `idx`. */
  setIndices(idx: number): void {
    const v = this.view();
    for (const f of ['tx_req_prod', 'tx_resp_prod', 'rx_req_prod', 'rx_resp_prod'] as const) v.set(f, idx >>> 0);
    this.txRespCons = this.rxReqCons = idx >>> 0;
  }

  private writeMsg(ring: 'tx_ring' | 'rx_ring', idx: number, m: Msg, length = m.payload.length): void {
    const s = this.view().sub(ring, MASK_CONTROL_IDX(idx));
    s.set('type', m.type);
    s.set('subtype', m.subtype);
    s.set('id', m.id);
    s.set('length', length);
    for (let i = 0; i < CONTROL_MSG_PAYLOAD; i++) s.setAt('msg', i, m.payload[i] ?? 0);
  }

  private readMsg(ring: 'tx_ring' | 'rx_ring', idx: number): Msg {
    const s = this.view().sub(ring, MASK_CONTROL_IDX(idx));
    const length = Math.min(s.get('length'), CONTROL_MSG_PAYLOAD);
    const payload: number[] = [];
    for (let i = 0; i < length; i++) payload.push(s.getAt('msg', i));
    return { type: s.get('type'), subtype: s.get('subtype'), id: s.get('id'), payload };
  }

  /** ctrl_if_send_message_noblock: false when TX_FULL. `length` overrides the header's length. */
  send(m: Msg, length?: number): boolean {
    const v = this.view();
    const prod = v.get('tx_req_prod');
    if (((prod - this.txRespCons) >>> 0) === CONTROL_RING_SIZE) return false;
    this.writeMsg('tx_ring', prod, m, length);
    v.set('tx_req_prod', (prod + 1) >>> 0);
    return true;
  }

  /** Answers dom0 wrote to our requests. */
  takeResponses(): Msg[] {
    const prod = this.view().get('tx_resp_prod');
    const out: Msg[] = [];
    while (this.txRespCons !== prod) {
      out.push(this.readMsg('tx_ring', this.txRespCons));
      this.txRespCons = (this.txRespCons + 1) >>> 0;
    }
    return out;
  }

  /** Requests dom0 sent us. */
  takeRequests(): Msg[] {
    const prod = this.view().get('rx_req_prod');
    const out: Msg[] = [];
    while (this.rxReqCons !== prod) {
      out.push(this.readMsg('rx_ring', this.rxReqCons));
      this.rxReqCons = (this.rxReqCons + 1) >>> 0;
    }
    return out;
  }

  /** ctrl_if_send_response: answer at rx_resp_prod. */
  respond(m: Msg): void {
    const v = this.view();
    const prod = v.get('rx_resp_prod');
    this.writeMsg('rx_ring', prod, m);
    v.set('rx_resp_prod', (prod + 1) >>> 0);
  }
}
