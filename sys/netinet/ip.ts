/*
 * The IPv4 header (<netinet/ip.h>), big-endian on the wire.
 *
 *   struct ip {
 *       uint8_t  ip_vhl;     // version (4) << 4 | header length in 32-bit words
 *       uint8_t  ip_tos;
 *       uint16_t ip_len;     // total length, header included
 *       uint16_t ip_id;
 *       uint16_t ip_off;     // IP_DF | IP_MF | fragment offset in 8-byte units
 *       uint8_t  ip_ttl;
 *       uint8_t  ip_p;       // IPPROTO_*
 *       uint16_t ip_sum;     // header checksum
 *       struct in_addr ip_src, ip_dst;
 *   };
 */
import type { MemView } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';
import { in_cksum } from './in.js';

export const IP_VHL = 0;
export const IP_TOS = 1;
export const IP_LEN = 2;
export const IP_ID = 4;
export const IP_OFF = 6;
export const IP_TTL = 8;
export const IP_P = 9;
export const IP_SUM = 10;
export const IP_SRC = 12;
export const IP_DST = 16;
/** A header without options. */
export const IP_HDRLEN = 20;
/** Longest header (15 words). */
export const IP_MAXHDRLEN = 60;

export const IPVERSION = 4;
/** Don't fragment. */
export const IP_DF = 0x4000;
/** More fragments. */
export const IP_MF = 0x2000;
export const IP_OFFMASK = 0x1fff;
/** NetBSD's default TTL. */
export const IPDEFTTL = 64;
export const IP_MAXPACKET = 65535;

/** Fill an option-less IPv4 header at `va` (checksum included). */
export function ip_header_write(mem: MemView, va: number, h: {
  len: number; id: number; off: number; ttl: number; p: number; src: number; dst: number; tos?: number;
}): void {
  mem.setUint8(va + IP_VHL, (IPVERSION << 4) | (IP_HDRLEN >> 2));
  mem.setUint8(va + IP_TOS, h.tos ?? 0);
  mem.setUint16(va + IP_LEN, h.len, false);
  mem.setUint16(va + IP_ID, h.id & 0xffff, false);
  mem.setUint16(va + IP_OFF, h.off, false);
  mem.setUint8(va + IP_TTL, h.ttl);
  mem.setUint8(va + IP_P, h.p);
  mem.setUint16(va + IP_SUM, 0, false);
  mem.setUint32(va + IP_SRC, h.src >>> 0, false);
  mem.setUint32(va + IP_DST, h.dst >>> 0, false);
  mem.setUint16(va + IP_SUM, in_cksum(mem, va, IP_HDRLEN), false);
}

export const ip_ksyms = ksymtab({ ip_header_write });
