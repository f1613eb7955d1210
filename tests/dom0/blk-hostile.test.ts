import test from 'ava';
import {
  BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RING_SIZE,
  BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, blkif_sring,
} from '../../hypervisor/public/io/blkif.js';
import { XenbusStateClosing, XenbusStateConnected, XenbusStateInitWait } from '../../hypervisor/public/io/xenbus.js';
import { LoopbackFront } from '../../hypervisor/dom0/blkback/loopback.js';
import { Vbd } from '../../hypervisor/dom0/blkback/vbd.js';
import { DiskImage } from '../../hypervisor/dom0/blkback/disk.js';
import type { BackendHost } from '../../hypervisor/dom0/backend-host.js';
import type { RequestFields } from '../../hypervisor/dom0/blkback/wire.js';
import { domid, evtchnPort, grantRef } from '../../hypervisor/public/types.js';
import { FRONT, XVDA, exchange, fileSectors, makeImage, pages, prng, rig, tempDir, type Rig } from './blk-fixture.js';

const OK = BLKIF_RSP_OKAY;
const REQ_PROD = blkif_sring.offsetOf('req_prod');

/** A valid one-page read: the device still works. */
function stillWorks(t: import('ava').ExecutionContext, r: Rig, id: bigint, what: string): void {
  const { segments } = pages(r.front, 1);
  const rsp = exchange(r, [{ operation: BLKIF_OP_READ, id, sector: 0, segments }]);
  t.deepEqual(rsp, [{ id, operation: BLKIF_OP_READ, status: OK }], `after ${what}, a valid read still works`);
}

test('every invalid request is answered with its id and an error, and the device keeps working', (t) => {
  const r = rig(t, { sectors: 64 });
  const g = pages(r.front, 2, () => 0xe1);
  const roPage = pages(r.front, 1, () => 0, { readOnly: true });
  const seg = g.segments[0]!;
  const cases: Array<[string, RequestFields, number]> = [
    ['an undefined operation', { operation: 99, id: 0x1001n, segments: [seg] }, BLKIF_RSP_ERROR],
    ['discard', { operation: BLKIF_OP_DISCARD, id: 0x1002n, segments: [seg] }, BLKIF_RSP_EOPNOTSUPP],
    ['indirect', { operation: BLKIF_OP_INDIRECT, id: 0x1003n, segments: [seg] }, BLKIF_RSP_EOPNOTSUPP],
    ['nr_segments 0', { operation: BLKIF_OP_READ, id: 0x1004n, segments: [] }, BLKIF_RSP_ERROR],
    ['nr_segments 12', { operation: BLKIF_OP_WRITE, id: 0x1005n, segments: [seg], nrSegments: 12 }, BLKIF_RSP_ERROR],
    ['first_sect 8', { operation: BLKIF_OP_READ, id: 0x1006n, segments: [{ ...seg, firstSect: 8, lastSect: 8 }] }, BLKIF_RSP_ERROR],
    ['last_sect 8', { operation: BLKIF_OP_READ, id: 0x1007n, segments: [{ ...seg, firstSect: 0, lastSect: 8 }] }, BLKIF_RSP_ERROR],
    ['first_sect > last_sect', { operation: BLKIF_OP_READ, id: 0x1008n, segments: [{ ...seg, firstSect: 6, lastSect: 2 }] }, BLKIF_RSP_ERROR],
    ['a range beyond the disk', { operation: BLKIF_OP_WRITE, id: 0x1009n, sector: 60, segments: [seg] }, BLKIF_RSP_ERROR],
    ['a flush with segments', { operation: BLKIF_OP_FLUSH_DISKCACHE, id: 0x100an, segments: [seg] }, BLKIF_RSP_ERROR],
    ['a read into an ungranted page', { operation: BLKIF_OP_READ, id: 0x100bn, segments: [{ ...seg, gref: grantRef(4242) }] }, BLKIF_RSP_ERROR],
    ['a read into a read-only grant', { operation: BLKIF_OP_READ, id: 0x100cn, segments: roPage.segments }, BLKIF_RSP_ERROR],
    ['a write whose second page is not granted', { operation: BLKIF_OP_WRITE, id: 0x100dn, sector: 0, segments: [seg, { ...seg, gref: grantRef(4343) }] }, BLKIF_RSP_ERROR],
  ];
  const before = fileSectors(r.image, 0, 64);
  for (const [what, req, status] of cases) {
    const rsp = exchange(r, [req]);
    t.deepEqual(rsp, [{ id: req.id, operation: req.operation, status }], what);
    t.is(r.vbd.state, 'connected', `${what}: still connected`);
    stillWorks(t, r, req.id + 0x10000n, what);
  }
  t.deepEqual(fileSectors(r.image, 0, 64), before, 'no refused request changed the disk (no partial write)');
  t.is(r.vbd.stats.errors, cases.length);
  t.is(r.vbd.stats.requests, 2 * cases.length);
});

test('a page granted by another domain cannot be used', (t) => {
  const r = rig(t);
  const other = new LoopbackFront(r.host, domid(FRONT + 1));
  const p = other.dataPage();
  const rsp = exchange(r, [{ operation: BLKIF_OP_WRITE, id: 1n, sector: 0, segments: [{ gref: p.gref, firstSect: 0, lastSect: 7 }] }]);
  t.is(rsp[0]?.status, BLKIF_RSP_ERROR, "d3's vbd copies from d3's grants only");
});

test('garbage ring indices disconnect that device only; a second device carries on', (t) => {
  const a = rig(t);
  const b = rig(t, { share: a, domid: FRONT + 1 });
  const sa = pages(a.front, 1);
  const sb = pages(b.front, 1);
  a.front.queue({ operation: BLKIF_OP_READ, id: 1n, sector: 0, segments: sa.segments });
  b.front.queue({ operation: BLKIF_OP_READ, id: 2n, sector: 0, segments: sb.segments });
  a.front.push();
  b.front.push();
  a.front.mem.setUint32(REQ_PROD, 1000, true); // 1000 requests on a 32-slot ring
  a.bb.drain();
  t.is(a.vbd.state, 'failed');
  t.regex(a.vbd.error ?? '', /ring indices are garbage: req_prod 1000 is 1000 ahead of req_cons 0; at most 32/);
  t.is(a.vbd.xenbusState(), XenbusStateClosing, 'the wiring publishes Closing');
  t.deepEqual(a.failures, [a.vbd], 'the failure was reported');
  t.is(a.host.mappedRings, 1, "a's ring is unmapped, b's still mapped");
  t.false(a.host.send(a.front.domid, a.front.port), "a's port is unbound");
  t.deepEqual(b.front.responses(), [{ id: 2n, operation: BLKIF_OP_READ, status: OK }], 'b was served in the same drain');
  stillWorks(t, b, 3n, "a's failure");
  t.is(b.vbd.state, 'connected');
});

test('req_prod moved behind req_cons is garbage too', (t) => {
  const r = rig(t);
  stillWorks(t, r, 1n, 'nothing');
  r.front.mem.setUint32(REQ_PROD, 0xffff_fff0, true);
  r.host.send(r.front.domid, r.front.port);
  r.bb.drain();
  t.is(r.vbd.state, 'failed');
  t.regex(r.vbd.error ?? '', /behind req_cons 1/);
});

test('a failed device reconnects to a fresh ring after the frontend re-initialises', (t) => {
  const r = rig(t);
  r.front.mem.setUint32(REQ_PROD, 77, true);
  r.bb.drain();
  t.is(r.vbd.state, 'failed');
  r.vbd.disconnect();
  t.is(r.vbd.xenbusState(), XenbusStateInitWait);
  const fresh = new LoopbackFront(r.host, FRONT, { port: 9 });
  t.true(r.vbd.connect(fresh.connectParams()).ok);
  t.is(r.vbd.error, undefined, 'the old error is cleared');
  stillWorks(t, { ...r, front: fresh }, 2n, 'a reconnect');
});

test('response ids and operations always match the requests, in order (seeded mix of good and bad)', (t) => {
  const r = rig(t, { sectors: 256 });
  const rnd = prng(20240611);
  const data = pages(r.front, 11, (p, i) => p + i);
  let sent = 0;
  for (let round = 0; round < 40; round++) {
    const batch: RequestFields[] = [];
    const n = 1 + Math.floor(rnd() * BLKIF_RING_SIZE);
    for (let k = 0; k < n; k++) {
      const id = BigInt(Math.floor(rnd() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(rnd() * 2 ** 32));
      const kind = Math.floor(rnd() * 6);
      const nseg = 1 + Math.floor(rnd() * 11);
      const segments = data.segments.slice(0, nseg);
      const sector = Math.floor(rnd() * 300); // sometimes beyond the 256-sector disk
      const operation = [BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_DISCARD, 200, BLKIF_OP_READ][kind]!;
      batch.push({ operation, id, sector, segments: operation === BLKIF_OP_FLUSH_DISKCACHE && rnd() < 0.5 ? [] : segments });
    }
    const rsp = exchange(r, batch);
    t.is(rsp.length, batch.length, `round ${round}: one response per request`);
    rsp.forEach((x, i) => {
      if (x.id !== batch[i]!.id || x.operation !== batch[i]!.operation) {
        t.fail(`round ${round} #${i}: response (${x.id}, op ${x.operation}) for request (${batch[i]!.id}, op ${batch[i]!.operation})`);
      }
    });
    sent += batch.length;
  }
  t.is(r.vbd.stats.requests, sent);
  t.is(r.vbd.state, 'connected');
});

test('the ring wraps past 2^32 indices: ids, data and order survive', (t) => {
  const start = 2 ** 32 - 40;
  const r = rig(t, { startIndex: start, sectors: 512 });
  t.deepEqual(r.vbd.ringIndices, { rspProdPvt: start, reqCons: start });
  const out = pages(r.front, 1);
  // Request k writes one page of value k & 0xff at sector 8 * (k % 64).
  let k = 0;
  for (let round = 0; round < 5; round++) {
    const batch: RequestFields[] = [];
    for (let j = 0; j < BLKIF_RING_SIZE; j++, k++) {
      const w = pages(r.front, 1, () => k & 0xff);
      batch.push({ operation: BLKIF_OP_WRITE, id: BigInt(k) << 40n, sector: (k % 64) * 8, segments: w.segments });
    }
    const rsp = exchange(r, batch);
    t.deepEqual(rsp.map((x) => [x.id, x.status]), batch.map((q) => [q.id, OK]), `round ${round}`);
  }
  t.deepEqual(r.vbd.ringIndices, { rspProdPvt: 120, reqCons: 120 }, '160 requests after 2^32 - 40 is 120');
  t.is(r.front.ring.rspCons as number, 120);
  // Sector 8 * 31 was last written by request 159 (after 31 and 95).
  const rsp = exchange(r, [{ operation: BLKIF_OP_READ, id: 999n, sector: 31 * 8, segments: out.segments }]);
  t.is(rsp[0]?.status, OK);
  t.true(out.bufs[0]!.every((b) => b === 159), 'the data written across the wrap reads back');
});

test('connect refuses a foreign protocol, an ungranted ring, a busy port; then a good connect works', (t) => {
  const r = rig(t, { connect: false });
  const p = r.front.connectParams();
  const bad = [
    [{ ...p, protocol: 'x86_32-abi' }, /protocol "x86_32-abi" is not served/],
    [{ ...p, ringRef: 4444 }, /cannot map ring-ref 4444/],
    [{ ...p, ringRef: -1 }, /ring-ref -1 is not a grant reference/],
    [{ ...p, eventChannel: 2 ** 32 }, /event-channel 4294967296 is not a port/],
  ] as const;
  for (const [params, why] of bad) {
    const c = r.vbd.connect(params);
    t.false(c.ok);
    if (!c.ok) t.regex(c.error, why);
    t.is(r.vbd.state, 'failed');
    t.regex(r.vbd.error ?? '', why);
    t.is(r.host.mappedRings, 0, 'nothing stays mapped');
  }
  const squatter = r.host.bindEventChannel(FRONT, evtchnPort(p.eventChannel), () => undefined);
  const busy = r.vbd.connect(p);
  t.false(busy.ok);
  if (!busy.ok) t.regex(busy.error, /cannot bind event-channel 5/);
  t.is(r.host.mappedRings, 0, 'the ring mapped for the refused connect was unmapped');
  if (squatter.ok) squatter.value.close();
  t.true(r.vbd.connect({ ...p, protocol: 'x86_64-abi' }).ok);
  t.is(r.vbd.xenbusState(), XenbusStateConnected);
  const again = r.vbd.connect(p);
  t.false(again.ok, 'a second connect while connected is refused');
  t.is(r.vbd.state, 'connected', 'and does not disturb the connection');
});

test('an event from an earlier connection does not kick the new one', (t) => {
  const dir = tempDir(t);
  const d = DiskImage.open(makeImage(dir, 8), { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  const r = rig(t, { connect: false });
  const handlers: Array<() => void> = [];
  const host: BackendHost = {
    grants: r.host.grants,
    mapRing: (dom, ref) => r.host.mapRing(dom, ref),
    bindEventChannel: (dom, port, onEvent) => {
      handlers.push(onEvent);
      return { ok: true, value: { notify: () => undefined, close: () => undefined } };
    },
  };
  const vbd = new Vbd({ frontendDomid: FRONT, devid: XVDA, disk: d.value, host });
  t.true(vbd.connect(r.front.connectParams()).ok);
  vbd.poll();
  vbd.disconnect();
  const fresh = new LoopbackFront(r.host, FRONT, { port: 8 });
  t.true(vbd.connect(fresh.connectParams()).ok);
  vbd.poll();
  t.false(vbd.hasWork);
  handlers[0]!();
  t.false(vbd.hasWork, 'the stale handler is ignored');
  handlers[1]!();
  t.true(vbd.hasWork, 'the current one kicks');
  vbd.close();
});

test('a frontend rewriting a slot while its request runs cannot change what is answered', (t) => {
  const r = rig(t, { connect: false });
  const slot0 = blkif_sring.offsetOf('ring');
  const w = pages(r.front, 2, () => 0x42);
  const host: BackendHost = {
    mapRing: (dom, ref) => r.host.mapRing(dom, ref),
    bindEventChannel: (dom, port, h) => r.host.bindEventChannel(dom, port, h),
    grants: {
      copyFromGrant: (dom, gref, off, len) => {
        // The "other vCPU" scribbles over the request while we copy its data.
        r.front.ringPage.fill(0xff, slot0, slot0 + 112);
        return r.host.grants.copyFromGrant(dom, gref, off, len);
      },
      copyToGrant: (dom, gref, off, data) => r.host.grants.copyToGrant(dom, gref, off, data),
    },
  };
  const created = r.bb.destroy(FRONT, XVDA);
  t.true(created);
  const d = DiskImage.open(r.image, { readOnly: false });
  if (!d.ok) return t.fail(d.error.message);
  const vbd = new Vbd({ frontendDomid: FRONT, devid: XVDA, disk: d.value, host });
  t.true(vbd.connect(r.front.connectParams()).ok);
  r.front.queue({ operation: BLKIF_OP_WRITE, id: 0x77n, sector: 8, segments: w.segments });
  r.front.push();
  vbd.poll();
  // The slot now holds garbage; the response still names the original request.
  const rsp = r.front.responses();
  t.is(rsp.length, 1);
  t.is(rsp[0]?.id, 0x77n);
  t.is(rsp[0]?.operation, BLKIF_OP_WRITE);
  t.is(rsp[0]?.status, OK);
  t.true(fileSectors(r.image, 8, 16).every((b) => b === 0x42), 'both pages were written where first asked');
  vbd.close();
});
