/*
 * Addresses and the Internet checksum, for dom0's network code.
 *
 * Inside the wire code a MAC address is a 48-bit number and an IPv4
 * address a 32-bit unsigned number: both are exact JS numbers, cheap to
 * compare and to use as Map keys. The APIs people call (bridge events,
 * endpoint options, `xl network-ping`) take and give the usual text forms,
 * `00:16:3e:00:00:01` and `10.0.0.2`.
 */

declare const macBrand: unique symbol;
declare const ipv4Brand: unique symbol;
/** A MAC address as a 48-bit number, first octet most significant. */
export type Mac = number & { readonly [macBrand]: true };
/** An IPv4 address as a 32-bit unsigned number, first octet most significant. */
export type Ipv4 = number & { readonly [ipv4Brand]: true };

export const MAC_BROADCAST = 0xffff_ffff_ffff as Mac;
export const MAC_ZERO = 0 as Mac;
export const IPV4_ANY = 0 as Ipv4;
export const IPV4_BROADCAST = 0xffff_ffff as Ipv4;

const MAC_TEXT = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/;
const IPV4_TEXT = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** `aa:bb:cc:dd:ee:ff` (or with dashes) to a Mac, or undefined. */
export function parseMac(text: string): Mac | undefined {
  const m = MAC_TEXT.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (const i of [1, 3, 4, 5, 6, 7]) v = v * 256 + parseInt(m[i]!, 16);
  return v as Mac;
}

/** A Mac as lower-case `aa:bb:cc:dd:ee:ff`. */
export function formatMac(mac: Mac): string {
  const parts: string[] = [];
  let v = mac as number;
  for (let i = 0; i < 6; i++) {
    parts.unshift((v % 256).toString(16).padStart(2, '0'));
    v = Math.floor(v / 256);
  }
  return parts.join(':');
}

/** Dotted quad to an Ipv4, or undefined (no leading zeros, each octet <= 255). */
export function parseIpv4(text: string): Ipv4 | undefined {
  const m = IPV4_TEXT.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const s = m[i]!;
    if (s.length > 1 && s.startsWith('0')) return undefined;
    const o = Number(s);
    if (o > 255) return undefined;
    v = v * 256 + o;
  }
  return v as Ipv4;
}

export function formatIpv4(ip: Ipv4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** Group bit set: broadcast or multicast. */
export function isMulticastMac(mac: Mac): boolean {
  return Math.floor(mac / 2 ** 40) % 2 === 1;
}

export function readMac(b: Uint8Array, off: number): Mac {
  return ((b[off]! * 2 ** 40) + (b[off + 1]! * 2 ** 32) + ((b[off + 2]! << 24) >>> 0) +
    (b[off + 3]! << 16) + (b[off + 4]! << 8) + b[off + 5]!) as Mac;
}

export function writeMac(b: Uint8Array, off: number, mac: Mac): void {
  let v = mac as number;
  for (let i = 5; i >= 0; i--) {
    b[off + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

export function readIpv4(b: Uint8Array, off: number): Ipv4 {
  return (((b[off]! << 24) >>> 0) + (b[off + 1]! << 16) + (b[off + 2]! << 8) + b[off + 3]!) as Ipv4;
}

export function writeIpv4(b: Uint8Array, off: number, ip: Ipv4): void {
  b[off] = ip >>> 24;
  b[off + 1] = (ip >>> 16) & 0xff;
  b[off + 2] = (ip >>> 8) & 0xff;
  b[off + 3] = ip & 0xff;
}

export function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

export function writeU16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

/** A mask of `prefixLen` leading one bits. */
export function netmask(prefixLen: number): number {
  return prefixLen <= 0 ? 0 : (0xffff_ffff << (32 - prefixLen)) >>> 0;
}

/**
 * The one's-complement sum of big-endian 16-bit words of b[start, end),
 * an odd last byte padded with zero, added to `sum`; not folded, not
 * inverted. Chain calls to sum a pseudo-header and a body.
 */
export function onesSum(b: Uint8Array, start: number, end: number, sum = 0): number {
  let s = sum;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  // Fold now and then so the sum stays an exact small integer.
  return s > 0x7fff_ffff ? (s & 0xffff) + Math.floor(s / 0x10000) : s;
}

/** Fold a onesSum to 16 bits and invert it: the Internet checksum (RFC 1071). */
export function finishChecksum(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

/** The Internet checksum of b[start, end). */
export function inetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  return finishChecksum(onesSum(b, start, end));
}
