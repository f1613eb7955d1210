/*
 * Ethernet input and output (net/if_ethersubr.c).
 *
 *   ether_ifattach(cpu, ifp, mac)      after if_attach: type, MTU, address
 *   ether_input(cpu, ifp, m)           the driver hands up a received frame
 *   ether_output(cpu, ifp, m, nexthop) IP hands down a packet for `nexthop`
 *   ether_send(cpu, ifp, m, dst, type) a link-level frame (ARP, resolved IP)
 *
 * Input runs in the driver's interrupt context and goes all the way up
 * (ARP, IP, ICMP replies, UDP queues) before returning; a reply built on
 * the way is queued on the interface and sent by its start routine. Frames
 * are filtered by destination (ours, or broadcast): the bridge floods
 * unknown unicast to every port, as a real one does.
 *
 * Nothing here throws on a bad frame: it is dropped and counted.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { netstat_inc } from './net_globals.js';
import { mbuf_view, m_free, m_len, m_adj, m_prepend, mtod, M_BCAST, M_MCAST } from './mbuf.js';
import {
  ifnet_view, if_enqueue, if_start, if_stat_add, if_flags, IFF_UP, IFF_BROADCAST, IFF_SIMPLEX, IFF_MULTICAST, IFT_ETHER,
} from './if.js';
import {
  ETHER_HDR_LEN, ETHER_DHOST, ETHER_SHOST, ETHER_TYPE, ETHERMTU, ETHERTYPE_ARP, ETHERTYPE_IP,
  etherbroadcastaddr, ether_addr_get, ether_addr_set, ether_addr_eq_at, type EtherAddr,
} from './if_ether.js';
import { ENETDOWN, ENOBUFS } from './net_errno.js';
import { arp_input, arpresolve } from '../netinet/if_arp.js';
import { ip_input } from '../netinet/ip_input.js';

/** Host-side trace (DEBUG=guest:net). */
const dbg = createDebug('guest:net');

const IF_LLADDR = 'if_lladdr';

/** Make `ifp` an Ethernet interface with hardware address `mac`. */
export function ether_ifattach(cpu: GuestCpu, ifp: number, mac: EtherAddr): void {
  const v = ifnet_view(cpu, ifp);
  v.set('if_type', IFT_ETHER);
  v.set('if_mtu', ETHERMTU);
  v.set('if_flags', v.get('if_flags') | IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST);
  ether_addr_set(cpu.mem, v.addr(IF_LLADDR), mac);
}

/** The interface's hardware address (six bytes, for this entry). */
export function if_lladdr(cpu: GuestCpu, ifp: number): number[] {
  return ether_addr_get(cpu.mem, ifnet_view(cpu, ifp).addr(IF_LLADDR));
}

/** Change the hardware address (a vif's `mac` node may differ after restore). */
export function if_set_lladdr(cpu: GuestCpu, ifp: number, mac: EtherAddr): void {
  ether_addr_set(cpu.mem, ifnet_view(cpu, ifp).addr(IF_LLADDR), mac);
}

function ether_drop(cpu: GuestCpu, m: number, stat: string): void {
  netstat_inc(cpu, 'ng_etherstat', stat);
  m_free(cpu, m);
}

/**
 * A received frame (m_data at the Ethernet header). Consumes the mbuf:
 * hands it up, or drops and counts it.
 */
export function ether_input(cpu: GuestCpu, ifp: number, m: number): void {
  netstat_inc(cpu, 'ng_etherstat', 'ets_ipackets');
  const len = m_len(cpu, m);
  if_stat_add(cpu, ifp, 'if_ipackets');
  if_stat_add(cpu, ifp, 'if_ibytes', len);
  if (len < ETHER_HDR_LEN) {
    if_stat_add(cpu, ifp, 'if_ierrors');
    ether_drop(cpu, m, 'ets_runt');
    return;
  }
  const mtu = ifnet_view(cpu, ifp).get('if_mtu');
  if (len > ETHER_HDR_LEN + mtu) {
    if_stat_add(cpu, ifp, 'if_ierrors');
    ether_drop(cpu, m, 'ets_toolong');
    return;
  }
  if ((if_flags(cpu, ifp) & IFF_UP) === 0) {
    if_stat_add(cpu, ifp, 'if_iqdrops');
    m_free(cpu, m);
    return;
  }
  const eh = mtod(cpu, m);
  const lladdr = if_lladdr(cpu, ifp);
  const mv = mbuf_view(cpu, m);
  if (ether_addr_eq_at(cpu.mem, eh + ETHER_SHOST, lladdr)) {
    ether_drop(cpu, m, 'ets_looped');
    return;
  }
  if (ether_addr_eq_at(cpu.mem, eh + ETHER_DHOST, etherbroadcastaddr)) {
    mv.set('m_flags', mv.get('m_flags') | M_BCAST);
  } else if ((cpu.mem.getUint8(eh + ETHER_DHOST) & 1) !== 0) {
    ether_drop(cpu, m, 'ets_multicast');
    return;
  } else if (!ether_addr_eq_at(cpu.mem, eh + ETHER_DHOST, lladdr)) {
    ether_drop(cpu, m, 'ets_notforus');
    return;
  }
  const type = cpu.mem.getUint16(eh + ETHER_TYPE, false);
  if (dbg.enabled) dbg('ether_input: %d bytes type %s', len, type.toString(16));
  m_adj(cpu, m, ETHER_HDR_LEN);
  switch (type) {
    case ETHERTYPE_IP:
      ip_input(cpu, ifp, m);
      return;
    case ETHERTYPE_ARP:
      arp_input(cpu, ifp, m);
      return;
    default:
      if_stat_add(cpu, ifp, 'if_noproto');
      ether_drop(cpu, m, 'ets_noproto');
  }
}

/**
 * Send a link-level frame: prepend the Ethernet header (to `dst`, of
 * `type`), queue it, start the driver. Consumes the mbuf; 0 or an errno.
 */
export function ether_send(cpu: GuestCpu, ifp: number, m: number, dst: EtherAddr, type: number): number {
  if (!m_prepend(cpu, m, ETHER_HDR_LEN)) {
    netstat_inc(cpu, 'ng_etherstat', 'ets_oqdrops');
    if_stat_add(cpu, ifp, 'if_oerrors');
    m_free(cpu, m);
    return ENOBUFS;
  }
  const eh = mtod(cpu, m);
  ether_addr_set(cpu.mem, eh + ETHER_DHOST, dst);
  ether_addr_set(cpu.mem, eh + ETHER_SHOST, if_lladdr(cpu, ifp));
  cpu.mem.setUint16(eh + ETHER_TYPE, type, false);
  if (!if_enqueue(cpu, ifp, m)) {
    netstat_inc(cpu, 'ng_etherstat', 'ets_oqdrops');
    m_free(cpu, m);
    return ENOBUFS;
  }
  netstat_inc(cpu, 'ng_etherstat', 'ets_opackets');
  if_start(cpu, ifp);
  return 0;
}

/**
 * Output an IP packet (m_data at the IP header) towards `nexthop` on
 * `ifp`: broadcast when the mbuf says so, else through ARP (which may
 * hold the packet until the address resolves). Consumes the mbuf.
 */
export function ether_output(cpu: GuestCpu, ifp: number, m: number, nexthop: number): number {
  if ((if_flags(cpu, ifp) & IFF_UP) === 0) {
    m_free(cpu, m);
    return ENETDOWN;
  }
  const flags = mbuf_view(cpu, m).get('m_flags');
  if ((flags & (M_BCAST | M_MCAST)) !== 0) return ether_send(cpu, ifp, m, etherbroadcastaddr, ETHERTYPE_IP);
  const r = arpresolve(cpu, ifp, m, nexthop);
  if (r.error !== 0) return r.error;
  if (r.mac === undefined) return 0; // held until the address resolves
  return ether_send(cpu, ifp, m, r.mac, ETHERTYPE_IP);
}

export const if_ethersubr_ksyms = ksymtab({ ether_ifattach, if_lladdr, if_set_lladdr, ether_drop, ether_input, ether_send, ether_output });
