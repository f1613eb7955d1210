/*
 * Ethernet II frames and ARP (RFC 826) for IPv4 over Ethernet.
 *
 * Parsers take bytes from a peer and never throw: they return a value or a
 * WireError whose `reason` is a short stable code (the bridge and the
 * endpoint count drops by it) and whose `detail` says what was wrong.
 * Builders produce exact bytes and throw only on our own bad arguments.
 *
 * Ethernet II header (14 bytes, no FCS: the bridge never sees one):
 *   0  destination MAC (6)
 *   6  source MAC (6)
 *  12  ethertype (2, big-endian, >= 0x0600)
 * Frames shorter than 60 bytes are padded with zeros by the builder, as a
 * NIC pads to the minimum frame size; parsers of the payload use their own
 * length fields and ignore the padding.
 *
 * ARP packet for Ethernet/IPv4 (28 bytes):
 *   0  hardware type = 1 (Ethernet)      2  protocol type = 0x0800
 *   4  hardware length = 6               5  protocol length = 4
 *   6  operation: 1 request, 2 reply
 *   8  sender MAC   14  sender IP   18  target MAC   24  target IP
 */
import { type Mac, type Ipv4, MAC_BROADCAST, MAC_ZERO, readMac, writeMac, readIpv4, writeIpv4, readU16, writeU16 } from './addr.js';

export interface WireError {
  readonly ok: false;
  /** Short stable code, used as a drop counter key (`truncated`, `bad-checksum`, ...). */
  readonly reason: string;
  readonly detail: string;
}
export type WireResult<T> = { readonly ok: true; readonly value: T } | WireError;

export function wireError(reason: string, detail: string): WireError {
  return { ok: false, reason, detail };
}

export const ETH_ALEN = 6;
export const ETH_HLEN = 14;
/** Smallest frame on the wire without FCS; the builder pads to it. */
export const ETH_ZLEN = 60;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;

export interface EthernetFrame {
  readonly dst: Mac;
  readonly src: Mac;
  readonly ethertype: number;
  /** Everything after the header, padding included (a view, not a copy). */
  readonly payload: Uint8Array;
}

export function parseEthernet(frame: Uint8Array): WireResult<EthernetFrame> {
  if (frame.length < ETH_HLEN) return wireError('truncated', `ethernet frame of ${frame.length} bytes, header needs ${ETH_HLEN}`);
  const ethertype = readU16(frame, 12);
  if (ethertype < 0x0600) return wireError('not-ethernet-ii', `type/length field 0x${ethertype.toString(16)} is an 802.3 length`);
  return {
    ok: true,
    value: { dst: readMac(frame, 0), src: readMac(frame, 6), ethertype, payload: frame.subarray(ETH_HLEN) },
  };
}

export interface EthernetSpec {
  readonly dst: Mac;
  readonly src: Mac;
  readonly ethertype: number;
  readonly payload: Uint8Array;
}

/** Header + payload, zero-padded to ETH_ZLEN. */
export function buildEthernet(spec: EthernetSpec): Uint8Array {
  if (spec.ethertype < 0x0600 || spec.ethertype > 0xffff) throw new RangeError(`ethertype 0x${spec.ethertype.toString(16)}`);
  const out = new Uint8Array(Math.max(ETH_ZLEN, ETH_HLEN + spec.payload.length));
  writeMac(out, 0, spec.dst);
  writeMac(out, 6, spec.src);
  writeU16(out, 12, spec.ethertype);
  out.set(spec.payload, ETH_HLEN);
  return out;
}

export const ARP_LEN = 28;
export const ARPHRD_ETHER = 1;
export const ARPOP_REQUEST = 1;
export const ARPOP_REPLY = 2;

export interface ArpPacket {
  readonly op: typeof ARPOP_REQUEST | typeof ARPOP_REPLY;
  readonly senderMac: Mac;
  readonly senderIp: Ipv4;
  readonly targetMac: Mac;
  readonly targetIp: Ipv4;
}

export function parseArp(b: Uint8Array): WireResult<ArpPacket> {
  if (b.length < ARP_LEN) return wireError('truncated', `ARP packet of ${b.length} bytes, needs ${ARP_LEN}`);
  const htype = readU16(b, 0);
  const ptype = readU16(b, 2);
  if (htype !== ARPHRD_ETHER || ptype !== ETHERTYPE_IPV4 || b[4] !== ETH_ALEN || b[5] !== 4) {
    return wireError('arp-unsupported', `ARP for hardware ${htype}/${b[4]} protocol 0x${ptype.toString(16)}/${b[5]}, not Ethernet/IPv4`);
  }
  const op = readU16(b, 6);
  if (op !== ARPOP_REQUEST && op !== ARPOP_REPLY) return wireError('arp-bad-op', `ARP operation ${op}`);
  return {
    ok: true,
    value: { op: op as ArpPacket['op'], senderMac: readMac(b, 8), senderIp: readIpv4(b, 14), targetMac: readMac(b, 18), targetIp: readIpv4(b, 24) },
  };
}

export function buildArp(p: ArpPacket): Uint8Array {
  const b = new Uint8Array(ARP_LEN);
  writeU16(b, 0, ARPHRD_ETHER);
  writeU16(b, 2, ETHERTYPE_IPV4);
  b[4] = ETH_ALEN;
  b[5] = 4;
  writeU16(b, 6, p.op);
  writeMac(b, 8, p.senderMac);
  writeIpv4(b, 14, p.senderIp);
  writeMac(b, 18, p.targetMac);
  writeIpv4(b, 24, p.targetIp);
  return b;
}

/**
 * A gratuitous ARP announces the sender's own binding: sender and target
 * IP are the same (RFC 5227 "ARP announcement"; request or reply).
 */
export function isGratuitousArp(p: ArpPacket): boolean {
  return p.senderIp === p.targetIp && p.senderIp !== 0;
}

/** Broadcast "who has TARGET? tell SENDER". */
export function buildArpRequestFrame(senderMac: Mac, senderIp: Ipv4, targetIp: Ipv4): Uint8Array {
  const arp = buildArp({ op: ARPOP_REQUEST, senderMac, senderIp, targetMac: MAC_ZERO, targetIp });
  return buildEthernet({ dst: MAC_BROADCAST, src: senderMac, ethertype: ETHERTYPE_ARP, payload: arp });
}

/** Unicast "SENDER is at MAC" back to the asker. */
export function buildArpReplyFrame(senderMac: Mac, senderIp: Ipv4, targetMac: Mac, targetIp: Ipv4): Uint8Array {
  const arp = buildArp({ op: ARPOP_REPLY, senderMac, senderIp, targetMac, targetIp });
  return buildEthernet({ dst: targetMac, src: senderMac, ethertype: ETHERTYPE_ARP, payload: arp });
}

/** The broadcast request a host sends to announce (or re-announce after a move) its address. */
export function buildGratuitousArpFrame(mac: Mac, ip: Ipv4): Uint8Array {
  return buildArpRequestFrame(mac, ip, ip);
}
