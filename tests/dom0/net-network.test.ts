/*
 * Dom0Network, the machine's handle on dom0's network: bridges by name,
 * forwards per vif opened all-or-nothing from a VifSpec, one tick().
 */
import test from 'ava';
import dgram from 'node:dgram';
import { Dom0Network } from '../../hypervisor/dom0/net/network.js';
import { EchoGuest } from '../../hypervisor/dom0/net/echo-guest.js';
import { UdpForwardError } from '../../hypervisor/dom0/net/forward.js';
import type { VifSpec } from '../../hypervisor/tools/xl/config.js';
import { FakeClock } from './net-fixture.js';

const LOOPBACK = '127.0.0.1';

async function boundSocket(port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind({ port, address: LOOPBACK, exclusive: true }, resolve);
  });
  return s;
}

/** A port that was free a moment ago (the OS picks it, we release it). */
async function freePort(): Promise<number> {
  const s = await boundSocket();
  const p = s.address().port;
  await new Promise<void>((resolve) => s.close(resolve));
  return p;
}

test('a vif\'s forwards come from its VifSpec and reach the guest', async (t) => {
  const clock = new FakeClock();
  const net = new Dom0Network({ clock });
  t.deepEqual(net.bridgeNames(), ['xenbr0']);
  t.is(net.endpoint.ip, '10.0.0.1');
  new EchoGuest({ name: 'vif1.0', mac: '00:16:3e:00:00:01', ip: '10.0.0.2', echoPorts: [7] }).plug(net.bridge('xenbr0'));
  const hostPort = await freePort();
  const vif: VifSpec = { mac: '00:16:3e:00:00:01', ip: '10.0.0.2', bridge: 'xenbr0', forwards: [{ hostPort, guestPort: 7 }] };
  const [fwd] = await net.openForwards('vif1.0', vif);
  t.is(fwd!.hostPort, hostPort);
  const c = await boundSocket();
  try {
    const reply = new Promise<string>((resolve) => c.once('message', (m) => resolve(m.toString())));
    c.send('through the vif spec', hostPort, LOOPBACK);
    t.is(await reply, 'through the vif spec');
  } finally {
    c.close();
    await net.close();
  }
  const again = await boundSocket(hostPort);
  again.close();
  t.pass('the host port is free after close()');
});

test('forwards open all or nothing: a busy port closes the ones already opened', async (t) => {
  const clock = new FakeClock();
  const net = new Dom0Network({ clock });
  const busy = await boundSocket();
  const busyPort = busy.address().port;
  const firstPort = await freePort();
  const vif: VifSpec = { mac: '00:16:3e:00:00:01', ip: '10.0.0.2', bridge: 'xenbr0', forwards: [{ hostPort: firstPort, guestPort: 7 }, { hostPort: busyPort, guestPort: 9 }] };
  try {
    await t.throwsAsync(net.openForwards('vif1.0', vif), { instanceOf: UdpForwardError, message: new RegExp(`127\\.0\\.0\\.1:${busyPort} is already in use`) });
    t.deepEqual(net.forwardsOf('vif1.0'), []);
    const reopened = await boundSocket(firstPort);
    reopened.close();
    await t.throwsAsync(net.openForwards('vif2.0', { ...vif, bridge: 'xenbr1', forwards: [{ hostPort: firstPort, guestPort: 7 }] }), { message: /needs the vif on xenbr0/ });
  } finally {
    busy.close();
    await net.close();
  }
});

test('tick() lets time act on every part: a ping nobody answers times out', async (t) => {
  const clock = new FakeClock();
  const net = new Dom0Network({ clock, ip: '192.168.7.1', prefixLength: 24 });
  net.bridge('xenbr1');
  const p = net.endpoint.ping('192.168.7.50', { timeoutNs: 2e9 });
  clock.advance(2e9);
  net.tick();
  t.like(await p, { ok: false, reason: 'timeout' });
  t.deepEqual(net.bridgeNames(), ['xenbr0', 'xenbr1']);
  t.is(net.heartbeats.port, 7777);
  await net.close();
});
