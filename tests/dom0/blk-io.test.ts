import test from 'ava';
import {
  BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../hypervisor/public/io/blkif.js';
import { XenbusStateConnected } from '../../hypervisor/public/io/xenbus.js';
import { LoopbackFront } from '../../hypervisor/dom0/blkback/loopback.js';
import { PAGE, SECTOR, concat, exchange, fileSectors, imageByte, pages, rig } from './blk-fixture.js';

const OK = BLKIF_RSP_OKAY;

test('a single-segment read returns the image bytes into the granted page', (t) => {
  const r = rig(t);
  t.is(r.vbd.xenbusState(), XenbusStateConnected);
  const { segments, bufs } = pages(r.front, 1);
  const rsp = exchange(r, [{ operation: BLKIF_OP_READ, id: 42n, sector: 8, segments }]);
  t.deepEqual(rsp, [{ id: 42n, operation: BLKIF_OP_READ, status: OK }]);
  t.deepEqual(bufs[0], fileSectors(r.image, 8, 8), 'the page holds sectors 8..15');
  t.is(r.vbd.stats.sectorsRead, 8);
  t.is(r.vbd.stats.reads, 1);
});

test('a partial-page segment moves only its sectors, at their offset in the page', (t) => {
  const r = rig(t);
  const d = r.front.dataPage();
  d.page.fill(0xcc);
  const rsp = exchange(r, [{ operation: BLKIF_OP_READ, id: 1n, sector: 5, segments: [{ gref: d.gref, firstSect: 2, lastSect: 4 }] }]);
  t.is(rsp[0]?.status, OK);
  t.true(d.page.subarray(0, 2 * SECTOR).every((b) => b === 0xcc), 'sectors 0..1 of the page untouched');
  t.deepEqual(d.page.subarray(2 * SECTOR, 5 * SECTOR), fileSectors(r.image, 5, 3), 'disk sectors 5..7 land at page sectors 2..4');
  t.true(d.page.subarray(5 * SECTOR).every((b) => b === 0xcc), 'sectors 5..7 of the page untouched');
});

test('an 11-segment write lands on 88 consecutive sectors and reads back the same', (t) => {
  const r = rig(t, { sectors: 128 });
  const w = pages(r.front, 11, (p, i) => p * 31 + i * 3 + 1);
  const rw = exchange(r, [{ operation: BLKIF_OP_WRITE, id: 7n, sector: 20, segments: w.segments }]);
  t.deepEqual(rw, [{ id: 7n, operation: BLKIF_OP_WRITE, status: OK }]);
  t.deepEqual(fileSectors(r.image, 20, 88), concat(w.bufs), 'the file holds the 11 pages in order');
  t.is(fileSectors(r.image, 19, 1)[0], imageByte(19, 0), 'sector before untouched');
  t.is(fileSectors(r.image, 108, 1)[0], imageByte(108, 0), 'sector after untouched');
  const back = pages(r.front, 11);
  const rr = exchange(r, [{ operation: BLKIF_OP_READ, id: 8n, sector: 20, segments: back.segments }]);
  t.is(rr[0]?.status, OK);
  t.deepEqual(concat(back.bufs), concat(w.bufs), 'round trip');
  t.like(r.vbd.stats, { writes: 1, reads: 1, sectorsWritten: 88, sectorsRead: 88, errors: 0 });
});

test('mixed partial segments of one request map onto consecutive disk sectors', (t) => {
  const r = rig(t);
  const a = r.front.dataPage();
  const b = r.front.dataPage();
  a.page.fill(0x11);
  b.page.fill(0x22);
  const rsp = exchange(r, [{
    operation: BLKIF_OP_WRITE, id: 1n, sector: 30,
    segments: [{ gref: a.gref, firstSect: 6, lastSect: 7 }, { gref: b.gref, firstSect: 0, lastSect: 0 }],
  }]);
  t.is(rsp[0]?.status, OK);
  t.deepEqual(fileSectors(r.image, 30, 3), concat([new Uint8Array(2 * SECTOR).fill(0x11), new Uint8Array(SECTOR).fill(0x22)]));
  t.is(fileSectors(r.image, 33, 1)[0], imageByte(33, 0));
});

test('flush makes the data durable: the file, read independently, holds it', (t) => {
  const r = rig(t);
  const w = pages(r.front, 2, () => 0x5e);
  const rsp = exchange(r, [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 0, segments: w.segments },
    { operation: BLKIF_OP_FLUSH_DISKCACHE, id: 2n },
  ]);
  t.deepEqual(rsp.map((x) => [x.id, x.operation, x.status]), [[1n, BLKIF_OP_WRITE, OK], [2n, BLKIF_OP_FLUSH_DISKCACHE, OK]]);
  t.is(r.vbd.disk.unsyncedWrites, 0, 'nothing left unsynced after the flush');
  t.deepEqual(fileSectors(r.image, 0, 16), new Uint8Array(16 * SECTOR).fill(0x5e));
  t.is(r.vbd.stats.flushes, 1);
});

test('a flush covers the writes queued before it and not those after', (t) => {
  const r = rig(t);
  const w = pages(r.front, 1, () => 1);
  const rsp = exchange(r, [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 0, segments: w.segments },
    { operation: BLKIF_OP_WRITE, id: 2n, sector: 8, segments: w.segments },
    { operation: BLKIF_OP_FLUSH_DISKCACHE, id: 3n },
    { operation: BLKIF_OP_WRITE, id: 4n, sector: 16, segments: w.segments },
  ]);
  t.deepEqual(rsp.map((x) => x.id), [1n, 2n, 3n, 4n], 'answered in ring order');
  t.is(r.vbd.disk.unsyncedWrites, 1, 'only the write after the flush is still unsynced');
});

test('a write barrier is written and durable before it is answered', (t) => {
  const r = rig(t);
  const w = pages(r.front, 1, () => 0x77);
  const rsp = exchange(r, [{ operation: BLKIF_OP_WRITE_BARRIER, id: 9n, sector: 40, segments: w.segments }]);
  t.deepEqual(rsp, [{ id: 9n, operation: BLKIF_OP_WRITE_BARRIER, status: OK }]);
  t.is(r.vbd.disk.unsyncedWrites, 0);
  t.deepEqual(fileSectors(r.image, 40, 8), new Uint8Array(PAGE).fill(0x77));
  t.like(r.vbd.stats, { writes: 1, flushes: 1 });
});

test('overlapping writes in one batch land in ring order, and a read after them sees the last', (t) => {
  const r = rig(t);
  const a = pages(r.front, 1, () => 0xaa);
  const b = pages(r.front, 1, () => 0xbb);
  const out = pages(r.front, 1);
  const rsp = exchange(r, [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 10, segments: a.segments },
    { operation: BLKIF_OP_WRITE, id: 2n, sector: 12, segments: b.segments },
    { operation: BLKIF_OP_READ, id: 3n, sector: 10, segments: out.segments },
  ]);
  t.true(rsp.every((x) => x.status === OK));
  const want = concat([new Uint8Array(2 * SECTOR).fill(0xaa), new Uint8Array(6 * SECTOR).fill(0xbb)]);
  t.deepEqual(out.bufs[0], want, 'sectors 12..17 hold the second write, 10..11 the first');
});

test('a read-only disk serves reads and refuses writes with BLKIF_RSP_ERROR', (t) => {
  const r = rig(t, { readOnly: true });
  const before = fileSectors(r.image, 0, 8);
  const w = pages(r.front, 1, () => 0x99);
  const out = pages(r.front, 1);
  const rsp = exchange(r, [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 0, segments: w.segments },
    { operation: BLKIF_OP_WRITE_BARRIER, id: 2n, sector: 0, segments: w.segments },
    { operation: BLKIF_OP_READ, id: 3n, sector: 0, segments: out.segments },
    { operation: BLKIF_OP_FLUSH_DISKCACHE, id: 4n },
  ]);
  t.deepEqual(rsp.map((x) => [x.id, x.status]), [[1n, BLKIF_RSP_ERROR], [2n, BLKIF_RSP_ERROR], [3n, OK], [4n, OK]]);
  t.deepEqual(fileSectors(r.image, 0, 8), before, 'the image is unchanged');
  t.deepEqual(out.bufs[0], before);
  t.is(r.vbd.connectNodes().info, '4', 'info advertises VDISK_READONLY');
});

test('the backend notifies only when the frontend asked, and asks to be told of the next request', (t) => {
  const r = rig(t);
  const { segments } = pages(r.front, 1);
  const before = r.front.notifications;
  exchange(r, [{ operation: BLKIF_OP_READ, id: 1n, sector: 0, segments }]);
  t.is(r.front.notifications, before + 1, 'one notification for the response');
  // The frontend does not re-arm rsp_event (it does not call final check): no more notifications.
  exchange(r, [{ operation: BLKIF_OP_READ, id: 2n, sector: 0, segments }]);
  t.is(r.front.notifications, before + 1, 'rsp_event not re-armed: no notification');
  t.is(r.front.responses().length, 0);
  t.true(r.front.ring.finalCheckForResponses().ok);
  exchange(r, [{ operation: BLKIF_OP_READ, id: 3n, sector: 0, segments }]);
  t.is(r.front.notifications, before + 2, 're-armed: notified again');
  t.is(r.vbd.stats.notifies, r.front.notifications);
});

test('a poll does at most its budget and asks to be polled again', (t) => {
  const r = rig(t);
  const { segments } = pages(r.front, 1);
  for (let i = 0; i < 20; i++) r.front.queue({ operation: BLKIF_OP_READ, id: BigInt(i), sector: 0, segments });
  r.front.push();
  const s0 = r.schedules;
  t.is(r.vbd.poll(8), 8);
  t.true(r.vbd.hasWork, 'work left');
  t.is(r.schedules, s0 + 1, 'asked for another poll');
  t.is(r.front.responses().length, 8, 'the first 8 responses are already published');
  t.is(r.bb.drain(8), 12);
  t.false(r.vbd.hasWork);
  t.deepEqual(r.front.responses().map((x) => x.id), Array.from({ length: 12 }, (_, i) => BigInt(i + 8)));
});

test('a frontend that suspends before seeing responses replays them on a new ring with the same results (§6.1)', (t) => {
  const r = rig(t);
  const w = pages(r.front, 1, () => 0x3c);
  const rd = pages(r.front, 1);
  const reqs = [
    { operation: BLKIF_OP_WRITE, id: 1n, sector: 16, segments: w.segments },
    { operation: BLKIF_OP_READ, id: 2n, sector: 24, segments: rd.segments },
  ];
  for (const q of reqs) r.front.queue(q);
  r.front.push();
  r.bb.drain(); // completed by the backend, responses on the ring, never consumed
  const firstRead = rd.bufs[0]!.slice();
  const diskAfter = fileSectors(r.image, 0, 64);
  r.vbd.disconnect(); // suspend: the old ring goes away with the domain
  t.is(r.host.mappedRings, 0, 'the old ring is unmapped');
  rd.bufs[0]!.fill(0);
  const again = new LoopbackFront(r.host, r.vbd.frontendDomid, { port: 6 });
  t.true(r.vbd.connect(again.connectParams()).ok);
  const replay = { ...r, front: again };
  const rsp = exchange(replay, reqs);
  t.deepEqual(rsp.map((x) => [x.id, x.status]), [[1n, OK], [2n, OK]]);
  t.deepEqual(rd.bufs[0], firstRead, 'the replayed read returns what the first run returned');
  t.deepEqual(fileSectors(r.image, 0, 64), diskAfter, 'the replayed write leaves the disk as the first run did');
  t.is(r.vbd.stats.connects, 2);
});

test('requests already waiting when the ring connects are served without a notification', (t) => {
  const r = rig(t, { connect: false });
  const { segments } = pages(r.front, 1);
  r.front.queue({ operation: BLKIF_OP_READ, id: 5n, sector: 0, segments });
  r.front.push(); // nobody bound yet: nobody told
  t.true(r.vbd.connect(r.front.connectParams()).ok);
  t.true(r.vbd.hasWork, 'connect looks at the ring');
  r.bb.drain();
  t.deepEqual(r.front.responses().map((x) => x.id), [5n]);
});
