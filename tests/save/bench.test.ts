/*
 * The save/restore benchmark runs and returns sane numbers. By default only
 * a 64 MiB guest (to keep `make test` quick); XENPORT_SAVE_BENCH=full runs
 * 64 MiB, 256 MiB and 1 GiB and logs the table. The step breakdown is
 * checked for its shape (every step, in protocol order, adding up to no
 * more than the measured total), never for how fast anything is.
 */
import test from 'ava';
import {
  RESTORE_STEPS, SAVE_STEPS, benchSaveRestore, stepNames, stepsMs, stepsOf, toolstackStep,
  type StepMs, type StepRule,
} from '../../hypervisor/tools/save/bench.js';
import type { TraceRecord, TraceSource } from '../../hypervisor/xen/trace.js';
import { memtestBenchGuest } from './fixture.js';
import { readFileSync } from 'node:fs';
import { assertValidImage } from '../helpers/verify-image.js';

const full = process.env['XENPORT_SAVE_BENCH'] === 'full';

const memtest = memtestBenchGuest;

const sum = (steps: readonly StepMs[]): number => steps.reduce((a, s) => a + s.ms, 0);
/** Float rounding of a sum of differences, not time. */
const ROUNDING = 1e-6;

test('save and restore throughput against raw file I/O of the same bytes', async (t) => {
  const checked: number[] = [];
  const rows = await benchSaveRestore(memtest, {
    sizesMiB: full ? [64, 256, 1024] : [64],
    onImage: async (file, mib) => {
      checked.push(mib);
      await assertValidImage(readFileSync(file), `the ${mib} MiB bench image`);
    },
  });
  t.deepEqual(checked, rows.map((r) => r.guestMiB), 'every image the bench saved went through both checkers');
  for (const r of rows) {
    t.true(r.bytes > r.guestMiB * 2 ** 20, 'the image holds every page');
    t.true(r.saveMiBps > 0 && r.restoreMiBps > 0 && r.rawWriteMiBps > 0 && r.rawReadMiBps > 0);
    t.log(`${String(r.guestMiB).padStart(5)} MiB: save ${r.saveMiBps.toFixed(0)} MiB/s (raw write ${r.rawWriteMiBps.toFixed(0)}), restore ${r.restoreMiBps.toFixed(0)} MiB/s (raw read ${r.rawReadMiBps.toFixed(0)})`);
    const steps = r.steps;
    if (steps === undefined) {
      t.fail('no step breakdown with the trace on (the default)');
      continue;
    }
    t.deepEqual(steps.save.map((s) => s.step), stepNames(SAVE_STEPS), 'every save step, once, in protocol order');
    t.deepEqual(steps.restore.map((s) => s.step), stepNames(RESTORE_STEPS), 'every restore step, once, in protocol order');
    for (const s of [...steps.save, ...steps.restore]) t.true(Number.isFinite(s.ms) && s.ms >= 0, `${s.step}: ${s.ms} ms`);
    t.true(sum(steps.save) <= r.saveMs + ROUNDING, `save steps ${sum(steps.save)} ms within the save's ${r.saveMs} ms`);
    t.true(sum(steps.restore) <= r.restoreMs + ROUNDING, `restore steps ${sum(steps.restore)} ms within the restore's ${r.restoreMs} ms`);
    t.log(`        save: ${steps.save.map((s) => `${s.step} ${s.ms.toFixed(1)}`).join(', ')}`);
    t.log(`     restore: ${steps.restore.map((s) => `${s.step} ${s.ms.toFixed(1)}`).join(', ')}`);
  }
});

test('with the trace off the rows have no breakdown', async (t) => {
  const [r] = await benchSaveRestore(memtest, { sizesMiB: [1], trace: false });
  t.truthy(r);
  t.is(r?.steps, undefined);
});

let seq = 0;
function rec(hostMs: number, event: string, src: TraceSource = 'toolstack'): TraceRecord {
  return { seq: seq++, ns: 10 * seq, hostMs, domid: 1, src, event };
}

test('stepsOf / stepsMs: runs folded, unmatched records go to the next step, once, out-of-order steps show', (t) => {
  const rules: StepRule[] = [
    toolstackStep('a'),
    toolstackStep('bc', 'b', 'c'),
    { step: 'first xen', match: (r) => r.src === 'xen', once: true },
    toolstackStep('d'),
  ];
  const rs = [
    rec(100.1, 'start'), rec(100.4, 'a'), rec(100.7, 'noise'), rec(101.3, 'b'), rec(101.9, 'c'),
    rec(102.2, 'x1', 'xen'), rec(102.8, 'x2', 'xen'), rec(103.1, 'd'), rec(104, 'trailing'),
  ];
  const ends = stepsOf(rs, rules);
  t.deepEqual(ends.map((e) => [e.step, e.end.event]), [['a', 'a'], ['bc', 'c'], ['first xen', 'x1'], ['d', 'd']]);
  const ms = stepsMs(rs, rules);
  // x2 matches nothing once "first xen" is used: it is part of "d".
  const expect = [0.3, 1.5, 0.3, 0.9];
  ms.forEach((s, i) => t.true(Math.abs(s.ms - expect[i]!) < 1e-9, `${s.step}: ${s.ms}`));
  // Deltas of the same records: the sum is the span from the start to the last step's end.
  t.true(Math.abs(sum(ms) - (103.1 - 100.1)) < 1e-9);

  // A step seen again after another one is listed twice: a breakdown in the wrong order cannot pass for the right one.
  const twice = stepsMs([rec(0, 'start'), rec(1, 'a'), rec(2, 'b'), rec(3, 'a')], rules);
  t.deepEqual(twice.map((s) => s.step), ['a', 'bc', 'a']);
  t.deepEqual(stepsMs([], rules), []);
  t.deepEqual(stepsMs([rec(5, 'start')], rules), []);
  t.deepEqual(stepNames(rules), ['a', 'bc', 'first xen', 'd']);
});
