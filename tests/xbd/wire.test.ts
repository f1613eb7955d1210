/*
 * xbd's wire layer: golden bytes of blkif_request_t as the frontend
 * writes it, blkif_response_t decoding with its bound checks, and
 * agreement with blkback's own decoder.
 */
import test from 'ava';
import { bytesMem } from '../../hypervisor/public/layout.js';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RING_SIZE } from '../../hypervisor/public/io/blkif.js';
import { EIO, EOPNOTSUPP } from '../../sys/sys/errno.js';
import {
  xbd_req_encode, xbd_req_set_seg, xbd_req_seg_gref, xbd_req_nseg, xbd_req_operation, xbd_rsp_decode,
  XBD_RING_SIZE, XBD_REQ_SIZE, XBD_RING_GEOMETRY,
} from '../../arch/xen/xen/xbd_wire.js';
import { decodeRequest } from '../../hypervisor/dom0/blkback/wire.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('the ring geometry is blkif\'s: 32 slots of 112 bytes', (t) => {
  t.is(XBD_RING_SIZE, BLKIF_RING_SIZE);
  t.is(XBD_RING_SIZE, 32);
  t.is(XBD_RING_GEOMETRY.entrySize, 112);
  t.is(XBD_REQ_SIZE, 112);
});

test('a write request, byte for byte', (t) => {
  const b = new Uint8Array(112).fill(0xee);
  const m = bytesMem(b);
  xbd_req_encode(m, 0, BLKIF_OP_WRITE, 0xca00, 5, 0x1_2345_6789, 2);
  xbd_req_set_seg(m, 0, 0, 0x10, 1, 7);
  xbd_req_set_seg(m, 0, 1, 0xdeadbeef, 0, 3);
  const golden =
    '0102' + '00ca' + '00000000' + // operation, nr_segments, handle, pad
    '0500000000000000' + // id
    '8967452301000000' + // sector_number
    '10000000' + '0107' + '0000' + // seg[0]
    'efbeadde' + '0003' + '0000' + // seg[1]
    '00'.repeat(9 * 8); // seg[2..10]
  t.is(hex(b), golden);
  t.is(xbd_req_seg_gref(m, 0, 1), 0xdeadbeef);
  t.is(xbd_req_nseg(m, 0), 2);
  t.is(xbd_req_operation(m, 0), BLKIF_OP_WRITE);
});

test('a flush request carries no segments', (t) => {
  const b = new Uint8Array(112);
  xbd_req_encode(bytesMem(b), 0, BLKIF_OP_FLUSH_DISKCACHE, 0xca00, 31, 0, 0);
  t.is(hex(b.subarray(0, 24)), '0300' + '00ca' + '00000000' + '1f00000000000000' + '0000000000000000');
  t.true(b.subarray(24).every((x) => x === 0));
});

test('blkback decodes what xbd encodes', (t) => {
  const b = new Uint8Array(112);
  const m = bytesMem(b);
  xbd_req_encode(m, 0, BLKIF_OP_READ, 0xca00, 7, 96, 3);
  xbd_req_set_seg(m, 0, 0, 20, 4, 7);
  xbd_req_set_seg(m, 0, 1, 21, 0, 7);
  xbd_req_set_seg(m, 0, 2, 22, 0, 0);
  const d = decodeRequest(b, { sectors: 1000, readOnly: false });
  if (!d.ok) return t.fail(d.refusal.reason);
  t.like(d.request, { kind: 'read', id: 7n, sector: 96, nrSectors: 4 + 8 + 1 });
  t.deepEqual(d.request.kind === 'flush' ? [] : d.request.segments.map((s) => [s.gref, s.firstSect, s.lastSect]), [[20, 4, 7], [21, 0, 7], [22, 0, 0]]);
});

test('bad segments are our bug and throw', (t) => {
  const m = bytesMem(new Uint8Array(112));
  t.throws(() => xbd_req_set_seg(m, 0, 11, 1, 0, 0));
  t.throws(() => xbd_req_set_seg(m, 0, 0, 1, 5, 4));
  t.throws(() => xbd_req_set_seg(m, 0, 0, 1, 0, 8));
  t.throws(() => xbd_req_encode(m, 0, BLKIF_OP_READ, 0, 0, 0, 12));
});

/* Responses: a slot's 16 bytes as a backend would write them. */
function rsp(id: bigint, op: number, status: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, id, true);
  dv.setUint8(8, op);
  dv.setInt16(10, status, true);
  return b;
}

/** Shadow 3 holds a read, shadow 4 a flush, the rest nothing. */
const shadow = (id: number): number | undefined => (id === 3 ? BLKIF_OP_READ : id === 4 ? BLKIF_OP_FLUSH_DISKCACHE : undefined);

test('a response decodes to its shadow id and an errno', (t) => {
  const golden = Uint8Array.from(Buffer.from('0300000000000000' + '00' + '00' + 'ffff' + '00000000', 'hex'));
  t.deepEqual(golden, rsp(3n, BLKIF_OP_READ, -1));
  t.deepEqual(xbd_rsp_decode(bytesMem(golden), 0, 32, shadow), { ok: true, value: { id: 3, operation: 0, status: -1, error: EIO } });
  const okr = xbd_rsp_decode(bytesMem(rsp(3n, BLKIF_OP_READ, 0)), 0, 32, shadow);
  t.true(okr.ok && okr.value.error === 0);
  const unsupp = xbd_rsp_decode(bytesMem(rsp(4n, BLKIF_OP_FLUSH_DISKCACHE, -2)), 0, 32, shadow);
  t.true(unsupp.ok && unsupp.value.error === EOPNOTSUPP);
  const odd = xbd_rsp_decode(bytesMem(rsp(3n, BLKIF_OP_READ, 1234)), 0, 32, shadow);
  t.true(odd.ok && odd.value.error === EIO, 'an unknown status fails the request, not the device');
});

test('hostile responses are error values: id out of range, id of a free slot, wrong operation', (t) => {
  for (const [id, op, what] of [
    [32n, BLKIF_OP_READ, 'not a request slot'],
    [0xffff_ffff_ffff_ffffn, BLKIF_OP_READ, 'not a request slot'],
    [1n << 40n, BLKIF_OP_READ, 'not a request slot'],
    [5n, BLKIF_OP_READ, 'answers no request'],
    [3n, BLKIF_OP_WRITE, 'the request was operation 0'],
  ] as const) {
    const r = xbd_rsp_decode(bytesMem(rsp(id, op, 0)), 0, 32, shadow);
    t.false(r.ok, `id ${id} op ${op}`);
    if (!r.ok) t.true(r.error.includes(what), r.error);
  }
});
