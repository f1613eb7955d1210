/*
 * xenbus watches and the xenbus thread (NetBSD's xenwatch_thread).
 *
 * A watch is registered BY ID: `struct xenbus_watch` in kmem holds the
 * path, the callback (a kernel symbol), its argument and the id, and the
 * token sent to xenstored is the id in decimal. An event names the token;
 * the id finds the watch (or nothing, if it was removed meanwhile: the
 * event is dropped). The list of watches lives in the softc, so resume can
 * send every XS_WATCH again to a xenstored that has never heard of them.
 *
 * Events become jobs for the xenbus thread, which runs them one at a time,
 * in order. A callback runs on that thread as `func(cpu, arg, 0)` and may
 * sleep: it may call xs_read & co. with a continuation, and the chain of
 * steps goes on from there (`cont(cpu, arg, error)`, same arg). The thread
 * keeps the chain's next step in its own frame and gets control back each
 * time the chain sleeps (it swaps itself in as the lwp's continuation), so
 * a chain ends simply by returning without sleeping, and the next job
 * starts. While a chain runs, `xenwatch_path(cpu)` is the path that fired
 * and `xenwatch_scratch(cpu)` gives XF_SCRATCH bytes of frame for it.
 *
 * Other xenbus work that must sleep runs the same way (`xenbus_defer`):
 * the boot-time probe, the shutdown handler, driver chains.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { XS_WATCH } from '../../../hypervisor/public/io/xs_wire.js';
import { ksymtab, ksymaddr, ksymresolve, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { kmem_alloc, kmem_free } from '../../../sys/kern/subr_kmem.js';
import { lwp_create, lwp_find, lwp_frame } from '../../../sys/kern/kern_lwp.js';
import { tsleep, preempt, wakeup } from '../../../sys/kern/kern_synch.js';
import { aprint_error, printf } from '../../../sys/kern/subr_prf.js';
import { TAILQ_FIRST, TAILQ_NEXT, TAILQ_REMOVE, TAILQ_INSERT_TAIL } from '../../../sys/sys/queue.js';
import { lwp, LSONPROC, LSZOMB } from '../../../sys/sys/lwp.js';
import { curlwp } from '../../../sys/sys/kernel.js';
import { kstr_get, vptr, vptr_set, vu64 } from '../../../sys/lib/libkern/libkern.js';
import {
  xenbus_softc, xenbus_watch, xs_job, xs_request, xenwatch_frame, xb_addr, xenbus_softc_of, XW_PATH, J_PATH, XS_MAXJOBS,
} from './xenbus_var.js';
import { xs_request_new, xs_unwatch_async, xs_talk, XS_ENXIO, XS_EEXIST } from './xenbus_xs.js';

const dbg = createDebug('guest:xenbus');

const XW_LIST = xenbus_watch.offsetOf('xw_list');
const J_LIST = xs_job.offsetOf('j_list');
/** Synchronous jobs run in one thread step before it yields to others. */
const XENWATCH_BATCH = 16;

// ---------------------------------------------------------------------------
// The watch list

/** The watch with id `id`, or 0. */
export function xenbus_watch_find(cpu: GuestCpu, sc: number, id: number): number {
  if (id === 0) return 0;
  const head = xb_addr(sc, 'sc_watches');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    if (xenbus_watch.view(cpu.mem, link - XW_LIST).get('xw_id') === id) return link - XW_LIST;
  }
  return 0;
}

/** A watch's path. */
export function xenbus_watch_path_of(cpu: GuestCpu, w: number): string {
  return kstr_get(cpu.mem, w + XW_PATH, xenbus_watch.view(cpu.mem, w).get('xw_size') - XW_PATH);
}

/** Add a watch to the list (not yet sent); its id, or 0 when memory is short. */
function xenbus_watch_add(cpu: GuestCpu, sc: number, path: string, func: KSym, arg: number): number {
  const size = XW_PATH + path.length + 1;
  const w = kmem_alloc(cpu, size);
  if (w === 0) return 0;
  cpu.mem.fill(w, size, 0);
  const v = xenbus_softc.view(cpu.mem, sc);
  let id = (v.get('sc_nextwatch') + 1) >>> 0;
  if (id === 0) id = 1;
  v.set('sc_nextwatch', id);
  const wv = xenbus_watch.view(cpu.mem, w);
  wv.set('xw_id', id);
  wv.set('xw_size', size);
  vptr_set(wv, 'xw_func', ksymresolve(cpu, func));
  vptr_set(wv, 'xw_arg', arg);
  for (let i = 0; i < path.length; i++) cpu.mem.setUint8(w + XW_PATH + i, path.charCodeAt(i) & 0xff);
  TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_watches'), w + XW_LIST);
  return id;
}

/** Take a watch off the list and free it. */
function xenbus_watch_remove(cpu: GuestCpu, w: number): void {
  TAILQ_REMOVE(cpu.mem, w + XW_LIST);
  kmem_free(cpu, w, xenbus_watch.view(cpu.mem, w).get('xw_size'));
}

/** The XS_WATCH payload of watch `w`: path and token (its id). */
function xenbus_watch_payload(cpu: GuestCpu, w: number): string {
  return `${xenbus_watch_path_of(cpu, w)}\0${xenbus_watch.view(cpu.mem, w).get('xw_id')}\0`;
}

/**
 * Watch `path` from an lwp: `func(cpu, arg, 0)` will run on the xenbus
 * thread for every change (and once right away: xenstored fires a new
 * watch). The watch's id goes to the u32 at `idp` (if non-zero) before the
 * request is sent; `cont` collects the result (xs_result; its cookie is
 * the id). A watch xenstored refuses is forgotten again.
 */
export function xenbus_watch_path(cpu: GuestCpu, path: string, func: KSym, arg: number, idp: number, cont: KSym): void {
  const sc = xenbus_softc_of(cpu);
  const id = sc === 0 ? 0 : xenbus_watch_add(cpu, sc, path, func, arg);
  if (idp !== 0) cpu.mem.setUint32(idp, id, true);
  if (id === 0) {
    preempt(cpu, cont);
    return;
  }
  xs_talk(cpu, XS_WATCH, 0, xenbus_watch_payload(cpu, xenbus_watch_find(cpu, sc, id)), cont, id);
}

/**
 * Watch `path` from anywhere (attach, interrupt context): nobody waits for
 * the reply. Returns the watch id, or 0 (no xenbus, no memory).
 */
export function xenbus_watch_path_async(cpu: GuestCpu, path: string, func: KSym, arg: number): number {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return 0;
  const id = xenbus_watch_add(cpu, sc, path, func, arg);
  if (id === 0) return 0;
  const w = xenbus_watch_find(cpu, sc, id);
  if (xs_request_new(cpu, sc, XS_WATCH, 0, xenbus_watch_payload(cpu, w), 0, id) === 0) {
    xenbus_watch_remove(cpu, w);
    return 0;
  }
  return id;
}

/**
 * Stop watch `id`: no callback runs for it from now on (events already
 * queued are dropped), and xenstored is told. 0, or ENXIO/ENOENT.
 */
export function xenbus_unwatch(cpu: GuestCpu, id: number): number {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return XS_ENXIO;
  const w = xenbus_watch_find(cpu, sc, id);
  if (w === 0) return 2; /* ENOENT */
  const path = xenbus_watch_path_of(cpu, w);
  xenbus_watch_remove(cpu, w);
  xs_unwatch_async(cpu, path, String(id));
  return 0;
}

/** An XS_WATCH request finished (from xs_complete): a refused watch is forgotten. */
export function xs_watch_request_done(cpu: GuestCpu, sc: number, rq: number, error: number): void {
  if (error === 0 || error === XS_EEXIST) return;
  const id = vu64(xs_request.view(cpu.mem, rq), 'rq_cookie');
  const w = xenbus_watch_find(cpu, sc, id);
  if (w === 0) return;
  if (dbg.enabled) dbg('watch %d on %s refused (%d): forgotten', id, xenbus_watch_path_of(cpu, w), error);
  xenbus_watch_remove(cpu, w);
}

/** Resume: send every watch again (a restored domain's xenstored has none of them). */
export function xs_rewatch_all(cpu: GuestCpu, sc: number): number {
  let n = 0;
  const head = xb_addr(sc, 'sc_watches');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    const w = link - XW_LIST;
    const id = xenbus_watch.view(cpu.mem, w).get('xw_id');
    if (xs_request_new(cpu, sc, XS_WATCH, 0, xenbus_watch_payload(cpu, w), 0, id) !== 0) n++;
  }
  return n;
}

/** Every watch: id and path (diagnostics, tests). */
export function xenbus_watch_list(cpu: GuestCpu, sc: number): { id: number; path: string }[] {
  const out: { id: number; path: string }[] = [];
  const head = xb_addr(sc, 'sc_watches');
  for (let link = TAILQ_FIRST(cpu.mem, head); link !== 0; link = TAILQ_NEXT(cpu.mem, head, link)) {
    out.push({ id: xenbus_watch.view(cpu.mem, link - XW_LIST).get('xw_id'), path: xenbus_watch_path_of(cpu, link - XW_LIST) });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Events and jobs

/**
 * Queue `func(cpu, arg, 0)` for the xenbus thread. `watch` is the id of
 * the watch that fired (checked again when the job runs), 0 for a plain
 * job; `path` is what changed. False when the queue is full or memory short.
 */
export function xenbus_job_enqueue(cpu: GuestCpu, sc: number, func: number, arg: number, watch: number, path: string): boolean {
  const v = xenbus_softc.view(cpu.mem, sc);
  const size = J_PATH + path.length + 1;
  const j = v.get('sc_njobs') >= XS_MAXJOBS ? 0 : kmem_alloc(cpu, size);
  if (j === 0) {
    const n = v.get('sc_ndropped') + 1;
    v.set('sc_ndropped', n);
    if (n === 1) aprint_error(cpu, 'xenbus: event queue full, dropping events\n');
    return false;
  }
  cpu.mem.fill(j, size, 0);
  const jv = xs_job.view(cpu.mem, j);
  vptr_set(jv, 'j_func', func);
  vptr_set(jv, 'j_arg', arg);
  jv.set('j_watch', watch);
  jv.set('j_size', size);
  for (let i = 0; i < path.length; i++) cpu.mem.setUint8(j + J_PATH + i, path.charCodeAt(i) & 0xff);
  TAILQ_INSERT_TAIL(cpu.mem, xb_addr(sc, 'sc_jobs'), j + J_LIST);
  v.set('sc_njobs', v.get('sc_njobs') + 1);
  wakeup(cpu, xb_addr(sc, 'sc_jobs'));
  return true;
}

/** Run `func(cpu, arg, 0)` on the xenbus thread (it may sleep there). False if it could not be queued. */
export function xenbus_defer(cpu: GuestCpu, func: KSym, arg: number): boolean {
  const sc = xenbus_softc_of(cpu);
  if (sc === 0) return false;
  return xenbus_job_enqueue(cpu, sc, ksymresolve(cpu, func), arg, 0, '');
}

/**
 * An XS_WATCH_EVENT from xenstored (interrupt context): "path\0token\0"
 * in `body` (kmem, len + 1; ours to free; 0 when memory was short).
 */
export function xs_watch_event_arrived(cpu: GuestCpu, sc: number, body: number, len: number): void {
  if (body === 0) return;
  const text = kstr_get(cpu.mem, body, len);
  const tokenAt = text.length + 1;
  const token = tokenAt < len ? kstr_get(cpu.mem, body + tokenAt, len - tokenAt) : '';
  kmem_free(cpu, body, len + 1);
  const id = /^[1-9][0-9]{0,9}$/.test(token) ? Number(token) : 0;
  const w = id > 0xffff_ffff ? 0 : xenbus_watch_find(cpu, sc, id);
  if (w === 0) {
    if (dbg.enabled) dbg('event on %s for unknown token "%s": dropped', text, token);
    return;
  }
  if (dbg.enabled) dbg('event %s (watch %d)', text, id);
  const wv = xenbus_watch.view(cpu.mem, w);
  xenbus_job_enqueue(cpu, sc, vptr(wv, 'xw_func'), vptr(wv, 'xw_arg'), id, text);
}

// ---------------------------------------------------------------------------
// The xenbus thread

/** Start the xenbus thread if it is not running. False when it cannot be made. */
export function xenwatch_create(cpu: GuestCpu, sc: number): boolean {
  const v = xenbus_softc.view(cpu.mem, sc);
  const lid = v.get('sc_thread_lid');
  if (lid !== 0 && lwp_find(cpu, lid) !== 0) return true;
  const l = lwp_create(cpu, 'xenwatch', 'xenwatch_thread', sc);
  if (l === 0) return false;
  v.set('sc_thread_lid', lwp.view(cpu.mem, l).get('l_lid'));
  return true;
}

function xenwatch_frame_view(cpu: GuestCpu) {
  return xenwatch_frame.view(cpu.mem, lwp_frame(cpu));
}

/** The path whose change the running job is about ("" for a plain job). */
export function xenwatch_path(cpu: GuestCpu): string {
  const j = vptr(xenwatch_frame_view(cpu), 'xf_job');
  if (j === 0) return '';
  return kstr_get(cpu.mem, j + J_PATH, xs_job.view(cpu.mem, j).get('j_size') - J_PATH);
}

/** Scratch bytes (XF_SCRATCH) in the xenbus thread's frame for the running chain. */
export function xenwatch_scratch(cpu: GuestCpu): number {
  return xenwatch_frame_view(cpu).addr('xf_scratch');
}

/**
 * After a step of a chain: did it arrange to sleep? If so, keep its next
 * step in the frame and make the thread itself the lwp's continuation.
 */
function xenwatch_capture(cpu: GuestCpu): boolean {
  const l = curlwp(cpu);
  const lv = lwp.view(cpu.mem, l);
  const stat = lv.get('l_stat');
  if (stat === LSONPROC) return false;
  if (stat === LSZOMB) {
    printf(cpu, 'xenbus: a watch callback tried to end the xenbus thread; ignored\n');
    lv.set('l_stat', LSONPROC);
    return false;
  }
  const f = xenwatch_frame_view(cpu);
  vptr_set(f, 'xf_cont', vptr(lv, 'l_cont'));
  vptr_set(lv, 'l_cont', ksymaddr(cpu, 'xenwatch_thread'));
  return true;
}

/** The running chain has ended: free its job. */
function xenwatch_job_done(cpu: GuestCpu): void {
  const f = xenwatch_frame_view(cpu);
  const j = vptr(f, 'xf_job');
  if (j !== 0) kmem_free(cpu, j, xs_job.view(cpu.mem, j).get('j_size'));
  vptr_set(f, 'xf_job', 0);
  vptr_set(f, 'xf_cont', 0);
  vptr_set(f, 'xf_arg', 0);
  cpu.mem.fill(f.addr('xf_scratch'), xenwatch_frame.fields.xf_scratch.type.size, 0);
}

/**
 * The xenbus thread: resume the chain in progress, if any, then run queued
 * jobs until one sleeps or the queue is empty.
 */
export function xenwatch_thread(cpu: GuestCpu, sc: number, error: number): void {
  const f = xenwatch_frame_view(cpu);
  const cont = vptr(f, 'xf_cont');
  if (cont !== 0) {
    vptr_set(f, 'xf_cont', 0);
    kcall(cpu, cont, vptr(f, 'xf_arg'), error);
    if (xenwatch_capture(cpu)) return;
    xenwatch_job_done(cpu);
  }
  const v = xenbus_softc.view(cpu.mem, sc);
  const head = xb_addr(sc, 'sc_jobs');
  for (let n = 0; n < XENWATCH_BATCH; n++) {
    const link = TAILQ_FIRST(cpu.mem, head);
    if (link === 0) {
      tsleep(cpu, head, 0, 'xenwatch_thread', 'xenwatch');
      return;
    }
    TAILQ_REMOVE(cpu.mem, link);
    v.set('sc_njobs', v.get('sc_njobs') - 1);
    const j = link - J_LIST;
    const jv = xs_job.view(cpu.mem, j);
    const watch = jv.get('j_watch');
    vptr_set(f, 'xf_job', j);
    if (watch !== 0 && xenbus_watch_find(cpu, sc, watch) === 0) {
      xenwatch_job_done(cpu);
      continue;
    }
    const arg = vptr(jv, 'j_arg');
    vptr_set(f, 'xf_arg', arg);
    kcall(cpu, vptr(jv, 'j_func'), arg, 0);
    if (xenwatch_capture(cpu)) return;
    xenwatch_job_done(cpu);
  }
  preempt(cpu, 'xenwatch_thread');
}

/** Jobs waiting for the thread (diagnostics, tests). */
export function xenwatch_pending(cpu: GuestCpu, sc: number): number {
  return xenbus_softc.view(cpu.mem, sc).get('sc_njobs');
}

export const xenbus_watch_ksyms = ksymtab({
  xenbus_watch_find, xenbus_watch_path_of, xenbus_watch_add, xenbus_watch_remove, xenbus_watch_payload, xenbus_watch_path,
  xenbus_watch_path_async, xenbus_unwatch, xs_watch_request_done, xs_rewatch_all, xenbus_watch_list, xenbus_job_enqueue,
  xenbus_defer, xs_watch_event_arrived, xenwatch_create, xenwatch_frame_view, xenwatch_path, xenwatch_scratch,
  xenwatch_capture, xenwatch_job_done, xenwatch_thread, xenwatch_pending,
});
