/*
 * ARP for IPv4 over Ethernet (RFC 826; netinet/if_arp.c).
 *
 * The table is a list of struct llinfo_arp in kmem, each with its own
 * callout:
 *
 *  - INCOMPLETE: a packet wanted the address. A request went out, the
 *    packets wait on `la_hold`, and every ng_arpt_retrans ticks the timer
 *    asks again; after ng_arp_maxtries requests the entry is deleted and
 *    its packets dropped (the host is unreachable).
 *  - RESOLVED: the hardware address is known until `la_expire`
 *    (ng_arpt_keep ticks after it was last confirmed), when the timer
 *    deletes the entry.
 *
 * Input follows RFC 826's merge rule: an entry for the sender is updated
 * if there is one, and created only when the packet is addressed to us.
 * Requests for our address get a reply. A gratuitous ARP (sender address =
 * target address) therefore refreshes the sender's entry everywhere; we
 * send one with arp_ifinit() when an address comes up and after a restore
 * or migration, so the bridge and dom0 learn where the guest now is.
 *
 *   struct ether_arp {                // after the Ethernet header
 *       uint16_t ar_hrd;              // ARPHRD_ETHER
 *       uint16_t ar_pro;              // ETHERTYPE_IP
 *       uint8_t  ar_hln, ar_pln;      // 6, 4
 *       uint16_t ar_op;               // ARPOP_REQUEST / ARPOP_REPLY
 *       uint8_t  arp_sha[6], arp_spa[4], arp_tha[6], arp_tpa[4];
 *   };
 *
 *   struct llinfo_arp {
 *       struct tailq_entry la_list;   // ng_arptab
 *       struct tailq_entry la_hold;   // mbufs waiting for the address
 *       struct ifnet *la_ifp;
 *       uint64_t la_expire;           // tick a RESOLVED entry ages out
 *       uint32_t la_addr;             // IPv4 (host order)
 *       uint32_t la_state;            // LLE_*
 *       uint32_t la_asked;            // requests sent while INCOMPLETE
 *       uint32_t la_nhold;
 *       uint8_t  la_lladdr[6];
 *       uint16_t la_pad;
 *       uint32_t la_pad2;
 *       struct callout la_timer;
 *   };
 */
import createDebug from 'debug';
import { struct, record, array, u8, u16, u32, u64 } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { tailq_entry, TAILQ_INIT, TAILQ_INSERT_TAIL, TAILQ_REMOVE, TAILQ_FIRST, TAILQ_NEXT } from '../sys/queue.js';
import { callout } from '../sys/callout.js';
import { vptr, vptr_set, vu64, vu64_set } from '../lib/libkern/libkern.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { kmem_zalloc, kmem_free } from '../kern/subr_kmem.js';
import { callout_init, callout_reset, callout_stop, callout_destroy } from '../kern/kern_timeout.js';
import { getticks } from '../kern/kern_clock.js';
import { printf } from '../kern/subr_prf.js';
import { netglobals, netstat_inc, ng_addr } from '../net/net_globals.js';
import { m_get, m_free, m_len, mtod, m_setlen, mq_enqueue, mq_dequeue, mq_purge } from '../net/mbuf.js';
import { ifnet_view, if_xname_addr } from '../net/if.js';
import { ether_send, if_lladdr } from '../net/if_ethersubr.js';
import {
  ETHERTYPE_ARP, ETHERTYPE_IP, ETHER_ADDR_LEN, etherbroadcastaddr, ether_zeroaddr, ether_addr_get, ether_addr_set,
  ether_addr_eq, ether_sprintf, type EtherAddr,
} from '../net/if_ether.js';
import { ENOBUFS } from '../net/net_errno.js';
import { inet_ntoa } from './in.js';

/** Host-side trace (DEBUG=guest:net). */
const dbg = createDebug('guest:net');

export const ARPHRD_ETHER = 1;
export const ARPOP_REQUEST = 1;
export const ARPOP_REPLY = 2;

export const AR_HRD = 0;
export const AR_PRO = 2;
export const AR_HLN = 4;
export const AR_PLN = 5;
export const AR_OP = 6;
export const ARP_SHA = 8;
export const ARP_SPA = 14;
export const ARP_THA = 18;
export const ARP_TPA = 24;
/** sizeof(struct ether_arp) */
export const ETHER_ARP_LEN = 28;

export const llinfo_arp = struct('struct llinfo_arp', {
  la_list: record(tailq_entry),
  la_hold: record(tailq_entry),
  la_ifp: u64,
  la_expire: u64,
  la_addr: u32,
  la_state: u32,
  la_asked: u32,
  la_nhold: u32,
  la_lladdr: array(u8, 6),
  la_pad: u16,
  la_pad2: u32,
  la_timer: record(callout),
});

export const LLE_INCOMPLETE = 1;
export const LLE_RESOLVED = 2;

/** Entries in the table at most; the oldest goes when a new one is needed. */
export const ARP_MAXENTRIES = 64;
/** Packets held per unresolved address (NetBSD holds one; a few is kinder to bursts). */
export const ARP_MAXHOLD = 16;

const LA_LIST = llinfo_arp.offsetOf('la_list');
const LA_HOLD = llinfo_arp.offsetOf('la_hold');
const LA_TIMER = llinfo_arp.offsetOf('la_timer');

function la_view(cpu: GuestCpu, la: number) {
  return llinfo_arp.view(cpu.mem, la);
}

/** The entry for `addr`, or 0. */
export function arp_lookup(cpu: GuestCpu, addr: number): number {
  netglobals(cpu);
  const head = ng_addr('ng_arptab');
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) {
    if (la_view(cpu, l - LA_LIST).get('la_addr') === addr) return l - LA_LIST;
  }
  return 0;
}

/** Delete an entry: stop its timer, drop what it held. */
export function arp_free(cpu: GuestCpu, la: number): void {
  const v = la_view(cpu, la);
  callout_stop(cpu, la + LA_TIMER);
  callout_destroy(cpu, la + LA_TIMER);
  const dropped = mq_purge(cpu, la + LA_HOLD);
  if (dropped > 0) netstat_inc(cpu, 'ng_arpstat', 'arps_dfrdropped', dropped);
  v.set('la_nhold', 0);
  TAILQ_REMOVE(cpu.mem, la + LA_LIST);
  const g = netglobals(cpu);
  g.set('ng_narp', g.get('ng_narp') - 1);
  kmem_free(cpu, la, llinfo_arp.size);
}

/** A new INCOMPLETE entry for `addr` (evicting the oldest when the table is full), or 0. */
function arp_alloc(cpu: GuestCpu, ifp: number, addr: number): number {
  const g = netglobals(cpu);
  if (g.get('ng_narp') >= ARP_MAXENTRIES) {
    const oldest = TAILQ_FIRST(cpu.mem, ng_addr('ng_arptab'));
    if (oldest !== 0) {
      netstat_inc(cpu, 'ng_arpstat', 'arps_tablefull');
      arp_free(cpu, oldest - LA_LIST);
    }
  }
  const la = kmem_zalloc(cpu, llinfo_arp.size);
  if (la === 0) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_allocfail');
    return 0;
  }
  const v = la_view(cpu, la);
  TAILQ_INIT(cpu.mem, la + LA_HOLD);
  vptr_set(v, 'la_ifp', ifp);
  v.set('la_addr', addr >>> 0);
  v.set('la_state', LLE_INCOMPLETE);
  callout_init(cpu, la + LA_TIMER);
  TAILQ_INSERT_TAIL(cpu.mem, ng_addr('ng_arptab'), la + LA_LIST);
  g.set('ng_narp', g.get('ng_narp') + 1);
  return la;
}

/** Build and send one ARP packet. 0 or an errno. */
function arp_send(cpu: GuestCpu, ifp: number, op: number, sip: number, tip: number, tha: EtherAddr, linkDst: EtherAddr): number {
  const m = m_get(cpu);
  if (m === 0) return ENOBUFS;
  m_setlen(cpu, m, ETHER_ARP_LEN);
  const a = mtod(cpu, m);
  const mem = cpu.mem;
  mem.setUint16(a + AR_HRD, ARPHRD_ETHER, false);
  mem.setUint16(a + AR_PRO, ETHERTYPE_IP, false);
  mem.setUint8(a + AR_HLN, ETHER_ADDR_LEN);
  mem.setUint8(a + AR_PLN, 4);
  mem.setUint16(a + AR_OP, op, false);
  ether_addr_set(mem, a + ARP_SHA, if_lladdr(cpu, ifp));
  mem.setUint32(a + ARP_SPA, sip >>> 0, false);
  ether_addr_set(mem, a + ARP_THA, tha);
  mem.setUint32(a + ARP_TPA, tip >>> 0, false);
  netstat_inc(cpu, 'ng_arpstat', 'arps_sndtotal');
  return ether_send(cpu, ifp, m, linkDst, ETHERTYPE_ARP);
}

/** Broadcast a request: who has `tip`? Tell `sip`. */
export function arprequest(cpu: GuestCpu, ifp: number, sip: number, tip: number): number {
  netstat_inc(cpu, 'ng_arpstat', 'arps_sndrequest');
  if (dbg.enabled) dbg('arprequest: who-has %s tell %s', inet_ntoa(tip), inet_ntoa(sip));
  return arp_send(cpu, ifp, ARPOP_REQUEST, sip, tip, ether_zeroaddr, etherbroadcastaddr);
}

/**
 * Announce our address (a gratuitous ARP: a request from and for our own
 * address), so that every neighbour and the bridge refresh where we are.
 * NetBSD's arp_ifinit. 0 or an errno; nothing to do without an address.
 */
export function arp_ifinit(cpu: GuestCpu, ifp: number): number {
  const addr = ifnet_view(cpu, ifp).get('if_addr');
  if (addr === 0) return 0;
  netstat_inc(cpu, 'ng_arpstat', 'arps_sndgratuitous');
  return arprequest(cpu, ifp, addr, addr);
}

/** (Re)arm an entry's timer `ticks` from now. */
function arp_settimer(cpu: GuestCpu, la: number, ticks: number): void {
  callout_reset(cpu, la + LA_TIMER, Math.max(1, ticks), 'arptimer', la);
}

/** The entry now knows `mac`: mark it RESOLVED, restart its lifetime, send what it held. */
function arp_resolved(cpu: GuestCpu, la: number, mac: EtherAddr): void {
  const v = la_view(cpu, la);
  const keep = netglobals(cpu).get('ng_arpt_keep');
  ether_addr_set(cpu.mem, v.addr('la_lladdr'), mac);
  v.set('la_state', LLE_RESOLVED);
  v.set('la_asked', 0);
  vu64_set(v, 'la_expire', getticks(cpu) + keep);
  arp_settimer(cpu, la, keep);
  const ifp = vptr(v, 'la_ifp');
  for (let m = mq_dequeue(cpu, la + LA_HOLD); m !== 0; m = mq_dequeue(cpu, la + LA_HOLD)) {
    v.set('la_nhold', v.get('la_nhold') - 1);
    ether_send(cpu, ifp, m, mac, ETHERTYPE_IP);
  }
}

/**
 * The callout of an entry. RESOLVED: it aged out. INCOMPLETE: ask again,
 * or give up after ng_arp_maxtries requests.
 */
export function arptimer(cpu: GuestCpu, la: number): void {
  const v = la_view(cpu, la);
  const g = netglobals(cpu);
  if (v.get('la_state') === LLE_RESOLVED) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_expired');
    if (dbg.enabled) dbg('arptimer: %s expired', inet_ntoa(v.get('la_addr')));
    arp_free(cpu, la);
    return;
  }
  const ifp = vptr(v, 'la_ifp');
  if (v.get('la_asked') >= g.get('ng_arp_maxtries')) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_timeouts');
    if (dbg.enabled) dbg('arptimer: %s unreachable', inet_ntoa(v.get('la_addr')));
    arp_free(cpu, la);
    return;
  }
  v.set('la_asked', v.get('la_asked') + 1);
  arprequest(cpu, ifp, ifnet_view(cpu, ifp).get('if_addr'), v.get('la_addr'));
  arp_settimer(cpu, la, g.get('ng_arpt_retrans'));
}

export interface ArpResolution {
  /** 0, or why the packet was dropped (it has been freed). */
  readonly error: number;
  /** The hardware address to send to, or undefined: the packet is held (or dropped). */
  readonly mac: number[] | undefined;
}

/**
 * The hardware address of `dst` on `ifp`. When unknown, `m` is held on
 * the entry (and sent when the reply comes) and a request goes out.
 */
export function arpresolve(cpu: GuestCpu, ifp: number, m: number, dst: number): ArpResolution {
  let la = arp_lookup(cpu, dst);
  if (la !== 0 && la_view(cpu, la).get('la_state') === LLE_RESOLVED) {
    return { error: 0, mac: ether_addr_get(cpu.mem, la_view(cpu, la).addr('la_lladdr')) };
  }
  let fresh = false;
  if (la === 0) {
    la = arp_alloc(cpu, ifp, dst);
    if (la === 0) {
      m_free(cpu, m);
      return { error: ENOBUFS, mac: undefined };
    }
    fresh = true;
  }
  const v = la_view(cpu, la);
  if (v.get('la_nhold') >= ARP_MAXHOLD) {
    // Keep the newest packets, as NetBSD's la_hold replacement does.
    const old = mq_dequeue(cpu, la + LA_HOLD);
    if (old !== 0) {
      m_free(cpu, old);
      v.set('la_nhold', v.get('la_nhold') - 1);
      netstat_inc(cpu, 'ng_arpstat', 'arps_dfrdropped');
    }
  }
  mq_enqueue(cpu, la + LA_HOLD, m);
  v.set('la_nhold', v.get('la_nhold') + 1);
  netstat_inc(cpu, 'ng_arpstat', 'arps_dfrtotal');
  if (fresh) {
    v.set('la_asked', 1);
    arprequest(cpu, ifp, ifnet_view(cpu, ifp).get('if_addr'), dst);
    arp_settimer(cpu, la, netglobals(cpu).get('ng_arpt_retrans'));
  }
  return { error: 0, mac: undefined };
}

/** An ARP packet (m_data after the Ethernet header). Consumes the mbuf. */
export function arp_input(cpu: GuestCpu, ifp: number, m: number): void {
  netstat_inc(cpu, 'ng_arpstat', 'arps_rcvtotal');
  arp_input_1(cpu, ifp, m);
  m_free(cpu, m);
}

function arp_input_1(cpu: GuestCpu, ifp: number, m: number): void {
  const mem = cpu.mem;
  if (m_len(cpu, m) < ETHER_ARP_LEN) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvtruncated');
    return;
  }
  const a = mtod(cpu, m);
  const op = mem.getUint16(a + AR_OP, false);
  if (mem.getUint16(a + AR_HRD, false) !== ARPHRD_ETHER || mem.getUint16(a + AR_PRO, false) !== ETHERTYPE_IP ||
      mem.getUint8(a + AR_HLN) !== ETHER_ADDR_LEN || mem.getUint8(a + AR_PLN) !== 4 || (op !== ARPOP_REQUEST && op !== ARPOP_REPLY)) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvbadproto');
    return;
  }
  netstat_inc(cpu, 'ng_arpstat', op === ARPOP_REQUEST ? 'arps_rcvrequest' : 'arps_rcvreply');
  const sha = ether_addr_get(mem, a + ARP_SHA);
  const spa = mem.getUint32(a + ARP_SPA, false);
  const tpa = mem.getUint32(a + ARP_TPA, false);
  const myaddr = ifnet_view(cpu, ifp).get('if_addr');
  if (ether_addr_eq(sha, if_lladdr(cpu, ifp))) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvlocalsha');
    return;
  }
  if (((sha[0] ?? 0) & 1) !== 0) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvbcastsha');
    return;
  }
  if (myaddr === 0) return;
  if (spa === myaddr) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvlocalspa');
    printf(cpu, 'arp: %s is using my IP address %s on %s!\n', ether_sprintf(sha), inet_ntoa(spa), if_xname_addr(ifp));
    return;
  }
  if (spa === 0) {
    // A probe (RFC 5227): answer if it asks for our address, learn nothing.
    netstat_inc(cpu, 'ng_arpstat', 'arps_rcvzerospa');
  } else {
    const la = arp_lookup(cpu, spa);
    if (la !== 0) arp_resolved(cpu, la, sha);
    else if (tpa === myaddr) {
      const nla = arp_alloc(cpu, ifp, spa);
      if (nla !== 0) arp_resolved(cpu, nla, sha);
    }
  }
  if (op === ARPOP_REQUEST && tpa === myaddr) {
    netstat_inc(cpu, 'ng_arpstat', 'arps_sndreply');
    arp_send(cpu, ifp, ARPOP_REPLY, myaddr, spa, sha, sha);
  }
}

/** Delete every entry (of `ifp`, or all when 0). */
export function arp_flush(cpu: GuestCpu, ifp = 0): void {
  netglobals(cpu);
  const head = ng_addr('ng_arptab');
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; ) {
    const next = TAILQ_NEXT(cpu.mem, head, l);
    if (ifp === 0 || vptr(la_view(cpu, l - LA_LIST), 'la_ifp') === ifp) arp_free(cpu, l - LA_LIST);
    l = next;
  }
}

/** Tune the timers (ticks); 0 leaves a value alone. */
export function arp_set_timers(cpu: GuestCpu, keep: number, retrans = 0, maxtries = 0): void {
  const g = netglobals(cpu);
  if (keep > 0) g.set('ng_arpt_keep', keep);
  if (retrans > 0) g.set('ng_arpt_retrans', retrans);
  if (maxtries > 0) g.set('ng_arp_maxtries', maxtries);
}

export interface ArpEntryInfo {
  readonly addr: string;
  readonly mac: string;
  readonly state: 'incomplete' | 'resolved';
  readonly expire: number;
  readonly held: number;
  readonly asked: number;
}

/** What `arp -a` shows (a JS array for this entry only). */
export function arp_entries(cpu: GuestCpu): ArpEntryInfo[] {
  netglobals(cpu);
  const head = ng_addr('ng_arptab');
  const out: ArpEntryInfo[] = [];
  for (let l = TAILQ_FIRST(cpu.mem, head); l !== 0; l = TAILQ_NEXT(cpu.mem, head, l)) {
    const v = la_view(cpu, l - LA_LIST);
    const resolved = v.get('la_state') === LLE_RESOLVED;
    out.push({
      addr: inet_ntoa(v.get('la_addr')),
      mac: resolved ? ether_sprintf(ether_addr_get(cpu.mem, v.addr('la_lladdr'))) : '(incomplete)',
      state: resolved ? 'resolved' : 'incomplete',
      expire: vu64(v, 'la_expire'),
      held: v.get('la_nhold'),
      asked: v.get('la_asked'),
    });
  }
  return out;
}

export const if_arp_ksyms = ksymtab({
  la_view, arp_lookup, arp_free, arp_alloc, arp_send, arprequest, arp_ifinit, arp_settimer, arp_resolved, arptimer, arpresolve,
  arp_input, arp_input_1, arp_flush, arp_set_timers, arp_entries,
});
