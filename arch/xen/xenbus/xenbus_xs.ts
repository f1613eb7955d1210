/*
 * xenbus_xs: xenstore requests.
 *
 * A request is a kmem block (struct xs_request) holding the whole message
 * to send. It waits on the send queue until it has a table slot and the
 * ring has room (xenbus_comms writes it, in pieces if need be), then sits
 * in the request table until the reply with its id comes back; the reply's
 * payload is copied into kmem and hung off the request. Any number of
 * lwps may have a request outstanding at once; replies may come back in
 * any order.
 *
 * Callers are lwps in continuation style. Each call takes the step to
 * continue at:
 *
 *   xs_read(cpu, tx, 'device/vbd/768/state', 'foo_got_state');
 *   return;                                    // the lwp sleeps
 *   ...
 *   function foo_got_state(cpu, arg, error) {
 *     const r = xs_result(cpu);                // { error, value }, frees the request
 *     if (r.error !== 0) ...
 *   }
 *
 * The continuation always runs, whether the request was answered, failed
 * at once (xenbus not up, no memory) or was failed by a broken xenstored.
 * `xs_result` finds the finished request by its owner (curlwp), so an lwp
 * has one request outstanding at a time, as a blocking caller would.
 *
 * Requests nobody waits for (`xs_*_async`: publishing, error nodes,
 * re-registering watches on resume, watches set from attach) are freed
 * when their reply comes; a failure is printed.
 *
 * Errors are NetBSD errno values: XS_ERROR's name ("ENOENT") is mapped
 * by name, never by Xen's number.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import {
  xsd_sockmsg, XS_READ, XS_WRITE, XS_DIRECTORY, XS_MKDIR, XS_RM, XS_WATCH, XS_UNWATCH, XS_TRANSACTION_START,
  XS_TRANSACTION_END, XS_ERROR, XS_TYPE_NAMES, XENSTORE_PAYLOAD_MAX,
} from '../../../hypervisor/public/io/xs_wire.js';
import { ksymtab, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { kmem_alloc, kmem_free } from '../../../sys/kern/subr_kmem.js';
import { tsleep, preempt, wakeup } from '../../../sys/kern/kern_synch.js';
import { aprint_error } from '../../../sys/kern/subr_prf.js';
import { TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE, TAILQ_INSERT_TAIL, TAILQ_ONLIST } from '../../../sys/sys/queue.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { kstr_get, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import {
  xenbus_softc, xs_request, xb_addr, xenbus_softc_of, RQ_MSG, XS_HDRSIZE, XS_NREQ, XS_NOSLOT,
  XSRQ_QUEUED, XSRQ_DONE, XBF_DEAD, XBF_SUSPENDED,
} from './xenbus_var.js';
import { xb_kick, xb_slot_lookup, xb_slot_free, xb_dead } from './xenbus_comms.js';
import { xs_watch_request_done } from './xenbus_watch.js';

const dbg = createDebug('guest:xenbus');

const RQ_SENDQ = xs_request.offsetOf('rq_sendq');
const RQ_OWNED = xs_request.offsetOf('rq_owned');
const TABLE = xenbus_softc.offsetOf('sc_table');

/* NetBSD errno values (sys/errno.h); several are not in sys/sys/errno.ts. */
export const XS_EPERM = 1;
export const XS_ENOENT = 2;
export const XS_EINTR = 4;
export const XS_EIO = 5;
export const XS_ENXIO = 6;
export const XS_E2BIG = 7;
export const XS_ENOMEM = 12;
export const XS_EACCES = 13;
export const XS_EBUSY = 16;
export const XS_EEXIST = 17;
export const XS_EISDIR = 21;
export const XS_EINVAL = 22;
export const XS_ENOSPC = 28;
export const XS_EROFS = 30;
export const XS_EAGAIN = 35;
export const XS_EISCONN = 56;
export const XS_ENOTEMPTY = 66;
export const XS_ENOSYS = 78;

/** XS_ERROR payload names -> NetBSD errno (xs_wire.h's xsd_errors, by name). */
const XS_ERRNO_BY_NAME: Readonly<Record<string, number>> = Object.freeze({
  EINVAL: XS_EINVAL, EACCES: XS_EACCES, EEXIST: XS_EEXIST, EISDIR: XS_EISDIR, ENOENT: XS_ENOENT, ENOMEM: XS_ENOMEM,
  ENOSPC: XS_ENOSPC, EIO: XS_EIO, ENOTEMPTY: XS_ENOTEMPTY, ENOSYS: XS_ENOSYS, EROFS: XS_EROFS, EBUSY: XS_EBUSY,
  EAGAIN: XS_EAGAIN, EISCONN: XS_EISCONN, E2BIG: XS_E2BIG, EPERM: XS_EPERM,
});

/** The NetBSD errno for an XS_ERROR reply's text; EINVAL for a name xs_wire.h does not have. */
export function xs_errno(name: string): number {
  return Object.prototype.hasOwnProperty.call(XS_ERRNO_BY_NAME, name) ? (XS_ERRNO_BY_NAME[name] as number) : XS_EINVAL;
}

/** A finished request, as its owner sees it (valid for this entry only). */
export interface XsResult {
  /** 0, or a NetBSD errno. */
  readonly error: number;
  /** The reply's payload (Latin-1); for a directory, names separated by NUL. */
  readonly value: string;
  /** What the caller attached to the request (e.g. a watch id). */
  readonly cookie: number;
}

/** The NUL-separated strings of a directory reply (the trailing empty one dropped). */
export function xs_strings(value: string): string[] {
  if (value === '') return [];
  const parts = value.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

// ---------------------------------------------------------------------------
// Building, finishing and failing requests

/**
 * Make a request and queue it. `owner` is the lwp that will collect it
 * (0: nobody, freed on reply). Returns the request, or 0 when memory is
 * short. A request that cannot be sent (xenbus off, too long) is returned
 * already done, with its error.
 */
export function xs_request_new(cpu: GuestCpu, sc: number, type: number, tx: number, payload: string, owner: number, cookie = 0): number {
  const len = payload.length;
  const size = RQ_MSG + XS_HDRSIZE + len;
  const rq = kmem_alloc(cpu, size);
  if (rq === 0) return 0;
  cpu.mem.fill(rq, RQ_MSG, 0);
  const r = xs_request.view(cpu.mem, rq);
  vptr_set(r, 'rq_owner', owner);
  r.set('rq_slot', XS_NOSLOT);
  r.set('rq_msglen', XS_HDRSIZE + len);
  vu64_set(r, 'rq_cookie', cookie);
  const h = xsd_sockmsg.view(cpu.mem, rq + RQ_MSG);
  h.set('type', type);
  h.set('req_id', 0);
  h.set('tx_id', tx);
  h.set('len', len);
  for (let i = 0; i < len; i++) cpu.mem.setUint8(rq + RQ_MSG + XS_HDRSIZE + i, payload.charCodeAt(i) & 0xff);
  if (owner !== 0) TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_owned'), rq + RQ_OWNED);
  const v = xenbus_softc.view(cpu.mem, sc);
  if (v.get('sc_flags') & XBF_DEAD) {
    xs_complete(cpu, sc, rq, XS_EIO);
  } else if (len > XENSTORE_PAYLOAD_MAX) {
    xs_complete(cpu, sc, rq, XS_E2BIG);
  } else {
    r.set('rq_state', XSRQ_QUEUED);
    TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_sendq'), rq + RQ_SENDQ);
    v.set('sc_nqueued', v.get('sc_nqueued') + 1);
    xb_kick(cpu, sc);
  }
  return rq;
}

/** Bytes a request block takes (for kmem_free). */
function xs_request_size(cpu: GuestCpu, rq: number): number {
  return RQ_MSG + xs_request.view(cpu.mem, rq).get('rq_msglen');
}

/** Free a request and its reply. */
function xs_request_free(cpu: GuestCpu, rq: number): void {
  const r = xs_request.view(cpu.mem, rq);
  const reply = vptr(r, 'rq_reply');
  if (reply !== 0) kmem_free(cpu, reply, r.get('rq_rlen') + 1);
  if (TAILQ_ONLIST(cpu.mem, rq + RQ_OWNED)) TAILQ_REMOVE(cpu.mem, rq + RQ_OWNED);
  kmem_free(cpu, rq, xs_request_size(cpu, rq));
}

/** The request's type and first string (its path), for messages. */
function xs_request_what(cpu: GuestCpu, rq: number): string {
  const h = xsd_sockmsg.view(cpu.mem, rq + RQ_MSG);
  const type = h.get('type');
  const path = kstr_get(cpu.mem, rq + RQ_MSG + XS_HDRSIZE, Math.min(h.get('len'), 128));
  return `${XS_TYPE_NAMES[type] ?? String(type)} ${path}`;
}

/**
 * A request is finished (`error` 0 or errno; the reply, if any, already
 * hung on it): leave the table and send queue, then wake its owner or,
 * if nobody waits, free it.
 */
export function xs_complete(cpu: GuestCpu, sc: number, rq: number, error: number): void {
  const r = xs_request.view(cpu.mem, rq);
  if (TAILQ_ONLIST(cpu.mem, rq + RQ_SENDQ)) {
    TAILQ_REMOVE(cpu.mem, rq + RQ_SENDQ);
    const v = xenbus_softc.view(cpu.mem, sc);
    v.set('sc_nqueued', v.get('sc_nqueued') - 1);
  }
  xb_slot_free(cpu, sc, rq);
  r.set('rq_state', XSRQ_DONE);
  r.set('rq_error', error);
  const type = xsd_sockmsg.view(cpu.mem, rq + RQ_MSG).get('type');
  if (type === XS_WATCH) xs_watch_request_done(cpu, sc, rq, error);
  if (vptr(r, 'rq_owner') !== 0) {
    wakeup(cpu, rq);
  } else {
    if (error !== 0 && !(type === XS_WATCH && error === XS_EEXIST)) {
      aprint_error(cpu, 'xenbus: %s failed: error %d\n', xs_request_what(cpu, rq), error);
    }
    xs_request_free(cpu, rq);
  }
  xs_quiesce_check(cpu, sc);
}

/**
 * A reply from xenstored (interrupt context). `body` is its payload in
 * kmem (len + 1 bytes, NUL-terminated; 0 when memory was short), now ours.
 * A reply whose id matches no request waiting in the table is counted
 * and dropped: an id is a slot plus a generation, checked, never trusted.
 */
export function xs_reply_arrived(cpu: GuestCpu, sc: number, type: number, reqId: number, body: number, len: number): void {
  const rq = xb_slot_lookup(cpu, sc, reqId);
  if (rq === 0) {
    const v = xenbus_softc.view(cpu.mem, sc);
    v.set('sc_nbadreply', v.get('sc_nbadreply') + 1);
    if (dbg.enabled) dbg('reply %d (type %d) matches no request: dropped', reqId, type);
    if (body !== 0) kmem_free(cpu, body, len + 1);
    return;
  }
  const r = xs_request.view(cpu.mem, rq);
  const sent = xsd_sockmsg.view(cpu.mem, rq + RQ_MSG).get('type');
  let error = 0;
  if (body === 0) {
    error = XS_ENOMEM;
  } else if (type === XS_ERROR) {
    error = xs_errno(kstr_get(cpu.mem, body, len));
  } else if (type !== sent) {
    if (dbg.enabled) dbg('reply %d: type %d to a %d request', reqId, type, sent);
    error = XS_EIO;
  }
  if (error === 0 && body !== 0) {
    vptr_set(r, 'rq_reply', body);
    r.set('rq_rlen', len);
  } else if (body !== 0) {
    kmem_free(cpu, body, len + 1);
  }
  xs_complete(cpu, sc, rq, error);
}

/** xenstored is gone for good: every request, queued or sent, fails with EIO. */
export function xs_fail_all(cpu: GuestCpu, sc: number): void {
  const sendq = xb_addr(sc, 'sc_sendq');
  for (let link = TAILQ_FIRST(cpu.mem, sendq); link !== 0; link = TAILQ_FIRST(cpu.mem, sendq)) {
    xs_complete(cpu, sc, link - RQ_SENDQ, XS_EIO);
  }
  for (let slot = 0; slot < XS_NREQ; slot++) {
    const rq = xs_table_get(cpu, sc, slot);
    if (rq !== 0) xs_complete(cpu, sc, rq, XS_EIO);
  }
  xs_quiesce_check(cpu, sc);
}

function xs_table_get(cpu: GuestCpu, sc: number, slot: number): number {
  const lo = cpu.mem.getUint32(sc + TABLE + 8 * slot, true);
  const hi = cpu.mem.getUint32(sc + TABLE + 8 * slot + 4, true) & 0xffff;
  return hi * 0x1_0000_0000 + lo;
}

// ---------------------------------------------------------------------------
// The owner's side

/**
 * Issue a request for the current lwp and sleep until it is finished;
 * `cont(cpu, arg, 0)` runs then, and collects it with xs_result.
 */
export function xs_talk(cpu: GuestCpu, type: number, tx: number, payload: string, cont: KSym, cookie = 0): void {
  const l = curlwp(cpu);
  const sc = xenbus_softc_of(cpu);
  let rq = 0;
  if (sc !== 0) {
    rq = xs_request_new(cpu, sc, type, tx, payload, l, cookie);
  }
  if (rq === 0) {
    // No xenbus or no memory: nothing to collect; xs_result says so.
    preempt(cpu, cont);
    return;
  }
  if (xs_request.view(cpu.mem, rq).get('rq_state') === XSRQ_DONE) preempt(cpu, cont);
  else tsleep(cpu, rq, 0, cont, 'xsreq');
}

/**
 * Finish at once with `error` and no reply, as if a request had been
 * answered: `cont` runs next step and xs_result returns the error.
 */
export function xs_complete_now(cpu: GuestCpu, error: number, cont: KSym): void {
  const sc = xenbus_softc_of(cpu);
  const rq = sc === 0 ? 0 : kmem_alloc(cpu, RQ_MSG + XS_HDRSIZE);
  if (rq !== 0) {
    cpu.mem.fill(rq, RQ_MSG + XS_HDRSIZE, 0);
    const r = xs_request.view(cpu.mem, rq);
    vptr_set(r, 'rq_owner', curlwp(cpu));
    r.set('rq_slot', XS_NOSLOT);
    r.set('rq_msglen', XS_HDRSIZE);
    r.set('rq_state', XSRQ_DONE);
    r.set('rq_error', error);
    TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_owned'), rq + RQ_OWNED);
  }
  preempt(cpu, cont);
}

/** The current lwp's finished request, or 0. */
function xs_owned_find(cpu: GuestCpu, sc: number): number {
  const l = curlwp(cpu);
  const head = xb_addr(sc, 'sc_owned');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const rq = link - RQ_OWNED;
    if (vptr(xs_request.view(cpu.mem, rq), 'rq_owner') === l) return rq;
  }
  return 0;
}

/**
 * Collect the current lwp's finished request: its error and reply. Frees
 * it. With no request to collect (xenbus not attached, no memory to make
 * one), the error is ENXIO or ENOMEM.
 */
export function xs_result(cpu: GuestCpu): XsResult {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return { error: XS_ENXIO, value: '', cookie: 0 };
  const rq = xs_owned_find(cpu, sc);
  if (rq === 0) return { error: XS_ENOMEM, value: '', cookie: 0 };
  const r = xs_request.view(cpu.mem, rq);
  const cookie = vu64(r, 'rq_cookie');
  if (r.get('rq_state') !== XSRQ_DONE) {
    // Woken before the reply (cannot happen with xs_talk): let it finish unowned.
    TAILQ_REMOVE(cpu.mem, rq + RQ_OWNED);
    vptr_set(r, 'rq_owner', 0);
    return { error: XS_EINTR, value: '', cookie };
  }
  const error = r.get('rq_error');
  const reply = vptr(r, 'rq_reply');
  let value = '';
  if (reply !== 0) {
    const len = r.get('rq_rlen');
    const bytes = cpu.mem.readBytes(reply, len);
    for (let i = 0; i < bytes.length; i++) value += String.fromCharCode(bytes[i] as number);
  }
  xs_request_free(cpu, rq);
  return { error, value, cookie };
}

/** A transaction id from xs_transaction_start's result; 0 (none) when it is not a valid one. */
export function xs_result_tx(r: XsResult): number {
  const s = r.value.replace(/\0$/, '');
  if (r.error !== 0 || !/^[0-9]{1,10}$/.test(s)) return 0;
  const n = Number(s);
  return n > 0 && n <= 0xffff_ffff ? n : 0;
}

/* The operations (tx 0: outside any transaction). Paths are relative to
 * /local/domain/<our id> unless they start with '/'. */

export function xs_read(cpu: GuestCpu, tx: number, path: string, cont: KSym): void {
  xs_talk(cpu, XS_READ, tx, `${path}\0`, cont);
}

export function xs_write(cpu: GuestCpu, tx: number, path: string, value: string, cont: KSym): void {
  xs_talk(cpu, XS_WRITE, tx, `${path}\0${value}`, cont);
}

export function xs_directory(cpu: GuestCpu, tx: number, path: string, cont: KSym): void {
  xs_talk(cpu, XS_DIRECTORY, tx, `${path}\0`, cont);
}

export function xs_mkdir(cpu: GuestCpu, tx: number, path: string, cont: KSym): void {
  xs_talk(cpu, XS_MKDIR, tx, `${path}\0`, cont);
}

export function xs_rm(cpu: GuestCpu, tx: number, path: string, cont: KSym): void {
  xs_talk(cpu, XS_RM, tx, `${path}\0`, cont);
}

/** Start a transaction; the result's value is its id (xs_result_tx). */
export function xs_transaction_start(cpu: GuestCpu, cont: KSym): void {
  xs_talk(cpu, XS_TRANSACTION_START, 0, '\0', cont);
}

/**
 * Commit (or abort) a transaction. A commit that conflicts with another
 * writer fails with EAGAIN: the caller starts over (new transaction, read
 * again, write again), as NetBSD's and Linux's callers do.
 */
export function xs_transaction_end(cpu: GuestCpu, tx: number, commit: boolean, cont: KSym): void {
  xs_talk(cpu, XS_TRANSACTION_END, tx, commit ? 'T\0' : 'F\0', cont);
}

/* Nobody waits: for interrupt context, attach, and notices to the host. */

/** Queue a request nobody waits for. 0, or an errno when it could not even be queued. */
export function xs_async(cpu: GuestCpu, type: number, tx: number, payload: string, cookie = 0): number {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return XS_ENXIO;
  if (xb_dead(cpu, sc)) return XS_EIO;
  return xs_request_new(cpu, sc, type, tx, payload, 0, cookie) === 0 ? XS_ENOMEM : 0;
}

export function xs_write_async(cpu: GuestCpu, path: string, value: string): number {
  return xs_async(cpu, XS_WRITE, 0, `${path}\0${value}`);
}

export function xs_rm_async(cpu: GuestCpu, path: string): number {
  return xs_async(cpu, XS_RM, 0, `${path}\0`);
}

export function xs_unwatch_async(cpu: GuestCpu, path: string, token: string): number {
  return xs_async(cpu, XS_UNWATCH, 0, `${path}\0${token}\0`);
}

// ---------------------------------------------------------------------------
// Suspend and resume (the save/restore path plugs in here)

/** Where xs_suspend sleeps until the last reply is in. */
function xs_quiesce_wchan(sc: number): number {
  return xb_addr(sc, 'sc_nsent');
}

/** Wake xs_suspend once nothing is outstanding. */
function xs_quiesce_check(cpu: GuestCpu, sc: number): void {
  const v = xenbus_softc.view(cpu.mem, sc);
  if ((v.get('sc_flags') & XBF_SUSPENDED) !== 0 && xs_outstanding(cpu, sc) === 0) wakeup(cpu, xs_quiesce_wchan(sc));
}

/** Requests written (at least in part) and not yet answered. */
export function xs_outstanding(cpu: GuestCpu, sc: number): number {
  return xenbus_softc.view(cpu.mem, sc).get('sc_nsent');
}

/**
 * First half of xenbus suspend (an lwp of the save path): stop writing new
 * requests (they queue up, to go out after resume) and continue at `cont`
 * once every outstanding reply is in. A request half-written is finished
 * first, so the ring never holds a torn message.
 */
export function xs_suspend(cpu: GuestCpu, cont: KSym): void {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) {
    preempt(cpu, cont);
    return;
  }
  const v = xenbus_softc.view(cpu.mem, sc);
  v.set('sc_flags', v.get('sc_flags') | XBF_SUSPENDED);
  if (xs_outstanding(cpu, sc) === 0 || xb_dead(cpu, sc)) preempt(cpu, cont);
  else tsleep(cpu, xs_quiesce_wchan(sc), 0, cont, 'xssuspend');
}

/** Has xs_suspend finished waiting (nothing outstanding)? */
export function xs_suspended(cpu: GuestCpu, sc: number): boolean {
  const v = xenbus_softc.view(cpu.mem, sc);
  return (v.get('sc_flags') & XBF_SUSPENDED) !== 0 && (xs_outstanding(cpu, sc) === 0 || xb_dead(cpu, sc));
}

/** Let queued requests go again (after xb_init_comms on resume). */
export function xs_unsuspend(cpu: GuestCpu, sc: number): void {
  const v = xenbus_softc.view(cpu.mem, sc);
  v.set('sc_flags', v.get('sc_flags') & ~XBF_SUSPENDED);
  xb_kick(cpu, sc);
}

export const xenbus_xs_ksyms = ksymtab({
  xs_errno, xs_strings, xs_request_new, xs_request_size, xs_request_free, xs_request_what, xs_complete, xs_reply_arrived,
  xs_fail_all, xs_table_get, xs_talk, xs_complete_now, xs_owned_find, xs_result, xs_result_tx, xs_read, xs_write, xs_directory, xs_mkdir,
  xs_rm, xs_transaction_start, xs_transaction_end, xs_async, xs_write_async, xs_rm_async, xs_unwatch_async,
  xs_quiesce_wchan, xs_quiesce_check, xs_outstanding, xs_suspend, xs_suspended, xs_unsuspend,
});
