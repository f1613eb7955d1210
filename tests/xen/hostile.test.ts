// The hostile-guest suite: every attack goes through real hypercalls from a
// test kernel, is refused with Xen's error, and leaves the machine and a
// bystander domain untouched.
import test, { type ExecutionContext } from 'ava';
import { Machine } from '../../hypervisor/xen/machine.js';
import { SHUTDOWN_poweroff, SHUTDOWN_crash } from '../../hypervisor/public/sched.js';
import { canonicalVa, type Vaddr } from '../../hypervisor/public/types.js';
import { GuestPageFault } from '../../hypervisor/public/cpu.js';
import { EBUSY, EFAULT, EINVAL, ENOSPC, EPERM, ENOSYS } from '../../hypervisor/public/errno.js';
import { GNTST_general_error, GNTST_okay } from '../../hypervisor/public/grant_table.js';
import { A_PARAM, A_SPARE_VA } from '../kernels/guest.js';
import { spinKernel } from '../kernels/basic.js';
import { hostileKernel, UNMAPPED_VA } from '../kernels/hostile.js';
import { build, rc, result, variable, type Built, type BuildOptions } from './builder.js';

const GRANT_PFN = 6;

interface World {
  m: Machine;
  bystander: Built;
  /** Frame accounting before the attack. */
  free: number;
}

function world(): World {
  const m = new Machine({ memoryBytes: 32 * 1024 * 1024 });
  const bystander = build(m, spinKernel);
  m.runUntil(() => false, 20);
  return { m, bystander, free: m.frames.freeFrames };
}

function attack(w: World, entry: string, args: BuildOptions['args'] = {}, paused = false): Built {
  return build(w.m, hostileKernel, { entry, args, paused });
}

/** Run `b` to its end: powered off (or crashed, if `crash`). */
function finish(t: ExecutionContext, w: World, b: Built, crash = false): void {
  t.is(w.m.runUntil(() => b.d.shuttingDown, 100_000), 'done', 'the attacker stopped');
  t.is(b.d.shutdownCode, crash ? SHUTDOWN_crash : SHUTDOWN_poweroff, b.d.crash?.reason ?? 'no crash');
}

/** The bystander still runs, the machine logged no hypervisor bug. */
function unaffected(t: ExecutionContext, w: World): void {
  const before = variable(w.m, w.bystander, 0);
  w.m.runUntil(() => variable(w.m, w.bystander, 0) >= before + 5, 1000);
  t.true(variable(w.m, w.bystander, 0) >= before + 5, 'the bystander keeps running');
  t.false(w.bystander.d.shuttingDown);
  t.deepEqual(w.m.log.bugs, []);
}

test('mapping a frame of another domain is refused (-EBUSY), writable or not, by VA or by PTE', (t) => {
  const w = world();
  const b = attack(w, 'mapForeign', { [A_PARAM]: w.bystander.p2m[3]! });
  finish(t, w, b);
  t.is(rc(w.m, b, 0), -EBUSY);
  t.is(rc(w.m, b, 1), -EBUSY);
  t.is(rc(w.m, b, 2), -EBUSY);
  unaffected(t, w);
});

test('mapping one\'s own page-table pages writable is refused; read-only is allowed', (t) => {
  const w = world();
  const b = attack(w, 'mapOwnPtWritable');
  finish(t, w, b);
  t.is(rc(w.m, b, 0), -EBUSY);
  t.is(rc(w.m, b, 1), -EBUSY);
  t.is(rc(w.m, b, 2), 0);
  unaffected(t, w);
});

test('pinning a page that is not a valid table is refused', (t) => {
  const w = world();
  const b = attack(w, 'pinGarbage', {}, true);
  w.m.memory.writeU64(b.mbox, 8 * A_PARAM, BigInt(b.p2m[5]!));
  w.m.memory.writeU64(b.mbox, 8 * (A_PARAM + 1), BigInt(w.bystander.p2m[3]!));
  w.m.xc.unpauseDomain(b.domid);
  finish(t, w, b);
  t.is(rc(w.m, b, 0), -EINVAL, 'a page mapped writable cannot become a table');
  t.is(rc(w.m, b, 1), 0, 'unmapped');
  t.is(rc(w.m, b, 2), -EBUSY, 'an L1 entry naming a foreign frame');
  t.is(rc(w.m, b, 3), -EINVAL, 'an L4 entry naming a foreign "L3"');
  unaffected(t, w);
});

/** A granter offering its PFN 6 as ref 8 to `grantee`. */
function granter(w: World, grantee: number, readonly: boolean): Built {
  const g = attack(w, 'grantOffer', {}, true);
  w.m.memory.writeU64(g.mbox, 8 * A_PARAM, BigInt(grantee));
  w.m.memory.writeU64(g.mbox, 8 * (A_PARAM + 1), readonly ? 1n : 0n);
  w.m.memory.writeU64(g.mbox, 8 * (A_PARAM + 2), BigInt(g.p2m[GRANT_PFN]!));
  w.m.xc.unpauseDomain(g.domid);
  w.m.runUntil(() => g.d.shuttingDown, 1000);
  if (g.d.crash !== null) throw new Error(`granter crashed: ${g.d.crash.reason}`);
  return g;
}

test('a read-only grant: a writable map and a copy into it are refused, a write through the mapping faults', (t) => {
  const w = world();
  const b = attack(w, 'grantTake', {}, true);
  const g = granter(w, b.domid, true);
  w.m.memory.writeU64(b.mbox, 8 * A_PARAM, BigInt(g.domid));
  w.m.memory.writeU64(b.mbox, 8 * (A_PARAM + 1), BigInt(b.p2m[7]!));
  w.m.xc.unpauseDomain(b.domid);
  finish(t, w, b);
  t.is(rc(w.m, b, 0), GNTST_general_error, 'writable map of a read-only grant');
  t.is(rc(w.m, b, 1), GNTST_okay, 'read-only map');
  t.is(rc(w.m, b, 2), 0x600d_f00d, 'the granted page reads through the mapping');
  t.is(rc(w.m, b, 3), GNTST_general_error, 'grant copy into a read-only grant');
  const at = Number(w.m.memory.readU64(b.mbox, 8 * A_SPARE_VA)) + 2 * 4096;
  t.is(result(w.m, b, 4), canonicalVa(at as Vaddr), 'cr2');
  t.is(rc(w.m, b, 5), GuestPageFault.PF_PRESENT | GuestPageFault.PF_WRITE, 'error code: write to a present page');
  t.is(variable(w.m, b, 7), 1, 'the handler ran once');
  t.is(w.m.memory.readU32(g.p2m[GRANT_PFN]!, 0), 0x600d_f00d, 'the granted page is unchanged');
  unaffected(t, w);
});

test('mapping a grant made to another domain is refused', (t) => {
  const w = world();
  const b = attack(w, 'grantTake', {}, true);
  const g = granter(w, w.bystander.domid, false);
  w.m.memory.writeU64(b.mbox, 8 * A_PARAM, BigInt(g.domid));
  w.m.memory.writeU64(b.mbox, 8 * (A_PARAM + 1), BigInt(b.p2m[7]!));
  w.m.xc.unpauseDomain(b.domid);
  finish(t, w, b);
  t.is(rc(w.m, b, 0), GNTST_general_error);
  t.is(rc(w.m, b, 1), GNTST_general_error);
  t.is(rc(w.m, b, 3), GNTST_general_error, 'nor can it copy into it');
  unaffected(t, w);
});

test('sending on a port the domain does not own is -EINVAL', (t) => {
  const w = world();
  const victimPort = w.m.xc.allocUnbound(w.bystander.domid, w.bystander.domid);
  t.true(victimPort > 0);
  const b = attack(w, 'sendNotOwned', { [A_PARAM]: victimPort + 3 });
  finish(t, w, b);
  t.is(rc(w.m, b, 0), -EINVAL);
  t.is(rc(w.m, b, 1), -EINVAL);
  t.is(rc(w.m, b, 2), -EINVAL);
  unaffected(t, w);
});

test('binding another domain\'s unbound port that was not offered to us is -EINVAL', (t) => {
  const w = world();
  const offered = w.m.xc.allocUnbound(0, w.bystander.domid);
  t.true(offered > 0);
  const b = attack(w, 'bindNotOffered', { [A_PARAM]: w.bystander.domid, [A_PARAM + 1]: offered });
  finish(t, w, b);
  t.is(rc(w.m, b, 0), -EINVAL);
  t.is(rc(w.m, b, 1), -EINVAL);
  // dom0, to whom it was offered, can still bind it.
  t.true(w.m.xc.bindInterdomain(w.bystander.domid, offered) > 0);
  unaffected(t, w);
});

test('exhausting event channels ends in -ENOSPC for that domain only', (t) => {
  const w = world();
  const b = attack(w, 'exhaustPorts');
  finish(t, w, b);
  t.is(rc(w.m, b, 0), 4095, 'ports 1..4095 of the 2-level ABI');
  t.is(rc(w.m, b, 1), -ENOSPC);
  t.true(w.m.xc.allocUnbound(w.bystander.domid) > 0, 'dom0 still gets ports');
  unaffected(t, w);
  t.is(w.m.xc.destroyDomain(b.domid), 0);
  t.is(w.m.frames.freeFrames, w.free, 'every frame of the attacker came back');
});

test('hypercalls with garbage pointers are -EFAULT; domctl is -EPERM; unknown numbers -ENOSYS', (t) => {
  const w = world();
  const b = attack(w, 'garbagePointers');
  finish(t, w, b);
  for (let i = 0; i < 14; i++) t.is(rc(w.m, b, i), -EFAULT, `call ${i}`);
  t.is(rc(w.m, b, 20), -EPERM);
  t.is(rc(w.m, b, 21), -EINVAL);
  t.is(rc(w.m, b, 22), -ENOSYS);
  unaffected(t, w);
});

test('a guest throwing an exception crashes only itself, with the stack in the log', (t) => {
  const w = world();
  let hooked = 0;
  const b = attack(w, 'throws', {}, true);
  b.d.onCrash = () => { hooked++; };
  w.m.xc.unpauseDomain(b.domid);
  finish(t, w, b, true);
  t.regex(b.d.crash!.reason, /TypeError: guest kernel bug/);
  t.regex(w.m.log.ring(), /domain_crash: .*TypeError/);
  t.regex(w.m.log.ring(), /at throws|hostile/);
  w.m.runUntil(() => hooked > 0, 10);
  t.is(hooked, 1, 'the on_crash hook ran, outside the guest entry');
  t.true(w.m.xc.getDomainInfo(b.domid)!.shutdown);
  unaffected(t, w);
});

test('a jump to an address that is not a kernel symbol crashes the domain', (t) => {
  const w = world();
  const b = attack(w, 'badRip');
  finish(t, w, b, true);
  t.regex(b.d.crash!.reason, /rip 0x1234 is not a symbol of kernel hostile/);
  unaffected(t, w);
});

test('a page fault without a handler crashes the domain', (t) => {
  const w = world();
  const b = attack(w, 'faults');
  finish(t, w, b, true);
  t.regex(b.d.crash!.reason, /unhandled page fault at 0x[0-9a-f]+ \(error code 0\) in faults/);
  unaffected(t, w);
});

test('a page fault goes to the guest\'s handler with cr2 and the error code', (t) => {
  const w = world();
  const b = attack(w, 'faultsHandled');
  finish(t, w, b);
  t.is(result(w.m, b, 4), canonicalVa(UNMAPPED_VA as Vaddr));
  t.is(rc(w.m, b, 5), 0, 'read of a page that is not present');
  t.is(variable(w.m, b, 7), 1);
  t.is(rc(w.m, b, 6), 0, 'the faulting step did not continue past the fault');
  unaffected(t, w);
});

test('crashed and destroyed attackers give every frame back', (t) => {
  const w = world();
  for (const entry of ['throws', 'badRip', 'faults', 'mapOwnPtWritable']) {
    const b = attack(w, entry);
    w.m.runUntil(() => b.d.shuttingDown, 1000);
    t.is(w.m.xc.destroyDomain(b.domid), 0);
  }
  t.is(w.m.frames.freeFrames, w.free);
  unaffected(t, w);
});
