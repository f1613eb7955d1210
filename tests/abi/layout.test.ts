import test from 'ava';
import { struct, union, record, array, u8, u16, u32, u64, i64, bytesMem, u64ToSafeNumber } from '../../hypervisor/public/layout.js';
import { canonicalVa, vaFromCanonical, vaddr, mfn } from '../../hypervisor/public/types.js';

const inner = union('union inner', { a: u32, b: u64 });
const outer = struct('struct outer', { c: u8, u: record(inner), d: u16, arr: array(u32, 3), tail: u8 });

test('offsets follow the C rules: natural alignment and trailing padding', (t) => {
  t.is(outer.offsetOf('c'), 0);
  t.is(outer.offsetOf('u'), 8, 'u64 member of the union aligns the union to 8');
  t.is(outer.offsetOf('u.b'), 8);
  t.is(outer.offsetOf('d'), 16);
  t.is(outer.offsetOf('arr'), 20);
  t.is(outer.offsetOf('tail'), 32);
  t.is(outer.size, 40, 'size rounds up to the 8-byte alignment');
  t.throws(() => outer.offsetOf('nope'), { message: /no member nope/ });
});

test('views read and write little-endian, 64-bit exactly as bigint', (t) => {
  const { bytes, view } = outer.alloc();
  view.set('d', 0xbeef);
  view.setAt('arr', 2, 0xdeadbeef);
  view.sub('u').set('b', 0xffff_ffff_ffff_fff1n);
  t.is(bytes[16], 0xef);
  t.is(bytes[17], 0xbe);
  t.is(view.getAt('arr', 2), 0xdeadbeef);
  t.is(view.sub('u').get('b'), 0xffff_ffff_ffff_fff1n);
  t.is(view.sub('u').get('a'), 0xffff_fff1, 'union members overlap');
  t.throws(() => view.getAt('arr', 3), { instanceOf: RangeError });
});

test('signed 64-bit members round-trip negatives', (t) => {
  const s = struct('struct s', { v: i64 });
  const { view } = s.alloc();
  view.set('v', -5n);
  t.is(view.get('v'), -5n);
});

test('strings in char arrays are NUL-padded and bounded', (t) => {
  const s = struct('struct str', { name: array(u8, 8) });
  const { bytes, view } = s.alloc();
  view.setString('name', 'xen-3.0');
  t.is(view.getString('name'), 'xen-3.0');
  t.is(bytes[7], 0);
  t.throws(() => view.setString('name', '123456789'), { instanceOf: RangeError });
  t.is(bytesMem(bytes).getUint8(0), 'x'.charCodeAt(0));
});

test('u64ToSafeNumber refuses values that would round', (t) => {
  t.is(u64ToSafeNumber(2n ** 53n - 1n), 2 ** 53 - 1);
  t.is(u64ToSafeNumber(2n ** 53n), undefined);
});

test('canonical virtual addresses sign-extend bit 47', (t) => {
  t.is(canonicalVa(vaddr(0x7fff_ffff_f000)), 0x7fff_ffff_f000n);
  t.is(canonicalVa(vaddr(0x8000_0000_0000)), 0xffff_8000_0000_0000n);
  t.is(vaFromCanonical(0xffff_8000_0000_1000n), vaddr(0x8000_0000_1000));
  t.is(vaFromCanonical(0x0000_8000_0000_0000n), undefined, 'bit 47 set without sign extension is not canonical');
  t.throws(() => vaddr(2 ** 48));
  t.throws(() => mfn(-1));
});
