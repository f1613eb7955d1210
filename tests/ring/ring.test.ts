import test from 'ava';
import { bytesMem, type MemView } from '../../hypervisor/public/layout.js';
import { FrontRing, BackRing, SRING_HEADER_SIZE, sringLayout } from '../../hypervisor/public/io/ring.js';
import {
  PAGE_GEOMETRY, SMALL_GEOMETRY, REQ_EVENT, RSP_EVENT, testRequest, testResponse,
  freshPair, pairAt, sendRequest, serveAll, collectAll,
} from './fixture.js';

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

test('init writes the golden header: producers 0, events 1, padding zero, slots untouched', (t) => {
  const bytes = new Uint8Array(8192).fill(0xa5);
  FrontRing.init(bytesMem(bytes), 4096, PAGE_GEOMETRY);
  const golden = '00000000' + '01000000' + '00000000' + '01000000' + '00'.repeat(48);
  t.is(hex(bytes.subarray(4096, 4096 + 64)), golden, 'first 64 bytes of an initialized ring page');
  t.is(bytes[4096 + 64], 0xa5, 'SHARED_RING_INIT leaves the slots alone');
  t.true(bytes.subarray(0, 4096).every((b) => b === 0xa5), 'nothing written below the base address');
});

test('geometry: 16-byte slots give 128 in a page and 8 in 256 bytes; slots start at 64', (t) => {
  t.deepEqual(PAGE_GEOMETRY, { entrySize: 16, size: 128 });
  t.deepEqual(SMALL_GEOMETRY, { entrySize: 16, size: 8 });
  t.is(sringLayout('t', testRequest.fields.id.type, testResponse.fields.id.type).offsetOf('ring'), SRING_HEADER_SIZE);
  const { front } = freshPair(PAGE_GEOMETRY);
  t.is(front.slotAddr(0), 64);
  t.is(front.slotAddr(127), 64 + 127 * 16);
  t.is(front.slotAddr(128), 64, 'index 128 wraps to slot 0');
});

test('requests and responses pass in order', (t) => {
  const p = freshPair();
  for (let i = 0; i < 5; i++) sendRequest(p, 100n + BigInt(i), 10 + i);
  p.front.pushRequests();
  t.deepEqual(serveAll(p), [100n, 101n, 102n, 103n, 104n], 'back end sees the requests in the order they were produced');
  p.back.pushResponses();
  t.deepEqual(collectAll(p), [[100n, 10], [101n, 11], [102n, 12], [103n, 13], [104n, 14]], 'front end sees the answers in order');
  t.deepEqual(p.front.indices(), { reqProdPvt: 5, rspCons: 5 });
  t.deepEqual(p.back.indices(), { rspProdPvt: 5, reqCons: 5 });
});

test('requests are invisible to the back end until pushed', (t) => {
  const p = freshPair();
  sendRequest(p, 1n, 1);
  t.deepEqual(p.back.unconsumedRequests(), { ok: true, value: 0 }, 'req_prod is published only by push');
  p.front.pushRequests();
  t.deepEqual(p.back.unconsumedRequests(), { ok: true, value: 1 });
});

test('push notifies only when the peer event index is crossed', (t) => {
  const p = freshPair();
  sendRequest(p, 1n, 1);
  t.true(p.front.pushRequests(), 'first request crosses req_event = 1');
  sendRequest(p, 2n, 2);
  t.false(p.front.pushRequests(), 'req_event still 1: the back end has not asked again');
  t.false(p.front.pushRequests(), 'pushing nothing new never notifies');

  t.deepEqual(serveAll(p), [1n, 2n]);
  t.deepEqual(p.back.finalCheckForRequests(), { ok: true, value: 0 });
  t.is<number, number>(p.back.reqEvent, 3, 'final check re-arms req_event at req_cons + 1');
  sendRequest(p, 3n, 3);
  sendRequest(p, 4n, 4);
  t.true(p.front.pushRequests(), 'req_event 3 lies in (2, 4]: notify');

  t.true(p.back.pushResponses(), 'two responses cross rsp_event = 1');
  t.deepEqual(serveAll(p), [3n, 4n]);
  t.false(p.back.pushResponses(), 'front end has not re-armed rsp_event');
});

test('final check returns pending work without re-arming', (t) => {
  const p = freshPair();
  sendRequest(p, 7n, 7);
  p.front.pushRequests();
  t.deepEqual(p.back.finalCheckForRequests(), { ok: true, value: 1 });
  t.is<number, number>(p.back.reqEvent, 1, 'req_event untouched while work is pending');
  serveAll(p);
  p.back.pushResponses();
  t.deepEqual(p.front.finalCheckForResponses(), { ok: true, value: 1 });
  t.is<number, number>(p.front.rspEvent, 1, 'rsp_event untouched while a response is pending');
  collectAll(p);
  t.deepEqual(p.front.finalCheckForResponses(), { ok: true, value: 0 });
  t.is<number, number>(p.front.rspEvent, 2, 'final check re-arms rsp_event at rsp_cons + 1');
});

test('final check catches a response that lands while it re-arms', (t) => {
  // A memory whose rsp_event write lets the back end push a response at
  // that very moment: the race RING_FINAL_CHECK_FOR_RESPONSES closes.
  const bytes = new Uint8Array(4096);
  const plain = bytesMem(bytes);
  let back: BackRing | undefined;
  const setUint32 = (off: number, v: number, le?: boolean): void => {
    plain.setUint32(off, v, le);
    if (off === RSP_EVENT && back !== undefined) {
      testResponse.view(plain, back.produceResponse()).set('id', 42n);
      back.pushResponses();
    }
  };
  const racy = new Proxy(plain, {
    get: (target, prop) => {
      if (prop === 'setUint32') return setUint32;
      const v: unknown = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) satisfies MemView;
  const front = FrontRing.init(racy, 0, SMALL_GEOMETRY);
  back = BackRing.init(plain, 0, SMALL_GEOMETRY);
  front.produceRequest();
  front.pushRequests();
  back.consumeRequest();
  t.deepEqual(front.finalCheckForResponses(), { ok: true, value: 1 }, 'the second look sees the response');
  t.is(testResponse.view(plain, front.consumeResponse()).get('id'), 42n);
});

for (const [label, start] of [['2^31', 2 ** 31 - 3], ['2^32', 2 ** 32 - 3]] as const) {
  test(`indices crossing ${label} wrap and keep order and notifications`, (t) => {
    const p = pairAt(start);
    const ids: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      sendRequest(p, BigInt(i), i);
      ids.push(BigInt(i));
      t.is(p.front.pushRequests(), i === 0, `push ${i}: only the first crosses req_event = start + 1`);
    }
    t.is(p.front.freeRequests(), 2);
    t.deepEqual(p.back.unconsumedRequests(), { ok: true, value: 6 }, `six pending across ${label}`);
    t.deepEqual(serveAll(p), ids);
    t.true(p.back.pushResponses());
    t.deepEqual(collectAll(p).map(([id]) => id), ids);
    const end = (start + 6) >>> 0;
    t.deepEqual(p.front.indices(), { reqProdPvt: end, rspCons: end });
    t.deepEqual(p.back.indices(), { rspProdPvt: end, reqCons: end });
    t.is<number, number>(p.front.reqProdPvt, label === '2^32' ? 3 : 2 ** 31 + 3, 'the index wrapped to an unsigned 32-bit value');
    t.is(p.front.slotAddr(end), 64 + (end & 7) * 16, 'slot follows the masked index');
    t.deepEqual(p.back.finalCheckForRequests(), { ok: true, value: 0 });
    t.is<number, number>(p.back.reqEvent, (end + 1) >>> 0);
    sendRequest(p, 99n, 99);
    t.true(p.front.pushRequests(), 'the re-armed event is crossed after the wrap');
  });
}

test('the notify test is modular at the 2^32 boundary', (t) => {
  const crossed = pairAt(2 ** 32 - 1);
  crossed.mem.setUint32(REQ_EVENT, 0, true); // the back end asked at index 2^32, i.e. 0
  sendRequest(crossed, 1n, 1);
  t.true(crossed.front.pushRequests(), 'req_prod 2^32-1 -> 0 crosses req_event 0');
  const notYet = pairAt(2 ** 32 - 1);
  notYet.mem.setUint32(REQ_EVENT, 1, true);
  sendRequest(notYet, 1n, 1);
  t.false(notYet.front.pushRequests(), 'req_prod 2^32-1 -> 0 does not reach req_event 1');
});

test('a full ring is detected and frees up as responses are consumed', (t) => {
  const p = freshPair();
  for (let i = 0; i < 8; i++) sendRequest(p, BigInt(i), i);
  t.true(p.front.isFull());
  t.is(p.front.freeRequests(), 0);
  t.is(p.front.produceRequest(), undefined, 'no slot handed out on a full ring');
  t.is<number, number>(p.front.reqProdPvt, 8, 'a refused request does not move req_prod_pvt');
  p.front.pushRequests();
  serveAll(p);
  t.true(p.front.isFull(), 'answered but unread responses still occupy their slots');
  p.back.pushResponses();
  t.is(collectAll(p).length, 8);
  t.is(p.front.freeRequests(), 8);
});

test('attach after init resumes from private indices kept as plain numbers', (t) => {
  const p = freshPair();
  for (let i = 0; i < 3; i++) sendRequest(p, BigInt(i), i);
  p.front.pushRequests();
  serveAll(p);
  // Store the private indices in "guest memory" and drop the views.
  const saved = bytesMem(new Uint8Array(16));
  const f = p.front.indices();
  const b = p.back.indices();
  saved.setUint32(0, f.reqProdPvt, true);
  saved.setUint32(4, f.rspCons, true);
  saved.setUint32(8, b.rspProdPvt, true);
  saved.setUint32(12, b.reqCons, true);

  const front = FrontRing.attach(p.mem, 0, SMALL_GEOMETRY, { reqProdPvt: saved.getUint32(0, true), rspCons: saved.getUint32(4, true) });
  const back = BackRing.attach(p.mem, 0, SMALL_GEOMETRY, { rspProdPvt: saved.getUint32(8, true), reqCons: saved.getUint32(12, true) });
  const q = { ...p, front, back };
  t.is(front.freeRequests(), 5, 'three slots still held by unread responses');
  t.true(back.pushResponses(), 'responses produced before the re-attach are pushed after it, crossing rsp_event = 1');
  t.deepEqual(collectAll(q).map(([id]) => id), [0n, 1n, 2n], 'responses produced before the re-attach are read after it');
  sendRequest(q, 3n, 3);
  t.is<number, number>(front.reqProdPvt, 4, 'the next request goes to index 3 -> 4');
  t.is(testRequest.view(p.mem, front.slotAddr(3)).get('id'), 3n);
});

test('BackRing.init leaves the page alone', (t) => {
  const p = freshPair();
  sendRequest(p, 5n, 5);
  p.front.pushRequests();
  const before = hex(p.bytes.subarray(0, 128));
  const back = BackRing.init(p.mem, 0, SMALL_GEOMETRY);
  t.is(hex(p.bytes.subarray(0, 128)), before, 'BACK_RING_INIT writes nothing to the shared page');
  t.deepEqual(back.unconsumedRequests(), { ok: true, value: 1 }, 'a request pushed before the back end attached is seen');
});

test('misuse of the private indices is a bug and throws', (t) => {
  const { mem } = freshPair();
  t.throws(() => FrontRing.attach(mem, 0, SMALL_GEOMETRY, { reqProdPvt: 9, rspCons: 0 }), { instanceOf: RangeError });
  t.throws(() => BackRing.attach(mem, 0, SMALL_GEOMETRY, { rspProdPvt: 0, reqCons: 9 }), { instanceOf: RangeError });
  t.throws(() => FrontRing.init(mem, 0, { entrySize: 16, size: 6 }), { message: /power of two/ });
  const p = freshPair();
  t.throws(() => p.front.consumeResponse(), { message: /no request is outstanding/ });
  t.throws(() => p.back.produceResponse(), { message: /no consumed request/ });
  t.notThrows(() => FrontRing.attach(mem, 0, SMALL_GEOMETRY, { reqProdPvt: 3, rspCons: 2 ** 32 - 5 }), 'exactly size apart across 2^32 is fine');
});

test('RING_REQUEST_CONS_OVERFLOW: consuming a slot still owed a response', (t) => {
  const p = freshPair();
  t.false(p.back.requestConsOverflow(7));
  t.true(p.back.requestConsOverflow(8), 'index size ahead of rsp_prod_pvt reuses slot 0');
  t.true(p.back.requestConsOverflow(2 ** 32 - 1), 'behind rsp_prod_pvt is an overflow too');
});
