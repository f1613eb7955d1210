/*
 * The network stack's part of the kernel text, in link order: what an
 * image appends after MI_KSYMTABS (sys/conf/files.ts) to have sys/net and
 * sys/netinet. The order fixes symbol addresses, so it changes only on
 * purpose.
 */
import type { KSymTab } from '../kern/kern_ksyms.js';
import { net_globals_ksyms } from './net_globals.js';
import { mbuf_ksyms } from './mbuf.js';
import { if_ksyms } from './if.js';
import { if_ether_ksyms } from './if_ether.js';
import { if_ethersubr_ksyms } from './if_ethersubr.js';
import { in_ksyms } from '../netinet/in.js';
import { in_ifaddr_ksyms } from '../netinet/in_ifaddr.js';
import { ip_ksyms } from '../netinet/ip.js';
import { if_arp_ksyms } from '../netinet/if_arp.js';
import { ip_input_ksyms } from '../netinet/ip_input.js';
import { ip_output_ksyms } from '../netinet/ip_output.js';
import { ip_icmp_ksyms } from '../netinet/ip_icmp.js';
import { udp_usrreq_ksyms } from '../netinet/udp_usrreq.js';
import { udp_services_ksyms } from '../netinet/udp_services.js';

export const NET_KSYMTABS: readonly KSymTab[] = Object.freeze([
  net_globals_ksyms,
  mbuf_ksyms,
  if_ksyms,
  if_ether_ksyms,
  if_ethersubr_ksyms,
  in_ksyms,
  in_ifaddr_ksyms,
  ip_ksyms,
  if_arp_ksyms,
  ip_input_ksyms,
  ip_output_ksyms,
  ip_icmp_ksyms,
  udp_usrreq_ksyms,
  udp_services_ksyms,
]);
