import test from 'ava';
import { NETIF_RSP_ERROR, NETRXF_more_data, netif_rx_sring } from '../../hypervisor/public/io/netif.js';
import { FRONT, PEER_MAC, frame, netRig } from './netback-fixture.js';

test('a frame from the bridge lands in a posted buffer: offset 0, status = its length, no flags', (t) => {
  const r = netRig();
  r.front.postRx(8);
  r.front.push();
  r.nb.drain();
  const f = frame(98, PEER_MAC, r.mac);
  r.peer.send(f);
  t.true(r.vif.hasWork, 'a delivered frame kicks the vif');
  r.nb.drain();
  const rsp = r.front.rxResponses();
  t.deepEqual(rsp, [{ id: 0, offset: 0, flags: 0, status: 98 }]);
  t.deepEqual(r.front.rxPageOf(0).page.subarray(0, 98), f);
  t.is(r.front.notifications, 1, 'the frontend was notified once');
  t.like(r.vif.stats, { rxPackets: 1, rxBytes: 98, rxSlots: 1 });
});

test('a 9000-byte frame spans three buffers with more_data, and reassembles exactly', (t) => {
  const r = netRig();
  r.front.postRx(8);
  r.front.push();
  const f = frame(9000, PEER_MAC, r.mac, 11);
  r.peer.send(f);
  r.nb.drain();
  const rsp = r.front.rxResponses();
  t.deepEqual(rsp.map((x) => [x.id, x.flags, x.status]), [[0, NETRXF_more_data, 4096], [1, NETRXF_more_data, 4096], [2, 0, 808]]);
  const whole = new Uint8Array(9000);
  rsp.forEach((x, k) => whole.set(r.front.rxPageOf(x.id).page.subarray(0, x.status), k * 4096));
  t.deepEqual(whole, f);
});

test('frames wait in order for buffers; past the queue bound they are dropped and counted', (t) => {
  const r = netRig({ rxQueueFrames: 4 });
  const frames = Array.from({ length: 7 }, (_, i) => frame(64, PEER_MAC, r.mac, i + 1));
  for (const f of frames) r.peer.send(f);
  r.nb.drain();
  t.deepEqual(r.front.received(), [], 'no buffers posted: nothing delivered');
  t.is(r.vif.rxQueueLength, 4);
  t.is(r.vif.stats.rxDropQueueFull, 3);
  t.is(r.front.rxMem.getUint32(netif_rx_sring.offsetOf('req_event'), true), 1, 'the backend asked to hear of the first buffer');
  r.front.postRx(2);
  t.true(r.front.push(), 'posting buffers notifies the backend (feature-rx-notify)');
  r.nb.drain();
  t.deepEqual(r.front.received(), frames.slice(0, 2).map((frame) => ({ ok: true, frame })));
  r.front.postRx(10);
  r.front.push();
  r.nb.drain();
  t.deepEqual(r.front.received(), frames.slice(2, 4).map((frame) => ({ ok: true, frame })));
  t.is(r.vif.rxQueueLength, 0);
  t.like(r.vif.stats, { rxPackets: 4, rxDropQueueFull: 3 });
});

test('a frame that needs more buffers than are posted waits for them, and later frames wait behind it', (t) => {
  const r = netRig();
  r.front.postRx(1);
  r.front.push();
  const big = frame(5000, PEER_MAC, r.mac, 2);
  const small = frame(60, PEER_MAC, r.mac, 3);
  r.peer.send(big);
  r.peer.send(small);
  r.nb.drain();
  t.deepEqual(r.front.received(), []);
  t.is(r.vif.rxQueueLength, 2);
  r.front.postRx(2);
  t.true(r.front.push());
  r.nb.drain();
  t.deepEqual(r.front.received(), [{ ok: true, frame: big }, { ok: true, frame: small }]);
});

test('without feature-sg a frame over a page is dropped at once; a page-sized one passes', (t) => {
  const r = netRig({ sg: false });
  r.front.postRx(8);
  r.front.push();
  r.peer.send(frame(4097, PEER_MAC, r.mac));
  r.peer.send(frame(4096, PEER_MAC, r.mac));
  r.nb.drain();
  const got = r.front.received();
  t.is(got.length, 1);
  t.true(got[0]?.ok === true && got[0].frame.length === 4096);
  t.like(r.vif.stats, { rxDropTooBig: 1, rxPackets: 1 });
});

test('frames for a vif that is not connected are dropped and counted; disconnect drops the queue', (t) => {
  const r = netRig({ connect: false });
  r.peer.send(frame(60, PEER_MAC, r.mac));
  t.is(r.vif.stats.rxDropDisconnected, 1);
  t.true(r.vif.connect(r.front.connectParams()).ok);
  r.peer.send(frame(60, PEER_MAC, r.mac));
  r.peer.send(frame(60, PEER_MAC, r.mac));
  t.is(r.vif.rxQueueLength, 2);
  r.vif.disconnect();
  t.is(r.vif.rxQueueLength, 0);
  t.is(r.vif.stats.rxDropDisconnected, 3);
  t.is(r.host.mappedRings, 0);
});

test('a buffer that cannot be written makes its frame an error; the next frame is fine', (t) => {
  const r = netRig();
  // Buffer ids 0 and 1: make 1 a read-only grant, so the second page of a two-page frame fails.
  r.front.useRxPage(1, r.front.dataPage({ readOnly: true }));
  r.front.postRx(4);
  r.front.push();
  const f = frame(6000, PEER_MAC, r.mac);
  const g = frame(70, PEER_MAC, r.mac, 9);
  r.peer.send(f);
  r.peer.send(g);
  r.nb.drain();
  const rsp = r.front.rxResponses();
  t.deepEqual(rsp.slice(0, 2).map((x) => [x.id, x.flags, x.status]), [[0, NETRXF_more_data, NETIF_RSP_ERROR], [1, 0, NETIF_RSP_ERROR]]);
  t.deepEqual(rsp[2], { id: 2, offset: 0, flags: 0, status: 70 });
  t.deepEqual(r.front.rxPageOf(2).page.subarray(0, 70), g);
  t.is(r.vif.state, 'connected');
  t.like(r.vif.stats, { rxErrors: 1, rxPackets: 1 });
});

test('RX ring indices wrap past 2^32', (t) => {
  const r = netRig({ startIndex: 0xffff_fffe });
  for (let round = 0; round < 3; round++) {
    r.front.postRx(3);
    r.front.push();
    const frames = [0, 1, 2].map((i) => frame(100 + i, PEER_MAC, r.mac, round * 3 + i));
    for (const f of frames) r.peer.send(f);
    r.nb.drain();
    t.deepEqual(r.front.received(), frames.map((frame) => ({ ok: true, frame })), `round ${round}`);
  }
});

test('a vif of another domain does not see frames addressed elsewhere once the bridge has learned', (t) => {
  const a = netRig();
  const b = netRig({ share: a, domid: FRONT + 1 });
  for (const r of [a, b]) {
    r.front.postRx(4);
    r.front.push();
  }
  a.nb.drain();
  // b speaks once, so the bridge learns where b is.
  b.front.queueFrame(frame(60, b.mac, PEER_MAC));
  b.front.push();
  b.nb.drain();
  a.front.received();
  a.peer.send(frame(60, PEER_MAC, b.mac));
  a.nb.drain();
  t.is(b.front.received().length, 1);
  t.deepEqual(a.front.received(), [], 'a only got the flooded frame of b, not the unicast one');
});
