/*
 * Sending to dom0 over ctrl_if (NetBSD's ctrl_if_send_message_block and
 * ctrl_if_send_message_and_get_response; Linux 2.4-xen's
 * ctrl_if_send_message_noblock), continuation style.
 *
 * A request is a kmem block (struct ctrl_if_req, ctrl_if_var.ts). It waits
 * on sc_txq, oldest first, until one of the 8 tx slots is free, goes into
 * the ring with id = its slot, and is finished when dom0's answer comes
 * back in that slot (ctrl_if_tx_service checks that it echoes type,
 * subtype and id). So a full ring is flow control, not an error: the
 * sender sleeps until an answer frees a slot, then until its own answer.
 *
 *   ctrl_if_send(cpu, type, subtype, payload, 'foo_answered');
 *   return;                                    // the lwp sleeps
 *   ...
 *   function foo_answered(cpu, arg, _error) {
 *     const r = ctrl_if_result(cpu);           // frees the request
 *     if (r.error !== 0) ...                   // ENXIO: no ctrl_if; EIO: bad answer; ENOMEM
 *     r.payload ...                            // dom0's answer (msg[0..length))
 *   }
 *
 * The continuation always runs, whatever happened. One request per lwp at
 * a time (ctrl_if_result finds it by its owner, curlwp).
 *
 * ctrl_if_send_async: nobody waits; the request is freed when answered.
 * It may be called from interrupt context; at most CTRL_IF_TXQ_MAX such
 * requests wait for a slot (EAGAIN beyond).
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { CONTROL_MSG_PAYLOAD } from '../../../hypervisor/public/domain_controller.js';
import { ksymtab, ksymresolve, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { kmem_zalloc, kmem_free } from '../../../sys/kern/subr_kmem.js';
import { tsleep, preempt } from '../../../sys/kern/kern_synch.js';
import { panic } from '../../../sys/kern/subr_prf.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { ENXIO, ENOMEM, EAGAIN, EBUSY } from '../../../sys/sys/errno.js';
import { TAILQ_INSERT_TAIL, TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE } from '../../../sys/sys/queue.js';
import { vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import {
  ctrl_if_req, ctrl_if_view, ctrl_if_softc_of, cif_addr, CTRL_IF_TXQ_MAX, CRQ_QUEUED, CRQ_DONE, CIF_BROKEN,
} from './ctrl_if_var.js';
import { ctrl_if_tx_push, ctrl_if_req_done } from './ctrl_if.js';

const RQ_LIST = ctrl_if_req.offsetOf('rq_list');
const RQ_OWNED = ctrl_if_req.offsetOf('rq_owned');
const RQ_BODY = ctrl_if_req.offsetOf('rq_msg.msg');

/** A finished request as its owner sees it (valid for this entry only). */
export interface CtrlIfResult {
  /** 0, or ENXIO (no ctrl_if, or it stopped), EIO (dom0's answer was malformed), ENOMEM; EBUSY: not answered yet. */
  readonly error: number;
  readonly type: number;
  readonly subtype: number;
  readonly id: number;
  /** dom0's answer payload (msg[0..length)). */
  readonly payload: Uint8Array;
}

/** Make a request record; 0 when memory is short. */
function ctrl_if_req_new(cpu: GuestCpu, type: number, subtype: number, payload: Uint8Array, owner: number, cont: number): number {
  const rq = kmem_zalloc(cpu, ctrl_if_req.size);
  if (rq === 0) return 0;
  const r = ctrl_if_req.view(cpu.mem, rq);
  const m = r.sub('rq_msg');
  m.set('type', type);
  m.set('subtype', subtype);
  m.set('length', payload.length);
  cpu.mem.writeBytes(rq + RQ_BODY, payload);
  vptr_set(r, 'rq_owner', owner);
  vptr_set(r, 'rq_cont', cont);
  return rq;
}

/** A message no caller may build (a kernel bug, not a peer's). */
function ctrl_if_msg_check(cpu: GuestCpu, who: string, type: number, subtype: number, payload: Uint8Array): void {
  if (payload.length > CONTROL_MSG_PAYLOAD || !(Number.isInteger(type) && type >= 0 && type <= 0xff && Number.isInteger(subtype) && subtype >= 0 && subtype <= 0xff)) {
    panic(cpu, '%s: bad message %d/%d with %u bytes', who, type, subtype, payload.length);
  }
}

/** Queue a request behind the others and move what fits into the ring. */
function ctrl_if_req_queue(cpu: GuestCpu, sc: number, rq: number): void {
  const v = ctrl_if_view(cpu, sc);
  const r = ctrl_if_req.view(cpu.mem, rq);
  r.set('rq_state', CRQ_QUEUED);
  TAILQ_INSERT_TAIL(cpu.mem, cif_addr(sc, 'sc_txq'), rq + RQ_LIST);
  v.set('sc_txq_len', v.get('sc_txq_len') + 1);
  ctrl_if_tx_push(cpu, sc);
  if (r.get('rq_state') !== CRQ_QUEUED) return;
  // It did not go in at once: the ring is full (or ctrl_if is suspended).
  vu64_set(v, 'sc_tx_waited', vu64(v, 'sc_tx_waited') + 1);
  if (v.get('sc_txq_len') > v.get('sc_tx_maxqueued')) v.set('sc_tx_maxqueued', v.get('sc_txq_len'));
}

/**
 * Send a request to dom0 and sleep until its answer; then the lwp
 * continues at `cont(cpu, arg, 0)`, which collects it with ctrl_if_result.
 * Only from an lwp; the calling step must return right after.
 */
export function ctrl_if_send(cpu: GuestCpu, type: number, subtype: number, payload: Uint8Array, cont: KSym): void {
  const l = curlwp(cpu);
  if (l === 0) panic(cpu, 'ctrl_if_send: not called from an lwp');
  ctrl_if_msg_check(cpu, 'ctrl_if_send', type, subtype, payload);
  const sc = ctrl_if_softc_of(cpu);
  // Without ctrl_if0 or memory, ctrl_if_result finds nothing and says ENXIO or ENOMEM.
  const rq = sc === 0 ? 0 : ctrl_if_req_new(cpu, type, subtype, payload, l, ksymresolve(cpu, cont));
  if (rq === 0) {
    preempt(cpu, cont);
    return;
  }
  TAILQ_INSERT_TAIL(cpu.mem, cif_addr(sc, 'sc_owned'), rq + RQ_OWNED);
  const v = ctrl_if_view(cpu, sc);
  if ((v.get('sc_flags') & CIF_BROKEN) !== 0 || vptr(v, 'sc_page') === 0) ctrl_if_req_done(cpu, rq, ENXIO);
  else ctrl_if_req_queue(cpu, sc, rq);
  if (ctrl_if_req.view(cpu.mem, rq).get('rq_state') === CRQ_DONE) preempt(cpu, 'ctrl_if_send_wait');
  else tsleep(cpu, rq, 0, 'ctrl_if_send_wait', 'ctrlif_tx');
}

/** This lwp's request, or 0. */
function ctrl_if_owned_find(cpu: GuestCpu, sc: number): number {
  const l = curlwp(cpu);
  if (sc === 0) return 0;
  const head = cif_addr(sc, 'sc_owned');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    if (vptr(ctrl_if_req.view(cpu.mem, link - RQ_OWNED), 'rq_owner') === l) return link - RQ_OWNED;
  }
  return 0;
}

/** Where a sender sleeps: on to its continuation once the answer is in. */
export function ctrl_if_send_wait(cpu: GuestCpu, arg: number, _error: number): void {
  const rq = ctrl_if_owned_find(cpu, ctrl_if_softc_of(cpu));
  if (rq === 0) return; // cannot happen: nothing of ours in flight, and no continuation known
  const r = ctrl_if_req.view(cpu.mem, rq);
  if (r.get('rq_state') !== CRQ_DONE) {
    tsleep(cpu, rq, 0, 'ctrl_if_send_wait', 'ctrlif_tx');
    return;
  }
  kcall(cpu, vptr(r, 'rq_cont'), arg, 0);
}

/** The finished request of this lwp: its answer, and the request freed. */
export function ctrl_if_result(cpu: GuestCpu): CtrlIfResult {
  const sc = ctrl_if_softc_of(cpu);
  const rq = ctrl_if_owned_find(cpu, sc);
  if (rq === 0) return { error: sc === 0 ? ENXIO : ENOMEM, type: 0, subtype: 0, id: 0, payload: new Uint8Array(0) };
  const r = ctrl_if_req.view(cpu.mem, rq);
  const m = r.sub('rq_msg');
  // Asked before the answer came (a caller's bug): the request stays in flight.
  if (r.get('rq_state') !== CRQ_DONE) return { error: EBUSY, type: 0, subtype: 0, id: 0, payload: new Uint8Array(0) };
  const error = r.get('rq_error');
  const len = Math.min(m.get('length'), CONTROL_MSG_PAYLOAD);
  const out: CtrlIfResult = {
    error, type: m.get('type'), subtype: m.get('subtype'), id: m.get('id'),
    payload: error === 0 ? cpu.mem.readBytes(rq + RQ_BODY, len) : new Uint8Array(0),
  };
  TAILQ_REMOVE(cpu.mem, rq + RQ_OWNED);
  kmem_free(cpu, rq, ctrl_if_req.size);
  return out;
}

/**
 * Send a request nobody waits for (Linux's ctrl_if_send_message_noblock
 * with no callback). 0 once queued; ENXIO (no ctrl_if, or it stopped),
 * EAGAIN (too many already wait for a slot), ENOMEM.
 */
export function ctrl_if_send_async(cpu: GuestCpu, type: number, subtype: number, payload: Uint8Array): number {
  const sc = ctrl_if_softc_of(cpu);
  if (sc === 0) return ENXIO;
  const v = ctrl_if_view(cpu, sc);
  if ((v.get('sc_flags') & CIF_BROKEN) !== 0 || vptr(v, 'sc_page') === 0) return ENXIO;
  if (v.get('sc_txq_len') >= CTRL_IF_TXQ_MAX) return EAGAIN;
  ctrl_if_msg_check(cpu, 'ctrl_if_send_async', type, subtype, payload);
  const rq = ctrl_if_req_new(cpu, type, subtype, payload, 0, 0);
  if (rq === 0) return ENOMEM;
  ctrl_if_req_queue(cpu, sc, rq);
  return 0;
}

export const ctrl_if_tx_ksyms = ksymtab({
  ctrl_if_req_new, ctrl_if_msg_check, ctrl_if_req_queue, ctrl_if_send, ctrl_if_owned_find, ctrl_if_send_wait, ctrl_if_result,
  ctrl_if_send_async,
});
