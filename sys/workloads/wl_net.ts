/*
 * The `net` workload: the guest's network services, counted. Once an
 * interface is up with an address, it starts the UDP echo service
 * (udpecho_start: every datagram to port 7 goes back to its sender; dom0
 * forwards a host UDP port to it) and a heartbeat datagram to dom0's
 * HeartbeatMonitor (heartbeat_start: "hb <seq> <ticks>" every second of
 * guest time), and optionally pings another host once a second (two
 * guests on one bridge reaching each other).
 *
 *   net_port=P        the echo port (default 7)
 *   net_hb_ms=M       ms of guest time between heartbeats (default 1000)
 *   net_hb_to=A       where heartbeats go (default 10.0.0.1, dom0)
 *   net_hb_port=P     (default 7777, dom0's HeartbeatMonitor)
 *   net_ping=A        ping A once a second (default: no ping)
 *   net_wait=S        seconds to wait for an interface (default 60)
 *
 * The services are threads of their own with their state in kmem
 * (udp_services.ts); this thread only copies their numbers into the
 * counters once a tick, sends the pings, and parks while a suspend is
 * under way. Everything it keeps is in its state block, so after a
 * restore the services and the counting carry on.
 *
 * Counters: echoed (datagrams echoed), heartbeats (sent), errors (sends
 * that failed, echo and heartbeat), and with net_ping: pings (echo
 * requests sent), ping_replies (answers received).
 *
 *   struct net_wl {
 *       uint64_t nw_echo;          // struct udpecho_state *
 *       uint64_t nw_hb;            // struct heartbeat_state *
 *       uint32_t nw_ping_dst;      // host order; 0: no ping
 *       uint32_t nw_ping_seq;      // echo requests sent
 *       uint32_t nw_ticks;         // ticks until the next ping
 *       uint32_t nw_waited;        // ticks spent waiting for an interface
 *       int32_t  nw_c[5];          // counter indices (-1: not registered)
 *   };
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, array, u32, i32, u64 } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kpause } from '../kern/kern_synch.js';
import { printf } from '../kern/subr_prf.js';
import { vu64, vu64_set } from '../lib/libkern/libkern.js';
import { HZ } from '../sys/param.js';
import { ifnet_list, ifnet_view, if_xname, IFF_UP, IFF_RUNNING } from '../net/if.js';
import { inet_aton, inet_ntoa } from '../netinet/in.js';
import { icmp_ping, icmp_ping_stats } from '../netinet/ip_icmp.js';
import { udpecho_start, udpecho_stats, heartbeat_start, heartbeat_stats } from '../netinet/udp_services.js';
import { xen_cmdline_value } from '../../arch/xen/xen/xen_machdep.js';
import { xen_suspending, xen_suspend_park } from '../../arch/xen/xen/xen_suspend.js';
import { wl_from_init, wl_counter, wl_set, wl_status, wl_fail, wl_param, wl_private, wl_private_alloc } from './workload.js';

/** dom0's address on xenbr0 and its HeartbeatMonitor's port. */
export const NET_HB_DEFAULT_TO = '10.0.0.1';
export const NET_HB_DEFAULT_PORT = 7777;
/** The identifier of this workload's echo requests ("NW"). */
export const NET_PING_IDENT = 0x4e57;

const C_ECHOED = 0;
const C_HEARTBEATS = 1;
const C_ERRORS = 2;
const C_PINGS = 3;
const C_PING_REPLIES = 4;
const NCOUNTERS = 5;

export const net_wl = struct('struct net_wl', {
  nw_echo: u64,
  nw_hb: u64,
  nw_ping_dst: u32,
  nw_ping_seq: u32,
  nw_ticks: u32,
  nw_waited: u32,
  nw_c: array(i32, NCOUNTERS),
});

function nw_view(cpu: GuestCpu, wl: number) {
  return net_wl.view(cpu.mem, wl_private(cpu, wl));
}

/** An address from the command line (`key=a.b.c.d`): the default when absent, undefined when bad (said on the console). */
function net_addr_param(cpu: GuestCpu, key: string, dflt: string): number | undefined {
  const s = xen_cmdline_value(cpu, key) ?? dflt;
  if (s === '') return 0;
  const a = inet_aton(s);
  if (a === undefined) printf(cpu, 'net: %s=%s is not an IPv4 address\n', key, s);
  return a;
}

/** The first interface that is up and running with an address, or 0. */
function net_ifup(cpu: GuestCpu): number {
  for (const ifp of ifnet_list(cpu)) {
    const v = ifnet_view(cpu, ifp);
    if ((v.get('if_flags') & (IFF_UP | IFF_RUNNING)) === (IFF_UP | IFF_RUNNING) && v.get('if_addr') !== 0) return ifp;
  }
  return 0;
}

/** First step: counters, the ping's address, then wait for an interface. */
export function workload_net(cpu: GuestCpu, wl: number, _error: number): void {
  if (wl_from_init(cpu, wl)) return;
  if (wl_private_alloc(cpu, wl, net_wl.size) === 0) {
    wl_fail(cpu, wl, 'no memory for its state');
    return;
  }
  const v = nw_view(cpu, wl);
  const ping = net_addr_param(cpu, 'net_ping', '');
  if (ping === undefined) {
    wl_fail(cpu, wl, 'bad net_ping address');
    return;
  }
  v.set('nw_ping_dst', ping);
  const names = ping === 0 ? ['echoed', 'heartbeats', 'errors'] : ['echoed', 'heartbeats', 'errors', 'pings', 'ping_replies'];
  for (let i = 0; i < NCOUNTERS; i++) v.setAt('nw_c', i, i < names.length ? wl_counter(cpu, wl, names[i]!) : -1);
  wl_status(cpu, wl, 'waiting for an interface');
  kpause(cpu, 'netwait', 1, 'net_wait');
}

/** Once a tick until an interface is up with an address; then start the services. */
export function net_wait(cpu: GuestCpu, wl: number, _error: number): void {
  const v = nw_view(cpu, wl);
  const ifp = net_ifup(cpu);
  if (ifp === 0) {
    const waited = v.get('nw_waited') + 1;
    v.set('nw_waited', waited);
    if (waited > wl_param(cpu, 'net_wait', 60, 1, 86400) * HZ) {
      wl_fail(cpu, wl, 'no interface up');
      return;
    }
    kpause(cpu, 'netwait', 1, 'net_wait');
    return;
  }
  const port = wl_param(cpu, 'net_port', 7, 1, 65535);
  const hbTicks = Math.max(1, Math.round((wl_param(cpu, 'net_hb_ms', 1000, 10, 3_600_000) * HZ) / 1000));
  const hbPort = wl_param(cpu, 'net_hb_port', NET_HB_DEFAULT_PORT, 1, 65535);
  const hbTo = net_addr_param(cpu, 'net_hb_to', NET_HB_DEFAULT_TO);
  if (hbTo === undefined || hbTo === 0) {
    wl_fail(cpu, wl, 'bad net_hb_to address');
    return;
  }
  const echo = udpecho_start(cpu, port);
  if (echo === 0) {
    wl_fail(cpu, wl, `cannot serve UDP port ${port}`);
    return;
  }
  vu64_set(v, 'nw_echo', echo);
  const hb = heartbeat_start(cpu, hbTo, hbPort, hbTicks);
  if (hb === 0) {
    wl_fail(cpu, wl, 'cannot start the heartbeat');
    return;
  }
  vu64_set(v, 'nw_hb', hb);
  const addr = ifnet_view(cpu, ifp).get('if_addr');
  const ping = v.get('nw_ping_dst');
  printf(cpu, 'net: %s %s: echo on UDP port %u, heartbeat to %s:%u every %u ticks%s\n', if_xname(cpu, ifp), inet_ntoa(addr), port,
    inet_ntoa(hbTo), hbPort, hbTicks, ping === 0 ? '' : `, ping ${inet_ntoa(ping)} every second`);
  wl_status(cpu, wl, 'running');
  kpause(cpu, 'net', 1, 'net_step');
}

/** Once a tick: copy the services' numbers, ping when due. */
export function net_step(cpu: GuestCpu, wl: number, _error: number): void {
  if (xen_suspending(cpu)) {
    xen_suspend_park(cpu, 'net_step');
    return;
  }
  const v = nw_view(cpu, wl);
  const echo = udpecho_stats(cpu, vu64(v, 'nw_echo'));
  const hb = heartbeat_stats(cpu, vu64(v, 'nw_hb'));
  wl_set(cpu, wl, v.getAt('nw_c', C_ECHOED), echo.echoed);
  wl_set(cpu, wl, v.getAt('nw_c', C_HEARTBEATS), hb.sent);
  wl_set(cpu, wl, v.getAt('nw_c', C_ERRORS), echo.errors + hb.errors);
  const dst = v.get('nw_ping_dst');
  if (dst !== 0) {
    const due = v.get('nw_ticks');
    if (due <= 1) {
      const seq = (v.get('nw_ping_seq') + 1) >>> 0;
      if (icmp_ping(cpu, dst, NET_PING_IDENT, seq) === 0) v.set('nw_ping_seq', seq);
      v.set('nw_ticks', HZ);
    } else {
      v.set('nw_ticks', due - 1);
    }
    wl_set(cpu, wl, v.getAt('nw_c', C_PINGS), v.get('nw_ping_seq'));
    wl_set(cpu, wl, v.getAt('nw_c', C_PING_REPLIES), icmp_ping_stats(cpu).nreplies);
  }
  kpause(cpu, 'net', 1, 'net_step');
}

export const wl_net_ksyms = ksymtab({ nw_view, net_addr_param, net_ifup, workload_net, net_wait, net_step });
