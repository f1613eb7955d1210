/*
 * Page-table canonicalization alone, on synthetic pages: every bit but the
 * frame number survives the round trip; superpages, foreign frames and
 * Xen's L4 slots are refused or cleared as libxc's saver does.
 */
import test from 'ava';
import { canonicalizeTable, localizeTable } from '../../hypervisor/tools/save/canonical.js';

const page = (entries: Record<number, bigint>): Uint8Array => {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  for (const [i, v] of Object.entries(entries)) dv.setBigUint64(8 * Number(i), v, true);
  return b;
};
const entry = (b: Uint8Array, i: number): bigint => new DataView(b.buffer).getBigUint64(8 * i, true);

const NX = 1n << 63n;
const FLAGS = 0x67n; // P RW US A D

test('MFN -> PFN and back keeps flags, NX and the available bits; absent entries are left alone', (t) => {
  const mfns = [0x12345n, 0xf_ffffn + 1n, 0xab_cdef_0123n];
  const b = page({ 0: (mfns[0]! << 12n) | FLAGS, 1: NX | (mfns[1]! << 12n) | 0x25n | 0xe00n, 7: (mfns[2]! << 12n) | FLAGS, 9: 0xdead_b000n });
  const toPfn = new Map([[0x12345, 5], [0x10_0000, 0x10_0001], [0xab_cdef_0123, 7]]);
  t.is(canonicalizeTable(b, 1, (m) => toPfn.get(m) ?? -1), undefined);
  t.is(entry(b, 0), (5n << 12n) | FLAGS);
  t.is(entry(b, 1), NX | (0x10_0001n << 12n) | 0x25n | 0xe00n);
  t.is(entry(b, 7), (7n << 12n) | FLAGS);
  t.is(entry(b, 9), 0xdead_b000n, 'not present: untouched');
  const back = new Map([...toPfn].map(([m, p]) => [p, m]));
  t.is(localizeTable(b, 1, 0x20_0000, (p) => back.get(p) ?? -1), undefined);
  t.is(entry(b, 0), (mfns[0]! << 12n) | FLAGS);
  t.is(entry(b, 1), NX | (mfns[1]! << 12n) | 0x25n | 0xe00n);
  t.is(entry(b, 7), (mfns[2]! << 12n) | FLAGS);
});

test('a frame outside the pseudo-physical map is refused, naming the entry', (t) => {
  const b = page({ 3: (0x99n << 12n) | FLAGS });
  t.deepEqual(canonicalizeTable(b, 2, () => -1), { kind: 'foreign', entry: 3, frame: 0x99 });
});

test('superpages are refused at L2 and L3, not at L1 where bit 7 is PAT', (t) => {
  const pse = (0x200n << 12n) | FLAGS | 0x80n;
  t.deepEqual(canonicalizeTable(page({ 4: pse }), 2, (m) => m), { kind: 'superpage', entry: 4, frame: 0x200 });
  t.deepEqual(canonicalizeTable(page({ 4: pse }), 3, (m) => m), { kind: 'superpage', entry: 4, frame: 0x200 });
  t.is(canonicalizeTable(page({ 4: pse }), 1, (m) => m), undefined);
  t.deepEqual(localizeTable(page({ 4: pse }), 2, 0x1000, (p) => p), { kind: 'superpage', entry: 4, frame: 0x200 });
});

test("Xen's L4 slots: 256..271 cleared on save, a guest mapping in 272 refused, any of them refused on restore", (t) => {
  const b = page({ 256: (0x10n << 12n) | FLAGS, 271: 0x5n, 273: (0x11n << 12n) | FLAGS });
  t.is(canonicalizeTable(b, 4, (m) => m + 1), undefined);
  t.is(entry(b, 256), 0n);
  t.is(entry(b, 271), 0n);
  t.is(entry(b, 273), (0x12n << 12n) | FLAGS);
  t.deepEqual(canonicalizeTable(page({ 272: (0x10n << 12n) | FLAGS }), 4, (m) => m), { kind: 'xen-slot', entry: 272, frame: 0x10 });
  t.is(canonicalizeTable(page({ 272: (0x10n << 12n) | FLAGS }), 3, (m) => m), undefined, 'only L4s have Xen slots');
  t.deepEqual(localizeTable(page({ 260: 0x1000n }), 4, 0x100, (p) => p), { kind: 'xen-slot', entry: 260, frame: 1 });
});

test('restore: a pfn beyond max_pfn, or one without data, is refused', (t) => {
  t.deepEqual(localizeTable(page({ 2: (0x100n << 12n) | FLAGS }), 1, 0x100, (p) => p), { kind: 'pfn-out-of-range', entry: 2, frame: 0x100 });
  t.deepEqual(localizeTable(page({ 2: (0x10n << 12n) | FLAGS }), 1, 0x100, () => -1), { kind: 'unpopulated', entry: 2, frame: 0x10 });
});
