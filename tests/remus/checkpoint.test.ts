/*
 * Checkpointing in process: a memtest guest is checkpointed over one
 * stream while it keeps running; the receiver applies a checkpoint only
 * once it is complete, so a stream cut inside checkpoint k+1 restores
 * checkpoint k exactly (the guest's loop counter as it was when the
 * primary was suspended for k), and the guest runs on without a pattern
 * error. A whole checkpointed stream passes both image checkers.
 */
import test from 'ava';
import { RestoreError, remusSaveDomain, restoreDomain, waitForSuspend, type RemusCheckpoint } from '../../hypervisor/tools/save/index.js';
import { assertValidImage } from '../helpers/verify-image.js';
import { V_CANCELS, V_ENTRIES, V_ERRORS, V_RESUMES, V_SWEEP, memtestKernel } from '../save/kernels/memtest.js';
import { Collector, askSuspend, guest, machine, readVar, runEntries, startRestored, vars } from '../save/fixture.js';
import type { Machine } from '../../hypervisor/xen/machine.js';
import type { ExecutionContext } from 'ava';
import { checkImage, type StreamFormat } from '../../hypervisor/tools/stream/index.js';

interface Run {
  readonly image: Uint8Array;
  readonly cps: RemusCheckpoint[];
  /** V_ENTRIES of the primary at each checkpoint (while suspended for it). */
  readonly entriesAt: number[];
  readonly a: Machine;
  readonly domid: number;
}

async function checkpointed(t: ExecutionContext, seed: number, n: number, format: StreamFormat = 'xl'): Promise<Run> {
  const a = machine({ seed });
  const g = guest(a, memtestKernel, { pages: 1024, window: 4 });
  runEntries(t, a, g.domid, 20);
  const c = new Collector();
  const cps: RemusCheckpoint[] = [];
  const entriesAt: number[] = [];
  const r = await remusSaveDomain(a, g.domid, c.sink, {
    format,
    betweenRounds: () => runEntries(t, a, g.domid, 20),
    maxRounds: 2,
    suspend: async () => {
      askSuspend(a, g.domid);
      await waitForSuspend(a, g.domid, 1e9);
    },
    interval: () => runEntries(t, a, g.domid, 25),
    checkpoints: n,
    onCheckpoint: (cp) => {
      cps.push(cp);
      entriesAt.push(readVar(a, g.domid, V_ENTRIES));
    },
  });
  t.is(r.outcome, 'resumed');
  t.deepEqual(r.checkpoints.map((x) => x.n), Array.from({ length: n }, (_, i) => i + 1));
  t.true(r.checkpoints.at(-1)!.last && r.checkpoints.slice(0, -1).every((x) => !x.last));
  return { image: c.bytes(), cps, entriesAt, a, domid: g.domid };
}

test('a guest checkpointed 4 times runs on at the primary; a stream cut inside checkpoint 3 restores checkpoint 2 exactly, and it runs on with no errors', async (t) => {
  const run = await checkpointed(t, 300, 4);
  const { a, domid, cps, entriesAt } = run;
  // The primary: resumed in place after every checkpoint, running, no errors.
  t.false(a.xc.getDomainInfo(domid)?.shutdown);
  runEntries(t, a, domid, 10);
  t.deepEqual(vars(a, domid, { cancels: V_CANCELS, errors: V_ERRORS, resumes: V_RESUMES }), { cancels: 4, errors: 0, resumes: 0 });
  t.true(entriesAt.every((e, i) => i === 0 || e > entriesAt[i - 1]!), `entries at each checkpoint: ${entriesAt.join(', ')}`);
  t.true(cps.slice(1).every((cp) => cp.pages > 0 && cp.pages < 300), `pages per checkpoint: ${cps.map((x) => x.pages).join(', ')}`);

  // Cut halfway into checkpoint 3 (its pages), and right before its CHECKPOINT record.
  for (const cut of [Math.floor((cps[1]!.bytes + cps[2]!.bytes) / 2), cps[2]!.bytes - 16]) {
    const b = machine({ seed: 301, tscKhz: 2_600_000 });
    const seen: number[] = [];
    const d = await restoreDomain(b, run.image.subarray(0, cut), { checkpointed: true, onCheckpoint: (n) => seen.push(n) });
    t.deepEqual(seen, [1, 2]);
    t.like(d.checkpoint, { n: 2, ended: 'broken' });
    t.regex(d.checkpoint?.why ?? '', /stream ends|truncat/i);
    t.is(readVar(b, d.domid, V_ENTRIES), entriesAt[1]!, 'the loop counter as the primary had it at checkpoint 2');
    startRestored(b, d.domid);
    runEntries(t, b, d.domid, 300); // > one full sweep of the pattern pages
    const s = vars(b, d.domid, { errors: V_ERRORS, resumes: V_RESUMES, sweep: V_SWEEP });
    t.is(s.errors, 0);
    t.is(s.resumes, 1);
    t.true(s.sweep >= 1);
  }

  // The whole stream: built from checkpoint 4, closed by END.
  const b = machine({ seed: 302 });
  const d = await restoreDomain(b, run.image, { checkpointed: true });
  t.like(d.checkpoint, { n: 4, ended: 'end' });
  t.is(readVar(b, d.domid, V_ENTRIES), entriesAt[3]!);
  startRestored(b, d.domid);
  runEntries(t, b, d.domid, 50);
  t.is(readVar(b, d.domid, V_ERRORS), 0);
});

test('a checkpointed stream cut before its first checkpoint is complete leaves nothing behind', async (t) => {
  const run = await checkpointed(t, 310, 2);
  const b = machine({ seed: 311 });
  const free = b.xc.physinfo();
  const e = await t.throwsAsync(restoreDomain(b, run.image.subarray(0, run.cps[0]!.bytes - 16), { checkpointed: true }));
  t.true(e instanceof RestoreError);
  t.regex(e?.message ?? '', /before its first complete checkpoint/);
  t.deepEqual(b.xc.physinfo(), free, 'every frame given back');
  t.is(b.xc.getDomainInfo(1), undefined, 'no domain left');
});

test('a complete checkpointed stream: libxc layer passes both checkers; as xl, ours passes and Xen\'s verify-stream-v2 -f xl refuses it at the first CHECKPOINT_END', async (t) => {
  const lx = await checkpointed(t, 320, 3, 'libxc');
  await t.notThrowsAsync(assertValidImage(lx.image, 'a libxc stream of 3 checkpoints', 'libxc'));
  const xl = await checkpointed(t, 321, 3);
  const ours = await checkImage(xl.image);
  t.true(ours.ok, ours.errors.map((e) => e.message).join('\n'));
  t.is(ours.summary.checkpoints, 2, 'two CHECKPOINT records; the third checkpoint is closed by END');
  // Xen 4.17's verifier reads the libxc stream up to libxc END without handing
  // back to libxl at CHECKPOINT, so it takes libxl CHECKPOINT_END (type 4, empty)
  // for a libxc X86_PV_VCPU_BASIC (also type 4) and refuses its length.
  const e = await t.throwsAsync(assertValidImage(xl.image, 'an xl stream of 3 checkpoints'));
  t.regex(e?.message ?? '', /verify-stream-v2 -f xl refused[\s\S]*verify_record_libxc_context[\s\S]*X86_PV_VCPU_basic record length must be at least 8 bytes long/);
});
