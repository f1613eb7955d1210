/*
 * The save/restore property, whole-machine version: a booted kernel's
 * state is its memory and vCPU context and nothing else.
 *
 * Machine A runs a guest with a busy workload (threads sleeping and
 * waking, callouts, kmem churn, grants made and revoked, console output)
 * for k entries. Machine B is built from the same seed (so the same
 * MFNs, domid and ports) and brought to the same hypervisor state by the
 * same k entries, with its own linked copy of the image. Then, between two
 * entries, B's guest frames are scribbled over and replaced by A's (every
 * frame the guest owns, shared_info included, and its grant table frames),
 * B's vCPU context is replaced by A's, and B's domain is switched to a
 * third, freshly linked image. Both then run on in simulated time and must
 * stay identical: console output, memory, registers.
 *
 * The last test shows the check has teeth: a workload that keeps a counter
 * in a JS closure diverges as soon as B runs fresh kernel text.
 */
import test from 'ava';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import type { KSymTab } from '../../sys/kern/kern_ksyms.js';
import type { Machine } from '../../hypervisor/xen/machine.js';
import { bootRig, type BootRig } from './fixture.js';
import type { PvDomain } from './builder.js';
import { bootTestWorkloads, leakyWorkloads } from './workloads.js';

const SEED = 11;

function side(extra: readonly KSymTab[], name: string, cmdline: string): { rig: BootRig; pv: PvDomain } {
  const rig = bootRig({ scrambleSeed: SEED, memoryBytes: 128 * 1024 * 1024 });
  const pv = rig.create({ image: defineNetbsdImage(extra, name), memMiB: 16, cmdline });
  return { rig, pv };
}

function steps(m: Machine, n: number): void {
  for (let i = 0; i < n; i++) if (!m.step()) throw new Error(`machine went idle after ${i} of ${n} steps`);
}

/** Frames whose contents are the guest's state: its own, and its grant table's. */
function guestFrames(m: Machine, domid: number): number[] {
  return [...m.frames.framesOf(domid), ...m.gnttab.tableFrames(domid)];
}

/** Replace B's copy of the guest with A's, between two entries. */
function transplant(a: Machine, b: Machine, domid: number, image: ReturnType<typeof defineNetbsdImage>): void {
  const frames = guestFrames(a, domid);
  if (frames.join() !== guestFrames(b, domid).join()) throw new Error('the two machines did not give the guest the same frames');
  const junk = new Uint8Array(4096).fill(0x5a);
  for (const mfn of frames) {
    b.memory.writeBytes(mfn, 0, junk);
    b.memory.writeBytes(mfn, 0, a.memory.peekFrame(mfn));
  }
  const va = a.domain(domid)!.vcpus[0]!;
  const vb = b.domain(domid)!.vcpus[0]!;
  vb.ctx.set(va.ctx);
  b.registerImage(image);
  if (b.xc.setKernel(domid, image.name) !== 0) throw new Error('set_kernel failed');
}

function firstDifference(a: Machine, b: Machine, domid: number): string | undefined {
  for (const mfn of guestFrames(a, domid)) {
    const x = a.memory.peekFrame(mfn);
    const y = b.memory.peekFrame(mfn);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `mfn ${mfn} byte ${i}: ${x[i]} vs ${y[i]}`;
  }
  const ca = a.domain(domid)!.vcpus[0]!.ctx;
  const cb = b.domain(domid)!.vcpus[0]!.ctx;
  for (let i = 0; i < ca.length; i++) if (ca[i] !== cb[i]) return `vcpu context byte ${i}`;
  return undefined;
}

for (const k of [150, 1234, 2501]) {
  test(`copy memory and vCPU context into a second machine after ${k} entries: both continue identically`, (t) => {
    const cmd = 'workload=eqload';
    const A = side([bootTestWorkloads], 'netbsd-eq', cmd);
    const B = side([bootTestWorkloads], 'netbsd-eq', cmd);
    steps(A.rig.m, k);
    steps(B.rig.m, k);
    t.is(B.rig.m.clock.now(), A.rig.m.clock.now());
    const domid = A.pv.domid;
    t.is(B.pv.domid, domid);
    const fresh = defineNetbsdImage([bootTestWorkloads], 'netbsd-eq-fresh');
    transplant(A.rig.m, B.rig.m, domid, fresh);
    t.is(B.rig.m.domain(domid)!.kernel, fresh, 'B now runs freshly linked kernel text');
    const a0 = A.rig.consoles.output(domid).length;
    const b0 = B.rig.consoles.output(domid).length;
    for (let i = 0; i < 3000; i++) {
      A.rig.m.step();
      B.rig.m.step();
    }
    const outA = A.rig.consoles.output(domid).slice(a0);
    const outB = B.rig.consoles.output(domid).slice(b0);
    t.true(outA.length > 200, `the workload kept printing:\n${outA}`);
    for (const w of ['P', 'C', 'G']) t.true(outA.includes(w), `output shows ${w}`);
    t.is(outB, outA, 'same console output after the copy');
    t.is(firstDifference(A.rig.m, B.rig.m, domid), undefined, 'same memory and registers');
    t.is(B.rig.m.clock.now(), A.rig.m.clock.now());
    t.deepEqual(A.rig.m.log.bugs, []);
    t.deepEqual(B.rig.m.log.bugs, []);
  });
}

test('the check has teeth: a workload keeping state in a JS closure diverges after the copy', (t) => {
  const cmd = 'workload=leaky';
  const A = side([leakyWorkloads()], 'netbsd-leaky', cmd);
  const B = side([leakyWorkloads()], 'netbsd-leaky', cmd);
  steps(A.rig.m, 400);
  steps(B.rig.m, 400);
  transplant(A.rig.m, B.rig.m, A.pv.domid, defineNetbsdImage([leakyWorkloads()], 'netbsd-leaky-fresh'));
  const a0 = A.rig.consoles.output(A.pv.domid).length;
  const b0 = B.rig.consoles.output(B.pv.domid).length;
  for (let i = 0; i < 400; i++) {
    A.rig.m.step();
    B.rig.m.step();
  }
  const outA = A.rig.consoles.output(A.pv.domid).slice(a0);
  const outB = B.rig.consoles.output(B.pv.domid).slice(b0);
  t.regex(outB, /^L1$/m, 'the fresh kernel text started counting again');
  t.notRegex(outA, /^L1$/m);
  t.not(outA, outB);
});
