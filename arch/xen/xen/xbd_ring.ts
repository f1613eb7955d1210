/*
 * xbd, transport layer: the shared ring page, the grants that carry the
 * data, the event channel, and the shadow table that remembers every
 * request in flight. No xenstore here (that is xbd_xenbus.ts).
 *
 * The ring is a FrontRing view (hypervisor/public/io/ring.ts) rebuilt on
 * every use from the private indices in the softc, and stored back before
 * anything else can run (a completion may start new requests).
 *
 * Request ids are shadow indices. A shadow entry holds the buf, the data
 * pages and a copy of the request bytes, which is what lets a request be
 * sent again on a new ring after a restore: every grant of the old
 * domain is void there, so the pages are granted afresh and the copy's
 * grefs rewritten, then the copy goes into the new ring (xbd_ring_replay).
 *
 * Responses are hostile input. xbd_ring_process returns a reason, and the
 * driver disconnects the device, when the backend's rsp_prod runs past the
 * requests we made, a response names no request in flight (its id is
 * bounds-checked against the shadow table and its use), the operation is
 * not the one asked, or a grant is still mapped after its answer.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { FrontRing } from '../../../hypervisor/public/io/ring.js';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE } from '../../../hypervisor/public/io/blkif.js';
import { EAGAIN, ENOMEM, ENXIO, EOPNOTSUPP } from '../../../sys/sys/errno.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { uvm_pagealloc } from '../../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../../sys/uvm/uvm.js';
import { device_xname } from '../../../sys/kern/subr_autoconf.js';
import { ptr_get, ptr_set, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { dk_frag, dk_fragdone, EROFS } from '../../../dev/dksubr.js';
import { B_READ, B_WRITE, B_FLUSH } from '../../../dev/buf.js';
import { xpmap_kva_to_mfn } from '../x86/x86_xpmap.js';
import { xengnt_grant_access, xengnt_revoke_access, xengnt_generation } from './xengnt.js';
import {
  evtchn_alloc_unbound, evtchn_close, event_set_handler, event_remove_handler, hypervisor_unmask_event,
  hypervisor_mask_event, hypervisor_notify_via_evtchn,
} from './evtchn.js';
import {
  xbd_req_encode, xbd_req_set_seg, xbd_req_set_gref, xbd_req_seg_gref, xbd_req_operation, xbd_req_nseg, xbd_rsp_decode,
  XBD_RING_GEOMETRY, XBD_REQ_SIZE,
} from './xbd_wire.js';
import {
  xbd_xenbus_softc, xbd_shadow, xbd_shadow_addr, XBD_NSHADOW, XBD_NOREF, SC_DKSC, XS_REQ,
  XBD_STATE_CONNECTED, XBD_STATE_DEAD, XBDF_READONLY, XBDF_FLUSH, type XbdSoftcView,
} from './xbd_var.js';

const dbg = createDebug('guest:xbd');

/** EBUSY and EAGAIN as the grant code returns them (Xen errnos, negated). */
const XEN_EBUSY = 16;
const XEN_EAGAIN = 11;

export function xbd_view(cpu: GuestCpu, sc: number): XbdSoftcView {
  return xbd_xenbus_softc.view(cpu.mem, sc);
}

/** The FrontRing over our page, at the indices the softc remembers. */
function xbd_ring_attach(cpu: GuestCpu, sc: number): FrontRing {
  const v = xbd_view(cpu, sc);
  return FrontRing.attach(cpu.mem, vptr(v, 'sc_ring'), XBD_RING_GEOMETRY, { reqProdPvt: v.get('sc_req_prod_pvt'), rspCons: v.get('sc_rsp_cons') });
}

function xbd_ring_save(cpu: GuestCpu, sc: number, ring: FrontRing): void {
  const v = xbd_view(cpu, sc);
  v.set('sc_req_prod_pvt', ring.reqProdPvt);
  v.set('sc_rsp_cons', ring.rspCons);
}

/**
 * A fresh ring for a connection: the page (kept from an earlier
 * connection unless the backend never let go of it) initialized, granted
 * to the backend, and an unbound port for it with our handler, unmasked.
 * 0, or a negative errno with nothing held.
 */
export function xbd_ring_setup(cpu: GuestCpu, sc: number): number {
  const v = xbd_view(cpu, sc);
  const backend = v.get('sc_backend_id');
  let page = vptr(v, 'sc_ring');
  if (page === 0) {
    page = uvm_pagealloc(cpu, UVM_KMF_ZERO);
    if (page === 0) return -ENOMEM;
    vptr_set(v, 'sc_ring', page);
  }
  const ring = FrontRing.init(cpu.mem, page, XBD_RING_GEOMETRY);
  xbd_ring_save(cpu, sc, ring);
  const ref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, page), false);
  if (ref < 0) return ref;
  const port = evtchn_alloc_unbound(cpu, backend);
  if (port < 0) {
    xengnt_revoke_access(cpu, ref);
    return port;
  }
  const dev = vptr(v, 'sc_dev');
  const rc = event_set_handler(cpu, port, 'xbd_xenbus_intr', sc, dev === 0 ? 'xbd' : device_xname(cpu, dev));
  if (rc < 0) {
    evtchn_close(cpu, port);
    xengnt_revoke_access(cpu, ref);
    return rc;
  }
  v.set('sc_ring_gntref', ref);
  v.set('sc_evtchn', port);
  v.set('sc_gntgen', xengnt_generation(cpu));
  hypervisor_unmask_event(cpu, port);
  if (dbg.enabled) dbg('sc %s: ring page %s ref %d port %d', sc.toString(16), page.toString(16), ref, port);
  return 0;
}

/** Stop taking events (suspend): the port stays ours, events stay pending. */
export function xbd_ring_mask(cpu: GuestCpu, sc: number, masked: boolean): void {
  const port = xbd_view(cpu, sc).get('sc_evtchn');
  if (port === 0) return;
  if (masked) hypervisor_mask_event(cpu, port);
  else hypervisor_unmask_event(cpu, port);
}

/**
 * Let go of the connection's port and ring grant, which are still live
 * (the same domain: a disconnect). A ring page the backend still maps is
 * abandoned, never reused.
 */
export function xbd_ring_release(cpu: GuestCpu, sc: number): void {
  const v = xbd_view(cpu, sc);
  const port = v.get('sc_evtchn');
  if (port !== 0) {
    event_remove_handler(cpu, port);
    evtchn_close(cpu, port);
  }
  const ref = v.get('sc_ring_gntref');
  if (ref !== XBD_NOREF && xengnt_revoke_access(cpu, ref) === -XEN_EBUSY) vptr_set(v, 'sc_ring', 0);
  v.set('sc_evtchn', 0);
  v.set('sc_ring_gntref', XBD_NOREF);
}

/**
 * After a restore: the port and every grant belong to the old domain and
 * are void here. Forget them without touching the (new) grant table or
 * event channels; the shadow keeps its requests for xbd_ring_replay.
 */
export function xbd_ring_forget(cpu: GuestCpu, sc: number): void {
  const v = xbd_view(cpu, sc);
  v.set('sc_evtchn', 0);
  v.set('sc_ring_gntref', XBD_NOREF);
  for (let i = 0; i < XBD_NSHADOW; i++) xbd_shadow.view(cpu.mem, xbd_shadow_addr(sc, i)).set('xs_ngrant', 0);
}

/** Is shadow entry `i` serving a request? */
function xbd_shadow_inuse(cpu: GuestCpu, sc: number, i: number): boolean {
  return vptr(xbd_shadow.view(cpu.mem, xbd_shadow_addr(sc, i)), 'xs_bp') !== 0;
}

function xbd_shadow_alloc(cpu: GuestCpu, sc: number): number {
  for (let i = 0; i < XBD_NSHADOW; i++) if (!xbd_shadow_inuse(cpu, sc, i)) return i;
  return -1;
}

/** Revoke the grants entry `i` still holds. False if the backend still maps one (kept). */
function xbd_shadow_revoke(cpu: GuestCpu, sc: number, i: number): boolean {
  const at = xbd_shadow_addr(sc, i);
  const s = xbd_shadow.view(cpu.mem, at);
  let ok = true;
  for (let k = s.get('xs_ngrant') - 1; k >= 0; k--) {
    if (xengnt_revoke_access(cpu, xbd_req_seg_gref(cpu.mem, at + XS_REQ, k)) === -XEN_EBUSY) ok = false;
  }
  s.set('xs_ngrant', 0);
  return ok;
}

function xbd_shadow_free(cpu: GuestCpu, sc: number, i: number): void {
  const v = xbd_view(cpu, sc);
  cpu.mem.fill(xbd_shadow_addr(sc, i), xbd_shadow.size, 0);
  v.set('sc_nshadow', v.get('sc_nshadow') - 1);
}

/**
 * Grant the data pages of shadow entry `i` to the backend and write the
 * grefs into its request copy. 0, or the grant code's -errno (nothing
 * left granted) when the table is full or suspended.
 */
function xbd_shadow_grant(cpu: GuestCpu, sc: number, i: number): number {
  const at = xbd_shadow_addr(sc, i);
  const s = xbd_shadow.view(cpu.mem, at);
  const backend = xbd_view(cpu, sc).get('sc_backend_id');
  const req = at + XS_REQ;
  const ro = xbd_req_operation(cpu.mem, req) === BLKIF_OP_WRITE;
  const n = xbd_req_nseg(cpu.mem, req);
  for (let k = 0; k < n; k++) {
    const ref = xengnt_grant_access(cpu, backend, xpmap_kva_to_mfn(cpu, ptr_get(cpu.mem, s.addr('xs_va') + 8 * k)), ro);
    if (ref < 0) {
      xbd_shadow_revoke(cpu, sc, i);
      return ref;
    }
    xbd_req_set_gref(cpu.mem, req, k, ref);
    s.set('xs_ngrant', k + 1);
  }
  return 0;
}

/** Put shadow `i`'s request in the next ring slot. */
function xbd_ring_put(cpu: GuestCpu, ring: FrontRing, sc: number, i: number): void {
  const slot = ring.produceRequest();
  if (slot === undefined) throw new Error('xbd_ring_put: ring full (caller checked)');
  cpu.mem.copyWithin(slot, xbd_shadow_addr(sc, i) + XS_REQ, XBD_REQ_SIZE);
}

/** Publish the ring's new requests; notify the backend if it asked. */
function xbd_ring_push(cpu: GuestCpu, sc: number, ring: FrontRing): void {
  const notify = ring.pushRequests();
  xbd_ring_save(cpu, sc, ring);
  if (notify) {
    const v = xbd_view(cpu, sc);
    vu64_set(v, 'sc_nnotify', vu64(v, 'sc_nnotify') + 1);
    hypervisor_notify_via_evtchn(cpu, v.get('sc_evtchn'));
  }
}

/**
 * The disk layer's diskstart: one fragment of `bp` becomes one blkif
 * request (see dev/dksubr.ts for the answers).
 */
export function xbd_diskstart(cpu: GuestCpu, dksc: number, bp: number, frag: number): number {
  const sc = dksc - SC_DKSC;
  const v = xbd_view(cpu, sc);
  const state = v.get('sc_state');
  if (state === XBD_STATE_DEAD) return ENXIO;
  if (state !== XBD_STATE_CONNECTED) return EAGAIN;
  const f = dk_frag.view(cpu.mem, frag);
  const flags = f.get('df_flags');
  let op: number;
  if (flags === B_READ) op = BLKIF_OP_READ;
  else if (flags === B_WRITE) {
    if (v.get('sc_flags') & XBDF_READONLY) return EROFS;
    op = BLKIF_OP_WRITE;
  } else if (flags === B_FLUSH) {
    if ((v.get('sc_flags') & XBDF_FLUSH) === 0) return EOPNOTSUPP;
    op = BLKIF_OP_FLUSH_DISKCACHE;
  } else return EOPNOTSUPP;
  const ring = xbd_ring_attach(cpu, sc);
  if (ring.isFull()) return EAGAIN;
  const i = xbd_shadow_alloc(cpu, sc);
  if (i < 0) return EAGAIN;
  const at = xbd_shadow_addr(sc, i);
  const s = xbd_shadow.view(cpu.mem, at);
  const nseg = f.get('df_nseg');
  xbd_req_encode(cpu.mem, at + XS_REQ, op, v.get('sc_handle'), i, Number(f.get('df_sector')), nseg);
  for (let k = 0; k < nseg; k++) {
    const seg = f.sub('df_seg', k);
    ptr_set(cpu.mem, s.addr('xs_va') + 8 * k, vptr(seg, 'ds_va'));
    xbd_req_set_seg(cpu.mem, at + XS_REQ, k, 0, seg.get('ds_first'), seg.get('ds_last'));
  }
  vptr_set(s, 'xs_bp', bp);
  v.set('sc_nshadow', v.get('sc_nshadow') + 1);
  const granted = xbd_shadow_grant(cpu, sc, i);
  if (granted !== 0) {
    xbd_shadow_free(cpu, sc, i);
    // Grants come back as requests complete (or the table as resume maps
    // it again); with none in flight and a full table, none will.
    return granted === -XEN_EAGAIN || v.get('sc_nshadow') > 0 ? EAGAIN : ENOMEM;
  }
  s.set('xs_seq', v.get('sc_seq'));
  v.set('sc_seq', (v.get('sc_seq') + 1) >>> 0);
  xbd_ring_put(cpu, ring, sc, i);
  vu64_set(v, 'sc_nreq', vu64(v, 'sc_nreq') + 1);
  xbd_ring_push(cpu, sc, ring);
  return 0;
}

/**
 * Take every response the backend has published, finish their bufs, and
 * ask to be told of the next one. Returns undefined, or why the backend
 * is not to be trusted any more (the caller disconnects the device).
 */
export function xbd_ring_process(cpu: GuestCpu, sc: number): string | undefined {
  const v = xbd_view(cpu, sc);
  const dksc = sc + SC_DKSC;
  for (;;) {
    if (v.get('sc_state') !== XBD_STATE_CONNECTED) return undefined;
    const ring = xbd_ring_attach(cpu, sc);
    const avail = ring.unconsumedResponses();
    if (!avail.ok) return avail.error;
    // Collected first and finished after the indices are saved: finishing
    // a buf may start new requests on this ring.
    const done: { bp: number; error: number }[] = [];
    let bad: string | undefined;
    for (let k = 0; k < avail.value && bad === undefined; k++) {
      const addr = ring.consumeResponse();
      const r = xbd_rsp_decode(cpu.mem, addr, XBD_NSHADOW, (id) =>
        xbd_shadow_inuse(cpu, sc, id) ? xbd_req_operation(cpu.mem, xbd_shadow_addr(sc, id) + XS_REQ) : undefined);
      if (!r.ok) {
        bad = r.error;
        break;
      }
      if (!xbd_shadow_revoke(cpu, sc, r.value.id)) {
        bad = `response id ${r.value.id} answered, but the backend still maps its pages`;
        break;
      }
      done.push({ bp: vptr(xbd_shadow.view(cpu.mem, xbd_shadow_addr(sc, r.value.id)), 'xs_bp'), error: r.value.error });
      xbd_shadow_free(cpu, sc, r.value.id);
    }
    xbd_ring_save(cpu, sc, ring);
    vu64_set(v, 'sc_nrsp', vu64(v, 'sc_nrsp') + done.length);
    for (const d of done) dk_fragdone(cpu, dksc, d.bp, d.error);
    if (bad !== undefined) return bad;
    if (v.get('sc_state') !== XBD_STATE_CONNECTED) return undefined;
    const again = xbd_ring_attach(cpu, sc).finalCheckForResponses();
    if (!again.ok) return again.error;
    if (again.value === 0) return undefined;
  }
}

/** Shadow entries in use, in the order their requests were first sent. */
export function xbd_shadow_order(cpu: GuestCpu, sc: number): number[] {
  const out: { i: number; seq: number }[] = [];
  const base = xbd_view(cpu, sc).get('sc_seq');
  for (let i = 0; i < XBD_NSHADOW; i++) {
    if (!xbd_shadow_inuse(cpu, sc, i)) continue;
    // Age relative to the next sequence number, so wrapping keeps the order.
    out.push({ i, seq: (base - xbd_shadow.view(cpu.mem, xbd_shadow_addr(sc, i)).get('xs_seq')) >>> 0 });
  }
  return out.sort((a, b) => b.seq - a.seq).map((e) => e.i);
}

/**
 * Send every request of the shadow again on the (fresh) ring, oldest
 * first, with fresh grants. Returns the number replayed, or a negative
 * errno when the grants could not be had (the caller gives up the device).
 */
export function xbd_ring_replay(cpu: GuestCpu, sc: number): number {
  const v = xbd_view(cpu, sc);
  const ring = xbd_ring_attach(cpu, sc);
  const order = xbd_shadow_order(cpu, sc);
  for (const i of order) {
    const granted = xbd_shadow_grant(cpu, sc, i);
    if (granted !== 0) {
      xbd_ring_save(cpu, sc, ring);
      return granted;
    }
    xbd_ring_put(cpu, ring, sc, i);
    if (dbg.enabled) dbg('sc %s: replay shadow %d (seq %d)', sc.toString(16), i, xbd_shadow.view(cpu.mem, xbd_shadow_addr(sc, i)).get('xs_seq'));
  }
  if (order.length > 0) xbd_ring_push(cpu, sc, ring);
  else xbd_ring_save(cpu, sc, ring);
  vu64_set(v, 'sc_nreplayed', vu64(v, 'sc_nreplayed') + order.length);
  return order.length;
}

/**
 * The backend closed the ring (same domain): take back the shadow's
 * grants but keep its requests, to be replayed on the next connection.
 */
export function xbd_shadow_ungrant(cpu: GuestCpu, sc: number): void {
  for (let i = 0; i < XBD_NSHADOW; i++) if (xbd_shadow_inuse(cpu, sc, i)) xbd_shadow_revoke(cpu, sc, i);
}

/**
 * Drop every request in the shadow (the device is going away): revoke
 * what can be revoked and return their bufs (to be failed by the caller
 * through dk_fail_all). Grants the backend still maps are left granted.
 */
export function xbd_shadow_clear(cpu: GuestCpu, sc: number, live: boolean): number {
  let n = 0;
  for (let i = 0; i < XBD_NSHADOW; i++) {
    if (!xbd_shadow_inuse(cpu, sc, i)) continue;
    if (live) xbd_shadow_revoke(cpu, sc, i);
    xbd_shadow_free(cpu, sc, i);
    n++;
  }
  return n;
}

export const xbd_ring_ksyms = ksymtab({
  xbd_view, xbd_ring_attach, xbd_ring_save, xbd_ring_setup, xbd_ring_mask, xbd_ring_release, xbd_ring_forget,
  xbd_shadow_inuse, xbd_shadow_alloc, xbd_shadow_revoke, xbd_shadow_free, xbd_shadow_grant, xbd_ring_put, xbd_ring_push,
  xbd_diskstart, xbd_ring_process, xbd_shadow_order, xbd_ring_replay, xbd_shadow_ungrant, xbd_shadow_clear,
});
