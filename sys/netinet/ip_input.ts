/*
 * IPv4 input (netinet/ip_input.c), for a host that does not forward and
 * does not reassemble.
 *
 * Every check a packet from the wire must pass, in order, each failure
 * dropped and counted in ipstat: a whole minimal header, version 4, a
 * header length within the packet, the header checksum, a total length
 * between the header and what arrived (Ethernet padding beyond ip_len is
 * trimmed), no fragment (more-fragments or an offset: dropped, counted in
 * ips_fragdropped, since nothing here reassembles), a sane source, and a
 * destination that is ours or a broadcast. Then the protocol: ICMP or UDP.
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { netstat_inc } from '../net/net_globals.js';
import { mbuf_view, m_free, m_len, mtod, m_setlen, M_BCAST } from '../net/mbuf.js';
import { ifnet_view } from '../net/if.js';
import { IP_VHL, IP_LEN, IP_OFF, IP_P, IP_SRC, IP_DST, IP_HDRLEN, IPVERSION, IP_MF, IP_OFFMASK } from './ip.js';
import { in_cksum, IN_MULTICAST, INADDR_BROADCAST, IPPROTO_ICMP, IPPROTO_UDP } from './in.js';
import { in_broadcast } from './in_ifaddr.js';
import { icmp_input } from './ip_icmp.js';
import { udp_input } from './udp_usrreq.js';

/** Host-side trace (DEBUG=guest:net). */
const dbg = createDebug('guest:net');

function ip_drop(cpu: GuestCpu, m: number, stat: string): void {
  netstat_inc(cpu, 'ng_ipstat', stat);
  if (dbg.enabled) dbg('ip_input: drop (%s)', stat);
  m_free(cpu, m);
}

/** A received IPv4 packet (m_data at the IP header). Consumes the mbuf. */
export function ip_input(cpu: GuestCpu, ifp: number, m: number): void {
  const mem = cpu.mem;
  netstat_inc(cpu, 'ng_ipstat', 'ips_total');
  const len = m_len(cpu, m);
  if (len < IP_HDRLEN) return ip_drop(cpu, m, 'ips_toosmall');
  const ip = mtod(cpu, m);
  const vhl = mem.getUint8(ip + IP_VHL);
  if (vhl >> 4 !== IPVERSION) return ip_drop(cpu, m, 'ips_badvers');
  const hlen = (vhl & 0x0f) << 2;
  if (hlen < IP_HDRLEN || hlen > len) return ip_drop(cpu, m, 'ips_badhlen');
  if (in_cksum(mem, ip, hlen) !== 0) return ip_drop(cpu, m, 'ips_badsum');
  const ipLen = mem.getUint16(ip + IP_LEN, false);
  if (ipLen < hlen) return ip_drop(cpu, m, 'ips_badlen');
  if (ipLen > len) return ip_drop(cpu, m, 'ips_tooshort');
  if (ipLen < len) m_setlen(cpu, m, ipLen);
  const off = mem.getUint16(ip + IP_OFF, false);
  if ((off & (IP_MF | IP_OFFMASK)) !== 0) return ip_drop(cpu, m, 'ips_fragdropped');
  const src = mem.getUint32(ip + IP_SRC, false);
  const dst = mem.getUint32(ip + IP_DST, false);
  if (src === INADDR_BROADCAST || IN_MULTICAST(src) || (src !== 0 && in_broadcast(cpu, src, ifp))) return ip_drop(cpu, m, 'ips_badaddr');
  const myaddr = ifnet_view(cpu, ifp).get('if_addr');
  const bcast = in_broadcast(cpu, dst, ifp);
  if (dst !== myaddr || myaddr === 0) {
    if (!bcast) return ip_drop(cpu, m, 'ips_notforus');
    const mv = mbuf_view(cpu, m);
    mv.set('m_flags', mv.get('m_flags') | M_BCAST);
  }
  const p = mem.getUint8(ip + IP_P);
  switch (p) {
    case IPPROTO_ICMP:
      netstat_inc(cpu, 'ng_ipstat', 'ips_delivered');
      icmp_input(cpu, ifp, m, hlen);
      return;
    case IPPROTO_UDP:
      netstat_inc(cpu, 'ng_ipstat', 'ips_delivered');
      udp_input(cpu, ifp, m, hlen);
      return;
    default:
      ip_drop(cpu, m, 'ips_noproto');
  }
}

export const ip_input_ksyms = ksymtab({ ip_drop, ip_input });
