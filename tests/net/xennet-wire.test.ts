/*
 * xennet's wire layer alone: golden bytes of the requests it writes, the
 * responses it accepts and refuses (never throwing on peer bytes), and how
 * packets are cut at page boundaries.
 */
import test from 'ava';
import { bytesMem } from '../../hypervisor/public/layout.js';
import { NETTXF_more_data, NETRXF_more_data, NETRXF_extra_info, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETIF_RSP_NULL } from '../../hypervisor/public/io/netif.js';
import {
  xennet_tx_req_encode, xennet_rx_req_encode, xennet_tx_rsp_decode, xennet_rx_rsp_decode, xennet_rx_rsp_fits, xennet_tx_segments,
  xennet_tx_req_for, XENNET_TX_GEOMETRY, XENNET_RX_GEOMETRY,
} from '../../arch/xen/xen/xennet_wire.js';
import { hex, unhex } from './fixture.js';
import { xorshift } from '../guest/harness.js';

test('ring geometry: 256 slots each, 12-byte TX and 8-byte RX slots', (t) => {
  t.deepEqual(XENNET_TX_GEOMETRY, { entrySize: 12, size: 256 });
  t.deepEqual(XENNET_RX_GEOMETRY, { entrySize: 8, size: 256 });
});

test('a TX request is gref, offset, flags, id, size, little-endian (golden)', (t) => {
  const b = new Uint8Array(12);
  xennet_tx_req_encode(bytesMem(b), 0, { gref: 0x1234, offset: 0xf9c, flags: NETTXF_more_data, id: 7, size: 300 });
  t.is(hex(b), '34120000' + '9c0f' + '0400' + '0700' + '2c01');
});

test('an RX request is id, pad 0, gref (golden)', (t) => {
  const b = new Uint8Array(8).fill(0xee);
  xennet_rx_req_encode(bytesMem(b), 0, 63, 0xabcd);
  t.is(hex(b), '3f00' + '0000' + 'cdab0000');
});

test('our own out-of-range values are bugs and throw', (t) => {
  const m = bytesMem(new Uint8Array(12));
  t.throws(() => xennet_tx_req_encode(m, 0, { gref: 1, offset: 4096, flags: 0, id: 0, size: 1 }));
  t.throws(() => xennet_tx_req_encode(m, 0, { gref: 1, offset: 0, flags: 0, id: 256, size: 1 }));
  t.throws(() => xennet_rx_req_encode(m, 0, 256, 1));
});

test('TX responses: ids bounded by the table, unknown statuses read as errors', (t) => {
  const m = bytesMem(unhex('0500' + '0000' + '0001' + '0000' + '0300' + '3412' + '0100' + 'ffff'));
  t.deepEqual(xennet_tx_rsp_decode(m, 0, 256), { ok: true, value: { id: 5, status: NETIF_RSP_OKAY } });
  t.like(xennet_tx_rsp_decode(m, 4, 256), { ok: false });
  t.deepEqual(xennet_tx_rsp_decode(m, 8, 256), { ok: true, value: { id: 3, status: NETIF_RSP_ERROR } });
  t.deepEqual(xennet_tx_rsp_decode(m, 12, 256), { ok: true, value: { id: 1, status: NETIF_RSP_ERROR } });
  t.is(NETIF_RSP_NULL, 1);
});

test('RX responses: id bounded by the buffers, extra info refused, size checked against the page', (t) => {
  const rsp = (id: number, offset: number, flags: number, status: number): Uint8Array => {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint16(0, id, true);
    dv.setUint16(2, offset, true);
    dv.setUint16(4, flags, true);
    dv.setInt16(6, status, true);
    return b;
  };
  const ok = xennet_rx_rsp_decode(bytesMem(rsp(3, 10, NETRXF_more_data, 1500)), 0, 64);
  t.deepEqual(ok, { ok: true, value: { id: 3, offset: 10, flags: NETRXF_more_data, status: 1500 } });
  t.like(xennet_rx_rsp_decode(bytesMem(rsp(64, 0, 0, 1)), 0, 64), { ok: false });
  t.like(xennet_rx_rsp_decode(bytesMem(rsp(1, 0, NETRXF_extra_info, 1)), 0, 64), { ok: false });
  t.true(xennet_rx_rsp_fits({ id: 0, offset: 4000, flags: 0, status: 96 }));
  t.false(xennet_rx_rsp_fits({ id: 0, offset: 4000, flags: 0, status: 97 }));
  t.false(xennet_rx_rsp_fits({ id: 0, offset: 0, flags: 0, status: -1 }));
});

test('random response bytes never throw (seeded)', (t) => {
  const rnd = xorshift(42);
  const b = new Uint8Array(8);
  for (let i = 0; i < 5000; i++) {
    for (let k = 0; k < 8; k++) b[k] = rnd() & 0xff;
    t.notThrows(() => xennet_rx_rsp_decode(bytesMem(b), 0, 64));
    t.notThrows(() => xennet_tx_rsp_decode(bytesMem(b), 0, 256));
  }
});

test('packets are cut at page boundaries; the first slot carries the whole size', (t) => {
  const base = 0x8880_0010_0000;
  t.deepEqual(xennet_tx_segments(base + 100, 42), [{ page: base, offset: 100, len: 42 }]);
  const segs = xennet_tx_segments(base + 4096 - 100, 5000);
  t.deepEqual(segs, [
    { page: base, offset: 3996, len: 100 },
    { page: base + 4096, offset: 0, len: 4096 },
    { page: base + 8192, offset: 0, len: 804 },
  ]);
  t.deepEqual(segs.map((_, i) => xennet_tx_req_for(segs, i, 5000, i, 100 + i)), [
    { gref: 100, offset: 3996, flags: NETTXF_more_data, id: 0, size: 5000 },
    { gref: 101, offset: 0, flags: NETTXF_more_data, id: 1, size: 4096 },
    { gref: 102, offset: 0, flags: 0, id: 2, size: 804 },
  ]);
  t.deepEqual(xennet_tx_segments(base, 0), []);
});
