/*
 * Ethernet II framing (<net/if_ether.h>). Network byte order is big-endian,
 * so wire headers are read with explicit offsets and big-endian accessors
 * rather than the (little-endian, ABI) layout tables; each header's
 * offsets are declared once, here, next to its C definition.
 *
 *   struct ether_header {
 *       uint8_t  ether_dhost[6];
 *       uint8_t  ether_shost[6];
 *       uint16_t ether_type;       // big-endian
 *   };
 */
import type { MemView } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';

export const ETHER_ADDR_LEN = 6;
export const ETHER_TYPE_LEN = 2;
export const ETHER_HDR_LEN = 14;
/** Largest payload of a standard frame. */
export const ETHERMTU = 1500;
/** Smallest frame on the wire without its CRC (short frames are padded to it). */
export const ETHER_MIN_LEN_NOCRC = 60;
/** Largest frame without its CRC. */
export const ETHER_MAX_LEN_NOCRC = ETHER_HDR_LEN + ETHERMTU;

export const ETHER_DHOST = 0;
export const ETHER_SHOST = 6;
export const ETHER_TYPE = 12;

export const ETHERTYPE_IP = 0x0800;
export const ETHERTYPE_ARP = 0x0806;

/** An Ethernet address, as six byte values (a JS array valid for one entry). */
export type EtherAddr = readonly number[];

export const etherbroadcastaddr: EtherAddr = Object.freeze([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const ether_zeroaddr: EtherAddr = Object.freeze([0, 0, 0, 0, 0, 0]);

/** Read six bytes of guest memory as an address. */
export function ether_addr_get(mem: MemView, va: number): number[] {
  const a: number[] = [];
  for (let i = 0; i < ETHER_ADDR_LEN; i++) a.push(mem.getUint8(va + i));
  return a;
}

export function ether_addr_set(mem: MemView, va: number, a: EtherAddr): void {
  for (let i = 0; i < ETHER_ADDR_LEN; i++) mem.setUint8(va + i, a[i] ?? 0);
}

export function ether_addr_eq(a: EtherAddr, b: EtherAddr): boolean {
  for (let i = 0; i < ETHER_ADDR_LEN; i++) if ((a[i] ?? -1) !== (b[i] ?? -2)) return false;
  return true;
}

/** Does the address in guest memory at `va` equal `a`? */
export function ether_addr_eq_at(mem: MemView, va: number, a: EtherAddr): boolean {
  for (let i = 0; i < ETHER_ADDR_LEN; i++) if (mem.getUint8(va + i) !== a[i]) return false;
  return true;
}

/** Group bit: broadcast or multicast. */
export function ETHER_IS_MULTICAST(first: number): boolean {
  return (first & 0x01) !== 0;
}

/** "00:16:3e:00:00:01" (NetBSD's ether_sprintf). */
export function ether_sprintf(a: EtherAddr): string {
  return a.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Parse "aa:bb:cc:dd:ee:ff" (a xenstore `mac` node: peer data). Returns
 * undefined for anything else, never throws.
 */
export function ether_aton(s: string): number[] | undefined {
  const m = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/.exec(s);
  if (m === null) return undefined;
  return m.slice(1).map((h) => parseInt(h, 16));
}

export const if_ether_ksyms = ksymtab({
  ether_addr_get, ether_addr_set, ether_addr_eq, ether_addr_eq_at, ETHER_IS_MULTICAST, ether_sprintf, ether_aton,
});
