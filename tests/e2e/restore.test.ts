/*
 * The blk and net workloads across a save and a restore into another
 * machine (another MachineHost: other frames, its own xenstored, blkback
 * and bridge), with the same disk image file: the guest suspends while its
 * disk is busy, is saved in Xen's format as `xl save` writes it, restored
 * as `xl restore` does (its devices added again from the config the image
 * carries), and carries on. Blocks written before the save verify after
 * the restore, no error anywhere, and the heartbeats and the echo service
 * answer on the new machine.
 */
import test from 'ava';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { suspended, saveToBytes, restoreBytes } from '../helpers/save-restore.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import {
  MS, tempDir, diskImage, e2eHost, guestConfig, boot, counters, counter, waitCounter, drive, runFor, wlStatus, consoleText, scanDisk,
} from './fixture.js';

const BLK = ['writes', 'verified', 'errors', 'flushes', 'cycles'] as const;
const LAG = 256;

test('blk and net carry on after a save and a restore into another machine: blocks written before the save verify after it', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 4);
  const cfg = guestConfig({
    name: 'roundtrip', extra: `workload=blk,net,clock blk_lag=${LAG}`, memory: 32,
    disks: [`file:${img},xvda,w`], vifs: ['mac=00:16:3e:00:00:22,ip=10.0.0.22,bridge=xenbr0'],
  });
  const a = await e2eHost(t);
  const b0 = await boot(t, a, cfg);
  const d0 = b0.domid;
  await waitCounter(t, a, d0, 'blk', 'verified', 40);
  await waitCounter(t, a, d0, 'net', 'heartbeats', 2);
  await runFor(a, 37 * MS); // land the suspend request anywhere in a step
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d0), 'the suspend');
  const before = counters(a, d0, 'blk', BLK);
  t.is(before['errors'], 0);
  const beatsBefore = a.backends.net.heartbeats.count('10.0.0.22');
  const image = await saveToBytes(a, d0);
  t.is(a.m.domain(d0), undefined, 'the saved domain is gone from the first machine');
  const disk = scanDisk(img);
  t.deepEqual(disk.bad, [], 'the image file holds good blocks only');
  t.true(disk.maxSeq >= before['writes']!, `the disk holds write ${disk.maxSeq}, the guest counted ${before['writes']}`);

  // Another machine, the kernel linked afresh: nothing of the first one's JS objects is reused.
  const relinked = defineNetbsdImage();
  const b = await e2eHost(t, [relinked], { machine: { memoryBytes: 256 * 2 ** 20, clock: 'simulated', scrambleSeed: 29, tscKhz: 3_100_000 } });
  const d = await restoreBytes(b, image);
  await drive(t, b, () => consoleText(b, d).includes('resumed in a new domain (restore 1)'), 'the resume');
  // Counters are published again in the new xenstore, from the values the guest kept.
  await waitCounter(t, b, d, 'blk', 'verified', before['verified']! + 40);
  const after = counters(b, d, 'blk', BLK);
  t.log(`blk before the save ${JSON.stringify(before)}, after the restore ${JSON.stringify(after)}`);
  t.is(after['errors'], 0, consoleText(b, d));
  t.true(after['writes']! - before['writes']! < LAG - 40,
    `the ${after['verified']! - before['verified']!} blocks verified since the restore were written before the save ` +
    `(writes ${before['writes']} -> ${after['writes']}, read back ${LAG} blocks later)`);
  t.is(wlStatus(b, d, 'blk'), 'running');

  // And on: a whole cycle later, still no error; the network answers on the new machine.
  await waitCounter(t, b, d, 'blk', 'writes', after['writes']! + 2 * LAG);
  await waitCounter(t, b, d, 'net', 'heartbeats', counter(b, d, 'net', 'heartbeats') + 2);
  t.is(counter(b, d, 'blk', 'errors'), 0);
  t.true(b.backends.net.heartbeats.count('10.0.0.22') >= 2, 'heartbeats reach the new dom0');
  t.true(counter(b, d, 'net', 'heartbeats') >= beatsBefore + 2, 'the guest\'s heartbeat count carried on');
  let answer: Awaited<ReturnType<MachineHost['ping']>> | undefined;
  void b.backends.ping('10.0.0.22').then((r) => {
    answer = { ip: '10.0.0.22', result: r };
  });
  await drive(t, b, () => answer !== undefined, 'the answer to a ping on the new machine');
  t.like(answer, { result: { ok: true } });
  t.deepEqual(scanDisk(img).bad, []);
  t.is(counter(b, d, 'clock', 'backwards'), 0);
  for (const h of [a, b]) t.deepEqual(h.m.log.bugs, []);
});

test('a blk write in flight at the save (dom0 never saw it) is replayed by xbd after the restore; the workload goes on without an error', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 2);
  const cfg = guestConfig({ name: 'inflight', extra: 'workload=blk blk_lag=64', memory: 32, disks: [`file:${img},xvda,w`] });
  const a = await e2eHost(t);
  const b0 = await boot(t, a, cfg);
  const d0 = b0.domid;
  await waitCounter(t, a, d0, 'blk', 'verified', 8);
  // dom0's blkback stops serving: the guest's next write request stays on the ring, unseen.
  const bb = a.backends.blkback;
  bb.poll = () => 0;
  await runFor(a, 50 * MS);
  const stuck = counter(a, d0, 'blk', 'writes');
  await runFor(a, 50 * MS);
  t.is(counter(a, d0, 'blk', 'writes'), stuck, 'no write completes while blkback is deaf');
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d0), 'the suspend, with a request in flight');
  const onDisk = scanDisk(img, 8, 256);
  const image = await saveToBytes(a, d0);

  const b = await e2eHost(t, [defineNetbsdImage()], { machine: { memoryBytes: 256 * 2 ** 20, clock: 'simulated', scrambleSeed: 31 } });
  const d = await restoreBytes(b, image);
  await drive(t, b, () => /xbd0: replayed 1 request\(s\) in flight\n/.test(consoleText(b, d)), 'the replay');
  await waitCounter(t, b, d, 'blk', 'writes', stuck + 4);
  const replayed = scanDisk(img, 8, 256);
  t.true(replayed.maxSeq > onDisk.maxSeq, `the replayed write reached the disk (newest write ${onDisk.maxSeq} -> ${replayed.maxSeq})`);
  // Every block the guest wrote is read back 64 blocks later: the replayed ones too.
  await waitCounter(t, b, d, 'blk', 'verified', stuck + 4);
  t.is(counter(b, d, 'blk', 'errors'), 0, consoleText(b, d));
  t.deepEqual(replayed.bad, []);
  t.deepEqual(b.m.log.bugs, []);
});
