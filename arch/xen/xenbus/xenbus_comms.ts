/*
 * xenbus_comms: the bytes on the store page.
 *
 * The store page is a `struct xenstore_domain_interface`: a 1 KiB request
 * ring we produce into (req, req_prod) and xenstored consumes from
 * (req_cons), and a 1 KiB reply ring the other way (rsp, rsp_cons /
 * rsp_prod). Indices are free-running unsigned 32-bit and wrap; a message
 * (16-byte xsd_sockmsg header + payload) may be split across the end of a
 * ring, and may be longer than the ring itself, so both directions move
 * bytes piece by piece as space and data appear.
 *
 * Everything runs from the store port's event handler (interrupt context,
 * never sleeps) and from request submission; the state between entries is
 * the softc (send queue, request table, half-read message).
 *
 * xenstored is not trusted. Its indices are read once per pass and
 * checked: a reply ring holding more than 1024 bytes, a request ring whose
 * consumer ran past our producer, or a header announcing more than
 * XENSTORE_PAYLOAD_MAX bytes means the peer is broken or hostile. xenbus
 * then says so once, fails every request, stops listening to the port and
 * never touches the page again; nothing loops, nothing is written outside
 * the rings. Each handler pass moves at most what the rings hold, so a
 * peer that keeps producing cannot hold the vCPU either.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import type { ByteMem } from '../../../hypervisor/public/layout.js';
import {
  xenstore_domain_interface, xsd_sockmsg, XENSTORE_RING_SIZE, XENSTORE_PAYLOAD_MAX, MASK_XENSTORE_IDX, XS_TYPE_NAMES,
  XS_WATCH_EVENT,
} from '../../../hypervisor/public/io/xs_wire.js';
import { ksymtab } from '../../../sys/kern/kern_ksyms.js';
import { kmem_alloc, kmem_free } from '../../../sys/kern/subr_kmem.js';
import { aprint_error } from '../../../sys/kern/subr_prf.js';
import { TAILQ_FIRST, TAILQ_REMOVE, TAILQ_NEXT } from '../../../sys/sys/queue.js';
import { ptr_get, ptr_set, strlcpy, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import {
  xenbus_softc, xs_request, xb_addr, RQ_MSG, XS_HDRSIZE, XS_NREQ, XS_NOSLOT, XSRQ_SENT,
  XBF_CONNECTED, XBF_DEAD, XBF_SUSPENDED, XB_FAILMSG_LEN,
} from './xenbus_var.js';
import { xb_evtchn_bind, xb_evtchn_unbind, xb_evtchn_notify } from './xenbus_machdep.js';
import { xs_reply_arrived, xs_fail_all } from './xenbus_xs.js';
import { xs_watch_event_arrived } from './xenbus_watch.js';

/** Host-side trace (DEBUG=guest:xenbus); never guest state. */
const dbg = createDebug('guest:xenbus');

const REQ = xenstore_domain_interface.offsetOf('req');
const RSP = xenstore_domain_interface.offsetOf('rsp');
const RQ_SENDQ = xs_request.offsetOf('rq_sendq');
const TABLE = xenbus_softc.offsetOf('sc_table');

/** A ring's indices say more bytes are in flight than the ring holds. */
export const XB_BADRING = -1;

/** The byte accessors the ring code needs: guest memory, or a test's flat page. */
export type XbMem = ByteMem;

// ---------------------------------------------------------------------------
// The rings, pure: no softc, no events. `intf` is the page's address in `mem`.

/**
 * Copy up to `len` bytes from `src` into the request ring, splitting at
 * the ring's end, and publish them (req_prod). Returns the bytes copied
 * (0 when the ring is full) or XB_BADRING when the indices are impossible.
 */
export function xb_ring_write(mem: XbMem, intf: number, src: number, len: number): number {
  const v = xenstore_domain_interface.view(mem, intf);
  const cons = v.get('req_cons');
  const prod = v.get('req_prod');
  const used = (prod - cons) >>> 0;
  if (used > XENSTORE_RING_SIZE) return XB_BADRING;
  const n = Math.min(len, XENSTORE_RING_SIZE - used);
  let done = 0;
  while (done < n) {
    const at = MASK_XENSTORE_IDX((prod + done) >>> 0);
    const chunk = Math.min(n - done, XENSTORE_RING_SIZE - at);
    mem.writeBytes(intf + REQ + at, mem.readBytes(src + done, chunk));
    done += chunk;
  }
  // The bytes are in place before the index that publishes them.
  if (n > 0) v.set('req_prod', (prod + n) >>> 0);
  return n;
}

/**
 * Copy up to `len` bytes from the reply ring to `dst`, splitting at the
 * ring's end, and consume them (rsp_cons). Returns the bytes copied (0 when
 * the ring is empty) or XB_BADRING when the indices are impossible.
 */
export function xb_ring_read(mem: XbMem, intf: number, dst: number, len: number): number {
  const v = xenstore_domain_interface.view(mem, intf);
  const cons = v.get('rsp_cons');
  const prod = v.get('rsp_prod');
  const avail = (prod - cons) >>> 0;
  if (avail > XENSTORE_RING_SIZE) return XB_BADRING;
  const n = Math.min(len, avail);
  let done = 0;
  while (done < n) {
    const at = MASK_XENSTORE_IDX((cons + done) >>> 0);
    const chunk = Math.min(n - done, XENSTORE_RING_SIZE - at);
    mem.writeBytes(dst + done, mem.readBytes(intf + RSP + at, chunk));
    done += chunk;
  }
  if (n > 0) v.set('rsp_cons', (cons + n) >>> 0);
  return n;
}

/** Free bytes in the request ring, or XB_BADRING. */
export function xb_ring_space(mem: XbMem, intf: number): number {
  const v = xenstore_domain_interface.view(mem, intf);
  const used = (v.get('req_prod') - v.get('req_cons')) >>> 0;
  return used > XENSTORE_RING_SIZE ? XB_BADRING : XENSTORE_RING_SIZE - used;
}

/** Bytes waiting in the reply ring, or XB_BADRING. */
export function xb_ring_avail(mem: XbMem, intf: number): number {
  const v = xenstore_domain_interface.view(mem, intf);
  const avail = (v.get('rsp_prod') - v.get('rsp_cons')) >>> 0;
  return avail > XENSTORE_RING_SIZE ? XB_BADRING : avail;
}

/** Why a header read from the reply ring cannot be a message, or undefined when it can. */
export function xb_check_header(mem: XbMem, hdr: number): string | undefined {
  const h = xsd_sockmsg.view(mem, hdr);
  const len = h.get('len');
  if (len > XENSTORE_PAYLOAD_MAX) return `message of ${len} bytes (type ${h.get('type')}) exceeds ${XENSTORE_PAYLOAD_MAX}`;
  return undefined;
}

// ---------------------------------------------------------------------------
// The connection: softc state, the store port.

function xb_view(cpu: GuestCpu, sc: number) {
  return xenbus_softc.view(cpu.mem, sc);
}

/** Is xenbus talking to xenstored (connected, not failed)? */
export function xb_alive(cpu: GuestCpu, sc: number): boolean {
  const f = xb_view(cpu, sc).get('sc_flags');
  return (f & XBF_CONNECTED) !== 0 && (f & XBF_DEAD) === 0;
}

/** Has xenstored been found broken (xenbus off for good)? */
export function xb_dead(cpu: GuestCpu, sc: number): boolean {
  return (xb_view(cpu, sc).get('sc_flags') & XBF_DEAD) !== 0;
}

/** Forget any half-read message (a new ring starts on a message boundary). */
function xb_reset_input(cpu: GuestCpu, sc: number): void {
  const v = xb_view(cpu, sc);
  const body = vptr(v, 'sc_rbody');
  if (body !== 0) kmem_free(cpu, body, xsd_sockmsg.view(cpu.mem, xb_addr(sc, 'sc_rhdr')).get('len') + 1);
  vptr_set(v, 'sc_rbody', 0);
  v.set('sc_rhdrgot', 0);
  v.set('sc_rgot', 0);
}

/**
 * Start talking on the store page at `intf` (direct-mapped) through `port`:
 * take its events and pick up whatever is already there. `fresh` drops any
 * half-read message (a new page after restore); a resumed connection keeps
 * it. Returns 0 or a NetBSD errno.
 */
export function xb_init_comms(cpu: GuestCpu, sc: number, intf: number, port: number, fresh: boolean): number {
  const v = xb_view(cpu, sc);
  if (v.get('sc_flags') & XBF_DEAD) return 5; /* EIO */
  if (fresh) xb_reset_input(cpu, sc);
  vptr_set(v, 'sc_intf', intf);
  v.set('sc_evtchn', port);
  const error = xb_evtchn_bind(cpu, port, 'xenbus_comms_intr', sc);
  if (error !== 0) return error;
  v.set('sc_flags', v.get('sc_flags') | XBF_CONNECTED);
  if (dbg.enabled) dbg('comms up: page %s port %d%s', intf.toString(16), port, fresh ? ' (fresh)' : '');
  xenbus_comms_intr(cpu, sc, port);
  return 0;
}

/** Stop taking the store port's events (suspend). The page is left alone. */
export function xb_suspend_comms(cpu: GuestCpu, sc: number): void {
  const v = xb_view(cpu, sc);
  if ((v.get('sc_flags') & XBF_CONNECTED) === 0) return;
  xb_evtchn_unbind(cpu, v.get('sc_evtchn'));
  v.set('sc_flags', v.get('sc_flags') & ~XBF_CONNECTED);
}

/**
 * xenstored broke the protocol: report it once, fail every request and
 * waiter, stop listening. xenbus stays off (XBF_DEAD) until reboot.
 */
export function xb_fail(cpu: GuestCpu, sc: number, why: string): void {
  const v = xb_view(cpu, sc);
  if (v.get('sc_flags') & XBF_DEAD) return;
  aprint_error(cpu, 'xenbus: xenstore ring broken: %s; xenbus disabled\n', why);
  dbg('comms failed: %s', why);
  strlcpy(cpu.mem, xb_addr(sc, 'sc_failmsg'), why, XB_FAILMSG_LEN);
  if (v.get('sc_flags') & XBF_CONNECTED) xb_evtchn_unbind(cpu, v.get('sc_evtchn'));
  v.set('sc_flags', (v.get('sc_flags') | XBF_DEAD) & ~XBF_CONNECTED);
  xb_reset_input(cpu, sc);
  xs_fail_all(cpu, sc);
}

/**
 * Write queued requests into the ring, oldest first, as far as slots and
 * space allow. True if bytes moved (xenstored should be told).
 */
export function xb_output(cpu: GuestCpu, sc: number): boolean {
  const v = xb_view(cpu, sc);
  const f = v.get('sc_flags');
  if ((f & XBF_CONNECTED) === 0 || (f & XBF_DEAD) !== 0) return false;
  const suspended = (f & XBF_SUSPENDED) !== 0;
  const intf = vptr(v, 'sc_intf');
  const head = xb_addr(sc, 'sc_sendq');
  let moved = false;
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_FIRST(cpu.mem, head)) {
    const rq = link - RQ_SENDQ;
    const r = xs_request.view(cpu.mem, rq);
    const written = r.get('rq_written');
    // Suspended: finish a torn message, start no new one.
    if (suspended && written === 0) break;
    if (r.get('rq_slot') === XS_NOSLOT && !xb_slot_alloc(cpu, sc, rq)) break;
    const len = r.get('rq_msglen');
    const n = xb_ring_write(cpu.mem, intf, rq + RQ_MSG + written, len - written);
    if (n === XB_BADRING) {
      xb_fail(cpu, sc, 'request ring indices out of range');
      return false;
    }
    if (n === 0) break;
    moved = true;
    r.set('rq_written', written + n);
    if (written + n < len) break;
    TAILQ_REMOVE(cpu.mem, link);
    v.set('sc_nqueued', v.get('sc_nqueued') - 1);
    r.set('rq_state', XSRQ_SENT);
    vu64_set(v, 'sc_nout', vu64(v, 'sc_nout') + 1);
    if (dbg.enabled) {
      const h = xsd_sockmsg.view(cpu.mem, rq + RQ_MSG);
      dbg('-> %s req %d tx %d len %d', XS_TYPE_NAMES[h.get('type')] ?? h.get('type'), h.get('req_id'), h.get('tx_id'), h.get('len'));
    }
  }
  return moved;
}

/**
 * Give request `rq` a table slot and its request id (slot + XS_NREQ *
 * generation, so a stale or forged reply id is caught by comparing).
 */
function xb_slot_alloc(cpu: GuestCpu, sc: number, rq: number): boolean {
  const v = xb_view(cpu, sc);
  for (let slot = 0; slot < XS_NREQ; slot++) {
    if (ptr_get(cpu.mem, sc + TABLE + 8 * slot) !== 0) continue;
    const gen = (v.get('sc_nextgen') + 1) >>> 0;
    v.set('sc_nextgen', gen);
    const id = ((gen % 0x0800_0000) * XS_NREQ + slot) >>> 0;
    ptr_set(cpu.mem, sc + TABLE + 8 * slot, rq);
    v.set('sc_nsent', v.get('sc_nsent') + 1);
    const r = xs_request.view(cpu.mem, rq);
    r.set('rq_slot', slot);
    r.set('rq_req_id', id);
    xsd_sockmsg.view(cpu.mem, rq + RQ_MSG).set('req_id', id);
    return true;
  }
  return false;
}

/** The request waiting in `slot` with id `reqId`, or 0 (unknown, stale or forged id). */
export function xb_slot_lookup(cpu: GuestCpu, sc: number, reqId: number): number {
  const slot = reqId % XS_NREQ;
  const rq = ptr_get(cpu.mem, sc + TABLE + 8 * slot);
  if (rq === 0) return 0;
  const r = xs_request.view(cpu.mem, rq);
  return r.get('rq_req_id') === reqId && r.get('rq_state') === XSRQ_SENT ? rq : 0;
}

/** Free a request's slot (its reply is in, or it failed). */
export function xb_slot_free(cpu: GuestCpu, sc: number, rq: number): void {
  const r = xs_request.view(cpu.mem, rq);
  const slot = r.get('rq_slot');
  if (slot === XS_NOSLOT) return;
  const v = xb_view(cpu, sc);
  ptr_set(cpu.mem, sc + TABLE + 8 * slot, 0);
  v.set('sc_nsent', v.get('sc_nsent') - 1);
  r.set('rq_slot', XS_NOSLOT);
}

/**
 * Read whatever the reply ring holds, completing messages as they end.
 * True if bytes moved. Stops (and fails xenbus) on impossible indices or
 * an oversize header.
 */
export function xb_input(cpu: GuestCpu, sc: number): boolean {
  const v = xb_view(cpu, sc);
  const f = v.get('sc_flags');
  if ((f & XBF_CONNECTED) === 0 || (f & XBF_DEAD) !== 0) return false;
  const intf = vptr(v, 'sc_intf');
  const hdr = xb_addr(sc, 'sc_rhdr');
  let moved = false;
  // Each pass consumes bytes or stops; at most a ring's worth is there.
  for (let guard = 0; guard <= XENSTORE_RING_SIZE; guard++) {
    const hgot = v.get('sc_rhdrgot');
    if (hgot < XS_HDRSIZE) {
      const n = xb_ring_read(cpu.mem, intf, hdr + hgot, XS_HDRSIZE - hgot);
      if (n === XB_BADRING) {
        xb_fail(cpu, sc, 'reply ring indices out of range');
        return moved;
      }
      if (n === 0) return moved;
      moved = true;
      v.set('sc_rhdrgot', hgot + n);
      if (hgot + n < XS_HDRSIZE) return moved;
      const bad = xb_check_header(cpu.mem, hdr);
      if (bad !== undefined) {
        xb_fail(cpu, sc, bad);
        return moved;
      }
      const len = xsd_sockmsg.view(cpu.mem, hdr).get('len');
      const body = kmem_alloc(cpu, len + 1);
      // No memory: the payload is still read (to keep the stream in step) and dropped.
      vptr_set(v, 'sc_rbody', body);
      v.set('sc_rgot', 0);
    }
    const h = xsd_sockmsg.view(cpu.mem, hdr);
    const len = h.get('len');
    let got = v.get('sc_rgot');
    while (got < len) {
      const body = vptr(v, 'sc_rbody');
      const want = len - got;
      let n: number;
      if (body !== 0) {
        n = xb_ring_read(cpu.mem, intf, body + got, want);
      } else {
        n = xb_ring_skip(cpu, intf, want);
      }
      if (n === XB_BADRING) {
        xb_fail(cpu, sc, 'reply ring indices out of range');
        return moved;
      }
      if (n === 0) {
        v.set('sc_rgot', got);
        return moved;
      }
      moved = true;
      got += n;
    }
    // A whole message: hand it on, with its buffer, and start the next one.
    const body = vptr(v, 'sc_rbody');
    if (body !== 0) cpu.mem.setUint8(body + len, 0);
    const type = h.get('type');
    const reqId = h.get('req_id');
    vptr_set(v, 'sc_rbody', 0);
    v.set('sc_rhdrgot', 0);
    v.set('sc_rgot', 0);
    vu64_set(v, 'sc_nin', vu64(v, 'sc_nin') + 1);
    if (dbg.enabled) dbg('<- %s req %d len %d', XS_TYPE_NAMES[type] ?? type, reqId, len);
    xb_deliver(cpu, sc, type, reqId, body, len);
    if (xb_dead(cpu, sc)) return moved;
  }
  return moved;
}

/** Consume `len` reply bytes without keeping them (no memory for the message). */
function xb_ring_skip(cpu: GuestCpu, intf: number, len: number): number {
  const v = xenstore_domain_interface.view(cpu.mem, intf);
  const cons = v.get('rsp_cons');
  const avail = (v.get('rsp_prod') - cons) >>> 0;
  if (avail > XENSTORE_RING_SIZE) return XB_BADRING;
  const n = Math.min(len, avail);
  if (n > 0) v.set('rsp_cons', (cons + n) >>> 0);
  return n;
}

/** A complete message from xenstored: a watch event, or a reply. Takes `body` (kmem, len + 1; may be 0). */
function xb_deliver(cpu: GuestCpu, sc: number, type: number, reqId: number, body: number, len: number): void {
  if (type === XS_WATCH_EVENT) {
    xs_watch_event_arrived(cpu, sc, body, len);
    return;
  }
  xs_reply_arrived(cpu, sc, type, reqId, body, len);
}

/** Tell xenstored the rings moved. */
export function xb_notify(cpu: GuestCpu, sc: number): void {
  xb_evtchn_notify(cpu, xb_view(cpu, sc).get('sc_evtchn'));
}

/**
 * The store port's event handler (`ev_handler(arg = softc, port)`): read
 * replies and events, write what waits, tell xenstored if anything moved.
 */
export function xenbus_comms_intr(cpu: GuestCpu, sc: number, _port: number): number {
  if (!xb_alive(cpu, sc)) return 0;
  let moved = false;
  // Reading frees slots and space for writing, and writing may bring replies
  // only on a later event; two rounds settle what one event can do.
  for (let round = 0; round < 2; round++) {
    const a = xb_input(cpu, sc);
    const b = xb_output(cpu, sc);
    moved = moved || a || b;
    if (!(a || b) || !xb_alive(cpu, sc)) break;
  }
  if (moved && xb_alive(cpu, sc)) xb_notify(cpu, sc);
  return 1;
}

/** New requests were queued: push them out now if possible. */
export function xb_kick(cpu: GuestCpu, sc: number): void {
  if (!xb_alive(cpu, sc)) return;
  if (xb_output(cpu, sc)) xb_notify(cpu, sc);
}

/** Requests on the send queue, oldest first (diagnostics). */
export function xb_sendq_length(cpu: GuestCpu, sc: number): number {
  let n = 0;
  const head = xb_addr(sc, 'sc_sendq');
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) n++;
  return n;
}

export const xenbus_comms_ksyms = ksymtab({
  xb_ring_write, xb_ring_read, xb_ring_space, xb_ring_avail, xb_check_header, xb_view, xb_alive, xb_dead, xb_reset_input,
  xb_init_comms, xb_suspend_comms, xb_fail, xb_output, xb_slot_alloc, xb_slot_lookup, xb_slot_free, xb_input,
  xb_ring_skip, xb_deliver, xb_notify, xenbus_comms_intr, xb_kick, xb_sendq_length,
});
