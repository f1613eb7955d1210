import test from 'ava';
import { benchBlkback } from '../../hypervisor/dom0/blkback/bench.js';

test('the bench measures ring and raw I/O for 4 KiB and 44 KiB requests and returns numbers', (t) => {
  const r = benchBlkback({ imageBytes: 1024 * 1024 });
  t.is(r.queueDepth, 32);
  t.deepEqual(r.cases.map((c) => [c.op, c.requestBytes]), [['write', 4096], ['read', 4096], ['write', 45056], ['read', 45056]]);
  for (const c of r.cases) {
    t.is(c.requests, Math.floor(r.imageBytes / c.requestBytes));
    for (const rate of [c.ring, c.raw]) {
      t.true(Number.isFinite(rate.mbPerSec) && rate.mbPerSec > 0, `${c.op} ${c.requestBytes}: MB/s ${rate.mbPerSec}`);
      t.true(Number.isFinite(rate.iops) && rate.iops > 0, `${c.op} ${c.requestBytes}: IOPS ${rate.iops}`);
    }
    t.true(c.ratio > 0);
  }
});

test('the bench refuses request sizes a blkif request cannot carry', (t) => {
  t.throws(() => benchBlkback({ imageBytes: 65536, requestSizes: [12 * 4096] }), { message: /whole pages, 1..11/ });
  t.throws(() => benchBlkback({ imageBytes: 65536, requestSizes: [1000] }));
});
