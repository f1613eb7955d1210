/*
 * The save/restore benchmark runs and returns sane numbers. By default only
 * a 64 MiB guest (to keep `make test` quick); XENPORT_SAVE_BENCH=full runs
 * 64 MiB, 256 MiB and 1 GiB and logs the table.
 */
import test from 'ava';
import { benchSaveRestore } from '../../hypervisor/tools/save/bench.js';
import { waitForSuspend } from '../../hypervisor/tools/save/index.js';
import { ALL_MEMTEST_KERNELS, memtestKernel } from './kernels/memtest.js';
import { askSuspend, guest } from './fixture.js';
import { readFileSync } from 'node:fs';
import { assertValidImage } from '../helpers/verify-image.js';

const full = process.env['XENPORT_SAVE_BENCH'] === 'full';

test('save and restore throughput against raw file I/O of the same bytes', async (t) => {
  const checked: number[] = [];
  const rows = await benchSaveRestore({
    images: ALL_MEMTEST_KERNELS,
    async suspended(m, pages) {
      const g = guest(m, memtestKernel, { pages, patternPages: 64 });
      askSuspend(m, g.domid);
      await waitForSuspend(m, g.domid, 1e9);
      return g.domid;
    },
  }, {
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
  }
});
