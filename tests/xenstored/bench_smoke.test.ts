import test from 'ava';
import { benchXenstored } from '../../hypervisor/tools/xenstored/bench.js';

test('the benchmark runs every operation over both transports', async (t) => {
  const results = await benchXenstored({ iterations: 20 });
  t.deepEqual(results.map((r) => `${r.transport}:${r.op}`), [
    'socket:read', 'socket:write', 'socket:directory', 'socket:watch',
    'ring:read', 'ring:write', 'ring:directory', 'ring:watch',
  ]);
  for (const r of results) t.true(r.opsPerSec > 0 && r.ops === 20, `${r.transport} ${r.op}`);
});
