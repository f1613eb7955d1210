// netback over the REAL hypervisor: a Machine on a simulated clock, a
// domain whose pages carry the rings and the data, grants written into the
// domain's own grant table, an unbound port of the domain, and the
// machine backend host (GNTTABOP_map_grant_ref / copy, EVTCHNOP_* as dom0).
// The "guest" here is the test acting for the domain through the host API
// (it has no kernel): it writes its pages through machine memory and sends
// events on its own port, exactly what a frontend's stores and hypercalls
// would do.
import test from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import type { EvtchnCaller } from '../../hypervisor/xen/evtchn.js';
import { GTF_permit_access, GTF_readonly } from '../../hypervisor/public/grant_table.js';
import { FrontRing } from '../../hypervisor/public/io/ring.js';
import { NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETRXF_more_data, NETTXF_more_data } from '../../hypervisor/public/io/netif.js';
import { Bridge } from '../../hypervisor/dom0/net/bridge.js';
import { Netback } from '../../hypervisor/dom0/netback/netback.js';
import { machineBackendHost } from '../../hypervisor/dom0/backend-host.js';
import { NETIF_RX_GEOMETRY, NETIF_TX_GEOMETRY } from '../../hypervisor/dom0/netback/transport.js';
import {
  decodeRxResponse, decodeTxResponse, encodeRxRequest, encodeTxRequest, type RxResponse, type TxResponse,
} from '../../hypervisor/dom0/netback/wire.js';
import { domid as toDomid } from '../../hypervisor/public/types.js';
import { PEER_MAC, Peer, frame } from './netback-fixture.js';

const PAGES = 16;
const TX_RING_PFN = 0;
const RX_RING_PFN = 1;
const DATA_PFN = 4; // pfns 4..15: data pages, granted as refs 8 + pfn

function boot() {
  const m = new Machine({ memoryBytes: 32 * 1024 * 1024, clock: 'simulated' });
  const d = m.createDomain({ maxPages: 64 });
  if (typeof d === 'number') throw new Error(`createDomain: ${d}`);
  const dom = d.id;
  const mfns = m.xc.populatePhysmap(dom, Array.from({ length: PAGES }, (_, i) => i));
  if (typeof mfns === 'number') throw new Error(`populatePhysmap: ${mfns}`);
  const refOf = (pfn: number): number => 8 + pfn;
  const grant = (pfn: number, readOnly = false): void => {
    const rc = m.gnttab.seedEntry(dom, refOf(pfn), { flags: GTF_permit_access | (readOnly ? GTF_readonly : 0), domid: 0, frame: mfns[pfn]! });
    if (rc !== 0) throw new Error(`seedEntry: ${rc}`);
  };
  for (let pfn = 0; pfn < PAGES; pfn++) if (pfn !== 2 && pfn !== 3) grant(pfn);
  const guest: EvtchnCaller = { domid: dom, vcpuId: 0, privileged: false };
  const port = m.evtchn.allocUnbound(guest, dom, 0);
  if (port < 0) throw new Error(`allocUnbound: ${port}`);
  const txMem = m.memory.frameMem(mfns[TX_RING_PFN]!);
  const rxMem = m.memory.frameMem(mfns[RX_RING_PFN]!);
  const tx = FrontRing.init(txMem, 0, NETIF_TX_GEOMETRY);
  const rx = FrontRing.init(rxMem, 0, NETIF_RX_GEOMETRY);

  const host = machineBackendHost(m);
  const bridge = new Bridge({ name: 'xenbr0', clock: { now: () => m.clock.now() } });
  const peer = new Peer('peer');
  peer.link = bridge.attach(peer);
  const nb: Netback = new Netback({ host, schedule: () => m.defer(() => nb.poll()) });
  const mac = '00:16:3e:00:00:01';
  const created = nb.create({ frontendDomid: toDomid(dom), devid: 0, mac, bridge });
  if (!created.ok) throw new Error(created.error.message);
  const vif = created.value;

  const front = {
    /** The guest publishes its requests and, if asked, notifies on its port. */
    push(): void {
      const a = tx.pushRequests();
      const b = rx.pushRequests();
      if (a || b) m.evtchn.send(guest, port);
    },
    txResponses(): TxResponse[] {
      const n = tx.unconsumedResponses();
      if (!n.ok) throw new Error(n.error);
      return Array.from({ length: n.value }, () => decodeTxResponse(txMem, tx.consumeResponse()));
    },
    rxResponses(): RxResponse[] {
      const n = rx.unconsumedResponses();
      if (!n.ok) throw new Error(n.error);
      return Array.from({ length: n.value }, () => decodeRxResponse(rxMem, rx.consumeResponse()));
    },
    /** Our port was raised by the backend (and clear it, as the upcall would). */
    notified(): boolean {
      const p = m.evtchn.drainPending(dom, 0).includes(port as never);
      return p;
    },
  };
  return { m, dom, mfns, refOf, grant, guest, port, tx, rx, txMem, rxMem, host, bridge, peer, nb, vif, mac, front };
}

test('netback over the real grant tables and event channels: connect, TX, RX (log-dirty sees RX), teardown', (t) => {
  const g = boot();
  const { m, dom, mfns, refOf, front, vif } = g;
  const c = vif.connect({ txRingRef: refOf(TX_RING_PFN), rxRingRef: refOf(RX_RING_PFN), eventChannel: g.port, requestRxCopy: true, rxNotify: true, sg: true });
  t.true(c.ok, c.ok ? '' : c.error);
  t.is(g.host.mappedRings, 2);
  t.deepEqual(m.gnttab.activeGrants(dom).map((a) => [a.ref, a.mapper, a.devWrite]).sort(),
    [[refOf(TX_RING_PFN), 0, 1], [refOf(RX_RING_PFN), 0, 1]], 'dom0 holds writable maps of both ring grants');
  const st = m.evtchn.status({ domid: dom, vcpuId: 0, privileged: false }, dom, g.port);
  t.like(st, { dom: 0 }, "the guest's port is now interdomain with dom0");
  m.runToIdle();

  // TX: a two-page packet written by the guest into its pages 4 and 5.
  const out = frame(6000, g.mac, PEER_MAC, 5);
  m.memory.writeBytes(mfns[DATA_PFN]!, 96, out.subarray(0, 4000));
  m.memory.writeBytes(mfns[DATA_PFN + 1]!, 0, out.subarray(4000));
  encodeTxRequest(g.txMem, g.tx.produceRequest()!, { gref: refOf(DATA_PFN), offset: 96, flags: NETTXF_more_data, id: 1, size: 6000 });
  encodeTxRequest(g.txMem, g.tx.produceRequest()!, { gref: refOf(DATA_PFN + 1), offset: 0, flags: 0, id: 2, size: 2000 });
  // And one from a page the guest never granted (pfn 2): GNTST_bad_gntref through the real copy.
  encodeTxRequest(g.txMem, g.tx.produceRequest()!, { gref: refOf(2), offset: 0, flags: 0, id: 3, size: 60 });
  front.push();
  t.is(m.runToIdle(), 'idle');
  t.deepEqual(front.txResponses(), [{ id: 1, status: NETIF_RSP_OKAY }, { id: 2, status: NETIF_RSP_OKAY }, { id: 3, status: NETIF_RSP_ERROR }]);
  t.deepEqual(g.peer.take(), [out], 'the packet reached the bridge byte for byte');
  t.true(front.notified(), 'the backend raised the guest\'s port');
  t.deepEqual(m.gnttab.activeGrants(dom).length, 2, 'copies leave no grant pinned');

  // RX, with the guest in log-dirty mode: the backend's writes must show.
  t.is(m.xc.enableLogDirty(dom), 0);
  for (let k = 0; k < 2; k++) encodeRxRequest(g.rxMem, g.rx.produceRequest()!, { id: 10 + k, gref: refOf(DATA_PFN + 4 + k) });
  front.push();
  m.runToIdle();
  t.not(m.xc.dirtyBitmap(dom, PAGES, true), -1, 'clean the bitmap after the guest\'s own writes');
  const inbound = frame(5000, PEER_MAC, g.mac, 9);
  g.peer.send(inbound);
  m.runToIdle();
  const rsp = front.rxResponses();
  t.deepEqual(rsp, [
    { id: 10, offset: 0, flags: NETRXF_more_data, status: 4096 },
    { id: 11, offset: 0, flags: 0, status: 904 },
  ]);
  const got = new Uint8Array(5000);
  got.set(m.memory.readBytes(mfns[DATA_PFN + 4]!, 0, 4096), 0);
  got.set(m.memory.readBytes(mfns[DATA_PFN + 5]!, 0, 904), 4096);
  t.deepEqual(got, inbound, 'the frame is in the guest\'s buffers');
  t.true(front.notified());
  const bitmap = m.xc.dirtyBitmap(dom, PAGES, false);
  if (typeof bitmap === 'number') return t.fail(`dirtyBitmap: ${bitmap}`);
  const dirty = Array.from({ length: PAGES }, (_, pfn) => pfn).filter((pfn) => (bitmap[pfn >> 3]! & (1 << (pfn & 7))) !== 0);
  t.deepEqual(dirty, [RX_RING_PFN, DATA_PFN + 4, DATA_PFN + 5], 'log-dirty saw the RX ring response and both filled buffers, nothing else');

  // A read-only buffer: the real GNTTABOP_copy refuses, the frame is an error.
  g.grant(DATA_PFN + 6, true);
  encodeRxRequest(g.rxMem, g.rx.produceRequest()!, { id: 20, gref: refOf(DATA_PFN + 6) });
  front.push();
  g.peer.send(frame(64, PEER_MAC, g.mac));
  m.runToIdle();
  t.deepEqual(front.rxResponses(), [{ id: 20, offset: 0, flags: 0, status: NETIF_RSP_ERROR }]);
  t.like(vif.stats, { txPackets: 1, txErrors: 1, rxPackets: 1, rxErrors: 1 });

  // Teardown: maps and the port go back.
  t.true(g.nb.destroy(toDomid(dom), 0));
  t.is(g.host.mappedRings, 0);
  t.is(g.host.boundPorts, 0);
  t.deepEqual(m.gnttab.activeGrants(dom), [], 'no grant of the guest is in use any more');
  t.is(m.gnttab.readEntry(dom, refOf(TX_RING_PFN))?.flags, GTF_permit_access, 'GTF_reading/GTF_writing cleared');
  t.like(m.evtchn.status({ domid: dom, vcpuId: 0, privileged: false }, dom, g.port), { dom: 0 }, "the guest's port waits for dom0 again");
  t.deepEqual(g.bridge.portNames(), ['peer']);
  g.host.close();
});

test('the machine host refuses what the hypervisor refuses, with its words', (t) => {
  const g = boot();
  const bad = g.vif.connect({ txRingRef: g.refOf(2), rxRingRef: g.refOf(RX_RING_PFN), eventChannel: g.port, requestRxCopy: true, rxNotify: true });
  t.false(bad.ok);
  t.regex(g.vif.error ?? '', /cannot map tx-ring-ref 10: .*\(map d\d+ gref 10\)/);
  t.is(g.host.mappedRings, 0);
  const noPort = g.vif.connect({ txRingRef: g.refOf(TX_RING_PFN), rxRingRef: g.refOf(RX_RING_PFN), eventChannel: 99, requestRxCopy: true, rxNotify: true });
  t.false(noPort.ok);
  t.regex(g.vif.error ?? '', /cannot bind event-channel 99: bind_interdomain to d\d+ port 99: EINVAL/);
  t.is(g.host.mappedRings, 0, 'the ring maps were undone');
  t.deepEqual(g.m.gnttab.activeGrants(g.dom), []);
  t.true(g.vif.connect({ txRingRef: g.refOf(TX_RING_PFN), rxRingRef: g.refOf(RX_RING_PFN), eventChannel: g.port, requestRxCopy: true, rxNotify: true }).ok);
});
