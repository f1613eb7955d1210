import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { BLKIF_RSP_OKAY } from '../../hypervisor/public/io/blkif.js';
import { parseMac, parseIpv4 } from '../../hypervisor/dom0/net/addr.js';
import { buildGratuitousArpFrame } from '../../hypervisor/dom0/net/ether.js';
import { buildUdpPacket } from '../../hypervisor/dom0/net/ip.js';
import { buildEthernet, ETHERTYPE_IPV4 } from '../../hypervisor/dom0/net/ether.js';
import { EchoGuest } from '../../hypervisor/dom0/net/echo-guest.js';
import type { Bridge, BridgeLink, BridgePort } from '../../hypervisor/dom0/net/bridge.js';
import { DOM0_IP, DOM0_MAC } from '../../hypervisor/dom0/net/endpoint.js';
import { HEARTBEAT_PORT } from '../../hypervisor/dom0/net/heartbeat.js';
import type { NetworkInfo } from '../../hypervisor/tools/backend/dom0.js';
import type { DeviceRef } from '../../hypervisor/tools/backend/nodes.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { makeVerbs } from '../../hypervisor/tools/machine/verbs.js';
import type { StreamChannel } from '../../hypervisor/tools/machine/control.js';
import { probeKernel } from './builder-kernel.js';
import { config, host } from './builder-fixture.js';
import {
  BlkFront, GuestSide, NetFront, SECTOR, disk, diskImage, drive, sectorBytes, settle, untilBackend, vif, type Pumped,
} from './backend-fixture.js';

const MAC = '00:16:3e:00:00:02';
const IP = '10.0.0.2';

const noStream: StreamChannel = { data: () => undefined, onInput: () => undefined, onClose: () => undefined };

function verbs(h: MachineHost): (verb: string, args?: Record<string, unknown>) => Promise<unknown> {
  const v = makeVerbs({ host: h, dir: '/machine', requestStop: () => undefined, flushLog: () => undefined }, [probeKernel]);
  return (verb, args = {}) => v.get(verb)!(args, noStream);
}

async function guestWithDisk(t: ExecutionContext, name = 'blk'): Promise<{ h: MachineHost; g: GuestSide; img: string; ref: DeviceRef }> {
  const h = await host(t);
  const img = diskImage(t, 64);
  const b = await h.create(config(name, { extra: 'nostore', disks: [disk(img)] }), true);
  return { h, g: new GuestSide(h, b), img, ref: { kind: 'vbd', frontendDomid: b.domid, devid: 51712 } };
}

/** Read `count` sectors through blkback and wait for the answer. */
async function readSectors(h: MachineHost, pumped: readonly Pumped[], f: BlkFront, sector: number, count: number): Promise<{ status: number; data: Uint8Array }> {
  const id = f.read(sector, count);
  let got: { status: number; data: Uint8Array } | undefined;
  await drive(h, pumped, () => {
    got ??= f.responses().find((r) => r.id === id);
    return got !== undefined;
  }, `the response to read ${id}`);
  return { status: got!.status, data: got!.data.subarray(0, count * SECTOR) };
}

test('vbd: the frontend connects, reads a sector of the image through blkback, closes and reconnects with new rings', async (t) => {
  const { h, g, img, ref } = await guestWithDisk(t);
  const be = `/local/domain/0/backend/vbd/${g.domid}/51712`;
  const f = new BlkFront(g, 51712);
  await settle(h, [g], f.connect(), 'the frontend publishing its ring');
  await untilBackend(h, [g], ref, 'Connected');
  t.is(await h.xs.read(`${be}/state`), '4');
  t.is(h.backends.host.mappedRings, 1, 'the ring page is mapped');

  const r = await readSectors(h, [g], f, 5, 2);
  t.is(r.status, BLKIF_RSP_OKAY);
  t.deepEqual(r.data, new Uint8Array(readFileSync(img)).subarray(5 * SECTOR, 7 * SECTOR), 'sectors 5 and 6 of the image file');

  // Close: Closing -> the backend lets the ring go and says Closed; the frontend says Closed.
  await settle(h, [g], g.setState('vbd', 51712, 5), 'Closing');
  await untilBackend(h, [g], ref, 'Closed');
  t.is(await h.xs.read(`${be}/state`), '6');
  t.is(h.backends.host.mappedRings, 0, 'the ring is unmapped');
  t.is(h.backends.blkback.get(ref.frontendDomid as never, 51712)?.state, 'waiting');
  await settle(h, [g], g.setState('vbd', 51712, 6), 'Closed');

  // Reconnect from scratch: a new ring page (new grant ref) and a new port.
  const f2 = new BlkFront(g, 51712);
  t.not(f2.ringPage.ref, f.ringPage.ref);
  await settle(h, [g], g.setState('vbd', 51712, 1), 'Initialising');
  await untilBackend(h, [g], ref, 'InitWait');
  t.is(await h.xs.read(`${be}/sectors`), '64', 'features published again');
  await settle(h, [g], f2.connect(), 'the new ring');
  await untilBackend(h, [g], ref, 'Connected');
  const r2 = await readSectors(h, [g], f2, 63, 1);
  t.is(r2.status, BLKIF_RSP_OKAY);
  t.deepEqual(r2.data, sectorBytes(63, 1), 'the last sector, through the new ring');
  t.is(h.backends.blkback.info()[0]?.stats.connects, 2);
});

test('vbd after a restore: the frontend goes Initialising while Connected, the backend resets to InitWait and takes the new ring', async (t) => {
  const { h, g, ref } = await guestWithDisk(t);
  const f = new BlkFront(g, 51712);
  await settle(h, [g], f.connect(), 'first ring');
  await untilBackend(h, [g], ref, 'Connected');
  await readSectors(h, [g], f, 1, 1);

  // What a resumed frontend does: new grant table, new ring, new port, Initialising, then Initialised.
  const f2 = new BlkFront(g, 51712);
  await settle(h, [g], g.setState('vbd', 51712, 1), 'Initialising again');
  await untilBackend(h, [g], ref, 'InitWait');
  t.is(h.backends.host.mappedRings, 0, 'the old ring is let go');
  await settle(h, [g], f2.connect(), 'the new ring');
  await untilBackend(h, [g], ref, 'Connected');
  const r = await readSectors(h, [g], f2, 10, 8);
  t.is(r.status, BLKIF_RSP_OKAY);
  t.deepEqual(r.data, sectorBytes(10, 8));

  // A frontend that jumps straight to Initialised with new rings (we never saw Initialising) is reconnected too.
  const f3 = new BlkFront(g, 51712);
  await settle(h, [g], f3.connect(), 'yet another ring, without Initialising');
  await drive(h, [g], () => h.backends.blkback.info()[0]?.stats.connects === 3, 'the third connection');
  const r3 = await readSectors(h, [g], f3, 2, 1);
  t.deepEqual(r3.data, sectorBytes(2, 1));
  t.is(h.backends.host.mappedRings, 1);
});

/** A frontend that answers ARP and ping as the EchoGuest does, through its netif rings. */
function echoOver(front: NetFront, mac: string, ip: string): EchoGuest {
  const echo = new EchoGuest({ name: 'guest', mac, ip });
  const port: BridgePort = echo;
  const link: BridgeLink = { port, transmit: (frame) => front.send(frame), detach: () => undefined, attached: true };
  echo.plug({ attach: () => link } as unknown as Bridge);
  front.onFrame = (frame) => echo.deliver(frame);
  return echo;
}

async function guestWithVif(t: ExecutionContext): Promise<{ h: MachineHost; g: GuestSide; ref: DeviceRef; f: NetFront }> {
  const h = await host(t);
  const b = await h.create(config('net', { extra: 'nostore', vifs: [vif(MAC, IP)] }), true);
  const g = new GuestSide(h, b);
  const f = new NetFront(g, 0);
  const ref: DeviceRef = { kind: 'vif', frontendDomid: b.domid, devid: 0 };
  await settle(h, [g], f.connect(), 'the frontend publishing its rings');
  await untilBackend(h, [g, f], ref, 'Connected');
  f.postRx(16);
  return { h, g, ref, f };
}

test('vif: the frontend connects, its gratuitous ARP reaches the bridge, a heartbeat reaches dom0, network-info shows both', async (t) => {
  const { h, g, ref, f } = await guestWithVif(t);
  const call = verbs(h);
  const bridge = h.backends.net.bridge('xenbr0');
  f.send(buildGratuitousArpFrame(parseMac(MAC)!, parseIpv4(IP)!));
  await drive(h, [g, f], () => bridge.gratuitousArps().length > 0, 'the gratuitous ARP on xenbr0');
  t.like(bridge.gratuitousArps()[0], { mac: MAC, ip: IP, port: `vif${ref.frontendDomid}.0` });
  t.is(f.txDone, 1, 'the TX slot was answered OKAY');
  t.is(h.backends.net.endpoint.resolve(IP), MAC, 'dom0 learned the guest from it');

  const beat = buildUdpPacket({ src: parseIpv4(IP)!, dst: parseIpv4(DOM0_IP)!, srcPort: 40000, dstPort: HEARTBEAT_PORT, payload: new TextEncoder().encode('beat 1') });
  f.send(buildEthernet({ dst: parseMac(DOM0_MAC)!, src: parseMac(MAC)!, ethertype: ETHERTYPE_IPV4, payload: beat }));
  await drive(h, [g, f], () => h.backends.net.heartbeats.count(IP) === 1, 'the heartbeat');

  const info = (await call('network-info')) as NetworkInfo;
  t.is(info.dom0.ip, '10.0.0.1');
  t.is(info.dom0.bridge, 'xenbr0');
  t.like(info.heartbeats.find((s) => s.ip === IP), { count: 1, lastPayload: 'beat 1' });
  t.like(info.gratuitousArps[0], { mac: MAC, ip: IP, bridge: 'xenbr0' });
  t.like(info.vifs[0], { name: `vif${ref.frontendDomid}.0`, state: 'connected' });
  t.like(info.devices.find((d) => d.kind === 'vif'), { state: 'Connected' });
  t.notThrows(() => JSON.stringify(info), 'plain JSON (no bigints)');
});

test('vif: network-ping reaches the guest through netback and back; after a reconnect with new rings it still does', async (t) => {
  const { h, g, ref, f } = await guestWithVif(t);
  const call = verbs(h);
  const echo = echoOver(f, MAC, IP);
  const ping = async (front: NetFront): Promise<Record<string, unknown>> =>
    (await settle(h, [g, front], call('network-ping', { dom: String(ref.frontendDomid) }), 'the ping')) as Record<string, unknown>;
  const r = await ping(f);
  t.is(r['ip'], IP);
  t.regex(String(r['line']), /^64 bytes from 10\.0\.0\.2: icmp_seq=1 ttl=64 time=\d+\.\d{3} ms$/);
  t.true(echo.pingsAnswered === 1 && echo.arpAnswered === 1, 'the guest answered an ARP request and the echo request');

  // Close, then start over with new rings and a new port.
  await settle(h, [g, f], g.setState('vif', 0, 5), 'Closing');
  await untilBackend(h, [g], ref, 'Closed');
  t.is(h.backends.host.mappedRings, 0);
  await settle(h, [g], g.setState('vif', 0, 6), 'Closed');
  const f2 = new NetFront(g, 0);
  t.notDeepEqual([f2.txPage.ref, f2.rxPage.ref, f2.port], [f.txPage.ref, f.rxPage.ref, f.port]);
  await settle(h, [g], g.setState('vif', 0, 1), 'Initialising');
  await untilBackend(h, [g], ref, 'InitWait');
  await settle(h, [g], f2.connect(), 'new rings');
  await untilBackend(h, [g, f2], ref, 'Connected');
  f2.postRx(16);
  const echo2 = echoOver(f2, MAC, IP);
  const r2 = await ping(f2);
  t.is(r2['seq'], 2);
  t.is(echo2.pingsAnswered, 1);
  t.is(h.backends.netback.info()[0]?.stats.connects, 2);
});

test('network-ping of a domain without a vif, or whose address nobody knows, says so in one line', async (t) => {
  const h = await host(t);
  const call = verbs(h);
  await h.create(config('novif', { extra: 'nostore' }), true);
  await h.create(config('noip', { extra: 'nostore', vifs: [vif('00:16:3e:00:00:09')] }), true);
  await t.throwsAsync(call('network-ping', { dom: 'novif' }), { message: /^domain novif \(\d+\) has no vif$/ });
  await t.throwsAsync(call('network-ping', { dom: 'noip' }), { message: /^domain noip \(\d+\): no address known/ });
  await t.throwsAsync(call('network-ping', { dom: 'noip', timeout_ms: -1 }), { message: /timeout_ms must be 1\.\.60000/ });
});
