/*
 * Wire formats of dom0's network: golden bytes (checksums worked out by
 * hand in the comments, and the IPv4 header from RFC 1071 folklore /
 * Wikipedia's worked example), round trips, and hostile input.
 */
import test from 'ava';
import {
  type Ipv4, type Mac, parseMac, formatMac, parseIpv4, formatIpv4, isMulticastMac, inetChecksum, readMac, writeMac,
} from '../../hypervisor/dom0/net/addr.js';
import {
  parseEthernet, buildEthernet, parseArp, buildArp, isGratuitousArp, buildArpRequestFrame, buildArpReplyFrame,
  buildGratuitousArpFrame, ETHERTYPE_ARP, ETH_HLEN, ARPOP_REQUEST, ARPOP_REPLY,
} from '../../hypervisor/dom0/net/ether.js';
import {
  parseIpv4Packet, buildIpv4, parseIcmp, parseIcmpEcho, buildIcmpEcho, parseUdp, buildUdp, buildUdpPacket,
  completeChecksum, IPPROTO_UDP, IPPROTO_ICMP,
} from '../../hypervisor/dom0/net/ip.js';
import { hex, toHex, seededRandom, randomBytes } from './net-fixture.js';

const ip = (s: string): Ipv4 => parseIpv4(s)!;
const mac = (s: string): Mac => parseMac(s)!;
const DOM0_MAC = mac('00:16:3e:ff:ff:01');
const GUEST_MAC = mac('00:16:3e:00:00:02');
const DOM0_IP = ip('10.0.0.1');
const GUEST_IP = ip('10.0.0.2');
const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

test('MAC and IPv4 text forms round-trip; bad text is undefined', (t) => {
  t.is(formatMac(mac('00:16:3E:FF:ff:01')), '00:16:3e:ff:ff:01');
  t.is(formatMac(mac('00-16-3e-00-00-02')), '00:16:3e:00:00:02');
  t.is(formatMac(mac('ff:ff:ff:ff:ff:ff')), 'ff:ff:ff:ff:ff:ff');
  for (const bad of ['00:16:3e:ff:ff', '00:16:3e:ff:ff:01:02', '00:16-3e:ff:ff:01', 'gg:16:3e:ff:ff:01', '']) t.is(parseMac(bad), undefined, bad);
  t.is(formatIpv4(ip('10.0.0.1')), '10.0.0.1');
  t.is(ip('255.255.255.255') as number, 0xffffffff);
  for (const bad of ['10.0.0.256', '10.0.0', '10.0.0.01', '1.2.3.4.5', ' 10.0.0.1']) t.is(parseIpv4(bad), undefined, bad);
  t.true(isMulticastMac(mac('ff:ff:ff:ff:ff:ff')));
  t.true(isMulticastMac(mac('01:00:5e:00:00:01')));
  t.false(isMulticastMac(DOM0_MAC));
  const b = new Uint8Array(8);
  writeMac(b, 1, mac('fe:dc:ba:98:76:54'));
  t.is(toHex(b), '00fedcba98765400');
  t.is(formatMac(readMac(b, 1)), 'fe:dc:ba:98:76:54');
});

test('Internet checksum: odd length pads with zero; a packet with its checksum sums to 0', (t) => {
  // 0x0102 + 0x0300 = 0x0402 -> ~ = 0xfbfd
  t.is(inetChecksum(Uint8Array.of(1, 2, 3)), 0xfbfd);
  t.is(inetChecksum(hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7')), 0);
});

test('ARP request golden bytes (broadcast, padded to 60)', (t) => {
  const f = buildArpRequestFrame(DOM0_MAC, DOM0_IP, GUEST_IP);
  t.is(toHex(f), toHex(hex(`
    ffffffffffff 00163effff01 0806
    0001 0800 06 04 0001 00163effff01 0a000001 000000000000 0a000002
    000000000000000000000000000000000000`)));
  t.is(f.length, 60);
  const eth = parseEthernet(f);
  if (!eth.ok) return t.fail(eth.detail);
  t.is(eth.value.ethertype, ETHERTYPE_ARP);
  const arp = parseArp(eth.value.payload);
  t.deepEqual(arp, { ok: true, value: { op: ARPOP_REQUEST, senderMac: DOM0_MAC, senderIp: DOM0_IP, targetMac: 0 as Mac, targetIp: GUEST_IP } });
  if (arp.ok) t.false(isGratuitousArp(arp.value));
});

test('ARP reply and gratuitous ARP golden bytes', (t) => {
  t.is(toHex(buildArpReplyFrame(GUEST_MAC, GUEST_IP, DOM0_MAC, DOM0_IP)), toHex(hex(`
    00163effff01 00163e000002 0806
    0001 0800 0604 0002 00163e000002 0a000002 00163effff01 0a000001
    000000000000000000000000000000000000`)));
  const g = buildGratuitousArpFrame(GUEST_MAC, GUEST_IP);
  t.is(toHex(g), toHex(hex(`
    ffffffffffff 00163e000002 0806
    0001 0800 0604 0001 00163e000002 0a000002 000000000000 0a000002
    000000000000000000000000000000000000`)));
  const arp = parseArp(g.subarray(ETH_HLEN));
  t.true(arp.ok && isGratuitousArp(arp.value));
  // A reply announcing itself counts too; 0.0.0.0 probes (RFC 5227) do not.
  t.true(isGratuitousArp({ op: ARPOP_REPLY, senderMac: GUEST_MAC, senderIp: GUEST_IP, targetMac: GUEST_MAC, targetIp: GUEST_IP }));
  t.false(isGratuitousArp({ op: ARPOP_REQUEST, senderMac: GUEST_MAC, senderIp: 0 as Ipv4, targetMac: 0 as Mac, targetIp: 0 as Ipv4 }));
});

test('Ethernet: long payloads are not padded, short ones are; 802.3 lengths and runts are errors', (t) => {
  const long = buildEthernet({ dst: GUEST_MAC, src: DOM0_MAC, ethertype: 0x0800, payload: new Uint8Array(100).fill(7) });
  t.is(long.length, 114);
  t.is(buildEthernet({ dst: GUEST_MAC, src: DOM0_MAC, ethertype: 0x0800, payload: new Uint8Array(0) }).length, 60);
  t.like(parseEthernet(new Uint8Array(13)), { ok: false, reason: 'truncated' });
  const dot3 = hex('ffffffffffff 00163e000002 05dc');
  t.like(parseEthernet(dot3), { ok: false, reason: 'not-ethernet-ii' });
  t.throws(() => buildEthernet({ dst: GUEST_MAC, src: DOM0_MAC, ethertype: 0x05dc, payload: new Uint8Array(0) }));
});

test('ARP parse errors: truncated, not Ethernet/IPv4, bad operation', (t) => {
  const good = buildArp({ op: ARPOP_REQUEST, senderMac: DOM0_MAC, senderIp: DOM0_IP, targetMac: 0 as Mac, targetIp: GUEST_IP });
  t.like(parseArp(good.subarray(0, 27)), { ok: false, reason: 'truncated' });
  const ieee802 = good.slice(); ieee802[1] = 6;
  t.like(parseArp(ieee802), { ok: false, reason: 'arp-unsupported' });
  const ipv6ish = good.slice(); ipv6ish[5] = 16;
  t.like(parseArp(ipv6ish), { ok: false, reason: 'arp-unsupported' });
  const rarp = good.slice(); rarp[7] = 3;
  t.like(parseArp(rarp), { ok: false, reason: 'arp-bad-op' });
});

test('IPv4 header golden bytes: the classic 192.168.0.1 -> 192.168.0.199 example has checksum 0xb861', (t) => {
  const p = buildIpv4({ src: ip('192.168.0.1'), dst: ip('192.168.0.199'), protocol: IPPROTO_UDP, ttl: 64, id: 0, dontFragment: true, payload: new Uint8Array(0x73 - 20) });
  t.is(toHex(p.subarray(0, 20)), toHex(hex('4500 0073 0000 4000 4011 b861 c0a80001 c0a800c7')));
  const r = parseIpv4Packet(p);
  if (!r.ok) return t.fail(r.detail);
  t.like(r.value, { src: ip('192.168.0.1'), dst: ip('192.168.0.199'), protocol: 17, ttl: 64, id: 0, dontFragment: true, headerLength: 20 });
  t.is(r.value.payload.length, 95);
});

test('UDP in IPv4 golden bytes: 10.0.0.1:49152 -> 10.0.0.2:7 "hi"', (t) => {
  // IP header sum 4500+001e+0001+0000+4011+0a00+0001+0a00+0002 = 0x9933 -> ~ = 0x66cc.
  // UDP: pseudo 0a00+0001+0a00+0002+0011+000a = 0x141e; c000+0007+000a+6869 = 0x1287a -> 0x287b;
  //      0x141e + 0x287b = 0x3c99 -> ~ = 0xc366.
  const p = buildUdpPacket({ src: DOM0_IP, dst: GUEST_IP, srcPort: 49152, dstPort: 7, payload: ascii('hi'), id: 1 });
  t.is(toHex(p), toHex(hex('4500 001e 0001 0000 4011 66cc 0a000001 0a000002  c000 0007 000a c366 6869')));
  const r = parseIpv4Packet(p);
  if (!r.ok) return t.fail(r.detail);
  t.deepEqual(parseUdp(r.value.payload, r.value.src, r.value.dst), {
    ok: true, value: { srcPort: 49152, dstPort: 7, checksummed: true, payload: ascii('hi') },
  });
});

test('UDP: a computed checksum of 0 goes out as 0xffff and verifies', (t) => {
  // Same header as above with payload 0x2bd0: the ones' sum is 0xffff, its complement 0.
  const u = buildUdp({ src: DOM0_IP, dst: GUEST_IP, srcPort: 49152, dstPort: 7, payload: Uint8Array.of(0x2b, 0xd0) });
  t.is(toHex(u), 'c0000007000affff2bd0');
  t.like(parseUdp(u, DOM0_IP, GUEST_IP), { ok: true, value: { checksummed: true } });
});

test('UDP: checksum 0 means none; wrong checksum, short header, bad lengths are errors', (t) => {
  const u = buildUdp({ src: DOM0_IP, dst: GUEST_IP, srcPort: 1000, dstPort: 7777, payload: ascii('beat') });
  const none = u.slice(); none[6] = 0; none[7] = 0;
  t.like(parseUdp(none, DOM0_IP, GUEST_IP), { ok: true, value: { checksummed: false, srcPort: 1000, dstPort: 7777 } });
  const flipped = u.slice(); flipped[9]! ^= 1;
  t.like(parseUdp(flipped, DOM0_IP, GUEST_IP), { ok: false, reason: 'bad-checksum' });
  // The pseudo-header is covered: the same bytes from another source fail.
  t.like(parseUdp(u, ip('10.0.0.3'), GUEST_IP), { ok: false, reason: 'bad-checksum' });
  t.like(parseUdp(u.subarray(0, 7), DOM0_IP, GUEST_IP), { ok: false, reason: 'truncated' });
  const tooShort = none.slice(); tooShort[5] = 7;
  t.like(parseUdp(tooShort, DOM0_IP, GUEST_IP), { ok: false, reason: 'bad-length' });
  const tooLong = none.slice(); tooLong[5] = 200;
  t.like(parseUdp(tooLong, DOM0_IP, GUEST_IP), { ok: false, reason: 'truncated' });
  // Trailing bytes past the UDP length are not data.
  const trailing = new Uint8Array(none.length + 5); trailing.set(none);
  t.like(parseUdp(trailing, DOM0_IP, GUEST_IP), { ok: true, value: { payload: ascii('beat') } });
});

test('ICMP echo golden bytes: id 0x0d00 seq 1 "abcd" has checksum 0x2638', (t) => {
  // 0800+0d00+0001+6162+6364 = 0xd9c7 -> ~ = 0x2638
  const e = buildIcmpEcho({ kind: 'request', id: 0x0d00, seq: 1, data: ascii('abcd') });
  t.is(toHex(e), '080026380d00000161626364');
  t.deepEqual(parseIcmpEcho(e), { ok: true, value: { kind: 'request', id: 0x0d00, seq: 1, data: ascii('abcd') } });
  // The reply differs only in type: 0xd9c7 - 0x0800 = 0xd1c7 -> ~ = 0x2e38
  const reply = buildIcmpEcho({ kind: 'reply', id: 0x0d00, seq: 1, data: ascii('abcd') });
  t.is(toHex(reply), '00002e380d00000161626364');
});

test('ICMP errors: short, bad checksum, not an echo', (t) => {
  t.like(parseIcmp(new Uint8Array(7)), { ok: false, reason: 'truncated' });
  const e = buildIcmpEcho({ kind: 'request', id: 1, seq: 2, data: ascii('xyz') });
  const bad = e.slice(); bad[10]! ^= 0x40;
  t.like(parseIcmpEcho(bad), { ok: false, reason: 'bad-checksum' });
  // Destination unreachable / port unreachable, checksum 0xfcfc (0x0303 -> ~).
  t.like(parseIcmpEcho(hex('0303 fcfc 0000 0000')), { ok: false, reason: 'not-echo' });
});

test('IPv4 errors: version, header length, lengths, checksum, fragments', (t) => {
  const good = buildIpv4({ src: DOM0_IP, dst: GUEST_IP, protocol: IPPROTO_ICMP, payload: new Uint8Array(8), id: 9 });
  const refix = (b: Uint8Array): Uint8Array => { b[10] = 0; b[11] = 0; const c = inetChecksum(b, 0, (b[0]! & 15) * 4); b[10] = c >> 8; b[11] = c & 0xff; return b; };
  t.like(parseIpv4Packet(good.subarray(0, 19)), { ok: false, reason: 'truncated' });
  const v6 = good.slice(); v6[0] = 0x65;
  t.like(parseIpv4Packet(refix(v6)), { ok: false, reason: 'bad-version' });
  const ihl4 = good.slice(); ihl4[0] = 0x44;
  t.like(parseIpv4Packet(ihl4), { ok: false, reason: 'bad-header-length' });
  const ihlHuge = good.slice(); ihlHuge[0] = 0x4f;
  t.like(parseIpv4Packet(ihlHuge), { ok: false, reason: 'truncated' });
  const longer = good.slice(); longer[3] = 200;
  t.like(parseIpv4Packet(refix(longer)), { ok: false, reason: 'truncated' });
  const shorter = good.slice(); shorter[3] = 19;
  t.like(parseIpv4Packet(refix(shorter)), { ok: false, reason: 'bad-length' });
  const badSum = good.slice(); badSum[11]! ^= 1;
  t.like(parseIpv4Packet(badSum), { ok: false, reason: 'bad-checksum' });
  const moreFragments = good.slice(); moreFragments[6] = 0x20;
  t.like(parseIpv4Packet(refix(moreFragments)), { ok: false, reason: 'fragment' });
  const lastFragment = good.slice(); lastFragment[7] = 0x10;
  t.like(parseIpv4Packet(refix(lastFragment)), { ok: false, reason: 'fragment' });
  // DF alone is not a fragment.
  const df = good.slice(); df[6] = 0x40;
  t.like(parseIpv4Packet(refix(df)), { ok: true, value: { dontFragment: true } });
});

test('IPv4: options are skipped, link padding is cut at the total length', (t) => {
  const withOptions = hex('4600 0020 0007 0000 4001 0000 0a000001 0a000002 01010100');
  const c = inetChecksum(withOptions, 0, 24); withOptions[10] = c >> 8; withOptions[11] = c & 0xff;
  const body = buildIcmpEcho({ kind: 'request', id: 1, seq: 1, data: new Uint8Array(0) });
  const packet = new Uint8Array(32 + 10); packet.set(withOptions); packet.set(body, 24);
  const r = parseIpv4Packet(packet);
  if (!r.ok) return t.fail(r.detail);
  t.is(r.value.headerLength, 24);
  t.is(toHex(r.value.payload), toHex(body));
  t.true(parseIcmpEcho(r.value.payload).ok);
});

test('hostile bytes: no parser throws, every error has a reason (seeded)', (t) => {
  const rand = seededRandom(0x5eed);
  const samples: Uint8Array[] = [
    buildArpRequestFrame(DOM0_MAC, DOM0_IP, GUEST_IP),
    buildEthernet({ dst: GUEST_MAC, src: DOM0_MAC, ethertype: 0x0800, payload: buildUdpPacket({ src: DOM0_IP, dst: GUEST_IP, srcPort: 5, dstPort: 7, payload: ascii('hello') }) }),
    buildEthernet({ dst: GUEST_MAC, src: DOM0_MAC, ethertype: 0x0800, payload: buildIpv4({ src: DOM0_IP, dst: GUEST_IP, protocol: 1, payload: buildIcmpEcho({ kind: 'request', id: 1, seq: 1, data: ascii('x') }) }) }),
  ];
  let errors = 0;
  for (let i = 0; i < 4000; i++) {
    let b: Uint8Array;
    const base = samples[i % samples.length]!;
    if (i % 3 === 0) b = randomBytes(rand, Math.floor(rand() * 80));
    else if (i % 3 === 1) b = base.subarray(0, Math.floor(rand() * base.length));
    else { b = base.slice(); for (let k = 0; k < 3; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256); }
    const results = [];
    const eth = parseEthernet(b);
    results.push(eth);
    const l3 = eth.ok ? eth.value.payload : b;
    results.push(parseArp(l3));
    const v4 = parseIpv4Packet(l3);
    results.push(v4);
    const l4 = v4.ok ? v4.value.payload : l3;
    results.push(parseIcmp(l4), parseIcmpEcho(l4), parseUdp(l4, DOM0_IP, GUEST_IP));
    for (const r of results) {
      if (!r.ok) {
        errors++;
        if (r.reason === '' || r.detail === '') t.fail(`error without reason/detail on sample ${i}`);
      }
    }
  }
  t.true(errors > 1000, `expected many errors from 4000 mangled samples, got ${errors}`);
});

test('completeChecksum fills in a blank UDP or ICMP checksum (netback, NETTXF_csum_blank)', (t) => {
  const udp = buildUdpPacket({ src: DOM0_IP, dst: GUEST_IP, srcPort: 49152, dstPort: 7, payload: ascii('hi'), id: 1 });
  const blank = udp.slice(); blank[26] = 0x12; blank[27] = 0x34; // a partial sum or garbage
  t.deepEqual(completeChecksum(blank), { ok: true, value: { protocol: IPPROTO_UDP } });
  t.is(toHex(blank), toHex(udp));
  const icmp = buildIpv4({ src: GUEST_IP, dst: DOM0_IP, protocol: IPPROTO_ICMP, payload: buildIcmpEcho({ kind: 'request', id: 0x0d00, seq: 1, data: ascii('abcd') }) });
  const blankIcmp = icmp.slice(); blankIcmp[22] = 0; blankIcmp[23] = 0;
  t.true(completeChecksum(blankIcmp).ok);
  t.is(toHex(blankIcmp), toHex(icmp));
  t.like(completeChecksum(udp.subarray(0, 25)), { ok: false });
  const frag = udp.slice(); frag[6] = 0x20;
  t.like(completeChecksum(frag), { ok: false, reason: 'fragment' });
});
