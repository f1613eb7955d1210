/*
 * The Xen clock in a booted guest: guest time never goes back across
 * hundreds of ticks, the tick count follows elapsed system time, the wall
 * clock is the machine's boot instant plus system time, and a different
 * TSC frequency changes none of it.
 */
import test from 'ava';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { SIMULATED_BOOT_WALL_NS } from '../../hypervisor/xen/time.js';
import { bootRig } from './fixture.js';
import { bootTestWorkloads, CLOCKTEST_SAMPLES } from './workloads.js';

const image = defineNetbsdImage([bootTestWorkloads], 'netbsd-test');
const LINE = /^clocktest: (\d+) samples, (\d+) backwards, (\d+) ticks in (\d+) us, max step (\d+) us, wall (\d+)\.(\d{9})$/m;

for (const tscKhz of [2_000_000, 2_999_999, 733_333]) {
  test(`time is monotonic over ${CLOCKTEST_SAMPLES} ticks and the wall clock is sane (TSC ${tscKhz} kHz)`, (t) => {
    const rig = bootRig({ tscKhz });
    const pv = rig.create({ image, cmdline: 'workload=clocktest' });
    const out = rig.runUntilOutput(pv.domid, LINE, 10_000_000_000);
    const m = LINE.exec(out)!;
    const [samples, backwards, ticks, elapsedUs, maxStepUs, wallSec] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i])) as [number, number, number, number, number, number];
    t.is(samples, CLOCKTEST_SAMPLES);
    t.is(backwards, 0, 'guest time never went backwards');
    // One kpause(1) per sample: each sample is one tick after the previous.
    t.true(ticks >= CLOCKTEST_SAMPLES - 1 && ticks <= CLOCKTEST_SAMPLES + 1, `${ticks} ticks for ${CLOCKTEST_SAMPLES} samples`);
    const expectUs = ticks * 10_000;
    t.true(Math.abs(elapsedUs - expectUs) <= 10_000, `${ticks} ticks took ${elapsedUs} us of system time`);
    t.true(maxStepUs <= 20_000, `no sample was more than two ticks after the previous (${maxStepUs} us)`);
    // Wall clock: the simulated machine booted at 2024-01-01T00:00:00Z; we are a few seconds in.
    const now = rig.m.clock.now();
    const expectWall = Number(SIMULATED_BOOT_WALL_NS / 1_000_000_000n) + Math.floor(now / 1e9);
    t.true(Math.abs(wallSec - expectWall) <= 1, `wall ${wallSec} vs machine ${expectWall}`);
    t.deepEqual(rig.m.log.bugs, []);
  });
}

test('ticks follow the machine clock: after 2 s of simulated time the kernel counted ~200 ticks', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image });
  rig.runUntilOutput(pv.domid, 'boot complete');
  const v = rig.m.domain(pv.domid)!.vcpus[0]!;
  const entries0 = v.entries;
  rig.runFor(2_000_000_000);
  // One timer entry per tick (plus a few for console traffic), never a flood.
  const entries = v.entries - entries0;
  t.true(entries >= 195 && entries <= 215, `${entries} entries in 2 s at HZ=100`);
});
