/*
 * UDP (netinet/udp_usrreq.c) and its protocol control blocks (in_pcb.c),
 * with a socket-like kernel API in continuation style:
 *
 *   pcb = udp_bind(cpu, port)                  port 0: an ephemeral one; < 0: -errno
 *   err = udp_send(cpu, pcb, dst, dport, va, len)
 *   udp_recv(cpu, pcb, cont, timo?)            from a thread step: sleep until a
 *                                              datagram is queued, continue at
 *                                              cont(cpu, arg, error)
 *   n = udp_recvfrom(cpu, pcb, buf, len, from) take one: bytes copied, or -EWOULDBLOCK
 *   udp_close(cpu, pcb)
 *
 * udp_recv never returns data itself: a continuation cannot receive JS
 * values, so the thread wakes up and calls udp_recvfrom, which copies the
 * datagram into guest memory (and its sender into a struct sockaddr_in),
 * like soreceive(). A wakeup with nothing queued (another thread took it)
 * simply returns -EWOULDBLOCK and the thread sleeps again.
 *
 *   struct udphdr {                 // big-endian
 *       uint16_t uh_sport, uh_dport;
 *       uint16_t uh_ulen;           // header + data
 *       uint16_t uh_sum;            // 0: none (accepted), else over the pseudo-header
 *   };
 *
 *   struct inpcb {
 *       struct tailq_entry inp_list;    // ng_udbtable
 *       struct tailq_entry inp_rcvq;    // received datagrams (m_data at the payload)
 *       uint32_t inp_magic;
 *       uint32_t inp_laddr;             // bound address (host order), 0 = any
 *       uint16_t inp_lport;
 *       uint16_t inp_pad;
 *       uint32_t inp_rcv_cc;            // payload bytes queued
 *       uint32_t inp_rcv_n;             // datagrams queued
 *       uint32_t inp_rcv_hiwat;         // most payload bytes queued (sb_hiwat)
 *       uint32_t inp_drops;             // datagrams dropped because the queue was full
 *   };
 *
 *   struct sockaddr_in {                // NetBSD's, as udp_recvfrom fills it
 *       uint8_t  sin_len, sin_family;   // 16, AF_INET
 *       uint16_t sin_port;              // big-endian
 *       uint32_t sin_addr;              // big-endian
 *       uint8_t  sin_zero[8];
 *   };
 */
import createDebug from 'debug';
import { struct, record, u16, u32 } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { tailq_entry, TAILQ_INIT, TAILQ_INSERT_TAIL, TAILQ_REMOVE, TAILQ_FIRST, TAILQ_NEXT } from '../sys/queue.js';
import { EINVAL, ENOMEM, EBADF, EWOULDBLOCK } from '../sys/errno.js';
import { ksymtab, type KSym } from '../kern/kern_ksyms.js';
import { kmem_zalloc, kmem_free } from '../kern/subr_kmem.js';
import { tsleep, preempt, wakeup } from '../kern/kern_synch.js';
import { netglobals, netstat_inc, ng_addr, IPPORT_ANONMIN, IPPORT_ANONMAX } from '../net/net_globals.js';
import { mbuf_view, m_get, m_free, m_len, m_adj, mtod, m_setlen, m_prepend, m_append, m_append_bytes, mq_enqueue, mq_dequeue, mq_purge, MLEN, MAX_HDR, M_BCAST, M_MCAST } from '../net/mbuf.js';
import { ifnet_view } from '../net/if.js';
import { EADDRINUSE, EDESTADDRREQ, EHOSTUNREACH, EMSGSIZE, ENOBUFS } from '../net/net_errno.js';
import { IP_SRC, IP_DST, IP_HDRLEN, IP_MAXPACKET } from './ip.js';
import { in_cksum, in_pseudo, IPPROTO_UDP } from './in.js';
import { ip_output, ip_route } from './ip_output.js';
import { icmp_error, ICMP_UNREACH, ICMP_UNREACH_PORT } from './ip_icmp.js';

/** Host-side trace (DEBUG=guest:net). */
const dbg = createDebug('guest:net');

export const UH_SPORT = 0;
export const UH_DPORT = 2;
export const UH_ULEN = 4;
export const UH_SUM = 6;
export const UDP_HDRLEN = 8;

export const inpcb = struct('struct inpcb', {
  inp_list: record(tailq_entry),
  inp_rcvq: record(tailq_entry),
  inp_magic: u32,
  inp_laddr: u32,
  inp_lport: u16,
  inp_pad: u16,
  inp_rcv_cc: u32,
  inp_rcv_n: u32,
  inp_rcv_hiwat: u32,
  inp_drops: u32,
});

export const INPCB_MAGIC = 0x696e7063; // 'inpc'
/** NetBSD's net.inet.udp.recvspace. */
export const UDP_RECVSPACE = 41600;
/** Largest datagram payload udp_send takes (what fits in one mbuf and one IPv4 packet). */
export const UDP_MAXDATA = Math.min(IP_MAXPACKET - IP_HDRLEN - UDP_HDRLEN, MLEN - MAX_HDR - IP_HDRLEN - UDP_HDRLEN);

export const AF_INET = 2;
export const SOCKADDR_IN_LEN = 16;

const INP_LIST = inpcb.offsetOf('inp_list');
const INP_RCVQ = inpcb.offsetOf('inp_rcvq');

function inp_view(cpu: GuestCpu, pcb: number) {
  return inpcb.view(cpu.mem, pcb);
}

function inp_valid(cpu: GuestCpu, pcb: number): boolean {
  return pcb > 0 && inp_view(cpu, pcb).get('inp_magic') === INPCB_MAGIC;
}

/** The PCB bound to `lport` that accepts datagrams for `laddr`, or 0. */
export function in_pcblookup(cpu: GuestCpu, lport: number, laddr: number): number {
  netglobals(cpu);
  const head = ng_addr('ng_udbtable');
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) {
    const v = inp_view(cpu, l - INP_LIST);
    if (v.get('inp_lport') !== lport) continue;
    const a = v.get('inp_laddr');
    if (a === 0 || laddr === 0 || a === laddr) return l - INP_LIST;
  }
  return 0;
}

/** An unused ephemeral port, or 0 when all are taken. */
function udp_anonport(cpu: GuestCpu): number {
  const g = netglobals(cpu);
  const span = IPPORT_ANONMAX - IPPORT_ANONMIN + 1;
  let p = g.get('ng_udp_lastport');
  for (let i = 0; i < span; i++) {
    p = p >= IPPORT_ANONMAX || p < IPPORT_ANONMIN ? IPPORT_ANONMIN : p + 1;
    if (in_pcblookup(cpu, p, 0) === 0) {
      g.set('ng_udp_lastport', p);
      return p;
    }
  }
  return 0;
}

/**
 * A PCB bound to `port` (0: an ephemeral port) on `laddr` (0: any of our
 * addresses). Returns its address, or -errno (EADDRINUSE, EINVAL, ENOMEM).
 */
export function udp_bind(cpu: GuestCpu, port: number, laddr = 0): number {
  if (!(Number.isInteger(port) && port >= 0 && port <= 0xffff)) return -EINVAL;
  const lport = port === 0 ? udp_anonport(cpu) : port;
  if (lport === 0) return -EADDRINUSE;
  if (port !== 0 && in_pcblookup(cpu, lport, laddr) !== 0) return -EADDRINUSE;
  const pcb = kmem_zalloc(cpu, inpcb.size);
  if (pcb === 0) return -ENOMEM;
  const v = inp_view(cpu, pcb);
  TAILQ_INIT(cpu.mem, pcb + INP_RCVQ);
  v.set('inp_magic', INPCB_MAGIC);
  v.set('inp_laddr', laddr >>> 0);
  v.set('inp_lport', lport);
  v.set('inp_rcv_hiwat', UDP_RECVSPACE);
  TAILQ_INSERT_TAIL(cpu.mem, ng_addr('ng_udbtable'), pcb + INP_LIST);
  const g = netglobals(cpu);
  g.set('ng_npcbs', g.get('ng_npcbs') + 1);
  return pcb;
}

/** The port a PCB is bound to (0 for a bad PCB). */
export function udp_port(cpu: GuestCpu, pcb: number): number {
  return inp_valid(cpu, pcb) ? inp_view(cpu, pcb).get('inp_lport') : 0;
}

/** Unbind and free a PCB, dropping what it had queued; sleepers are woken. */
export function udp_close(cpu: GuestCpu, pcb: number): number {
  if (!inp_valid(cpu, pcb)) return EBADF;
  mq_purge(cpu, pcb + INP_RCVQ);
  TAILQ_REMOVE(cpu.mem, pcb + INP_LIST);
  inp_view(cpu, pcb).set('inp_magic', 0);
  const g = netglobals(cpu);
  g.set('ng_npcbs', g.get('ng_npcbs') - 1);
  wakeup(cpu, pcb);
  kmem_free(cpu, pcb, inpcb.size);
  return 0;
}

function udp_drop(cpu: GuestCpu, m: number, stat: string): void {
  netstat_inc(cpu, 'ng_udpstat', stat);
  if (dbg.enabled) dbg('udp_input: drop (%s)', stat);
  m_free(cpu, m);
}

/** A UDP datagram (m_data at the IP header, `hlen` bytes of it). Consumes the mbuf. */
export function udp_input(cpu: GuestCpu, _ifp: number, m: number, hlen: number): void {
  const mem = cpu.mem;
  netstat_inc(cpu, 'ng_udpstat', 'udps_ipackets');
  const ip = mtod(cpu, m);
  const iplen = m_len(cpu, m) - hlen;
  if (iplen < UDP_HDRLEN) return udp_drop(cpu, m, 'udps_hdrops');
  const uh = ip + hlen;
  const ulen = mem.getUint16(uh + UH_ULEN, false);
  if (ulen < UDP_HDRLEN || ulen > iplen) return udp_drop(cpu, m, 'udps_badlen');
  if (ulen < iplen) m_setlen(cpu, m, hlen + ulen);
  const src = mem.getUint32(ip + IP_SRC, false);
  const dst = mem.getUint32(ip + IP_DST, false);
  if (mem.getUint16(uh + UH_SUM, false) !== 0) {
    if (in_cksum(mem, uh, ulen, in_pseudo(src, dst, IPPROTO_UDP, ulen)) !== 0) return udp_drop(cpu, m, 'udps_badsum');
  } else {
    netstat_inc(cpu, 'ng_udpstat', 'udps_nosum');
  }
  const sport = mem.getUint16(uh + UH_SPORT, false);
  const dport = mem.getUint16(uh + UH_DPORT, false);
  const mv = mbuf_view(cpu, m);
  const bcast = (mv.get('m_flags') & (M_BCAST | M_MCAST)) !== 0;
  const pcb = in_pcblookup(cpu, dport, bcast ? 0 : dst);
  if (pcb === 0) {
    if (bcast) return udp_drop(cpu, m, 'udps_noportbcast');
    netstat_inc(cpu, 'ng_udpstat', 'udps_noport');
    icmp_error(cpu, m, ICMP_UNREACH, ICMP_UNREACH_PORT);
    return;
  }
  const v = inp_view(cpu, pcb);
  const datalen = ulen - UDP_HDRLEN;
  if (v.get('inp_rcv_cc') + datalen > v.get('inp_rcv_hiwat')) {
    v.set('inp_drops', v.get('inp_drops') + 1);
    return udp_drop(cpu, m, 'udps_fullsock');
  }
  mv.set('m_src', src);
  mv.set('m_dst', dst);
  mv.set('m_sport', sport);
  mv.set('m_dport', dport);
  m_adj(cpu, m, hlen + UDP_HDRLEN);
  mq_enqueue(cpu, pcb + INP_RCVQ, m);
  v.set('inp_rcv_cc', v.get('inp_rcv_cc') + datalen);
  v.set('inp_rcv_n', v.get('inp_rcv_n') + 1);
  netstat_inc(cpu, 'ng_udpstat', 'udps_delivered');
  wakeup(cpu, pcb);
}

/** Datagrams waiting on a PCB. */
export function udp_rcvqlen(cpu: GuestCpu, pcb: number): number {
  return inp_valid(cpu, pcb) ? inp_view(cpu, pcb).get('inp_rcv_n') : 0;
}

/**
 * From a thread step: continue at `cont(cpu, arg, error)` once a datagram
 * is queued on `pcb` (at once, through the run queue, if one already is),
 * or after `timo` ticks (error EWOULDBLOCK) when timo > 0. The step must
 * return right after.
 */
export function udp_recv(cpu: GuestCpu, pcb: number, cont: KSym, timo = 0): void {
  if (inp_valid(cpu, pcb) && inp_view(cpu, pcb).get('inp_rcv_n') > 0) {
    preempt(cpu, cont);
    return;
  }
  tsleep(cpu, pcb, timo, cont, 'udprecv');
}

/**
 * Take the first queued datagram: copy up to `buflen` bytes of it to `buf`
 * (the rest is discarded, as with MSG_TRUNC), and its sender to the struct
 * sockaddr_in at `from` when non-zero. Returns the bytes copied, or
 * -EWOULDBLOCK when nothing is queued, -EBADF for a bad PCB.
 */
export function udp_recvfrom(cpu: GuestCpu, pcb: number, buf: number, buflen: number, from = 0): number {
  if (!inp_valid(cpu, pcb)) return -EBADF;
  const m = mq_dequeue(cpu, pcb + INP_RCVQ);
  if (m === 0) return -EWOULDBLOCK;
  const v = inp_view(cpu, pcb);
  const len = m_len(cpu, m);
  v.set('inp_rcv_cc', v.get('inp_rcv_cc') - len);
  v.set('inp_rcv_n', v.get('inp_rcv_n') - 1);
  const n = Math.max(0, Math.min(len, buflen));
  if (n > 0) cpu.mem.copyWithin(buf, mtod(cpu, m), n);
  if (from !== 0) {
    const mv = mbuf_view(cpu, m);
    cpu.mem.fill(from, SOCKADDR_IN_LEN, 0);
    cpu.mem.setUint8(from, SOCKADDR_IN_LEN);
    cpu.mem.setUint8(from + 1, AF_INET);
    cpu.mem.setUint16(from + 2, mv.get('m_sport'), false);
    cpu.mem.setUint32(from + 4, mv.get('m_src'), false);
  }
  m_free(cpu, m);
  return n;
}

/** Address and port of a struct sockaddr_in udp_recvfrom filled. */
export function sockaddr_in_get(cpu: GuestCpu, sin: number): { addr: number; port: number } {
  return { addr: cpu.mem.getUint32(sin + 4, false), port: cpu.mem.getUint16(sin + 2, false) };
}

/** Build and send a datagram whose payload is already in `m` (m_data at it). Consumes the mbuf. */
function udp_output(cpu: GuestCpu, pcb: number, m: number, dst: number, dport: number): number {
  const rt = ip_route(cpu, dst >>> 0);
  if (rt.ifp === 0) {
    m_free(cpu, m);
    netstat_inc(cpu, 'ng_udpstat', 'udps_odropped');
    return EHOSTUNREACH;
  }
  const v = inp_view(cpu, pcb);
  const src = v.get('inp_laddr') !== 0 ? v.get('inp_laddr') : ifnet_view(cpu, rt.ifp).get('if_addr');
  const datalen = m_len(cpu, m);
  const ulen = UDP_HDRLEN + datalen;
  // m_get left MAX_HDR of headroom: room for the UDP, IP and Ethernet headers.
  if (!m_prepend(cpu, m, UDP_HDRLEN)) {
    m_free(cpu, m);
    netstat_inc(cpu, 'ng_udpstat', 'udps_odropped');
    return ENOBUFS;
  }
  const uh = mtod(cpu, m);
  cpu.mem.setUint16(uh + UH_SPORT, v.get('inp_lport'), false);
  cpu.mem.setUint16(uh + UH_DPORT, dport, false);
  cpu.mem.setUint16(uh + UH_ULEN, ulen, false);
  cpu.mem.setUint16(uh + UH_SUM, 0, false);
  let sum = in_cksum(cpu.mem, uh, ulen, in_pseudo(src, dst >>> 0, IPPROTO_UDP, ulen));
  if (sum === 0) sum = 0xffff;
  cpu.mem.setUint16(uh + UH_SUM, sum, false);
  netstat_inc(cpu, 'ng_udpstat', 'udps_opackets');
  return ip_output(cpu, m, dst, IPPROTO_UDP, { src });
}

function udp_send_check(cpu: GuestCpu, pcb: number, dst: number, dport: number, len: number): number {
  if (!inp_valid(cpu, pcb)) return EBADF;
  if (dst === 0 || dport === 0) return EDESTADDRREQ;
  if (!(Number.isInteger(dport) && dport > 0 && dport <= 0xffff)) return EINVAL;
  if (!(Number.isInteger(len) && len >= 0) || len > UDP_MAXDATA) return EMSGSIZE;
  return 0;
}

/**
 * Send `len` bytes at `va` (guest memory) from `pcb`'s port to
 * `dst`:`dport`. Returns 0 or an errno. The datagram may wait for ARP;
 * an unreachable neighbour shows up only as arpstat drops, as on NetBSD.
 */
export function udp_send(cpu: GuestCpu, pcb: number, dst: number, dport: number, va: number, len: number): number {
  const err = udp_send_check(cpu, pcb, dst, dport, len);
  if (err !== 0) return err;
  const m = m_get(cpu);
  if (m === 0) return ENOBUFS;
  m_append(cpu, m, va, len);
  return udp_output(cpu, pcb, m, dst, dport);
}

/** udp_send of bytes the kernel built itself (a heartbeat's text). */
export function udp_sendbytes(cpu: GuestCpu, pcb: number, dst: number, dport: number, data: Uint8Array): number {
  const err = udp_send_check(cpu, pcb, dst, dport, data.length);
  if (err !== 0) return err;
  const m = m_get(cpu);
  if (m === 0) return ENOBUFS;
  m_append_bytes(cpu, m, data);
  return udp_output(cpu, pcb, m, dst, dport);
}

export interface PcbInfo {
  readonly pcb: number;
  readonly laddr: number;
  readonly lport: number;
  readonly queued: number;
  readonly bytes: number;
  readonly drops: number;
}

/** What `netstat -a -p udp` shows (a JS array for this entry only). */
export function udp_pcblist(cpu: GuestCpu): PcbInfo[] {
  netglobals(cpu);
  const head = ng_addr('ng_udbtable');
  const out: PcbInfo[] = [];
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) {
    const v = inp_view(cpu, l - INP_LIST);
    out.push({
      pcb: l - INP_LIST, laddr: v.get('inp_laddr'), lport: v.get('inp_lport'), queued: v.get('inp_rcv_n'),
      bytes: v.get('inp_rcv_cc'), drops: v.get('inp_drops'),
    });
  }
  return out;
}

export const udp_usrreq_ksyms = ksymtab({
  inp_view, inp_valid, in_pcblookup, udp_anonport, udp_bind, udp_port, udp_close, udp_drop, udp_input, udp_rcvqlen, udp_recv,
  udp_recvfrom, sockaddr_in_get, udp_output, udp_send_check, udp_send, udp_sendbytes, udp_pcblist,
});
