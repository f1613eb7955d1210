/*
 * A stand-in guest on a bridge port, for benchmarks and tests that need a
 * peer without booting a kernel: a minimal IPv4 host that answers ARP for
 * its address and ICMP echo, and echoes UDP datagrams sent to its echo
 * ports back to the sender (the RFC 862 echo service). It answers to the
 * frame's source MAC instead of keeping an ARP cache.
 */
import { type Mac, type Ipv4, parseMac, parseIpv4, formatIpv4 } from './addr.js';
import {
  parseEthernet, parseArp, buildEthernet, buildArpReplyFrame, buildGratuitousArpFrame,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, ARPOP_REQUEST,
} from './ether.js';
import { parseIpv4Packet, buildIpv4, parseIcmpEcho, buildIcmpEcho, parseUdp, buildUdpPacket, IPPROTO_ICMP, IPPROTO_UDP } from './ip.js';
import type { Bridge, BridgeLink, BridgePort } from './bridge.js';

export interface EchoGuestOptions {
  readonly name: string;
  readonly mac: string;
  readonly ip: string;
  /** UDP ports whose datagrams are echoed (default [7]). */
  readonly echoPorts?: readonly number[];
}

export class EchoGuest implements BridgePort {
  readonly name: string;
  readonly mac: string;
  readonly ip: string;
  private readonly macNum: Mac;
  private readonly ipNum: Ipv4;
  private readonly echoPorts: ReadonlySet<number>;
  private link: BridgeLink | undefined;
  /** Frames received that it could not use (any reason). */
  ignored = 0;
  udpEchoed = 0;
  pingsAnswered = 0;
  arpAnswered = 0;
  /** The last 256 UDP datagrams received, for tests that look at what arrived. */
  readonly udpSeen: { srcIp: string; srcPort: number; dstPort: number; payload: Uint8Array }[] = [];

  constructor(opts: EchoGuestOptions) {
    const mac = parseMac(opts.mac);
    const ip = parseIpv4(opts.ip);
    if (mac === undefined || ip === undefined) throw new RangeError(`echo guest ${opts.name}: bad address ${opts.mac} / ${opts.ip}`);
    this.name = opts.name;
    this.macNum = mac;
    this.ipNum = ip;
    this.mac = opts.mac.toLowerCase();
    this.ip = opts.ip;
    this.echoPorts = new Set(opts.echoPorts ?? [7]);
  }

  /** Plug into a bridge (unplugging from the previous one: a "migration"). */
  plug(bridge: Bridge): this {
    this.link?.detach();
    this.link = bridge.attach(this);
    return this;
  }

  unplug(): void {
    this.link?.detach();
    this.link = undefined;
  }

  /** Broadcast a gratuitous ARP, as netfront does once reconnected. */
  announce(): void {
    this.link?.transmit(buildGratuitousArpFrame(this.macNum, this.ipNum));
  }

  /** Send raw bytes into the bridge as if from this guest. */
  transmit(frame: Uint8Array): void {
    this.link?.transmit(frame);
  }

  deliver(frame: Uint8Array): void {
    const eth = parseEthernet(frame);
    if (!eth.ok) {
      this.ignored++;
      return;
    }
    const { src, ethertype, payload } = eth.value;
    if (ethertype === ETHERTYPE_ARP) {
      const arp = parseArp(payload);
      if (arp.ok && arp.value.op === ARPOP_REQUEST && arp.value.targetIp === this.ipNum && arp.value.senderIp !== this.ipNum) {
        this.arpAnswered++;
        this.link?.transmit(buildArpReplyFrame(this.macNum, this.ipNum, arp.value.senderMac, arp.value.senderIp));
      } else {
        this.ignored++;
      }
      return;
    }
    const ip = ethertype === ETHERTYPE_IPV4 ? parseIpv4Packet(payload) : undefined;
    if (!ip?.ok || ip.value.dst !== this.ipNum) {
      this.ignored++;
      return;
    }
    const { src: peer, protocol } = ip.value;
    if (protocol === IPPROTO_ICMP) {
      const echo = parseIcmpEcho(ip.value.payload);
      if (!echo.ok || echo.value.kind !== 'request') {
        this.ignored++;
        return;
      }
      this.pingsAnswered++;
      const reply = buildIcmpEcho({ ...echo.value, kind: 'reply' });
      this.sendIp(src, buildIpv4({ src: this.ipNum, dst: peer, protocol: IPPROTO_ICMP, payload: reply }));
      return;
    }
    const udp = protocol === IPPROTO_UDP ? parseUdp(ip.value.payload, peer, this.ipNum) : undefined;
    if (!udp?.ok) {
      this.ignored++;
      return;
    }
    const d = udp.value;
    this.udpSeen.push({ srcIp: formatIpv4(peer), srcPort: d.srcPort, dstPort: d.dstPort, payload: d.payload.slice() });
    if (this.udpSeen.length > 256) this.udpSeen.shift();
    if (!this.echoPorts.has(d.dstPort)) return;
    this.udpEchoed++;
    this.sendIp(src, buildUdpPacket({ src: this.ipNum, dst: peer, srcPort: d.dstPort, dstPort: d.srcPort, payload: d.payload }));
  }

  private sendIp(dstMac: Mac, packet: Uint8Array): void {
    this.link?.transmit(buildEthernet({ dst: dstMac, src: this.macNum, ethertype: ETHERTYPE_IPV4, payload: packet }));
  }
}
