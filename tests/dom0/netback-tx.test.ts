import test from 'ava';
import {
  NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_more_data, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, netif_tx_sring,
} from '../../hypervisor/public/io/netif.js';
import { XenbusStateConnected } from '../../hypervisor/public/io/xenbus.js';
import { parseEthernet, buildArpRequestFrame } from '../../hypervisor/dom0/net/ether.js';
import { parseIpv4Packet, parseUdp } from '../../hypervisor/dom0/net/ip.js';
import { parseIpv4, parseMac } from '../../hypervisor/dom0/net/addr.js';
import { FRONT, PEER_MAC, frame, netRig, sendTx, udpFrame } from './netback-fixture.js';

const OK = NETIF_RSP_OKAY;

test('a connected vif publishes Connected and sits on the bridge under its name', (t) => {
  const r = netRig();
  t.is(r.vif.name, `vif${FRONT}.0`);
  t.is(r.vif.state, 'connected');
  t.is(r.vif.xenbusState(), XenbusStateConnected);
  t.deepEqual(r.bridge.portNames().sort(), ['peer', `vif${FRONT}.0`]);
  t.is(r.host.mappedRings, 2, 'both ring pages mapped');
});

test('a one-slot packet reaches the bridge byte for byte and is answered OKAY', (t) => {
  const r = netRig();
  const f = frame(60, r.mac);
  const rsp = sendTx(r, [f]);
  t.deepEqual(rsp, [{ id: 0, status: OK }]);
  t.deepEqual(r.peer.take(), [f]);
  t.is(r.front.notifications, 1, 'the frontend was told of the response');
  t.like(r.vif.stats, { txPackets: 1, txBytes: 60, txSlots: 1, txErrors: 0, notifies: 1 });
});

test('a multi-slot packet (first slot at an offset, 3 pages) is put back together in order', (t) => {
  const r = netRig();
  const f = frame(9000, r.mac, PEER_MAC, 3);
  const rsp = sendTx(r, [f], { offset: 3000 });
  t.deepEqual(rsp.map((x) => x.status), [OK, OK, OK], '1096 + 4096 + 3808 bytes: three slots');
  const got = r.peer.take();
  t.is(got.length, 1);
  t.deepEqual(got[0], f);
  t.like(r.vif.stats, { txPackets: 1, txBytes: 9000, txSlots: 3 });
});

test('small fragments: a 1514-byte frame in 18 slots of 100 bytes or less passes', (t) => {
  const r = netRig();
  const f = frame(1514, r.mac, PEER_MAC, 5);
  const q = r.front.queueFrame(f, { fragmentBytes: 90 });
  t.is(q?.length, 17);
  r.front.push();
  r.nb.drain();
  t.true(r.front.txResponses().every((x) => x.status === OK));
  t.deepEqual(r.peer.take(), [f]);
});

test('extra-info slots are answered NETIF_RSP_NULL in their place, and the packet goes out', (t) => {
  const r = netRig();
  const f = frame(5000, r.mac);
  const extras = [{ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 0 }, { type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 0 }];
  const rsp = sendTx(r, [f], { extras });
  t.deepEqual(rsp.map((x) => x.status), [OK, NETIF_RSP_NULL, NETIF_RSP_NULL, OK]);
  t.deepEqual(r.peer.take(), [f]);
});

test('csum_blank: the UDP checksum the guest left out is filled in before the bridge', (t) => {
  const r = netRig();
  const good = udpFrame(r.mac, PEER_MAC, new TextEncoder().encode('hello, dom0'));
  const blank = good.slice();
  // UDP checksum field: Ethernet 14 + IPv4 20 + 6.
  blank[40] = 0;
  blank[41] = 0;
  const rsp = sendTx(r, [blank], { csumBlank: true });
  t.deepEqual(rsp, [{ id: 0, status: OK }]);
  const [out] = r.peer.take();
  t.deepEqual(out, good, 'the frame on the bridge carries the full checksum');
  const eth = parseEthernet(out!);
  const ip = eth.ok ? parseIpv4Packet(eth.value.payload) : undefined;
  t.true(ip?.ok === true && parseUdp(ip.value.payload, ip.value.src, ip.value.dst).ok, 'a receiver verifies it');
  t.is(r.vif.stats.txChecksummed, 1);
});

test('csum_blank on a frame with no checksum to complete: answered OKAY, not sent, counted', (t) => {
  const r = netRig();
  const arp = buildArpRequestFrame(parseMac(r.mac)!, parseIpv4('10.0.0.3')!, parseIpv4('10.0.0.1')!);
  t.deepEqual(sendTx(r, [arp], { csumBlank: true }), [{ id: 0, status: OK }]);
  t.deepEqual(r.peer.take(), []);
  t.like(r.vif.stats, { txChecksumDrops: 1, txPackets: 0 });
});

test('a full ring of packets goes out in order; a small budget asks to be polled again', (t) => {
  const r = netRig();
  const frames = Array.from({ length: 256 }, (_, i) => frame(60 + i, r.mac, PEER_MAC, i + 1));
  for (const f of frames) t.truthy(r.front.queueFrame(f));
  r.front.push();
  const before = r.schedules;
  t.is(r.vif.poll(10), 10, 'a poll moves at most its budget');
  t.true(r.vif.hasWork, 'work left: kicked again');
  t.is(r.schedules, before + 1, 'and scheduled again');
  r.nb.drain(10);
  const rsp = r.front.txResponses();
  t.is(rsp.length, 256);
  t.deepEqual(rsp.map((x) => x.id), frames.map((_, i) => i));
  t.deepEqual(r.peer.take(), frames);
});

test('ring indices wrap past 2^32 without a hitch', (t) => {
  const r = netRig({ startIndex: 0xffff_fff0 });
  for (let round = 0; round < 3; round++) {
    const frames = Array.from({ length: 20 }, (_, i) => frame(64, r.mac, PEER_MAC, round * 20 + i));
    const rsp = sendTx(r, frames);
    t.is(rsp.length, 20);
    t.true(rsp.every((x) => x.status === OK));
    t.deepEqual(r.peer.take(), frames);
  }
  t.is(r.vif.ringIndices?.tx.reqCons as number | undefined, (0xffff_fff0 + 60) >>> 0);
});

test('a chain published in two halves waits for the second, which wakes the backend', (t) => {
  const r = netRig();
  const a = r.front.dataPage();
  const b = r.front.dataPage();
  a.page.set(frame(100, r.mac).subarray(0, 100));
  r.front.queueTxRaw({ gref: a.gref, offset: 0, flags: NETTXF_more_data, id: 1, size: 150 });
  r.front.push();
  r.nb.drain();
  t.deepEqual(r.front.txResponses(), [], 'nothing taken while the chain is open');
  t.is(r.vif.ringIndices?.tx.reqCons as number | undefined, 0);
  t.is(r.front.txMem.getUint32(netif_tx_sring.offsetOf('req_event'), true), 2, 'the backend asked to hear of request 2');
  b.page.fill(0xaa, 0, 50);
  r.front.queueTxRaw({ gref: b.gref, offset: 0, flags: 0, id: 2, size: 50 });
  t.true(r.front.push(), 'publishing the rest notifies the backend');
  r.nb.drain();
  t.deepEqual(r.front.txResponses(), [{ id: 1, status: OK }, { id: 2, status: OK }]);
  const [out] = r.peer.take();
  t.is(out?.length, 150);
  t.deepEqual(out?.subarray(100), new Uint8Array(50).fill(0xaa));
});

test('guest to guest: a frame from one vif lands in the other vif\'s RX buffer', (t) => {
  const a = netRig();
  const b = netRig({ share: a, domid: FRONT + 1 });
  b.front.postRx(4);
  b.front.push();
  a.nb.drain();
  const f = frame(1514, a.mac, b.mac);
  t.deepEqual(sendTx(a, [f]), [{ id: 0, status: OK }]);
  const got = b.front.received();
  t.deepEqual(got, [{ ok: true, frame: f }]);
  t.deepEqual(a.peer.take(), [f], 'unknown unicast is flooded to the peer too');
  // Now the bridge knows where b is: b's answer goes to a only.
  a.front.postRx(4);
  a.front.push();
  const back = frame(80, b.mac, a.mac);
  t.deepEqual(sendTx(b, [back]), [{ id: 0, status: OK }]);
  t.deepEqual(a.front.received(), [{ ok: true, frame: back }]);
  t.deepEqual(a.peer.take(), [], 'learned unicast is not flooded');
});
