/*
 * xennet: the Xen virtual network interface, frontend of a vif (NetBSD's
 * if_xennet_xenbus.c). Three layers: xennet_wire.ts (netif slots),
 * xennet_ring.ts (rings, grants, the event channel), and this file, the
 * driver: autoconf, the xenbus handshake, the interrupt, pmf.
 *
 *   xennet0 at xenbus0 id 0: Xen Virtual Network Interface
 *   xennet0: MAC address 00:16:3e:00:00:02
 *   xennet0: address 10.0.0.2/24
 *
 * Attach is resume from nothing: attach calls xennet_xenbus_resume, which
 * queues the connect chain on the xenbus thread; the same chain connects
 * at boot and after a restore (io/netif.h handshake):
 *
 *   read <backend>/feature-rx-copy (must be 1), our mac, <backend>/ip
 *   set up both rings, post the RX buffers, allocate the port
 *   one transaction: tx-ring-ref, rx-ring-ref, event-channel,
 *       request-rx-copy = 1, feature-rx-notify = 1, feature-sg = 1
 *   state = Initialised, watch <backend>/state
 *   backend Connected -> state = Connected, IFF_RUNNING, notify (RX
 *       buffers wait), gratuitous ARP, start sending what queued up
 *
 * Where the address comes from (the choice documented in xennet_var.ts):
 * the kernel command line's `ip=<addr>[/<prefix>]` for xennet0, else the
 * vif's `<backend>/ip` node, which libxl fills from the vif's `ip=`
 * setting (prefix /24 when none is given). No address: the interface stays
 * down for IP, and says so.
 *
 * A backend that misbehaves on the rings (xennet_ring.ts says how) gets the
 * interface disconnected for good with a console message, an error node
 * and state Closing. A backend that closes the device cleanly gets us to
 * Closed; if it comes back (InitWait), we connect again.
 *
 * Suspend (pmf): stop TX, take the TX responses already there, mask the
 * port; RX pages and packets still in flight are kept. After a restore,
 * resume forgets every grant and port of the old domain (they are void),
 * puts in-flight packets back on the send queue and connects again: new
 * rings, new grants, RX buffers posted again, handshake, then a gratuitous
 * ARP so the bridge and dom0 learn where we are. A cancelled suspend (same
 * domain) uses xennet_xenbus_resume_cancelled instead: nothing to redo.
 */
import type { GuestCpu } from '../../../hypervisor/public/cpu.js';
import type { CfDesc } from '../../../sys/sys/device.js';
import {
  NETIF_NODE_MAC, NETIF_NODE_TX_RING_REF, NETIF_NODE_RX_RING_REF, NETIF_NODE_EVENT_CHANNEL, NETIF_NODE_REQUEST_RX_COPY,
  NETIF_NODE_FEATURE_RX_NOTIFY, NETIF_NODE_FEATURE_SG, NETIF_NODE_FEATURE_RX_COPY,
} from '../../../hypervisor/public/io/netif.js';
import {
  XenbusStateInitialising, XenbusStateInitWait, XenbusStateInitialised, XenbusStateConnected, XenbusStateClosing,
  XenbusStateClosed, type XenbusState,
} from '../../../hypervisor/public/io/xenbus.js';
import { EIO, EINVAL, ENXIO, EOPNOTSUPP } from '../../../sys/sys/errno.js';
import { ksymtab, type KSymTab } from '../../../sys/kern/kern_ksyms.js';
import { aprint_normal, aprint_error_dev, aprint_normal_dev, printf } from '../../../sys/kern/subr_prf.js';
import { device_private, device_unit, device_xname } from '../../../sys/kern/subr_autoconf.js';
import { pmf_device_register } from '../../../sys/kern/kern_pmf.js';
import { vptr, vptr_set, vu64, vu64_set } from '../../../sys/lib/libkern/libkern.js';
import { m_free } from '../../../sys/net/mbuf.js';
import { ifnet_view, if_attach, if_setflags, if_start, if_purge, IFF_UP, IFF_RUNNING, IFF_OACTIVE } from '../../../sys/net/if.js';
import { ether_ifattach, ether_input, if_lladdr, if_set_lladdr } from '../../../sys/net/if_ethersubr.js';
import { ether_aton, ether_sprintf, ether_addr_eq } from '../../../sys/net/if_ether.js';
import { in_parse_cidr } from '../../../sys/netinet/in.js';
import { in_ifconfig } from '../../../sys/netinet/in_ifaddr.js';
import { arp_ifinit, arp_flush } from '../../../sys/netinet/if_arp.js';
import { xenbusdev_attach_args, xenbus_device } from '../xenbus/xenbus_var.js';
import { xs_read, xs_write, xs_result, xs_result_tx, xs_transaction_start, xs_transaction_end, XS_EAGAIN } from '../xenbus/xenbus_xs.js';
import { xenbus_defer } from '../xenbus/xenbus_watch.js';
import {
  xenbus_device_path, xenbus_otherend_path, xenbus_switch_state, xenbus_switch_state_async, xenbus_watch_otherend,
  xenbus_dev_fatal,
} from '../xenbus/xenbus_client.js';
import { xen_cmdline_value } from './xen_machdep.js';
import { xennet_wire_ksyms } from './xennet_wire.js';
import {
  xennet_view, xennet_softc_init, xennet_rings_setup, xennet_rings_teardown, xennet_rings_forget, xennet_mask,
  xennet_notify, xennet_txeof, xennet_rxeof, xennet_rx_refill, xennet_setfailmsg, xennet_ring_ksyms,
} from './xennet_ring.js';
import {
  xennet_xenbus_softc, XN_STATE_DISCONNECTED, XN_STATE_CONNECTING, XN_STATE_CONNECTED, XN_STATE_SUSPENDED,
  XN_STATE_DEAD, XN_STATE_CLOSED, XNF_MAC_SHOWN, XNF_ADDR_SET, XNF_TX_FAILED, XNF_CHAIN_BUSY, XNF_CHAIN_RESTART,
  XNF_SUSP_CONNECTING, xennet_var_ksyms,
} from './xennet_var.js';

/** Prefix length when the ip node or command line gives none (dom0's subnet is a /24). */
export const XENNET_DEFAULT_PREFIX = 24;
/** Times the connect transaction is started again after EAGAIN. */
const XENNET_TX_RETRIES = 8;

/** What the connect transaction writes, in order. */
const CONNECT_NODES = Object.freeze([
  NETIF_NODE_TX_RING_REF, NETIF_NODE_RX_RING_REF, NETIF_NODE_EVENT_CHANNEL, NETIF_NODE_REQUEST_RX_COPY,
  NETIF_NODE_FEATURE_RX_NOTIFY, NETIF_NODE_FEATURE_SG,
]);

function xennet_xbusd(cpu: GuestCpu, sc: number): number {
  return vptr(xennet_view(cpu, sc), 'sc_xbusd');
}

function xennet_dev(cpu: GuestCpu, sc: number): number {
  return vptr(xennet_view(cpu, sc), 'sc_dev');
}

// ---------------------------------------------------------------------------
// autoconf

export function xennet_xenbus_match(cpu: GuestCpu, _parent: number, _cf: number, aux: number): number {
  return xenbusdev_attach_args.view(cpu.mem, aux).getString('xa_type') === 'vif' ? 1 : 0;
}

export function xennet_xenbus_attach(cpu: GuestCpu, _parent: number, self: number, aux: number): void {
  aprint_normal(cpu, ': Xen Virtual Network Interface\n');
  const sc = device_private(cpu, self);
  const a = xenbusdev_attach_args.view(cpu.mem, aux);
  const v = xennet_view(cpu, sc);
  vptr_set(v, 'sc_dev', self);
  vptr_set(v, 'sc_xbusd', vptr(a, 'xa_xbusd'));
  v.set('sc_backend_id', a.get('xa_otherend_id'));
  v.set('sc_state', XN_STATE_DISCONNECTED);
  xennet_softc_init(cpu, sc);
  if_attach(cpu, sc, device_xname(cpu, self), sc, 'xennet_start');
  ether_ifattach(cpu, sc, [0, 0, 0, 0, 0, 0]);
  pmf_device_register(cpu, self, 'xennet_xenbus_suspend', 'xennet_xenbus_resume');
  xennet_xenbus_resume(cpu, self);
}

// ---------------------------------------------------------------------------
// Failing

/** Give up on the device: tear down, report on the device's error node, state Closing. */
export function xennet_fatal(cpu: GuestCpu, sc: number, err: number, why: string): void {
  const v = xennet_view(cpu, sc);
  if (v.get('sc_state') === XN_STATE_DEAD) return;
  xennet_rings_teardown(cpu, sc);
  v.set('sc_state', XN_STATE_DEAD);
  xennet_setflag(cpu, sc, 0, XNF_CHAIN_BUSY | XNF_CHAIN_RESTART);
  // Down for good: nothing more queues for it, and what waits is dropped.
  if_setflags(cpu, sc, 0, IFF_UP | IFF_RUNNING | IFF_OACTIVE);
  if_purge(cpu, sc);
  arp_flush(cpu, sc);
  xennet_setfailmsg(cpu, sc, why);
  xenbus_dev_fatal(cpu, xennet_xbusd(cpu, sc), err, '%s', why);
}

/** The backend broke the ring protocol: say so on the console and disconnect. */
export function xennet_fail(cpu: GuestCpu, sc: number, why: string): void {
  if (xennet_view(cpu, sc).get('sc_state') === XN_STATE_DEAD) return;
  aprint_error_dev(cpu, xennet_dev(cpu, sc), 'backend misbehaves (%s); disconnecting\n', why);
  xennet_fatal(cpu, sc, EIO, `backend misbehaves: ${why}`);
}

// ---------------------------------------------------------------------------
// The connect chain (xenbus thread, arg = the softc)

function xennet_setflag(cpu: GuestCpu, sc: number, set: number, clear = 0): void {
  const v = xennet_view(cpu, sc);
  v.set('sc_flags', ((v.get('sc_flags') | set) & ~clear) >>> 0);
}

/**
 * Start the connect chain, or, if one is running, make it start over at
 * its next step (two chains never run side by side).
 */
function xennet_chain_start(cpu: GuestCpu, sc: number): boolean {
  if ((xennet_view(cpu, sc).get('sc_flags') & XNF_CHAIN_BUSY) !== 0) {
    xennet_setflag(cpu, sc, XNF_CHAIN_RESTART);
    return true;
  }
  return xenbus_defer(cpu, 'xennet_connect', sc);
}

/**
 * Is the chain still wanted? A suspend or a failure in between ends it; a
 * resume while it ran starts it over (this step's own work is dropped).
 */
function xennet_chain_ok(cpu: GuestCpu, sc: number): boolean {
  const v = xennet_view(cpu, sc);
  if (v.get('sc_state') !== XN_STATE_CONNECTING) {
    xennet_setflag(cpu, sc, 0, XNF_CHAIN_BUSY | XNF_CHAIN_RESTART);
    return false;
  }
  if ((v.get('sc_flags') & XNF_CHAIN_RESTART) !== 0) {
    xennet_setflag(cpu, sc, 0, XNF_CHAIN_RESTART);
    xennet_connect_begin(cpu, sc);
    return false;
  }
  return true;
}

/** The job xenbus_defer runs: the first step of the chain. */
export function xennet_connect(cpu: GuestCpu, sc: number): void {
  xennet_setflag(cpu, sc, XNF_CHAIN_BUSY, XNF_CHAIN_RESTART);
  if (!xennet_chain_ok(cpu, sc)) return;
  xennet_connect_begin(cpu, sc);
}

function xennet_connect_begin(cpu: GuestCpu, sc: number): void {
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xennet_xbusd(cpu, sc))}/${NETIF_NODE_FEATURE_RX_COPY}`, 'xennet_connect_rxcopy');
}

export function xennet_connect_rxcopy(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  if (r.error !== 0 || r.value.trim() !== '1') {
    xennet_fatal(cpu, sc, r.error !== 0 ? r.error : EOPNOTSUPP, 'backend does not copy into RX buffers (feature-rx-copy)');
    return;
  }
  xs_read(cpu, 0, `${xenbus_device_path(cpu, xennet_xbusd(cpu, sc))}/${NETIF_NODE_MAC}`, 'xennet_connect_mac');
}

export function xennet_connect_mac(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  const mac = r.error === 0 ? ether_aton(r.value.trim()) : undefined;
  if (mac === undefined || ((mac[0] ?? 0) & 1) !== 0) {
    xennet_fatal(cpu, sc, r.error !== 0 ? r.error : EINVAL, `no usable MAC address in ${NETIF_NODE_MAC} ("${r.value.slice(0, 24)}")`);
    return;
  }
  const v = xennet_view(cpu, sc);
  const dev = xennet_dev(cpu, sc);
  if ((v.get('sc_flags') & XNF_MAC_SHOWN) === 0) {
    aprint_normal_dev(cpu, dev, 'MAC address %s\n', ether_sprintf(mac));
    v.set('sc_flags', v.get('sc_flags') | XNF_MAC_SHOWN);
  } else if (!ether_addr_eq(mac, if_lladdr(cpu, sc))) {
    printf(cpu, '%s: MAC address now %s\n', device_xname(cpu, dev), ether_sprintf(mac));
  }
  if_set_lladdr(cpu, sc, mac);
  xs_read(cpu, 0, `${xenbus_otherend_path(cpu, xennet_xbusd(cpu, sc))}/ip`, 'xennet_connect_ip');
}

/** The address to use: the command line's (xennet0), else the backend's ip node. */
function xennet_pick_address(cpu: GuestCpu, sc: number, node: string | undefined): { addr: number; prefix: number } | undefined {
  if (device_unit(cpu, xennet_dev(cpu, sc)) === 0) {
    const c = xen_cmdline_value(cpu, 'ip');
    const p = c === undefined ? undefined : in_parse_cidr(c, XENNET_DEFAULT_PREFIX);
    if (p !== undefined) return p;
  }
  return node === undefined ? undefined : in_parse_cidr(node, XENNET_DEFAULT_PREFIX);
}

export function xennet_connect_ip(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  const v = xennet_view(cpu, sc);
  const dev = xennet_dev(cpu, sc);
  const node = r.error === 0 ? r.value : undefined;
  const pick = xennet_pick_address(cpu, sc, node);
  if (pick !== undefined) {
    const ifv = ifnet_view(cpu, sc);
    if (ifv.get('if_addr') !== pick.addr || v.get('sc_prefix') !== pick.prefix) in_ifconfig(cpu, sc, pick.addr, pick.prefix);
    v.set('sc_ipaddr', pick.addr);
    v.set('sc_prefix', pick.prefix);
    v.set('sc_flags', v.get('sc_flags') | XNF_ADDR_SET);
  } else if ((v.get('sc_flags') & XNF_ADDR_SET) === 0) {
    if (node !== undefined && node.trim() !== '') printf(cpu, '%s: ignoring ip node "%s"\n', device_xname(cpu, dev), node.slice(0, 40));
    printf(cpu, '%s: no IP address configured\n', device_xname(cpu, dev));
    v.set('sc_flags', v.get('sc_flags') | XNF_ADDR_SET);
  }
  if (v.get('sc_evtchn') !== 0) xennet_rings_teardown(cpu, sc);
  const rc = xennet_rings_setup(cpu, sc);
  if (rc < 0) {
    xennet_fatal(cpu, sc, ENXIO, `cannot set up the rings (${rc})`);
    return;
  }
  v.set('sc_retries', 0);
  xs_transaction_start(cpu, 'xennet_connect_txstart');
}

export function xennet_connect_txstart(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  if (r.error !== 0) {
    xennet_fatal(cpu, sc, r.error, 'starting the connect transaction');
    return;
  }
  const v = xennet_view(cpu, sc);
  v.set('sc_xstx', xs_result_tx(r));
  v.set('sc_step', 0);
  v.set('sc_flags', v.get('sc_flags') & ~XNF_TX_FAILED);
  xennet_connect_write_next(cpu, sc);
}

/** Value of connect node `i`. */
function xennet_node_value(cpu: GuestCpu, sc: number, i: number): string {
  const v = xennet_view(cpu, sc);
  switch (CONNECT_NODES[i]) {
    case NETIF_NODE_TX_RING_REF: return String(v.get('sc_tx_ring_gntref'));
    case NETIF_NODE_RX_RING_REF: return String(v.get('sc_rx_ring_gntref'));
    case NETIF_NODE_EVENT_CHANNEL: return String(v.get('sc_evtchn'));
    default: return '1';
  }
}

function xennet_connect_write_next(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  const step = v.get('sc_step');
  const tx = v.get('sc_xstx');
  const node = CONNECT_NODES[step];
  if (node === undefined || (v.get('sc_flags') & XNF_TX_FAILED) !== 0) {
    xs_transaction_end(cpu, tx, (v.get('sc_flags') & XNF_TX_FAILED) === 0, 'xennet_connect_txend');
    return;
  }
  v.set('sc_step', step + 1);
  xs_write(cpu, tx, `${xenbus_device_path(cpu, xennet_xbusd(cpu, sc))}/${node}`, xennet_node_value(cpu, sc, step), 'xennet_connect_write');
}

export function xennet_connect_write(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  const v = xennet_view(cpu, sc);
  if (r.error !== 0) {
    // End the transaction without committing; sc_step keeps the errno for the report.
    v.set('sc_flags', v.get('sc_flags') | XNF_TX_FAILED);
    v.set('sc_step', r.error);
  }
  xennet_connect_write_next(cpu, sc);
}

export function xennet_connect_txend(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  const v = xennet_view(cpu, sc);
  if ((v.get('sc_flags') & XNF_TX_FAILED) !== 0) {
    xennet_fatal(cpu, sc, v.get('sc_step'), 'writing the ring details to xenstore');
    return;
  }
  if (r.error === XS_EAGAIN && v.get('sc_retries') < XENNET_TX_RETRIES) {
    v.set('sc_retries', v.get('sc_retries') + 1);
    xs_transaction_start(cpu, 'xennet_connect_txstart');
    return;
  }
  if (r.error !== 0) {
    xennet_fatal(cpu, sc, r.error, 'completing the connect transaction');
    return;
  }
  xenbus_switch_state(cpu, xennet_xbusd(cpu, sc), XenbusStateInitialised, 'xennet_connect_initialised');
}

export function xennet_connect_initialised(cpu: GuestCpu, sc: number): void {
  const r = xs_result(cpu);
  if (!xennet_chain_ok(cpu, sc)) return;
  if (r.error !== 0) {
    xennet_fatal(cpu, sc, r.error, 'switching to Initialised');
    return;
  }
  // Fires at once with the backend's state, then at each change. The chain ends here.
  xennet_setflag(cpu, sc, 0, XNF_CHAIN_BUSY);
  if (xenbus_watch_otherend(cpu, xennet_xbusd(cpu, sc), 'xennet_backend_changed') === 0) {
    xennet_fatal(cpu, sc, ENXIO, 'cannot watch the backend state');
  }
}

/** The backend is Connected and so are we: start the data path. */
function xennet_connected(cpu: GuestCpu, sc: number): void {
  const v = xennet_view(cpu, sc);
  v.set('sc_state', XN_STATE_CONNECTED);
  v.set('sc_generation', v.get('sc_generation') + 1);
  if_setflags(cpu, sc, IFF_RUNNING, IFF_OACTIVE);
  xenbus_switch_state_async(cpu, xennet_xbusd(cpu, sc), XenbusStateConnected);
  // The backend may have filled buffers already; then tell it the RX buffers are there.
  xennet_xenbus_intr(cpu, sc, v.get('sc_evtchn'));
  xennet_notify(cpu, sc);
  arp_ifinit(cpu, sc);
  if_start(cpu, sc);
}

/** The backend went away cleanly: tear down, wait for it to come back. */
function xennet_disconnect(cpu: GuestCpu, sc: number, state: XenbusState): void {
  const v = xennet_view(cpu, sc);
  xennet_rings_teardown(cpu, sc);
  v.set('sc_state', XN_STATE_CLOSED);
  if_setflags(cpu, sc, 0, IFF_RUNNING | IFF_OACTIVE);
  printf(cpu, '%s: backend %s the device\n', device_xname(cpu, xennet_dev(cpu, sc)), state === XenbusStateClosing ? 'is closing' : 'closed');
  xenbus_switch_state_async(cpu, xennet_xbusd(cpu, sc), XenbusStateClosed);
}

/** The backend's state changed (xenbus thread, via xenbus_watch_otherend). */
export function xennet_backend_changed(cpu: GuestCpu, dev: number, state: number): void {
  const sc = device_private(cpu, dev);
  const v = xennet_view(cpu, sc);
  const st = v.get('sc_state');
  switch (state) {
    case XenbusStateConnected: {
      const ours = xenbus_device.view(cpu.mem, xennet_xbusd(cpu, sc)).get('xbusd_state');
      if (st === XN_STATE_CONNECTING && ours === XenbusStateInitialised) xennet_connected(cpu, sc);
      return;
    }
    case XenbusStateClosing:
    case XenbusStateClosed:
      if (st === XN_STATE_CONNECTED || st === XN_STATE_CONNECTING) xennet_disconnect(cpu, sc, state);
      return;
    case XenbusStateInitialising:
    case XenbusStateInitWait:
      if (st === XN_STATE_CLOSED) {
        v.set('sc_state', XN_STATE_CONNECTING);
        if (!xennet_chain_start(cpu, sc)) v.set('sc_state', XN_STATE_CLOSED);
      }
      return;
    default:
  }
}

// ---------------------------------------------------------------------------
// The interrupt

/** Events on our port: TX completions, received frames, refill, more to send. */
export function xennet_xenbus_intr(cpu: GuestCpu, sc: number, _port: number): void {
  const v = xennet_view(cpu, sc);
  if (v.get('sc_state') !== XN_STATE_CONNECTED) return;
  vu64_set(v, 'sc_nintr', vu64(v, 'sc_nintr') + 1);
  const frames: number[] = [];
  const error = xennet_txeof(cpu, sc) ?? xennet_rxeof(cpu, sc, frames);
  if (error !== undefined) {
    for (const m of frames) m_free(cpu, m);
    xennet_fail(cpu, sc, error);
    return;
  }
  if (xennet_rx_refill(cpu, sc) > 0) xennet_notify(cpu, sc);
  for (const m of frames) ether_input(cpu, sc, m);
  if_start(cpu, sc);
}

// ---------------------------------------------------------------------------
// pmf

/**
 * Stop new output (NetBSD's if_stop, step 1 of a suspend): packets queue
 * on the interface instead of the ring, while responses for what is on the
 * ring keep coming. A suspending thread may then tsleep on
 * xennet_drain_wchan(sc) until xennet_tx_drained(cpu, sc), and suspend.
 * Returns the softc.
 */
export function xennet_xenbus_stop(cpu: GuestCpu, dev: number): number {
  const sc = device_private(cpu, dev);
  if_setflags(cpu, sc, 0, IFF_RUNNING);
  return sc;
}

/**
 * Suspend: stop TX, take the TX responses that are there, mask the port.
 * RX buffers and the packets still in flight are kept. Never refuses.
 */
export function xennet_xenbus_suspend(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xennet_view(cpu, sc);
  const st = v.get('sc_state');
  if (st !== XN_STATE_CONNECTED && st !== XN_STATE_CONNECTING) return true;
  if_setflags(cpu, sc, 0, IFF_RUNNING);
  if (st === XN_STATE_CONNECTED) {
    const error = xennet_txeof(cpu, sc);
    if (error !== undefined) {
      xennet_fail(cpu, sc, error);
      return true;
    }
    xennet_setflag(cpu, sc, 0, XNF_SUSP_CONNECTING);
  } else {
    xennet_setflag(cpu, sc, XNF_SUSP_CONNECTING);
  }
  xennet_mask(cpu, sc, true);
  v.set('sc_state', XN_STATE_SUSPENDED);
  return true;
}

/**
 * Resume, and attach's first connection: forget what the old domain had
 * (after a restore every grant and port is void), then run the connect
 * chain on the xenbus thread.
 */
export function xennet_xenbus_resume(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xennet_view(cpu, sc);
  const st = v.get('sc_state');
  if (st === XN_STATE_DEAD || st === XN_STATE_CONNECTING || st === XN_STATE_CONNECTED) return true;
  if (st === XN_STATE_SUSPENDED) {
    xennet_rings_forget(cpu, sc);
    // The restored domain's frontend starts at Initialising (the toolstack made it anew);
    // say so ourselves too, so the state we last wrote is not taken for the store's.
    xenbus_switch_state_async(cpu, xennet_xbusd(cpu, sc), XenbusStateInitialising);
  }
  xennet_setflag(cpu, sc, 0, XNF_SUSP_CONNECTING);
  v.set('sc_state', XN_STATE_CONNECTING);
  if_setflags(cpu, sc, 0, IFF_RUNNING | IFF_OACTIVE);
  if (!xennet_chain_start(cpu, sc)) {
    aprint_error_dev(cpu, dev, 'cannot queue the connection to the backend\n');
    v.set('sc_state', XN_STATE_DISCONNECTED);
    return false;
  }
  return true;
}

/** A cancelled suspend (same domain, same backend): carry on where we stopped. */
export function xennet_xenbus_resume_cancelled(cpu: GuestCpu, dev: number): boolean {
  const sc = device_private(cpu, dev);
  const v = xennet_view(cpu, sc);
  const st = v.get('sc_state');
  if (st === XN_STATE_DISCONNECTED) return xennet_xenbus_resume(cpu, dev);
  if (st === XN_STATE_CONNECTED) {
    // Stopped (xennet_xenbus_stop) but never suspended: just start output again.
    if_setflags(cpu, sc, IFF_RUNNING);
    if_start(cpu, sc);
    return true;
  }
  if (st !== XN_STATE_SUSPENDED) return true;
  if ((v.get('sc_flags') & XNF_SUSP_CONNECTING) !== 0) {
    // Suspended in the middle of the handshake: let go of what it had (same domain) and
    // start over from Initialising, so the backend sees the new ring details arrive.
    xennet_rings_teardown(cpu, sc);
    v.set('sc_state', XN_STATE_DISCONNECTED);
    xenbus_switch_state_async(cpu, xennet_xbusd(cpu, sc), XenbusStateInitialising);
    return xennet_xenbus_resume(cpu, dev);
  }
  v.set('sc_state', XN_STATE_CONNECTED);
  if_setflags(cpu, sc, IFF_RUNNING);
  xennet_mask(cpu, sc, false);
  xennet_xenbus_intr(cpu, sc, v.get('sc_evtchn'));
  return true;
}

// ---------------------------------------------------------------------------
// Kernel configuration

export const if_xennet_xenbus_ksyms = ksymtab({
  xennet_xbusd, xennet_dev, xennet_xenbus_match, xennet_xenbus_attach, xennet_fatal, xennet_fail, xennet_setflag,
  xennet_chain_start, xennet_chain_ok, xennet_connect, xennet_connect_begin,
  xennet_connect_rxcopy, xennet_connect_mac, xennet_pick_address, xennet_connect_ip, xennet_connect_txstart,
  xennet_node_value, xennet_connect_write_next, xennet_connect_write, xennet_connect_txend, xennet_connect_initialised,
  xennet_connected, xennet_disconnect, xennet_backend_changed, xennet_xenbus_intr, xennet_xenbus_suspend,
  xennet_xenbus_stop, xennet_xenbus_resume, xennet_xenbus_resume_cancelled,
});

/** xennet's kernel text, in link order (the network stack's, NET_KSYMTABS, must be linked too). */
export const XENNET_KSYMTABS: readonly KSymTab[] = Object.freeze([xennet_var_ksyms, xennet_wire_ksyms, xennet_ring_ksyms, if_xennet_xenbus_ksyms]);

/** `xennet* at xenbus?`: the device table line. */
export const XENNET_CFDATA: readonly CfDesc[] = Object.freeze([
  Object.freeze({ name: 'xennet', atname: 'xenbus', match: 'xennet_xenbus_match', attach: 'xennet_xenbus_attach', devsize: xennet_xenbus_softc.size }),
]);
