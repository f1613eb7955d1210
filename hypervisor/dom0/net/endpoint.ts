/*
 * dom0's own IP address on a bridge: what `ifconfig xenbr0 10.0.0.1/24`
 * gives dom0 on a real Xen host.
 *
 * A small IPv4 host on one bridge port:
 *  - ARP: answers requests for its address; keeps an ARP cache learned
 *    from every valid ARP it sees whose sender is on its subnet (requests,
 *    replies and gratuitous announcements alike, so a guest that moved or
 *    came back from a restore is found again through its announcement);
 *    resolves unknown neighbours with requests, retried and given up on by
 *    the injected clock, holding the outgoing packets meanwhile;
 *  - ICMP: answers echo requests; sends echo requests for `ping()` (the
 *    `xl network-ping` verb) and measures the round trip on the clock;
 *  - UDP: delivers datagrams to bound local ports, sends datagrams.
 * No routing beyond the subnet (no gateway), no fragments, no TCP.
 *
 * Time only moves when the machine says so: tick() retries ARP, expires
 * cache entries and times pings out.
 */
import createDebug from 'debug';
import {
  type Mac, type Ipv4, parseMac, parseIpv4, formatMac, formatIpv4, netmask, isMulticastMac,
  MAC_BROADCAST, IPV4_BROADCAST,
} from './addr.js';
import {
  type ArpPacket, parseEthernet, parseArp, buildEthernet, buildArpRequestFrame, buildArpReplyFrame,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, ARPOP_REQUEST,
} from './ether.js';
import {
  type Ipv4Packet, parseIpv4Packet, buildIpv4, parseIcmpEcho, buildIcmpEcho, parseUdp, buildUdp,
  IPPROTO_ICMP, IPPROTO_UDP, IPV4_HLEN, UDP_HLEN,
} from './ip.js';
import type { Bridge, BridgeLink, BridgePort, NetClock } from './bridge.js';

const log = createDebug('dom0:net');

/** dom0's MAC on the bridge: Xen's OUI 00:16:3e, in a range xl never hands to a guest. */
export const DOM0_MAC = '00:16:3e:ff:ff:01';
export const DOM0_IP = '10.0.0.1';
export const DOM0_PREFIX_LENGTH = 24;
export const EPHEMERAL_FIRST = 49152;
export const EPHEMERAL_LAST = 65535;

export interface Dom0EndpointOptions {
  readonly bridge: Bridge;
  readonly clock: NetClock;
  /** Bridge port name (default `dom0`). */
  readonly name?: string;
  readonly ip?: string;
  readonly prefixLength?: number;
  readonly mac?: string;
  /** Largest IP packet sent (default 1500). */
  readonly mtu?: number;
  /** An ARP cache entry not refreshed for this long is forgotten (default 300 s). */
  readonly arpLifetimeNs?: number;
  /** Interval between ARP requests for an unresolved neighbour (default 1 s). */
  readonly arpRetryNs?: number;
  /** ARP requests before giving up on a neighbour (default 3). */
  readonly arpAttempts?: number;
  /** Packets held per unresolved neighbour (default 32). */
  readonly arpQueueLimit?: number;
}

export interface NetError {
  readonly ok: false;
  readonly reason: string;
  readonly detail: string;
}
export type SendResult = { readonly ok: true } | NetError;

export type PingResult =
  | { readonly ok: true; readonly rttNs: number; readonly seq: number; readonly ttl: number; readonly bytes: number }
  | NetError;

export interface UdpMessage {
  readonly srcIp: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
  readonly timeNs: number;
}
export type UdpHandler = (m: UdpMessage) => void;

export interface UdpBinding {
  readonly port: number;
  close(): void;
}

export interface ArpEntry {
  readonly ip: string;
  readonly mac: string;
  readonly ageNs: number;
}

export interface EndpointCounters {
  rxFrames: number;
  txFrames: number;
  arpRequestsSent: number;
  arpRepliesSent: number;
  echoRepliesSent: number;
  echoRequestsSent: number;
  udpDelivered: number;
  udpSent: number;
}

interface Unresolved {
  readonly packets: Uint8Array[];
  attempts: number;
  nextNs: number;
}

interface PendingPing {
  readonly dst: Ipv4;
  readonly sentNs: number;
  readonly deadlineNs: number;
  readonly resolve: (r: PingResult) => void;
}

function netError(reason: string, detail: string): NetError {
  return { ok: false, reason, detail };
}

export class Dom0Endpoint implements BridgePort {
  readonly name: string;
  readonly ip: string;
  readonly mac: string;
  readonly prefixLength: number;
  readonly mtu: number;
  private readonly ipNum: Ipv4;
  private readonly macNum: Mac;
  private readonly mask: number;
  private readonly subnetBroadcast: Ipv4;
  private readonly clock: NetClock;
  private readonly link: BridgeLink;
  private readonly arpLifetimeNs: number;
  private readonly arpRetryNs: number;
  private readonly arpAttempts: number;
  private readonly arpQueueLimit: number;
  private readonly cache = new Map<Ipv4, { mac: Mac; seenNs: number }>();
  private readonly unresolved = new Map<Ipv4, Unresolved>();
  private readonly pings = new Map<number, PendingPing>();
  private readonly udpPorts = new Map<number, UdpHandler>();
  private readonly dropCounts = new Map<string, number>();
  private readonly stats: EndpointCounters = {
    rxFrames: 0, txFrames: 0, arpRequestsSent: 0, arpRepliesSent: 0,
    echoRepliesSent: 0, echoRequestsSent: 0, udpDelivered: 0, udpSent: 0,
  };
  private nextIpId = 1;
  private nextPingSeq = 1;
  private nextEphemeral = EPHEMERAL_FIRST;
  /** ICMP echo identifier of this endpoint's pings. */
  private readonly pingId = 0x0d00;
  private closed = false;

  constructor(opts: Dom0EndpointOptions) {
    this.name = opts.name ?? 'dom0';
    const ip = parseIpv4(opts.ip ?? DOM0_IP);
    const mac = parseMac(opts.mac ?? DOM0_MAC);
    const prefix = opts.prefixLength ?? DOM0_PREFIX_LENGTH;
    if (ip === undefined) throw new RangeError(`dom0 endpoint: ${opts.ip} is not an IPv4 address`);
    if (mac === undefined) throw new RangeError(`dom0 endpoint: ${opts.mac} is not a MAC address`);
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 30) throw new RangeError(`dom0 endpoint: prefix length ${prefix}`);
    this.ipNum = ip;
    this.macNum = mac;
    this.ip = formatIpv4(ip);
    this.mac = formatMac(mac);
    this.prefixLength = prefix;
    this.mask = netmask(prefix);
    this.subnetBroadcast = ((ip | ~this.mask) >>> 0) as Ipv4;
    this.mtu = opts.mtu ?? 1500;
    this.clock = opts.clock;
    this.arpLifetimeNs = opts.arpLifetimeNs ?? 300e9;
    this.arpRetryNs = opts.arpRetryNs ?? 1e9;
    this.arpAttempts = opts.arpAttempts ?? 3;
    this.arpQueueLimit = opts.arpQueueLimit ?? 32;
    this.link = opts.bridge.attach(this);
    log('%s: %s/%d at %s on %s', this.name, this.ip, prefix, this.mac, opts.bridge.name);
  }

  /** Frames dropped by the endpoint, by reason. */
  drops(): Record<string, number> {
    return Object.fromEntries(this.dropCounts);
  }

  counters(): Readonly<EndpointCounters> {
    return this.stats;
  }

  /** The ARP cache, expired entries left out. */
  arpCache(): ArpEntry[] {
    const now = this.clock.now();
    const out: ArpEntry[] = [];
    for (const [ip, e] of this.cache) {
      if (now - e.seenNs <= this.arpLifetimeNs) out.push({ ip: formatIpv4(ip), mac: formatMac(e.mac), ageNs: now - e.seenNs });
    }
    return out;
  }

  /** MAC cached for an IP, if fresh. */
  resolve(ip: string): string | undefined {
    const a = parseIpv4(ip);
    const m = a === undefined ? undefined : this.freshMac(a);
    return m === undefined ? undefined : formatMac(m);
  }

  /** IP a MAC last announced or used in ARP, if fresh (a vif configured without `ip=`). */
  ipOf(mac: string): string | undefined {
    const m = parseMac(mac);
    const now = this.clock.now();
    let best: { ip: Ipv4; seenNs: number } | undefined;
    for (const [ip, e] of this.cache) {
      if (e.mac === m && now - e.seenNs <= this.arpLifetimeNs && (!best || e.seenNs > best.seenNs)) best = { ip, seenNs: e.seenNs };
    }
    return best ? formatIpv4(best.ip) : undefined;
  }

  /**
   * Receive datagrams for a local UDP port (0: pick a free ephemeral port).
   * A port bound twice is our own configuration bug and throws.
   */
  bindUdp(port: number, handler: UdpHandler): UdpBinding {
    let p = port;
    if (p === 0) {
      const span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1;
      for (let i = 0; i < span && this.udpPorts.has(this.nextEphemeral); i++) this.advanceEphemeral();
      if (this.udpPorts.has(this.nextEphemeral)) throw new Error(`${this.name}: no free ephemeral UDP port`);
      p = this.nextEphemeral;
      this.advanceEphemeral();
    }
    if (!Number.isInteger(p) || p < 1 || p > 0xffff) throw new RangeError(`${this.name}: UDP port ${port}`);
    if (this.udpPorts.has(p)) throw new Error(`${this.name}: UDP port ${p} is already bound`);
    this.udpPorts.set(p, handler);
    return { port: p, close: () => { if (this.udpPorts.get(p) === handler) this.udpPorts.delete(p); } };
  }

  private advanceEphemeral(): void {
    this.nextEphemeral = this.nextEphemeral >= EPHEMERAL_LAST ? EPHEMERAL_FIRST : this.nextEphemeral + 1;
  }

  /** Send a datagram from this endpoint. `ok` means sent or held waiting for ARP. */
  sendUdp(d: { readonly dstIp: string; readonly dstPort: number; readonly srcPort: number; readonly payload: Uint8Array }): SendResult {
    const dst = parseIpv4(d.dstIp);
    if (dst === undefined) return netError('bad-address', `${d.dstIp} is not an IPv4 address`);
    if (!(d.dstPort > 0 && d.dstPort <= 0xffff) || !(d.srcPort > 0 && d.srcPort <= 0xffff)) {
      return netError('bad-port', `UDP ports ${d.srcPort} -> ${d.dstPort}`);
    }
    if (IPV4_HLEN + UDP_HLEN + d.payload.length > this.mtu) {
      return netError('too-big', `UDP payload of ${d.payload.length} bytes exceeds the MTU of ${this.mtu}`);
    }
    const udp = buildUdp({ src: this.ipNum, dst, srcPort: d.srcPort, dstPort: d.dstPort, payload: d.payload });
    const r = this.sendIp(dst, IPPROTO_UDP, udp);
    if (r.ok) this.stats.udpSent++;
    return r;
  }

  /**
   * ICMP echo to `ip`; resolves with the round trip in clock ns, or an
   * error (`timeout` once tick() sees the deadline pass). Never rejects.
   */
  ping(ip: string, opts: { readonly timeoutNs?: number; readonly data?: Uint8Array } = {}): Promise<PingResult> {
    const dst = parseIpv4(ip);
    if (dst === undefined) return Promise.resolve(netError('bad-address', `${ip} is not an IPv4 address`));
    if (this.closed) return Promise.resolve(netError('closed', `${this.name} is closed`));
    const seq = this.nextPingSeq;
    this.nextPingSeq = (this.nextPingSeq + 1) & 0xffff || 1;
    const data = opts.data ?? new Uint8Array(56).map((_, i) => i);
    const now = this.clock.now();
    return new Promise((resolve) => {
      const echo = buildIcmpEcho({ kind: 'request', id: this.pingId, seq, data });
      // Registered first: the bridge may carry the reply back before sendIp returns.
      this.pings.set(seq, { dst, sentNs: now, deadlineNs: now + (opts.timeoutNs ?? 1e9), resolve });
      const sent = this.sendIp(dst, IPPROTO_ICMP, echo);
      if (!sent.ok) {
        this.pings.delete(seq);
        resolve(sent);
        return;
      }
      this.stats.echoRequestsSent++;
    });
  }

  /** Let time act: ARP retries and give-ups, cache expiry, ping timeouts. */
  tick(): void {
    const now = this.clock.now();
    for (const [seq, p] of this.pings) {
      if (now >= p.deadlineNs) {
        this.pings.delete(seq);
        p.resolve(netError('timeout', `no echo reply from ${formatIpv4(p.dst)} within ${(p.deadlineNs - p.sentNs) / 1e6} ms`));
      }
    }
    for (const [ip, u] of this.unresolved) {
      if (now < u.nextNs) continue;
      if (u.attempts >= this.arpAttempts) {
        this.unresolved.delete(ip);
        this.countDrop('arp-unresolved', `${u.packets.length} packet(s) for ${formatIpv4(ip)}: no ARP reply after ${u.attempts} request(s)`, u.packets.length);
        continue;
      }
      this.sendArpRequest(ip, u, now);
    }
    for (const [ip, e] of this.cache) if (now - e.seenNs > this.arpLifetimeNs) this.cache.delete(ip);
  }

  /** Unplug from the bridge; pending pings resolve with `closed`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.link.detach();
    for (const p of this.pings.values()) p.resolve(netError('closed', `${this.name} closed`));
    this.pings.clear();
    this.unresolved.clear();
    this.udpPorts.clear();
  }

  /** BridgePort: a frame from the bridge. Never throws on its content. */
  deliver(frame: Uint8Array): void {
    this.stats.rxFrames++;
    const eth = parseEthernet(frame);
    if (!eth.ok) {
      this.countDrop(eth.reason, eth.detail);
      return;
    }
    const { dst, ethertype, payload } = eth.value;
    if (dst !== this.macNum && dst !== MAC_BROADCAST) {
      // Flooded unicast for somebody else, or multicast: not ours, not an error.
      this.countDrop('not-for-us', `frame to ${formatMac(dst)}`, 1, false);
      return;
    }
    if (ethertype === ETHERTYPE_ARP) {
      const arp = parseArp(payload);
      if (arp.ok) this.onArp(arp.value);
      else this.countDrop(arp.reason, arp.detail);
    } else if (ethertype === ETHERTYPE_IPV4) {
      const ip = parseIpv4Packet(payload);
      if (ip.ok) this.onIpv4(ip.value);
      else this.countDrop(ip.reason, ip.detail);
    } else {
      this.countDrop('ethertype', `ethertype 0x${ethertype.toString(16)}`);
    }
  }

  private countDrop(reason: string, detail: string, n = 1, verbose = true): void {
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + n);
    if (verbose) log('%s: drop (%s) %s', this.name, reason, detail);
  }

  private inSubnet(ip: Ipv4): boolean {
    return ((ip & this.mask) >>> 0) === ((this.ipNum & this.mask) >>> 0) && ip !== this.subnetBroadcast && (ip & ~this.mask) !== 0;
  }

  private freshMac(ip: Ipv4): Mac | undefined {
    const e = this.cache.get(ip);
    return e && this.clock.now() - e.seenNs <= this.arpLifetimeNs ? e.mac : undefined;
  }

  private onArp(arp: ArpPacket): void {
    if (arp.senderIp === this.ipNum) {
      if (arp.senderMac !== this.macNum) this.countDrop('ip-conflict', `${formatMac(arp.senderMac)} claims ${this.ip}`);
      return;
    }
    if (this.inSubnet(arp.senderIp) && !isMulticastMac(arp.senderMac) && arp.senderMac !== 0) {
      const prev = this.cache.get(arp.senderIp);
      if (prev?.mac !== arp.senderMac) log('%s: arp %s is-at %s', this.name, formatIpv4(arp.senderIp), formatMac(arp.senderMac));
      this.cache.set(arp.senderIp, { mac: arp.senderMac, seenNs: this.clock.now() });
      this.flushUnresolved(arp.senderIp, arp.senderMac);
    }
    if (arp.op === ARPOP_REQUEST && arp.targetIp === this.ipNum && !isMulticastMac(arp.senderMac) && arp.senderMac !== 0) {
      this.emit(buildArpReplyFrame(this.macNum, this.ipNum, arp.senderMac, arp.senderIp));
      this.stats.arpRepliesSent++;
    }
  }

  private onIpv4(ip: Ipv4Packet): void {
    const toUs = ip.dst === this.ipNum;
    if (!toUs && ip.dst !== IPV4_BROADCAST && ip.dst !== this.subnetBroadcast) {
      this.countDrop('not-for-us', `IPv4 to ${formatIpv4(ip.dst)}`, 1, false);
      return;
    }
    if (ip.protocol === IPPROTO_ICMP) {
      const echo = parseIcmpEcho(ip.payload);
      if (!echo.ok) {
        this.countDrop(`icmp-${echo.reason}`, echo.detail);
      } else if (echo.value.kind === 'request') {
        // Broadcast pings go unanswered, as on most hosts.
        if (!toUs) return;
        const reply = buildIcmpEcho({ kind: 'reply', id: echo.value.id, seq: echo.value.seq, data: echo.value.data });
        if (this.sendIp(ip.src, IPPROTO_ICMP, reply).ok) this.stats.echoRepliesSent++;
      } else {
        this.onEchoReply(ip, echo.value.id, echo.value.seq, echo.value.data.length);
      }
      return;
    }
    if (ip.protocol === IPPROTO_UDP) {
      const udp = parseUdp(ip.payload, ip.src, ip.dst);
      if (!udp.ok) {
        this.countDrop(`udp-${udp.reason}`, udp.detail);
        return;
      }
      const handler = this.udpPorts.get(udp.value.dstPort);
      if (!handler) {
        this.countDrop('udp-no-port', `datagram from ${formatIpv4(ip.src)}:${udp.value.srcPort} to unbound port ${udp.value.dstPort}`);
        return;
      }
      this.stats.udpDelivered++;
      handler({ srcIp: formatIpv4(ip.src), srcPort: udp.value.srcPort, dstPort: udp.value.dstPort, payload: udp.value.payload.slice(), timeNs: this.clock.now() });
      return;
    }
    this.countDrop('ip-protocol', `IP protocol ${ip.protocol}`);
  }

  private onEchoReply(ip: Ipv4Packet, id: number, seq: number, bytes: number): void {
    const p = this.pings.get(seq);
    if (id !== this.pingId || !p || p.dst !== ip.src) {
      this.countDrop('icmp-unexpected-reply', `echo reply id ${id} seq ${seq} from ${formatIpv4(ip.src)}`);
      return;
    }
    this.pings.delete(seq);
    p.resolve({ ok: true, rttNs: this.clock.now() - p.sentNs, seq, ttl: ip.ttl, bytes });
  }

  private sendIp(dst: Ipv4, protocol: number, payload: Uint8Array): SendResult {
    if (this.closed) return netError('closed', `${this.name} is closed`);
    const packet = buildIpv4({ src: this.ipNum, dst, protocol, payload, id: this.nextIpId });
    this.nextIpId = (this.nextIpId + 1) & 0xffff;
    if (dst === IPV4_BROADCAST || dst === this.subnetBroadcast) {
      this.emitIp(MAC_BROADCAST, packet);
      return { ok: true };
    }
    if (dst === this.ipNum) return netError('no-route', `${formatIpv4(dst)} is ${this.name} itself`);
    if (!this.inSubnet(dst)) return netError('no-route', `${formatIpv4(dst)} is not on ${this.ip}/${this.prefixLength} and there is no gateway`);
    const mac = this.freshMac(dst);
    if (mac !== undefined) {
      this.emitIp(mac, packet);
      return { ok: true };
    }
    const held = this.unresolved.get(dst);
    if (held) {
      if (held.packets.length >= this.arpQueueLimit) {
        held.packets.shift();
        this.countDrop('arp-queue-full', `oldest packet held for ${formatIpv4(dst)}`);
      }
      held.packets.push(packet);
      return { ok: true };
    }
    // Held before asking: the answer may come back before sendArpRequest returns.
    const u: Unresolved = { packets: [packet], attempts: 0, nextNs: 0 };
    this.unresolved.set(dst, u);
    this.sendArpRequest(dst, u, this.clock.now());
    return { ok: true };
  }

  private sendArpRequest(ip: Ipv4, u: Unresolved, now: number): void {
    u.attempts++;
    u.nextNs = now + this.arpRetryNs;
    this.stats.arpRequestsSent++;
    this.emit(buildArpRequestFrame(this.macNum, this.ipNum, ip));
  }

  private flushUnresolved(ip: Ipv4, mac: Mac): void {
    const u = this.unresolved.get(ip);
    if (!u) return;
    this.unresolved.delete(ip);
    for (const packet of u.packets) this.emitIp(mac, packet);
  }

  private emitIp(dst: Mac, packet: Uint8Array): void {
    this.emit(buildEthernet({ dst, src: this.macNum, ethertype: ETHERTYPE_IPV4, payload: packet }));
  }

  private emit(frame: Uint8Array): void {
    this.stats.txFrames++;
    this.link.transmit(frame);
  }
}
