import test from 'ava';
import { benchNetback } from '../../hypervisor/dom0/netback/bench.js';

test('the bench moves every frame both ways and reports rates', (t) => {
  const r = benchNetback({ frameSizes: [64, 9014], packets: 300 });
  t.deepEqual(r.cases.map((c) => [c.dir, c.frameBytes, c.packets]), [['tx', 64, 300], ['rx', 64, 300], ['tx', 9014, 300], ['rx', 9014, 300]]);
  for (const c of r.cases) {
    t.true(c.packetsPerSec > 0 && Number.isFinite(c.packetsPerSec), `${c.dir} ${c.frameBytes}: packets/s`);
    t.true(c.mbPerSec > 0 && Number.isFinite(c.mbPerSec), `${c.dir} ${c.frameBytes}: MB/s`);
  }
});

test('the bench refuses sizes it cannot send', (t) => {
  t.throws(() => benchNetback({ frameSizes: [10] }), { message: /60\.\.65535/ });
  t.throws(() => benchNetback({ packets: 0 }), { message: /at least 1/ });
});
