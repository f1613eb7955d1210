/*
 * Live save: the guest keeps rewriting its pattern pages while the first
 * full pass and the pre-copy rounds go out; log-dirty mode tells which
 * pages to send again; the last round after the suspend completes the
 * image. Restored elsewhere, the guest finds every page as it left it.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkImage } from '../../hypervisor/tools/stream/index.js';
import { SaveError, liveSaveDomain, restoreDomain, waitForSuspend, type LiveRound } from '../../hypervisor/tools/save/index.js';
import { V_CANCELS, V_ENTRIES, V_ERRORS, V_RESUMES, V_SWEEP, memtestKernel } from './kernels/memtest.js';
import { Collector, askSuspend, guest, machine, readVar, runEntries, startRestored, vars, verifyStream } from './fixture.js';

test('a running guest saved live restores with every page as it last wrote it', async (t) => {
  const a = machine({ seed: 90 });
  const g = guest(a, memtestKernel, { pages: 2048, window: 4 });
  runEntries(t, a, g.domid, 50);
  const c = new Collector();
  const rounds: LiveRound[] = [];
  const r = await liveSaveDomain(a, g.domid, c.sink, {
    betweenRounds: () => runEntries(t, a, g.domid, 30), // ~120 pattern pages dirtied per round
    suspend: async () => {
      askSuspend(a, g.domid);
      await waitForSuspend(a, g.domid, 1e9);
    },
    dirtyThreshold: 100,
    maxRounds: 3,
    onRound: (x) => rounds.push(x),
  });
  t.is(r.outcome, 'destroyed');
  // Every pfn but the L1 that maps shared_info while the guest runs (not
  // savable until the guest unmaps it to suspend: resent in the last round).
  t.is(rounds[0]?.pages, 2047, 'the first pass sends every pfn it can');
  t.true(rounds.length >= 3, `rounds: ${JSON.stringify(rounds)}`);
  t.is(rounds.at(-1)?.phase, 'final');
  for (const x of rounds.slice(1)) t.true(x.pages < 300, `round ${x.round} resent ${x.pages} pages`);
  t.log(rounds.map((x) => `${x.phase} ${x.round}: ${x.pages}`).join(', '));
  const image = c.bytes();
  const check = await checkImage(image);
  t.true(check.ok, check.errors.map((e) => e.message).join('\n'));
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-live-'));
  try {
    writeFileSync(path.join(dir, 'live.img'), image);
    const v = verifyStream(path.join(dir, 'live.img'));
    t.is(v.status, 0, v.out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const b = machine({ seed: 91, tscKhz: 2_700_000 });
  const d = await restoreDomain(b, image);
  startRestored(b, d.domid);
  runEntries(t, b, d.domid, 800); // > one full sweep: every page checked
  const s = vars(b, d.domid, { errors: V_ERRORS, resumes: V_RESUMES, sweep: V_SWEEP });
  t.is(s.errors, 0);
  t.is(s.resumes, 1);
});

test('a live save whose last step fails leaves the guest running in place', async (t) => {
  const a = machine({ seed: 92 });
  const g = guest(a, memtestKernel, { pages: 512, window: 4 });
  runEntries(t, a, g.domid, 10);
  const e = await t.throwsAsync(liveSaveDomain(a, g.domid, new Collector().sink, {
    betweenRounds: () => runEntries(t, a, g.domid, 5),
    suspend: async () => {
      askSuspend(a, g.domid);
      await waitForSuspend(a, g.domid, 1e9);
      throw new Error('the receiving side went away');
    },
  }));
  t.regex(e?.message ?? '', /went away/);
  t.is(a.domain(g.domid)?.mem.logDirty, null, 'log-dirty mode is off again');
  const before = readVar(a, g.domid, V_ENTRIES);
  runEntries(t, a, g.domid, 10);
  t.true(readVar(a, g.domid, V_ENTRIES) > before);
  t.deepEqual(vars(a, g.domid, { cancels: V_CANCELS, errors: V_ERRORS }), { cancels: 1, errors: 0 });
});

test('a guest that never suspends for the last round: the live save fails and the guest runs on', async (t) => {
  const a = machine({ seed: 93 });
  const g = guest(a, memtestKernel, { pages: 512, window: 4 });
  const e = await t.throwsAsync(liveSaveDomain(a, g.domid, new Collector().sink, {
    suspend: () => waitForSuspend(a, g.domid, 10_000_000).then(() => undefined),
  }));
  t.is((e as { code?: string }).code, 'timeout');
  t.false(a.xc.getDomainInfo(g.domid)?.shutdown);
  t.true(e instanceof Error && !(e instanceof SaveError));
});
