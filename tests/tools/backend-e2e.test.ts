import test from 'ava';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../../hypervisor/tools/machine/control.js';
import { machinePaths } from '../../hypervisor/tools/machine/launch.js';
import type { NetworkInfo } from '../../hypervisor/tools/backend/dom0.js';
import { startMachine, writeConfig, xl } from './xl-fixture.js';

async function call(dir: string, verb: string, args: Record<string, unknown> = {}): Promise<unknown> {
  const c = await ControlClient.connect(dir, machinePaths(dir).control);
  try {
    return await c.call(verb, args).result;
  } finally {
    c.close();
  }
}

function bindUdp(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address: '127.0.0.1', exclusive: true }, () => resolve(s));
  });
}

test('through the daemon: xl create with a disk and a vif attaches both backends; a missing disk is one line; destroy frees the forward', async (t) => {
  const { dir } = await startMachine(t, ['--memory', '128M']);
  writeFileSync(join(dir, 'disk.img'), new Uint8Array(64 * 512));
  const probe = await bindUdp(0);
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const cfg = writeConfig(dir, 'g', [
    'name = "withdevs"', 'kernel = "probe"', 'memory = 16', 'extra = "nostore"',
    'disk = [ \'file:disk.img,xvda,w\' ]',
    `vif = [ 'mac=00:16:3e:00:00:21,ip=10.0.0.21,bridge=xenbr0,forward=udp:${port}:7' ]`, '',
  ].join('\n'));
  const c = await xl(['--dir', dir, 'create', cfg]);
  t.is(c.code, 0, c.err);
  const domid = Number(c.out.trim());

  const info = (await call(dir, 'network-info')) as NetworkInfo;
  t.deepEqual(info.devices.map((d) => [d.kind, d.frontendDomid, d.devid, d.state]), [['vbd', domid, 51712, 'InitWait'], ['vif', domid, 0, 'InitWait']]);
  t.like(info.vbds[0], { path: join(dir, 'disk.img'), sectors: 64, readOnly: false });
  t.deepEqual(info.forwards.map((f) => [f.vif, f.hostPort, f.guestPort, f.guestIp]), [[`vif${domid}.0`, port, 7, '10.0.0.21']]);
  t.is(info.dom0.ip, '10.0.0.1');

  // The probe kernel has no netfront: the ping times out on the daemon's real clock.
  await t.throwsAsync(call(dir, 'network-ping', { dom: 'withdevs', timeout_ms: 200 }), {
    message: /^network-ping withdevs \(10\.0\.0\.21\): no echo reply from 10\.0\.0\.21 within 200 ms$/,
  });

  const bad = writeConfig(dir, 'bad', 'name = "nodisk"\nkernel = "probe"\nmemory = 16\ndisk = [ \'file:missing.img,xvda,w\' ]\n');
  const r = await xl(['--dir', dir, 'create', bad]);
  t.is(r.code, 1);
  t.is(r.err, `xl: disk xvda: disk image ${join(dir, 'missing.img')} does not exist\n`);
  t.notRegex((await xl(['--dir', dir, 'list'])).out, /nodisk/);
  t.regex((await xl(['--dir', dir, 'dmesg'])).out, /backend: vbd d\d+\/51712: disk image .*missing\.img does not exist/);

  t.is((await xl(['--dir', dir, 'destroy', 'withdevs'])).code, 0);
  const after = (await call(dir, 'network-info')) as NetworkInfo;
  t.deepEqual([after.devices, after.vifs, after.vbds, after.forwards], [[], [], [], []]);
  const again = await bindUdp(port);
  again.close();
});
