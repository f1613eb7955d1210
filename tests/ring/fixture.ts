// A small request/response pair and shared pages for the ring tests. The
// layouts are the tests' own (blkif-like sizes), not a real protocol.
import { struct, record, bytesMem, u8, u16, u32, u64, i16, type ByteMem } from '../../hypervisor/public/layout.js';
import { FrontRing, BackRing, ringGeometry, sharedRingInit, type RingGeometry } from '../../hypervisor/public/io/ring.js';

/* struct test_request { uint64_t id; uint8_t op; uint8_t pad; uint16_t nr; uint32_t value; }; */
export const testRequest = struct('struct test_request', { id: u64, op: u8, pad: u8, nr: u16, value: u32 });
/* struct test_response { uint64_t id; int16_t status; }; */
export const testResponse = struct('struct test_response', { id: u64, status: i16 });

/** 16-byte slots: 128 of them in a 4 KiB page. */
export const PAGE_GEOMETRY: RingGeometry = ringGeometry(record(testRequest), record(testResponse));
/** The same slots in a 256-byte "page": 8 of them, so a full ring is quick to reach. */
export const SMALL_GEOMETRY: RingGeometry = ringGeometry(record(testRequest), record(testResponse), 256);

/** Offsets of the shared indices, for tests that play a hostile peer. */
export const REQ_PROD = 0;
export const REQ_EVENT = 4;
export const RSP_PROD = 8;
export const RSP_EVENT = 12;

export interface Pair {
  bytes: Uint8Array;
  mem: ByteMem;
  front: FrontRing;
  back: BackRing;
}

/** A fresh page with a front and a back on it. */
export function freshPair(geometry: RingGeometry = SMALL_GEOMETRY): Pair {
  const bytes = new Uint8Array(4096);
  const mem = bytesMem(bytes);
  const front = FrontRing.init(mem, 0, geometry);
  const back = BackRing.init(mem, 0, geometry);
  return { bytes, mem, front, back };
}

/**
 * A page as it would be after `start` requests went round an idle ring:
 * every index equals `start`, both ends waiting to be notified of the next.
 */
export function pairAt(start: number, geometry: RingGeometry = SMALL_GEOMETRY): Pair {
  const bytes = new Uint8Array(4096);
  const mem = bytesMem(bytes);
  sharedRingInit(mem, 0);
  mem.setUint32(REQ_PROD, start >>> 0, true);
  mem.setUint32(RSP_PROD, start >>> 0, true);
  mem.setUint32(REQ_EVENT, (start + 1) >>> 0, true);
  mem.setUint32(RSP_EVENT, (start + 1) >>> 0, true);
  const front = FrontRing.attach(mem, 0, geometry, { reqProdPvt: start, rspCons: start });
  const back = BackRing.attach(mem, 0, geometry, { rspProdPvt: start, reqCons: start });
  return { bytes, mem, front, back };
}

/** Front: write and queue one request (does not push). */
export function sendRequest(p: Pair, id: bigint, value: number): void {
  const addr = p.front.produceRequest();
  if (addr === undefined) throw new Error(`sendRequest ${id}: ring unexpectedly full`);
  const req = testRequest.view(p.mem, addr);
  req.set('id', id);
  req.set('op', 1);
  req.set('nr', 1);
  req.set('value', value);
}

/** Back: consume every pending request, answer each with status = value & 0x7fff; returns the ids seen. */
export function serveAll(p: Pair): bigint[] {
  const pending = p.back.unconsumedRequests();
  if (!pending.ok) throw new Error(`serveAll: ${pending.error}`);
  const seen: bigint[] = [];
  for (let k = 0; k < pending.value; k++) {
    const req = testRequest.view(p.mem, p.back.consumeRequest());
    const id = req.get('id');
    const status = req.get('value') & 0x7fff;
    seen.push(id);
    const rsp = testResponse.view(p.mem, p.back.produceResponse());
    rsp.set('id', id);
    rsp.set('status', status);
  }
  return seen;
}

/** Front: read every pending response as [id, status]. */
export function collectAll(p: Pair): Array<[bigint, number]> {
  const ready = p.front.unconsumedResponses();
  if (!ready.ok) throw new Error(`collectAll: ${ready.error}`);
  const out: Array<[bigint, number]> = [];
  for (let k = 0; k < ready.value; k++) {
    const rsp = testResponse.view(p.mem, p.front.consumeResponse());
    out.push([rsp.get('id'), rsp.get('status')]);
  }
  return out;
}
