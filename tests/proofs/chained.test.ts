/*
 * Issue 7: one netbsd guest (workload=blk,mem,clock, a disk) saved and
 * restored 20 times in a row, each restore into a new machine (a new
 * MachineHost: other frames, its own xenstored and backends), the same disk
 * file. Every image passes checkImage and Xen's verify-stream-v2 -f xl. No workload error, xbd0 Connected after each
 * restore, the counters keep growing, the disk holds good blocks only.
 */
import test from 'ava';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import {
  tempDir, diskImage, e2eHost, guestConfig, boot, counter, waitCounter, drive, runFor, consoleText, scanDisk, MS,
} from '../e2e/fixture.js';
import { suspended, saveImage, nextHost, restoreImage, connected, imageProblems, xenVerify } from './fixture.js';

const CYCLES = 20;

test(`${CYCLES} chained save/restore cycles of one guest, each into a new machine`, async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 2);
  const cfg = guestConfig({ name: 'chain', extra: 'workload=blk,mem,clock blk_lag=64', memory: 32, disks: [`file:${img},xvda,w`] });
  let h: MachineHost = await e2eHost(t);
  let d = (await boot(t, h, cfg)).domid;
  await waitCounter(t, h, d, 'blk', 'verified', 8);
  await waitCounter(t, h, d, 'mem', 'passes', 1);
  const mem0 = counter(h, d, 'mem', 'passes');
  const ticks0 = counter(h, d, 'clock', 'ticks');
  for (let i = 1; i <= CYCLES; i++) {
    const verified = counter(h, d, 'blk', 'verified');
    await runFor(h, (7 + 3 * i) * MS); // the request lands at a different point each time
    await h.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
    await drive(t, h, () => suspended(h, d), `suspend ${i}`);
    t.is(counter(h, d, 'blk', 'errors'), 0, `blk errors before save ${i}`);
    const bytes = await saveImage(h, d, cfg);
    t.is(await imageProblems(bytes), '', `image ${i} passes checkImage`);
    const r = xenVerify(dir, bytes, `chain-${i}`);
    t.is(r.status, 0, `verify-stream-v2 -f xl, image ${i}:\n${r.out}`);
    t.deepEqual(scanDisk(img, 8, 256).bad, [], `disk after save ${i}`);
    const next = await nextHost(t, 100 + i);
    await h.close();
    h = next;
    d = await restoreImage(h, bytes, cfg);
    await drive(t, h, () => consoleText(h, d).includes(`resumed in a new domain (restore ${i})`), `resume ${i}`);
    await drive(t, h, () => connected(h, d, false), `xbd0 Connected after restore ${i}`);
    await waitCounter(t, h, d, 'blk', 'verified', verified + 8);
    t.is(counter(h, d, 'blk', 'errors'), 0, `blk errors after restore ${i}`);
    t.is(counter(h, d, 'mem', 'errors'), 0, `mem errors after restore ${i}`);
  }
  await waitCounter(t, h, d, 'mem', 'passes', mem0 + 1);
  t.true(counter(h, d, 'clock', 'ticks') > ticks0, 'the clock workload kept ticking');
  t.is(counter(h, d, 'mem', 'errors'), 0);
  t.is(counter(h, d, 'blk', 'errors'), 0);
  t.is(counter(h, d, 'clock', 'backwards'), 0);
  t.deepEqual(scanDisk(img, 8, 256).bad, []);
  t.deepEqual(h.m.log.bugs, []);
  t.log(`after ${CYCLES} cycles: blk ${counter(h, d, 'blk', 'verified')} verified, ${counter(h, d, 'blk', 'writes')} writes`);
});
