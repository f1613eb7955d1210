/*
 * The save/restore and suspend benchmarks run with tiny sizes and return
 * numbers of the right shape. Nothing here looks at how fast anything is.
 */
import test from 'ava';
import { benchSaveThroughput, benchRestoreLatency } from '../../bench/saverestore.js';
import { benchSuspend, median, SUSPEND_PATHS } from '../../bench/suspend.js';
import { readFileSync } from 'node:fs';
import { assertValidImage } from '../helpers/verify-image.js';

const finite = (x: number): boolean => Number.isFinite(x) && x >= 0;

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
  }
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
});
