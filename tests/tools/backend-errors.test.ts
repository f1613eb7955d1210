import test from 'ava';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { BuildError } from '../../hypervisor/tools/builder/errors.js';
import { XsError } from '../../hypervisor/tools/xenstored/client.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DeviceRef } from '../../hypervisor/tools/backend/nodes.js';
import { config, host } from './builder-fixture.js';
import { BlkFront, GuestSide, NetFront, disk, diskImage, drive, settle, untilBackend, vif } from './backend-fixture.js';

/** What a failed create must leave as it found: frames, domains, backends, nodes, bridge ports. */
async function snapshot(h: MachineHost): Promise<Record<string, unknown>> {
  const list = async (p: string): Promise<string[]> => h.xs.directory(p).catch((e: unknown) => {
    if (e instanceof XsError) return [];
    throw e;
  });
  return {
    freePages: h.memory().freePages,
    domains: h.m.domains.length,
    vbds: h.backends.blkback.list().length,
    vifs: h.backends.netback.list().length,
    devices: h.backends.driver.status().length,
    vbdNodes: await list('/local/domain/0/backend/vbd'),
    vifNodes: await list('/local/domain/0/backend/vif'),
    domainNodes: (await list('/local/domain')).filter((d) => d !== '0'), // dom0's own directory appears with the first backend
    ports: h.backends.net.bridge('xenbr0').portNames(),
    mapped: h.backends.host.mappedRings,
    bound: h.backends.host.boundPorts,
  };
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function holdUdpPort(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address: '127.0.0.1', exclusive: true }, () => resolve(s));
  });
}

test('a missing disk image fails xl create with one line naming the disk, and nothing is left behind', async (t) => {
  const h = await host(t);
  await h.create(config('warm', { extra: 'nostore' }), true).then((b) => h.destroy(b.domid));
  const before = await snapshot(h);
  const err = await t.throwsAsync(h.create(config('nodisk', { extra: 'nostore', disks: [disk('/nonexistent/xenport/guest.img')], vifs: [vif('00:16:3e:00:00:03')] })), { instanceOf: BuildError });
  t.is(err?.step, 'devices');
  t.is(err?.message, 'disk xvda: disk image /nonexistent/xenport/guest.img does not exist');
  t.deepEqual(await snapshot(h), before, 'frames, domains, backends, nodes and bridge ports as before');
  t.regex(h.m.xc.readConsole() as string, /backend: vbd d\d+\/51712: disk image \/nonexistent\/xenport\/guest\.img does not exist/);
  // The name is free again, and a good config builds.
  const img = diskImage(t);
  await t.notThrowsAsync(h.create(config('nodisk', { extra: 'nostore', disks: [disk(img)] }), true));
});

test('a phy: disk is refused by blkback with a clear line, and the domain is rolled back', async (t) => {
  const h = await host(t);
  const before = await snapshot(h);
  await t.throwsAsync(h.create(config('phy', { extra: 'nostore', disks: [disk('phy:/dev/sda')] })), {
    instanceOf: BuildError, message: 'disk xvda: disk target "phy:/dev/sda": only file: images are served, not phy:',
  });
  t.deepEqual(await snapshot(h), before);
});

test('a disk image another domain writes is refused; the other domain keeps its disk', async (t) => {
  const h = await host(t);
  const img = diskImage(t);
  const a = await h.create(config('a', { extra: 'nostore', disks: [disk(img)] }), true);
  const before = await snapshot(h);
  await t.throwsAsync(h.create(config('b', { extra: 'nostore', disks: [disk(img, 'xvdb')] })), { message: /^disk xvdb: disk image .* is already in use by vbd d\d+\/51712/ });
  t.deepEqual(await snapshot(h), before);
  t.is(await h.xs.read(`/local/domain/0/backend/vbd/${a.domid}/51712/state`), '2', 'still waiting for its frontend');
});

test('a forward whose host port is taken fails xl create (EADDRINUSE named) and rolls back', async (t) => {
  const h = await host(t);
  const port = await freeUdpPort();
  const held = await holdUdpPort(port);
  t.teardown(() => held.close());
  const before = await snapshot(h);
  await t.throwsAsync(h.create(config('fwd', { extra: 'nostore', vifs: [vif('00:16:3e:00:00:04', '10.0.0.4', { forwards: [{ hostPort: port, guestPort: 7 }] })] })), {
    instanceOf: BuildError, message: `vif 0 (00:16:3e:00:00:04): forward udp:${port}:7 (vif1.0): UDP port 127.0.0.1:${port} is already in use`,
  });
  t.deepEqual(await snapshot(h), before);
});

test('destroy lets every ring go, removes the backend nodes, takes the vif off the bridge and frees the forward port', async (t) => {
  const h = await host(t);
  const img = diskImage(t);
  const port = await freeUdpPort();
  const before = await snapshot(h);
  const b = await h.create(config('gone', {
    extra: 'nostore', disks: [disk(img)], vifs: [vif('00:16:3e:00:00:05', '10.0.0.5', { forwards: [{ hostPort: port, guestPort: 7 }] })],
  }), true);
  const g = new GuestSide(h, b);
  const fb = new BlkFront(g, 51712);
  const fn = new NetFront(g, 0);
  await settle(h, [g], fb.connect(), 'vbd ring');
  await settle(h, [g], fn.connect(), 'vif rings');
  await untilBackend(h, [g], { kind: 'vbd', frontendDomid: b.domid, devid: 51712 }, 'Connected');
  await untilBackend(h, [g], { kind: 'vif', frontendDomid: b.domid, devid: 0 }, 'Connected');
  t.is(h.backends.host.mappedRings, 3);
  t.deepEqual(h.backends.info().forwards.map((f) => f.hostPort), [port]);
  await t.throwsAsync(holdUdpPort(port), { message: /EADDRINUSE/ }, 'the forward holds the port');

  await h.destroy(b.domid);
  t.deepEqual(await snapshot(h), before, 'rings unmapped, ports closed, nodes removed, bridge port gone, frames back');
  await t.throwsAsync(h.xs.read(`/local/domain/0/backend/vbd/${b.domid}`), { message: /ENOENT/ });
  const again = await holdUdpPort(port);
  again.close();
  t.pass('the forward port is free again');
});

test('a frontend publishing garbage gets an error node and Closing; its other device and other domains carry on; a good retry connects', async (t) => {
  const h = await host(t);
  const img = diskImage(t);
  const other = diskImage(t);
  const b = await h.create(config('bad', { extra: 'nostore', disks: [disk(img)], vifs: [vif('00:16:3e:00:00:06')] }), true);
  const c = await h.create(config('good', { extra: 'nostore', disks: [disk(other)] }), true);
  const g = new GuestSide(h, b);
  const gc = new GuestSide(h, c);
  const vbd: DeviceRef = { kind: 'vbd', frontendDomid: b.domid, devid: 51712 };
  const vifRef: DeviceRef = { kind: 'vif', frontendDomid: b.domid, devid: 0 };
  const pumped = [g, gc];
  const fn = new NetFront(g, 0);
  const fc = new BlkFront(gc, 51712);
  await settle(h, pumped, fn.connect(), 'vif rings');
  await settle(h, pumped, fc.connect(), 'the other domain\'s ring');

  const fb = new BlkFront(g, 51712);
  await settle(h, pumped, fb.connect({ 'ring-ref': 'garbage' }), 'a bad ring-ref');
  await untilBackend(h, pumped, vbd, 'Closing');
  const be = `/local/domain/0/backend/vbd/${b.domid}/51712`;
  t.is(await h.xs.read(`${be}/error`), 'ring-ref = "garbage" is not a 32-bit unsigned number');
  t.is(await h.xs.read(`${be}/state`), '5');
  await untilBackend(h, pumped, vifRef, 'Connected');
  await untilBackend(h, pumped, { kind: 'vbd', frontendDomid: c.domid, devid: 51712 }, 'Connected');

  // A ring-ref that was never granted: the connect is refused.
  await settle(h, pumped, g.setState('vbd', 51712, 1), 'Initialising');
  await untilBackend(h, pumped, vbd, 'InitWait');
  await settle(h, pumped, fb.connect({ 'ring-ref': '400' }), 'an ungranted ring-ref');
  await untilBackend(h, pumped, vbd, 'Closing');
  t.regex(await h.xs.read(`${be}/error`), /^connect refused: cannot map ring-ref 400: /);

  // Starting over with good nodes connects, and the error goes.
  await settle(h, pumped, g.setState('vbd', 51712, 1), 'Initialising');
  await untilBackend(h, pumped, vbd, 'InitWait');
  await settle(h, pumped, fb.connect(), 'the real ring');
  await untilBackend(h, pumped, vbd, 'Connected');
  await t.throwsAsync(h.xs.read(`${be}/error`), { message: /ENOENT/ });
});

test('garbage ring indices fail the vbd by itself: error node and Closing, the vif of the same domain keeps working', async (t) => {
  const h = await host(t);
  const b = await h.create(config('idx', { extra: 'nostore', disks: [disk(diskImage(t))], vifs: [vif('00:16:3e:00:00:07')] }), true);
  const g = new GuestSide(h, b);
  const fb = new BlkFront(g, 51712);
  const fn = new NetFront(g, 0);
  const vbd: DeviceRef = { kind: 'vbd', frontendDomid: b.domid, devid: 51712 };
  await settle(h, [g], fb.connect(), 'vbd ring');
  await settle(h, [g], fn.connect(), 'vif rings');
  await untilBackend(h, [g], vbd, 'Connected');
  await untilBackend(h, [g, fn], { kind: 'vif', frontendDomid: b.domid, devid: 0 }, 'Connected');

  fb.ringPage.mem.setUint32(0, 1000, true); // req_prod far past anything the ring can hold
  g.notify(fb.port);
  await untilBackend(h, [g], vbd, 'Closing');
  t.regex(await h.xs.read(`/local/domain/0/backend/vbd/${b.domid}/51712/error`), /^ring indices are garbage: /);
  t.is(h.backends.host.mappedRings, 2, 'only the vif\'s rings are still mapped');

  fn.postRx(4);
  fn.send(new Uint8Array(60).fill(0xff));
  await drive(h, [g, fn], () => fn.txDone === 1, 'the vif still sends');
});

test('hotplug: a disk added to a running domain gets its backend; one already there, or missing, is refused and leaves no trace', async (t) => {
  const h = await host(t);
  const b = await h.create(config('hot', { extra: 'nostore', disks: [disk(diskImage(t))] }), true);
  const g = new GuestSide(h, b);
  await h.backends.attachDevices(b.domid, { disks: [disk(diskImage(t), 'xvdb')], vifs: [] });
  const xvdb: DeviceRef = { kind: 'vbd', frontendDomid: b.domid, devid: 51728 };
  t.is(await h.xs.read(`/local/domain/0/backend/vbd/${b.domid}/51728/state`), '2');
  const f = new BlkFront(g, 51728);
  await settle(h, [g], f.connect(), 'the hotplugged disk\'s ring');
  await untilBackend(h, [g], xvdb, 'Connected');

  await t.throwsAsync(h.backends.attachDevices(b.domid, { disks: [disk(diskImage(t), 'xvdb')], vifs: [] }), {
    instanceOf: BuildError, message: `disk xvdb: already attached (/local/domain/0/backend/vbd/${b.domid}/51728 exists)`,
  });
  t.is(await h.xs.read(`/local/domain/0/backend/vbd/${b.domid}/51728/state`), '4', 'the attached disk is untouched');

  await t.throwsAsync(h.backends.attachDevices(b.domid, { disks: [disk('/nonexistent/xenport/c.img', 'xvdc')], vifs: [] }), { message: /^disk xvdc: disk image .* does not exist$/ });
  await t.throwsAsync(h.xs.read(`/local/domain/0/backend/vbd/${b.domid}/51744`), { message: /ENOENT/ });
  await t.throwsAsync(h.xs.read(`/local/domain/${b.domid}/device/vbd/51744`), { message: /ENOENT/ });
  t.deepEqual(h.backends.driver.status().map((d) => [d.devid, d.state]), [[51712, 'InitWait'], [51728, 'Connected']]);
});

test('a machine host whose backend driver is off refuses devices but builds domains without them', async (t) => {
  const h = await host(t, { backendDriver: false });
  await t.throwsAsync(h.create(config('dev', { extra: 'nostore', disks: [disk(diskImage(t))] })), {
    instanceOf: BuildError, message: 'this machine serves no disks or vifs (its backend driver is off)',
  });
  t.is(h.m.domains.length, 1, 'rolled back');
  await t.notThrowsAsync(h.create(config('plain', { extra: 'nostore' }), true));
});
