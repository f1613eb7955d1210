/*
 * Interface addresses (the address part of netinet/in.c).
 *
 * in_ifconfig is NetBSD's SIOCAIFADDR in one call: address, netmask, the
 * subnet broadcast, interface up, and a gratuitous ARP when the interface
 * is already running. One IPv4 address per interface, and one default
 * router for the host.
 */
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { printf } from '../kern/subr_prf.js';
import { netglobals } from '../net/net_globals.js';
import { ifnet_view, ifnet_list, if_flags, if_setflags, if_xname_addr, IFF_UP, IFF_RUNNING, IFF_BROADCAST } from '../net/if.js';
import { arp_ifinit } from './if_arp.js';
import { INADDR_ANY, INADDR_BROADCAST, inet_ntoa, in_prefix2mask } from './in.js';

/** Is `a` a broadcast address for `ifp` (limited, or its subnet's)? */
export function in_broadcast(cpu: GuestCpu, a: number, ifp: number): boolean {
  if (a === INADDR_BROADCAST || a === INADDR_ANY) return true;
  if (ifp === 0) return false;
  const v = ifnet_view(cpu, ifp);
  const mask = v.get('if_netmask');
  return v.get('if_addr') !== 0 && mask !== 0xffff_ffff && a === v.get('if_broadaddr');
}

/** The interface that owns address `a`, or 0. */
export function in_ifaddr_lookup(cpu: GuestCpu, a: number): number {
  if (a === 0) return 0;
  for (const ifp of ifnet_list(cpu)) if (ifnet_view(cpu, ifp).get('if_addr') === a) return ifp;
  return 0;
}

/**
 * Give `ifp` the address `addr`/`prefix` and bring it up. When it is
 * already running, announce the address with a gratuitous ARP.
 */
export function in_ifconfig(cpu: GuestCpu, ifp: number, addr: number, prefix: number): void {
  const mask = in_prefix2mask(prefix);
  const v = ifnet_view(cpu, ifp);
  v.set('if_addr', addr >>> 0);
  v.set('if_netmask', mask);
  v.set('if_broadaddr', ((addr & mask) | ~mask) >>> 0);
  if_setflags(cpu, ifp, IFF_UP | IFF_BROADCAST);
  printf(cpu, '%s: address %s/%d\n', if_xname_addr(ifp), inet_ntoa(addr), prefix);
  if ((if_flags(cpu, ifp) & IFF_RUNNING) !== 0) arp_ifinit(cpu, ifp);
}

/** The default router (0: none; then only directly connected hosts are reachable). */
export function in_setdefrouter(cpu: GuestCpu, gw: number): void {
  netglobals(cpu).set('ng_defrouter', gw >>> 0);
}

export function in_getdefrouter(cpu: GuestCpu): number {
  return netglobals(cpu).get('ng_defrouter');
}

export const in_ifaddr_ksyms = ksymtab({ in_broadcast, in_ifaddr_lookup, in_ifconfig, in_setdefrouter, in_getdefrouter });
