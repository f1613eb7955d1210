/*
 * ICMP (netinet/ip_icmp.c): answer echo requests, report unreachable
 * ports, and a guest-side ping.
 *
 *   struct icmp {               // the part used here
 *       uint8_t  icmp_type;
 *       uint8_t  icmp_code;
 *       uint16_t icmp_cksum;    // over the whole ICMP message
 *       uint16_t icmp_id;       // echo: identifier; errors: unused (0)
 *       uint16_t icmp_seq;      // echo: sequence number
 *       // echo: data; errors: the offending IP header + 8 bytes
 *   };
 *
 * The ping: icmp_ping() sends one echo request and remembers (in
 * ng_ping, guest memory) whom and which sequence number; a matching reply
 * updates the counters and wakes whoever sleeps on icmp_ping_wchan() (a
 * thread calls icmp_ping_wait() to sleep with a timeout).
 */
import createDebug from 'debug';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab, type KSym } from '../kern/kern_ksyms.js';
import { getticks } from '../kern/kern_clock.js';
import { tsleep, wakeup } from '../kern/kern_synch.js';
import { vu64, vu64_set } from '../lib/libkern/libkern.js';
import { netglobals, netstat_inc, ng_addr } from '../net/net_globals.js';
import { mbuf_view, m_get, m_free, m_len, m_adj, mtod, m_setlen, m_append, M_BCAST, M_MCAST } from '../net/mbuf.js';
import { ENOBUFS, EMSGSIZE } from '../net/net_errno.js';
import { IP_VHL, IP_P, IP_SRC, IP_DST, IP_HDRLEN } from './ip.js';
import { in_cksum, IPPROTO_ICMP } from './in.js';
import { ip_output } from './ip_output.js';

/** Host-side trace (DEBUG=guest:net). */
const dbg = createDebug('guest:net');

export const ICMP_TYPE = 0;
export const ICMP_CODE = 1;
export const ICMP_CKSUM = 2;
export const ICMP_ID = 4;
export const ICMP_SEQ = 6;
/** Header of an echo or an error message. */
export const ICMP_MINLEN = 8;

export const ICMP_ECHOREPLY = 0;
export const ICMP_UNREACH = 3;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_ECHO = 8;

/** Quote the offending header plus this many bytes of its payload (RFC 792). */
const ICMP_QUOTELEN = 8;
/** Longest echo payload icmp_ping sends. */
export const ICMP_PING_MAXDATA = 1472 - ICMP_MINLEN;

function icmp_drop(cpu: GuestCpu, m: number, stat: string): void {
  netstat_inc(cpu, 'ng_icmpstat', stat);
  m_free(cpu, m);
}

/** Fill in the checksum of the ICMP message of `len` bytes at `va`. */
function icmp_setsum(cpu: GuestCpu, va: number, len: number): void {
  cpu.mem.setUint16(va + ICMP_CKSUM, 0, false);
  cpu.mem.setUint16(va + ICMP_CKSUM, in_cksum(cpu.mem, va, len), false);
}

/** An ICMP message (m_data at the IP header, `hlen` bytes of it). Consumes the mbuf. */
export function icmp_input(cpu: GuestCpu, _ifp: number, m: number, hlen: number): void {
  const mem = cpu.mem;
  const ip = mtod(cpu, m);
  const icmplen = m_len(cpu, m) - hlen;
  if (icmplen < ICMP_MINLEN) return icmp_drop(cpu, m, 'icps_tooshort');
  const icp = ip + hlen;
  if (in_cksum(mem, icp, icmplen) !== 0) return icmp_drop(cpu, m, 'icps_checksum');
  const src = mem.getUint32(ip + IP_SRC, false);
  const dst = mem.getUint32(ip + IP_DST, false);
  const type = mem.getUint8(icp + ICMP_TYPE);
  switch (type) {
    case ICMP_ECHO: {
      netstat_inc(cpu, 'ng_icmpstat', 'icps_in_echo');
      if ((mbuf_view(cpu, m).get('m_flags') & (M_BCAST | M_MCAST)) !== 0) return icmp_drop(cpu, m, 'icps_bmcastecho');
      // Reflect in place: same id, seq and data, type echo reply.
      mem.setUint8(icp + ICMP_TYPE, ICMP_ECHOREPLY);
      mem.setUint8(icp + ICMP_CODE, 0);
      icmp_setsum(cpu, icp, icmplen);
      m_adj(cpu, m, hlen);
      netstat_inc(cpu, 'ng_icmpstat', 'icps_reflect');
      netstat_inc(cpu, 'ng_icmpstat', 'icps_out_echoreply');
      ip_output(cpu, m, src, IPPROTO_ICMP, { src: dst });
      return;
    }
    case ICMP_ECHOREPLY:
      netstat_inc(cpu, 'ng_icmpstat', 'icps_in_echoreply');
      icmp_ping_reply(cpu, src, mem.getUint16(icp + ICMP_ID, false), mem.getUint16(icp + ICMP_SEQ, false));
      m_free(cpu, m);
      return;
    case ICMP_UNREACH:
      return icmp_drop(cpu, m, 'icps_in_unreach');
    default:
      return icmp_drop(cpu, m, 'icps_in_other');
  }
}

/**
 * Report `m` (m_data at its IP header, as received) to its sender with an
 * ICMP error. Never about an ICMP error or a broadcast. Consumes the mbuf.
 */
export function icmp_error(cpu: GuestCpu, m: number, type: number, code: number): void {
  const mem = cpu.mem;
  netstat_inc(cpu, 'ng_icmpstat', 'icps_error');
  const oip = mtod(cpu, m);
  const olen = m_len(cpu, m);
  if ((mbuf_view(cpu, m).get('m_flags') & (M_BCAST | M_MCAST)) !== 0) return icmp_drop(cpu, m, 'icps_bmcast');
  const ohlen = (mem.getUint8(oip + IP_VHL) & 0x0f) << 2;
  if (olen < ohlen + ICMP_MINLEN || ohlen < IP_HDRLEN) return icmp_drop(cpu, m, 'icps_oldshort');
  if (mem.getUint8(oip + IP_P) === IPPROTO_ICMP) {
    const otype = mem.getUint8(oip + ohlen + ICMP_TYPE);
    if (otype !== ICMP_ECHO && otype !== ICMP_ECHOREPLY) return icmp_drop(cpu, m, 'icps_oldicmp');
  }
  const n = m_get(cpu);
  if (n === 0) {
    m_free(cpu, m);
    return;
  }
  const quote = Math.min(olen, ohlen + ICMP_QUOTELEN);
  m_setlen(cpu, n, ICMP_MINLEN);
  const icp = mtod(cpu, n);
  mem.fill(icp, ICMP_MINLEN, 0);
  mem.setUint8(icp + ICMP_TYPE, type);
  mem.setUint8(icp + ICMP_CODE, code);
  m_append(cpu, n, oip, quote);
  icmp_setsum(cpu, icp, ICMP_MINLEN + quote);
  const to = mem.getUint32(oip + IP_SRC, false);
  const from = mem.getUint32(oip + IP_DST, false);
  m_free(cpu, m);
  if (type === ICMP_UNREACH) netstat_inc(cpu, 'ng_icmpstat', 'icps_out_unreach');
  ip_output(cpu, n, to, IPPROTO_ICMP, { src: from });
}

// ---------------------------------------------------------------------------
// The guest's ping

/** The address ping waiters sleep on. */
export function icmp_ping_wchan(): number {
  return ng_addr('ng_ping');
}

/**
 * Send echo request `seq` with identifier `ident` and `datalen` bytes of
 * pattern to `dst`. 0 or an errno.
 */
export function icmp_ping(cpu: GuestCpu, dst: number, ident: number, seq: number, datalen = 56): number {
  if (!(datalen >= 0 && datalen <= ICMP_PING_MAXDATA)) return EMSGSIZE;
  const m = m_get(cpu);
  if (m === 0) return ENOBUFS;
  const len = ICMP_MINLEN + datalen;
  m_setlen(cpu, m, len);
  const icp = mtod(cpu, m);
  const mem = cpu.mem;
  mem.setUint8(icp + ICMP_TYPE, ICMP_ECHO);
  mem.setUint8(icp + ICMP_CODE, 0);
  mem.setUint16(icp + ICMP_ID, ident & 0xffff, false);
  mem.setUint16(icp + ICMP_SEQ, seq & 0xffff, false);
  for (let i = 0; i < datalen; i++) mem.setUint8(icp + ICMP_MINLEN + i, i & 0xff);
  icmp_setsum(cpu, icp, len);
  const ps = netglobals(cpu).sub('ng_ping');
  ps.set('ps_ident', ident & 0xffff);
  ps.set('ps_seq', seq & 0xffff);
  ps.set('ps_dst', dst >>> 0);
  ps.set('ps_nsent', ps.get('ps_nsent') + 1);
  vu64_set(ps, 'ps_sent_tick', getticks(cpu));
  netstat_inc(cpu, 'ng_icmpstat', 'icps_out_echo');
  return ip_output(cpu, m, dst, IPPROTO_ICMP);
}

/** An echo reply came in: is it an answer to our ping? */
function icmp_ping_reply(cpu: GuestCpu, src: number, ident: number, seq: number): void {
  const ps = netglobals(cpu).sub('ng_ping');
  if (ps.get('ps_nsent') === 0 || ident !== ps.get('ps_ident') || src !== ps.get('ps_dst')) {
    netstat_inc(cpu, 'ng_icmpstat', 'icps_ping_stale');
    return;
  }
  ps.set('ps_nreplies', ps.get('ps_nreplies') + 1);
  ps.set('ps_lastseq', seq);
  if (seq === ps.get('ps_seq')) ps.set('ps_rtt', getticks(cpu) - vu64(ps, 'ps_sent_tick'));
  if (dbg.enabled) dbg('ping: reply seq %d', seq);
  wakeup(cpu, icmp_ping_wchan());
}

/**
 * From a thread: sleep until an echo reply to our ping arrives, or `timo`
 * ticks; continues at `cont(cpu, arg, error)` (0 or EWOULDBLOCK). The
 * step must return right after.
 */
export function icmp_ping_wait(cpu: GuestCpu, timo: number, cont: KSym): void {
  tsleep(cpu, icmp_ping_wchan(), timo, cont, 'ping');
}

export interface PingStats {
  readonly nsent: number;
  readonly nreplies: number;
  readonly lastseq: number;
  readonly rtt: number;
}

export function icmp_ping_stats(cpu: GuestCpu): PingStats {
  const ps = netglobals(cpu).sub('ng_ping');
  return { nsent: ps.get('ps_nsent'), nreplies: ps.get('ps_nreplies'), lastseq: ps.get('ps_lastseq'), rtt: ps.get('ps_rtt') };
}

export const ip_icmp_ksyms = ksymtab({
  icmp_drop, icmp_setsum, icmp_input, icmp_error, icmp_ping_wchan, icmp_ping, icmp_ping_reply, icmp_ping_wait, icmp_ping_stats,
});
