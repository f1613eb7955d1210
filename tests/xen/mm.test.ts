/*
 * The PV MMU's paging: validation discipline, guest virtual memory through
 * the software TLB, the M2P window, faults.
 */
import test from 'ava';
import { GuestPageFault } from '../../hypervisor/public/cpu.js';
import { EBUSY, EINVAL } from '../../hypervisor/public/errno.js';
import { MACH2PHYS_VIRT_START_VA, HYPERVISOR_VIRT_START_VA } from '../../hypervisor/public/arch-x86_64.js';
import {
  XEN_DOMCTL_PFINFO_L1TAB, XEN_DOMCTL_PFINFO_L2TAB, XEN_DOMCTL_PFINFO_L4TAB, XEN_DOMCTL_PFINFO_LPINTAB,
  XEN_DOMCTL_PFINFO_NOTAB, XEN_DOMCTL_PFINFO_XTAB,
} from '../../hypervisor/public/domctl.js';
import { PageType, OWNER_XEN } from '../../hypervisor/xen/frametable.js';
import { DomainMemory, pinTable, setBaseptr, unpinTable } from '../../hypervisor/xen/mm.js';
import { getPageFrameInfo } from '../../hypervisor/xen/mm-foreign.js';
import { GuestVaMem } from '../../hypervisor/xen/mm-vamem.js';
import { KVA, PAGE, PRO, PRW, P, RW, buildSpace, guest, heldRefs, l1Of, machine, pte, slot } from './mm-fixture.js';

test('MFN 0 is the hypervisor\'s, so 0 can mean "no page table"', (t) => {
  const m = machine();
  t.is(m.frames.owner[0], OWNER_XEN);
});

test('a hand-built 4-level table pins, loads into CR3 and maps reads and writes to the right frames', (t) => {
  const m = machine();
  const g = guest(m, 1);
  g.mem.setUint32(KVA + 3 * PAGE + 16, 0xdeadbeef, true);
  t.is(m.memory.readU32(g.data[3]!, 16), 0xdeadbeef, 'the write landed in data frame 3 at offset 16');
  m.memory.writeU32(g.data[5]!, 100, 0x01020304);
  t.is(g.mem.getUint32(KVA + 5 * PAGE + 100, true), 0x01020304);
  t.is(g.mem.getUint8(KVA + 5 * PAGE + 100), 0x04, 'little-endian bytes');
  g.mem.setBigUint64(KVA + 8, 0x1122334455667788n, true);
  t.is(g.mem.getBigUint64(KVA + 8, true), 0x1122334455667788n);
  t.is(g.mem.getBigInt64(KVA + 8, true), 0x1122334455667788n);
  g.mem.setInt16(KVA + 40, -2, true);
  t.is(g.mem.getInt16(KVA + 40, true), -2);
  t.is(g.mem.getUint16(KVA + 40, false), 0xfeff, 'big-endian when asked, as DataView');
  t.is(g.mem.getUint32(KVA + 5 * PAGE + 100), 0x04030201, 'DataView default is big-endian');
});

test('validation types every table and takes a writable type on each RW-mapped frame', (t) => {
  const m = machine();
  const g = guest(m, 1, 4);
  const f = m.frames;
  const [l4, l3, l2, l1] = g.space.tables as [number, number, number, number];
  t.deepEqual([f.type[l4], f.type[l3], f.type[l2], f.type[l1]], [PageType.L4, PageType.L3, PageType.L2, PageType.L1]);
  t.is(f.typeCount[l4], 2, 'the pin and CR3 each hold the L4');
  t.is(f.pinned[l4], 1);
  for (const d of g.data) t.is(f.type[d], PageType.Writable);
  const info = getPageFrameInfo(m.env, 1, [l4, l2, l1, g.data[0]!, 0]);
  t.deepEqual([...info], [
    (XEN_DOMCTL_PFINFO_L4TAB | XEN_DOMCTL_PFINFO_LPINTAB) >>> 0,
    XEN_DOMCTL_PFINFO_L2TAB,
    XEN_DOMCTL_PFINFO_L1TAB,
    XEN_DOMCTL_PFINFO_NOTAB,
    XEN_DOMCTL_PFINFO_XTAB,
  ]);
});

test('accesses that cross a page boundary use both frames, which need not be adjacent', (t) => {
  const m = machine();
  const g = guest(m, 1);
  t.not(g.data[1], g.data[0]! + 1, 'the allocator scattered the frames');
  const edge = KVA + PAGE - 2;
  g.mem.setUint32(edge, 0xaabbccdd, true);
  t.is(m.memory.readU16(g.data[0]!, PAGE - 2), 0xccdd);
  t.is(m.memory.readU16(g.data[1]!, 0), 0xaabb);
  t.is(g.mem.getUint32(edge, true), 0xaabbccdd);
  g.mem.setBigUint64(KVA + 2 * PAGE - 3, 0x0102030405060708n, true);
  t.is(g.mem.getBigUint64(KVA + 2 * PAGE - 3, true), 0x0102030405060708n);
  const block = new Uint8Array(3 * PAGE).map((_, i) => i & 0xff);
  g.mem.writeBytes(KVA + 100, block);
  t.deepEqual(g.mem.readBytes(KVA + 100, block.length), block);
  t.is(m.memory.readU8(g.data[3]!, 99), (3 * PAGE - 1) & 0xff, 'last byte in the fourth frame');
  g.mem.fill(KVA + PAGE - 10, 20, 0x5a);
  t.is(m.memory.readU8(g.data[1]!, 9), 0x5a);
  g.mem.copyWithin(KVA + 1, KVA, 2 * PAGE);
  t.is(g.mem.getUint8(KVA + 1 + PAGE + 50), block[PAGE + 50 - 100]!, 'memmove with overlap keeps the source');
});

test('a write to a read-only page faults with PRESENT|WRITE and changes nothing', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 64);
  m.domains.set(1, dm);
  const [a, b] = dm.allocPages(m.env, 2) as [number, number];
  m.memory.writeU32(a, 0, 7);
  const space = buildSpace(m, dm, [{ va: KVA, mfn: a, flags: PRO }, { va: KVA + PAGE, mfn: b, flags: PRW }]);
  t.is(pinTable(m.env, 1, space.l4, 4), 0);
  const vm = dm.vcpu(0);
  t.is(setBaseptr(m.env, vm, space.l4), 0);
  const mem = new GuestVaMem(m.env, vm);
  t.is(mem.getUint32(KVA, true), 7, 'readable');
  const e = t.throws(() => mem.setUint32(KVA, 9, true), { instanceOf: GuestPageFault });
  t.is(e.errorCode, GuestPageFault.PF_PRESENT | GuestPageFault.PF_WRITE);
  t.is(e.va, KVA);
  t.is(m.memory.readU32(a, 0), 7);
  // A write straddling RW then RO must not land its first half either.
  t.throws(() => mem.setUint32(KVA + 2 * PAGE - 2, 0xffffffff, true), { instanceOf: GuestPageFault });
  t.throws(() => mem.writeBytes(KVA + PAGE - 4, new Uint8Array(8).fill(1)), { instanceOf: GuestPageFault });
  t.is(m.memory.readU32(b, 0), 0, 'nothing written to the RW side');
  t.is(m.frames.type[a], PageType.None, 'a read-only mapping takes no writable type');
});

test('unmapped addresses, the hypervisor hole and non-canonical numbers fault as not present', (t) => {
  const m = machine();
  const g = guest(m, 1, 2);
  for (const va of [KVA + 2 * PAGE, 0, HYPERVISOR_VIRT_START_VA + 0x100_0000_0000, 2 ** 48, -8, NaN]) {
    const e = t.throws(() => g.mem.getUint8(va), { instanceOf: GuestPageFault }, `va ${va}`);
    t.is(e.errorCode & GuestPageFault.PF_PRESENT, 0);
  }
  const w = t.throws(() => g.mem.setUint8(0, 1), { instanceOf: GuestPageFault });
  t.is(w.errorCode, GuestPageFault.PF_WRITE);
});

test('the M2P window reads the machine-to-phys table as 8-byte entries and refuses writes', (t) => {
  const m = machine();
  const g = guest(m, 1, 4);
  const at = (mfn: number): number => MACH2PHYS_VIRT_START_VA + mfn * 8;
  t.is(g.mem.getBigUint64(at(g.data[2]!), true), 2n);
  t.is(g.mem.getUint32(at(g.data[3]!), true), 3);
  t.is(g.mem.getBigUint64(at(g.space.l4), true), 0xffff_ffff_ffff_ffffn, 'no PFN: all ones');
  t.is(g.mem.getBigInt64(at(0), true), -1n);
  m.frames.m2p[g.data[1]!] = 0x12_3456_789a;
  t.is(g.mem.getBigUint64(at(g.data[1]!), true), 0x12_3456_789an);
  t.deepEqual([...g.mem.readBytes(at(g.data[1]!), 8)], [0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0, 0]);
  const e = t.throws(() => g.mem.setBigUint64(at(g.data[2]!), 5n, true), { instanceOf: GuestPageFault });
  t.is(e.errorCode, GuestPageFault.PF_PRESENT | GuestPageFault.PF_WRITE);
  t.is(m.frames.m2p[g.data[2]!], 2);
  const beyond = MACH2PHYS_VIRT_START_VA + Math.ceil((m.frames.nrFrames * 8) / PAGE) * PAGE;
  t.throws(() => g.mem.getUint8(beyond), { instanceOf: GuestPageFault }, 'no M2P page past the last MFN');
});

test('a page-table page can be mapped read-only but never writable', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 64);
  m.domains.set(1, dm);
  const [d] = dm.allocPages(m.env, 1) as [number];
  const space = buildSpace(m, dm, [{ va: KVA, mfn: d, flags: PRW }]);
  const l1 = space.tables[3]!;
  m.memory.writeU64(l1, 8, pte(l1, PRO));
  t.is(pinTable(m.env, 1, space.l4, 4), 0, 'a read-only self mapping of an L1 is fine');
  t.is(unpinTable(m.env, 1, space.l4), 0);
  m.memory.writeU64(l1, 8, pte(l1, PRW));
  t.is(pinTable(m.env, 1, space.l4, 4), -EBUSY, 'a writable mapping of a page table is refused');
  t.is(heldRefs(m), 0, 'the failed validation left no reference behind');
});

test('pinning a frame that is not a valid table is refused and holds nothing', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 64);
  m.domains.set(1, dm);
  const [bad, data] = dm.allocPages(m.env, 2) as [number, number];
  m.memory.writeU64(bad, 0, pte(data, PRW) | (1n << 55n));
  t.is(pinTable(m.env, 1, bad, 1), -EINVAL, 'reserved bit 55');
  m.memory.writeU64(bad, 0, pte(data, PRW | 0x80));
  t.is(pinTable(m.env, 1, bad, 2), -EINVAL, 'superpage entry in an L2');
  m.memory.writeU64(bad, 0, pte(data, PRW));
  m.memory.writeU64(data, 0, 0xffff_ffff_ffff_ffffn);
  t.is(pinTable(m.env, 1, bad, 2), -EINVAL, 'as an L2 its entry must point at a valid L1, and that frame is not one');
  t.is(pinTable(m.env, 1, bad, 1), 0, 'yet it is a fine L1');
  t.is(pinTable(m.env, 1, bad, 1), -EINVAL, 'already pinned');
  t.is(pinTable(m.env, 1, data, 1), -EINVAL, 'a frame mapped writable cannot become a page table');
  t.is(unpinTable(m.env, 1, bad), 0);
  t.is(heldRefs(m), 0);
});

test('unpinning a table still referenced keeps it validated until the last reference goes', (t) => {
  const m = machine();
  const g = guest(m, 1, 2);
  const { l1 } = l1Of(m, g.space.l4, KVA);
  t.is(pinTable(m.env, 1, l1, 1), 0, 'an L1 in use can be pinned too');
  t.is(m.frames.typeCount[l1], 2);
  t.is(unpinTable(m.env, 1, l1), 0);
  t.is(m.frames.type[l1], PageType.L1, 'still an L1: the L2 refers to it');
  t.is(m.frames.typeCount[l1], 1);
  t.is(unpinTable(m.env, 1, l1), -EINVAL, 'not pinned any more');
  t.is(g.mem.getUint32(KVA, true), 0, 'and still mapping');
});

test('a recursive L4 self-map is accepted read-only and refused writable', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 64);
  m.domains.set(1, dm);
  const [d] = dm.allocPages(m.env, 1) as [number];
  m.memory.writeU32(d, 0, 0x600d);
  const space = buildSpace(m, dm, [{ va: KVA, mfn: d, flags: PRW }]);
  const self = 255;
  m.memory.writeU64(space.l4, self * 8, pte(space.l4, P));
  t.is(pinTable(m.env, 1, space.l4, 4), 0);
  const vm = dm.vcpu(0);
  t.is(setBaseptr(m.env, vm, space.l4), 0);
  const mem = new GuestVaMem(m.env, vm);
  // Through the self-map, the L1 that maps KVA appears as a page at a fixed VA.
  const selfBase = self * 2 ** 39;
  const l1View = selfBase + slot(KVA, 4) * 2 ** 30 + slot(KVA, 3) * 2 ** 21 + slot(KVA, 2) * 2 ** 12;
  t.is(mem.getBigUint64(l1View + slot(KVA, 1) * 8, true), pte(d, PRW), 'the guest reads its own PTE');
  t.throws(() => mem.setUint8(l1View, 0), { instanceOf: GuestPageFault }, 'but cannot write it');

  const dm2 = new DomainMemory(2, 64);
  m.domains.set(2, dm2);
  const [d2] = dm2.allocPages(m.env, 1) as [number];
  const rwSelf = buildSpace(m, dm2, [{ va: KVA, mfn: d2, flags: PRW }]);
  m.memory.writeU64(rwSelf.l4, self * 8, pte(rwSelf.l4, P | RW));
  t.is(pinTable(m.env, 2, rwSelf.l4, 4), -EINVAL, 'a writable self-map would let the guest write its L4');
  t.is(m.frames.typeCount[rwSelf.tables[3]!], 0, 'and the tables below were released again');
});

test('the hypervisor slots of an L4 are cleared on validation', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 64);
  m.domains.set(1, dm);
  const [d] = dm.allocPages(m.env, 1) as [number];
  const space = buildSpace(m, dm, [{ va: KVA, mfn: d, flags: PRW }]);
  m.memory.writeU64(space.l4, 256 * 8, pte(12345, PRW));
  m.memory.writeU64(space.l4, 271 * 8, 0xdeadn);
  t.is(pinTable(m.env, 1, space.l4, 4), 0, 'garbage there is not validated: Xen owns those slots');
  t.is(m.memory.readU64(space.l4, 256 * 8), 0n);
  t.is(m.memory.readU64(space.l4, 271 * 8), 0n);
});

test('NEW_BASEPTR style CR3 loads validate the L4 and move its reference', (t) => {
  const m = machine();
  const g = guest(m, 1, 2);
  const other = buildSpace(m, g.dm, [{ va: KVA, mfn: g.data[1]!, flags: PRW }]);
  t.is(setBaseptr(m.env, g.vm, g.data[0]!), -EINVAL, 'a data page mapped writable is no L4');
  t.is(setBaseptr(m.env, g.vm, 0), -EINVAL, 'MFN 0 is not the guest\'s');
  m.memory.writeU32(g.data[1]!, 0, 42);
  t.is(g.mem.getUint32(KVA, true), 0);
  t.is(setBaseptr(m.env, g.vm, other.l4), 0);
  t.is(g.mem.getUint32(KVA, true), 42, 'the TLB forgot the old translation');
  t.is(m.frames.typeCount[g.space.l4], 1, 'the old L4 keeps only its pin');
  t.is(m.frames.typeCount[other.l4], 1, 'the new L4 is held by CR3 alone');
});
