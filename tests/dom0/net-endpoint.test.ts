/*
 * dom0's endpoint on the bridge: ARP answers and cache (gratuitous ARP
 * updates it), ICMP echo both ways with RTT and timeouts on the injected
 * clock, UDP delivery and sending, heartbeats; and two stand-in guests
 * talking to each other through the bridge.
 */
import test from 'ava';
import { Bridge } from '../../hypervisor/dom0/net/bridge.js';
import { Dom0Endpoint } from '../../hypervisor/dom0/net/endpoint.js';
import { HeartbeatMonitor } from '../../hypervisor/dom0/net/heartbeat.js';
import { EchoGuest } from '../../hypervisor/dom0/net/echo-guest.js';
import { type Mac, type Ipv4, parseMac, parseIpv4, formatMac, formatIpv4, inetChecksum } from '../../hypervisor/dom0/net/addr.js';
import {
  parseEthernet, parseArp, buildEthernet, buildArpRequestFrame, buildArpReplyFrame, buildGratuitousArpFrame,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, ARPOP_REPLY, ARPOP_REQUEST,
} from '../../hypervisor/dom0/net/ether.js';
import { parseIpv4Packet, buildIpv4, buildIcmpEcho, parseIcmpEcho, buildUdpPacket, parseUdp, IPPROTO_ICMP } from '../../hypervisor/dom0/net/ip.js';
import { FakeClock, RecordingPort, toHex, hex } from './net-fixture.js';

const mac = (s: string): Mac => parseMac(s)!;
const ip = (s: string): Ipv4 => parseIpv4(s)!;
const DOM0_MAC = mac('00:16:3e:ff:ff:01');
const G1_MAC = mac('00:16:3e:00:00:02');
const G2_MAC = mac('00:16:3e:00:00:03');
const DOM0_IP = ip('10.0.0.1');
const G1_IP = ip('10.0.0.2');
const G2_IP = ip('10.0.0.3');
const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

function setup() {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock });
  const guest = new RecordingPort('vif1.0');
  const g = bridge.attach(guest);
  return { clock, bridge, dom0, guest, g };
}

function ipFrame(srcMac: Mac, dstMac: Mac, packet: Uint8Array): Uint8Array {
  return buildEthernet({ dst: dstMac, src: srcMac, ethertype: ETHERTYPE_IPV4, payload: packet });
}

function echoRequest(srcMac: Mac, srcIp: Ipv4, dstMac: Mac, dstIp: Ipv4, seq: number, data = ascii('ping!')): Uint8Array {
  return ipFrame(srcMac, dstMac, buildIpv4({ src: srcIp, dst: dstIp, protocol: IPPROTO_ICMP, payload: buildIcmpEcho({ kind: 'request', id: 0x4242, seq, data }) }));
}

/** What kind of frame this is, for compact assertions. */
function describe(f: Uint8Array): string {
  const eth = parseEthernet(f);
  if (!eth.ok) return `bad ${eth.reason}`;
  if (eth.value.ethertype === ETHERTYPE_ARP) {
    const a = parseArp(eth.value.payload);
    if (!a.ok) return `bad arp ${a.reason}`;
    const who = formatIpv4;
    return a.value.op === ARPOP_REQUEST ? `arp who-has ${who(a.value.targetIp)} tell ${who(a.value.senderIp)}` : `arp ${who(a.value.senderIp)} is-at ${formatMac(a.value.senderMac)} to ${formatMac(eth.value.dst)}`;
  }
  const p = parseIpv4Packet(eth.value.payload);
  if (!p.ok) return `bad ip ${p.reason}`;
  const e = parseIcmpEcho(p.value.payload);
  if (e.ok) return `icmp ${e.value.kind} seq ${e.value.seq} to ${formatMac(eth.value.dst)}`;
  const u = parseUdp(p.value.payload, p.value.src, p.value.dst);
  if (u.ok) return `udp ${u.value.srcPort}->${u.value.dstPort} "${new TextDecoder().decode(u.value.payload)}"`;
  return 'other';
}

test('dom0 answers ARP for its address with exact bytes, and learns the asker', (t) => {
  const { dom0, guest, g } = setup();
  t.is(dom0.ip, '10.0.0.1');
  t.is(dom0.mac, '00:16:3e:ff:ff:01');
  g.transmit(buildArpRequestFrame(G1_MAC, G1_IP, DOM0_IP));
  t.deepEqual(guest.take().map(toHex), [toHex(hex(`
    00163e000002 00163effff01 0806
    0001 0800 0604 0002 00163effff01 0a000001 00163e000002 0a000002
    000000000000000000000000000000000000`))]);
  t.deepEqual(dom0.arpCache(), [{ ip: '10.0.0.2', mac: '00:16:3e:00:00:02', ageNs: 0 }]);
  t.is(dom0.counters().arpRepliesSent, 1);
  g.transmit(buildArpRequestFrame(G1_MAC, G1_IP, G2_IP));
  t.deepEqual(guest.take(), [], 'no answer for an address that is not dom0\'s');
});

test('dom0 answers an ICMP echo request with the same id, sequence and data', (t) => {
  const { dom0, guest, g } = setup();
  g.transmit(buildArpRequestFrame(G1_MAC, G1_IP, DOM0_IP));
  guest.take();
  g.transmit(echoRequest(G1_MAC, G1_IP, DOM0_MAC, DOM0_IP, 7, ascii('0123456789')));
  const [reply] = guest.take();
  const eth = parseEthernet(reply!);
  if (!eth.ok) return t.fail(eth.detail);
  t.is(eth.value.dst, G1_MAC);
  t.is(eth.value.src, DOM0_MAC);
  const p = parseIpv4Packet(eth.value.payload);
  if (!p.ok) return t.fail(p.detail);
  t.like(p.value, { src: DOM0_IP, dst: G1_IP, protocol: IPPROTO_ICMP, ttl: 64 });
  t.deepEqual(parseIcmpEcho(p.value.payload), { ok: true, value: { kind: 'reply', id: 0x4242, seq: 7, data: ascii('0123456789') } });
  t.is(dom0.counters().echoRepliesSent, 1);
});

test('an echo request from an unknown sender is answered after dom0 resolves it by ARP', (t) => {
  const { guest, g } = setup();
  g.transmit(echoRequest(G1_MAC, G1_IP, DOM0_MAC, DOM0_IP, 1));
  t.deepEqual(guest.take().map(describe), ['arp who-has 10.0.0.2 tell 10.0.0.1']);
  g.transmit(buildArpReplyFrame(G1_MAC, G1_IP, DOM0_MAC, DOM0_IP));
  t.deepEqual(guest.take().map(describe), ['icmp reply seq 1 to 00:16:3e:00:00:02']);
});

test('a gratuitous ARP updates dom0\'s ARP cache: the next ping goes to the new MAC', async (t) => {
  const { dom0, guest, g } = setup();
  g.transmit(buildArpRequestFrame(G1_MAC, G1_IP, DOM0_IP));
  guest.take();
  t.is(dom0.resolve('10.0.0.2'), '00:16:3e:00:00:02');
  // Same IP, new MAC (a guest restored with another vif MAC), announced.
  g.transmit(buildGratuitousArpFrame(G2_MAC, G1_IP));
  t.is(dom0.resolve('10.0.0.2'), '00:16:3e:00:00:03');
  t.is(dom0.ipOf('00:16:3e:00:00:03'), '10.0.0.2');
  const p = dom0.ping('10.0.0.2');
  t.deepEqual(guest.take().map(describe), ['icmp request seq 1 to 00:16:3e:00:00:03']);
  dom0.close();
  t.like(await p, { ok: false, reason: 'closed' });
});

test('a gratuitous ARP claiming dom0\'s own address is counted as a conflict, not cached', (t) => {
  const { dom0, g } = setup();
  g.transmit(buildGratuitousArpFrame(G1_MAC, DOM0_IP));
  t.deepEqual(dom0.arpCache(), []);
  t.is(dom0.drops()['ip-conflict'], 1);
});

test('ping measures the round trip on the injected clock, ARP resolution included', async (t) => {
  const { clock, dom0, guest, g } = setup();
  const result = dom0.ping('10.0.0.2', { timeoutNs: 1e9 });
  t.deepEqual(guest.take().map(describe), ['arp who-has 10.0.0.2 tell 10.0.0.1']);
  clock.advance(3e6);
  g.transmit(buildArpReplyFrame(G1_MAC, G1_IP, DOM0_MAC, DOM0_IP));
  const [req] = guest.take();
  t.is(describe(req!), 'icmp request seq 1 to 00:16:3e:00:00:02');
  clock.advance(2e6);
  // Echo it back as the guest would.
  const ipPkt = parseIpv4Packet(req!.subarray(14));
  if (!ipPkt.ok) return t.fail(ipPkt.detail);
  const echo = parseIcmpEcho(ipPkt.value.payload);
  if (!echo.ok) return t.fail(echo.detail);
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, buildIpv4({ src: G1_IP, dst: DOM0_IP, protocol: IPPROTO_ICMP, ttl: 63, payload: buildIcmpEcho({ ...echo.value, kind: 'reply' }) })));
  t.deepEqual(await result, { ok: true, rttNs: 5e6, seq: 1, ttl: 63, bytes: 56 });
  t.is(dom0.drops()['icmp-unexpected-reply'], undefined);
});

test('ping times out by tick() after the deadline; ARP is retried then given up, counted', async (t) => {
  const { clock, dom0, guest } = setup();
  const result = dom0.ping('10.0.0.9', { timeoutNs: 5e9 });
  let settled = false;
  void result.then(() => { settled = true; });
  for (let s = 1; s <= 4; s++) {
    clock.advance(1e9);
    dom0.tick();
  }
  await Promise.resolve();
  t.false(settled, 'still waiting at 4 s');
  t.deepEqual(guest.take().map(describe), Array(3).fill('arp who-has 10.0.0.9 tell 10.0.0.1'), 'three ARP requests, one per second');
  t.is(dom0.drops()['arp-unresolved'], 1);
  clock.advance(1e9);
  dom0.tick();
  t.deepEqual(await result, { ok: false, reason: 'timeout', detail: 'no echo reply from 10.0.0.9 within 5000 ms' });
});

test('ping outside the subnet or to a bad address fails at once', async (t) => {
  const { dom0 } = setup();
  t.like(await dom0.ping('192.168.1.1'), { ok: false, reason: 'no-route' });
  t.like(await dom0.ping('10.0.0.1'), { ok: false, reason: 'no-route' });
  t.like(await dom0.ping('not-an-ip'), { ok: false, reason: 'bad-address' });
});

test('ping a stand-in guest: answered at the same simulated instant', async (t) => {
  const { bridge, dom0 } = setup();
  const guest = new EchoGuest({ name: 'vif2.0', mac: '00:16:3e:00:00:03', ip: '10.0.0.3' }).plug(bridge);
  t.like(await dom0.ping('10.0.0.3'), { ok: true, rttNs: 0, seq: 1 });
  t.like(await dom0.ping('10.0.0.3'), { ok: true, rttNs: 0, seq: 2 });
  t.is(guest.pingsAnswered, 2);
  t.is(guest.arpAnswered, 1, 'the second ping used the ARP cache');
});

test('UDP: bound ports get datagrams; unbound ports, bad checksums and fragments are counted drops', (t) => {
  const { dom0, g } = setup();
  const got: string[] = [];
  const b = dom0.bindUdp(5000, (m) => got.push(`${m.srcIp}:${m.srcPort} -> ${m.dstPort} "${new TextDecoder().decode(m.payload)}"`));
  t.is(b.port, 5000);
  t.throws(() => dom0.bindUdp(5000, () => {}), { message: /UDP port 5000 is already bound/ });
  const udp = (dstPort: number, text: string): Uint8Array => buildUdpPacket({ src: G1_IP, dst: DOM0_IP, srcPort: 4000, dstPort, payload: ascii(text) });
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, udp(5000, 'hello')));
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, udp(5001, 'nobody')));
  const bad = udp(5000, 'corrupt'); bad[bad.length - 1]! ^= 0xff;
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, bad));
  const frag = buildIpv4({ src: G1_IP, dst: DOM0_IP, protocol: 17, payload: udp(5000, 'x').subarray(20) });
  frag[6] = 0x20; frag[10] = 0; frag[11] = 0;
  const c = inetChecksum(frag, 0, 20);
  frag[10] = c >> 8; frag[11] = c & 0xff;
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, frag));
  t.deepEqual(got, ['10.0.0.2:4000 -> 5000 "hello"']);
  t.like(dom0.drops(), { 'udp-no-port': 1, 'udp-bad-checksum': 1, fragment: 1 });
  b.close();
  g.transmit(ipFrame(G1_MAC, DOM0_MAC, udp(5000, 'after close')));
  t.is(got.length, 1);
});

test('UDP: sendUdp builds the datagram from dom0; ephemeral ports are allocated in order; too big is an error', (t) => {
  const { dom0, guest, g } = setup();
  g.transmit(buildGratuitousArpFrame(G1_MAC, G1_IP));
  const e1 = dom0.bindUdp(0, () => {});
  const e2 = dom0.bindUdp(0, () => {});
  t.deepEqual([e1.port, e2.port], [49152, 49153]);
  t.deepEqual(dom0.sendUdp({ dstIp: '10.0.0.2', dstPort: 7, srcPort: e1.port, payload: ascii('hi') }), { ok: true });
  const [f] = guest.take();
  // Ethernet header, then the golden packet of net-wire.test.ts (same addresses, ports, id 1).
  t.is(toHex(f!.subarray(0, 44)), toHex(hex(`00163e000002 00163effff01 0800
    4500 001e 0001 0000 4011 66cc 0a000001 0a000002 c000 0007 000a c366 6869`)));
  t.like(dom0.sendUdp({ dstIp: '10.0.0.2', dstPort: 7, srcPort: 1, payload: new Uint8Array(1473) }), { ok: false, reason: 'too-big' });
  t.like(dom0.sendUdp({ dstIp: '10.0.0.2', dstPort: 0, srcPort: 1, payload: new Uint8Array(1) }), { ok: false, reason: 'bad-port' });
  t.is(dom0.counters().udpSent, 1);
});

test('ARP cache entries expire by the clock and are then resolved again', (t) => {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock, arpLifetimeNs: 60e9 });
  const guest = new RecordingPort('vif1.0');
  const g = bridge.attach(guest);
  g.transmit(buildGratuitousArpFrame(G1_MAC, G1_IP));
  clock.advance(61e9);
  dom0.tick();
  t.deepEqual(dom0.arpCache(), []);
  dom0.sendUdp({ dstIp: '10.0.0.2', dstPort: 9, srcPort: 9, payload: ascii('q') });
  t.deepEqual(guest.take().map(describe), ['arp who-has 10.0.0.2 tell 10.0.0.1']);
  g.transmit(buildArpReplyFrame(G1_MAC, G1_IP, DOM0_MAC, DOM0_IP));
  t.deepEqual(guest.take().map(describe), ['udp 9->9 "q"'], 'the held datagram leaves once resolved');
});

test('heartbeats are counted per source IP, with the largest gap', (t) => {
  const { clock, dom0, g } = setup();
  const hb = new HeartbeatMonitor(dom0, 7777);
  const beats: number[] = [];
  hb.onBeat((_m, s) => beats.push(s.count));
  const beat = (srcIp: Ipv4, srcMac: Mac, n: number): void => {
    g.transmit(ipFrame(srcMac, DOM0_MAC, buildUdpPacket({ src: srcIp, dst: DOM0_IP, srcPort: 1234, dstPort: 7777, payload: ascii(`beat ${n}`) })));
  };
  beat(G1_IP, G1_MAC, 1);
  clock.advance(1e9);
  beat(G1_IP, G1_MAC, 2);
  beat(G2_IP, G2_MAC, 1);
  clock.advance(3e9);
  beat(G1_IP, G1_MAC, 3);
  t.is(hb.count('10.0.0.2'), 3);
  t.is(hb.count('10.0.0.3'), 1);
  t.is(hb.count('10.0.0.4'), 0);
  t.deepEqual(hb.source('10.0.0.2'), { ip: '10.0.0.2', count: 3, firstNs: 0, lastNs: 4e9, maxGapNs: 3e9, lastPayload: 'beat 3' });
  t.deepEqual(beats, [1, 2, 1, 3]);
  t.is(hb.all().length, 2);
  hb.close();
  beat(G1_IP, G1_MAC, 4);
  t.is(hb.count('10.0.0.2'), 3);
});

test('two guests on the bridge exchange ARP and ICMP; dom0 only sees the broadcast', (t) => {
  const { bridge, dom0 } = setup();
  const pinger = new RecordingPort('vif2.0');
  const p = bridge.attach(pinger);
  const echo = new EchoGuest({ name: 'vif3.0', mac: '00:16:3e:00:00:03', ip: '10.0.0.3' }).plug(bridge);
  const dom0Rx = dom0.counters().rxFrames;

  p.transmit(buildArpRequestFrame(G1_MAC, G1_IP, G2_IP));
  const [arpReply] = pinger.take();
  const a = parseArp(arpReply!.subarray(14));
  t.like(a, { ok: true, value: { op: ARPOP_REPLY, senderMac: G2_MAC, senderIp: G2_IP, targetMac: G1_MAC, targetIp: G1_IP } });
  t.is(bridge.lookup('00:16:3e:00:00:03'), 'vif3.0');

  p.transmit(echoRequest(G1_MAC, G1_IP, G2_MAC, G2_IP, 1, ascii('guest to guest')));
  const [reply] = pinger.take();
  t.is(describe(reply!), 'icmp reply seq 1 to 00:16:3e:00:00:02');
  t.is(echo.pingsAnswered, 1);
  // dom0 saw the broadcast ARP request (and learned the asker) but none of the unicast.
  t.is(dom0.counters().rxFrames - dom0Rx, 1);
  t.deepEqual(dom0.arpCache().map((e) => e.ip), ['10.0.0.2']);
  t.is(bridge.counters('dom0')!.txFrames, 1);
});
