/*
 * Event channels, guest side (NetBSD's arch/xen/xen/evtchn.c).
 *
 * A port is a bit in shared_info's evtchn_pending, with a mask bit next to
 * it. The kernel makes ports with EVTCHNOP_* (bind a VIRQ, allocate one for
 * a peer, bind to a peer's), records in the evtsource table who handles
 * each one and how it was made, and the upcall (hypervisor_machdep.ts)
 * calls `evtchn_do_event` for each pending, unmasked port.
 *
 * Driver API:
 *   bind_virq_to_evtch(cpu, virq)             -> port | -errno  (this vCPU)
 *   unbind_virq_from_evtch(cpu, virq)
 *   evtchn_alloc_unbound(cpu, remoteDom)      -> port | -errno  (for a backend to bind)
 *   evtchn_bind_interdomain(cpu, dom, port)   -> port | -errno
 *   evtchn_close(cpu, port)
 *   event_set_handler(cpu, port, fn, arg, name) fn(cpu, arg, port) runs per event
 *   event_remove_handler(cpu, port)
 *   hypervisor_unmask_event / hypervisor_mask_event / hypervisor_notify_via_evtchn
 *   evtchn_virq_port(cpu, virq)               -> port of a bound VIRQ, 0 if none
 *
 * Save/restore (xen_suspend.ts runs these, not drivers):
 *   events_suspend(cpu)            every VIRQ port is closed; its evtsource stays,
 *                                  flagged EVF_SUSPENDED (handler, name, count, mask wish)
 *   events_resume(cpu, newDomain)  every VIRQ is bound again with its handler, and
 *                                  unmasked if its driver had it unmasked. In the same
 *                                  domain (a cancelled suspend) every other port is as
 *                                  it was (unmasked again if its driver wants it so).
 *                                  In a new domain (a restore) every other port died
 *                                  with the old domain: the table forgets them, and
 *                                  their owners make new ones (xencons and xenbus from
 *                                  start_info, frontends in their resume, the suspend
 *                                  channel in xen_suspend.ts). An owner must not close
 *                                  or unbind its old port number then: it may be
 *                                  someone else's by now.
 *
 * Ports start masked (events_default_setup masks all): a driver binds, sets
 * its handler, then unmasks. Handlers run in interrupt context (curlwp 0):
 * they may wake threads and schedule callouts, never sleep.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { shared_info, EVTCHN_WORDS, NR_VIRQS, DOMID_SELF, VIRQ_DEBUG } from '../../../hypervisor/public/xen.js';
import {
  EVTCHNOP_bind_virq, EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_close, EVTCHNOP_send,
  EVTCHNOP_unmask, evtchn_bind_virq, evtchn_alloc_unbound as evtchn_alloc_unbound_t,
  evtchn_bind_interdomain as evtchn_bind_interdomain_t, evtchn_close as evtchn_close_t, evtchn_send, evtchn_unmask,
} from '../../../hypervisor/public/event_channel.js';
import { EBUSY, EINVAL, ENOSPC } from '../../../hypervisor/public/errno.js';
import { ksymtab, ksymresolve, ksymname, kcall, type KSym } from '../../../sys/kern/kern_ksyms.js';
import { panic, printf, aprint_verbose, aprint_error } from '../../../sys/kern/subr_prf.js';
import { uvm_km_alloc } from '../../../sys/uvm/uvm_page.js';
import { UVM_KMF_ZERO } from '../../../sys/uvm/uvm.js';
import { kstr_get, strlcpy, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import {
  evtsource, evtchn_state, NR_EVENT_CHANNELS, EVSOURCE_NAMELEN, EVTCHN_TYPE_NONE, EVTCHN_TYPE_VIRQ,
  EVTCHN_TYPE_UNBOUND, EVTCHN_TYPE_INTERDOMAIN, EVTCHN_TYPE_PRESET, EVF_UNMASKED, EVF_SUSPENDED,
} from '../include/evtchn.js';
import { xmd, xen_shared_info_va } from '../include/xen.js';
import { MAXCPUS } from '../include/vmparam.js';
import { HYPERVISOR_event_channel_op } from '../include/hypercalls.js';

const dbg = createDebug('guest:evtchn');

const SHI_PENDING = shared_info.offsetOf('evtchn_pending');
const SHI_MASK = shared_info.offsetOf('evtchn_mask');
const EV_NAME = evtsource.offsetOf('ev_name');
const ES_OP = evtchn_state.offsetOf('es_op');
/** Entries of es_virq_to_port. */
const VIRQ_SLOTS = MAXCPUS * NR_VIRQS;

function evtchn_state_view(cpu: GuestCpu) {
  return xmd(cpu).sub('xm_evtchn');
}

/** The argument block for one EVTCHNOP (zeroed). */
function evtchn_op_block(cpu: GuestCpu, size: number): number {
  const at = evtchn_state_view(cpu).base + ES_OP;
  cpu.mem.fill(at, size, 0);
  return at;
}

/** Address of `port`'s evtsource, or 0 when the table does not cover it. */
export function evtsource_addr(cpu: GuestCpu, port: number): number {
  const es = evtchn_state_view(cpu);
  const table = vptr(es, 'es_sources');
  if (table === 0 || !(Number.isInteger(port) && port > 0 && port < es.get('es_nsources'))) return 0;
  return table + port * evtsource.size;
}

function evtsource_view(cpu: GuestCpu, port: number) {
  const at = evtsource_addr(cpu, port);
  if (at === 0) panic(cpu, 'evtchn: port %u outside the event table', port);
  return evtsource.view(cpu.mem, at);
}

/**
 * Boot: allocate the evtsource table and mask every port (nothing is
 * bound yet). NetBSD's events_default_setup.
 */
export function events_default_setup(cpu: GuestCpu): void {
  const es = evtchn_state_view(cpu);
  const table = uvm_km_alloc(cpu, NR_EVENT_CHANNELS * evtsource.size, UVM_KMF_ZERO);
  if (table === 0) panic(cpu, 'events_default_setup: no memory for the event table');
  vptr_set(es, 'es_sources', table);
  es.set('es_nsources', NR_EVENT_CHANNELS);
  const sh = xen_shared_info_va(cpu);
  cpu.mem.fill(sh + SHI_MASK, EVTCHN_WORDS * 8, 0xff);
}

/** Record how `port` was made. False when the table cannot hold it. */
function evtsource_record(cpu: GuestCpu, port: number, type: number, remoteDom: number, remotePort: number, virq: number): boolean {
  const at = evtsource_addr(cpu, port);
  if (at === 0) return false;
  const ev = evtsource.view(cpu.mem, at);
  if (ev.get('ev_type') === EVTCHN_TYPE_NONE) {
    const es = evtchn_state_view(cpu);
    es.set('es_nbound', es.get('es_nbound') + 1);
  }
  ev.set('ev_type', type);
  ev.set('ev_remote_dom', remoteDom);
  ev.set('ev_remote_port', remotePort);
  ev.set('ev_virq', virq);
  ev.set('ev_vcpu', cpu.vcpuId);
  return true;
}

/** Forget `port` entirely (after it was closed). */
function evtsource_clear(cpu: GuestCpu, port: number): void {
  const at = evtsource_addr(cpu, port);
  if (at === 0) return;
  if (evtsource.view(cpu.mem, at).get('ev_type') !== EVTCHN_TYPE_NONE) {
    const es = evtchn_state_view(cpu);
    es.set('es_nbound', es.get('es_nbound') - 1);
  }
  cpu.mem.fill(at, evtsource.size, 0);
}

/** A port the hypervisor gave us that the table cannot hold: give it back. */
function evtchn_refuse(cpu: GuestCpu, port: number): number {
  const op = evtchn_op_block(cpu, evtchn_close_t.size);
  evtchn_close_t.view(cpu.mem, op).set('port', port);
  HYPERVISOR_event_channel_op(cpu, EVTCHNOP_close, op);
  return -ENOSPC;
}

function virq_slot(cpu: GuestCpu, virq: number): number {
  if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS)) panic(cpu, 'evtchn: bad VIRQ %d', virq);
  return cpu.vcpuId * NR_VIRQS + virq;
}

/** Port of `virq` on this vCPU, binding it first if needed; -errno on failure. */
export function bind_virq_to_evtch(cpu: GuestCpu, virq: number): number {
  const es = evtchn_state_view(cpu);
  const slot = virq_slot(cpu, virq);
  const have = es.getAt('es_virq_to_port', slot);
  if (have !== 0) return have;
  const op = evtchn_op_block(cpu, evtchn_bind_virq.size);
  const v = evtchn_bind_virq.view(cpu.mem, op);
  v.set('virq', virq);
  v.set('vcpu', cpu.vcpuId);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_bind_virq, op);
  if (rc < 0) return rc;
  const port = v.get('port');
  if (!evtsource_record(cpu, port, EVTCHN_TYPE_VIRQ, 0, 0, virq)) return evtchn_refuse(cpu, port);
  es.setAt('es_virq_to_port', slot, port);
  if (dbg.enabled) dbg('vcpu%d: VIRQ %d on port %d', cpu.vcpuId, virq, port);
  return port;
}

/** Undo bind_virq_to_evtch (handler and port go). */
export function unbind_virq_from_evtch(cpu: GuestCpu, virq: number): number {
  const es = evtchn_state_view(cpu);
  const slot = virq_slot(cpu, virq);
  const port = es.getAt('es_virq_to_port', slot);
  if (port === 0) return -EINVAL;
  es.setAt('es_virq_to_port', slot, 0);
  return evtchn_close(cpu, port);
}

/** A new port of ours that domain `remoteDom` may bind (a frontend's port). */
export function evtchn_alloc_unbound(cpu: GuestCpu, remoteDom: number): number {
  const op = evtchn_op_block(cpu, evtchn_alloc_unbound_t.size);
  const v = evtchn_alloc_unbound_t.view(cpu.mem, op);
  v.set('dom', DOMID_SELF);
  v.set('remote_dom', remoteDom);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_alloc_unbound, op);
  if (rc < 0) return rc;
  const port = v.get('port');
  if (!evtsource_record(cpu, port, EVTCHN_TYPE_UNBOUND, remoteDom, 0, 0)) return evtchn_refuse(cpu, port);
  if (dbg.enabled) dbg('vcpu%d: port %d allocated for d%d', cpu.vcpuId, port, remoteDom);
  return port;
}

/** Bind to `remotePort` of `remoteDom` (allocated for us there); our new port. */
export function evtchn_bind_interdomain(cpu: GuestCpu, remoteDom: number, remotePort: number): number {
  const op = evtchn_op_block(cpu, evtchn_bind_interdomain_t.size);
  const v = evtchn_bind_interdomain_t.view(cpu.mem, op);
  v.set('remote_dom', remoteDom);
  v.set('remote_port', remotePort);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_bind_interdomain, op);
  if (rc < 0) return rc;
  const port = v.get('local_port');
  if (!evtsource_record(cpu, port, EVTCHN_TYPE_INTERDOMAIN, remoteDom, remotePort, 0)) return evtchn_refuse(cpu, port);
  return port;
}

/** Close a port of ours and forget its handler. */
export function evtchn_close(cpu: GuestCpu, port: number): number {
  hypervisor_mask_event(cpu, port);
  const op = evtchn_op_block(cpu, evtchn_close_t.size);
  evtchn_close_t.view(cpu.mem, op).set('port', port);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_close, op);
  evtsource_clear(cpu, port);
  return rc;
}

/**
 * Call `fn(cpu, arg, port)` for every event on `port`. A port nobody
 * recorded (the console's and xenstore's, made by the builder) is recorded
 * as preset. -EBUSY if the port already has a handler.
 */
export function event_set_handler(cpu: GuestCpu, port: number, fn: KSym, arg: number, name: string): number {
  const at = evtsource_addr(cpu, port);
  if (at === 0) return -EINVAL;
  const ev = evtsource.view(cpu.mem, at);
  if (vptr(ev, 'ev_handler') !== 0) return -EBUSY;
  if (ev.get('ev_type') === EVTCHN_TYPE_NONE) evtsource_record(cpu, port, EVTCHN_TYPE_PRESET, 0, 0, 0);
  vptr_set(ev, 'ev_handler', ksymresolve(cpu, fn));
  vptr_set(ev, 'ev_arg', arg);
  strlcpy(cpu.mem, at + EV_NAME, name, EVSOURCE_NAMELEN);
  return 0;
}

/** Stop handling `port` (it is masked; the port itself stays open). */
export function event_remove_handler(cpu: GuestCpu, port: number): number {
  const at = evtsource_addr(cpu, port);
  if (at === 0) return -EINVAL;
  hypervisor_mask_event(cpu, port);
  const ev = evtsource.view(cpu.mem, at);
  vptr_set(ev, 'ev_handler', 0);
  vptr_set(ev, 'ev_arg', 0);
  return 0;
}

/** Set the mask bit: events stay pending, no upcall. */
export function hypervisor_mask_event(cpu: GuestCpu, port: number): void {
  const sh = xen_shared_info_va(cpu);
  if (!(port > 0 && port < EVTCHN_WORDS * 64)) return;
  const at = sh + SHI_MASK + (port >>> 3);
  cpu.mem.setUint8(at, cpu.mem.getUint8(at) | (1 << (port & 7)));
  const ev = evtsource_addr(cpu, port);
  if (ev !== 0) {
    const v = evtsource.view(cpu.mem, ev);
    v.set('ev_flags', v.get('ev_flags') & ~EVF_UNMASKED);
  }
}

/**
 * Clear the mask bit with EVTCHNOP_unmask, which also raises the upcall if
 * the port is already pending (an event that came while masked is not lost).
 */
export function hypervisor_unmask_event(cpu: GuestCpu, port: number): number {
  const op = evtchn_op_block(cpu, evtchn_unmask.size);
  evtchn_unmask.view(cpu.mem, op).set('port', port);
  const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_unmask, op);
  const ev = evtsource_addr(cpu, port);
  if (rc === 0 && ev !== 0) {
    const v = evtsource.view(cpu.mem, ev);
    v.set('ev_flags', v.get('ev_flags') | EVF_UNMASKED);
  }
  return rc;
}

/** Signal the other end of `port`. */
export function hypervisor_notify_via_evtchn(cpu: GuestCpu, port: number): number {
  const op = evtchn_op_block(cpu, evtchn_send.size);
  evtchn_send.view(cpu.mem, op).set('port', port);
  return HYPERVISOR_event_channel_op(cpu, EVTCHNOP_send, op);
}

/** Is `port` pending? (The bit is Xen's; reading it never clears it.) */
export function hypervisor_event_pending(cpu: GuestCpu, port: number): boolean {
  const sh = xen_shared_info_va(cpu);
  if (!(port > 0 && port < EVTCHN_WORDS * 64)) return false;
  return ((cpu.mem.getUint8(sh + SHI_PENDING + (port >>> 3)) >> (port & 7)) & 1) === 1;
}

/**
 * One event on `port`, from the upcall (its pending bit already cleared):
 * run the handler. A port without one is stray: counted and masked, so it
 * cannot storm.
 */
export function evtchn_do_event(cpu: GuestCpu, port: number): void {
  const at = evtsource_addr(cpu, port);
  const fn = at === 0 ? 0 : vptr(evtsource.view(cpu.mem, at), 'ev_handler');
  if (fn === 0) {
    const es = evtchn_state_view(cpu);
    vu64_set(es, 'es_stray', vu64(es, 'es_stray') + 1);
    hypervisor_mask_event(cpu, port);
    if (dbg.enabled) dbg('vcpu%d: stray event on port %d', cpu.vcpuId, port);
    return;
  }
  const ev = evtsource.view(cpu.mem, at);
  vu64_set(ev, 'ev_count', vu64(ev, 'ev_count') + 1);
  if (dbg.enabled) dbg('vcpu%d: port %d -> %s', cpu.vcpuId, port, ksymname(cpu, fn));
  kcall(cpu, fn, vptr(ev, 'ev_arg'), port);
}

export interface EvtchnInfo {
  readonly port: number;
  readonly type: number;
  readonly handler: number;
  readonly count: number;
  readonly name: string;
  readonly unmasked: boolean;
}

/** What the table says about `port` (diagnostics, tests), undefined if nothing. */
export function evtchn_info(cpu: GuestCpu, port: number): EvtchnInfo | undefined {
  const at = evtsource_addr(cpu, port);
  if (at === 0) return undefined;
  const ev = evtsource.view(cpu.mem, at);
  if (ev.get('ev_type') === EVTCHN_TYPE_NONE) return undefined;
  return {
    port, type: ev.get('ev_type'), handler: vptr(ev, 'ev_handler'), count: vu64(ev, 'ev_count'),
    name: kstr_get(cpu.mem, at + EV_NAME, EVSOURCE_NAMELEN), unmasked: (ev.get('ev_flags') & EVF_UNMASKED) !== 0,
  };
}

/** Every port with a binding recorded, in port order. */
export function evtchn_list(cpu: GuestCpu): EvtchnInfo[] {
  const out: EvtchnInfo[] = [];
  const n = evtchn_state_view(cpu).get('es_nsources');
  for (let p = 1; p < n; p++) {
    const i = evtchn_info(cpu, p);
    if (i !== undefined) out.push(i);
  }
  return out;
}

const TYPE_NAMES = Object.freeze(['none', 'virq', 'unbound', 'interdomain', 'preset']);

/** VIRQ_DEBUG: Xen asks for a dump (`xl debug-keys`); print the event table. */
export function xen_debug_handler(cpu: GuestCpu, _arg: number, port: number): void {
  const es = evtchn_state_view(cpu);
  printf(cpu, 'xen debug event on port %u: %u upcalls, %lu stray\n', port, vu64(es, 'es_upcalls'), vu64(es, 'es_stray'));
  for (const e of evtchn_list(cpu)) {
    printf(cpu, '  port %u %s %s: %lu events%s\n', e.port, TYPE_NAMES[e.type] ?? '?', e.name, e.count, e.unmasked ? '' : ' (masked)');
  }
}

/** Autoconf time: VIRQ_DEBUG gets its handler (NetBSD's events_init). */
export function events_init(cpu: GuestCpu): void {
  const port = bind_virq_to_evtch(cpu, VIRQ_DEBUG);
  if (port < 0) {
    aprint_verbose(cpu, 'evtchn: cannot bind VIRQ_DEBUG (%d)\n', port);
    return;
  }
  event_set_handler(cpu, port, 'xen_debug_handler', 0, 'debug');
  hypervisor_unmask_event(cpu, port);
}

/** Port `virq` is bound to on this vCPU, 0 when it is not bound. */
export function evtchn_virq_port(cpu: GuestCpu, virq: number): number {
  return evtchn_state_view(cpu).getAt('es_virq_to_port', virq_slot(cpu, virq));
}

/**
 * Suspend (NetBSD's events_suspend): close every VIRQ port. Its evtsource
 * stays, flagged EVF_SUSPENDED, so that events_resume can bind it again
 * with the same handler. Ports of other kinds are left to their owners
 * (drivers stopped listening in their pmf suspend). Returns the VIRQs closed.
 */
export function events_suspend(cpu: GuestCpu): number {
  const es = evtchn_state_view(cpu);
  const n = es.get('es_nsources');
  let closed = 0;
  for (let port = 1; port < n; port++) {
    const at = evtsource_addr(cpu, port);
    const ev = evtsource.view(cpu.mem, at);
    if (ev.get('ev_type') !== EVTCHN_TYPE_VIRQ || (ev.get('ev_flags') & EVF_SUSPENDED) !== 0) continue;
    const slot = ev.get('ev_vcpu') * NR_VIRQS + ev.get('ev_virq');
    if (slot < VIRQ_SLOTS && es.getAt('es_virq_to_port', slot) === port) es.setAt('es_virq_to_port', slot, 0);
    const op = evtchn_op_block(cpu, evtchn_close_t.size);
    evtchn_close_t.view(cpu.mem, op).set('port', port);
    const rc = HYPERVISOR_event_channel_op(cpu, EVTCHNOP_close, op);
    if (rc < 0) aprint_verbose(cpu, 'evtchn: closing VIRQ %u port %u failed (%d)\n', ev.get('ev_virq'), port, rc);
    ev.set('ev_flags', ev.get('ev_flags') | EVF_SUSPENDED);
    closed++;
    if (dbg.enabled) dbg('vcpu%d: suspend: VIRQ %d off port %d', cpu.vcpuId, ev.get('ev_virq'), port);
  }
  return closed;
}

/** What events_resume keeps of a VIRQ's record while it binds it again (this entry only). */
interface VirqRecord {
  readonly port: number;
  readonly virq: number;
  readonly vcpu: number;
  readonly handler: number;
  readonly arg: number;
  readonly count: number;
  readonly flags: number;
  readonly name: string;
}

function virq_record(cpu: GuestCpu, port: number): VirqRecord {
  const at = evtsource_addr(cpu, port);
  const ev = evtsource.view(cpu.mem, at);
  return {
    port, virq: ev.get('ev_virq'), vcpu: ev.get('ev_vcpu'), handler: vptr(ev, 'ev_handler'), arg: vptr(ev, 'ev_arg'),
    count: vu64(ev, 'ev_count'), flags: ev.get('ev_flags'), name: kstr_get(cpu.mem, at + EV_NAME, EVSOURCE_NAMELEN),
  };
}

/**
 * Resume (NetBSD's events_resume, Linux's xen_irq_resume): bind every VIRQ
 * events_suspend closed again, with its handler, count and name, unmasked
 * if its driver had it unmasked. `newDomain` (a restore): every other port
 * belonged to the old domain, so the whole table is forgotten first; the
 * toolstack left every port masked. Otherwise (a cancelled suspend) the
 * other ports are still there: the ones their drivers want unmasked and
 * that have a handler are unmasked again. Returns the VIRQs bound again.
 */
export function events_resume(cpu: GuestCpu, newDomain: boolean): number {
  const es = evtchn_state_view(cpu);
  const n = es.get('es_nsources');
  const virqs: VirqRecord[] = [];
  let dropped = 0;
  for (let port = 1; port < n; port++) {
    const ev = evtsource.view(cpu.mem, evtsource_addr(cpu, port));
    const type = ev.get('ev_type');
    if (type === EVTCHN_TYPE_NONE) continue;
    if (type === EVTCHN_TYPE_VIRQ && (newDomain || (ev.get('ev_flags') & EVF_SUSPENDED) !== 0)) virqs.push(virq_record(cpu, port));
    else if (newDomain) dropped++;
  }
  if (newDomain) {
    cpu.mem.fill(vptr(es, 'es_sources'), n * evtsource.size, 0);
    es.set('es_nbound', 0);
    cpu.mem.fill(es.addr('es_virq_to_port'), VIRQ_SLOTS * 4, 0);
  } else {
    for (const r of virqs) evtsource_clear(cpu, r.port);
  }
  let bound = 0;
  for (const r of virqs) {
    if (r.vcpu !== cpu.vcpuId) {
      aprint_error(cpu, 'evtchn: VIRQ %u of vCPU %u cannot be bound again from vCPU %u\n', r.virq, r.vcpu, cpu.vcpuId);
      continue;
    }
    const port = bind_virq_to_evtch(cpu, r.virq);
    if (port < 0) {
      aprint_error(cpu, 'evtchn: cannot bind VIRQ %u again (%d)\n', r.virq, port);
      continue;
    }
    bound++;
    if (r.handler !== 0 && event_set_handler(cpu, port, r.handler, r.arg, r.name) === 0) {
      vu64_set(evtsource.view(cpu.mem, evtsource_addr(cpu, port)), 'ev_count', r.count);
      if ((r.flags & EVF_UNMASKED) !== 0) hypervisor_unmask_event(cpu, port);
    }
    if (dbg.enabled) dbg('vcpu%d: resume: VIRQ %d on port %d (was %d)', cpu.vcpuId, r.virq, port, r.port);
  }
  if (!newDomain) {
    for (let port = 1; port < n; port++) {
      const ev = evtsource.view(cpu.mem, evtsource_addr(cpu, port));
      if (ev.get('ev_type') === EVTCHN_TYPE_NONE || ev.get('ev_type') === EVTCHN_TYPE_VIRQ) continue;
      if ((ev.get('ev_flags') & EVF_UNMASKED) !== 0 && vptr(ev, 'ev_handler') !== 0) hypervisor_unmask_event(cpu, port);
    }
  }
  if (dbg.enabled) dbg('vcpu%d: resume: %d VIRQs bound again, %d ports of the old domain forgotten', cpu.vcpuId, bound, dropped);
  return bound;
}

/** Count of an upcall (the upcall itself is in hypervisor_machdep). */
export function evtchn_upcall_count(cpu: GuestCpu): void {
  const es = evtchn_state_view(cpu);
  vu64_set(es, 'es_upcalls', vu64(es, 'es_upcalls') + 1);
}

export const evtchn_ksyms = ksymtab({
  evtchn_state_view, evtchn_op_block, evtsource_addr, evtsource_view, events_default_setup, evtsource_record,
  evtsource_clear, evtchn_refuse, virq_slot, bind_virq_to_evtch, unbind_virq_from_evtch, evtchn_alloc_unbound,
  evtchn_bind_interdomain, evtchn_close, event_set_handler, event_remove_handler, hypervisor_mask_event,
  hypervisor_unmask_event, hypervisor_notify_via_evtchn, hypervisor_event_pending, evtchn_do_event, evtchn_info,
  evtchn_list, xen_debug_handler, events_init, evtchn_virq_port, events_suspend, virq_record, events_resume,
  evtchn_upcall_count,
});
