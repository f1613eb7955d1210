/*
 * The store ring code (xenbus_comms' xb_ring_*) over a flat buffer: a
 * xenstore_domain_interface page followed by scratch space for the
 * messages, no kernel, no hypervisor. Messages split across the ring end,
 * indices past 2^31 and 2^32, full and empty rings, impossible indices.
 */
import test from 'ava';
import { bytesMem } from '../../hypervisor/public/layout.js';
import {
  xenstore_domain_interface, XENSTORE_RING_SIZE, XENSTORE_PAYLOAD_MAX, xsd_sockmsg,
} from '../../hypervisor/public/io/xs_wire.js';
import {
  xb_ring_write, xb_ring_read, xb_ring_space, xb_ring_avail, xb_check_header, XB_BADRING,
} from '../../arch/xen/xenbus/xenbus_comms.js';
import { xorshift } from '../guest/harness.js';

const PAGE = 4096;
/** Scratch after the page: source and destination buffers. */
const SRC = PAGE;
const DST = PAGE + 8192;

function flat(start = 0) {
  const bytes = new Uint8Array(PAGE + 16384);
  const mem = bytesMem(bytes);
  const v = xenstore_domain_interface.view(mem, 0);
  for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) v.set(f, start >>> 0);
  return { bytes, mem, v };
}

const REQ = xenstore_domain_interface.offsetOf('req');
const RSP = xenstore_domain_interface.offsetOf('rsp');

function fill(bytes: Uint8Array, at: number, data: number[]): void {
  bytes.set(data, at);
}

test('a request split across the ring end lands in two pieces, req_prod past both', (t) => {
  const { bytes, mem, v } = flat(1020);
  fill(bytes, SRC, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.is(xb_ring_write(mem, 0, SRC, 10), 10);
  t.deepEqual([...bytes.subarray(REQ + 1020, REQ + 1024)], [1, 2, 3, 4], 'first piece at the end of req');
  t.deepEqual([...bytes.subarray(REQ, REQ + 6)], [5, 6, 7, 8, 9, 10], 'rest at the start of req');
  t.is(v.get('req_prod'), 1030);
  t.is(v.get('req_cons'), 1020, 'the consumer index is xenstored\'s, untouched');
});

test('a write takes only the free space; a full ring takes nothing', (t) => {
  const { bytes, mem, v } = flat();
  v.set('req_cons', 0);
  v.set('req_prod', 1000);
  fill(bytes, SRC, Array.from({ length: 100 }, (_, i) => i));
  t.is(xb_ring_space(mem, 0), 24);
  t.is(xb_ring_write(mem, 0, SRC, 100), 24);
  t.is(v.get('req_prod'), 1024);
  t.is(xb_ring_write(mem, 0, SRC, 100), 0, 'full');
  t.is(v.get('req_prod'), 1024);
});

test('indices past 2^31 and 2^32 wrap as unsigned 32-bit', (t) => {
  for (const start of [0x7fff_fffe, 0xffff_fffa]) {
    const { bytes, mem, v } = flat(start);
    fill(bytes, SRC, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12]);
    t.is(xb_ring_write(mem, 0, SRC, 12), 12);
    t.is(v.get('req_prod'), (start + 12) >>> 0, `req_prod from ${start.toString(16)}`);
    const at = start % XENSTORE_RING_SIZE;
    t.is(bytes[REQ + at], 9);
    // The same bytes come back through the reply ring.
    bytes.set(bytes.subarray(REQ, REQ + XENSTORE_RING_SIZE), RSP);
    v.set('rsp_prod', (start + 12) >>> 0);
    t.is(xb_ring_avail(mem, 0), 12);
    t.is(xb_ring_read(mem, 0, DST, 100), 12);
    t.deepEqual([...bytes.subarray(DST, DST + 12)], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12]);
    t.is(v.get('rsp_cons'), (start + 12) >>> 0);
  }
});

test('a reply split across the ring end is read whole, or in as many pieces as asked', (t) => {
  const { bytes, mem, v } = flat(1018);
  const msg = [21, 22, 23, 24, 25, 26, 27, 28];
  for (let i = 0; i < msg.length; i++) bytes[RSP + ((1018 + i) % 1024)] = msg[i] as number;
  v.set('rsp_prod', 1026);
  t.is(xb_ring_read(mem, 0, DST, 3), 3);
  t.is(xb_ring_read(mem, 0, DST + 3, 100), 5);
  t.deepEqual([...bytes.subarray(DST, DST + 8)], msg);
  t.is(xb_ring_read(mem, 0, DST, 100), 0, 'empty');
  t.is(v.get('rsp_cons'), 1026);
});

test('impossible indices are reported, and nothing is copied or moved', (t) => {
  const { bytes, mem, v } = flat();
  v.set('rsp_cons', 10);
  v.set('rsp_prod', 10 + 1025);
  bytes.fill(0xee, DST, DST + 64);
  t.is(xb_ring_read(mem, 0, DST, 64), XB_BADRING);
  t.is(xb_ring_avail(mem, 0), XB_BADRING);
  t.is(v.get('rsp_cons'), 10);
  t.is(bytes[DST], 0xee);
  // A consumer behind the producer by more than a ring, or ahead of it.
  v.set('req_cons', 5000);
  v.set('req_prod', 10);
  t.is(xb_ring_write(mem, 0, SRC, 4), XB_BADRING);
  t.is(xb_ring_space(mem, 0), XB_BADRING);
  t.is(v.get('req_prod'), 10);
  // Exactly full is fine.
  v.set('rsp_cons', 0xffff_fe00);
  v.set('rsp_prod', (0xffff_fe00 + 1024) >>> 0);
  t.is(xb_ring_avail(mem, 0), 1024);
});

test('a header announcing more than XENSTORE_PAYLOAD_MAX bytes is refused; the maximum is fine', (t) => {
  const { mem } = flat();
  const h = xsd_sockmsg.view(mem, SRC);
  h.set('len', XENSTORE_PAYLOAD_MAX);
  t.is(xb_check_header(mem, SRC), undefined);
  h.set('len', XENSTORE_PAYLOAD_MAX + 1);
  t.regex(xb_check_header(mem, SRC) ?? '', /4097 bytes/);
  h.set('len', 0xffff_ffff);
  t.truthy(xb_check_header(mem, SRC));
});

test('random messages through both rings arrive intact, in order (seeded)', (t) => {
  const rnd = xorshift(0x5eed);
  const { bytes, mem, v } = flat(0xffff_f000);
  const sent: number[] = [];
  const got: number[] = [];
  let pending: number[] = [];
  for (let round = 0; round < 400; round++) {
    // Producer: a message of 0..3000 bytes, written as space allows.
    if (pending.length === 0) {
      const len = rnd() % 3000;
      pending = Array.from({ length: len }, () => rnd() & 0xff);
      sent.push(...pending);
    }
    const chunk = pending.slice(0, 2000);
    bytes.set(chunk, SRC);
    const n = xb_ring_write(mem, 0, SRC, chunk.length);
    t.true(n >= 0);
    pending = pending.slice(n);
    // The "server" echoes what it consumes from req into rsp, in random amounts.
    const cons = v.get('req_cons');
    const avail = (v.get('req_prod') - cons) >>> 0;
    const take = Math.min(avail, rnd() % 1100, XENSTORE_RING_SIZE - ((v.get('rsp_prod') - v.get('rsp_cons')) >>> 0));
    for (let i = 0; i < take; i++) {
      const b = bytes[REQ + ((cons + i) % 1024)] as number;
      const p = v.get('rsp_prod');
      bytes[RSP + (p % 1024)] = b;
      v.set('rsp_prod', (p + 1) >>> 0);
    }
    v.set('req_cons', (cons + take) >>> 0);
    // Consumer: read some.
    const r = xb_ring_read(mem, 0, DST, rnd() % 1500);
    t.true(r >= 0);
    got.push(...bytes.subarray(DST, DST + r));
  }
  t.true(got.length > 100_000, `moved ${got.length} bytes`);
  t.deepEqual(got, sent.slice(0, got.length));
  t.true(v.get('req_prod') < 0x10_0000, 'the indices wrapped past 2^32');
});
