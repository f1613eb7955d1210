import test from 'ava';
import { benchBuilder } from '../../hypervisor/tools/builder/bench.js';
import { probeKernel, R_ENTRIES, R_XS_READ } from './builder-kernel.js';
import { config, drive, host, MiB, report } from './builder-fixture.js';

test('50 guests of 16 MiB at once: all boot, talk to xenstored, own disjoint frames, and give them all back', async (t) => {
  const h = await host(t, { machine: { memoryBytes: 1024 * MiB, clock: 'simulated', scrambleSeed: 99 } });
  const free = h.m.frames.freeFrames;
  const built = await Promise.all(Array.from({ length: 50 }, (_, i) => h.create(config(`g${i}`))));
  t.is(new Set(built.map((b) => b.domid)).size, 50);
  const all = new Set<number>();
  for (const b of built) for (const mfn of b.p2m) all.add(mfn);
  t.is(all.size, 50 * 4096, 'no frame is shared between guests');
  await drive(t, h, () => built.every((b) => report(h, b, R_XS_READ) >= 3), 'every guest hearing from xenstored');
  for (const b of built) t.is(report(h, b, R_ENTRIES) >= 1, true);
  const features = await Promise.all(built.map((b) => h.xs.read(`/local/domain/${b.domid}/control/feature-poweroff`)));
  t.deepEqual(new Set(features), new Set(['1']));
  t.is(h.list().length, 51);
  for (const b of built) await h.destroy(b.domid);
  t.is(h.m.frames.freeFrames, free, 'all 50 guests\' frames are free again');
  t.deepEqual(h.m.log.bugs, []);
});

test('builder benchmark: boot time and creation rate come out as positive numbers', async (t) => {
  const r = await benchBuilder(probeKernel, { guests: 5, boots: 3, extra: 'nostore' });
  t.is(r.image, 'probe');
  t.is(r.guests, 5);
  t.true(r.bootMs > 0 && Number.isFinite(r.bootMs));
  t.true(r.createsPerSecond > 0 && Number.isFinite(r.createsPerSecond));
  t.log(`boot ${r.bootMs.toFixed(1)} ms, ${r.createsPerSecond.toFixed(0)} guests/s of ${r.memoryMiB} MiB`);
});
