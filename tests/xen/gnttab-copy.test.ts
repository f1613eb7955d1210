import test from 'ava';
import { gtFixture, type GtFixture } from './gnttab-fixture.js';
import {
  GNTCOPY_source_gref, GNTCOPY_dest_gref, GNTMAP_device_map, GTF_permit_access, GTF_readonly,
  GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_page,
  GNTST_bad_copy_arg, GNTST_permission_denied,
} from '../../hypervisor/public/grant_table.js';
import { DOMID_SELF } from '../../hypervisor/public/xen.js';
import type { GrantCopyOp } from '../../hypervisor/xen/gnttab.js';

/** dom0 buffer frame with bytes 1..n at offset 0; dom1's page granted to dom0 as ref 10. */
function setup(readonly = false) {
  const f = gtFixture();
  const buf = f.page(0);
  const guest = f.page(1);
  f.memory.writeBytes(buf, 0, Uint8Array.from({ length: 64 }, (_, i) => i + 1));
  f.grant(1, 10, 0, guest, readonly);
  return { f, buf, guest };
}

/** Copy `len` bytes from dom0's own frame `buf` into dom1's grant 10 at `destOff`. */
function toGuest(buf: number, len: number, destOff = 0): GrantCopyOp {
  return {
    source: { u: buf, domid: DOMID_SELF, offset: 0 },
    dest: { u: 10, domid: 1, offset: destOff },
    len,
    flags: GNTCOPY_dest_gref,
  };
}

function bytesAt(f: GtFixture, mfn: number, off: number, len: number): number[] {
  return [...f.memory.readBytes(mfn, off, len)];
}

test('copy from an own frame into a granted page', (t) => {
  const { f, buf, guest } = setup();
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 16, 100)), GNTST_okay);
  t.deepEqual(bytesAt(f, guest, 100, 16), Array.from({ length: 16 }, (_, i) => i + 1));
  t.is(f.flags(1, 10), GTF_permit_access, 'GTF_reading/writing only while the copy runs');
  t.deepEqual(f.gt.activeGrants(1), []);
  t.is(f.writable.size, 0, 'writable reference dropped after the copy');
});

test('copy from a granted page into an own frame', (t) => {
  const { f, buf, guest } = setup(true);
  f.memory.writeBytes(guest, 4000, Uint8Array.of(9, 8, 7));
  const op: GrantCopyOp = {
    source: { u: 10, domid: 1, offset: 4000 },
    dest: { u: buf, domid: DOMID_SELF, offset: 2000 },
    len: 3,
    flags: GNTCOPY_source_gref,
  };
  t.is(f.gt.copy(f.caller(0), op), GNTST_okay, 'a read-only grant is a fine source');
  t.deepEqual(bytesAt(f, buf, 2000, 3), [9, 8, 7]);
});

test('copy between two grants of two domains', (t) => {
  const { f, guest } = setup();
  const other = f.page(2);
  f.memory.writeBytes(other, 0, Uint8Array.of(42));
  f.grant(2, 3, 0, other, true);
  const op: GrantCopyOp = {
    source: { u: 3, domid: 2, offset: 0 },
    dest: { u: 10, domid: 1, offset: 0 },
    len: 1,
    flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
  };
  t.is(f.gt.copy(f.caller(0), op), GNTST_okay);
  t.deepEqual(bytesAt(f, guest, 0, 1), [42]);
});

test('a read-only grant cannot be a copy destination', (t) => {
  const { f, buf, guest } = setup(true);
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 16)), GNTST_general_error);
  t.deepEqual(bytesAt(f, guest, 0, 4), [0, 0, 0, 0]);
  t.is(f.flags(1, 10), GTF_permit_access | GTF_readonly);
});

test('a copy crossing the end of a page is GNTST_bad_copy_arg and leaves no pin', (t) => {
  const { f, buf, guest } = setup();
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 16, 4090)), GNTST_bad_copy_arg);
  t.deepEqual(bytesAt(f, guest, 4090, 6), [0, 0, 0, 0, 0, 0]);
  t.is(f.flags(1, 10), GTF_permit_access);
  t.deepEqual(f.gt.activeGrants(1), []);
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 4097)), GNTST_bad_copy_arg);
});

test('copy by frame number only for DOMID_SELF, and only of own frames', (t) => {
  const { f, buf } = setup();
  const op = toGuest(buf, 4);
  t.is(f.gt.copy(f.caller(0), { ...op, source: { ...op.source, domid: 0 } }), GNTST_permission_denied,
    'even naming itself by number is refused');
  t.is(f.gt.copy(f.caller(0), { ...op, source: { ...op.source, u: f.page(2) } }), GNTST_bad_page);
  t.is(f.gt.copy(f.caller(0), { ...op, source: { ...op.source, u: -1 } }), GNTST_bad_page);
});

test('copy status codes for a bad gref, an unknown domain, a grant to someone else', (t) => {
  const { f, buf } = setup();
  const op = toGuest(buf, 4);
  t.is(f.gt.copy(f.caller(0), { ...op, dest: { ...op.dest, u: 99999 } }), GNTST_bad_gntref);
  t.is(f.gt.copy(f.caller(0), { ...op, dest: { ...op.dest, domid: 9 } }), GNTST_bad_domain);
  t.is(f.gt.copy(f.caller(2), toGuest(f.page(2), 4)), GNTST_general_error, 'grant 10 is for dom0');
  t.is(f.gt.copy(f.caller(0), { ...op, len: 0, dest: { ...op.dest, domid: 9 } }), GNTST_okay, 'nothing to copy, nothing checked');
});

test('a copy into a frame that may not be written (page table) is refused', (t) => {
  const { f, buf, guest } = setup();
  f.refuseWritable.add(guest);
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 4)), GNTST_general_error);
  t.is(f.flags(1, 10), GTF_permit_access);
});

test('copy into a grant the caller has mapped uses the mapping', (t) => {
  const { f, buf, guest } = setup();
  const m = f.gt.mapGrantRef(f.caller(0), { dom: 1, ref: 10, flags: GNTMAP_device_map });
  f.gt.seedEntry(1, 10, { flags: f.flags(1, 10) & ~GTF_permit_access, domid: 0, frame: 0 });
  t.is(f.gt.copy(f.caller(0), toGuest(buf, 2)), GNTST_okay, 'pinned: the active entry decides');
  t.deepEqual(bytesAt(f, guest, 0, 2), [1, 2]);
  f.gt.unmapHandle(f.caller(0), m.handle);
});

test('copied bytes go through the write path: log-dirty sees the destination', (t) => {
  const { f, buf, guest } = setup();
  const dirty: number[] = [];
  f.memory.dirtyHook = (mfn) => { dirty.push(mfn); };
  f.gt.copy(f.caller(0), toGuest(buf, 8));
  f.memory.dirtyHook = null;
  t.true(dirty.includes(guest));
  t.false(dirty.includes(buf));
});
