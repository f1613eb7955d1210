/*
 * xennet, transport layer: the TX and RX rings (one granted page each), the
 * grants that carry packets, the RX buffer pages, and the event channel
 * both rings share. The xenbus handshake is if_xennet_xenbus.ts.
 *
 * Rings are FrontRing views (hypervisor/public/io/ring.ts) rebuilt on every
 * use from the private indices in the softc and stored back before anything
 * else can run (delivering a frame may send a reply on the TX ring).
 *
 * TX: a packet is cut at page boundaries, one slot per piece, each piece's
 * page granted read-only to the backend, NETTXF_more_data on all but the
 * last; the first slot's size is the whole packet's (netif.h). A TX id is
 * a slot's entry in sc_txreq, which remembers the grant and, on the last
 * slot, the mbuf; the response gives both back.
 *
 * RX: copy mode (request-rx-copy). XENNET_RX_NBUF pages are posted, each
 * granted writable for as long as the backend holds it; the backend copies
 * a frame into one (or several, NETRXF_more_data) and answers. Each
 * answered page is taken back, its bytes copied into an mbuf, and posted
 * again with a new grant.
 *
 * Responses are hostile input. A backend that pushes rsp_prod past what we
 * asked, answers an id we never sent or no longer have in flight, announces
 * extra-info slots we never negotiated, or still maps a page it has
 * answered for, gets the interface disconnected (xennet_fail). A frame
 * whose offset/size leave its page is dropped and counted; that costs the
 * frame, not the connection.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { FrontRing } from '../../../hypervisor/public/io/ring.js';
import { NETRXF_more_data, NETIF_RSP_OKAY, NETIF_RSP_NULL, XEN_NETIF_MAX_TX_SIZE } from '../../../hypervisor/public/io/netif.js';
import { EBUSY, ENOMEM } from '../../../hypervisor/public/errno.js';
import { PAGE_SIZE } from '../../../hypervisor/public/types.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { uvm_pagealloc } from '../../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../../sys/uvm/uvm.js';
import { wakeup } from '../../../sys/kern/kern_synch.js';
import { device_xname } from '../../../sys/kern/subr_autoconf.js';
import { strlcpy, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { m_get, m_free, m_len, mtod, m_append, mbuf_view } from '../../../sys/net/mbuf.js';
import { if_dequeue, if_prepend, if_setflags, if_stat_add, IFF_OACTIVE } from '../../../sys/net/if.js';
import { xpmap_kva_to_mfn } from '../x86/x86_xpmap.js';
import { xengnt_grant_access, xengnt_revoke_access } from './xengnt.js';
import {
  evtchn_alloc_unbound, evtchn_close, event_set_handler, event_remove_handler, hypervisor_unmask_event,
  hypervisor_mask_event, hypervisor_notify_via_evtchn, evtsource_addr,
} from './evtchn.js';
import { evtsource } from '../include/evtchn.js';
import {
  xennet_tx_req_encode, xennet_rx_req_encode, xennet_tx_rsp_decode, xennet_rx_rsp_decode, xennet_rx_rsp_fits,
  xennet_tx_segments, xennet_tx_req_for, XENNET_TX_GEOMETRY, XENNET_RX_GEOMETRY, XENNET_TX_RING_SIZE, type RxResponse,
} from './xennet_wire.js';
import {
  xennet_xenbus_softc, xennet_txreq, xennet_rxreq, xennet_txreq_addr, xennet_rxreq_addr, XENNET_RX_NBUF, XN_NOREF,
  XN_STATE_CONNECTED, XNF_RING_LOST, XNF_RX_DISCARD, SC_TX_FREE, type XennetSoftcView,
} from './xennet_var.js';

const dbg = createDebug('guest:xennet');

export function xennet_view(cpu: GuestCpu, sc: number): XennetSoftcView {
  return xennet_xenbus_softc.view(cpu.mem, sc);
}

function xennet_tx_ring(cpu: GuestCpu, sc: number): FrontRing {
  const v = xennet_view(cpu, sc);
  return FrontRing.attach(cpu.mem, vptr(v, 'sc_tx_ring'), XENNET_TX_GEOMETRY, { reqProdPvt: v.get('sc_tx_prod_pvt'), rspCons: v.get('sc_tx_rsp_cons') });
}

function xennet_tx_save(cpu: GuestCpu, sc: number, ring: FrontRing): void {
  const v = xennet_view(cpu, sc);
  v.set('sc_tx_prod_pvt', ring.reqProdPvt);
  v.set('sc_tx_rsp_cons', ring.rspCons);
}

function xennet_rx_ring(cpu: GuestCpu, sc: number): FrontRing {
  const v = xennet_view(cpu, sc);
  return FrontRing.attach(cpu.mem, vptr(v, 'sc_rx_ring'), XENNET_RX_GEOMETRY, { reqProdPvt: v.get('sc_rx_prod_pvt'), rspCons: v.get('sc_rx_rsp_cons') });
}

function xennet_rx_save(cpu: GuestCpu, sc: number, ring: FrontRing): void {
  const v = xennet_view(cpu, sc);
  v.set('sc_rx_prod_pvt', ring.reqProdPvt);
  v.set('sc_rx_rsp_cons', ring.rspCons);
}

function xennet_bump(v: XennetSoftcView, name: 'sc_ntx_slots' | 'sc_ntx_done' | 'sc_nrx_frames' | 'sc_nrx_dropped' | 'sc_nrx_bad' | 'sc_nnotify' | 'sc_nrequeued' | 'sc_nintr', n = 1): void {
  vu64_set(v, name, vu64(v, name) + n);
}

/** Every TX id free, no packet in flight (the table is ours alone). */
function xennet_tx_reset(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  for (let id = 0; id < XENNET_TX_RING_SIZE; id++) {
    const t = xennet_txreq.view(cpu.mem, xennet_txreq_addr(sc, id));
    vptr_set(t, 'txr_m', 0);
    t.set('txr_gntref', XN_NOREF);
    t.set('txr_seq', 0);
    // Stack of free ids, lowest on top.
    cpu.mem.setUint16(sc + SC_TX_FREE + 2 * id, XENNET_TX_RING_SIZE - 1 - id, true);
  }
  v.set('sc_tx_nfree', XENNET_TX_RING_SIZE);
}

/** First use of a softc: nothing granted, no pages. */
export function xennet_softc_init(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  v.set('sc_tx_ring_gntref', XN_NOREF);
  v.set('sc_rx_ring_gntref', XN_NOREF);
  xennet_tx_reset(cpu, sc);
  for (let id = 0; id < XENNET_RX_NBUF; id++) {
    const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, id));
    r.set('rxr_gntref', XN_NOREF);
    r.set('rxr_posted', 0);
  }
}

/** The ring pages and RX buffers, allocated once (again only for pages a backend kept). */
function xennet_pages_alloc(cpu: GuestCpu, sc: number): number {
  const v = xennet_view(cpu, sc);
  if (v.get('sc_flags') & XNF_RING_LOST) {
    vptr_set(v, 'sc_tx_ring', 0);
    vptr_set(v, 'sc_rx_ring', 0);
    v.set('sc_flags', v.get('sc_flags') & ~XNF_RING_LOST);
  }
  for (const name of ['sc_tx_ring', 'sc_rx_ring'] as const) {
    if (vptr(v, name) !== 0) continue;
    const page = uvm_pagealloc(cpu, UVM_KMF_ZERO);
    if (page === 0) return -ENOMEM;
    vptr_set(v, name, page);
  }
  for (let id = 0; id < XENNET_RX_NBUF; id++) {
    const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, id));
    if (vptr(r, 'rxr_page') !== 0) continue;
    const page = uvm_pagealloc(cpu, 0);
    if (page === 0) return -ENOMEM;
    vptr_set(r, 'rxr_page', page);
  }
  return 0;
}

/**
 * A fresh connection's transport: both ring pages initialized and granted,
 * every RX buffer posted (the backend sees them once it maps the ring), an
 * unbound port for the backend with our handler, unmasked. 0, or a
 * negative errno with nothing held.
 */
export function xennet_rings_setup(cpu: GuestCpu, sc: number): number {
  const v = xennet_view(cpu, sc);
  const backend = v.get('sc_backend_id');
  const rc = xennet_pages_alloc(cpu, sc);
  if (rc < 0) return rc;
  const tx = FrontRing.init(cpu.mem, vptr(v, 'sc_tx_ring'), XENNET_TX_GEOMETRY);
  const rx = FrontRing.init(cpu.mem, vptr(v, 'sc_rx_ring'), XENNET_RX_GEOMETRY);
  xennet_tx_save(cpu, sc, tx);
  xennet_rx_save(cpu, sc, rx);
  xennet_tx_reset(cpu, sc);
  v.set('sc_flags', v.get('sc_flags') & ~XNF_RX_DISCARD);
  const txref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, vptr(v, 'sc_tx_ring')), false);
  if (txref < 0) return txref;
  const rxref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, vptr(v, 'sc_rx_ring')), false);
  if (rxref < 0) {
    xengnt_revoke_access(cpu, txref);
    return rxref;
  }
  v.set('sc_tx_ring_gntref', txref);
  v.set('sc_rx_ring_gntref', rxref);
  const port = evtchn_alloc_unbound(cpu, backend);
  if (port < 0) {
    xennet_rings_teardown(cpu, sc);
    return port;
  }
  const dev = vptr(v, 'sc_dev');
  const hrc = event_set_handler(cpu, port, 'xennet_xenbus_intr', sc, dev === 0 ? 'xennet' : device_xname(cpu, dev));
  if (hrc < 0) {
    evtchn_close(cpu, port);
    xennet_rings_teardown(cpu, sc);
    return hrc;
  }
  v.set('sc_evtchn', port);
  if (xennet_rx_refill(cpu, sc) < 0) {
    xennet_rings_teardown(cpu, sc);
    return -ENOMEM;
  }
  hypervisor_unmask_event(cpu, port);
  if (dbg.enabled) dbg('sc %s: tx ref %d rx ref %d port %d', sc.toString(16), txref, rxref, port);
  return 0;
}

/** Take a grant back; false when the backend still maps the page (it is then left to it). */
function xennet_revoke(cpu: GuestCpu, ref: number): boolean {
  if (ref === XN_NOREF) return true;
  return xengnt_revoke_access(cpu, ref) !== -EBUSY;
}

/**
 * Tear a connection down in this domain: close the port, take every grant
 * back, free the packets in flight and the frame half put together. A page
 * the backend still maps is abandoned (a new one is allocated next time).
 */
export function xennet_rings_teardown(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  const port = v.get('sc_evtchn');
  if (port !== 0) {
    event_remove_handler(cpu, port);
    evtchn_close(cpu, port);
    v.set('sc_evtchn', 0);
  }
  for (let id = 0; id < XENNET_TX_RING_SIZE; id++) {
    const t = xennet_txreq.view(cpu.mem, xennet_txreq_addr(sc, id));
    xennet_revoke(cpu, t.get('txr_gntref'));
    const m = vptr(t, 'txr_m');
    if (m !== 0) m_free(cpu, m);
  }
  xennet_tx_reset(cpu, sc);
  for (let id = 0; id < XENNET_RX_NBUF; id++) {
    const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, id));
    if (r.get('rxr_posted') !== 0 && !xennet_revoke(cpu, r.get('rxr_gntref'))) vptr_set(r, 'rxr_page', 0);
    r.set('rxr_gntref', XN_NOREF);
    r.set('rxr_posted', 0);
  }
  v.set('sc_rx_nposted', 0);
  const lost = !xennet_revoke(cpu, v.get('sc_tx_ring_gntref')) || !xennet_revoke(cpu, v.get('sc_rx_ring_gntref'));
  if (lost) v.set('sc_flags', v.get('sc_flags') | XNF_RING_LOST);
  v.set('sc_tx_ring_gntref', XN_NOREF);
  v.set('sc_rx_ring_gntref', XN_NOREF);
  xennet_rx_drop_partial(cpu, sc);
}

/**
 * After a restore: every grant ref and port of the old domain is void, so
 * nothing is revoked or closed, only forgotten. Packets that were in flight
 * go back to the head of the send queue, in the order they were sent.
 */
export function xennet_rings_forget(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  const port = v.get('sc_evtchn');
  const ev = port === 0 ? 0 : evtsource_addr(cpu, port);
  // Our own stale record (if resume left it): drop the handler so it cannot fire for someone else.
  if (ev !== 0 && vptr(evtsource.view(cpu.mem, ev), 'ev_arg') === sc) event_remove_handler(cpu, port);
  v.set('sc_evtchn', 0);
  const inflight: { seq: number; m: number }[] = [];
  for (let id = 0; id < XENNET_TX_RING_SIZE; id++) {
    const t = xennet_txreq.view(cpu.mem, xennet_txreq_addr(sc, id));
    const m = vptr(t, 'txr_m');
    if (m !== 0) inflight.push({ seq: t.get('txr_seq'), m });
  }
  inflight.sort((a, b) => b.seq - a.seq);
  for (const p of inflight) if_prepend(cpu, sc, p.m);
  xennet_bump(v, 'sc_nrequeued', inflight.length);
  xennet_tx_reset(cpu, sc);
  for (let id = 0; id < XENNET_RX_NBUF; id++) {
    const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, id));
    r.set('rxr_gntref', XN_NOREF);
    r.set('rxr_posted', 0);
  }
  v.set('sc_rx_nposted', 0);
  v.set('sc_tx_ring_gntref', XN_NOREF);
  v.set('sc_rx_ring_gntref', XN_NOREF);
  xennet_rx_drop_partial(cpu, sc);
}

/** Stop (or restart) taking events: the port stays ours, events stay pending. */
export function xennet_mask(cpu: GuestCpu, sc: number, masked: boolean): void {
  const port = xennet_view(cpu, sc).get('sc_evtchn');
  if (port === 0) return;
  if (masked) hypervisor_mask_event(cpu, port);
  else hypervisor_unmask_event(cpu, port);
}

export function xennet_notify(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  const port = v.get('sc_evtchn');
  if (port === 0) return;
  xennet_bump(v, 'sc_nnotify');
  hypervisor_notify_via_evtchn(cpu, port);
}

// ---------------------------------------------------------------------------
// TX

/** The address a suspend waits on for the TX ring to empty. */
export function xennet_drain_wchan(sc: number): number {
  return sc + xennet_xenbus_softc.offsetOf('sc_tx_rsp_cons');
}

/** No TX request is waiting for its response. */
export function xennet_tx_drained(cpu: GuestCpu, sc: number): boolean {
  const v = xennet_view(cpu, sc);
  return v.get('sc_tx_nfree') === XENNET_TX_RING_SIZE;
}

function xennet_tx_pop(cpu: GuestCpu, sc: number): number {
  const v = xennet_view(cpu, sc);
  const n = v.get('sc_tx_nfree') - 1;
  v.set('sc_tx_nfree', n);
  return cpu.mem.getUint16(sc + SC_TX_FREE + 2 * n, true);
}

function xennet_tx_push(cpu: GuestCpu, sc: number, id: number): void {
  const v = xennet_view(cpu, sc);
  const n = v.get('sc_tx_nfree');
  cpu.mem.setUint16(sc + SC_TX_FREE + 2 * n, id, true);
  v.set('sc_tx_nfree', n + 1);
}

/**
 * The interface's start routine (if_start): move queued packets onto the
 * TX ring while it has room. A packet that does not fit goes back to the
 * head of the queue and the interface is marked busy (IFF_OACTIVE) until
 * responses free slots.
 */
export function xennet_start(cpu: GuestCpu, ifp: number): void {
  const sc = ifp;
  const v = xennet_view(cpu, sc);
  if (v.get('sc_state') !== XN_STATE_CONNECTED) return;
  const backend = v.get('sc_backend_id');
  const ring = xennet_tx_ring(cpu, sc);
  let queued = 0;
  for (let m = if_dequeue(cpu, ifp); m !== 0; m = if_dequeue(cpu, ifp)) {
    const len = m_len(cpu, m);
    if (len === 0 || len > XEN_NETIF_MAX_TX_SIZE) {
      if_stat_add(cpu, ifp, 'if_oerrors');
      m_free(cpu, m);
      continue;
    }
    const segs = xennet_tx_segments(mtod(cpu, m), len);
    if (segs.length > ring.freeRequests() || segs.length > v.get('sc_tx_nfree')) {
      if_prepend(cpu, ifp, m);
      if_setflags(cpu, ifp, IFF_OACTIVE);
      break;
    }
    // Grant every piece first, so that running out of grants leaves the ring untouched.
    const refs: number[] = [];
    for (const s of segs) {
      const ref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, s.page), true);
      if (ref < 0) break;
      refs.push(ref);
    }
    if (refs.length < segs.length) {
      for (const r of refs) xengnt_revoke_access(cpu, r);
      if_prepend(cpu, ifp, m);
      if_setflags(cpu, ifp, IFF_OACTIVE);
      break;
    }
    for (let i = 0; i < segs.length; i++) {
      const id = xennet_tx_pop(cpu, sc);
      const slot = ring.produceRequest() as number;
      xennet_tx_req_encode(cpu.mem, slot, xennet_tx_req_for(segs, i, len, id, refs[i] as number));
      const t = xennet_txreq.view(cpu.mem, xennet_txreq_addr(sc, id));
      t.set('txr_gntref', refs[i] as number);
      vptr_set(t, 'txr_m', i === segs.length - 1 ? m : 0);
      const seq = v.get('sc_txseq');
      t.set('txr_seq', seq);
      v.set('sc_txseq', (seq + 1) >>> 0);
    }
    xennet_bump(v, 'sc_ntx_slots', segs.length);
    if_stat_add(cpu, ifp, 'if_opackets');
    if_stat_add(cpu, ifp, 'if_obytes', len);
    queued++;
  }
  xennet_tx_save(cpu, sc, ring);
  if (queued > 0 && ring.pushRequests()) xennet_notify(cpu, sc);
}

/**
 * Take TX responses: give grants and ids back, free sent packets. Returns
 * why the backend cannot be trusted, or undefined.
 */
export function xennet_txeof(cpu: GuestCpu, sc: number): string | undefined {
  const v = xennet_view(cpu, sc);
  const ring = xennet_tx_ring(cpu, sc);
  let done = 0;
  let error: string | undefined;
  outer: for (;;) {
    const ready = ring.unconsumedResponses();
    if (!ready.ok) {
      error = `TX ring: ${ready.error}`;
      break;
    }
    let n = ready.value;
    if (n === 0) {
      const again = ring.finalCheckForResponses();
      if (!again.ok) {
        error = `TX ring: ${again.error}`;
        break;
      }
      if (again.value === 0) break;
      n = again.value;
    }
    for (let i = 0; i < n; i++) {
      const rsp = xennet_tx_rsp_decode(cpu.mem, ring.consumeResponse(), XENNET_TX_RING_SIZE);
      if (!rsp.ok) {
        error = rsp.error;
        break outer;
      }
      const { id, status } = rsp.value;
      const t = xennet_txreq.view(cpu.mem, xennet_txreq_addr(sc, id));
      const ref = t.get('txr_gntref');
      if (ref === XN_NOREF) {
        error = `TX response for id ${id}, which is not in flight`;
        break outer;
      }
      if (!xennet_revoke(cpu, ref)) {
        error = `TX page of id ${id} still mapped after its response`;
        break outer;
      }
      t.set('txr_gntref', XN_NOREF);
      const m = vptr(t, 'txr_m');
      vptr_set(t, 'txr_m', 0);
      xennet_tx_push(cpu, sc, id);
      if (status !== NETIF_RSP_OKAY && status !== NETIF_RSP_NULL) if_stat_add(cpu, sc, 'if_oerrors');
      if (m !== 0) {
        m_free(cpu, m);
        xennet_bump(v, 'sc_ntx_done');
      }
      done++;
    }
  }
  xennet_tx_save(cpu, sc, ring);
  if (done > 0) {
    if_setflags(cpu, sc, 0, IFF_OACTIVE);
    if (xennet_tx_drained(cpu, sc)) wakeup(cpu, xennet_drain_wchan(sc));
  }
  return error;
}

// ---------------------------------------------------------------------------
// RX

/**
 * Post every buffer the backend does not hold (each with a fresh writable
 * grant). Returns 1 when the backend must be notified, 0 when not, or
 * -ENOMEM when the grant table is full (the buffers wait for the next try).
 */
export function xennet_rx_refill(cpu: GuestCpu, sc: number): number {
  const v = xennet_view(cpu, sc);
  const backend = v.get('sc_backend_id');
  const ring = xennet_rx_ring(cpu, sc);
  let posted = 0;
  let rc = 0;
  for (let id = 0; id < XENNET_RX_NBUF && !ring.isFull(); id++) {
    const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, id));
    if (r.get('rxr_posted') !== 0) continue;
    const page = vptr(r, 'rxr_page');
    if (page === 0) continue;
    const ref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, page), false);
    if (ref < 0) {
      rc = -ENOMEM;
      break;
    }
    xennet_rx_req_encode(cpu.mem, ring.produceRequest() as number, id, ref);
    r.set('rxr_gntref', ref);
    r.set('rxr_posted', 1);
    posted++;
  }
  v.set('sc_rx_nposted', v.get('sc_rx_nposted') + posted);
  xennet_rx_save(cpu, sc, ring);
  if (posted === 0) return rc;
  return ring.pushRequests() ? 1 : rc;
}

/** Drop the frame being put together, if any. */
function xennet_rx_drop_partial(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  const m = vptr(v, 'sc_rx_m');
  if (m !== 0) {
    m_free(cpu, m);
    vptr_set(v, 'sc_rx_m', 0);
  }
}

/** One answered buffer: add its bytes to the frame in progress; a finished frame goes to `out`. */
function xennet_rx_frag(cpu: GuestCpu, sc: number, rsp: RxResponse, page: number, out: number[]): void {
  const v = xennet_view(cpu, sc);
  const more = (rsp.flags & NETRXF_more_data) !== 0;
  const discard = (v.get('sc_flags') & XNF_RX_DISCARD) !== 0;
  const drop = (stat: 'sc_nrx_bad' | 'sc_nrx_dropped'): void => {
    xennet_rx_drop_partial(cpu, sc);
    xennet_bump(v, stat);
    if_stat_add(cpu, sc, 'if_ierrors');
    v.set('sc_flags', more ? v.get('sc_flags') | XNF_RX_DISCARD : v.get('sc_flags') & ~XNF_RX_DISCARD);
  };
  if (discard) {
    if (!more) v.set('sc_flags', v.get('sc_flags') & ~XNF_RX_DISCARD);
    return;
  }
  if (rsp.status <= 0) return drop('sc_nrx_dropped');
  if (!xennet_rx_rsp_fits(rsp)) return drop('sc_nrx_bad');
  let m = vptr(v, 'sc_rx_m');
  if (m === 0) {
    m = m_get(cpu);
    if (m === 0) return drop('sc_nrx_dropped');
    vptr_set(mbuf_view(cpu, m), 'm_rcvif', sc);
    vptr_set(v, 'sc_rx_m', m);
  }
  if (!m_append(cpu, m, page + rsp.offset, rsp.status)) return drop('sc_nrx_bad');
  if (more) return;
  vptr_set(v, 'sc_rx_m', 0);
  out.push(m);
  xennet_bump(v, 'sc_nrx_frames');
}

/**
 * Take RX responses: finished frames are appended to `out` (mbufs the
 * caller hands up after the ring state is saved). Returns why the backend
 * cannot be trusted, or undefined.
 */
export function xennet_rxeof(cpu: GuestCpu, sc: number, out: number[]): string | undefined {
  const v = xennet_view(cpu, sc);
  const ring = xennet_rx_ring(cpu, sc);
  let error: string | undefined;
  outer: for (;;) {
    const ready = ring.unconsumedResponses();
    if (!ready.ok) {
      error = `RX ring: ${ready.error}`;
      break;
    }
    let n = ready.value;
    if (n === 0) {
      const again = ring.finalCheckForResponses();
      if (!again.ok) {
        error = `RX ring: ${again.error}`;
        break;
      }
      if (again.value === 0) break;
      n = again.value;
    }
    for (let i = 0; i < n; i++) {
      const rsp = xennet_rx_rsp_decode(cpu.mem, ring.consumeResponse(), XENNET_RX_NBUF);
      if (!rsp.ok) {
        error = rsp.error;
        break outer;
      }
      const r = xennet_rxreq.view(cpu.mem, xennet_rxreq_addr(sc, rsp.value.id));
      if (r.get('rxr_posted') === 0) {
        error = `RX response for buffer ${rsp.value.id}, which the backend does not hold`;
        break outer;
      }
      if (!xennet_revoke(cpu, r.get('rxr_gntref'))) {
        error = `RX buffer ${rsp.value.id} still mapped after its response`;
        break outer;
      }
      r.set('rxr_gntref', XN_NOREF);
      r.set('rxr_posted', 0);
      v.set('sc_rx_nposted', v.get('sc_rx_nposted') - 1);
      xennet_rx_frag(cpu, sc, rsp.value, vptr(r, 'rxr_page'), out);
    }
  }
  xennet_rx_save(cpu, sc, ring);
  return error;
}

/** Record why the interface stopped (for diagnostics). */
export function xennet_setfailmsg(cpu: GuestCpu, sc: number, why: string): void {
  strlcpy(cpu.mem, xennet_view(cpu, sc).addr('sc_failmsg'), why, xennet_xenbus_softc.fields.sc_failmsg.type.size);
}

/** Pages the TX and RX rings span, for tests: [tx, rx]. */
export function xennet_ring_pages(cpu: GuestCpu, sc: number): [number, number] {
  const v = xennet_view(cpu, sc);
  return [vptr(v, 'sc_tx_ring'), vptr(v, 'sc_rx_ring')];
}

/** RX buffers cannot straddle pages: each is one whole page. */
export const XENNET_RX_BUFSIZE = PAGE_SIZE;

export const xennet_ring_ksyms = ksymtab({
  xennet_view, xennet_tx_ring, xennet_tx_save, xennet_rx_ring, xennet_rx_save, xennet_bump, xennet_tx_reset,
  xennet_softc_init, xennet_pages_alloc, xennet_rings_setup, xennet_revoke, xennet_rings_teardown, xennet_rings_forget,
  xennet_mask, xennet_notify, xennet_drain_wchan, xennet_tx_drained, xennet_tx_pop, xennet_tx_push, xennet_start, xennet_txeof,
  xennet_rx_refill, xennet_rx_drop_partial, xennet_rx_frag, xennet_rxeof, xennet_setfailmsg, xennet_ring_pages,
});
