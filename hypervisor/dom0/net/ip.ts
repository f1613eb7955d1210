/*
 * IPv4 (RFC 791), ICMP echo (RFC 792) and UDP (RFC 768), the parts dom0
 * needs. Same contract as ether.ts: parsers never throw on peer bytes,
 * builders produce exact bytes.
 *
 * IPv4 header (20 bytes without options):
 *   0  version (4 bits) | header length in 32-bit words (4 bits)
 *   1  type of service        2  total length (header + data)
 *   4  identification         6  flags (3 bits: reserved, DF, MF) | fragment offset (13 bits)
 *   8  time to live           9  protocol (1 ICMP, 17 UDP)
 *  10  header checksum       12  source address       16  destination address
 * Fragments are not reassembled anywhere in dom0: a fragment is reported
 * as the error `fragment`, and callers count and drop it.
 *
 * ICMP (8-byte header, checksum over the whole message):
 *   0  type (8 echo request, 0 echo reply)   1  code   2  checksum
 *   4  identifier   6  sequence number   8  data (echoed verbatim)
 *
 * UDP (8-byte header):
 *   0  source port   2  destination port   4  length (header + data)   6  checksum
 * The checksum covers a pseudo-header (source, destination, zero, protocol
 * 17, UDP length) and the datagram. 0 on the wire means "no checksum"; a
 * computed 0 is sent as 0xffff.
 */
import { type Ipv4, readIpv4, writeIpv4, readU16, writeU16, onesSum, finishChecksum, inetChecksum } from './addr.js';
import { type WireResult, wireError } from './ether.js';

export const IPV4_HLEN = 20;
export const IPPROTO_ICMP = 1;
export const IPPROTO_UDP = 17;
export const IP_DEFAULT_TTL = 64;
const IP_FLAG_DF = 0x4000;
const IP_FLAG_MF = 0x2000;
const IP_OFFSET_MASK = 0x1fff;

export interface Ipv4Packet {
  readonly src: Ipv4;
  readonly dst: Ipv4;
  readonly protocol: number;
  readonly ttl: number;
  readonly id: number;
  readonly tos: number;
  readonly dontFragment: boolean;
  /** Header length in bytes (20 + options). */
  readonly headerLength: number;
  /** The data, cut at the total length (link padding removed); a view. */
  readonly payload: Uint8Array;
}

export function parseIpv4Packet(b: Uint8Array): WireResult<Ipv4Packet> {
  if (b.length < IPV4_HLEN) return wireError('truncated', `IPv4 packet of ${b.length} bytes, header needs ${IPV4_HLEN}`);
  const version = b[0]! >>> 4;
  if (version !== 4) return wireError('bad-version', `IP version ${version}, expected 4`);
  const headerLength = (b[0]! & 0x0f) * 4;
  if (headerLength < IPV4_HLEN) return wireError('bad-header-length', `IPv4 header length ${headerLength} < ${IPV4_HLEN}`);
  if (headerLength > b.length) return wireError('truncated', `IPv4 header of ${headerLength} bytes in ${b.length}`);
  const total = readU16(b, 2);
  if (total < headerLength) return wireError('bad-length', `IPv4 total length ${total} < header length ${headerLength}`);
  if (total > b.length) return wireError('truncated', `IPv4 total length ${total}, only ${b.length} bytes present`);
  if (inetChecksum(b, 0, headerLength) !== 0) return wireError('bad-checksum', `IPv4 header checksum 0x${readU16(b, 10).toString(16)} is wrong`);
  const flagsOffset = readU16(b, 6);
  if ((flagsOffset & IP_FLAG_MF) !== 0 || (flagsOffset & IP_OFFSET_MASK) !== 0) {
    return wireError('fragment', `IPv4 fragment (offset ${(flagsOffset & IP_OFFSET_MASK) * 8}, more=${(flagsOffset & IP_FLAG_MF) !== 0}); fragments are not reassembled`);
  }
  return {
    ok: true,
    value: {
      src: readIpv4(b, 12),
      dst: readIpv4(b, 16),
      protocol: b[9]!,
      ttl: b[8]!,
      id: readU16(b, 4),
      tos: b[1]!,
      dontFragment: (flagsOffset & IP_FLAG_DF) !== 0,
      headerLength,
      payload: b.subarray(headerLength, total),
    },
  };
}

export interface Ipv4Spec {
  readonly src: Ipv4;
  readonly dst: Ipv4;
  readonly protocol: number;
  readonly payload: Uint8Array;
  readonly id?: number;
  readonly ttl?: number;
  readonly tos?: number;
  readonly dontFragment?: boolean;
}

/** A 20-byte header (no options) with its checksum, then the payload. */
export function buildIpv4(spec: Ipv4Spec): Uint8Array {
  const total = IPV4_HLEN + spec.payload.length;
  if (total > 0xffff) throw new RangeError(`IPv4 packet of ${total} bytes`);
  const b = new Uint8Array(total);
  b[0] = 0x45;
  b[1] = spec.tos ?? 0;
  writeU16(b, 2, total);
  writeU16(b, 4, (spec.id ?? 0) & 0xffff);
  writeU16(b, 6, spec.dontFragment === true ? IP_FLAG_DF : 0);
  b[8] = spec.ttl ?? IP_DEFAULT_TTL;
  b[9] = spec.protocol;
  writeIpv4(b, 12, spec.src);
  writeIpv4(b, 16, spec.dst);
  writeU16(b, 10, inetChecksum(b, 0, IPV4_HLEN));
  b.set(spec.payload, IPV4_HLEN);
  return b;
}

export const ICMP_HLEN = 8;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;

export interface IcmpMessage {
  readonly type: number;
  readonly code: number;
  /** Bytes 4..7 (identifier and sequence for echo). */
  readonly rest: number;
  readonly body: Uint8Array;
}

export function parseIcmp(b: Uint8Array): WireResult<IcmpMessage> {
  if (b.length < ICMP_HLEN) return wireError('truncated', `ICMP message of ${b.length} bytes, header needs ${ICMP_HLEN}`);
  if (inetChecksum(b) !== 0) return wireError('bad-checksum', `ICMP checksum 0x${readU16(b, 2).toString(16)} is wrong`);
  return {
    ok: true,
    value: { type: b[0]!, code: b[1]!, rest: (readU16(b, 4) * 0x10000) + readU16(b, 6), body: b.subarray(ICMP_HLEN) },
  };
}

export interface IcmpEcho {
  readonly kind: 'request' | 'reply';
  readonly id: number;
  readonly seq: number;
  readonly data: Uint8Array;
}

/** An echo request or reply, or an error (`not-echo` for the other ICMP types). */
export function parseIcmpEcho(b: Uint8Array): WireResult<IcmpEcho> {
  const m = parseIcmp(b);
  if (!m.ok) return m;
  const { type, code, rest, body } = m.value;
  if ((type !== ICMP_ECHO_REQUEST && type !== ICMP_ECHO_REPLY) || code !== 0) {
    return wireError('not-echo', `ICMP type ${type} code ${code} is not an echo`);
  }
  return {
    ok: true,
    value: { kind: type === ICMP_ECHO_REQUEST ? 'request' : 'reply', id: Math.floor(rest / 0x10000), seq: rest & 0xffff, data: body },
  };
}

export function buildIcmpEcho(e: IcmpEcho): Uint8Array {
  const b = new Uint8Array(ICMP_HLEN + e.data.length);
  b[0] = e.kind === 'request' ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY;
  b[1] = 0;
  writeU16(b, 4, e.id & 0xffff);
  writeU16(b, 6, e.seq & 0xffff);
  b.set(e.data, ICMP_HLEN);
  writeU16(b, 2, inetChecksum(b));
  return b;
}

export const UDP_HLEN = 8;

export interface UdpDatagram {
  readonly srcPort: number;
  readonly dstPort: number;
  /** False when the sender left the checksum 0 ("none"). */
  readonly checksummed: boolean;
  /** The data, cut at the UDP length; a view. */
  readonly payload: Uint8Array;
}

function pseudoHeaderSum(src: Ipv4, dst: Ipv4, udpLength: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + IPPROTO_UDP + udpLength;
}

/** `b` is the IPv4 payload; src and dst come from the IPv4 header (for the pseudo-header). */
export function parseUdp(b: Uint8Array, src: Ipv4, dst: Ipv4): WireResult<UdpDatagram> {
  if (b.length < UDP_HLEN) return wireError('truncated', `UDP datagram of ${b.length} bytes, header needs ${UDP_HLEN}`);
  const length = readU16(b, 4);
  if (length < UDP_HLEN) return wireError('bad-length', `UDP length ${length} < ${UDP_HLEN}`);
  if (length > b.length) return wireError('truncated', `UDP length ${length}, only ${b.length} bytes present`);
  const checksum = readU16(b, 6);
  if (checksum !== 0 && finishChecksum(onesSum(b, 0, length, pseudoHeaderSum(src, dst, length))) !== 0) {
    return wireError('bad-checksum', `UDP checksum 0x${checksum.toString(16)} is wrong`);
  }
  return {
    ok: true,
    value: { srcPort: readU16(b, 0), dstPort: readU16(b, 2), checksummed: checksum !== 0, payload: b.subarray(UDP_HLEN, length) },
  };
}

export interface UdpSpec {
  readonly src: Ipv4;
  readonly dst: Ipv4;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
}

/** The UDP datagram (header + data) with its checksum; wrap it with buildIpv4. */
export function buildUdp(spec: UdpSpec): Uint8Array {
  const length = UDP_HLEN + spec.payload.length;
  if (length > 0xffff - IPV4_HLEN) throw new RangeError(`UDP datagram of ${length} bytes`);
  const b = new Uint8Array(length);
  writeU16(b, 0, spec.srcPort);
  writeU16(b, 2, spec.dstPort);
  writeU16(b, 4, length);
  b.set(spec.payload, UDP_HLEN);
  const sum = finishChecksum(onesSum(b, 0, length, pseudoHeaderSum(spec.src, spec.dst, length)));
  writeU16(b, 6, sum === 0 ? 0xffff : sum);
  return b;
}

/** buildUdp wrapped in buildIpv4. */
export function buildUdpPacket(spec: UdpSpec & { readonly id?: number; readonly ttl?: number }): Uint8Array {
  const ip: Ipv4Spec = { src: spec.src, dst: spec.dst, protocol: IPPROTO_UDP, payload: buildUdp(spec) };
  return buildIpv4({ ...ip, ...(spec.id === undefined ? {} : { id: spec.id }), ...(spec.ttl === undefined ? {} : { ttl: spec.ttl }) });
}

/**
 * Fill in the UDP or ICMP checksum of an IPv4 packet, in place. netback
 * calls it for a guest packet sent with NETTXF_csum_blank (checksum left to
 * the "hardware"): whatever the field holds is replaced by the full
 * checksum. Other protocols are left alone. Errors for packets that do not
 * parse; the packet is then untouched.
 */
export function completeChecksum(packet: Uint8Array): WireResult<{ readonly protocol: number }> {
  const r = parseIpv4WithoutChecksums(packet);
  if (!r.ok) return r;
  const { headerLength, total, protocol, src, dst } = r.value;
  const body = packet.subarray(headerLength, total);
  if (protocol === IPPROTO_UDP) {
    if (body.length < UDP_HLEN) return wireError('truncated', `UDP datagram of ${body.length} bytes, header needs ${UDP_HLEN}`);
    const length = readU16(body, 4);
    if (length < UDP_HLEN || length > body.length) return wireError('bad-length', `UDP length ${length} in ${body.length} bytes`);
    writeU16(body, 6, 0);
    const sum = finishChecksum(onesSum(body, 0, length, pseudoHeaderSum(src, dst, length)));
    writeU16(body, 6, sum === 0 ? 0xffff : sum);
  } else if (protocol === IPPROTO_ICMP) {
    if (body.length < ICMP_HLEN) return wireError('truncated', `ICMP message of ${body.length} bytes, header needs ${ICMP_HLEN}`);
    writeU16(body, 2, 0);
    writeU16(body, 2, inetChecksum(body));
  }
  return { ok: true, value: { protocol } };
}

/** The header fields completeChecksum needs, with the same length checks as parseIpv4Packet but no checksum check. */
function parseIpv4WithoutChecksums(b: Uint8Array): WireResult<{ headerLength: number; total: number; protocol: number; src: Ipv4; dst: Ipv4 }> {
  if (b.length < IPV4_HLEN) return wireError('truncated', `IPv4 packet of ${b.length} bytes, header needs ${IPV4_HLEN}`);
  if (b[0]! >>> 4 !== 4) return wireError('bad-version', `IP version ${b[0]! >>> 4}, expected 4`);
  const headerLength = (b[0]! & 0x0f) * 4;
  const total = readU16(b, 2);
  if (headerLength < IPV4_HLEN || headerLength > total || total > b.length) {
    return wireError('bad-length', `IPv4 header length ${headerLength}, total length ${total}, ${b.length} bytes present`);
  }
  if ((readU16(b, 6) & (IP_FLAG_MF | IP_OFFSET_MASK)) !== 0) return wireError('fragment', 'IPv4 fragment');
  return { ok: true, value: { headerLength, total, protocol: b[9]!, src: readIpv4(b, 12), dst: readIpv4(b, 16) } };
}
