/*
 * The whole round: the netbsd guest suspends on one machine, is saved in
 * Xen's format (hypervisor/tools/save), restored into a second machine
 * with other frames, another TSC frequency, another wall clock and its
 * own xenstored, and resumes there with rax = 0: new shared_info, P2M
 * frame lists rebuilt, guest time carrying on, the wall clock read afresh,
 * a new grant table, VIRQs bound again, xenstore on the new ring with its
 * watch sent again, a new suspend event channel. Then it is saved again
 * (through that channel) and restored into a third machine.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { shared_info } from '../../hypervisor/public/xen.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import {
  host, boot, drive, node, consoleText, count, suspended, ticks, resumeTimes, nonDecreasing, ping, grantHoldsPattern,
  saveToBytes, restoreInto,
} from './fixture.js';
import { suspendImage } from './workloads.js';

const FLL = shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list');
/** 2025-06-01T12:00:00Z. */
const WALL_B = 1_748_779_200n * 1_000_000_000n;
/** 2026-02-03T04:05:06Z. */
const WALL_C = 1_770_091_506n * 1_000_000_000n;

function lastGref(text: string): number {
  const m = [...text.matchAll(/^susp: gref (\d+) mfn \d+$/gm)];
  return Number(m[m.length - 1]?.[1] ?? -1);
}

function frameListList(h: MachineHost, domid: number): bigint {
  return h.m.domain(domid)?.sharedInfo.getBigUint64(FLL, true) ?? 0n;
}

/** Wait for the restored guest's resume line and the workload's report, and check what a restore must give. */
async function checkRestored(t: import('ava').ExecutionContext, h: MachineHost, domid: number, generation: number, lastTimeBefore: bigint, wallDate: string): Promise<void> {
  const text = (): string => consoleText(h, domid);
  await drive(t, h, () => text().includes(`resumed in a new domain (restore ${generation})`), `resume ${generation}`);
  const line = /^xen_suspend: resumed in a new domain.*$/m.exec(text())?.[0] ?? '';
  t.true(line.includes(`wall clock ${wallDate}`), `the wall clock was read from the new machine: ${line}`);
  const resumedAt = resumeTimes(text())[0] ?? 0n;
  t.true(resumedAt >= lastTimeBefore, `guest time carried on: ${resumedAt} >= ${lastTimeBefore}`);
  await drive(t, h, () => /^susp: resumed kind=2 /m.test(text()), 'the workload saw the restore');
  t.regex(text(), new RegExp(`^susp: resumed kind=2 gen=${generation} cancels=0 ports=\\d+ masked=0 inuse=0$`, 'm'),
    'a new domain: every old grant void, every port with a handler unmasked');
  // The workload granted its page again in the new grant table.
  await drive(t, h, () => node(h, `${domainPath(domid)}/data/gref`) !== undefined, 'the new data/gref');
  const ref = lastGref(text());
  t.is(node(h, `${domainPath(domid)}/data/gref`), String(ref));
  t.is(grantHoldsPattern(h, domid, ref), 'ok');
  // xenstore on the new ring: the data/ping watch was sent to this xenstored again.
  await ping(t, h, domid, `after-restore-${generation}`);
  await drive(t, h, () => /^\d+$/.test(node(h, `${domainPath(domid)}/device/suspend/event-channel`) ?? ''), 'the new suspend event channel');
  t.not(frameListList(h, domid), 0n, 'P2M frame list published again');
  const n = count(text(), 'susp: tick');
  await drive(t, h, () => count(text(), 'susp: tick') >= n + 3, 'ticks in the new domain');
  const times = ticks(text());
  t.true(nonDecreasing([lastTimeBefore, resumedAt, ...times]), 'guest time never went back');
  t.false(text().includes('BACKWARDS'));
}

test('save, restore into another machine (rax = 0), save again through the suspend event channel, restore into a third', async (t) => {
  const a = await host(t, { scrambleSeed: 21, tscKhz: 2_000_000 });
  const built = await boot(t, a, 'susp');
  const domA = built.domid;
  const textA = (): string => consoleText(a, domA);
  // Let guest time run well past what a freshly started machine's clock says.
  await drive(t, a, () => count(textA(), 'susp: tick') >= 8, 'ticks on the first machine');
  t.not(frameListList(a, domA), 0n);
  await a.xs.write(`${domainPath(domA)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, domA), 'the first suspend');
  const lastA = ticks(textA()).at(-1) ?? 0n;
  const image1 = await saveToBytes(a, domA);
  t.is(a.m.domain(domA), undefined, 'the saved domain is gone from the first machine');

  // The second machine links the kernel afresh: nothing of the first one's JS objects is reused.
  const relinked = suspendImage();
  const b = await host(t, { scrambleSeed: 22, tscKhz: 3_100_000, bootWallNs: WALL_B }, relinked);
  t.true(b.m.clock.now() < Number(lastA), 'the second machine\'s Xen time is behind the guest\'s');
  const domB = await restoreInto(b, image1, 'restored-1', relinked);
  await checkRestored(t, b, domB, 1, lastA, '2025-06-01 12:00:');

  // Second save, asked through the suspend event channel the restored guest made anew.
  const port = Number(node(b, `${domainPath(domB)}/device/suspend/event-channel`));
  const local = b.m.xc.bindInterdomain(domB, port);
  t.true(local > 0, `dom0 bound the new suspend event channel ${port}: ${local}`);
  t.is(b.m.xc.notify(local), 0);
  await drive(t, b, () => suspended(b, domB), 'the second suspend');
  const lastB = ticks(consoleText(b, domB)).at(-1) ?? 0n;
  const image2 = await saveToBytes(b, domB);

  const c = await host(t, { scrambleSeed: 23, tscKhz: 1_500_000, bootWallNs: WALL_C });
  const domC = await restoreInto(c, image2, 'restored-2');
  await checkRestored(t, c, domC, 2, lastB, '2026-02-03 04:05:');
  for (const h of [a, b, c]) t.deepEqual(h.m.log.bugs, []);
});

test('restored in a fresh OS process from the image file alone, the guest resumes and answers through xenstore', async (t) => {
  const a = await host(t, { scrambleSeed: 31 });
  const built = await boot(t, a, 'susp');
  await a.xs.write(`${domainPath(built.domid)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, built.domid), 'the suspend');
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-suspend-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'guest.save');
  writeFileSync(file, await saveToBytes(a, built.domid));
  const child = path.join(path.dirname(new URL(import.meta.url).pathname), 'restore-child.js');
  const r = spawnSync(process.execPath, [child, file], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { resumed: boolean; pong: boolean; console: string; bugs: number };
  t.true(report.resumed, report.console);
  t.true(report.pong, report.console);
  t.regex(report.console, /^xen_suspend: resumed in a new domain \(restore 1\)/m);
  t.is(report.bugs, 0);
});
