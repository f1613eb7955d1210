/*
 * Packet buffers: the shape of NetBSD's mbuf(9), cut down to what a stack
 * without fragmentation needs. An mbuf is one kmem block: a header, then
 * storage for one whole frame (MLEN bytes). `m_data` points at the first
 * byte of the packet inside the storage; layers strip headers by moving it
 * forward (m_adj) and add them by moving it back into the headroom
 * (m_prepend), so a packet is built and parsed without copying. No chains:
 * every frame of an MTU-1500 Ethernet fits in one mbuf.
 *
 * Queues of mbufs (an interface's send queue, a PCB's receive queue, the
 * packets an ARP entry holds) are TAILQs through `m_list`.
 *
 *   struct mbuf {
 *       struct tailq_entry m_list;  // on a queue, or zeroed
 *       uint8_t *m_data;            // first byte of the packet
 *       struct ifnet *m_rcvif;      // interface it came in on (input)
 *       uint32_t m_len;             // bytes at m_data
 *       uint32_t m_size;            // bytes of storage (MLEN)
 *       uint32_t m_flags;           // M_*
 *       uint32_t m_magic;           // MBUF_MAGIC while allocated
 *       uint32_t m_src, m_dst;      // IPv4 addresses (host order), for receive queues
 *       uint16_t m_sport, m_dport;  // UDP ports, for receive queues
 *       uint32_t m_pad;
 *       uint8_t  m_dat[MLEN];       // storage
 *   };
 *
 * The number of mbufs in use is capped (ng_mbuf_limit): a peer flooding us
 * gets its packets dropped and counted, and the rest of kmem stays usable.
 */
import { struct, record, u16, u32, u64 } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { tailq_entry, TAILQ_INSERT_TAIL, TAILQ_FIRST, TAILQ_REMOVE, TAILQ_ONLIST, TAILQ_COUNT } from '../sys/queue.js';
import { KMEM_MAXCLASSED } from '../sys/kmem.js';
import { ptr_get, ptr_set } from '../lib/libkern/libkern.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kmem_alloc, kmem_free } from '../kern/subr_kmem.js';
import { panic } from '../kern/subr_prf.js';
import { netglobals, netstat_inc, ng_addr } from './net_globals.js';

export const mbuf = struct('struct mbuf', {
  m_list: record(tailq_entry),
  m_data: u64,
  m_rcvif: u64,
  m_len: u32,
  m_size: u32,
  m_flags: u32,
  m_magic: u32,
  m_src: u32,
  m_dst: u32,
  m_sport: u16,
  m_dport: u16,
  m_pad: u32,
});

/** Header bytes before the storage. */
export const MHDRSIZE = mbuf.size;
/** One kmem block of the 2 KiB class: a cluster, header included. */
export const MBUF_ALLOCSIZE = Math.min(2048 - 16, KMEM_MAXCLASSED);
/** Storage bytes of an mbuf. */
export const MLEN = MBUF_ALLOCSIZE - MHDRSIZE;
/**
 * Headroom m_get leaves in front of the data: room for the Ethernet, IP
 * and transport headers a reply prepends (max_linkhdr + max_protohdr).
 */
export const MAX_HDR = 128;

/* m_flags */
/** Link-level broadcast (input: sent to ff:ff:ff:ff:ff:ff; output: send it so). */
export const M_BCAST = 0x0100;
/** Link-level multicast. */
export const M_MCAST = 0x0200;
/** Sent by this host to itself. */
export const M_LOOP = 0x0400;

export const MBUF_MAGIC = 0x6d627566; // 'mbuf'

const M_DATA = mbuf.offsetOf('m_data');
const M_LEN = mbuf.offsetOf('m_len');
const M_SIZE = mbuf.offsetOf('m_size');
const M_MAGIC = mbuf.offsetOf('m_magic');
const M_LIST = mbuf.offsetOf('m_list');

export type MbufView = ReturnType<typeof mbuf.view>;

export function mbuf_view(cpu: GuestCpu, m: number): MbufView {
  return mbuf.view(cpu.mem, m);
}

function m_check(cpu: GuestCpu, m: number, who: string): void {
  if (m === 0 || cpu.mem.getUint32(m + M_MAGIC, true) !== MBUF_MAGIC) panic(cpu, '%s: %p is not an mbuf', who, m);
}

/**
 * A fresh, empty mbuf with MAX_HDR bytes of headroom, or 0 when memory
 * (or the mbuf limit) is exhausted; the caller drops its packet.
 */
export function m_get(cpu: GuestCpu): number {
  const g = netglobals(cpu);
  const st = g.sub('ng_mbstat');
  if (st.get('m_inuse') >= g.get('ng_mbuf_limit')) {
    netstat_inc(cpu, 'ng_mbstat', 'm_drops');
    return 0;
  }
  const m = kmem_alloc(cpu, MBUF_ALLOCSIZE);
  if (m === 0) {
    netstat_inc(cpu, 'ng_mbstat', 'm_drops');
    return 0;
  }
  cpu.mem.fill(m, MHDRSIZE, 0);
  const v = mbuf_view(cpu, m);
  ptr_set(cpu.mem, m + M_DATA, m + MHDRSIZE + MAX_HDR);
  v.set('m_size', MLEN);
  v.set('m_magic', MBUF_MAGIC);
  const inuse = st.get('m_inuse') + 1;
  st.set('m_inuse', inuse);
  if (inuse > st.get('m_peak')) st.set('m_peak', inuse);
  st.set('m_nalloc', (st.get('m_nalloc') + 1) >>> 0);
  return m;
}

/** Free an mbuf (it must be on no queue). */
export function m_free(cpu: GuestCpu, m: number): void {
  m_check(cpu, m, 'm_free');
  if (TAILQ_ONLIST(cpu.mem, m + M_LIST)) panic(cpu, 'm_free: mbuf %p still on a queue', m);
  cpu.mem.setUint32(m + M_MAGIC, 0, true);
  kmem_free(cpu, m, MBUF_ALLOCSIZE);
  const st = netglobals(cpu).sub('ng_mbstat');
  st.set('m_inuse', st.get('m_inuse') - 1);
  st.set('m_nfree', (st.get('m_nfree') + 1) >>> 0);
}

/** First byte of the packet (NetBSD's mtod). */
export function mtod(cpu: GuestCpu, m: number): number {
  return ptr_get(cpu.mem, m + M_DATA);
}

export function m_len(cpu: GuestCpu, m: number): number {
  return cpu.mem.getUint32(m + M_LEN, true);
}

function m_storage(m: number): number {
  return m + MHDRSIZE;
}

/** Bytes free in front of the data. */
export function M_LEADINGSPACE(cpu: GuestCpu, m: number): number {
  return mtod(cpu, m) - m_storage(m);
}

/** Bytes free after the data. */
export function M_TRAILINGSPACE(cpu: GuestCpu, m: number): number {
  return m_storage(m) + cpu.mem.getUint32(m + M_SIZE, true) - (mtod(cpu, m) + m_len(cpu, m));
}

/** Grow the packet at the front by `n` bytes (a header); false if no headroom. */
export function m_prepend(cpu: GuestCpu, m: number, n: number): boolean {
  if (n < 0 || M_LEADINGSPACE(cpu, m) < n) return false;
  ptr_set(cpu.mem, m + M_DATA, mtod(cpu, m) - n);
  cpu.mem.setUint32(m + M_LEN, m_len(cpu, m) + n, true);
  return true;
}

/** Trim `n` bytes from the front (n > 0) or -n from the back (n < 0), at most all of them. */
export function m_adj(cpu: GuestCpu, m: number, n: number): void {
  const len = m_len(cpu, m);
  if (n >= 0) {
    const k = Math.min(n, len);
    ptr_set(cpu.mem, m + M_DATA, mtod(cpu, m) + k);
    cpu.mem.setUint32(m + M_LEN, len - k, true);
  } else {
    cpu.mem.setUint32(m + M_LEN, len - Math.min(-n, len), true);
  }
}

/** Set the packet length (shrinking, or growing into trailing space); false if it does not fit. */
export function m_setlen(cpu: GuestCpu, m: number, len: number): boolean {
  if (len < 0 || len > m_len(cpu, m) + M_TRAILINGSPACE(cpu, m)) return false;
  cpu.mem.setUint32(m + M_LEN, len, true);
  return true;
}

/** Append `len` bytes from guest memory at `src`; false if they do not fit. */
export function m_append(cpu: GuestCpu, m: number, src: number, len: number): boolean {
  if (len < 0 || M_TRAILINGSPACE(cpu, m) < len) return false;
  const end = mtod(cpu, m) + m_len(cpu, m);
  if (len > 0) cpu.mem.copyWithin(end, src, len);
  cpu.mem.setUint32(m + M_LEN, m_len(cpu, m) + len, true);
  return true;
}

/** Append bytes given by the kernel itself (headers built in JS for this entry). */
export function m_append_bytes(cpu: GuestCpu, m: number, bytes: Uint8Array): boolean {
  if (M_TRAILINGSPACE(cpu, m) < bytes.length) return false;
  cpu.mem.writeBytes(mtod(cpu, m) + m_len(cpu, m), bytes);
  cpu.mem.setUint32(m + M_LEN, m_len(cpu, m) + bytes.length, true);
  return true;
}

/**
 * A driver's received frame (`len` bytes at `src`) copied into a fresh
 * mbuf, with enough headroom left for a reply built in place (NetBSD's
 * m_devget). 0 when out of mbufs or when the frame cannot fit.
 */
export function m_devget(cpu: GuestCpu, src: number, len: number, ifp: number): number {
  if (len < 0 || len > MLEN - MAX_HDR) return 0;
  const m = m_get(cpu);
  if (m === 0) return 0;
  m_append(cpu, m, src, len);
  ptr_set(cpu.mem, m + mbuf.offsetOf('m_rcvif'), ifp);
  return m;
}

/** Copy `len` bytes of the packet from offset `off` out to `dst` (m_copydata). */
export function m_copydata(cpu: GuestCpu, m: number, off: number, len: number, dst: number): void {
  if (off < 0 || len < 0 || off + len > m_len(cpu, m)) panic(cpu, 'm_copydata: %d+%d beyond %d bytes', off, len, m_len(cpu, m));
  if (len > 0) cpu.mem.copyWithin(dst, mtod(cpu, m) + off, len);
}

/** The whole packet as bytes (diagnostics, tests). */
export function m_bytes(cpu: GuestCpu, m: number): Uint8Array {
  return cpu.mem.readBytes(mtod(cpu, m), m_len(cpu, m));
}

// ---------------------------------------------------------------------------
// Queues of mbufs: `head` is a struct tailq_entry.

export function mq_enqueue(cpu: GuestCpu, head: number, m: number): void {
  TAILQ_INSERT_TAIL(cpu.mem, head, m + M_LIST);
}

/** Take the first mbuf off the queue; 0 when empty. */
export function mq_dequeue(cpu: GuestCpu, head: number): number {
  const link = TAILQ_FIRST(cpu.mem, head);
  if (link === 0) return 0;
  TAILQ_REMOVE(cpu.mem, link);
  return link - M_LIST;
}

/** The first mbuf without taking it; 0 when empty. */
export function mq_first(cpu: GuestCpu, head: number): number {
  const link = TAILQ_FIRST(cpu.mem, head);
  return link === 0 ? 0 : link - M_LIST;
}

export function mq_len(cpu: GuestCpu, head: number): number {
  return TAILQ_COUNT(cpu.mem, head);
}

/** Free every mbuf on the queue; returns how many. */
export function mq_purge(cpu: GuestCpu, head: number): number {
  let n = 0;
  for (let m = mq_dequeue(cpu, head); m !== 0; m = mq_dequeue(cpu, head)) {
    m_free(cpu, m);
    n++;
  }
  return n;
}

/** mbufs currently allocated. */
export function mbuf_inuse(cpu: GuestCpu): number {
  netglobals(cpu);
  return cpu.mem.getUint32(ng_addr('ng_mbstat.m_inuse'), true);
}

export const mbuf_ksyms = ksymtab({
  mbuf_view, m_check, m_get, m_free, mtod, m_len, m_storage, M_LEADINGSPACE, M_TRAILINGSPACE, m_prepend, m_adj, m_setlen,
  m_append, m_append_bytes, m_devget, m_copydata, m_bytes, mq_enqueue, mq_dequeue, mq_first, mq_len, mq_purge, mbuf_inuse,
});
