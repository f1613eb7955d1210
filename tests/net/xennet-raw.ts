/*
 * A test-local netif backend written against the public ring ABI only
 * (io/ring.h + io/netif.h layouts), over the fixture's backend host: it
 * maps the frontend's rings, reads requests, writes responses (honest or
 * not) and signals the frontend. For driver tests that need to see the
 * exact requests, or to misbehave on purpose.
 */
import { BackRing } from '../../hypervisor/public/io/ring.js';
import {
  netif_tx_request, netif_tx_response, netif_rx_request, netif_rx_response, NETIF_RSP_OKAY,
} from '../../hypervisor/public/io/netif.js';
import type { ByteMem } from '../../hypervisor/public/layout.js';
import { domid as toDomId, type GrantRef, type EvtchnPort } from '../../hypervisor/public/types.js';
import type { BoundChannel } from '../../hypervisor/dom0/backend-host.js';
import { XENNET_TX_GEOMETRY, XENNET_RX_GEOMETRY } from '../../arch/xen/xen/xennet_wire.js';
import { XN_STATE_CONNECTED } from '../../arch/xen/xen/xennet_var.js';
import { DOMID, FE, xnState, type NetWorld } from './xennet-fixture.js';

export interface RawTxRequest {
  readonly gref: number;
  readonly offset: number;
  readonly flags: number;
  readonly id: number;
  readonly size: number;
  /** The bytes of this slot, copied through the grant (undefined: the grant was refused). */
  readonly data: Uint8Array | undefined;
}

export interface RawRxRequest {
  readonly id: number;
  readonly gref: number;
}

export class RawBack {
  tx!: BackRing;
  rx!: BackRing;
  txMem!: ByteMem;
  rxMem!: ByteMem;
  chan!: BoundChannel;
  port = 0;
  kicks = 0;
  /** RX buffers posted and not yet used, oldest first. */
  readonly posted: RawRxRequest[] = [];

  constructor(readonly w: NetWorld) {}

  /** Wait for Initialised, map both rings, bind the port, say Connected; wait for the frontend to be connected. */
  async connect(): Promise<void> {
    const w = this.w;
    if (!(await w.run(20000, async () => (await w.dom0.read(`${FE}/state`).catch(() => '')) === '3'))) {
      throw new Error(`frontend never reached Initialised:\n${w.console()}`);
    }
    const node = async (k: string): Promise<number> => Number(await w.dom0.read(`${FE}/${k}`));
    const txr = w.host.mapRing(toDomId(DOMID), (await node('tx-ring-ref')) as GrantRef);
    const rxr = w.host.mapRing(toDomId(DOMID), (await node('rx-ring-ref')) as GrantRef);
    if (!txr.ok || !rxr.ok) throw new Error('cannot map the rings');
    this.txMem = txr.value.mem;
    this.rxMem = rxr.value.mem;
    this.tx = BackRing.init(this.txMem, 0, XENNET_TX_GEOMETRY);
    this.rx = BackRing.init(this.rxMem, 0, XENNET_RX_GEOMETRY);
    this.port = await node('event-channel');
    const b = w.host.bindEventChannel(toDomId(DOMID), this.port as EvtchnPort, () => { this.kicks++; });
    if (!b.ok) throw new Error(b.error);
    this.chan = b.value;
    await w.setBackendState(4);
    if (!(await w.run(20000, () => xnState(w) === XN_STATE_CONNECTED))) throw new Error(`frontend did not connect:\n${w.console()}`);
  }

  /** Take every TX request published so far. */
  txRequests(): RawTxRequest[] {
    const out: RawTxRequest[] = [];
    const n = this.tx.unconsumedRequests();
    if (!n.ok) throw new Error(n.error);
    for (let i = 0; i < n.value; i++) {
      const v = netif_tx_request.view(this.txMem, this.tx.consumeRequest());
      const r = { gref: v.get('gref'), offset: v.get('offset'), flags: v.get('flags'), id: v.get('id'), size: v.get('size') };
      out.push({ ...r, data: undefined });
    }
    // Data: each slot holds `size` bytes except the first of a chain, whose size is the whole packet.
    const res: RawTxRequest[] = [];
    for (let i = 0; i < out.length; i++) {
      const r = out[i] as RawTxRequest;
      let len = r.size;
      if ((r.flags & 4) !== 0 && (i === 0 || ((out[i - 1] as RawTxRequest).flags & 4) === 0)) {
        let rest = 0;
        for (let k = i + 1; k < out.length; k++) {
          rest += (out[k] as RawTxRequest).size;
          if (((out[k] as RawTxRequest).flags & 4) === 0) break;
        }
        len = r.size - rest;
      }
      const c = this.w.host.grants.copyFromGrant(toDomId(DOMID), r.gref as GrantRef, r.offset, len);
      res.push({ ...r, data: c.ok ? c.value : undefined });
    }
    return res;
  }

  /** Answer TX request `id`. */
  txRespond(id: number, status = NETIF_RSP_OKAY): void {
    const v = netif_tx_response.view(this.txMem, this.tx.produceResponse());
    v.set('id', id);
    v.set('status', status);
  }

  pushTx(): void {
    if (this.tx.pushResponses()) this.chan.notify();
  }

  /** Take every RX request (posted buffer) published so far. */
  takePosted(): RawRxRequest[] {
    const n = this.rx.unconsumedRequests();
    if (!n.ok) throw new Error(n.error);
    for (let i = 0; i < n.value; i++) {
      const v = netif_rx_request.view(this.rxMem, this.rx.consumeRequest());
      this.posted.push({ id: v.get('id'), gref: v.get('gref') });
    }
    return this.posted;
  }

  /** Copy `data` into the oldest posted buffer and answer it (flags e.g. NETRXF_more_data). */
  rxFill(data: Uint8Array, flags = 0, offset = 0, override?: { id?: number; status?: number }): void {
    this.takePosted();
    const b = this.posted.shift();
    if (b === undefined) throw new Error('no RX buffer posted');
    if (data.length > 0) {
      const c = this.w.host.grants.copyToGrant(toDomId(DOMID), b.gref as GrantRef, offset, data);
      if (!c.ok) throw new Error(c.error);
    }
    const v = netif_rx_response.view(this.rxMem, this.rx.produceResponse());
    v.set('id', override?.id ?? b.id);
    v.set('offset', offset);
    v.set('flags', flags);
    v.set('status', override?.status ?? data.length);
  }

  pushRx(): void {
    if (this.rx.pushResponses()) this.chan.notify();
  }

  /** A whole frame into one buffer, published. */
  deliver(frame: Uint8Array): void {
    this.rxFill(frame);
    this.pushRx();
  }

  /** Write raw bytes over the shared index `rsp_prod` of a ring (hostile). */
  setRspProd(ring: 'tx' | 'rx', value: number): void {
    (ring === 'tx' ? this.txMem : this.rxMem).setUint32(8, value >>> 0, true);
  }

  /** Signal the frontend without publishing anything. */
  notify(): void {
    this.chan.notify();
  }
}
