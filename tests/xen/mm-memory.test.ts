/*
 * A domain's memory over its life: reservations, teardown and frame
 * accounting, log-dirty tracking, the toolstack's foreign access.
 */
import test from 'ava';
import { EBUSY, EFAULT, EINVAL, ENOSYS, EOPNOTSUPP, EPERM, ESRCH } from '../../hypervisor/public/errno.js';
import {
  XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY, XEN_DOMCTL_SHADOW_OP_CLEAN, XEN_DOMCTL_SHADOW_OP_ENABLE,
  XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, XEN_DOMCTL_SHADOW_OP_OFF, XEN_DOMCTL_SHADOW_OP_PEEK,
} from '../../hypervisor/public/domctl.js';
import {
  XENMEM_current_reservation, XENMEM_decrease_reservation, XENMEM_increase_reservation, XENMEM_maximum_ram_page,
  XENMEM_machphys_mapping, XENMEM_maximum_reservation, XENMEM_populate_physmap, xen_memory_reservation,
} from '../../hypervisor/public/memory.js';
import { DOMID_SELF } from '../../hypervisor/public/xen.js';
import { GuestPageFault, type GuestMem } from '../../hypervisor/public/cpu.js';
import { OWNER_FREE, OWNER_ZOMBIE } from '../../hypervisor/xen/frametable.js';
import { guestAccess } from '../../hypervisor/xen/hcall.js';
import { DomainMemory, pinTable, releaseIfUnreferenced, shadowOp } from '../../hypervisor/xen/mm.js';
import { foreignFrame, type ForeignFrame } from '../../hypervisor/xen/mm-foreign.js';
import { makeMemoryOp } from '../../hypervisor/xen/mm-memop.js';
import { HostArenaMem } from '../../hypervisor/xen/mm-vamem.js';
import { KVA, PAGE, PRW, ctx, dom0, guest, heldRefs, l1Of, machine, pte, pteMaddr, type Machine } from './mm-fixture.js';
import { makeMmuUpdate } from '../../hypervisor/xen/mm-hypercalls.js';
import { benchMmu } from '../../hypervisor/xen/mm-bench.js';

function reservation(mem: GuestMem, at: number, list: number, nr: number, domid: number, order = 0): void {
  const v = xen_memory_reservation.view(mem, at);
  v.set('extent_start', BigInt(list));
  v.set('nr_extents', BigInt(nr));
  v.set('extent_order', order);
  v.set('mem_flags', 0);
  v.set('domid', domid);
}

test('relinquish returns every frame, page tables included', (t) => {
  const m = machine();
  const start = m.frames.freeFrames;
  const g = guest(m, 1, 40);
  t.true(m.frames.freeFrames < start - 40);
  const r = g.dm.relinquish(m.env);
  t.deepEqual(r, { released: 44, zombies: 0 }, '40 data frames and 4 tables');
  t.is(m.frames.freeFrames, start);
  t.is(heldRefs(m), 0, 'no count left on any frame');
  t.is(g.vm.cr3Mfn, 0);
  t.throws(() => g.mem.getUint8(KVA), { instanceOf: GuestPageFault }, 'a dead vCPU has no address space');
  t.is(g.dm.allocPages(m.env, 1), undefined, 'a dying domain gains nothing');
});

test('a thousand domains built, pinned and destroyed leak no frame', (t) => {
  const m = machine(4);
  const start = m.frames.freeFrames;
  for (let i = 1; i <= 1000; i++) {
    const g = guest(m, i, 1 + (i % 7));
    g.mem.setUint32(KVA, i, true);
    g.dm.relinquish(m.env);
    m.domains.delete(i);
  }
  t.is(m.frames.freeFrames, start);
  t.is(heldRefs(m), 0);
});

test('allocation respects max pages and is all or nothing', (t) => {
  const m = machine();
  const dm = new DomainMemory(1, 10);
  const free = m.frames.freeFrames;
  t.is(dm.allocPages(m.env, 11), undefined);
  t.is(m.frames.freeFrames, free, 'nothing taken by the refused request');
  t.is(dm.allocPages(m.env, 10)!.length, 10);
  t.is(dm.totPages, 10);
  t.is(dm.allocPages(m.env, 1), undefined);
});

test('memory_op: populate, increase and decrease keep tot_pages, the M2P and the extent list straight', (t) => {
  const m = machine();
  const g = guest(m, 1, 8, 20);
  const op = makeMemoryOp(m.env, m.find);
  const c = ctx(1, g.mem);
  const args = KVA + 7 * PAGE;
  const list = args + 64;
  const cur = (): number => {
    g.mem.setUint16(args + 1024, DOMID_SELF, true);
    return op(c, BigInt(XENMEM_current_reservation), BigInt(args + 1024), 0n, 0n, 0n);
  };
  t.is(cur(), 12, '8 data pages and 4 tables');
  g.mem.setUint16(args + 1024, DOMID_SELF, true);
  t.is(op(c, BigInt(XENMEM_maximum_reservation), BigInt(args + 1024), 0n, 0n, 0n), 20);
  t.is(op(c, BigInt(XENMEM_maximum_ram_page), 0n, 0n, 0n, 0n), m.frames.nrFrames);

  [100, 101, 102].forEach((pfn, i) => g.mem.setBigUint64(list + i * 8, BigInt(pfn), true));
  reservation(g.mem, args, list, 3, DOMID_SELF);
  t.is(op(c, BigInt(XENMEM_populate_physmap), BigInt(args), 0n, 0n, 0n), 3);
  const got = [0, 1, 2].map((i) => Number(g.mem.getBigUint64(list + i * 8, true)));
  t.deepEqual(got.map((mfn) => m.frames.m2p[mfn]), [100, 101, 102], 'M2P set, MFNs handed back');
  t.true(got.every((mfn) => g.dm.owns(mfn)));
  t.is(cur(), 15);

  reservation(g.mem, args, list, 10, DOMID_SELF);
  t.is(op(c, BigInt(XENMEM_increase_reservation), BigInt(args), 0n, 0n, 0n), 5, 'short count at max_pages');
  t.is(cur(), 20);

  g.mem.setBigUint64(list, BigInt(got[1]!), true);
  g.mem.setBigUint64(list + 8, BigInt(g.data[0]!), true);
  reservation(g.mem, args, list, 2, DOMID_SELF);
  t.is(op(c, BigInt(XENMEM_decrease_reservation), BigInt(args), 0n, 0n, 0n), 1, 'a mapped page is not given back');
  t.is(m.frames.owner[got[1]!], OWNER_FREE);
  t.is(cur(), 19);

  const other = guest(m, 2, 1);
  g.mem.setBigUint64(list, BigInt(other.data[0]!), true);
  reservation(g.mem, args, list, 1, DOMID_SELF);
  t.is(op(c, BigInt(XENMEM_decrease_reservation), BigInt(args), 0n, 0n, 0n), 0, 'nor someone else\'s');
  t.is(m.frames.owner[other.data[0]!], 2);
  reservation(g.mem, args, list, 1, 2);
  t.is(op(c, BigInt(XENMEM_decrease_reservation), BigInt(args), 0n, 0n, 0n), -EPERM, 'another domain\'s reservation');
  reservation(g.mem, args, list, 1, DOMID_SELF, 9);
  t.is(op(c, BigInt(XENMEM_increase_reservation), BigInt(args), 0n, 0n, 0n), 0, 'only single-page extents');
  t.is(op(c, BigInt(XENMEM_populate_physmap), BigInt(KVA + 64 * PAGE), 0n, 0n, 0n), 0, 'unreadable struct: nothing done');
  t.is(op(c, BigInt(XENMEM_current_reservation), BigInt(KVA + 64 * PAGE), 0n, 0n, 0n), -EFAULT);
  g.mem.setUint16(args + 1024, 77, true);
  t.is(op(c, BigInt(XENMEM_current_reservation), BigInt(args + 1024), 0n, 0n, 0n), -ESRCH);
  t.is(op(c, 99n, 0n, 0n, 0n, 0n), -ENOSYS);
  t.is(op(c, BigInt(XENMEM_machphys_mapping), BigInt(args + 2048), 0n, 0n, 0n), 0);
  t.is(g.mem.getBigUint64(args + 2048, true), 0xffff_8000_0000_0000n, 'v_start: the M2P window');
  t.is(g.mem.getBigUint64(args + 2064, true), BigInt(m.frames.nrFrames - 1), 'max_mfn');
});

test('memory_op resumes at the start extent encoded in cmd', (t) => {
  const m = machine();
  const g = guest(m, 1, 8, 64);
  const op = makeMemoryOp(m.env, m.find);
  const args = KVA + 7 * PAGE;
  const list = args + 64;
  for (let i = 0; i < 4; i++) g.mem.setBigUint64(list + i * 8, BigInt(200 + i), true);
  reservation(g.mem, args, list, 4, DOMID_SELF);
  const cmd = BigInt(XENMEM_populate_physmap) | (2n << 6n);
  t.is(op(ctx(1, g.mem), cmd, BigInt(args), 0n, 0n, 0n), 4);
  t.is(g.mem.getBigUint64(list, true), 200n, 'extents before the start are left alone');
  t.is(m.frames.m2p[Number(g.mem.getBigUint64(list + 16, true))], 202);
});

test('dom0 populates a guest through its host arena', (t) => {
  const m = machine();
  const { arena } = dom0(m);
  const dm = new DomainMemory(5, 16);
  m.domains.set(5, dm);
  const list = arena.alloc(8 * 4);
  for (let i = 0; i < 4; i++) arena.setBigUint64(list + i * 8, BigInt(i), true);
  const args = arena.alloc(xen_memory_reservation.size);
  reservation(arena, args, list, 4, 5);
  t.is(makeMemoryOp(m.env, m.find)(ctx(0, arena, true), BigInt(XENMEM_populate_physmap), BigInt(args), 0n, 0n, 0n), 4);
  t.is(dm.totPages, 4);
  t.deepEqual(dm.ownedFrames().map((mfn) => m.frames.m2p[mfn]), [0, 1, 2, 3]);
});

test('log-dirty marks exactly the written pages, and CLEAN resets', (t) => {
  const m = machine();
  const g = guest(m, 1, 8);
  t.is(m.memory.dirtyHook, null, 'no hook while no domain tracks');
  t.is(shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_CLEAN, pages: 8, bitmap: new Uint8Array(1) }).rc, -EINVAL, 'not enabled');
  t.is(shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_ENABLE, mode: XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY }).rc, 0);
  t.is(shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY }).rc, -EINVAL, 'already on');
  t.not(m.memory.dirtyHook, null);
  const other = guest(m, 2, 2);
  g.mem.setUint8(KVA + 1 * PAGE + 5, 1);
  g.mem.setUint32(KVA + 4 * PAGE - 2, 0xffffffff, true);
  g.mem.fill(KVA + 6 * PAGE, 10, 3);
  void g.mem.getUint32(KVA + 2 * PAGE, true);
  other.mem.setUint8(KVA, 1);
  const bitmap = new Uint8Array(2);
  const r = shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_PEEK, pages: 16, bitmap });
  t.is(r.rc, 0);
  t.is(r.dirtyCount, 4);
  t.is(bitmap[0], 0b0101_1010, 'PFNs 1, 3, 4 (the straddling write) and 6; not the read, not the other domain');
  const c = shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_CLEAN, pages: 16, bitmap });
  t.is(c.dirtyCount, 4, 'CLEAN reports, then resets');
  t.is(bitmap[0], 0b0101_1010);
  t.deepEqual(g.dm.logDirty!.dirtyPfns(), []);
  g.mem.setUint8(KVA + 7 * PAGE, 9);
  shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_CLEAN, pages: 16, bitmap });
  t.deepEqual([...bitmap], [0b1000_0000, 0]);
  t.is(shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_OFF }).rc, 0);
  t.is(m.memory.dirtyHook, null, 'hook removed with the last tracking domain');
  t.is(shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_ENABLE, mode: 0 }).rc, -EOPNOTSUPP, 'no shadow paging here');
});

test('log-dirty sees the page-table writes the hypervisor makes for the guest', (t) => {
  const m = machine();
  const g = guest(m, 1, 8);
  shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY });
  const { l1 } = l1Of(m, g.space.l4, KVA);
  g.dm.setM2p(m.env, l1, 50);
  const [spare] = g.dm.allocPages(m.env, 1) as [number];
  g.dm.setM2p(m.env, spare, 60);
  const va = KVA + 7 * PAGE;
  g.mem.setBigUint64(va, pteMaddr(m, g.space.l4, KVA + 2 * PAGE), true);
  g.mem.setBigUint64(va + 8, pte(spare, PRW), true);
  shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_CLEAN, pages: 64, bitmap: new Uint8Array(8) });
  t.is(makeMmuUpdate(m.env, m.find)(ctx(1, g.mem), BigInt(va), 1n, 0n, BigInt(DOMID_SELF), 0n), 0);
  t.deepEqual(g.dm.logDirty!.dirtyPfns(), [50], 'the L1 that changed');
});

test('a frame another domain still maps outlives its owner, and is freed at the last unmap', (t) => {
  const m = machine();
  const start = m.frames.freeFrames;
  const granter = guest(m, 1, 2);
  const grantee = guest(m, 2, 2);
  const shared = granter.data[1]!;
  // What the grant table would do: record the grant mapping, allow the PTE.
  m.frames.grantMaps[shared] = 1;
  m.env.isForeignMappable = (owner, mfn) => owner === 2 && mfn === shared;
  const slot = pteMaddr(m, grantee.space.l4, KVA + PAGE);
  const update = makeMmuUpdate(m.env, m.find);
  const va = KVA;
  const put = (v: bigint): number => {
    grantee.mem.setBigUint64(va, slot, true);
    grantee.mem.setBigUint64(va + 8, v, true);
    return update(ctx(2, grantee.mem), BigInt(va), 1n, 0n, BigInt(DOMID_SELF), 0n);
  };
  t.is(put(pte(shared, PRW)), 0);
  const r = granter.dm.relinquish(m.env);
  t.is(r.zombies, 1);
  t.is(m.frames.owner[shared], OWNER_ZOMBIE);
  grantee.mem.setUint32(KVA + PAGE, 7, true);
  t.is(m.memory.readU32(shared, 0), 7, 'still the grantee\'s mapped memory');
  t.is(put(0n), 0);
  t.is(m.frames.owner[shared], OWNER_ZOMBIE, 'the grant mapping still holds it');
  m.frames.grantMaps[shared] = 0;
  t.true(releaseIfUnreferenced(m.env, shared));
  grantee.dm.relinquish(m.env);
  t.is(m.frames.freeFrames, start);
});

test('foreign frame access: privilege, ownership, no writing a page table, writes seen by log-dirty', (t) => {
  const m = machine();
  const g = guest(m, 1, 4);
  const { l1 } = l1Of(m, g.space.l4, KVA);
  t.is(foreignFrame(m.env, false, 1, g.data[0]!), -EPERM);
  t.is(foreignFrame(m.env, true, 2, g.data[0]!), -EINVAL);
  t.is(foreignFrame(m.env, true, 1, m.frames.nrFrames + 1), -EINVAL);
  t.is(foreignFrame(m.env, true, 1, l1, true), -EBUSY);
  const ro = foreignFrame(m.env, true, 1, l1) as ForeignFrame;
  t.is(ro.mem.getBigUint64(0, true), pte(g.data[0]!, PRW), 'page tables can be read (and saved)');
  t.throws(() => ro.mem.setUint8(0, 1));
  shadowOp(m.env, g.dm, { op: XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY });
  const f = foreignFrame(m.env, true, 1, g.data[2]!, true) as ForeignFrame;
  t.is(f.write(8, new Uint8Array([1, 2, 3])), 0);
  t.deepEqual([...f.peek().subarray(8, 11)], [1, 2, 3]);
  t.is(g.mem.getUint8(KVA + 2 * PAGE + 9), 2);
  t.deepEqual(g.dm.logDirty!.dirtyPfns(), [2]);
  t.is(f.write(4090, new Uint8Array(8)), -EINVAL, 'outside the frame');
});

test('decrease_reservation refuses pinned and mapped frames but frees plain ones', (t) => {
  const m = machine();
  const g = guest(m, 1, 2);
  const [table, plain] = g.dm.allocPages(m.env, 2) as [number, number];
  t.is(pinTable(m.env, 1, table, 1), 0);
  t.is(g.dm.removePage(m.env, table), -EBUSY);
  t.is(g.dm.removePage(m.env, g.data[0]!), -EBUSY);
  t.is(g.dm.removePage(m.env, plain), 0);
  t.is(g.dm.removePage(m.env, plain), -EINVAL, 'not ours any more');
});

test('the host arena faults outside its range, so a dom0 bad pointer is -EFAULT', (t) => {
  const arena = new HostArenaMem(4096, 0x10000);
  const va = arena.alloc(16);
  t.is(va, 0x10000);
  arena.setUint32(va, 5, true);
  t.is(arena.getUint32(va, true), 5);
  t.is(guestAccess(() => arena.getUint32(0x10000 + 4094, true)), -EFAULT);
  t.is(guestAccess(() => arena.getUint8(0)), -EFAULT);
  t.throws(() => arena.alloc(8192));
  arena.reset();
  t.is(arena.alloc(8), 0x10000);
});

test('the MMU bench runs and compares against a plain typed array', (t) => {
  const r = benchMmu(1, 1);
  t.true(r.readMBps > 0 && r.writeMBps > 0 && r.plainReadMBps > 0 && r.bulkReadMBps > 0);
  t.is(r.bytes, 1024 * 1024);
});
