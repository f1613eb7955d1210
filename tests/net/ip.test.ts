/*
 * IPv4 and ICMP on the test harness: the echo reply the guest builds
 * (golden bytes and independent checksums), the guest's own ping, and
 * hostile IP packets dropped and counted without throwing.
 */
import test from 'ava';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { ksymtab } from '../../sys/kern/kern_ksyms.js';
import { lwp_create } from '../../sys/kern/kern_lwp.js';
import { netstat_snapshot } from '../../sys/net/net_globals.js';
import { mbuf_inuse } from '../../sys/net/mbuf.js';
import { icmp_ping, icmp_ping_wait, icmp_ping_stats } from '../../sys/netinet/ip_icmp.js';
import { ip_route } from '../../sys/netinet/ip_output.js';
import { inet_aton } from '../../sys/netinet/in.js';
import { in_setdefrouter } from '../../sys/netinet/in_ifaddr.js';
import { udp_bind, udp_sendbytes } from '../../sys/netinet/udp_usrreq.js';
import { tlog, tlogRead, xorshift } from '../guest/harness.js';
import {
  netRig, wire, inject, hex, cksum, etherFrame, ipv4Packet, icmpEcho, udpDatagram, parseFrame, learnPeer, text,
  GUEST_MAC, PEER_MAC, BCAST_MAC, GUEST_IP, PEER_IP, OTHER_IP,
} from './fixture.js';

const ECHO_REPLY = '00163effff0100163e00000208004500002400014000400126d60a0000020a00000100005c35123400016162636465666768';

const echoRequest = (data = text('abcdefgh'), dst = GUEST_IP, dstMac: readonly number[] = GUEST_MAC): Uint8Array =>
  etherFrame(dstMac, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst, proto: 1, id: 77 }, icmpEcho(8, 0x1234, 1, data)));

test('an echo request is answered with an echo reply (golden bytes, checksums verified independently)', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  inject(cpu, ifp, echoRequest());
  const out = wire(cpu, ifp);
  t.deepEqual(out.map(hex), [ECHO_REPLY]);
  const ip = (out[0] as Uint8Array).subarray(14);
  t.is(cksum(ip.subarray(0, 20)), 0, 'IP header checksum');
  t.is(cksum(ip.subarray(20)), 0, 'ICMP checksum');
  t.like(netstat_snapshot(cpu, 'ng_icmpstat'), { icps_in_echo: 1, icps_reflect: 1, icps_out_echoreply: 1 });
  t.is(mbuf_inuse(cpu), 0);
});

test('an echo request to the broadcast address is ignored', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  inject(cpu, ifp, echoRequest(text('x'), inet_aton('10.0.0.255') as number, BCAST_MAC));
  t.deepEqual(wire(cpu, ifp), []);
  t.is(netstat_snapshot(cpu, 'ng_icmpstat')['icps_bmcastecho'], 1);
});

test('a 1472-byte echo payload (a full 1500-byte packet) is echoed whole', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const data = Uint8Array.from({ length: 1472 }, (_, i) => (i * 7) & 0xff);
  inject(cpu, ifp, echoRequest(data));
  const [f] = wire(cpu, ifp);
  t.is(f?.length, 14 + 1500);
  t.deepEqual(f?.subarray(14 + 28), data);
});

const hostile: [string, Uint8Array, string][] = [
  ['shorter than a header', new Uint8Array([0x45, 0, 0, 20, 0, 0]), 'ips_toosmall'],
  ['version 6', Uint8Array.from(ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17 }, new Uint8Array(8)), (b, i) => (i === 0 ? 0x65 : b)), 'ips_badvers'],
  ['header length 4 words', Uint8Array.from(ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17 }, new Uint8Array(8)), (b, i) => (i === 0 ? 0x44 : b)), 'ips_badhlen'],
  ['header length beyond the packet', Uint8Array.from(ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17 }, new Uint8Array(8)), (b, i) => (i === 0 ? 0x4f : b)), 'ips_badhlen'],
  ['bad header checksum', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, badSum: true }, new Uint8Array(8)), 'ips_badsum'],
  ['ip_len below the header', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, len: 12 }, new Uint8Array(8)), 'ips_badlen'],
  ['ip_len beyond the frame', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, len: 900 }, new Uint8Array(8)), 'ips_tooshort'],
  ['first fragment (MF)', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, off: 0x2000 }, new Uint8Array(8)), 'ips_fragdropped'],
  ['later fragment (offset)', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17, off: 0x0010 }, new Uint8Array(8)), 'ips_fragdropped'],
  ['broadcast source', ipv4Packet({ src: 0xffffffff, dst: GUEST_IP, proto: 17 }, new Uint8Array(8)), 'ips_badaddr'],
  ['multicast source', ipv4Packet({ src: 0xe0000001, dst: GUEST_IP, proto: 17 }, new Uint8Array(8)), 'ips_badaddr'],
  ['not for us', ipv4Packet({ src: PEER_IP, dst: OTHER_IP, proto: 17 }, new Uint8Array(8)), 'ips_notforus'],
  ['unknown protocol (TCP)', ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 6 }, new Uint8Array(20)), 'ips_noproto'],
];

for (const [what, pkt, stat] of hostile) {
  test(`hostile IP: ${what} is dropped and counted in ${stat}`, (t) => {
    const { cpu, ifp } = netRig();
    t.notThrows(() => inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, pkt)));
    t.is(netstat_snapshot(cpu, 'ng_ipstat')[stat], 1);
    t.is(netstat_snapshot(cpu, 'ng_ipstat')['ips_delivered'], 0);
    t.deepEqual(wire(cpu, ifp), []);
    t.is(mbuf_inuse(cpu), 0);
  });
}

test('hostile ICMP: too short and bad checksum are dropped and counted', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 1 }, new Uint8Array([8, 0, 0]))));
  const bad = icmpEcho(8, 1, 1, text('zz'));
  bad[9] = (bad[9] as number) ^ 1;
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 1 }, bad)));
  t.like(netstat_snapshot(cpu, 'ng_icmpstat'), { icps_tooshort: 1, icps_checksum: 1, icps_reflect: 0 });
  t.deepEqual(wire(cpu, ifp), []);
});

test('Ethernet padding beyond ip_len is trimmed before the transport sees it', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const req = echoRequest(text('ab'));
  const padded = new Uint8Array(60);
  padded.set(req);
  inject(cpu, ifp, padded);
  const [f] = wire(cpu, ifp);
  t.is(f?.length, 14 + 20 + 8 + 2);
});

test('random garbage frames never throw and leak no mbufs (seeded fuzz)', (t) => {
  const { cpu, ifp } = netRig();
  learnPeer(cpu, ifp);
  const rnd = xorshift(6);
  const base = [echoRequest(), etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 17 }, udpDatagram(PEER_IP, GUEST_IP, 1, 7, text('hi'))))];
  for (let i = 0; i < 3000; i++) {
    const src = base[i % base.length] as Uint8Array;
    const f = Uint8Array.from(src.subarray(0, 14 + (rnd() % (src.length - 13))));
    for (let k = rnd() % 4; k >= 0; k--) {
      const at = 14 + (rnd() % Math.max(1, f.length - 14));
      if (at < f.length) f[at] = rnd() & 0xff;
    }
    t.notThrows(() => inject(cpu, ifp, f));
    wire(cpu, ifp);
  }
  t.is(mbuf_inuse(cpu), 0);
});

test('routing: connected subnet directly, elsewhere via the default router, else no route', (t) => {
  const { cpu, ifp } = netRig();
  t.like(ip_route(cpu, PEER_IP), { ifp, nexthop: PEER_IP, broadcast: false });
  t.like(ip_route(cpu, 0xffffffff), { ifp, broadcast: true });
  t.like(ip_route(cpu, inet_aton('10.0.0.255') as number), { ifp, broadcast: true });
  t.like(ip_route(cpu, GUEST_IP), { ifp, local: true });
  t.is(ip_route(cpu, inet_aton('192.168.1.1') as number).ifp, 0);
  in_setdefrouter(cpu, PEER_IP);
  t.like(ip_route(cpu, inet_aton('192.168.1.1') as number), { ifp, nexthop: PEER_IP });
});

test('a datagram to ourselves loops back without touching the wire', (t) => {
  const { cpu, ifp } = netRig();
  const pcb = udp_bind(cpu, 4000);
  t.is(udp_sendbytes(cpu, udp_bind(cpu, 0), GUEST_IP, 4000, text('me')), 0);
  t.deepEqual(wire(cpu, ifp), []);
  t.is(netstat_snapshot(cpu, 'ng_udpstat')['udps_delivered'], 1);
  t.true(pcb > 0);
});

const pinger = ksymtab({
  t_ping(cpu: GuestCpu, seq: number): void {
    icmp_ping(cpu, PEER_IP, 0x4242, seq, 16);
    icmp_ping_wait(cpu, 50, 't_ping_done');
  },
  t_ping_done(cpu: GuestCpu, _arg: number, err: number): void {
    const s = icmp_ping_stats(cpu);
    tlog(cpu, `err=${err} replies=${s.nreplies} seq=${s.lastseq} `);
  },
});

test('guest-side ping: the request is well formed, a matching reply wakes the waiting thread', (t) => {
  const { h, cpu, ifp } = netRig({ extra: [pinger] });
  learnPeer(cpu, ifp);
  lwp_create(cpu, 'ping', 't_ping', 3);
  h.run(5);
  const [req] = wire(cpu, ifp).map(parseFrame);
  t.is(req?.type, 0x0800);
  const ip = req?.payload as Uint8Array;
  t.is(cksum(ip.subarray(0, 20)), 0);
  t.is(cksum(ip.subarray(20)), 0);
  t.deepEqual([...ip.subarray(20, 28)].filter((_, i) => i !== 2 && i !== 3), [8, 0, 0x42, 0x42, 0, 3]);
  // A reply with another identifier does not count; the right one does.
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 1 }, icmpEcho(0, 0x9999, 3, ip.subarray(28)))));
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, ipv4Packet({ src: PEER_IP, dst: GUEST_IP, proto: 1 }, icmpEcho(0, 0x4242, 3, ip.subarray(28)))));
  h.fake.blocked = false;
  h.run(5);
  t.is(tlogRead(h), 'err=0 replies=1 seq=3 ');
  t.is(netstat_snapshot(cpu, 'ng_icmpstat')['icps_ping_stale'], 1);
});

test('guest-side ping: no reply ends the wait with EWOULDBLOCK', (t) => {
  const { h, cpu, ifp } = netRig({ extra: [pinger] });
  learnPeer(cpu, ifp);
  lwp_create(cpu, 'ping', 't_ping', 1);
  h.drive(200);
  t.is(tlogRead(h), 'err=35 replies=0 seq=0 ');
});
