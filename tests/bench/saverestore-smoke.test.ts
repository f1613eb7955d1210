/*
 * The save/restore and suspend benchmarks run with tiny sizes and return
 * numbers of the right shape, and their trace breakdowns list every step
 * in protocol order and add up to no more than what was measured (the
 * suspend's, in simulated ns, to exactly that). Nothing here looks at how
 * fast anything is.
 */
import test from 'ava';
import { benchSaveThroughput, benchRestoreLatency, RESTORE_LATENCY_STEP_NAMES } from '../../bench/saverestore.js';
import { benchSuspend, median, SUSPEND_PATHS, SUSPEND_STEP_NAMES } from '../../bench/suspend.js';
import { RESTORE_STEPS, SAVE_STEPS, stepNames, type StepMs } from '../../hypervisor/tools/save/bench.js';
import { readFileSync } from 'node:fs';
import { assertValidImage } from '../helpers/verify-image.js';

const finite = (x: number): boolean => Number.isFinite(x) && x >= 0;
const sum = (steps: readonly StepMs[]): number => steps.reduce((a, s) => a + s.ms, 0);
/** Float rounding of a sum of differences, not time. */
const ROUNDING = 1e-6;

test('median', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
  t.true(Number.isNaN(median([])));
});

test('save/restore throughput: one row per size, ratios against raw file I/O', async (t) => {
  const checked: number[] = [];
  const rows = await benchSaveThroughput([1, 2], async (file, mib) => {
    checked.push(mib);
    await assertValidImage(readFileSync(file), `the ${mib} MiB throughput bench image`);
  });
  t.deepEqual(rows.map((r) => r.guestMiB), [1, 2]);
  t.deepEqual(checked, [1, 2], 'every image the bench saved went through both checkers');
  for (const r of rows) {
    t.true(r.bytes > r.guestMiB * 2 ** 20, 'the image holds every page');
    for (const k of ['saveMs', 'restoreMs', 'rawWriteMs', 'rawReadMs', 'saveMiBps', 'restoreMiBps', 'rawWriteMiBps', 'rawReadMiBps', 'saveRatio', 'restoreRatio', 'roundMs'] as const) {
      t.true(finite(r[k]), `${k} = ${r[k]}`);
    }
    t.deepEqual(r.steps?.save.map((s) => s.step), stepNames(SAVE_STEPS), 'every save step in protocol order');
    t.deepEqual(r.steps?.restore.map((s) => s.step), stepNames(RESTORE_STEPS), 'every restore step in protocol order');
    for (const s of [...r.steps?.save ?? [], ...r.steps?.restore ?? []]) t.true(finite(s.ms), `${s.step}: ${s.ms} ms`);
    t.true(sum(r.steps?.save ?? []) <= r.saveMs + ROUNDING);
    t.true(sum(r.steps?.restore ?? []) <= r.restoreMs + ROUNDING);
  }
  const [off] = await benchSaveThroughput([1], undefined, { trace: false });
  t.is(off?.steps, undefined, 'no breakdown with the trace off');
});

test('suspend handshake: each path, medians in simulated ns and wall ms', async (t) => {
  const rs = await benchSuspend({ runs: 2 });
  t.deepEqual(rs.map((r) => r.path), [...SUSPEND_PATHS]);
  for (const r of rs) {
    t.is(r.runs, 2);
    t.is(r.simNs.length, 2);
    t.is(r.wallMs.length, 2);
    t.true(r.simNs.every((x) => finite(x)) && r.wallMs.every((x) => finite(x)));
    t.true(finite(r.medianSimNs) && finite(r.medianWallMs));
    t.is(r.stepsNs?.length, 2, `${r.path}: a breakdown per run`);
    r.stepsNs?.forEach((steps, i) => {
      t.deepEqual(steps.map((s) => s.step), [...SUSPEND_STEP_NAMES], `${r.path} run ${i}: every step in protocol order`);
      for (const s of steps) t.true(Number.isInteger(s.ns) && s.ns >= 0 && finite(s.ms), `${r.path} ${s.step}: ${s.ns} ns, ${s.ms} ms`);
      // Both ends are the same clock reads as simNs: the ns steps add up to it exactly.
      t.is(steps.reduce((a, s) => a + s.ns, 0), r.simNs[i]!, `${r.path} run ${i}: steps add up to simNs`);
      t.true(steps.reduce((a, s) => a + s.ms, 0) <= r.wallMs[i]! + ROUNDING, `${r.path} run ${i}: host ms steps within wallMs`);
    });
    t.deepEqual(r.medianStepsNs?.map((s) => s.step), [...SUSPEND_STEP_NAMES]);
    t.true(typeof r.firstHypercall === 'string' && r.firstHypercall !== '', `${r.path}: the guest's first traced hypercall is named`);
  }
});

test('restore latency: the workloads count on after the restore', async (t) => {
  let checked = 0;
  const r = await benchRestoreLatency({
    guestMiB: 16, memMiB: 1,
    onImage: async (image) => {
      checked++;
      await assertValidImage(image, 'the restore-latency bench image');
    },
  });
  t.is(checked, 1, 'the saved image went through both checkers');
  t.is(r.guestMiB, 16);
  t.true(r.imageBytes > 16 * 2 ** 20);
  t.true(r.after.rewrites > r.before.rewrites && r.after.ticks > r.before.ticks);
  for (const k of ['saveMs', 'restoreDomainMs', 'toolstackMs', 'untilRunningMs', 'guestRunNs'] as const) t.true(finite(r[k]), `${k} = ${r[k]}`);
  t.true(r.untilRunningMs >= r.restoreDomainMs);
  const b = r.breakdown;
  if (b === undefined) {
    t.fail('no breakdown with the trace on (the default)');
    return;
  }
  t.deepEqual(b.restoreDomain.map((s) => s.step), RESTORE_LATENCY_STEP_NAMES.restoreDomain, 'restoreDomain: every step in protocol order');
  t.deepEqual(b.toolstack.map((s) => s.step), RESTORE_LATENCY_STEP_NAMES.toolstack, 'toolstack: every step in protocol order');
  t.deepEqual(b.guestResume.map((s) => s.step), RESTORE_LATENCY_STEP_NAMES.guestResume, 'guest resume: every step in protocol order');
  const all = [...b.restoreDomain, ...b.toolstack, ...b.guestResume];
  for (const s of all) t.true(finite(s.ms), `${s.step}: ${s.ms} ms`);
  t.true(sum(b.restoreDomain) <= r.restoreDomainMs + ROUNDING, 'restoreDomain steps within restoreDomainMs');
  t.true(sum(all) <= r.untilRunningMs + ROUNDING, 'all steps within untilRunningMs');
});
