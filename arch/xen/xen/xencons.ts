/*
 * xencons: the PV console frontend (NetBSD's arch/xen/xen/xencons.c).
 *
 * The console page (struct xencons_interface: an `in` ring from the
 * backend, an `out` ring to it, free-running 32-bit indices) and its event
 * channel come from start_info (console.domU.mfn, .evtchn); the page is
 * ours, so it is reached through the direct map once the M2P gave its PFN.
 *
 * Output: the kernel's console putc (cn_set_putc) writes into `out`. A
 * kernel that cannot spin cannot wait for room, so bytes that do not fit
 * wait in the softc's buffer and follow when the backend signals that it
 * took some; the buffer itself is bounded, and overflow is counted, never
 * blocked on. The backend is told about new output at each newline, when
 * the ring fills, and otherwise a tick later (a callout), so a partial line
 * is never stuck and a burst costs one notification per line.
 *
 * Input: on each event the bytes in `in` move to the softc's input buffer
 * (the tty's raw queue), the backend is told there is room again, and
 * readers sleeping on the buffer are woken (xencons_getc, xencons_read).
 *
 * The ring page is the backend's to write too: indices that claim more
 * than a ring's worth are a broken peer. Then the console goes back to
 * Xen's emergency console (console_io), with what was buffered, and says so.
 *
 * Attach is resume from nothing: attach connects with xencons_resume, the
 * pmf resume handler, which reads start_info afresh (a restored domain has
 * a new console page and port there).
 *
 *   struct xencons_softc {
 *       device_t sc_dev;
 *       struct xencons_interface *sc_intf;  // 0: not connected
 *       uint32_t sc_evtchn;
 *       uint32_t sc_flags;                  // XCF_*
 *       uint32_t sc_ohead, sc_otail;        // sc_obuf, free-running (tail = next write)
 *       uint32_t sc_ihead, sc_itail;        // sc_ibuf, free-running
 *       uint64_t sc_odropped, sc_idropped;  // bytes lost to full buffers
 *       uint64_t sc_obytes, sc_ibytes;      // bytes moved through the rings
 *       uint64_t sc_notifies;
 *       struct callout sc_kick_ch;          // the deferred notification
 *       char sc_obuf[XENCONS_OBUFSIZE];
 *       char sc_ibuf[XENCONS_IBUFSIZE];
 *   };
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import { struct, record, array, u32, u64, char } from '../../../hypervisor/public/layout.js';
import { xencons_interface, XENCONS_IN_SIZE, XENCONS_OUT_SIZE, MASK_XENCONS_IDX } from '../../../hypervisor/public/io/console.js';
import { CONSOLEIO_write } from '../../../hypervisor/public/xen.js';
import { callout } from '../../../sys/sys/callout.js';
import { ksymtab, ksymaddr } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal, aprint_error, cn_set_putc } from '../../../sys/kern/subr_prf.js';
import { callout_init, callout_reset, callout_stop, callout_pending } from '../../../sys/kern/kern_timeout.js';
import { wakeup } from '../../../sys/kern/kern_synch.js';
import { device_private } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { kstr_get, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { pfn_to_kva } from '../include/vmparam.js';
import { xen_attach_args, XEN_DEVNAMELEN, xmd, xmd_addr, XM_SCRATCH_SIZE } from '../include/xen.js';
import { start_info } from '../../../hypervisor/public/xen.js';
import { HYPERVISOR_console_io } from '../include/hypercalls.js';
import { xpmap_mtop } from '../x86/x86_xpmap.js';
import { event_set_handler, event_remove_handler, hypervisor_unmask_event, hypervisor_mask_event, hypervisor_notify_via_evtchn } from './evtchn.js';

const dbg = createDebug('guest:xencons');

export const XENCONS_OBUFSIZE = 16384;
export const XENCONS_IBUFSIZE = 1024;

export const xencons_softc = struct('struct xencons_softc', {
  sc_dev: u64,
  sc_intf: u64,
  sc_evtchn: u32,
  sc_flags: u32,
  sc_ohead: u32,
  sc_otail: u32,
  sc_ihead: u32,
  sc_itail: u32,
  sc_odropped: u64,
  sc_idropped: u64,
  sc_obytes: u64,
  sc_ibytes: u64,
  sc_notifies: u64,
  sc_kick_ch: record(callout),
  sc_obuf: array(char, XENCONS_OBUFSIZE),
  sc_ibuf: array(char, XENCONS_IBUFSIZE),
});

/* sc_flags */
export const XCF_CONNECTED = 0x1;
/** The backend broke the ring protocol: output goes to console_io. */
export const XCF_BROKEN = 0x2;
/** Bytes are in `out` the backend was not told about. */
export const XCF_UNNOTIFIED = 0x4;
export const XCF_SUSPENDED = 0x8;

const OUT = xencons_interface.offsetOf('out');
const IN = xencons_interface.offsetOf('in');
const OUT_CONS = xencons_interface.offsetOf('out_cons');
const OUT_PROD = xencons_interface.offsetOf('out_prod');
const IN_CONS = xencons_interface.offsetOf('in_cons');
const IN_PROD = xencons_interface.offsetOf('in_prod');
const SC_OBUF = xencons_softc.offsetOf('sc_obuf');
const SC_IBUF = xencons_softc.offsetOf('sc_ibuf');
const SC_KICK = xencons_softc.offsetOf('sc_kick_ch');

function xencons_view(cpu: GuestCpu, sc: number) {
  return xencons_softc.view(cpu.mem, sc);
}

function xencons_setflag(cpu: GuestCpu, sc: number, set: number, clear = 0): void {
  const v = xencons_view(cpu, sc);
  v.set('sc_flags', ((v.get('sc_flags') | set) & ~clear) >>> 0);
}

export function xencons_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  return kstr_get(cpu.mem, aux + xen_attach_args.offsetOf('xa_device'), XEN_DEVNAMELEN) === 'xencons' ? 1 : 0;
}

export function xencons_attach(cpu: GuestCpu, _parent: number, self: number, _aux: number): void {
  const sc = device_private(cpu, self);
  const v = xencons_view(cpu, sc);
  vptr_set(v, 'sc_dev', self);
  callout_init(cpu, sc + SC_KICK);
  aprint_normal(cpu, ': Xen Virtual Console Driver\n');
  pmf_device_register(cpu, self, 'xencons_suspend', 'xencons_resume');
  if (!xencons_resume(cpu, self)) {
    aprint_error(cpu, 'xencons0: no console ring, staying on the emergency console\n');
    return;
  }
  vptr_set(xmd(cpu), 'xm_xencons_sc', sc);
  cn_set_putc(cpu, ksymaddr(cpu, 'xencons_cnputc'));
}

/**
 * (Re)connect to the console page and port named in start_info. False when
 * start_info names no page of ours.
 */
export function xencons_resume(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xencons_view(cpu, sc);
  const si = start_info.view(cpu.mem, vptr(xmd(cpu), 'xm_start_info_va')).sub('console').sub('domU');
  const pfn = xpmap_mtop(cpu, Number(si.get('mfn') & 0xff_ffff_ffffn));
  const port = si.get('evtchn');
  if (pfn < 0 || port === 0) return false;
  const old = v.get('sc_evtchn');
  if (old !== 0) event_remove_handler(cpu, old);
  if (event_set_handler(cpu, port, 'xencons_handler', sc, 'xencons') !== 0) return false;
  vptr_set(v, 'sc_intf', pfn_to_kva(pfn));
  v.set('sc_evtchn', port);
  xencons_setflag(cpu, sc, XCF_CONNECTED, XCF_SUSPENDED | XCF_BROKEN);
  if (dbg.enabled) dbg('vcpu%d: console ring pfn %d, port %d', cpu.vcpuId, pfn, port);
  hypervisor_unmask_event(cpu, port);
  // Whatever waited in the buffer (output while suspended) goes now.
  xencons_flush(cpu, sc);
  xencons_notify(cpu, sc);
  return true;
}

/** pmf suspend: push out what fits, then stop listening. Output is buffered meanwhile. */
export function xencons_suspend(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xencons_view(cpu, sc);
  if ((v.get('sc_flags') & XCF_CONNECTED) !== 0) {
    xencons_flush(cpu, sc);
    xencons_notify(cpu, sc);
    event_remove_handler(cpu, v.get('sc_evtchn'));
  }
  // Forget the port: after a restore its number may be someone else's
  // (resume takes the one start_info names then).
  v.set('sc_evtchn', 0);
  callout_stop(cpu, sc + SC_KICK);
  xencons_setflag(cpu, sc, XCF_SUSPENDED, XCF_CONNECTED | XCF_UNNOTIFIED);
  return true;
}

/**
 * Room in `out`, or -1 when the backend's index makes no sense (the ring
 * is then marked broken).
 */
function xencons_out_room(cpu: GuestCpu, sc: number, intf: number): number {
  const used = (cpu.mem.getUint32(intf + OUT_PROD, true) - cpu.mem.getUint32(intf + OUT_CONS, true)) >>> 0;
  if (used > XENCONS_OUT_SIZE) {
    xencons_broken(cpu, sc, `out_cons ${cpu.mem.getUint32(intf + OUT_CONS, true)} is ${used} behind out_prod`);
    return -1;
  }
  return XENCONS_OUT_SIZE - used;
}

/** Move buffered output into `out` as far as it fits; bytes moved. */
export function xencons_flush(cpu: GuestCpu, sc: number): number {
  const v = xencons_view(cpu, sc);
  if ((v.get('sc_flags') & XCF_CONNECTED) === 0) return 0;
  const intf = vptr(v, 'sc_intf');
  let head = v.get('sc_ohead');
  const tail = v.get('sc_otail');
  if (head === tail) return 0;
  const room = xencons_out_room(cpu, sc, intf);
  if (room <= 0) return 0;
  let prod = cpu.mem.getUint32(intf + OUT_PROD, true);
  let n = 0;
  while (n < room && head !== tail) {
    cpu.mem.setUint8(intf + OUT + MASK_XENCONS_IDX(prod, XENCONS_OUT_SIZE), cpu.mem.getUint8(sc + SC_OBUF + (head % XENCONS_OBUFSIZE)));
    prod = (prod + 1) >>> 0;
    head = (head + 1) >>> 0;
    n++;
  }
  cpu.mem.setUint32(intf + OUT_PROD, prod, true);
  v.set('sc_ohead', head);
  vu64_set(v, 'sc_obytes', vu64(v, 'sc_obytes') + n);
  xencons_setflag(cpu, sc, XCF_UNNOTIFIED);
  return n;
}

/** Tell the backend about output it has not heard of. */
export function xencons_notify(cpu: GuestCpu, sc: number): void {
  const v = xencons_view(cpu, sc);
  const flags = v.get('sc_flags');
  if ((flags & (XCF_UNNOTIFIED | XCF_CONNECTED)) !== (XCF_UNNOTIFIED | XCF_CONNECTED)) return;
  xencons_setflag(cpu, sc, 0, XCF_UNNOTIFIED);
  vu64_set(v, 'sc_notifies', vu64(v, 'sc_notifies') + 1);
  hypervisor_notify_via_evtchn(cpu, v.get('sc_evtchn'));
}

/** Queue one byte of output: straight into the ring when nothing waits before it. */
export function xencons_output(cpu: GuestCpu, sc: number, c: number): void {
  const v = xencons_view(cpu, sc);
  const connected = (v.get('sc_flags') & XCF_CONNECTED) !== 0;
  const head = v.get('sc_ohead');
  const tail = v.get('sc_otail');
  if (connected && head === tail) {
    const intf = vptr(v, 'sc_intf');
    const room = xencons_out_room(cpu, sc, intf);
    if (room < 0) {
      xencons_emergency_putc(cpu, c);
      return;
    }
    if (room > 0) {
      const prod = cpu.mem.getUint32(intf + OUT_PROD, true);
      cpu.mem.setUint8(intf + OUT + MASK_XENCONS_IDX(prod, XENCONS_OUT_SIZE), c);
      cpu.mem.setUint32(intf + OUT_PROD, (prod + 1) >>> 0, true);
      vu64_set(v, 'sc_obytes', vu64(v, 'sc_obytes') + 1);
      xencons_setflag(cpu, sc, XCF_UNNOTIFIED);
      if (c === 0x0a || room === 1) xencons_notify(cpu, sc);
      else xencons_kick_later(cpu, sc);
      return;
    }
  }
  // The ring is full, or older bytes wait: keep this one behind them.
  if (((tail - head) >>> 0) >= XENCONS_OBUFSIZE) {
    vu64_set(v, 'sc_odropped', vu64(v, 'sc_odropped') + 1);
  } else {
    cpu.mem.setUint8(sc + SC_OBUF + (tail % XENCONS_OBUFSIZE), c);
    v.set('sc_otail', (tail + 1) >>> 0);
  }
  if (!connected) return;
  xencons_flush(cpu, sc);
  xencons_notify(cpu, sc);
}

/** Schedule the deferred notification (a tick from now) unless one is pending. */
function xencons_kick_later(cpu: GuestCpu, sc: number): void {
  if (!callout_pending(cpu, sc + SC_KICK)) callout_reset(cpu, sc + SC_KICK, 1, 'xencons_kick', sc);
}

/** Callout: flush and notify whatever is waiting. */
export function xencons_kick(cpu: GuestCpu, sc: number): void {
  xencons_flush(cpu, sc);
  xencons_notify(cpu, sc);
}

/** The kernel's console putc (installed with cn_set_putc at attach). */
export function xencons_cnputc(cpu: GuestCpu, c: number): void {
  const sc = vptr(xmd(cpu), 'xm_xencons_sc');
  if (sc === 0 || (xencons_view(cpu, sc).get('sc_flags') & XCF_BROKEN) !== 0) {
    xencons_emergency_putc(cpu, c);
    return;
  }
  xencons_output(cpu, sc, c & 0xff);
}

/** One byte through Xen's emergency console. */
function xencons_emergency_putc(cpu: GuestCpu, c: number): void {
  const buf = xmd_addr('xm_scratch');
  cpu.mem.setUint8(buf, c & 0xff);
  HYPERVISOR_console_io(cpu, CONSOLEIO_write, 1, buf);
}

/** The backend broke the ring: fall back to console_io, with what was buffered. */
function xencons_broken(cpu: GuestCpu, sc: number, why: string): void {
  const v = xencons_view(cpu, sc);
  if ((v.get('sc_flags') & XCF_BROKEN) !== 0) return;
  xencons_setflag(cpu, sc, XCF_BROKEN, XCF_CONNECTED | XCF_UNNOTIFIED);
  const port = v.get('sc_evtchn');
  if (port !== 0) event_remove_handler(cpu, port);
  cn_set_putc(cpu, 0);
  const buf = xmd_addr('xm_scratch');
  let head = v.get('sc_ohead');
  const tail = v.get('sc_otail');
  while (head !== tail) {
    let n = 0;
    for (; n < XM_SCRATCH_SIZE && head !== tail; n++, head = (head + 1) >>> 0) cpu.mem.setUint8(buf + n, cpu.mem.getUint8(sc + SC_OBUF + (head % XENCONS_OBUFSIZE)));
    HYPERVISOR_console_io(cpu, CONSOLEIO_write, n, buf);
  }
  v.set('sc_ohead', head);
  aprint_error(cpu, 'xencons0: console ring broken (%s); using the emergency console\n', why);
}

/** Event from the backend: it took output (send more) or gave input (take it). */
export function xencons_handler(cpu: GuestCpu, sc: number, _port: number): void {
  const v = xencons_view(cpu, sc);
  if ((v.get('sc_flags') & XCF_CONNECTED) === 0) return;
  xencons_flush(cpu, sc);
  const intf = vptr(v, 'sc_intf');
  let cons = cpu.mem.getUint32(intf + IN_CONS, true);
  const prod = cpu.mem.getUint32(intf + IN_PROD, true);
  const avail = (prod - cons) >>> 0;
  if (avail > XENCONS_IN_SIZE) {
    xencons_broken(cpu, sc, `in_prod ${prod} is ${avail} ahead of in_cons`);
    return;
  }
  if (avail > 0) {
    let itail = v.get('sc_itail');
    const ihead = v.get('sc_ihead');
    for (; cons !== prod; cons = (cons + 1) >>> 0) {
      const c = cpu.mem.getUint8(intf + IN + MASK_XENCONS_IDX(cons, XENCONS_IN_SIZE));
      if (((itail - ihead) >>> 0) >= XENCONS_IBUFSIZE) {
        vu64_set(v, 'sc_idropped', vu64(v, 'sc_idropped') + 1);
        continue;
      }
      cpu.mem.setUint8(sc + SC_IBUF + (itail % XENCONS_IBUFSIZE), c);
      itail = (itail + 1) >>> 0;
    }
    cpu.mem.setUint32(intf + IN_CONS, cons, true);
    v.set('sc_itail', itail);
    vu64_set(v, 'sc_ibytes', vu64(v, 'sc_ibytes') + avail);
    xencons_setflag(cpu, sc, XCF_UNNOTIFIED);
    wakeup(cpu, sc + SC_IBUF);
  }
  xencons_notify(cpu, sc);
}

/** Next input byte, or -1 (cngetc without waiting). */
export function xencons_getc(cpu: GuestCpu): number {
  const sc = vptr(xmd(cpu), 'xm_xencons_sc');
  if (sc === 0) return -1;
  const v = xencons_view(cpu, sc);
  const head = v.get('sc_ihead');
  if (head === v.get('sc_itail')) return -1;
  v.set('sc_ihead', (head + 1) >>> 0);
  return cpu.mem.getUint8(sc + SC_IBUF + (head % XENCONS_IBUFSIZE));
}

/** Copy up to `len` input bytes to `va`; how many. */
export function xencons_read(cpu: GuestCpu, va: number, len: number): number {
  let n = 0;
  for (; n < len; n++) {
    const c = xencons_getc(cpu);
    if (c < 0) break;
    cpu.mem.setUint8(va + n, c);
  }
  return n;
}

/** What a reader sleeps on (tsleep) until input arrives; 0 without a console. */
export function xencons_input_wchan(cpu: GuestCpu): number {
  const sc = vptr(xmd(cpu), 'xm_xencons_sc');
  return sc === 0 ? 0 : sc + SC_IBUF;
}

export interface XenconsStats {
  readonly connected: boolean;
  readonly broken: boolean;
  readonly port: number;
  readonly buffered: number;
  readonly outBytes: number;
  readonly inBytes: number;
  readonly outDropped: number;
  readonly inDropped: number;
  readonly notifies: number;
}

export function xencons_stats(cpu: GuestCpu): XenconsStats | undefined {
  const sc = vptr(xmd(cpu), 'xm_xencons_sc');
  if (sc === 0) return undefined;
  const v = xencons_view(cpu, sc);
  const f = v.get('sc_flags');
  return {
    connected: (f & XCF_CONNECTED) !== 0, broken: (f & XCF_BROKEN) !== 0, port: v.get('sc_evtchn'),
    buffered: (v.get('sc_otail') - v.get('sc_ohead')) >>> 0, outBytes: vu64(v, 'sc_obytes'), inBytes: vu64(v, 'sc_ibytes'),
    outDropped: vu64(v, 'sc_odropped'), inDropped: vu64(v, 'sc_idropped'), notifies: vu64(v, 'sc_notifies'),
  };
}

export const xencons_ksyms = ksymtab({
  xencons_view, xencons_setflag, xencons_match, xencons_attach, xencons_resume, xencons_suspend, xencons_out_room,
  xencons_flush, xencons_notify, xencons_output, xencons_kick_later, xencons_kick, xencons_cnputc,
  xencons_emergency_putc, xencons_broken, xencons_handler, xencons_getc, xencons_read, xencons_input_wchan,
  xencons_stats,
});
