/*
 * Internet addresses and the Internet checksum (<netinet/in.h>, in_cksum.c,
 * and the address part of in.c).
 *
 * IPv4 addresses are JS numbers in host order (0 .. 2^32-1), stored as
 * u32 in kernel structs and written big-endian into packets. An address
 * typed by a person or read from xenstore is parsed with inet_aton, which
 * refuses anything but a dotted quad and never throws.
 *
 * This module is a leaf (it imports nothing of the stack), so headers and
 * constants elsewhere can use it at load time; interface addresses are in
 * in_ifaddr.ts.
 */
import type { MemView } from '../../hypervisor/public/layout.js';
import { ksymtab } from '../kern/kern_ksyms.js';

export const INADDR_ANY = 0;
export const INADDR_BROADCAST = 0xffff_ffff;
export const INADDR_LOOPBACK = 0x7f00_0001;

export const IPPROTO_ICMP = 1;
export const IPPROTO_UDP = 17;

/** Class D (multicast): 224.0.0.0/4. */
export function IN_MULTICAST(a: number): boolean {
  return (a >>> 28) === 0xe;
}

/** 127.0.0.0/8 */
export function IN_LOOPBACK(a: number): boolean {
  return (a >>> 24) === 127;
}

/** "10.0.0.2" -> 0x0a000002; undefined unless exactly four decimal bytes. */
export function inet_aton(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return undefined;
  let a = 0;
  for (let i = 1; i <= 4; i++) {
    const b = Number(m[i]);
    if (!(b >= 0 && b <= 255)) return undefined;
    a = a * 256 + b;
  }
  return a;
}

export function inet_ntoa(a: number): string {
  return `${(a >>> 24) & 0xff}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** /24 -> 0xffffff00 (prefix 0..32). */
export function in_prefix2mask(prefix: number): number {
  if (!(Number.isInteger(prefix) && prefix >= 0 && prefix <= 32)) return 0;
  return prefix === 0 ? 0 : (0xffff_ffff << (32 - prefix)) >>> 0;
}

/**
 * "10.0.0.2" or "10.0.0.2/24" (the form a toolstack writes to a vif's `ip`
 * node; several space-separated addresses: the first is taken). The prefix
 * defaults to `defPrefix`. Peer data: undefined when unusable.
 */
export function in_parse_cidr(s: string, defPrefix = 24): { addr: number; prefix: number } | undefined {
  const first = s.trim().split(/\s+/)[0] ?? '';
  const [a, p] = first.split('/');
  const addr = inet_aton(a ?? '');
  if (addr === undefined || addr === 0 || addr === INADDR_BROADCAST || IN_MULTICAST(addr)) return undefined;
  if (p === undefined) return { addr, prefix: defPrefix };
  if (!/^\d{1,2}$/.test(p) || Number(p) > 32) return undefined;
  return { addr, prefix: Number(p) };
}

// ---------------------------------------------------------------------------
// The Internet checksum (RFC 1071): ones' complement sum of 16-bit words.

/** Add `len` bytes at `va` to a running 32-bit sum (odd trailing byte padded with zero). */
export function in_cksum_add(mem: MemView & { readBytes?: (va: number, len: number) => Uint8Array }, va: number, len: number, sum = 0): number {
  let s = sum;
  if (mem.readBytes !== undefined) {
    const b = mem.readBytes(va, len);
    let i = 0;
    for (; i + 1 < len; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
    if (i < len) s += (b[i] as number) << 8;
  } else {
    let i = 0;
    for (; i + 1 < len; i += 2) s += mem.getUint16(va + i, false);
    if (i < len) s += mem.getUint8(va + i) << 8;
  }
  // Fold now and then so the sum stays an exact JS integer for any length.
  while (s > 0xffff_ffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** Fold a running sum to 16 bits and complement it: the checksum field's value. */
export function in_cksum_fold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** Checksum of `len` bytes at `va` (0 when the bytes carry a correct checksum). */
export function in_cksum(mem: MemView, va: number, len: number, sum = 0): number {
  return in_cksum_fold(in_cksum_add(mem, va, len, sum));
}

/** The pseudo-header's contribution (src, dst, protocol, length) to a UDP/TCP sum. */
export function in_pseudo(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

export const in_ksyms = ksymtab({
  IN_MULTICAST, IN_LOOPBACK, inet_aton, inet_ntoa, in_prefix2mask, in_parse_cidr, in_cksum_add, in_cksum_fold, in_cksum, in_pseudo,
});
