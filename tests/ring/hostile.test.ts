import test from 'ava';
import { REQ_PROD, RSP_PROD, freshPair, pairAt, sendRequest, serveAll } from './fixture.js';

test('a front end announcing more than a ring of requests is an error, not a loop', (t) => {
  const p = freshPair();
  p.mem.setUint32(REQ_PROD, 9, true); // ring of 8
  const r = p.back.unconsumedRequests();
  t.false(r.ok, 'req_prod 9 ahead of req_cons 0 on an 8-slot ring must be refused');
  if (!r.ok) t.regex(r.error, /req_prod 9 is 9 ahead of req_cons 0/);
  t.false(p.back.finalCheckForRequests().ok, 'the final check reports it too');
});

test('a front end announcing a huge req_prod is an error', (t) => {
  const p = pairAt(2 ** 32 - 2);
  p.mem.setUint32(REQ_PROD, 2 ** 31, true);
  const r = p.back.unconsumedRequests();
  t.false(r.ok, 'req_prod 2^31 with req_cons 2^32-2 is 2^31+2 ahead: must be refused');
});

test('a front end moving req_prod behind req_cons is an error', (t) => {
  const p = pairAt(2);
  p.mem.setUint32(REQ_PROD, 2 ** 32 - 1, true); // one behind 0, three behind 2
  const r = p.back.unconsumedRequests();
  t.false(r.ok, 'req_prod behind req_cons must be refused, not read as 2^32 - 3 requests');
  if (!r.ok) t.regex(r.error, /3 behind req_cons 2/);
});

test('a front end overrunning slots still owed a response is an error', (t) => {
  const p = freshPair();
  for (let i = 0; i < 3; i++) sendRequest(p, BigInt(i), i);
  p.front.pushRequests();
  p.back.consumeRequest();
  p.back.consumeRequest();
  p.back.consumeRequest(); // three consumed, none answered: 5 slots left
  p.mem.setUint32(REQ_PROD, 3 + 6, true);
  const r = p.back.unconsumedRequests();
  t.false(r.ok, '6 new requests with only 5 free slots means the front end wrote over unanswered ones');
  if (!r.ok) t.regex(r.error, /at most 5 requests can be pending/);
  p.mem.setUint32(REQ_PROD, 3 + 5, true);
  t.deepEqual(p.back.unconsumedRequests(), { ok: true, value: 5 }, 'exactly the free slots is fine');
});

test('a back end answering more than was asked is an error', (t) => {
  const p = freshPair();
  sendRequest(p, 1n, 1);
  sendRequest(p, 2n, 2);
  p.front.pushRequests();
  p.mem.setUint32(RSP_PROD, 3, true);
  const r = p.front.unconsumedResponses();
  t.false(r.ok, 'rsp_prod 3 with two requests outstanding must be refused');
  if (!r.ok) t.regex(r.error, /rsp_prod 3 is not within the 2 outstanding requests/);
  t.false(p.front.finalCheckForResponses().ok);
  p.mem.setUint32(RSP_PROD, 2, true);
  t.deepEqual(p.front.unconsumedResponses(), { ok: true, value: 2 });
});

test('a back end moving rsp_prod behind rsp_cons is an error', (t) => {
  const p = pairAt(0);
  sendRequest(p, 1n, 1);
  p.front.pushRequests();
  serveAll(p);
  p.back.pushResponses();
  p.front.consumeResponse();
  p.mem.setUint32(RSP_PROD, 0, true);
  t.false(p.front.unconsumedResponses().ok, 'rsp_prod 0 behind rsp_cons 1');
});

test('arbitrary peer indices never throw and are accepted exactly when in range', (t) => {
  // Seeded xorshift: deterministic garbage, plus the edges.
  let s = 0x2545f491;
  const next = (): number => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return s >>> 0; };
  const values = [0, 1, 7, 8, 9, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
  for (let i = 0; i < 500; i++) values.push(next());
  for (const start of [0, 2 ** 31 - 2, 2 ** 32 - 2]) {
    for (const v of values) {
      const p = pairAt(start);
      sendRequest(p, 1n, 1);
      p.front.pushRequests();
      p.back.consumeRequest(); // one consumed, unanswered: 7 may follow
      p.mem.setUint32(REQ_PROD, v, true);
      p.mem.setUint32(RSP_PROD, v, true);
      const ahead = (v - start) >>> 0;
      const reqs = p.back.unconsumedRequests();
      t.is(reqs.ok, ahead >= 1 && ahead <= 8, `req_prod ${v} with req_cons ${start + 1}: accept iff 0..7 ahead`);
      const rsps = p.front.unconsumedResponses();
      t.is(rsps.ok, ahead <= 1, `rsp_prod ${v} with rsp_cons ${start} and one outstanding: accept iff 0..1 ahead`);
    }
  }
});
