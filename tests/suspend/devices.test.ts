/*
 * The suspend path with real frontends behind it: the netbsd guest with a
 * disk (xbd0, blkback) and a vif (xennet0, netback). Cancelled suspends
 * keep both connected (their *_resume_cancelled handlers run); a restore
 * into another machine, whose backends are new, reconnects both (new
 * rings, grants and ports) and dom0 pings the guest there.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { MiB, image, host, drive, node, consoleText, count, suspended, cancelSuspend, saveToBytes, restoreInto, pingFromDom0 } from './fixture.js';

const IP = '10.0.0.31';
const VBD = 'device/vbd/51712/state';
const VIF = 'device/vif/0/state';
const CONNECTED = '4';

function devConfig(disk: string): DomainConfig {
  return {
    name: 'g-devices', kernel: image.name, memory: 32, vcpus: 1, extra: 'workload=susp',
    disks: [{ target: disk, vdev: 'xvda', readOnly: false, format: 'raw' }],
    vifs: [{ mac: '00:16:3e:00:00:31', ip: IP, bridge: 'xenbr0', forwards: [] }],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
  };
}

function connected(h: MachineHost, domid: number): boolean {
  const dom = domainPath(domid);
  return node(h, `${dom}/${VBD}`) === CONNECTED && node(h, `${dom}/${VIF}`) === CONNECTED;
}

test('a disk and a vif: connected through cancelled suspends, reconnected after a restore into another machine, the guest answers pings', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-suspend-dev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(MiB));
  const cfg = devConfig(disk);

  const a = await host(t, { memoryBytes: 128 * MiB });
  const d = (await a.create(cfg)).domid;
  const textA = (): string => consoleText(a, d);
  await drive(t, a, () => connected(a, d) && count(textA(), 'susp: tick') >= 2, 'xbd0 and xennet0 connected');
  for (let i = 1; i <= 2; i++) {
    await a.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
    await drive(t, a, () => suspended(a, d), `suspend ${i}`);
    await cancelSuspend(a, d);
    await drive(t, a, () => count(textA(), 'susp: resumed') === i, `resume ${i}`);
    t.regex(textA(), new RegExp(`^susp: resumed kind=1 gen=0 cancels=${i} ports=\\d+ masked=0 `, 'm'), 'every port with a handler unmasked again');
    t.true(connected(a, d), 'no new handshake after a cancel');
  }
  const p1 = await pingFromDom0(t, a, IP);
  t.true(typeof p1 !== 'string' && p1.ok, `ping after the cancels: ${JSON.stringify(p1)}`);

  await a.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d), 'the suspend for the save');
  const bytes = await saveToBytes(a, d);
  await a.backends.detachDevices(d);

  const b = await host(t, { memoryBytes: 128 * MiB, scrambleSeed: 99, tscKhz: 2_900_000 });
  const d2 = await restoreInto(b, bytes, 'g-devices');
  await drive(t, b, () => count(consoleText(b, d2), 'susp: resumed kind=2') === 1 && connected(b, d2), 'the restored guest reconnected both devices');
  t.regex(consoleText(b, d2), /^susp: resumed kind=2 gen=1 cancels=2 ports=\d+ masked=0 /m);
  const p2 = await pingFromDom0(t, b, IP);
  t.true(typeof p2 !== 'string' && p2.ok, `ping in the new machine: ${JSON.stringify(p2)}`);
  t.false(consoleText(b, d2).includes('BACKWARDS'));
  for (const h of [a, b]) t.deepEqual(h.m.log.bugs, []);
});
