/*
 * ctrl_if: the Xen 2.0 control interface, guest side (NetBSD's
 * arch/xen/xen/ctrl_if.c, whose suspend half NetBSD left `#ifdef notyet`;
 * Linux 2.4-xen's arch/xen/kernel/ctrl_if.c). ARCHITECTURE §5.
 *
 * One page (control_if_t) shared with dom0's domain controller: two rings
 * of 8 control_msg_t and four free-running u32 indices.
 *
 *   tx_ring  guest -> dom0. We write a request at tx_req_prod and advance
 *            it; dom0 answers in the same slot and advances tx_resp_prod.
 *            At most 8 unanswered: a sender finding the ring full waits
 *            on sc_txq until an answer frees a slot (ctrl_if_tx.ts).
 *   rx_ring  dom0 -> guest. dom0 writes at rx_req_prod; we answer in the
 *            same slot, in order, echoing type/subtype/id, and advance
 *            rx_resp_prod. A type nobody registered for is answered with
 *            length 0.
 *
 * Attach (`ctrl_if0 at hypervisor0`, a line of the device table): the page
 * and port come from the command line (`ctrl_if=<pfn>,<port>`, parsed by
 * the boot path into xm_ctrl_if_pfn/_port; the page is ours, so it is in
 * the direct map). Without ctrl_if= there is no ctrl_if0 (match says no).
 * The port must be a channel to dom0 (EVTCHNOP_status). Attach is "resume
 * from nothing": it connects through ctrl_if_connect, the same code the
 * resume path uses.
 *
 * Who runs what:
 *   ctrl_if_intr    (event handler, interrupt context) takes dom0's answers
 *                   to our requests, wakes their senders, refills the ring
 *                   from sc_txq, and wakes the ctrl_if thread for rx work;
 *   ctrl_if_thread  (the "ctrlif" lwp) answers dom0's requests through the
 *                   receivers registered per type, and runs what a receiver
 *                   asks to run once its answer is out (poweroff, suspend:
 *                   ctrl_if_shutdown.ts).
 *
 * Peer data is hostile: the indices dom0 writes are read once per pass and
 * checked (no more answers than requests outstanding, no more than 8
 * requests from dom0); a violation stops ctrl_if for good (port masked,
 * waiting senders fail with ENXIO, one line on the console) and the guest
 * runs on. An answer that does not echo its request fails that request
 * only (EIO).
 *
 * Suspend/resume (pmf; NetBSD's `notyet`, done): suspend masks the port and
 * stops taking events; requests stay where they are (queued, or in the
 * ring: the page is saved with the guest, and dom0's controller serves
 * what waits in it when it attaches the restored page). The PFN is the
 * same after a restore; the port is not: the toolstack allocates a new
 * unbound port for dom0 in the new domain and rewrites `ctrl_if=<pfn>,<port>`
 * in the live start_info's command line (hypervisor/tools/save,
 * restore-finish.ts), which the resume path copies in before devices
 * resume. Resume reconnects to the port the command line names then: the
 * new one after a restore, the same one after a cancelled or refused
 * suspend. The PFN must not change.
 *
 * Nothing here reads or writes xenstore.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import {
  control_if, control_msg, CONTROL_RING_SIZE, CONTROL_MSG_PAYLOAD, MASK_CONTROL_IDX, CMSG_SHUTDOWN,
} from '../../../hypervisor/public/domain_controller.js';
import {
  EVTCHNOP_status, EVTCHNSTAT_unbound, EVTCHNSTAT_interdomain,
} from '../../../hypervisor/public/event_channel.js';
import { DOMID_SELF } from '../../../hypervisor/public/xen.js';
import { ksymtab, ksymresolve, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal, aprint_error, printf } from '../../../sys/kern/subr_prf.js';
import { device_private } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { lwp_create } from '../../../sys/kern/kern_lwp.js';
import { tsleep, wakeup } from '../../../sys/kern/kern_synch.js';
import { kmem_free } from '../../../sys/kern/subr_kmem.js';
import { lwp, LSONPROC } from '../../../sys/sys/lwp.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { ENXIO, EIO, EINVAL, EBUSY } from '../../../sys/sys/errno.js';
import { TAILQ_INIT, TAILQ_FIRST, TAILQ_REMOVE } from '../../../sys/sys/queue.js';
import { kstr_get, strlcpy, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { pfn_to_kva } from '../include/vmparam.js';
import { xen_attach_args, XEN_DEVNAMELEN, xmd } from '../include/xen.js';
import { HYPERVISOR_event_channel_op } from '../include/hypercalls.js';
import { xpmap_nr_pages } from '../x86/x86_xpmap.js';
import { event_set_handler, event_remove_handler, hypervisor_unmask_event, hypervisor_notify_via_evtchn } from './evtchn.js';
import { xen_cmdline_value } from './xen_machdep.js';
import {
  ctrl_if_req, ctrl_if_view, ctrl_if_softc_of, cif_addr, cif_setflag, CTRL_IF_NTYPES, CTRL_IF_WHYLEN,
  CRQ_INRING, CRQ_DONE, CIF_CONNECTED, CIF_SUSPENDED, CIF_BROKEN,
} from './ctrl_if_var.js';

const dbg = createDebug('guest:ctrl_if');

const RQ_LIST = ctrl_if_req.offsetOf('rq_list');
const RQ_MSG = ctrl_if_req.offsetOf('rq_msg');
const MSG_SIZE = control_msg.size;
const MSG_BODY = control_msg.offsetOf('msg');

function page_view(cpu: GuestCpu, sc: number) {
  return control_if.view(cpu.mem, vptr(ctrl_if_view(cpu, sc), 'sc_page'));
}

/** What the thread sleeps on. */
export function ctrl_if_thread_wchan(sc: number): number {
  return cif_addr(sc, 'sc_rxmsg');
}

// ---------------------------------------------------------------------------
// autoconf

/** Matches "ctrl_if" when the builder gave us one (ctrl_if= on the command line); else there is no such device. */
export function ctrl_if_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  if (kstr_get(cpu.mem, aux + xen_attach_args.offsetOf('xa_device'), XEN_DEVNAMELEN) !== 'ctrl_if') return 0;
  return vu64(xmd(cpu), 'xm_ctrl_if_pfn') !== 0 ? 1 : 0;
}

export function ctrl_if_attach(cpu: GuestCpu, _parent: number, self: number, _aux: number): void {
  const sc = device_private(cpu, self);
  const v = ctrl_if_view(cpu, sc);
  vptr_set(v, 'sc_dev', self);
  TAILQ_INIT(cpu.mem, cif_addr(sc, 'sc_txq'));
  TAILQ_INIT(cpu.mem, cif_addr(sc, 'sc_owned'));
  pmf_device_register(cpu, self, 'ctrl_if_suspend', 'ctrl_if_resume');
  const x = xmd(cpu);
  const pfn = vu64(x, 'xm_ctrl_if_pfn');
  const port = x.get('xm_ctrl_if_port');
  aprint_normal(cpu, ': Xen 2.0 control interface\n');
  if (pfn >= xpmap_nr_pages(cpu)) {
    ctrl_if_broken(cpu, sc, `page pfn ${pfn} is beyond our ${xpmap_nr_pages(cpu)} pages`);
    return;
  }
  vu64_set(v, 'sc_pfn', pfn);
  vptr_set(v, 'sc_page', pfn_to_kva(pfn));
  // Our private indices start where the page is (requests dom0 queued before we came are answered).
  const p = page_view(cpu, sc);
  v.set('sc_tx_req_prod', p.get('tx_req_prod'));
  v.set('sc_tx_resp_cons', p.get('tx_resp_prod'));
  v.set('sc_rx_req_cons', p.get('rx_resp_prod'));
  ctrl_if_register_receiver(cpu, CMSG_SHUTDOWN, 'ctrl_if_shutdown_rx');
  const l = lwp_create(cpu, 'ctrlif', 'ctrl_if_thread', sc);
  if (l === 0) {
    ctrl_if_broken(cpu, sc, 'no memory for the ctrl_if thread');
    return;
  }
  vptr_set(v, 'sc_thread', l);
  if (ctrl_if_connect(cpu, sc, port)) aprint_normal(cpu, 'ctrl_if0: page pfn %lu, event channel %u\n', pfn, port);
}

// ---------------------------------------------------------------------------
// connecting

/** Why `port` cannot be our channel to dom0, or '' when it can (EVTCHNOP_status). */
export function ctrl_if_port_check(cpu: GuestCpu, sc: number, port: number): string {
  if (!(Number.isInteger(port) && port > 0)) return `port ${port} is not a port`;
  const st = ctrl_if_view(cpu, sc).sub('sc_status');
  cpu.mem.fill(st.base, st.layout.size, 0);
  st.set('dom', DOMID_SELF);
  st.set('port', port);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_status, st.base);
  if (rc !== 0) return `EVTCHNOP_status(${port}) failed (${rc})`;
  const status = st.get('status');
  const u = st.sub('u');
  if (status === EVTCHNSTAT_unbound && u.sub('unbound').get('dom') === 0) return '';
  if (status === EVTCHNSTAT_interdomain && u.sub('interdomain').get('dom') === 0) return '';
  return `port ${port} is not a channel to dom0 (status ${status})`;
}

/**
 * Check the page's indices against what a correct dom0 can have left and
 * against what we wrote ourselves. '' when they make sense.
 */
function ctrl_if_page_check(cpu: GuestCpu, sc: number): string {
  const v = ctrl_if_view(cpu, sc);
  const p = page_view(cpu, sc);
  if (p.get('tx_req_prod') !== v.get('sc_tx_req_prod') || p.get('rx_resp_prod') !== v.get('sc_rx_req_cons')) {
    return `our indices on the page were overwritten (tx_req_prod ${p.get('tx_req_prod')}, rx_resp_prod ${p.get('rx_resp_prod')})`;
  }
  const txOut = (v.get('sc_tx_req_prod') - v.get('sc_tx_resp_cons')) >>> 0;
  if (txOut > CONTROL_RING_SIZE) return `${txOut} requests outstanding in a ring of ${CONTROL_RING_SIZE}`;
  const rxOut = (p.get('rx_req_prod') - v.get('sc_rx_req_cons')) >>> 0;
  if (rxOut > CONTROL_RING_SIZE) return `rx_req_prod ${p.get('rx_req_prod')} is ${rxOut} past rx_resp_prod (ring of ${CONTROL_RING_SIZE})`;
  return '';
}

/**
 * Connect to the page at sc_page through `port`: handler, unmask, then
 * catch up with whatever happened while we were away. False (with a line
 * on the console) when it cannot.
 */
export function ctrl_if_connect(cpu: GuestCpu, sc: number, port: number): boolean {
  const v = ctrl_if_view(cpu, sc);
  if ((v.get('sc_flags') & CIF_BROKEN) !== 0) return false;
  const bad = ctrl_if_port_check(cpu, sc, port);
  const why = bad !== '' ? bad : ctrl_if_page_check(cpu, sc);
  if (why !== '') {
    ctrl_if_broken(cpu, sc, why);
    return false;
  }
  // (The old port's handler went at suspend; after a restore its number may be someone else's now.)
  v.set('sc_port', port);
  if (event_set_handler(cpu, port, 'ctrl_if_intr', sc, 'ctrl_if') !== 0) {
    ctrl_if_broken(cpu, sc, `port ${port} already has a handler`);
    return false;
  }
  cif_setflag(cpu, sc, CIF_CONNECTED, CIF_SUSPENDED);
  if (dbg.enabled) dbg('vcpu%d: connected, pfn %d port %d', cpu.vcpuId, vu64(v, 'sc_pfn'), port);
  hypervisor_unmask_event(cpu, port);
  // Answers that came while we were away, requests that waited, dom0's requests.
  ctrl_if_tx_service(cpu, sc);
  if ((v.get('sc_flags') & CIF_BROKEN) !== 0) return false;
  if (ctrl_if_tx_push(cpu, sc) === 0) ctrl_if_notify(cpu, sc);
  wakeup(cpu, ctrl_if_thread_wchan(sc));
  return true;
}

/** Signal dom0. */
export function ctrl_if_notify(cpu: GuestCpu, sc: number): void {
  const v = ctrl_if_view(cpu, sc);
  if ((v.get('sc_flags') & CIF_CONNECTED) === 0) return;
  vu64_set(v, 'sc_notifies', vu64(v, 'sc_notifies') + 1);
  hypervisor_notify_via_evtchn(cpu, v.get('sc_port'));
}

/** Is ctrl_if connected and usable? */
export function ctrl_if_usable(cpu: GuestCpu, sc: number): boolean {
  return (ctrl_if_view(cpu, sc).get('sc_flags') & (CIF_CONNECTED | CIF_SUSPENDED | CIF_BROKEN)) === CIF_CONNECTED;
}

// ---------------------------------------------------------------------------
// dom0 broke the protocol

/** Stop using ctrl_if for good: say why, mask the port, fail every request. */
export function ctrl_if_broken(cpu: GuestCpu, sc: number, why: string): void {
  const v = ctrl_if_view(cpu, sc);
  const flags = v.get('sc_flags');
  if ((flags & CIF_BROKEN) !== 0) return;
  cif_setflag(cpu, sc, CIF_BROKEN, CIF_CONNECTED);
  strlcpy(cpu.mem, cif_addr(sc, 'sc_broken'), why, CTRL_IF_WHYLEN);
  // Only a port that carries our handler is ours to mask.
  if ((flags & CIF_CONNECTED) !== 0) event_remove_handler(cpu, v.get('sc_port'));
  aprint_error(cpu, 'ctrl_if0: %s; ctrl_if disabled\n', why);
  for (let s = 0; s < CONTROL_RING_SIZE; s++) {
    const rq = Number(v.getAt('sc_txslot', s));
    v.setAt('sc_txslot', s, 0n);
    if (rq !== 0) ctrl_if_req_done(cpu, rq, ENXIO);
  }
  const q = cif_addr(sc, 'sc_txq');
  for (let link = TAILQ_FIRST(cpu.mem, q); link !== 0; link = TAILQ_FIRST(cpu.mem, q)) {
    TAILQ_REMOVE(cpu.mem, link);
    ctrl_if_req_done(cpu, link - RQ_LIST, ENXIO);
  }
  v.set('sc_txq_len', 0);
  wakeup(cpu, ctrl_if_thread_wchan(sc));
}

/** Why ctrl_if stopped ('' while it works). */
export function ctrl_if_broken_reason(cpu: GuestCpu, sc: number): string {
  return kstr_get(cpu.mem, cif_addr(sc, 'sc_broken'), CTRL_IF_WHYLEN);
}

// ---------------------------------------------------------------------------
// tx: our requests, dom0's answers

/** A request is finished: its owner collects it, or nobody waits and it goes. */
export function ctrl_if_req_done(cpu: GuestCpu, rq: number, error: number): void {
  const r = ctrl_if_req.view(cpu.mem, rq);
  r.set('rq_state', CRQ_DONE);
  r.set('rq_error', error);
  if (vptr(r, 'rq_owner') === 0) {
    kmem_free(cpu, rq, ctrl_if_req.size);
    return;
  }
  wakeup(cpu, rq);
}

/** Move waiting requests into free slots, oldest first; publish; notify. The number moved. */
export function ctrl_if_tx_push(cpu: GuestCpu, sc: number): number {
  if (!ctrl_if_usable(cpu, sc)) return 0;
  const v = ctrl_if_view(cpu, sc);
  const p = page_view(cpu, sc);
  const q = cif_addr(sc, 'sc_txq');
  let prod = v.get('sc_tx_req_prod');
  let n = 0;
  for (let link = TAILQ_FIRST(cpu.mem, q); link !== 0; link = TAILQ_FIRST(cpu.mem, q)) {
    const inflight = (prod - v.get('sc_tx_resp_cons')) >>> 0;
    if (inflight >= CONTROL_RING_SIZE) break;
    TAILQ_REMOVE(cpu.mem, link);
    v.set('sc_txq_len', v.get('sc_txq_len') - 1);
    const rq = link - RQ_LIST;
    const r = ctrl_if_req.view(cpu.mem, rq);
    const slot = MASK_CONTROL_IDX(prod);
    r.sub('rq_msg').set('id', slot);
    cpu.mem.copyWithin(p.sub('tx_ring', slot).base, rq + RQ_MSG, MSG_SIZE);
    r.set('rq_state', CRQ_INRING);
    r.set('rq_idx', prod);
    v.setAt('sc_txslot', slot, BigInt(rq));
    prod = (prod + 1) >>> 0;
    n++;
    if (inflight + 1 > v.get('sc_tx_maxinflight')) v.set('sc_tx_maxinflight', inflight + 1);
  }
  if (n === 0) return 0;
  // The messages are in their slots before dom0 may see the index move.
  v.set('sc_tx_req_prod', prod);
  p.set('tx_req_prod', prod);
  vu64_set(v, 'sc_tx_sent', vu64(v, 'sc_tx_sent') + n);
  ctrl_if_notify(cpu, sc);
  return n;
}

/** Take dom0's answers (tx_resp_prod), finish their requests, refill the ring. */
export function ctrl_if_tx_service(cpu: GuestCpu, sc: number): void {
  const v = ctrl_if_view(cpu, sc);
  const p = page_view(cpu, sc);
  const prod = p.get('tx_resp_prod');
  let cons = v.get('sc_tx_resp_cons');
  const outstanding = (v.get('sc_tx_req_prod') - cons) >>> 0;
  const n = (prod - cons) >>> 0;
  if (n > outstanding) {
    ctrl_if_broken(cpu, sc, `tx_resp_prod ${prod} answers ${n} requests but only ${outstanding} are outstanding`);
    return;
  }
  for (let i = 0; i < n; i++) {
    const slot = MASK_CONTROL_IDX(cons);
    const rq = Number(v.getAt('sc_txslot', slot));
    v.setAt('sc_txslot', slot, 0n);
    cons = (cons + 1) >>> 0;
    if (rq === 0) continue; // a request from before we attached: nobody waits for it
    const ans = p.sub('tx_ring', slot);
    const req = ctrl_if_req.view(cpu.mem, rq).sub('rq_msg');
    let error = 0;
    if (ans.get('type') !== req.get('type') || ans.get('subtype') !== req.get('subtype') || ans.get('id') !== req.get('id')) {
      printf(cpu, 'ctrl_if0: answer %u/%u id %u does not echo request %u/%u id %u\n', ans.get('type'), ans.get('subtype'),
        ans.get('id'), req.get('type'), req.get('subtype'), req.get('id'));
      error = EIO;
    } else if (ans.get('length') > CONTROL_MSG_PAYLOAD) {
      printf(cpu, 'ctrl_if0: answer to %u/%u has length %u\n', req.get('type'), req.get('subtype'), ans.get('length'));
      error = EIO;
    } else {
      cpu.mem.copyWithin(rq + RQ_MSG, ans.base, MSG_SIZE);
    }
    ctrl_if_req_done(cpu, rq, error);
  }
  if (n === 0) return;
  v.set('sc_tx_resp_cons', cons);
  vu64_set(v, 'sc_tx_answered', vu64(v, 'sc_tx_answered') + n);
  ctrl_if_tx_push(cpu, sc);
}

/** The event handler: answers for us, and work for the thread. */
export function ctrl_if_intr(cpu: GuestCpu, sc: number, _port: number): void {
  if (!ctrl_if_usable(cpu, sc)) return;
  ctrl_if_tx_service(cpu, sc);
  if (!ctrl_if_usable(cpu, sc)) return;
  if (page_view(cpu, sc).get('rx_req_prod') !== ctrl_if_view(cpu, sc).get('sc_rx_req_cons')) wakeup(cpu, ctrl_if_thread_wchan(sc));
}

// ---------------------------------------------------------------------------
// rx: dom0's requests

/**
 * Have `fn(cpu, sc, msg)` answer dom0's requests of `type` (NetBSD's
 * ctrl_if_register_receiver). `msg` is the address of a copy of the
 * request; the receiver edits it into the answer (length and msg[]; type,
 * subtype and id are echoed whatever it writes) and returns a kernel
 * symbol to run once the answer is out (`after(cpu, sc)` on the ctrl_if
 * thread: it may end the step) or 0. It runs on the ctrl_if thread and
 * must not sleep. 0, EBUSY (taken), EINVAL (type), ENXIO (no ctrl_if0).
 */
export function ctrl_if_register_receiver(cpu: GuestCpu, type: number, fn: KSym): number {
  const sc = ctrl_if_softc_of(cpu);
  if (sc === 0) return ENXIO;
  if (!(Number.isInteger(type) && type >= 0 && type < CTRL_IF_NTYPES)) return EINVAL;
  const v = ctrl_if_view(cpu, sc);
  if (v.getAt('sc_rxhand', type) !== 0n) return EBUSY;
  v.setAt('sc_rxhand', type, BigInt(ksymresolve(cpu, fn)));
  return 0;
}

export function ctrl_if_unregister_receiver(cpu: GuestCpu, type: number): void {
  const sc = ctrl_if_softc_of(cpu);
  if (sc !== 0 && Number.isInteger(type) && type >= 0 && type < CTRL_IF_NTYPES) ctrl_if_view(cpu, sc).setAt('sc_rxhand', type, 0n);
}

/**
 * Answer dom0's waiting requests in order. Returns the `after` symbol of
 * the first receiver that asked for one (the requests behind it wait for
 * the next pass), or 0.
 */
export function ctrl_if_rx_service(cpu: GuestCpu, sc: number): number {
  const v = ctrl_if_view(cpu, sc);
  const p = page_view(cpu, sc);
  const prod = p.get('rx_req_prod');
  let cons = v.get('sc_rx_req_cons');
  const n = (prod - cons) >>> 0;
  if (n > CONTROL_RING_SIZE) {
    ctrl_if_broken(cpu, sc, `rx_req_prod ${prod} is ${n} past rx_resp_prod ${cons} (ring of ${CONTROL_RING_SIZE})`);
    return 0;
  }
  const m = ctrl_if_view(cpu, sc).sub('sc_rxmsg');
  let after = 0;
  let i = 0;
  for (; i < n && after === 0; i++) {
    const slot = p.sub('rx_ring', MASK_CONTROL_IDX(cons));
    cpu.mem.copyWithin(m.base, slot.base, MSG_SIZE);
    const type = m.get('type');
    const subtype = m.get('subtype');
    const id = m.get('id');
    const fn = Number(v.getAt('sc_rxhand', type));
    if (m.get('length') > CONTROL_MSG_PAYLOAD) {
      printf(cpu, 'ctrl_if0: request %u/%u id %u has length %u: answered with length 0\n', type, subtype, id, m.get('length'));
      m.set('length', 0);
    } else if (fn === 0) {
      if (dbg.enabled) dbg('vcpu%d: no receiver for type %d: length 0', cpu.vcpuId, type);
      vu64_set(v, 'sc_rx_unhandled', vu64(v, 'sc_rx_unhandled') + 1);
      m.set('length', 0);
    } else {
      after = kcall(cpu, fn, sc, m.base);
    }
    m.set('type', type);
    m.set('subtype', subtype);
    m.set('id', id);
    if (m.get('length') > CONTROL_MSG_PAYLOAD) m.set('length', CONTROL_MSG_PAYLOAD);
    cpu.mem.fill(m.base + MSG_BODY + m.get('length'), CONTROL_MSG_PAYLOAD - m.get('length'), 0);
    cpu.mem.copyWithin(slot.base, m.base, MSG_SIZE);
    cons = (cons + 1) >>> 0;
  }
  if (i === 0) return 0;
  // Answers are in their slots before dom0 may see the index move.
  v.set('sc_rx_req_cons', cons);
  p.set('rx_resp_prod', cons);
  vu64_set(v, 'sc_rx_handled', vu64(v, 'sc_rx_handled') + i);
  ctrl_if_notify(cpu, sc);
  return after;
}

/** Did the running step already say where its lwp continues (sleep, park)? */
function ctrl_if_step_ended(cpu: GuestCpu): boolean {
  const l = curlwp(cpu);
  return l !== 0 && lwp.view(cpu.mem, l).get('l_stat') !== LSONPROC;
}

/** The ctrl_if thread: answer dom0's requests, run what their receivers asked for, sleep. */
export function ctrl_if_thread(cpu: GuestCpu, sc: number, _error: number): void {
  const v = ctrl_if_view(cpu, sc);
  for (;;) {
    const flags = v.get('sc_flags');
    if ((flags & CIF_BROKEN) !== 0) {
      vptr_set(v, 'sc_thread', 0);
      return; // the thread ends
    }
    if (!ctrl_if_usable(cpu, sc)) break;
    const after = ctrl_if_rx_service(cpu, sc);
    if (after === 0) break;
    kcall(cpu, after, sc);
    if (ctrl_if_step_ended(cpu)) return;
  }
  tsleep(cpu, ctrl_if_thread_wchan(sc), 0, 'ctrl_if_thread', 'ctrlif');
}

// ---------------------------------------------------------------------------
// pmf

/** Stop taking events; everything else stays where it is. */
export function ctrl_if_suspend(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = ctrl_if_view(cpu, sc);
  if ((v.get('sc_flags') & CIF_CONNECTED) !== 0) {
    ctrl_if_tx_service(cpu, sc);
    event_remove_handler(cpu, v.get('sc_port'));
  }
  if ((v.get('sc_flags') & CIF_BROKEN) === 0) cif_setflag(cpu, sc, CIF_SUSPENDED, CIF_CONNECTED);
  return true;
}

/** `ctrl_if=<pfn>,<port>` of the command line as start_info has it now, or undefined. */
export function ctrl_if_cmdline(cpu: GuestCpu): { pfn: number; port: number } | undefined {
  const m = /^(\d{1,15}),(\d{1,10})$/.exec(xen_cmdline_value(cpu, 'ctrl_if') ?? '');
  if (m === null) return undefined;
  return { pfn: Number(m[1]), port: Number(m[2]) };
}

/**
 * pmf resume: after a restore (a new domain: the toolstack made a new port
 * and rewrote the command line, which xen_prepare_resume copied in), after
 * a cancelled suspend or a refused one (the same domain, the same line).
 * Either way: the port the command line names now, the page we had.
 */
export function ctrl_if_resume(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = ctrl_if_view(cpu, sc);
  const flags = v.get('sc_flags');
  if (vptr(v, 'sc_page') === 0 || (flags & CIF_BROKEN) !== 0 || (flags & CIF_SUSPENDED) === 0) return true;
  vu64_set(v, 'sc_resumes', vu64(v, 'sc_resumes') + 1);
  const c = ctrl_if_cmdline(cpu);
  const pfn = vu64(v, 'sc_pfn');
  if (c === undefined) ctrl_if_broken(cpu, sc, 'no ctrl_if=<pfn>,<port> on the command line after the resume');
  else if (c.pfn !== pfn) ctrl_if_broken(cpu, sc, `the command line now names page pfn ${c.pfn}, ours is ${pfn}`);
  else if (ctrl_if_connect(cpu, sc, c.port)) aprint_normal(cpu, 'ctrl_if0: resumed on event channel %u\n', c.port);
  // Without ctrl_if the guest runs on: the device itself is back.
  return true;
}

export interface CtrlIfStats {
  readonly flags: number;
  readonly port: number;
  readonly txSent: number;
  readonly txAnswered: number;
  readonly txWaited: number;
  readonly txMaxInflight: number;
  readonly txMaxQueued: number;
  readonly rxHandled: number;
  readonly rxUnhandled: number;
  readonly resumes: number;
  readonly broken: string;
}

/** Counters for diagnostics and tests. */
export function ctrl_if_stats(cpu: GuestCpu, sc: number): CtrlIfStats {
  const v = ctrl_if_view(cpu, sc);
  return {
    flags: v.get('sc_flags'), port: v.get('sc_port'), txSent: vu64(v, 'sc_tx_sent'), txAnswered: vu64(v, 'sc_tx_answered'),
    txWaited: vu64(v, 'sc_tx_waited'), txMaxInflight: v.get('sc_tx_maxinflight'), txMaxQueued: v.get('sc_tx_maxqueued'),
    rxHandled: vu64(v, 'sc_rx_handled'), rxUnhandled: vu64(v, 'sc_rx_unhandled'), resumes: vu64(v, 'sc_resumes'),
    broken: ctrl_if_broken_reason(cpu, sc),
  };
}

export const ctrl_if_ksyms = ksymtab({
  page_view, ctrl_if_thread_wchan, ctrl_if_match, ctrl_if_attach, ctrl_if_port_check, ctrl_if_page_check, ctrl_if_connect,
  ctrl_if_notify, ctrl_if_usable, ctrl_if_broken, ctrl_if_broken_reason, ctrl_if_req_done, ctrl_if_tx_push,
  ctrl_if_tx_service, ctrl_if_intr, ctrl_if_register_receiver, ctrl_if_unregister_receiver, ctrl_if_rx_service,
  ctrl_if_step_ended, ctrl_if_thread, ctrl_if_suspend, ctrl_if_cmdline, ctrl_if_resume, ctrl_if_stats,
});
