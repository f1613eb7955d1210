/*
 * Save/restore as a guest lives it again and again: 20 chained cycles of
 * one guest, each into a new machine, without a single pattern error; and
 * the guests that get it wrong. A guest that does not republish its P2M
 * frame list after a restore (Mini-OS once forgot) survives its first
 * restore but cannot be saved a second time, and the saver says why; so
 * does one that republishes the stale pre-save MFN, and one that suspends
 * with shared_info still mapped. A failed save leaves the guest running.
 */
import test from 'ava';
import { SaveError, restoreDomain } from '../../hypervisor/tools/save/index.js';
import type { Machine } from '../../hypervisor/xen/machine.js';
import {
  V_CANCELS, V_ERRORS, V_FIRST_BAD, V_RESUMES, V_SUSPENDS, forgetfulKernel, memtestKernel, sloppyKernel, staleKernel,
} from './kernels/memtest.js';
import { guest, machine, runEntries, startRestored, suspendAndSave, vars } from './fixture.js';

test('20 chained save/restore cycles of one guest, each into a new machine, with zero errors', async (t) => {
  let m: Machine = machine({ seed: 1000 });
  let domid = guest(m, memtestKernel, { pages: 320, window: 32 }).domid;
  runEntries(t, m, domid, 20);
  for (let cycle = 1; cycle <= 20; cycle++) {
    const { image } = await suspendAndSave(m, domid);
    t.is(m.domain(domid), undefined);
    m = machine({ seed: 1000 + cycle, tscKhz: 1_000_000 + 137_000 * cycle });
    domid = (await restoreDomain(m, image)).domid;
    startRestored(m, domid);
    runEntries(t, m, domid, 20);
    const s = vars(m, domid, { errors: V_ERRORS, resumes: V_RESUMES, firstBad: V_FIRST_BAD });
    if (s.errors !== 0 || s.resumes !== cycle) {
      t.fail(`cycle ${cycle}: ${s.errors} pattern errors (first bad pfn ${s.firstBad - 1}), ${s.resumes} resumes`);
      return;
    }
  }
  const end = vars(m, domid, { errors: V_ERRORS, resumes: V_RESUMES, suspends: V_SUSPENDS });
  t.deepEqual(end, { errors: 0, resumes: 20, suspends: 20 });
});

async function secondSaveFails(t: import('ava').ExecutionContext, kernel: typeof memtestKernel, code: SaveError['code'], message: RegExp): Promise<void> {
  const a = machine({ seed: 40 });
  const g = guest(a, kernel, { pages: 256 });
  runEntries(t, a, g.domid, 10);
  const { image } = await suspendAndSave(a, g.domid);
  const b = machine({ seed: 41 });
  const r = await restoreDomain(b, image);
  t.is(b.xc.unpauseDomain(r.domid), 0);
  b.runUntil(() => false, 2000); // its first restore goes fine: the loop runs on
  const e = await t.throwsAsync(suspendAndSave(b, r.domid), { instanceOf: SaveError });
  t.is(e?.code, code);
  t.regex(e?.message ?? '', message);
  // xl resumes a domain whose save failed: it keeps running, suspend cancelled.
  t.false(b.xc.getDomainInfo(r.domid)?.shutdown ?? true);
  b.runUntil(() => false, 2000);
  const sh = b.domain(r.domid)!;
  t.is(sh.resumes, 1, 'resumed in place once');
}

test('a guest that forgets to republish its P2M after a restore cannot be saved again (the Mini-OS bug)', async (t) => {
  await secondSaveFails(t, forgetfulKernel, 'p2m-unpublished', /pfn_to_mfn_frame_list_list is 0.*rebuild its P2M frame list after every restore/);
});

test('a guest that republishes its pre-save frame list MFN cannot be saved again', async (t) => {
  await secondSaveFails(t, staleKernel, 'p2m-frame-list', /P2M frame list list .* is mfn 0x[0-9a-f]+, which is not a frame of the domain/);
});

test('the well-behaved kernel survives the same second save', async (t) => {
  const a = machine({ seed: 40 });
  const g = guest(a, memtestKernel, { pages: 256 });
  runEntries(t, a, g.domid, 10);
  const { image } = await suspendAndSave(a, g.domid);
  const b = machine({ seed: 41 });
  const r = await restoreDomain(b, image);
  startRestored(b, r.domid);
  runEntries(t, b, r.domid, 10);
  const again = await suspendAndSave(b, r.domid);
  t.is(again.result.outcome, 'destroyed');
});

test('a guest that suspends with shared_info still mapped is refused, and resumed with rax = 1', async (t) => {
  const a = machine({ seed: 50 });
  const g = guest(a, sloppyKernel, { pages: 256 });
  runEntries(t, a, g.domid, 10);
  const e = await t.throwsAsync(suspendAndSave(a, g.domid), { instanceOf: SaveError });
  t.is(e?.code, 'page-table');
  t.regex(e?.message ?? '', /L1 entry \d+ maps mfn 0x[0-9a-f]+, which is not one of the guest's pseudo-physical frames/);
  runEntries(t, a, g.domid, 10);
  const s = vars(a, g.domid, { cancels: V_CANCELS, errors: V_ERRORS });
  t.deepEqual(s, { cancels: 1, errors: 0 });
});

test('with onFailure: leave, a failed save leaves the domain suspended', async (t) => {
  const a = machine({ seed: 51 });
  const g = guest(a, sloppyKernel, { pages: 256 });
  runEntries(t, a, g.domid, 5);
  await t.throwsAsync(suspendAndSave(a, g.domid, { onFailure: 'leave' }), { instanceOf: SaveError });
  const info = a.xc.getDomainInfo(g.domid);
  t.true(info?.shutdown);
});
