/*
 * IPv4 output (netinet/ip_output.c) and the routing decision a host with
 * one default route needs (the part of net/route.c it uses).
 *
 * ip_output() prepends an option-less header to a transport packet and
 * hands it to the interface towards the destination: directly when the
 * destination is on a connected subnet (or a broadcast), through the
 * default router otherwise. Packets are never fragmented: every header
 * carries DF, and a packet bigger than the MTU is refused with EMSGSIZE.
 * A packet for one of our own addresses is looped back into ip_input.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { netglobals, netstat_inc } from '../net/net_globals.js';
import { mbuf_view, m_free, m_len, m_prepend, mtod, M_BCAST, M_LOOP } from '../net/mbuf.js';
import { ifnet_view, ifnet_list, if_flags, IFF_UP } from '../net/if.js';
import { ether_output } from '../net/if_ethersubr.js';
import { EHOSTUNREACH, EMSGSIZE, ENOBUFS } from '../net/net_errno.js';
import { ip_header_write, IP_HDRLEN, IP_DF, IPDEFTTL } from './ip.js';
import { INADDR_BROADCAST } from './in.js';
import { ip_input } from './ip_input.js';

export interface IpRoute {
  /** Outgoing interface, 0 when there is no route. */
  readonly ifp: number;
  /** Whom to hand the packet to on that link. */
  readonly nexthop: number;
  readonly broadcast: boolean;
  /** Destination is one of our own addresses. */
  readonly local: boolean;
}

const NOROUTE: IpRoute = Object.freeze({ ifp: 0, nexthop: 0, broadcast: false, local: false });

/** Where a packet for `dst` goes. */
export function ip_route(cpu: GuestCpu, dst: number): IpRoute {
  const ifs = ifnet_list(cpu).filter((ifp) => (if_flags(cpu, ifp) & IFF_UP) !== 0 && ifnet_view(cpu, ifp).get('if_addr') !== 0);
  for (const ifp of ifs) {
    const v = ifnet_view(cpu, ifp);
    const addr = v.get('if_addr');
    const mask = v.get('if_netmask');
    if (dst === addr) return { ifp, nexthop: dst, broadcast: false, local: true };
    if (dst === INADDR_BROADCAST || dst === v.get('if_broadaddr')) return { ifp, nexthop: dst, broadcast: true, local: false };
    if (((dst & mask) >>> 0) === ((addr & mask) >>> 0)) return { ifp, nexthop: dst, broadcast: false, local: false };
  }
  const gw = netglobals(cpu).get('ng_defrouter');
  if (gw !== 0) {
    for (const ifp of ifs) {
      const v = ifnet_view(cpu, ifp);
      const mask = v.get('if_netmask');
      if (((gw & mask) >>> 0) === ((v.get('if_addr') & mask) >>> 0)) return { ifp, nexthop: gw, broadcast: false, local: false };
    }
  }
  return NOROUTE;
}

export interface IpOutputOptions {
  /** Source address; 0 or absent: the outgoing interface's. */
  readonly src?: number;
  readonly ttl?: number;
  readonly tos?: number;
}

/**
 * Send a transport packet (m_data at its header) to `dst` with protocol
 * `proto`. Consumes the mbuf. Returns 0 or an errno.
 */
export function ip_output(cpu: GuestCpu, m: number, dst: number, proto: number, opts: IpOutputOptions = {}): number {
  const rt = ip_route(cpu, dst >>> 0);
  if (rt.ifp === 0) {
    netstat_inc(cpu, 'ng_ipstat', 'ips_noroute');
    m_free(cpu, m);
    return EHOSTUNREACH;
  }
  const ifp = rt.ifp;
  const len = m_len(cpu, m) + IP_HDRLEN;
  if (len > ifnet_view(cpu, ifp).get('if_mtu')) {
    netstat_inc(cpu, 'ng_ipstat', 'ips_cantfrag');
    m_free(cpu, m);
    return EMSGSIZE;
  }
  if (!m_prepend(cpu, m, IP_HDRLEN)) {
    netstat_inc(cpu, 'ng_ipstat', 'ips_odropped');
    m_free(cpu, m);
    return ENOBUFS;
  }
  const g = netglobals(cpu);
  const id = g.get('ng_ip_id');
  g.set('ng_ip_id', (id + 1) & 0xffff);
  const src = opts.src !== undefined && opts.src !== 0 ? opts.src : ifnet_view(cpu, ifp).get('if_addr');
  ip_header_write(cpu.mem, mtod(cpu, m), {
    len, id, off: IP_DF, ttl: opts.ttl ?? IPDEFTTL, p: proto, src, dst: dst >>> 0, tos: opts.tos ?? 0,
  });
  netstat_inc(cpu, 'ng_ipstat', 'ips_localout');
  const mv = mbuf_view(cpu, m);
  if (rt.local) {
    netstat_inc(cpu, 'ng_ipstat', 'ips_looped');
    mv.set('m_flags', mv.get('m_flags') | M_LOOP);
    ip_input(cpu, ifp, m);
    return 0;
  }
  if (rt.broadcast) mv.set('m_flags', mv.get('m_flags') | M_BCAST);
  return ether_output(cpu, ifp, m, rt.nexthop);
}

export const ip_output_ksyms = ksymtab({ ip_route, ip_output });
