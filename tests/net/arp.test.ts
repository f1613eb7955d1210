/*
 * Ethernet and ARP on the test harness: golden frames the guest builds,
 * the cache (resolution, holding, retransmission, expiry through
 * callouts), and hostile ARP packets dropped and counted.
 */
import test from 'ava';
import { netstat_snapshot } from '../../sys/net/net_globals.js';
import { mbuf_inuse } from '../../sys/net/mbuf.js';
import { arp_ifinit, arp_entries, arp_set_timers, arp_flush, ARP_MAXENTRIES } from '../../sys/netinet/if_arp.js';
import { udp_bind, udp_sendbytes } from '../../sys/netinet/udp_usrreq.js';
import { inet_aton } from '../../sys/netinet/in.js';
import {
  netRig, wire, inject, hex, unhex, etherFrame, arpPacket, parseFrame, learnPeer, text,
  GUEST_MAC, PEER_MAC, OTHER_MAC, BCAST_MAC, GUEST_IP, PEER_IP, OTHER_IP,
} from './fixture.js';

const GARP = 'ffffffffffff00163e0000020806000108000604000100163e0000020a0000020000000000000a000002';
const ARP_REPLY = '00163effff0100163e0000020806000108000604000200163e0000020a00000200163effff010a000001';
const ARP_REQ_PEER = 'ffffffffffff00163e0000020806000108000604000100163e0000020a0000020000000000000a000001';

test('arp_ifinit broadcasts a gratuitous ARP request for our own address (golden bytes)', (t) => {
  const { cpu, ifp } = netRig();
  t.is(arp_ifinit(cpu, ifp), 0);
  t.deepEqual(wire(cpu, ifp).map(hex), [GARP]);
  t.is(netstat_snapshot(cpu, 'ng_arpstat')['arps_sndgratuitous'], 1);
});

test('a request for our address gets a reply (golden) and teaches us the asker', (t) => {
  const { cpu, ifp } = netRig();
  inject(cpu, ifp, etherFrame(BCAST_MAC, PEER_MAC, 0x0806, arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP)));
  t.deepEqual(wire(cpu, ifp).map(hex), [ARP_REPLY]);
  t.deepEqual(arp_entries(cpu).map((e) => [e.addr, e.mac, e.state]), [['10.0.0.1', '00:16:3e:ff:ff:01', 'resolved']]);
});

test('a request for someone else is not answered and creates no entry', (t) => {
  const { cpu, ifp } = netRig();
  inject(cpu, ifp, etherFrame(BCAST_MAC, PEER_MAC, 0x0806, arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], OTHER_IP)));
  t.deepEqual(wire(cpu, ifp), []);
  t.deepEqual(arp_entries(cpu), []);
});

test('sending to an unknown neighbour asks (golden), holds the packet, and sends it when the reply comes', (t) => {
  const { cpu, ifp } = netRig();
  const pcb = udp_bind(cpu, 7);
  t.is(udp_sendbytes(cpu, pcb, PEER_IP, 5555, text('one')), 0);
  t.is(udp_sendbytes(cpu, pcb, PEER_IP, 5555, text('two')), 0);
  t.deepEqual(wire(cpu, ifp).map(hex), [ARP_REQ_PEER], 'one request only, the packets are held');
  t.like(arp_entries(cpu)[0], { addr: '10.0.0.1', state: 'incomplete', held: 2 });
  learnPeer(cpu, ifp);
  const out = wire(cpu, ifp).map(parseFrame);
  t.deepEqual(out.map((f) => [f.dst, f.type]), [['00:16:3e:ff:ff:01', 0x0800], ['00:16:3e:ff:ff:01', 0x0800]]);
  t.deepEqual(out.map((f) => new TextDecoder().decode(f.payload.subarray(28))), ['one', 'two']);
});

test('an unanswered request is retried every arpt_retrans and given up after arp_maxtries; held packets are freed', (t) => {
  const { h, cpu, ifp } = netRig();
  arp_set_timers(cpu, 0, 10, 3);
  const before = mbuf_inuse(cpu);
  udp_sendbytes(cpu, udp_bind(cpu, 0), OTHER_IP, 9, text('x'));
  t.is(wire(cpu, ifp).length, 1);
  h.tick(10);
  t.is(wire(cpu, ifp).length, 1, 'second request after 10 ticks');
  h.tick(10);
  t.is(wire(cpu, ifp).length, 1, 'third request');
  h.tick(10);
  t.deepEqual(wire(cpu, ifp), [], 'no fourth request');
  t.deepEqual(arp_entries(cpu), []);
  const st = netstat_snapshot(cpu, 'ng_arpstat');
  t.is(st['arps_timeouts'], 1);
  t.is(st['arps_dfrdropped'], 1);
  t.is(mbuf_inuse(cpu), before);
});

test('a resolved entry expires after arpt_keep ticks, through its callout', (t) => {
  const { h, cpu, ifp } = netRig();
  arp_set_timers(cpu, 50);
  learnPeer(cpu, ifp);
  t.is(arp_entries(cpu).length, 1);
  h.tick(49);
  t.is(arp_entries(cpu).length, 1, 'still there one tick before');
  h.tick(1);
  t.deepEqual(arp_entries(cpu), []);
  t.is(netstat_snapshot(cpu, 'ng_arpstat')['arps_expired'], 1);
});

test('traffic from the neighbour refreshes its entry; a gratuitous ARP updates a moved MAC', (t) => {
  const { h, cpu, ifp } = netRig();
  arp_set_timers(cpu, 50);
  learnPeer(cpu, ifp);
  h.tick(40);
  inject(cpu, ifp, etherFrame(BCAST_MAC, OTHER_MAC, 0x0806, arpPacket(1, OTHER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], PEER_IP)));
  h.tick(40);
  t.deepEqual(arp_entries(cpu).map((e) => e.mac), ['00:16:3e:00:00:09'], 'refreshed, with the new MAC');
  t.deepEqual(wire(cpu, ifp), [], 'a gratuitous ARP is not answered');
});

test('hostile ARP packets are dropped and counted, never thrown on', (t) => {
  const { cpu, ifp } = netRig();
  const good = arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP);
  const cases: [string, Uint8Array, string][] = [
    ['truncated', good.subarray(0, 27), 'arps_rcvtruncated'],
    ['hrd 6', Uint8Array.from(good, (b, i) => (i === 1 ? 6 : b)), 'arps_rcvbadproto'],
    ['pro ipv6', Uint8Array.from(good, (b, i) => (i === 2 ? 0x86 : i === 3 ? 0xdd : b)), 'arps_rcvbadproto'],
    ['hln 8', Uint8Array.from(good, (b, i) => (i === 4 ? 8 : b)), 'arps_rcvbadproto'],
    ['op 9', Uint8Array.from(good, (b, i) => (i === 7 ? 9 : b)), 'arps_rcvbadproto'],
    ['our own sha', arpPacket(1, GUEST_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP), 'arps_rcvlocalsha'],
    ['broadcast sha', arpPacket(1, BCAST_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP), 'arps_rcvbcastsha'],
    ['our IP claimed', arpPacket(2, OTHER_MAC, GUEST_IP, GUEST_MAC, GUEST_IP), 'arps_rcvlocalspa'],
  ];
  for (const [what, pkt, stat] of cases) {
    const before = netstat_snapshot(cpu, 'ng_arpstat')[stat] ?? 0;
    t.notThrows(() => inject(cpu, ifp, etherFrame(BCAST_MAC, PEER_MAC, 0x0806, pkt)), what);
    t.is(netstat_snapshot(cpu, 'ng_arpstat')[stat], before + 1, `${what} counted in ${stat}`);
  }
  t.deepEqual(wire(cpu, ifp), [], 'nothing answered');
  t.deepEqual(arp_entries(cpu), [], 'nothing learned');
  t.is(mbuf_inuse(cpu), 0, 'every mbuf freed');
});

test('a probe (sender IP 0) for our address is answered but teaches nothing', (t) => {
  const { cpu, ifp } = netRig();
  inject(cpu, ifp, etherFrame(BCAST_MAC, PEER_MAC, 0x0806, arpPacket(1, PEER_MAC, 0, [0, 0, 0, 0, 0, 0], GUEST_IP)));
  t.is(wire(cpu, ifp).length, 1);
  t.deepEqual(arp_entries(cpu), []);
});

test('the table is bounded: the oldest entry makes room', (t) => {
  const { cpu, ifp } = netRig();
  for (let i = 0; i < ARP_MAXENTRIES + 5; i++) {
    const ip = inet_aton(`10.0.1.${i + 1}`) as number;
    const mac = [0x02, 0, 0, 0, 1, i];
    inject(cpu, ifp, etherFrame(GUEST_MAC, mac, 0x0806, arpPacket(2, mac, ip, GUEST_MAC, GUEST_IP)));
  }
  const e = arp_entries(cpu);
  t.is(e.length, ARP_MAXENTRIES);
  t.is(e[0]?.addr, '10.0.1.6');
  t.is(netstat_snapshot(cpu, 'ng_arpstat')['arps_tablefull'], 5);
  arp_flush(cpu);
  t.deepEqual(arp_entries(cpu), []);
});

test('ethernet input filters by destination and counts what it drops', (t) => {
  const { cpu, ifp } = netRig();
  const arp = arpPacket(1, PEER_MAC, PEER_IP, [0, 0, 0, 0, 0, 0], GUEST_IP);
  inject(cpu, ifp, new Uint8Array(10));
  inject(cpu, ifp, etherFrame(OTHER_MAC, PEER_MAC, 0x0806, arp));
  inject(cpu, ifp, etherFrame([0x01, 0, 0x5e, 0, 0, 1], PEER_MAC, 0x0806, arp));
  inject(cpu, ifp, etherFrame(BCAST_MAC, GUEST_MAC, 0x0806, arp));
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x86dd, arp));
  inject(cpu, ifp, etherFrame(GUEST_MAC, PEER_MAC, 0x0800, new Uint8Array(1501)));
  t.like(netstat_snapshot(cpu, 'ng_etherstat'), {
    ets_ipackets: 6, ets_runt: 1, ets_notforus: 1, ets_multicast: 1, ets_looped: 1, ets_noproto: 1, ets_toolong: 1,
  });
  t.deepEqual(wire(cpu, ifp), []);
  t.is(mbuf_inuse(cpu), 0);
});

test('golden bytes are what a hand-built frame says', (t) => {
  t.is(hex(etherFrame(BCAST_MAC, GUEST_MAC, 0x0806, arpPacket(1, GUEST_MAC, GUEST_IP, [0, 0, 0, 0, 0, 0], GUEST_IP))), GARP);
  t.deepEqual(unhex(GARP).length, 42);
});
