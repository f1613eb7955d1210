/*
 * Network interfaces (<net/if.h>): the struct ifnet a driver embeds in its
 * softc, the global interface list, the send queue and the counters.
 *
 * A driver attaches with if_attach() + ether_ifattach() and gives a start
 * routine: `start(cpu, ifp)` is called (as a kernel symbol) whenever
 * packets wait on the send queue and the interface is running. It takes
 * packets off with if_dequeue() while it has room, and sets IFF_OACTIVE
 * when its ring is full (then clears it and calls if_start() again when
 * room comes back). An interface that is up but not running (xennet
 * suspended, or waiting for its backend) keeps queued packets, up to
 * if_snd_maxlen, and sends them once running again.
 *
 *   struct ifnet {
 *       struct tailq_entry if_list;    // ng_ifnet
 *       char     if_xname[16];         // "xennet0"
 *       uint32_t if_index;             // from 1
 *       uint32_t if_flags;             // IFF_*
 *       uint32_t if_mtu;
 *       uint32_t if_type;              // IFT_*
 *       uint8_t  if_lladdr[6];         // Ethernet address
 *       uint16_t if_pad;
 *       uint32_t if_addr;              // IPv4 address (host order), 0 = none
 *       uint32_t if_netmask;
 *       uint32_t if_broadaddr;         // subnet broadcast
 *       uint32_t if_pad2;
 *       void    *if_softc;
 *       void   (*if_start)(struct ifnet *);
 *       struct tailq_entry if_snd;     // send queue of mbufs
 *       uint32_t if_snd_len, if_snd_maxlen;
 *       uint64_t if_ipackets, if_ierrors, if_opackets, if_oerrors;
 *       uint64_t if_ibytes, if_obytes, if_iqdrops, if_oqdrops, if_noproto;
 *   };
 */
import { struct, record, array, u8, u16, u32, u64, char } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { tailq_entry, TAILQ_INIT, TAILQ_INSERT_TAIL, TAILQ_INSERT_HEAD, TAILQ_REMOVE, TAILQ_FIRST, TAILQ_NEXT } from '../sys/queue.js';
import { strlcpy, kstr_get, vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab, ksymresolve, kcall, type KSym } from '../kern/kern_ksyms.js';
import { netglobals, ng_addr } from './net_globals.js';
import { mbuf, mq_enqueue, mq_dequeue, mq_purge } from './mbuf.js';

export const IFNAMSIZ = 16;

export const ifnet = struct('struct ifnet', {
  if_list: record(tailq_entry),
  if_xname: array(char, IFNAMSIZ),
  if_index: u32,
  if_flags: u32,
  if_mtu: u32,
  if_type: u32,
  if_lladdr: array(u8, 6),
  if_pad: u16,
  if_addr: u32,
  if_netmask: u32,
  if_broadaddr: u32,
  if_pad2: u32,
  if_softc: u64,
  if_start: u64,
  if_snd: record(tailq_entry),
  if_snd_len: u32,
  if_snd_maxlen: u32,
  if_ipackets: u64,
  if_ierrors: u64,
  if_opackets: u64,
  if_oerrors: u64,
  if_ibytes: u64,
  if_obytes: u64,
  if_iqdrops: u64,
  if_oqdrops: u64,
  if_noproto: u64,
});

export type IfnetView = ReturnType<typeof ifnet.view>;
export type IfCounter =
  | 'if_ipackets' | 'if_ierrors' | 'if_opackets' | 'if_oerrors' | 'if_ibytes' | 'if_obytes' | 'if_iqdrops' | 'if_oqdrops' | 'if_noproto';

/* if_flags (NetBSD's values) */
export const IFF_UP = 0x0001;
export const IFF_BROADCAST = 0x0002;
export const IFF_RUNNING = 0x0040;
export const IFF_OACTIVE = 0x0400;
export const IFF_SIMPLEX = 0x0800;
export const IFF_MULTICAST = 0x8000;

/* if_type */
export const IFT_ETHER = 0x06;

/** Default send queue length (NetBSD's IFQ_MAXLEN). */
export const IFQ_MAXLEN = 256;

const IF_LIST = ifnet.offsetOf('if_list');
const IF_XNAME = ifnet.offsetOf('if_xname');
const IF_SND = ifnet.offsetOf('if_snd');

export function ifnet_view(cpu: GuestCpu, ifp: number): IfnetView {
  return ifnet.view(cpu.mem, ifp);
}

/**
 * Put an interface (zeroed memory, usually inside a softc) on the list.
 * `start` is the driver's output routine (a kernel symbol).
 */
export function if_attach(cpu: GuestCpu, ifp: number, xname: string, softc: number, start: KSym): void {
  const g = netglobals(cpu);
  const v = ifnet_view(cpu, ifp);
  strlcpy(cpu.mem, ifp + IF_XNAME, xname, IFNAMSIZ);
  const index = g.get('ng_if_index') + 1;
  g.set('ng_if_index', index);
  v.set('if_index', index);
  vptr_set(v, 'if_softc', softc);
  vptr_set(v, 'if_start', ksymresolve(cpu, start));
  TAILQ_INIT(cpu.mem, ifp + IF_SND);
  v.set('if_snd_len', 0);
  v.set('if_snd_maxlen', IFQ_MAXLEN);
  TAILQ_INSERT_TAIL(cpu.mem, ng_addr('ng_ifnet'), ifp + IF_LIST);
  g.set('ng_nifs', g.get('ng_nifs') + 1);
}

/** Take an interface off the list and drop what it had queued. */
export function if_detach(cpu: GuestCpu, ifp: number): void {
  const g = netglobals(cpu);
  if_purge(cpu, ifp);
  TAILQ_REMOVE(cpu.mem, ifp + IF_LIST);
  g.set('ng_nifs', g.get('ng_nifs') - 1);
}

export function if_xname(cpu: GuestCpu, ifp: number): string {
  return kstr_get(cpu.mem, ifp + IF_XNAME, IFNAMSIZ);
}

/** Guest address of the interface name (for printf %s). */
export function if_xname_addr(ifp: number): number {
  return ifp + IF_XNAME;
}

export function if_softc(cpu: GuestCpu, ifp: number): number {
  return vptr(ifnet_view(cpu, ifp), 'if_softc');
}

export function if_flags(cpu: GuestCpu, ifp: number): number {
  return ifnet_view(cpu, ifp).get('if_flags');
}

export function if_setflags(cpu: GuestCpu, ifp: number, set: number, clear = 0): void {
  const v = ifnet_view(cpu, ifp);
  v.set('if_flags', ((v.get('if_flags') | set) & ~clear) >>> 0);
}

/** Every interface, in attach order (a JS array for this entry only). */
export function ifnet_list(cpu: GuestCpu): number[] {
  netglobals(cpu);
  const head = ng_addr('ng_ifnet');
  const out: number[] = [];
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) out.push(l - IF_LIST);
  return out;
}

/** The interface called `name`, or 0 (NetBSD's ifunit). */
export function ifunit(cpu: GuestCpu, name: string): number {
  for (const ifp of ifnet_list(cpu)) if (if_xname(cpu, ifp) === name) return ifp;
  return 0;
}

export function if_stat_add(cpu: GuestCpu, ifp: number, counter: IfCounter, n = 1): void {
  const v = ifnet_view(cpu, ifp);
  vu64_set(v, counter, vu64(v, counter) + n);
}

export function if_stat_get(cpu: GuestCpu, ifp: number, counter: IfCounter): number {
  return vu64(ifnet_view(cpu, ifp), counter);
}

/**
 * Queue a packet for output; false (and the packet freed, counted in
 * if_oqdrops) when the send queue is full.
 */
export function if_enqueue(cpu: GuestCpu, ifp: number, m: number): boolean {
  const v = ifnet_view(cpu, ifp);
  const n = v.get('if_snd_len');
  if (n >= v.get('if_snd_maxlen')) {
    if_stat_add(cpu, ifp, 'if_oqdrops');
    return false;
  }
  mq_enqueue(cpu, ifp + IF_SND, m);
  v.set('if_snd_len', n + 1);
  return true;
}

/** The next packet to send, or 0 (the driver's start routine calls this). */
export function if_dequeue(cpu: GuestCpu, ifp: number): number {
  const m = mq_dequeue(cpu, ifp + IF_SND);
  if (m !== 0) {
    const v = ifnet_view(cpu, ifp);
    v.set('if_snd_len', v.get('if_snd_len') - 1);
  }
  return m;
}

/** Put a packet back at the head of the send queue (the ring had no room after all). */
export function if_prepend(cpu: GuestCpu, ifp: number, m: number): void {
  TAILQ_INSERT_HEAD(cpu.mem, ifp + IF_SND, m + mbuf.offsetOf('m_list'));
  const v = ifnet_view(cpu, ifp);
  v.set('if_snd_len', v.get('if_snd_len') + 1);
}

/** Packets waiting on the send queue. */
export function if_snd_len(cpu: GuestCpu, ifp: number): number {
  return ifnet_view(cpu, ifp).get('if_snd_len');
}

/** Drop everything queued for output; returns how many. */
export function if_purge(cpu: GuestCpu, ifp: number): number {
  const n = mq_purge(cpu, ifp + IF_SND);
  ifnet_view(cpu, ifp).set('if_snd_len', 0);
  return n;
}

/** Kick the driver if it is running and not already busy. */
export function if_start(cpu: GuestCpu, ifp: number): void {
  const v = ifnet_view(cpu, ifp);
  const f = v.get('if_flags');
  if ((f & (IFF_RUNNING | IFF_OACTIVE)) !== IFF_RUNNING) return;
  if (v.get('if_snd_len') === 0) return;
  const start = vptr(v, 'if_start');
  if (start !== 0) kcall(cpu, start, ifp);
}

export const if_ksyms = ksymtab({
  ifnet_view, if_attach, if_detach, if_xname, if_xname_addr, if_softc, if_flags, if_setflags, ifnet_list, ifunit,
  if_stat_add, if_stat_get, if_enqueue, if_dequeue, if_prepend, if_snd_len, if_purge, if_start,
});
