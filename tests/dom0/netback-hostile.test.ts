import test, { type ExecutionContext } from 'ava';
import {
  NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD, netif_rx_sring, netif_tx_sring,
} from '../../hypervisor/public/io/netif.js';
import { XenbusStateClosing } from '../../hypervisor/public/io/xenbus.js';
import { LoopbackNetFront } from '../../hypervisor/dom0/netback/loopback.js';
import { domid } from '../../hypervisor/public/types.js';
import { FRONT, PEER_MAC, frame, netRig, seededRandom, sendTx, type NetRig } from './netback-fixture.js';

const OK = NETIF_RSP_OKAY;
const ERR = NETIF_RSP_ERROR;
const TX_REQ_PROD = netif_tx_sring.offsetOf('req_prod');
const RX_REQ_PROD = netif_rx_sring.offsetOf('req_prod');

/** A valid packet each way still works after `what`. */
function stillWorks(t: ExecutionContext, r: NetRig, what: string): void {
  const f = frame(80, r.mac, PEER_MAC, 77);
  r.peer.take();
  const rsp = sendTx(r, [f]);
  t.deepEqual(rsp.map((x) => x.status), [OK], `after ${what}, TX still works`);
  t.deepEqual(r.peer.take(), [f], `after ${what}, the packet reached the bridge`);
  r.front.postRx(1);
  r.front.push();
  const g = frame(90, PEER_MAC, r.mac, 78);
  r.peer.send(g);
  r.nb.drain();
  t.deepEqual(r.front.received(), [{ ok: true, frame: g }], `after ${what}, RX still works`);
}

/** Queue raw requests, push, drain, take the responses. */
function raw(r: NetRig, reqs: Array<{ gref: number; offset: number; flags: number; id: number; size: number }>) {
  for (const q of reqs) r.front.queueTxRaw(q);
  r.front.push();
  r.nb.drain();
  return r.front.txResponses();
}

test('refused TX packets are answered ERROR on every slot and the vif keeps working', (t) => {
  const r = netRig();
  const page = r.front.dataPage();
  page.page.set(frame(200, r.mac));
  // Refs are per domain: ref 500 of d8 says nothing about d3's ref 500, which d3 never granted.
  const otherDom = { gref: r.host.grants.grant(domid(FRONT + 5), new Uint8Array(4096), { ref: 500 }) };
  const ro = r.front.dataPage({ readOnly: true });
  ro.page.set(frame(60, r.mac));
  const cases: Array<[string, Parameters<typeof raw>[1], number[]]> = [
    ['an ungranted page', [{ gref: 4242, offset: 0, flags: 0, id: 1, size: 60 }], [ERR]],
    ["another domain's grant", [{ gref: otherDom.gref, offset: 0, flags: 0, id: 2, size: 60 }], [ERR]],
    ['a runt', [{ gref: page.gref, offset: 0, flags: 0, id: 3, size: 10 }], [ERR]],
    ['data past the page end', [{ gref: page.gref, offset: 4090, flags: 0, id: 4, size: 60 }], [ERR]],
    ['fragments bigger than the packet', [
      { gref: page.gref, offset: 0, flags: NETTXF_more_data, id: 5, size: 60 },
      { gref: page.gref, offset: 0, flags: 0, id: 6, size: 4000 }], [ERR, ERR]],
    ['a good first page and an ungranted second', [
      { gref: page.gref, offset: 0, flags: NETTXF_more_data, id: 7, size: 200 },
      { gref: 4343, offset: 0, flags: 0, id: 8, size: 100 }], [ERR, ERR]],
    ['19 chained slots', Array.from({ length: 19 }, (_, i) => ({ gref: page.gref, offset: 0, flags: i < 18 ? NETTXF_more_data : 0, id: 100 + i, size: i === 0 ? 19 * 14 : 14 })),
      Array<number>(19).fill(ERR)],
  ];
  for (const [what, reqs, statuses] of cases) {
    const rsp = raw(r, reqs);
    t.deepEqual(rsp.map((x) => x.status), statuses, what);
    t.deepEqual(rsp.map((x) => x.id), reqs.map((q) => q.id), `${what}: ids echoed`);
    t.is(r.vif.state, 'connected', `${what}: still connected`);
    stillWorks(t, r, what);
  }
  t.is(r.vif.stats.txErrors, cases.length);
  t.is(r.peer.frames.length, 0, 'no refused packet reached the bridge');
  // A read-only grant is a fine TX source.
  t.deepEqual(raw(r, [{ gref: ro.gref, offset: 0, flags: 0, id: 9, size: 60 }]).map((x) => x.status), [OK]);
});

test('an extra-info slot in a refused packet is still answered NULL', (t) => {
  const r = netRig();
  r.front.queueTxRaw({ gref: 4242, offset: 0, flags: NETTXF_extra_info, id: 3, size: 60 });
  r.front.queueExtra({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: 0 });
  r.front.push();
  r.nb.drain();
  t.deepEqual(r.front.txResponses(), [{ id: 3, status: ERR }, { id: 3, status: NETIF_RSP_NULL }]);
});

test('garbage TX indices fail that vif only: Closing, error, rings and port released', (t) => {
  const a = netRig();
  const b = netRig({ share: a, domid: FRONT + 1 });
  a.front.txMem.setUint32(TX_REQ_PROD, 1000, true); // 1000 requests on a 256-slot ring
  t.true(a.host.send(a.front.domid, a.front.port));
  a.nb.drain();
  t.is(a.vif.state, 'failed');
  t.regex(a.vif.error ?? '', /TX ring indices are garbage: req_prod 1000 is 1000 ahead of req_cons 0; at most 256/);
  t.is(a.vif.xenbusState(), XenbusStateClosing, 'the wiring publishes Closing');
  t.deepEqual(a.failures, [a.vif], 'the failure was reported');
  t.is(a.host.mappedRings, 2, "a's rings unmapped, b's still mapped");
  t.false(a.host.send(a.front.domid, a.front.port), "a's port is closed");
  stillWorks(t, b, "a's failure");
  const dropped = a.vif.stats.rxDropDisconnected;
  a.peer.send(frame(60, PEER_MAC, a.mac));
  t.is(a.vif.stats.rxDropDisconnected, dropped + 1, 'frames for a failed vif are dropped');
});

test('req_prod behind req_cons is garbage too', (t) => {
  const r = netRig();
  sendTx(r, [frame(60, r.mac), frame(60, r.mac)]);
  r.front.txMem.setUint32(TX_REQ_PROD, 1, true);
  r.vif.kick();
  r.nb.drain();
  t.is(r.vif.state, 'failed');
  t.regex(r.vif.error ?? '', /req_prod 1 is 1 behind req_cons 2/);
});

test('garbage RX indices fail the vif when a frame needs buffers', (t) => {
  const r = netRig();
  r.front.rxMem.setUint32(RX_REQ_PROD, 0x8000_0000, true);
  r.peer.send(frame(60, PEER_MAC, r.mac));
  r.nb.drain();
  t.is(r.vif.state, 'failed');
  t.regex(r.vif.error ?? '', /RX ring indices are garbage/);
});

test('a chain of more than 20 slots cannot be delimited: the vif is closed', (t) => {
  const r = netRig();
  const page = r.front.dataPage();
  for (let i = 0; i < 25; i++) r.front.queueTxRaw({ gref: page.gref, offset: 0, flags: NETTXF_more_data, id: i, size: 14 });
  r.front.push();
  r.nb.drain();
  t.is(r.vif.state, 'failed');
  t.regex(r.vif.error ?? '', /more than 20 requests chained/);
});

test('an endless extra-info chain closes the vif', (t) => {
  const r = netRig();
  r.front.queueTxRaw({ gref: 0, offset: 0, flags: NETTXF_extra_info, id: 1, size: 60 });
  for (let i = 0; i < 6; i++) r.front.queueExtra({ type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD, flags: XEN_NETIF_EXTRA_FLAG_MORE });
  r.front.push();
  r.nb.drain();
  t.is(r.vif.state, 'failed');
  t.regex(r.vif.error ?? '', /more than 4 extra-info slots/);
});

test('a ring flood (every slot, pushed repeatedly) is served and never overruns', (t) => {
  const r = netRig();
  const page = r.front.dataPage();
  page.page.set(frame(60, r.mac));
  for (let round = 0; round < 4; round++) {
    let n = 0;
    while (r.front.queueTxRaw({ gref: page.gref, offset: 0, flags: 0, id: n, size: 60 })) n++;
    t.is(n, 256, `round ${round}: the frontend filled the ring`);
    r.front.push();
    r.nb.drain(7);
    t.is(r.front.txResponses().length, 256);
  }
  t.is(r.vif.stats.txPackets, 1024);
});

test('random slot contents never throw: each packet is answered or the vif is closed (seeded)', (t) => {
  const rand = seededRandom(0xbad5eed);
  for (let trial = 0; trial < 40; trial++) {
    const r = netRig();
    const bystander = netRig({ share: r, domid: FRONT + 1 });
    const page = r.front.dataPage();
    const grefs = [page.gref, r.front.txRef, 4242, 0];
    const n = 1 + Math.floor(rand() * 60);
    for (let i = 0; i < n; i++) {
      const ok = rand() < 0.5
        ? r.front.queueTxRaw({
          gref: grefs[Math.floor(rand() * grefs.length)]!, offset: Math.floor(rand() * 5000), flags: Math.floor(rand() * 16),
          id: i, size: Math.floor(rand() * 70000),
        })
        : r.front.queueExtra({ type: Math.floor(rand() * 7), flags: Math.floor(rand() * 2) });
      if (!ok) break;
    }
    r.front.push();
    t.notThrows(() => r.nb.drain(), `trial ${trial}`);
    t.true(r.vif.state === 'connected' || r.vif.state === 'failed', `trial ${trial}: ${r.vif.state}`);
    if (r.vif.state === 'connected') t.notThrows(() => r.front.txResponses(), `trial ${trial}: sane responses`);
    stillWorks(t, bystander, `trial ${trial} next door`);
  }
});

test('connect refuses what is not offered, with a clear error, and holds nothing', (t) => {
  const r = netRig({ connect: false });
  const p = r.front.connectParams();
  const cases: Array<[string, Parameters<typeof r.vif.connect>[0], RegExp]> = [
    ['page flipping', { ...p, requestRxCopy: false }, /request-rx-copy is not 1: this backend only copies/],
    ['no rx notify', { ...p, rxNotify: false }, /feature-rx-notify is not 1/],
    ['an ungranted TX ring', { ...p, txRingRef: 4242 }, /cannot map tx-ring-ref 4242: d3 has not granted ref 4242/],
    ['an ungranted RX ring', { ...p, rxRingRef: 4343 }, /cannot map rx-ring-ref 4343/],
    ['a ring-ref that is not a number', { ...p, txRingRef: -1 }, /tx-ring-ref -1 is not a grant reference/],
  ];
  for (const [what, params, msg] of cases) {
    const c = r.vif.connect(params);
    t.false(c.ok, what);
    t.is(r.vif.state, 'failed', what);
    t.regex(r.vif.error ?? '', msg, what);
    t.is(r.host.mappedRings, 0, `${what}: nothing left mapped`);
  }
  // A port someone already bound.
  const other = r.host.bindEventChannel(r.front.domid, r.front.port, () => undefined);
  t.true(other.ok);
  t.regex((r.vif.connect(p) as { error?: string }).error ?? '', /cannot bind event-channel 7: port 7 of d3 is already bound/);
  t.is(r.host.mappedRings, 0);
  if (other.ok) other.value.close();
  t.true(r.vif.connect(p).ok, 'from failed, a good connect succeeds');
  stillWorks(t, r, 'the refusals');
});

test('a reconnection serves the new rings; events for the old port are ignored', (t) => {
  const r = netRig();
  stillWorks(t, r, 'the first connection');
  const gen = r.vif.generation;
  r.vif.disconnect();
  t.is(r.vif.state, 'waiting');
  const fresh = new LoopbackNetFront(r.host, r.front.domid, { port: 9 });
  t.true(r.vif.connect(fresh.connectParams()).ok);
  t.is(r.vif.generation, gen + 1);
  t.false(r.host.send(r.front.domid, r.front.port), 'the old port is closed');
  const old = r.front;
  r.front = fresh;
  stillWorks(t, r, 'the reconnection');
  t.is(old.txResponses().length, 0, 'nothing went to the old rings');
});

test('destroyDomain takes every vif of that domain off the bridge', (t) => {
  const a = netRig();
  netRig({ share: a, devid: 1, port: 8 });
  const c = netRig({ share: a, domid: FRONT + 1 });
  t.is(a.nb.destroyDomain(FRONT), 2);
  t.deepEqual(a.bridge.portNames().sort(), ['peer', `vif${FRONT + 1}.0`]);
  t.is(a.vif.state, 'closed');
  t.is(a.nb.list().length, 1);
  t.is(a.host.mappedRings, 2, 'only the other domain\'s rings are still mapped');
  stillWorks(t, c, 'the other domain\'s destruction');
  t.false(a.nb.destroy(FRONT, 0));
});

test('create refuses a duplicate, a bad MAC and a bad handle', (t) => {
  const r = netRig();
  const dup = r.nb.create({ frontendDomid: FRONT, devid: 0, mac: r.mac, bridge: r.bridge });
  t.like(dup, { ok: false, error: { kind: 'exists' } });
  t.like(r.nb.create({ frontendDomid: FRONT, devid: 1, mac: 'not-a-mac', bridge: r.bridge }), { ok: false, error: { kind: 'bad-mac' } });
  t.like(r.nb.create({ frontendDomid: FRONT, devid: 70000, mac: r.mac, bridge: r.bridge }), { ok: false, error: { kind: 'bad-devid' } });
});
