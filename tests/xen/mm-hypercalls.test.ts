/*
 * mmu_update, mmuext_op, update_va_mapping as a guest calls them: arguments
 * in its own virtual memory, Xen's errno on every refusal, other domains
 * untouched.
 */
import test from 'ava';
import { EBUSY, EFAULT, EINVAL, ENOSYS, EPERM, ESRCH } from '../../hypervisor/public/errno.js';
import { HYPERVISOR_VIRT_START_VA, MACH2PHYS_VIRT_START_VA } from '../../hypervisor/public/arch-x86_64.js';
import {
  DOMID_SELF, MMU_MACHPHYS_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L1_TABLE,
  MMUEXT_PIN_L4_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNPIN_TABLE, UVMF_ALL, UVMF_INVLPG,
  UVMF_TLB_FLUSH,
} from '../../hypervisor/public/xen.js';
import { PageType, M2P_INVALID } from '../../hypervisor/xen/frametable.js';
import { makeMmuUpdate, makeMmuextOp, makeUpdateVaMapping, makeUpdateVaMappingOtherdomain, mmHypercalls } from '../../hypervisor/xen/mm-hypercalls.js';
import { XENMEM_maximum_ram_page } from '../../hypervisor/public/memory.js';
import type { GuestMem } from '../../hypervisor/public/cpu.js';
import { A, KVA, PAGE, PRO, PRW, buildSpace, ctx, dom0, guest, l1Of, machine, pte, pteMaddr, type Guest, type Machine } from './mm-fixture.js';

/** Arguments go in the guest's last data page. */
const ARGS = (g: Guest): number => KVA + (g.data.length - 1) * PAGE;

function putRequests(mem: GuestMem, va: number, reqs: [bigint, bigint][]): void {
  reqs.forEach(([ptr, val], i) => {
    mem.setBigUint64(va + i * 16, ptr, true);
    mem.setBigUint64(va + i * 16 + 8, val, true);
  });
}

function mmuUpdate(m: Machine, g: Guest, reqs: [bigint, bigint][], foreigndom = DOMID_SELF): { rc: number; done: number } {
  const va = ARGS(g);
  putRequests(g.mem, va, reqs);
  const pdone = va + 2048;
  g.mem.setUint32(pdone, 0xffff, true);
  const rc = makeMmuUpdate(m.env, m.find)(ctx(g.dm.domid, g.mem), BigInt(va), BigInt(reqs.length), BigInt(pdone), BigInt(foreigndom), 0n);
  return { rc, done: g.mem.getUint32(pdone, true) };
}

function mmuext(m: Machine, g: Guest, ops: [number, bigint, bigint][], foreigndom = DOMID_SELF): { rc: number; done: number } {
  const va = ARGS(g);
  ops.forEach(([cmd, a1, a2], i) => {
    g.mem.setUint32(va + i * 24, cmd, true);
    g.mem.setBigUint64(va + i * 24 + 8, a1, true);
    g.mem.setBigUint64(va + i * 24 + 16, a2, true);
  });
  const pdone = va + 2048;
  const rc = makeMmuextOp(m.env, m.find)(ctx(g.dm.domid, g.mem), BigInt(va), BigInt(ops.length), BigInt(pdone), BigInt(foreigndom), 0n);
  return { rc, done: g.mem.getUint32(pdone, true) };
}

test('mmu_update remaps a page and the TLB follows', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const [spare] = g.dm.allocPages(m.env, 1) as [number];
  m.memory.writeU32(spare, 0, 0x5a5a5a5a);
  t.is(g.mem.getUint32(KVA + PAGE, true), 0, 'cached in the TLB now');
  t.is(g.mem.getUint32(KVA + 2 * PAGE, true), 0);
  const gen = g.dm.ptGeneration;
  const flushes = g.vm.flushes;
  const r = mmuUpdate(m, g, [[pteMaddr(m, g.space.l4, KVA + PAGE), pte(spare, PRW)]]);
  t.deepEqual(r, { rc: 0, done: 1 });
  t.true(g.dm.ptGeneration > gen);
  t.is(g.mem.getUint32(KVA + PAGE, true), 0x5a5a5a5a, 'the new frame, not a stale translation');
  t.is(g.vm.flushes, flushes, 'changing one L1 entry drops only what it mapped, not the whole TLB');
  t.is(g.mem.translate(KVA + 2 * PAGE, false), g.data[2]!);
  t.is(m.frames.typeCount[g.data[1]!], 0, 'the old frame lost its writable mapping');
  t.is(m.frames.type[spare], PageType.Writable);
});

test('mapping another domain\'s frame is refused with -EBUSY and leaves it untouched', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const victim = guest(m, 2, 2);
  const theirs = victim.data[0]!;
  const before = [m.frames.refCount[theirs], m.frames.typeCount[theirs]];
  const slot = pteMaddr(m, g.space.l4, KVA + 2 * PAGE);
  const old = m.memory.readU64(Number(slot >> 12n), Number(slot & 0xfffn));
  const r = mmuUpdate(m, g, [
    [pteMaddr(m, g.space.l4, KVA + 3 * PAGE), pte(g.data[3]!, PRO)],
    [slot, pte(theirs, PRW)],
    [pteMaddr(m, g.space.l4, KVA + 4 * PAGE), 0n],
  ]);
  t.deepEqual(r, { rc: -EBUSY, done: 1 }, 'stops at the bad entry; the first one was done');
  t.is(m.memory.readU64(Number(slot >> 12n), Number(slot & 0xfffn)), old, 'PTE unchanged');
  t.deepEqual([m.frames.refCount[theirs], m.frames.typeCount[theirs]], before);
  t.is(victim.mem.getUint32(KVA, true), 0, 'the victim still runs');
  t.is(mmuUpdate(m, g, [[slot, pte(theirs, PRO)]]).rc, -EBUSY, 'read-only too');
  t.is(mmuUpdate(m, g, [[slot, pte(m.frames.nrFrames + 5, PRO)]]).rc, -EPERM, 'a frame that is not RAM');
});

test('mapping one of its own page tables writable is refused; read-only is allowed', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const { l1 } = l1Of(m, g.space.l4, KVA);
  const slot = pteMaddr(m, g.space.l4, KVA + 2 * PAGE);
  t.is(mmuUpdate(m, g, [[slot, pte(l1, PRW)]]).rc, -EBUSY);
  t.is(mmuUpdate(m, g, [[slot, pte(g.space.l4, PRW)]]).rc, -EBUSY, 'the L4 either');
  t.is(mmuUpdate(m, g, [[slot, pte(l1, PRO)]]).rc, 0);
  t.is(g.mem.getBigUint64(KVA + 2 * PAGE, true), pte(g.data[0]!, PRW), 'the guest reads its L1 entry 0');
  t.is(m.frames.type[l1], PageType.L1);
});

test('PRESERVE_AD keeps the accessed/dirty bits already in the entry', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const slot = pteMaddr(m, g.space.l4, KVA);
  const mfn = Number(slot >> 12n);
  const off = Number(slot & 0xfffn);
  m.memory.writeU64(mfn, off, pte(g.data[0]!, PRW | 0x40));
  const r = mmuUpdate(m, g, [[slot | BigInt(MMU_PT_UPDATE_PRESERVE_AD), pte(g.data[0]!, PRW & ~A)]]);
  t.is(r.rc, 0);
  t.is(m.memory.readU64(mfn, off), pte(g.data[0]!, PRW | 0x40));
});

test('MMU_MACHPHYS_UPDATE sets the M2P of an owned frame only', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const other = guest(m, 2, 2);
  const mine = BigInt(g.data[2]!) << 12n;
  t.is(mmuUpdate(m, g, [[mine | BigInt(MMU_MACHPHYS_UPDATE), 77n]]).rc, 0);
  t.is(g.mem.getBigUint64(MACH2PHYS_VIRT_START_VA + g.data[2]! * 8, true), 77n, 'visible in the M2P window');
  const theirs = BigInt(other.data[1]!) << 12n;
  t.deepEqual(mmuUpdate(m, g, [[theirs | BigInt(MMU_MACHPHYS_UPDATE), 5n]]), { rc: -EINVAL, done: 0 });
  t.is(m.frames.m2p[other.data[1]!], 1, 'their M2P entry is unchanged');
  t.is(mmuUpdate(m, g, [[mine | BigInt(MMU_MACHPHYS_UPDATE), 0xffff_ffff_ffff_ffffn]]).rc, 0);
  t.is(m.frames.m2p[g.data[2]!], M2P_INVALID);
  t.is(mmuUpdate(m, g, [[mine | BigInt(MMU_MACHPHYS_UPDATE), 1n << 45n]]).rc, -EINVAL, 'not a frame number');
});

test('bad request pointers are -EFAULT; a bad pdone is ignored', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const h = makeMmuUpdate(m.env, m.find);
  const c = ctx(1, g.mem);
  const unmapped = KVA + 64 * PAGE;
  t.is(h(c, BigInt(unmapped), 1n, 0n, BigInt(DOMID_SELF), 0n), -EFAULT);
  t.is(h(c, BigInt(HYPERVISOR_VIRT_START_VA), 1n, 0n, BigInt(DOMID_SELF), 0n), -EFAULT, 'the hypervisor hole is never a guest buffer');
  t.is(h(c, 0xffff_0000_0000_0000n - 1n, 1n, 0n, BigInt(DOMID_SELF), 0n), -EFAULT, 'non-canonical');
  // The array starts mapped and runs into an unmapped page: fault at entry 1.
  const last = ARGS(g) + PAGE - 16;
  putRequests(g.mem, last, [[pteMaddr(m, g.space.l4, KVA), pte(g.data[0]!, PRW)]]);
  t.is(h(c, BigInt(last), 2n, BigInt(ARGS(g)), BigInt(DOMID_SELF), 0n), -EFAULT);
  t.is(g.mem.getUint32(ARGS(g), true), 1, 'one entry done before the fault');
  t.is(h(c, BigInt(last), 1n, BigInt(unmapped), BigInt(DOMID_SELF), 0n), 0);
});

test('the L4 slots of the hypervisor hole cannot be set', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const [spare] = g.dm.allocPages(m.env, 1) as [number];
  for (const s of [256, 263, 271]) {
    const r = mmuUpdate(m, g, [[BigInt(g.space.l4) * 4096n + BigInt(s * 8), pte(spare, PRW)]]);
    t.is(r.rc, -EINVAL, `slot ${s}`);
  }
  t.is(m.frames.typeCount[spare], 0);
});

test('mmu_update on an ordinary page is a checked write; unknown commands are -ENOSYS', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const [plain] = g.dm.allocPages(m.env, 1) as [number];
  t.is(mmuUpdate(m, g, [[BigInt(plain) * 4096n + 24n, 0x1234n]]).rc, 0);
  t.is(m.memory.readU64(plain, 24), 0x1234n);
  t.is(m.frames.typeCount[plain], 0, 'the writable type was only held for the write');
  const other = guest(m, 2, 1);
  t.is(mmuUpdate(m, g, [[BigInt(other.data[0]!) * 4096n, 1n]]).rc, -EINVAL, 'not its page');
  t.is(mmuUpdate(m, g, [[BigInt(plain) * 4096n + 4n, 1n]]).rc, -ENOSYS);
});

test('foreign domains need privilege, must exist, and may not be yourself by number', (t) => {
  const m = machine();
  const g = guest(m, 1);
  guest(m, 2, 1);
  const req: [bigint, bigint][] = [[BigInt(g.data[0]!) * 4096n + BigInt(MMU_MACHPHYS_UPDATE), 3n]];
  t.is(mmuUpdate(m, g, req, 2).rc, -EPERM);
  t.is(mmuUpdate(m, g, req, 9).rc, -ESRCH);
  t.is(mmuUpdate(m, g, req, 1).rc, -ESRCH);
  t.is(mmuext(m, g, [[MMUEXT_TLB_FLUSH_LOCAL, 0n, 0n]], 2).rc, -EPERM);
});

test('privileged dom0 sets a guest\'s M2P and pins its tables through the foreign-domain argument', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const { arena } = dom0(m);
  const [table] = g.dm.allocPages(m.env, 1) as [number];
  m.memory.writeU64(table, 0, pte(g.data[0]!, PRO));
  const va = arena.alloc(64);
  arena.setBigUint64(va, (BigInt(g.data[4]!) << 12n) | BigInt(MMU_MACHPHYS_UPDATE), true);
  arena.setBigUint64(va + 8, 40n, true);
  const up = makeMmuUpdate(m.env, m.find)(ctx(0, arena, true), BigInt(va), 1n, 0n, 1n, 0n);
  t.is(up, 0);
  t.is(m.frames.m2p[g.data[4]!], 40);
  const op = arena.alloc(24);
  arena.setUint32(op, MMUEXT_PIN_L1_TABLE, true);
  arena.setBigUint64(op + 8, BigInt(table), true);
  t.is(makeMmuextOp(m.env, m.find)(ctx(0, arena, true), BigInt(op), 1n, 0n, 1n, 0n), 0);
  t.is(m.frames.pinned[table], 1);
  t.is(m.frames.type[table], PageType.L1);
  const outside = arena.base + arena.bytes.length;
  t.is(makeMmuUpdate(m.env, m.find)(ctx(0, arena, true), BigInt(outside), 1n, 0n, 1n, 0n), -EFAULT, 'dom0 faults too');
});

test('mmuext_op pins, unpins and stops at the first bad op', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const [table] = g.dm.allocPages(m.env, 1) as [number];
  const r = mmuext(m, g, [
    [MMUEXT_PIN_L1_TABLE, BigInt(table), 0n],
    [MMUEXT_UNPIN_TABLE, BigInt(table), 0n],
    [MMUEXT_NEW_BASEPTR, BigInt(g.data[0]!), 0n],
    [MMUEXT_TLB_FLUSH_LOCAL, 0n, 0n],
  ]);
  t.deepEqual(r, { rc: -EINVAL, done: 2 }, 'a data page mapped writable is no L4');
  t.is(m.frames.typeCount[table], 0);
  t.is(mmuext(m, g, [[MMUEXT_UNPIN_TABLE, BigInt(table), 0n]]).rc, -EINVAL, 'not pinned');
  t.is(mmuext(m, g, [[MMUEXT_PIN_L4_TABLE, BigInt(g.space.l4), 0n]]).rc, -EINVAL, 'already pinned');
  const other = guest(m, 2, 1);
  t.is(mmuext(m, g, [[MMUEXT_PIN_L1_TABLE, BigInt(other.space.tables[3]!), 0n]]).rc, -EINVAL, 'not its frame');
  t.is(mmuext(m, g, [[99, 0n, 0n]]).rc, -ENOSYS);
  t.is(mmuext(m, g, [[MMUEXT_TLB_FLUSH_MULTI, 0n, BigInt(KVA + 64 * PAGE)]]).rc, -EINVAL, 'unreadable vCPU mask');
  g.mem.setBigUint64(ARGS(g) + 1024, 1n, true);
  t.is(mmuext(m, g, [[MMUEXT_TLB_FLUSH_MULTI, 0n, BigInt(ARGS(g) + 1024)]]).rc, 0);
});

test('update_va_mapping changes one L1 entry by address and honours the flush argument', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const uva = makeUpdateVaMapping(m.env, m.find);
  const c = ctx(1, g.mem);
  const h = (_: unknown, va: bigint, val: bigint, flags: bigint): number => uva(c, va, val, flags, 0n, 0n);
  const [spare] = g.dm.allocPages(m.env, 1) as [number];
  m.memory.writeU32(spare, 0, 99);
  t.is(g.mem.getUint32(KVA + 2 * PAGE, true), 0);
  t.is(h(c, BigInt(KVA + 2 * PAGE), pte(spare, PRW), BigInt(UVMF_INVLPG)), 0);
  t.is(g.mem.getUint32(KVA + 2 * PAGE, true), 99);
  t.is(h(c, BigInt(KVA + 2 * PAGE), 0n, BigInt(UVMF_TLB_FLUSH | UVMF_ALL)), 0, 'unmap');
  t.throws(() => g.mem.getUint32(KVA + 2 * PAGE, true));
  t.is(h(c, BigInt(KVA + 512 * PAGE), pte(spare, PRW), 0n), -EINVAL, 'no L1 maps that address');
  t.is(h(c, BigInt(KVA + 2 * PAGE), pte(guest(m, 2, 1).data[0]!, PRW), 0n), -EBUSY, 'foreign frame');
  const badMask = BigInt(KVA + 64 * PAGE) | BigInt(UVMF_TLB_FLUSH);
  t.is(h(c, BigInt(KVA + 2 * PAGE), pte(spare, PRO), badMask), -EFAULT, 'unreadable vCPU bitmap');
  t.is(g.mem.getUint32(KVA + 2 * PAGE, true), 99, 'the mapping itself was made, as on Xen');
  const other = makeUpdateVaMappingOtherdomain(m.env, m.find);
  t.is(other(c, BigInt(KVA + 2 * PAGE), 0n, 0n, 2n, 0n), -EPERM);
});

test('the grant hook lets a domain map a frame granted to it, with the rights granted', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const granter = guest(m, 2, 2);
  const shared = granter.data[1]!;
  m.env.isForeignMappable = (l1Owner, mfn, writable) => l1Owner === 1 && mfn === shared && !writable;
  const slot = pteMaddr(m, g.space.l4, KVA + 2 * PAGE);
  t.is(mmuUpdate(m, g, [[slot, pte(shared, PRW)]]).rc, -EBUSY, 'read-only grant');
  t.is(mmuUpdate(m, g, [[slot, pte(shared, PRO)]]).rc, 0);
  granter.mem.setUint32(KVA + PAGE, 0xfeed, true);
  t.is(g.mem.getUint32(KVA + 2 * PAGE, true), 0xfeed);
  t.is(m.frames.refCount[shared], 2, 'the grantee\'s mapping holds a reference besides the granter\'s own');
  t.is(mmuUpdate(m, g, [[slot, 0n]]).rc, 0);
  t.is(m.frames.refCount[shared], 1);
});

test('MMUEXT_NEW_BASEPTR switches address space and the TLB follows', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const [alt] = g.dm.allocPages(m.env, 1) as [number];
  m.memory.writeU32(alt, 0, 0xabcd);
  // A second address space mapping `alt` at KVA and the argument page where it was.
  const second = buildSpace(m, g.dm, [
    { va: KVA, mfn: alt, flags: PRW },
    { va: ARGS(g), mfn: g.data[g.data.length - 1]!, flags: PRW },
  ]);
  t.is(g.mem.getUint32(KVA, true), 0);
  const flushes = g.vm.flushes;
  t.deepEqual(mmuext(m, g, [[MMUEXT_NEW_BASEPTR, BigInt(second.l4), 0n]]), { rc: 0, done: 1 });
  t.is(g.vm.cr3Mfn, second.l4);
  t.true(g.vm.flushes > flushes);
  t.is(g.mem.getUint32(KVA, true), 0xabcd);
  t.is(m.frames.type[second.l4], PageType.L4, 'validated on load');
});

test('the dispatch table carries every MMU hypercall', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const table = mmHypercalls(m.env, m.find);
  t.deepEqual([...table.keys()].sort((a, b) => a - b), [1, 12, 14, 22, 26]);
  t.is(table.get(12)!(ctx(1, g.mem), BigInt(XENMEM_maximum_ram_page), 0n, 0n, 0n, 0n), m.frames.nrFrames);
});

test('upper-level entries and foreign page tables are off limits', (t) => {
  const m = machine();
  const g = guest(m, 1);
  const victim = guest(m, 2, 2);
  const theirL1 = victim.space.tables[3]!;
  const l2Slot = BigInt(g.space.tables[2]!) * 4096n + 3n * 8n;
  t.is(mmuUpdate(m, g, [[l2Slot, pte(theirL1, PRW)]]).rc, -EINVAL, 'an L2 entry to their L1');
  const before = m.memory.readU64(theirL1, 0);
  t.is(mmuUpdate(m, g, [[BigInt(theirL1) * 4096n, pte(g.data[0]!, PRW)]]).rc, -EINVAL, 'writing into their L1');
  t.is(m.memory.readU64(theirL1, 0), before);
  t.is(mmuUpdate(m, g, [[BigInt(theirL1) * 4096n, 0n]], (3 << 16) | DOMID_SELF).rc, -EPERM, 'naming them as page-table owner');
  t.is(m.frames.typeCount[theirL1], 1);
  t.is(victim.mem.getUint32(KVA, true), 0);
  const [mine] = g.dm.allocPages(m.env, 1) as [number];
  t.is(mmuUpdate(m, g, [[l2Slot, pte(mine, PRW)]]).rc, 0, 'a fresh page of its own becomes an L1');
  t.is(m.frames.type[mine], PageType.L1);
});
