/*
 * The network stack's global variables, in guest memory like every other
 * kernel global (see sys/sys/kernel.ts): the interface list (ifnet), the
 * ARP table, the UDP PCB table, the IP id counter, the guest-side ping's
 * state, and the statistics of every layer (NetBSD's ipstat, icmpstat,
 * udpstat, arpstat, plus ether and mbuf counters). Everything else the
 * stack owns (interfaces, ARP entries, PCBs, queued packets) hangs off
 * these lists and lives in kmem.
 *
 * Where: one page at NET_GLOBALS_VA, the last page of the kernel globals
 * area (KERNEL_GLOBALS_SIZE is 4 pages; struct kernel_globals uses well
 * under one). The checks below fail at load time if either struct grows
 * into the other. It is a fixed address of the data segment, like a C
 * kernel's .bss, so a saved image carries it.
 *
 *   struct net_globals {
 *       uint32_t ng_magic, ng_layout;      // NET_GLOBALS_MAGIC, _LAYOUT
 *       struct tailq_entry ng_ifnet;       // struct ifnet, in attach order
 *       uint32_t ng_nifs, ng_if_index;     // interfaces; last index handed out
 *       struct tailq_entry ng_arptab;      // struct llinfo_arp
 *       uint32_t ng_narp;                  // entries in it
 *       uint32_t ng_arpt_keep;             // ticks a resolved entry lives
 *       uint32_t ng_arpt_retrans;          // ticks between two requests
 *       uint32_t ng_arp_maxtries;          // requests before giving up
 *       struct tailq_entry ng_udbtable;    // struct inpcb (UDP)
 *       uint32_t ng_npcbs;
 *       uint16_t ng_ip_id;                 // next IPv4 identification
 *       uint16_t ng_udp_lastport;          // last ephemeral port handed out
 *       uint32_t ng_defrouter;             // default gateway (host order), 0 = none
 *       uint32_t ng_mbuf_limit;            // most mbufs in use at once
 *       struct ping_state ng_ping;         // icmp_ping()'s state, and its wchan
 *       struct mbstat ng_mbstat;
 *       struct etherstat ng_etherstat;
 *       struct arpstat ng_arpstat;
 *       struct ipstat ng_ipstat;
 *       struct icmpstat ng_icmpstat;
 *       struct udpstat ng_udpstat;
 *   };
 *
 * Counters are 32-bit and wrap, as statistics may.
 */
import { struct, record, u16, u32, u64, type StructLayout } from '../../hypervisor/public/layout.js';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { KERNEL_GLOBALS_VA, KERNEL_GLOBALS_SIZE, PAGE_SIZE } from '../../arch/xen/include/vmparam.js';
import { kernel_globals } from '../sys/kernel.js';
import { tailq_entry, TAILQ_INIT } from '../sys/queue.js';
import { HZ } from '../sys/param.js';
import { ksymtab } from '../kern/kern_ksyms.js';

/** Counters of a statistics struct: every member a u32. */
function netstat_counters<N extends string>(name: string, names: readonly N[]): StructLayout<Record<N, typeof u32>> {
  return struct(name, Object.fromEntries(names.map((n) => [n, u32])) as Record<N, typeof u32>);
}

/** mbuf allocator. */
export const MBSTAT = Object.freeze(['m_inuse', 'm_peak', 'm_nalloc', 'm_nfree', 'm_drops'] as const);
export const mbstat = netstat_counters('struct mbstat', MBSTAT);

/** Ethernet input (NetBSD keeps these in if_data and ad-hoc counters). */
export const ETHERSTAT = Object.freeze([
  'ets_ipackets', // frames handed to ether_input
  'ets_runt', // shorter than an Ethernet header
  'ets_toolong', // longer than the MTU allows
  'ets_notforus', // unicast to another MAC (the bridge floods)
  'ets_multicast', // multicast (no group is joined)
  'ets_looped', // our own source MAC
  'ets_noproto', // EtherType neither IPv4 nor ARP
  'ets_opackets', // frames queued for output
  'ets_oqdrops', // dropped: send queue full
] as const);
export const etherstat = netstat_counters('struct etherstat', ETHERSTAT);

/** ARP (NetBSD's ARP_STAT_*). */
export const ARPSTAT = Object.freeze([
  'arps_sndtotal', // packets sent
  'arps_sndreply',
  'arps_sndrequest',
  'arps_sndgratuitous',
  'arps_rcvtotal',
  'arps_rcvrequest',
  'arps_rcvreply',
  'arps_rcvbadproto', // hrd/pro/hln/pln/op not Ethernet+IPv4
  'arps_rcvtruncated', // shorter than struct ether_arp
  'arps_rcvlocalsha', // our own hardware address as sender
  'arps_rcvbcastsha', // broadcast/multicast sender hardware address
  'arps_rcvlocalspa', // someone else claims our IP address
  'arps_rcvzerospa', // probe (sender IP 0)
  'arps_dfrtotal', // packets held waiting for resolution
  'arps_dfrdropped', // held packets dropped (queue full or no answer)
  'arps_timeouts', // entries given up after ng_arp_maxtries
  'arps_expired', // resolved entries that aged out
  'arps_allocfail', // no memory for an entry
  'arps_tablefull', // oldest entry evicted to make room
] as const);
export const arpstat = netstat_counters('struct arpstat', ARPSTAT);

/** IPv4 (NetBSD's IP_STAT_*). */
export const IPSTAT = Object.freeze([
  'ips_total',
  'ips_badsum',
  'ips_tooshort', // ip_len beyond the frame
  'ips_toosmall', // shorter than a minimal header
  'ips_badhlen',
  'ips_badlen', // ip_len below the header length
  'ips_badvers',
  'ips_badaddr', // source broadcast/multicast
  'ips_fragdropped', // fragments: never reassembled here
  'ips_notforus', // not our address (no forwarding)
  'ips_noproto',
  'ips_delivered',
  'ips_localout',
  'ips_noroute',
  'ips_cantfrag', // too big for the MTU with DF
  'ips_odropped', // output dropped: no buffers
  'ips_looped', // sent to ourselves
] as const);
export const ipstat = netstat_counters('struct ipstat', IPSTAT);

/** ICMP (NetBSD's ICMP_STAT_*, histograms flattened to what we use). */
export const ICMPSTAT = Object.freeze([
  'icps_error', // icmp_error() calls
  'icps_oldicmp', // no error about an ICMP error
  'icps_oldshort', // offending packet too short to quote
  'icps_bmcast', // no error about a broadcast
  'icps_tooshort',
  'icps_checksum',
  'icps_reflect', // echo replies sent
  'icps_bmcastecho', // echo requests to broadcast, ignored
  'icps_in_echo',
  'icps_in_echoreply',
  'icps_in_unreach',
  'icps_in_other',
  'icps_out_echo',
  'icps_out_echoreply',
  'icps_out_unreach',
  'icps_ping_stale', // echo replies that match no ping in progress
] as const);
export const icmpstat = netstat_counters('struct icmpstat', ICMPSTAT);

/** UDP (NetBSD's UDP_STAT_*). */
export const UDPSTAT = Object.freeze([
  'udps_ipackets',
  'udps_hdrops', // shorter than a UDP header
  'udps_badsum',
  'udps_nosum', // no checksum (0): accepted
  'udps_badlen', // uh_ulen disagrees with the IP length
  'udps_noport',
  'udps_noportbcast',
  'udps_fullsock', // receive queue full
  'udps_delivered',
  'udps_opackets',
  'udps_odropped',
] as const);
export const udpstat = netstat_counters('struct udpstat', UDPSTAT);

/*
 *   struct ping_state {          // one ping at a time (the guest's `ping`)
 *       uint16_t ps_ident;        // icmp_id of our echo requests
 *       uint16_t ps_seq;          // seq of the last request sent
 *       uint32_t ps_dst;          // whom we ping
 *       uint32_t ps_nsent, ps_nreplies;
 *       uint32_t ps_lastseq;      // seq of the last matching reply
 *       uint32_t ps_rtt;          // ticks between that request and its reply
 *       uint64_t ps_sent_tick;    // tick the last request left
 *   };
 */
export const ping_state = struct('struct ping_state', {
  ps_ident: u16,
  ps_seq: u16,
  ps_dst: u32,
  ps_nsent: u32,
  ps_nreplies: u32,
  ps_lastseq: u32,
  ps_rtt: u32,
  ps_sent_tick: u64,
});

export const net_globals = struct('struct net_globals', {
  ng_magic: u32,
  ng_layout: u32,
  ng_ifnet: record(tailq_entry),
  ng_nifs: u32,
  ng_if_index: u32,
  ng_arptab: record(tailq_entry),
  ng_narp: u32,
  ng_arpt_keep: u32,
  ng_arpt_retrans: u32,
  ng_arp_maxtries: u32,
  ng_udbtable: record(tailq_entry),
  ng_npcbs: u32,
  ng_ip_id: u16,
  ng_udp_lastport: u16,
  ng_defrouter: u32,
  ng_mbuf_limit: u32,
  ng_ping: record(ping_state),
  ng_mbstat: record(mbstat),
  ng_etherstat: record(etherstat),
  ng_arpstat: record(arpstat),
  ng_ipstat: record(ipstat),
  ng_icmpstat: record(icmpstat),
  ng_udpstat: record(udpstat),
});

/** 'net0' */
export const NET_GLOBALS_MAGIC = 0x6e657430;
/** Bumped whenever struct net_globals changes shape. */
export const NET_GLOBALS_LAYOUT = 1;

/** The last page of the kernel globals area. */
export const NET_GLOBALS_VA = KERNEL_GLOBALS_VA + KERNEL_GLOBALS_SIZE - PAGE_SIZE;

if (net_globals.size > PAGE_SIZE) throw new Error(`struct net_globals (${net_globals.size} bytes) outgrew its page`);
if (KERNEL_GLOBALS_VA + kernel_globals.size > NET_GLOBALS_VA) {
  throw new Error(`struct kernel_globals (${kernel_globals.size} bytes) reaches into the network globals page`);
}

/* Defaults, as NetBSD's sysctl net.inet.arp.* and kern.mbuf.* */
/** A resolved ARP entry lives 20 minutes. */
export const ARPT_KEEP_DEFAULT = 20 * 60 * HZ;
/** One second between ARP requests for an unresolved address. */
export const ARPT_RETRANS_DEFAULT = HZ;
/** Requests before an address is declared unreachable. */
export const ARP_MAXTRIES_DEFAULT = 5;
/** mbufs in use at once (2 KiB each): a flood cannot eat all of kmem. */
export const MBUF_LIMIT_DEFAULT = 512;
/** First ephemeral UDP port (IANA dynamic range, as NetBSD's anonportmin). */
export const IPPORT_ANONMIN = 49152;
export const IPPORT_ANONMAX = 65535;

export type NetGlobalsView = ReturnType<typeof net_globals.view>;

/** Address of a member of the network globals (dotted paths allowed). */
export function ng_addr(path: string): number {
  return NET_GLOBALS_VA + net_globals.offsetOf(path);
}

/** Zero and set up the network globals (once per boot, before any interface attaches). */
export function net_init(cpu: GuestCpu): void {
  cpu.mem.fill(NET_GLOBALS_VA, net_globals.size, 0);
  const g = net_globals.view(cpu.mem, NET_GLOBALS_VA);
  g.set('ng_magic', NET_GLOBALS_MAGIC);
  g.set('ng_layout', NET_GLOBALS_LAYOUT);
  for (const q of ['ng_ifnet', 'ng_arptab', 'ng_udbtable']) TAILQ_INIT(cpu.mem, ng_addr(q));
  g.set('ng_arpt_keep', ARPT_KEEP_DEFAULT);
  g.set('ng_arpt_retrans', ARPT_RETRANS_DEFAULT);
  g.set('ng_arp_maxtries', ARP_MAXTRIES_DEFAULT);
  g.set('ng_mbuf_limit', MBUF_LIMIT_DEFAULT);
  g.set('ng_udp_lastport', IPPORT_ANONMIN - 1);
  g.set('ng_ip_id', 1);
}

/**
 * View of the network globals (rebuild it on every entry; never keep it).
 * Sets them up on first use, so a kernel that never called net_init still
 * gets a consistent stack.
 */
export function netglobals(cpu: GuestCpu): NetGlobalsView {
  const g = net_globals.view(cpu.mem, NET_GLOBALS_VA);
  if (g.get('ng_magic') !== NET_GLOBALS_MAGIC || g.get('ng_layout') !== NET_GLOBALS_LAYOUT) net_init(cpu);
  return g;
}

export type StatGroup = 'ng_mbstat' | 'ng_etherstat' | 'ng_arpstat' | 'ng_ipstat' | 'ng_icmpstat' | 'ng_udpstat';

/** Add `n` (default 1) to one counter, e.g. `netstat_inc(cpu, 'ng_ipstat', 'ips_badsum')`. */
export function netstat_inc(cpu: GuestCpu, group: StatGroup, name: string, n = 1): void {
  const off = net_globals.offsetOf(`${group}.${name}`);
  netglobals(cpu);
  const va = NET_GLOBALS_VA + off;
  cpu.mem.setUint32(va, (cpu.mem.getUint32(va, true) + n) >>> 0, true);
}

/** One counter's value. */
export function netstat_get(cpu: GuestCpu, group: StatGroup, name: string): number {
  netglobals(cpu);
  return cpu.mem.getUint32(NET_GLOBALS_VA + net_globals.offsetOf(`${group}.${name}`), true);
}

/** Every counter of a group, by name (a JS object for this entry only: diagnostics, tests). */
export function netstat_snapshot(cpu: GuestCpu, group: StatGroup): Record<string, number> {
  netglobals(cpu);
  const layout = net_globals.fields[group].type;
  if (layout.kind !== 'record') throw new Error(`${group} is not a struct`);
  const out: Record<string, number> = {};
  for (const name of Object.keys(layout.layout.fields)) out[name] = netstat_get(cpu, group, name);
  return out;
}

export const net_globals_ksyms = ksymtab({ netstat_counters, ng_addr, net_init, netglobals, netstat_inc, netstat_get, netstat_snapshot });
