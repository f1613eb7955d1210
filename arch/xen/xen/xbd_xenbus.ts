/*
 * xbd: the Xen virtual block device, frontend of a vbd (NetBSD's
 * xbd_xenbus.c). Three layers: xbd_wire.ts (blkif slots), xbd_ring.ts
 * (ring, grants, event channel, shadow), and this file, the driver:
 * autoconf, the xenbus handshake, the interrupt, pmf, and the calls
 * workloads make. The disk layer above it is dev/dksubr.ts.
 *
 *   xbd0 at xenbus0 id 51712: Xen Virtual Block Device Interface
 *   xbd0: 8 MB, 512 bytes/sect x 16384 sectors
 *
 * Attach is resume from nothing: attach calls xbd_xenbus_resume, which
 * queues the connect chain on the xenbus thread; the same chain connects
 * at boot and after a restore (io/blkif.h handshake):
 *
 *   (after a restore: read backend-id and backend again: they moved)
 *   ring page initialized and granted, an unbound port for the backend
 *   one transaction: ring-ref, event-channel, protocol = x86_64-abi
 *   state = Initialised, watch <backend>/state
 *   backend Connected -> read sectors, sector-size, info,
 *       feature-flush-cache -> state = Connected, replay the shadow,
 *       let the queue go
 *
 * Until then bufs queue in the disk layer (dk_hold); their bounds are
 * checked once the size is known.
 *
 * A backend that breaks the ring protocol (xbd_ring.ts says how) gets the
 * device disconnected for good: a console message, every buf failed with
 * EIO, an error node and state Closing. The rest of the machine carries
 * on. A backend that closes the device cleanly gets us to Closed with the
 * shadow kept; if it comes back (InitWait) we connect again and replay.
 *
 * Suspend (pmf): hold the queue, mask the port, keep the shadow (requests
 * in flight, answered or not). Resume (pmf) looks at the grant table's
 * generation. Moved (a restore): xbd_xenbus_reconnect forgets the old
 * domain's grants and port (void now), connects again, and replays the
 * shadow in its original order on the new ring. The disk layer never has
 * two overlapping requests in flight when one writes (ARCHITECTURE §6.1),
 * so replaying requests the backend had already done gives the same data.
 * Not moved (a cancelled suspend, or one another device refused):
 * xbd_xenbus_resume_cancelled unmasks, takes what the backend answered
 * meanwhile and lets the queue go.
 *
 * Workloads (continuation style, from an lwp):
 *   xbd_read / xbd_write (cpu, unit, blkno, nblks, va, cont)
 *   xbd_flush (cpu, unit, cont)
 * continue at cont(cpu, arg, error): 0, EIO, EROFS, EOPNOTSUPP, ENXIO.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import type { CfDesc } from '../../../sys/sys/device.js';
import {
  BLKIF_NODE_RING_REF, BLKIF_NODE_EVENT_CHANNEL, BLKIF_NODE_PROTOCOL, BLKIF_NODE_SECTORS, BLKIF_NODE_SECTOR_SIZE,
  BLKIF_NODE_INFO, BLKIF_NODE_FEATURE_FLUSH_CACHE, BLKIF_NODE_BACKEND, BLKIF_NODE_BACKEND_ID, VDISK_READONLY,
  XEN_BLKIF_SECTOR_SIZE, XEN_IO_PROTO_ABI_NATIVE,
} from '../../../hypervisor/public/io/blkif.js';
import {
  XenbusStateInitialising, XenbusStateInitWait, XenbusStateInitialised, XenbusStateConnected, XenbusStateClosing,
  XenbusStateClosed, type XenbusState,
} from '../../../hypervisor/public/io/xenbus.js';
import { EIO, EINVAL, ENOMEM, ENXIO, EOPNOTSUPP } from '../../../sys/sys/errno.js';
import { ksymtab, ksymaddr, type KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal, aprint_error_dev, aprint_normal_dev, aprint_verbose_dev, printf } from '../../../sys/kern/subr_prf.js';
import { device_private, device_xname } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { strlcpy, vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { dk_init, dk_attach, dk_hold, dk_release, dk_fail_all, dksubr_ksyms } from '../../../dev/dksubr.js';
import { buf_ksyms } from '../../../dev/buf.js';
import { xenbusdev_attach_args, xenbus_device, XBUSD_OTHERENDLEN } from '../xenbus/xenbus_var.js';
import { xs_read, xs_write, xs_result, xs_result_tx, xs_transaction_start, xs_transaction_end, XS_EAGAIN, XS_ENOENT } from '../xenbus/xenbus_xs.js';
import { xenbus_defer } from '../xenbus/xenbus_watch.js';
import {
  xenbus_device_path, xenbus_otherend_path, xenbus_switch_state, xenbus_switch_state_async, xenbus_watch_otherend,
  xenbus_dev_fatal,
} from '../xenbus/xenbus_client.js';
import { evtsource } from '../include/evtchn.js';
import { evtsource_addr, event_remove_handler } from './evtchn.js';
import { xengnt_generation } from './xengnt.js';
import { xbd_wire_ksyms } from './xbd_wire.js';
import { xbd_io_ksyms } from './xbd_io.js';
import {
  xbd_view, xbd_ring_setup, xbd_ring_mask, xbd_ring_release, xbd_ring_forget, xbd_ring_process, xbd_ring_replay,
  xbd_shadow_clear, xbd_shadow_ungrant, xbd_ring_ksyms,
} from './xbd_ring.js';
import {
  xbd_xenbus_softc, SC_DKSC, XBD_NOREF, XBD_FAILMSG_LEN, XBD_STATE_DISCONNECTED, XBD_STATE_CONNECTING,
  XBD_STATE_CONNECTED, XBD_STATE_SUSPENDED, XBD_STATE_DEAD, XBD_STATE_CLOSED, XBDF_READONLY, XBDF_FLUSH,
  XBDF_ATTACHED, XBDF_REFRESH, XBDF_READING, XBDF_PUBLISHING,
} from './xbd_var.js';

/** Times the connect transaction is started again after EAGAIN. */
const XBD_TX_RETRIES = 8;

/** What the connect transaction writes, in order. */
const CONNECT_NODES = Object.freeze([BLKIF_NODE_RING_REF, BLKIF_NODE_EVENT_CHANNEL, BLKIF_NODE_PROTOCOL]);

function xbusd_of(cpu: GuestCpu, sc: number): number {
  return vptr(xbd_view(cpu, sc), 'sc_xbusd');
}

function xbd_dev_of(cpu: GuestCpu, sc: number): number {
  return vptr(xbd_view(cpu, sc), 'sc_dev');
}

function xbd_setflag(cpu: GuestCpu, sc: number, f: number, on: boolean): void {
  const v = xbd_view(cpu, sc);
  v.set('sc_flags', on ? v.get('sc_flags') | f : v.get('sc_flags') & ~f);
}

// ---------------------------------------------------------------------------
// autoconf

export function xbd_xenbus_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  return xenbusdev_attach_args.view(cpu.mem, aux).getString('xa_type') === 'vbd' ? 1 : 0;
}

export function xbd_xenbus_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
  aprint_normal(cpu, ': Xen Virtual Block Device Interface\n');
  const sc = device_private(cpu, self);
  const a = xenbusdev_attach_args.view(cpu.mem, aux);
  const v = xbd_view(cpu, sc);
  dk_init(cpu, sc + SC_DKSC, self, 'xbd_diskstart');
  dk_hold(cpu, sc + SC_DKSC);
  vptr_set(v, 'sc_dev', self);
  vptr_set(v, 'sc_xbusd', vptr(a, 'xa_xbusd'));
  v.set('sc_backend_id', a.get('xa_otherend_id'));
  v.set('sc_handle', a.get('xa_id'));
  v.set('sc_ring_gntref', XBD_NOREF);
  v.set('sc_state', XBD_STATE_DISCONNECTED);
  pmf_device_register(cpu, self, 'xbd_xenbus_suspend', 'xbd_xenbus_resume');
  xbd_xenbus_resume(cpu, self);
}

// ---------------------------------------------------------------------------
// Failing

function xbd_setfailmsg(cpu: GuestCpu, sc: number, why: string): void {
  strlcpy(cpu.mem, xbd_view(cpu, sc).addr('sc_failmsg'), why, XBD_FAILMSG_LEN);
}

/** Give up on the device: tear down, fail every buf, report on the error node, state Closing. */
export function xbd_fatal(cpu: GuestCpu, sc: number, err: number, why: string): void {
  const v = xbd_view(cpu, sc);
  if (v.get('sc_state') === XBD_STATE_DEAD) return;
  v.set('sc_state', XBD_STATE_DEAD);
  xbd_ring_release(cpu, sc);
  xbd_shadow_clear(cpu, sc, true);
  dk_fail_all(cpu, sc + SC_DKSC, EIO);
  xbd_setfailmsg(cpu, sc, why);
  xenbus_dev_fatal(cpu, xbusd_of(cpu, sc), err, '%s', why);
}

/** The backend broke the ring protocol: say so on the console and disconnect. */
export function xbd_fail(cpu: GuestCpu, sc: number, why: string): void {
  if (xbd_view(cpu, sc).get('sc_state') === XBD_STATE_DEAD) return;
  aprint_error_dev(cpu, xbd_dev_of(cpu, sc), 'backend misbehaves (%s); disconnecting\n', why);
  xbd_fatal(cpu, sc, EIO, `backend misbehaves: ${why}`);
}

// ---------------------------------------------------------------------------
// The connect chain (xenbus thread, arg = the softc)

/** Is the chain still wanted? (A suspend or a failure in between ends it.) */
function xbd_chain_ok(cpu: GuestCpu, sc: number): boolean {
  return xbd_view(cpu, sc).get('sc_state') === XBD_STATE_CONNECTING;
}

export function xbd_connect(cpu: GuestCpu, sc: number): void {
  if (!xbd_chain_ok(cpu, sc)) return;
  if (xbd_view(cpu, sc).get('sc_flags') & XBDF_REFRESH) {
    xs_read(cpu, 0, `${xenbus_device_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_BACKEND_ID}`, 'xbd_connect_backend_id');
    return;
  }
  xbd_connect_reset(cpu, sc);
}

/** After a restore: the backend's domain ... */
export function xbd_connect_backend_id(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return;
  const s = r.value.trim();
  if (r.error !== 0 || !/^[0-9]{1,5}$/.test(s) || Number(s) >= 0x7ff0) {
    xbd_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable ${BLKIF_NODE_BACKEND_ID} ("${r.value.slice(0, 16)}")`);
    return;
  }
  xbd_view(cpu, sc).set('sc_backend_id', Number(s));
  xenbus_device.view(cpu.mem, xbusd_of(cpu, sc)).set('xbusd_otherend_id', Number(s));
  xs_read(cpu, 0, `${xenbus_device_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_BACKEND}`, 'xbd_connect_backend');
}

/** ... and its directory. */
export function xbd_connect_backend(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return;
  if (r.error !== 0 || r.value === '' || r.value.length >= XBUSD_OTHERENDLEN || r.value.includes('\0')) {
    xbd_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable ${BLKIF_NODE_BACKEND} node`);
    return;
  }
  xenbus_device.view(cpu.mem, xbusd_of(cpu, sc)).setString('xbusd_otherend', r.value);
  xbd_setflag(cpu, sc, XBDF_REFRESH, false);
  xbd_connect_reset(cpu, sc);
}

/** Back to Initialising: a backend still connected from before lets its ring go and waits (InitWait). */
export function xbd_connect_reset(cpu: GuestCpu, sc: number): void {
  xenbus_switch_state(cpu, xbusd_of(cpu, sc), XenbusStateInitialising, 'xbd_connect_watch');
}

export function xbd_connect_watch(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return;
  if (r.error !== 0) return xbd_fatal(cpu, sc, r.error, 'switching to Initialising');
  // Fires at once with the backend's state, then at each change: InitWait starts xbd_publish.
  if (xenbus_watch_otherend(cpu, xbusd_of(cpu, sc), 'xbd_backend_changed') === 0) {
    xbd_fatal(cpu, sc, ENXIO, 'cannot watch the backend state');
  }
}

/** The backend waits for us (InitWait): ring page, grant and port, then the transaction that publishes them. */
export function xbd_publish(cpu: GuestCpu, sc: number): void {
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
  const v = xbd_view(cpu, sc);
  if (v.get('sc_evtchn') !== 0) xbd_ring_release(cpu, sc);
  const rc = xbd_ring_setup(cpu, sc);
  if (rc < 0) {
    xbd_fatal(cpu, sc, ENXIO, `cannot set up the ring (${rc})`);
    return;
  }
  aprint_verbose_dev(cpu, xbd_dev_of(cpu, sc), 'using event channel %d\n', v.get('sc_evtchn'));
  v.set('sc_retries', 0);
  xs_transaction_start(cpu, 'xbd_connect_txstart');
}

export function xbd_connect_txstart(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
  if (r.error !== 0) {
    xbd_fatal(cpu, sc, r.error, 'starting the connect transaction');
    return;
  }
  const v = xbd_view(cpu, sc);
  v.set('sc_xstx', xs_result_tx(r));
  v.set('sc_step', 0);
  v.set('sc_txerr', 0);
  xbd_connect_write_next(cpu, sc);
}

/** Value of connect node `i`. */
function xbd_node_value(cpu: GuestCpu, sc: number, i: number): string {
  const v = xbd_view(cpu, sc);
  switch (CONNECT_NODES[i]) {
    case BLKIF_NODE_RING_REF: return String(v.get('sc_ring_gntref'));
    case BLKIF_NODE_EVENT_CHANNEL: return String(v.get('sc_evtchn'));
    default: return XEN_IO_PROTO_ABI_NATIVE;
  }
}

function xbd_connect_write_next(cpu: GuestCpu, sc: number): void {
  const v = xbd_view(cpu, sc);
  const step = v.get('sc_step');
  const node = CONNECT_NODES[step];
  const failed = v.get('sc_txerr') !== 0;
  if (node === undefined || failed) {
    xs_transaction_end(cpu, v.get('sc_xstx'), !failed, 'xbd_connect_txend');
    return;
  }
  v.set('sc_step', step + 1);
  xs_write(cpu, v.get('sc_xstx'), `${xenbus_device_path(cpu, xbusd_of(cpu, sc))}/${node}`, xbd_node_value(cpu, sc, step), 'xbd_connect_write');
}

export function xbd_connect_write(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
  // A failed write ends the transaction without committing; the errno is reported then.
  if (r.error !== 0) xbd_view(cpu, sc).set('sc_txerr', r.error);
  xbd_connect_write_next(cpu, sc);
}

export function xbd_connect_txend(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
  const v = xbd_view(cpu, sc);
  if (v.get('sc_txerr') !== 0) {
    xbd_fatal(cpu, sc, v.get('sc_txerr'), 'writing the ring details to xenstore');
    return;
  }
  if (r.error === XS_EAGAIN && v.get('sc_retries') < XBD_TX_RETRIES) {
    v.set('sc_retries', v.get('sc_retries') + 1);
    xs_transaction_start(cpu, 'xbd_connect_txstart');
    return;
  }
  if (r.error !== 0) {
    xbd_fatal(cpu, sc, r.error, 'completing the connect transaction');
    return;
  }
  xenbus_switch_state(cpu, xbusd_of(cpu, sc), XenbusStateInitialised, 'xbd_connect_initialised');
}

export function xbd_connect_initialised(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
  if (!xbd_chain_ok(cpu, sc)) return;
  if (r.error !== 0) xbd_fatal(cpu, sc, r.error, 'switching to Initialised');
  // Now the backend connects; its Connected starts xbd_connect_info.
}

/** The backend is Connected: read what it says about the disk (a chain of its own). */
export function xbd_connect_info(cpu: GuestCpu, sc: number): void {
  if (!xbd_chain_ok(cpu, sc)) {
    xbd_setflag(cpu, sc, XBDF_READING, false);
    return;
  }
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_SECTORS}`, 'xbd_connect_sectors');
}

/** A decimal node value as a safe integer, or undefined. */
function xbd_parse_uint(r: { error: number; value: string }): number | undefined {
  const s = r.value.trim();
  if (r.error !== 0 || !/^[0-9]{1,16}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** End of the info chain with an error. */
function xbd_info_fatal(cpu: GuestCpu, sc: number, err: number, why: string): void {
  xbd_setflag(cpu, sc, XBDF_READING, false);
  xbd_fatal(cpu, sc, err, why);
}

export function xbd_connect_sectors(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_READING, false);
  const n = xbd_parse_uint(r);
  if (n === undefined) return xbd_info_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable ${BLKIF_NODE_SECTORS}`);
  vu64_set(xbd_view(cpu, sc), 'sc_sectors', n);
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_SECTOR_SIZE}`, 'xbd_connect_secsize');
}

export function xbd_connect_secsize(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_READING, false);
  const n = xbd_parse_uint(r);
  if (n === undefined) return xbd_info_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable ${BLKIF_NODE_SECTOR_SIZE}`);
  if (n !== XEN_BLKIF_SECTOR_SIZE) return xbd_info_fatal(cpu, sc, EOPNOTSUPP, `sector size ${n} is not supported (only ${XEN_BLKIF_SECTOR_SIZE})`);
  xbd_view(cpu, sc).set('sc_secsize', n);
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_INFO}`, 'xbd_connect_info_bits');
}

export function xbd_connect_info_bits(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_READING, false);
  // `info` is optional (absent: a plain writable disk).
  const n = r.error === XS_ENOENT ? 0 : xbd_parse_uint(r);
  if (n === undefined || n > 0xffff_ffff) return xbd_info_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable ${BLKIF_NODE_INFO}`);
  xbd_view(cpu, sc).set('sc_info', n);
  xbd_setflag(cpu, sc, XBDF_READONLY, (n & VDISK_READONLY) !== 0);
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xbusd_of(cpu, sc))}/${BLKIF_NODE_FEATURE_FLUSH_CACHE}`, 'xbd_connect_flush');
}

export function xbd_connect_flush(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xbd_chain_ok(cpu, sc)) return xbd_setflag(cpu, sc, XBDF_READING, false);
  xbd_setflag(cpu, sc, XBDF_FLUSH, r.error === 0 && r.value.trim() === '1');
  xenbus_switch_state(cpu, xbusd_of(cpu, sc), XenbusStateConnected, 'xbd_connect_done');
}

/** MB for the attach line, as NetBSD's format_bytes would round. */
function xbd_size_str(sectors: number): string {
  const bytes = sectors * XEN_BLKIF_SECTOR_SIZE;
  if (bytes >= 10 * 1024 * 1024 * 1024) return `${Math.floor(bytes / (1024 * 1024 * 1024))} GB`;
  if (bytes >= 10 * 1024 * 1024 || bytes % (1024 * 1024) === 0) return `${Math.floor(bytes / (1024 * 1024))} MB`;
  return `${Math.floor(bytes / 1024)} KB`;
}

/** Connected: the data path starts, with the shadow replayed first. */
export function xbd_connect_done(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  xbd_setflag(cpu, sc, XBDF_READING, false);
  if (!xbd_chain_ok(cpu, sc)) return;
  if (r.error !== 0) return xbd_fatal(cpu, sc, r.error, 'switching to Connected');
  const v = xbd_view(cpu, sc);
  const dev = xbd_dev_of(cpu, sc);
  const sectors = vu64(v, 'sc_sectors');
  const readonly = (v.get('sc_flags') & XBDF_READONLY) !== 0;
  v.set('sc_state', XBD_STATE_CONNECTED);
  v.set('sc_generation', v.get('sc_generation') + 1);
  dk_attach(cpu, sc + SC_DKSC, sectors, v.get('sc_secsize'), readonly);
  if ((v.get('sc_flags') & XBDF_ATTACHED) === 0) {
    aprint_normal_dev(cpu, dev, '%s, %d bytes/sect x %lu sectors%s\n', xbd_size_str(sectors), v.get('sc_secsize'), sectors,
      readonly ? ', read-only' : '');
    xbd_setflag(cpu, sc, XBDF_ATTACHED, true);
  }
  const n = xbd_ring_replay(cpu, sc);
  if (n < 0) return xbd_fatal(cpu, sc, ENOMEM, `no grants to replay the requests in flight (${n})`);
  if (n > 0) printf(cpu, '%s: replayed %d request(s) in flight\n', device_xname(cpu, dev), n);
  // Answers may be there already (a backend that worked through the replay).
  xbd_xenbus_intr(cpu, sc, v.get('sc_evtchn'));
  dk_release(cpu, sc + SC_DKSC);
}

/** The backend closed the device cleanly: keep the shadow, wait for it to come back. */
function xbd_closed(cpu: GuestCpu, sc: number, state: XenbusState): void {
  const v = xbd_view(cpu, sc);
  dk_hold(cpu, sc + SC_DKSC);
  xbd_ring_release(cpu, sc);
  xbd_shadow_ungrant(cpu, sc);
  v.set('sc_state', XBD_STATE_CLOSED);
  printf(cpu, '%s: backend %s the device\n', device_xname(cpu, xbd_dev_of(cpu, sc)), state === XenbusStateClosing ? 'is closing' : 'closed');
  xenbus_switch_state_async(cpu, xbusd_of(cpu, sc), XenbusStateClosed);
}

/** The backend's state changed (xenbus thread, via xenbus_watch_otherend). */
export function xbd_backend_changed(cpu: GuestCpu, dev: number, state: number): void {
  const sc = device_private(cpu, dev);
  const v = xbd_view(cpu, sc);
  const st = v.get('sc_state');
  const ours = xenbus_device.view(cpu.mem, xbusd_of(cpu, sc)).get('xbusd_state');
  switch (state) {
    case XenbusStateInitWait:
      // As blkfront: publish only from Initialising (or Closed), once per connection.
      if (st === XBD_STATE_CONNECTING && (ours === XenbusStateInitialising || ours === XenbusStateClosed) &&
        (v.get('sc_flags') & XBDF_PUBLISHING) === 0) {
        xbd_setflag(cpu, sc, XBDF_PUBLISHING, true);
        if (!xenbus_defer(cpu, 'xbd_publish', sc)) {
          xbd_setflag(cpu, sc, XBDF_PUBLISHING, false);
          xbd_fatal(cpu, sc, ENXIO, 'cannot queue the connection to the backend');
        }
      } else if (st === XBD_STATE_CLOSED) {
        xbd_reconnect(cpu, sc);
      }
      return;
    case XenbusStateConnected:
      if (st !== XBD_STATE_CONNECTING || ours !== XenbusStateInitialised || v.get('sc_flags') & XBDF_READING) return;
      xbd_setflag(cpu, sc, XBDF_READING, true);
      if (!xenbus_defer(cpu, 'xbd_connect_info', sc)) {
        xbd_setflag(cpu, sc, XBDF_READING, false);
        xbd_fatal(cpu, sc, ENXIO, 'cannot queue reading the disk details');
      }
      return;
    case XenbusStateClosing:
    case XenbusStateClosed:
      if (st === XBD_STATE_CONNECTED || (st === XBD_STATE_CONNECTING && ours !== XenbusStateInitialising)) xbd_closed(cpu, sc, state);
      return;
    case XenbusStateInitialising:
      if (st === XBD_STATE_CLOSED) xbd_reconnect(cpu, sc);
      return;
    default:
  }
}

/** The backend came back after closing: connect again (the shadow is replayed). */
function xbd_reconnect(cpu: GuestCpu, sc: number): void {
  const v = xbd_view(cpu, sc);
  v.set('sc_state', XBD_STATE_CONNECTING);
  xbd_setflag(cpu, sc, XBDF_PUBLISHING | XBDF_READING, false);
  if (!xenbus_defer(cpu, 'xbd_connect', sc)) v.set('sc_state', XBD_STATE_CLOSED);
}

// ---------------------------------------------------------------------------
// The interrupt

/** Events on our port: responses. A backend that breaks the protocol is cut off. */
export function xbd_xenbus_intr(cpu: GuestCpu, sc: number, _port: number): void {
  const why = xbd_ring_process(cpu, sc);
  if (why !== undefined) xbd_fail(cpu, sc, why);
}

// ---------------------------------------------------------------------------
// pmf

/**
 * Suspend: hold the queue and mask the port; every request in flight
 * stays in the shadow, answered or not. Never refuses.
 */
export function xbd_xenbus_suspend(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xbd_view(cpu, sc);
  const st = v.get('sc_state');
  if (st === XBD_STATE_DEAD || st === XBD_STATE_SUSPENDED) return true;
  dk_hold(cpu, sc + SC_DKSC);
  xbd_ring_mask(cpu, sc, true);
  v.set('sc_prev_state', st);
  v.set('sc_state', XBD_STATE_SUSPENDED);
  return true;
}

/**
 * pmf resume, and attach's first connection. In the same domain (a
 * cancelled suspend, or a suspend another device refused: the grant
 * table's generation has not moved) carry on where we stopped; otherwise
 * (a restore, or never connected) connect from nothing.
 */
export function xbd_xenbus_resume(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xbd_view(cpu, sc);
  if (v.get('sc_state') === XBD_STATE_SUSPENDED && v.get('sc_evtchn') !== 0 && xengnt_generation(cpu) === v.get('sc_gntgen')) {
    return xbd_xenbus_resume_cancelled(cpu, dev);
  }
  return xbd_xenbus_reconnect(cpu, dev);
}

/**
 * Connect from nothing (what a restore needs): let go of the old
 * connection (after a restore every grant and port of the old domain is
 * void and is only forgotten; in the same domain they are given back),
 * read where the backend is now, and run the connect chain on the xenbus
 * thread. The shadow is replayed once the backend is Connected.
 */
export function xbd_xenbus_reconnect(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xbd_view(cpu, sc);
  const st = v.get('sc_state');
  if (st === XBD_STATE_DEAD || st === XBD_STATE_CONNECTING || st === XBD_STATE_CONNECTED) return true;
  if (st === XBD_STATE_SUSPENDED) {
    if (xengnt_generation(cpu) === v.get('sc_gntgen')) {
      if (v.get('sc_evtchn') !== 0) xbd_ring_release(cpu, sc);
      xbd_shadow_ungrant(cpu, sc);
    } else {
      xbd_forget_port(cpu, sc);
      xbd_ring_forget(cpu, sc);
    }
    xbd_setflag(cpu, sc, XBDF_REFRESH, true);
  }
  xbd_setflag(cpu, sc, XBDF_PUBLISHING | XBDF_READING, false);
  v.set('sc_state', XBD_STATE_CONNECTING);
  if (!xenbus_defer(cpu, 'xbd_connect', sc)) {
    aprint_error_dev(cpu, dev, 'cannot queue the connection to the backend\n');
    v.set('sc_state', XBD_STATE_DISCONNECTED);
    return false;
  }
  return true;
}

/** Our own stale record of the old port (if resume left it): drop the handler so it cannot fire for someone else. */
function xbd_forget_port(cpu: GuestCpu, sc: number): void {
  const port = xbd_view(cpu, sc).get('sc_evtchn');
  const ev = port === 0 ? 0 : evtsource_addr(cpu, port);
  if (ev === 0) return;
  const e = evtsource.view(cpu.mem, ev);
  if (vptr(e, 'ev_arg') === sc && vptr(e, 'ev_handler') === ksymaddr(cpu, 'xbd_xenbus_intr')) event_remove_handler(cpu, port);
}

/** A cancelled suspend (same domain, same backend): carry on where we stopped. */
export function xbd_xenbus_resume_cancelled(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xbd_view(cpu, sc);
  if (v.get('sc_state') !== XBD_STATE_SUSPENDED) return true;
  const prev = v.get('sc_prev_state');
  if (prev !== XBD_STATE_CONNECTED) {
    // Suspended mid-handshake (the chain stopped) or while closed: start over in this domain.
    if (v.get('sc_evtchn') !== 0) xbd_ring_release(cpu, sc);
    v.set('sc_state', prev === XBD_STATE_CLOSED ? XBD_STATE_CLOSED : XBD_STATE_DISCONNECTED);
    return prev === XBD_STATE_CLOSED ? true : xbd_xenbus_reconnect(cpu, dev);
  }
  v.set('sc_state', XBD_STATE_CONNECTED);
  xbd_ring_mask(cpu, sc, false);
  xbd_xenbus_intr(cpu, sc, v.get('sc_evtchn'));
  dk_release(cpu, sc + SC_DKSC);
  return true;
}

// ---------------------------------------------------------------------------
// Kernel configuration

export const xbd_xenbus_ksyms = ksymtab({
  xbusd_of, xbd_dev_of, xbd_setflag, xbd_xenbus_match, xbd_xenbus_attach, xbd_setfailmsg, xbd_fatal, xbd_fail,
  xbd_chain_ok, xbd_connect, xbd_connect_backend_id, xbd_connect_backend, xbd_connect_reset, xbd_connect_watch,
  xbd_publish, xbd_connect_txstart,
  xbd_node_value, xbd_connect_write_next, xbd_connect_write, xbd_connect_txend, xbd_connect_initialised,
  xbd_connect_info, xbd_parse_uint, xbd_info_fatal, xbd_connect_sectors, xbd_connect_secsize, xbd_connect_info_bits,
  xbd_connect_flush, xbd_size_str, xbd_connect_done, xbd_closed, xbd_backend_changed, xbd_reconnect, xbd_xenbus_intr,
  xbd_xenbus_suspend, xbd_xenbus_resume, xbd_xenbus_reconnect, xbd_forget_port, xbd_xenbus_resume_cancelled,
});

/** The block side's kernel text, in link order: dev/ (MI disk layer), then xbd. */
export const XBD_KSYMTABS: readonly KSymTab[] = Object.freeze([
  buf_ksyms, dksubr_ksyms, xbd_wire_ksyms, xbd_ring_ksyms, xbd_xenbus_ksyms, xbd_io_ksyms,
]);

/** `xbd* at xenbus?`: the device table line. */
export const XBD_CFDATA: readonly CfDesc[] = Object.freeze([
  Object.freeze({ name: 'xbd', atname: 'xenbus', match: 'xbd_xenbus_match', attach: 'xbd_xenbus_attach', devsize: xbd_xenbus_softc.size }),
]);
