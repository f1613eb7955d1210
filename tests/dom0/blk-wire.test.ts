import test from 'ava';
import {
  BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, blkif_request,
} from '../../hypervisor/public/io/blkif.js';
import { bytesMem } from '../../hypervisor/public/layout.js';
import {
  REQUEST_BYTES, backendConnectNodes, decodeRequest, decodeResponse, encodeRequest, encodeResponse,
  type Decoded, type DiskShape, type RequestFields, type Segment,
} from '../../hypervisor/dom0/blkback/wire.js';
import { grantRef } from '../../hypervisor/public/types.js';

const DISK: DiskShape = { sectors: 100, readOnly: false };
const seg = (gref: number, firstSect = 0, lastSect = 7): Segment => ({ gref: grantRef(gref), firstSect, lastSect });

function decode(req: RequestFields, disk: DiskShape = DISK): Decoded {
  const slot = new Uint8Array(REQUEST_BYTES);
  encodeRequest(bytesMem(slot), 0, req);
  return decodeRequest(slot, disk);
}

function refused(t: import('ava').ExecutionContext, d: Decoded, status: number, reason: RegExp, id: bigint, op: number): void {
  t.false(d.ok, `expected a refusal matching ${reason}`);
  if (d.ok) return;
  t.is(d.refusal.status, status, `status for ${d.refusal.reason}`);
  t.regex(d.refusal.reason, reason);
  t.is(d.refusal.id, id, 'the id is echoed');
  t.is(d.refusal.operation, op, 'the operation is echoed');
}

test('a slot is blkif_request_t: 112 bytes, id at 8, sector at 16, segments of 8 from 24', (t) => {
  t.is(REQUEST_BYTES, 112);
  t.is(blkif_request.offsetOf('id'), 8);
  t.is(blkif_request.offsetOf('sector_number'), 16);
  t.is(blkif_request.offsetOf('seg'), 24);
});

test('golden bytes: a two-segment write decodes field by field', (t) => {
  const slot = new Uint8Array(REQUEST_BYTES);
  const dv = new DataView(slot.buffer);
  dv.setUint8(0, BLKIF_OP_WRITE);
  dv.setUint8(1, 2);
  dv.setUint16(2, 51712, true);
  dv.setBigUint64(8, 0xdead_beef_0000_0001n, true);
  dv.setBigUint64(16, 40n, true);
  dv.setUint32(24, 77, true); slot[28] = 2; slot[29] = 7;
  dv.setUint32(32, 78, true); slot[36] = 0; slot[37] = 3;
  const d = decodeRequest(slot, DISK);
  if (!d.ok) return t.fail(d.refusal.reason);
  t.deepEqual(d.request, {
    kind: 'write', barrier: false, id: 0xdead_beef_0000_0001n, operation: BLKIF_OP_WRITE, sector: 40, nrSectors: 10,
    segments: [seg(77, 2, 7), seg(78, 0, 3)],
  });
});

test('reads, writes, barriers and flushes that fit decode', (t) => {
  const r = decode({ operation: BLKIF_OP_READ, id: 1n, sector: 99, segments: [seg(9, 7, 7)] });
  t.true(r.ok && r.request.kind === 'read' && r.request.nrSectors === 1, 'one sector at the very end');
  const full = decode({ operation: BLKIF_OP_WRITE, id: 2n, sector: 12, segments: Array.from({ length: 11 }, (_, i) => seg(i)) });
  t.true(full.ok && full.request.kind === 'write' && full.request.nrSectors === 88, '11 whole pages');
  const b = decode({ operation: BLKIF_OP_WRITE_BARRIER, id: 3n, sector: 0, segments: [seg(1)] });
  t.true(b.ok && b.request.kind === 'write' && b.request.barrier);
  const f = decode({ operation: BLKIF_OP_FLUSH_DISKCACHE, id: 4n, sector: 12345 });
  t.deepEqual(f, { ok: true, request: { kind: 'flush', id: 4n, operation: BLKIF_OP_FLUSH_DISKCACHE } }, 'sector_number of a flush is ignored');
  const ro = decode({ operation: BLKIF_OP_READ, id: 5n, segments: [seg(1)] }, { sectors: 8, readOnly: true });
  t.true(ro.ok, 'reads of a read-only disk are fine');
});

test('operations blkif.h defines but we do not offer are EOPNOTSUPP', (t) => {
  for (const op of [BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, BLKIF_OP_RESERVED_1]) {
    refused(t, decode({ operation: op, id: 10n + BigInt(op), segments: [seg(1)] }), BLKIF_RSP_EOPNOTSUPP, /not offered/, 10n + BigInt(op), op);
  }
});

test('an operation number blkif.h does not define is an error', (t) => {
  for (const op of [7, 99, 255]) refused(t, decode({ operation: op, id: 7n, segments: [seg(1)] }), BLKIF_RSP_ERROR, /not a blkif operation/, 7n, op);
});

test('nr_segments 0 or above 11 is an error', (t) => {
  refused(t, decode({ operation: BLKIF_OP_READ, id: 1n, segments: [] }), BLKIF_RSP_ERROR, /0 segments/, 1n, BLKIF_OP_READ);
  for (const nr of [12, 255]) {
    refused(t, decode({ operation: BLKIF_OP_WRITE, id: 2n, segments: [seg(1)], nrSegments: nr }), BLKIF_RSP_ERROR,
      new RegExp(`${nr} segments \\(must be 1..11\\)`), 2n, BLKIF_OP_WRITE);
  }
});

test('segment sectors outside 0..7 or reversed are an error', (t) => {
  const bad: Array<[number, number]> = [[8, 8], [0, 8], [255, 255], [5, 4]];
  for (const [f, l] of bad) {
    refused(t, decode({ operation: BLKIF_OP_READ, id: 3n, segments: [seg(1), seg(2, f, l)] }), BLKIF_RSP_ERROR,
      new RegExp(`segment 1: sectors ${f}..${l}`), 3n, BLKIF_OP_READ);
  }
});

test('a sector range reaching beyond the disk is an error, even by one sector, even at 2^64-1', (t) => {
  refused(t, decode({ operation: BLKIF_OP_READ, id: 4n, sector: 100, segments: [seg(1, 0, 0)] }), BLKIF_RSP_ERROR,
    /sectors 100..100 beyond the disk's 100 sectors/, 4n, BLKIF_OP_READ);
  refused(t, decode({ operation: BLKIF_OP_WRITE, id: 5n, sector: 95, segments: [seg(1)] }), BLKIF_RSP_ERROR,
    /sectors 95..102 beyond/, 5n, BLKIF_OP_WRITE);
  refused(t, decode({ operation: BLKIF_OP_READ, id: 6n, sector: 2n ** 64n - 1n, segments: [seg(1, 0, 0)] }), BLKIF_RSP_ERROR,
    /beyond the disk/, 6n, BLKIF_OP_READ);
});

test('a write or barrier on a read-only disk is an error', (t) => {
  const ro = { sectors: 100, readOnly: true };
  refused(t, decode({ operation: BLKIF_OP_WRITE, id: 8n, segments: [seg(1)] }, ro), BLKIF_RSP_ERROR, /read-only/, 8n, BLKIF_OP_WRITE);
  refused(t, decode({ operation: BLKIF_OP_WRITE_BARRIER, id: 9n, segments: [seg(1)] }, ro), BLKIF_RSP_ERROR, /read-only/, 9n, BLKIF_OP_WRITE_BARRIER);
});

test('a flush carrying segments is an error', (t) => {
  refused(t, decode({ operation: BLKIF_OP_FLUSH_DISKCACHE, id: 11n, segments: [seg(1)] }), BLKIF_RSP_ERROR,
    /carries 1 segments/, 11n, BLKIF_OP_FLUSH_DISKCACHE);
});

test('random slot bytes never make decode throw, and always echo the id', (t) => {
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 24;
  };
  for (let n = 0; n < 2000; n++) {
    const slot = new Uint8Array(REQUEST_BYTES).map(rnd);
    if (n % 3 === 0) slot[0] = n % 8; // mostly plausible operations
    if (n % 5 === 0) slot[1] = n % 13;
    const d = decodeRequest(slot, DISK);
    const id = new DataView(slot.buffer).getBigUint64(8, true);
    t.is(d.ok ? d.request.id : d.refusal.id, id);
  }
});

test('responses are blkif_response_t: id, operation, signed status', (t) => {
  const page = new Uint8Array(64);
  const mem = bytesMem(page);
  encodeResponse(mem, 16, { id: 2n ** 64n - 1n, operation: BLKIF_OP_FLUSH_DISKCACHE, status: BLKIF_RSP_EOPNOTSUPP });
  t.deepEqual([...page.subarray(16, 32)], [255, 255, 255, 255, 255, 255, 255, 255, 3, 0, 0xfe, 0xff, 0, 0, 0, 0]);
  t.deepEqual(decodeResponse(mem, 16), { id: 2n ** 64n - 1n, operation: 3, status: -2 });
});

test('backend nodes written before Connected', (t) => {
  t.deepEqual({ ...backendConnectNodes({ sectors: 2048, readOnly: true }) }, {
    sectors: '2048', 'sector-size': '512', 'physical-sector-size': '512', info: '4', 'feature-flush-cache': '1', 'feature-barrier': '1',
  });
  t.is(backendConnectNodes({ sectors: 1, readOnly: false }).info, '0');
});
