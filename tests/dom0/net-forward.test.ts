/*
 * Host UDP port forwarding with real sockets on 127.0.0.1: a dgram client
 * talks through the forwarder, dom0's endpoint and the bridge to a
 * stand-in guest that echoes, and gets the answer back. No sleeps: every
 * wait is on a real socket event, and loopback keeps one sender's
 * datagrams in order.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { Bridge, type BridgeLink, type BridgePort } from '../../hypervisor/dom0/net/bridge.js';
import { Dom0Endpoint } from '../../hypervisor/dom0/net/endpoint.js';
import { EchoGuest } from '../../hypervisor/dom0/net/echo-guest.js';
import { UdpForwarder, UdpForwardError } from '../../hypervisor/dom0/net/forward.js';
import { benchUdpForward } from '../../hypervisor/dom0/net/udp-bench.js';
import { parseMac, parseIpv4, type Mac } from '../../hypervisor/dom0/net/addr.js';
import { parseEthernet, buildEthernet, buildArpReplyFrame, parseArp, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../../hypervisor/dom0/net/ether.js';
import { parseIpv4Packet, parseUdp, buildUdpPacket } from '../../hypervisor/dom0/net/ip.js';
import { FakeClock } from './net-fixture.js';

const LOOPBACK = '127.0.0.1';
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function client(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, LOOPBACK, resolve));
  return s;
}

function nextMessage(s: dgram.Socket): Promise<{ msg: Buffer; from: dgram.RemoteInfo }> {
  return new Promise((resolve) => s.once('message', (msg, from) => resolve({ msg, from })));
}

async function setup(opts: { guestIp?: string; guestMac?: string; idleTimeoutNs?: number } = { guestIp: '10.0.0.2' }) {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock });
  const guest = new EchoGuest({ name: 'vif1.0', mac: '00:16:3e:00:00:02', ip: '10.0.0.2', echoPorts: [7] }).plug(bridge);
  const fwd = await UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 7, name: 'vif1.0', ...opts });
  return { clock, bridge, dom0, guest, fwd };
}

test('a real host client reaches the guest through the forwarder and gets the echo back', async (t) => {
  const { dom0, guest, fwd } = await setup();
  const c = await client();
  try {
    const reply = nextMessage(c);
    c.send('hello guest', fwd.hostPort, LOOPBACK);
    const { msg, from } = await reply;
    t.is(msg.toString(), 'hello guest');
    t.deepEqual([from.address, from.port], [LOOPBACK, fwd.hostPort], 'the reply comes from the forwarded port');
    t.deepEqual(guest.udpSeen.map((d) => [d.srcIp, d.srcPort, d.dstPort, text(d.payload)]), [['10.0.0.1', 49152, 7, 'hello guest']]);
    t.deepEqual(fwd.mappings().map((m) => [m.client, m.dom0Port]), [[`${LOOPBACK}:${c.address().port}`, 49152]]);
    t.like(fwd.counters(), { toGuest: 1, toHost: 1, mappingsCreated: 1 });
    t.is(dom0.counters().udpDelivered, 1);
  } finally {
    c.close();
    await fwd.close();
  }
});

test('two host clients get their own dom0 ports and their own replies', async (t) => {
  const { guest, fwd } = await setup();
  const [a, b] = [await client(), await client()];
  try {
    const ra = nextMessage(a);
    const rb = nextMessage(b);
    a.send('from a', fwd.hostPort, LOOPBACK);
    b.send('from b', fwd.hostPort, LOOPBACK);
    t.is((await ra).msg.toString(), 'from a');
    t.is((await rb).msg.toString(), 'from b');
    const ports = new Set(guest.udpSeen.map((d) => d.srcPort));
    t.is(ports.size, 2);
    t.is(fwd.mappings().length, 2);
  } finally {
    a.close();
    b.close();
    await fwd.close();
  }
});

test('idle mappings expire by the injected clock; a late reply is dropped; the client gets a new mapping', async (t) => {
  const { clock, dom0, guest, fwd } = await setup({ guestIp: '10.0.0.2', idleTimeoutNs: 30e9 });
  const c = await client();
  try {
    let r = nextMessage(c);
    c.send('one', fwd.hostPort, LOOPBACK);
    await r;
    clock.advance(20e9);
    fwd.tick();
    t.is(fwd.mappings().length, 1, 'still fresh after 20 s');
    clock.advance(11e9);
    fwd.tick();
    t.deepEqual(fwd.mappings(), []);
    t.is(fwd.counters().mappingsExpired, 1);
    // The guest answers late on the old mapping: dom0 has no such port any more.
    guest.transmit(buildEthernet({
      dst: parseMac(dom0.mac)!, src: parseMac(guest.mac)!, ethertype: ETHERTYPE_IPV4,
      payload: buildUdpPacket({ src: parseIpv4(guest.ip)!, dst: parseIpv4(dom0.ip)!, srcPort: 7, dstPort: 49152, payload: new Uint8Array(1) }),
    }));
    t.is(dom0.drops()['udp-no-port'], 1);
    r = nextMessage(c);
    c.send('two', fwd.hostPort, LOOPBACK);
    t.is((await r).msg.toString(), 'two');
    t.deepEqual(fwd.mappings().map((m) => m.dom0Port), [49153]);
  } finally {
    c.close();
    await fwd.close();
  }
});

test('a host port in use is a clear error naming the port', async (t) => {
  const holder = await client();
  const port = holder.address().port;
  const clock = new FakeClock();
  const dom0 = new Dom0Endpoint({ bridge: new Bridge({ name: 'xenbr0', clock }), clock });
  try {
    const err = await t.throwsAsync(UdpForwarder.open({ endpoint: dom0, clock, hostPort: port, guestPort: 7, guestIp: '10.0.0.2' }), { instanceOf: UdpForwardError });
    t.is(err?.code, 'EADDRINUSE');
    t.is(err?.hostPort, port);
    t.is(err?.message, `forward udp:${port}:7: UDP port 127.0.0.1:${port} is already in use`);
  } finally {
    holder.close();
  }
});

test('bad forward specs are refused before binding', async (t) => {
  const clock = new FakeClock();
  const dom0 = new Dom0Endpoint({ bridge: new Bridge({ name: 'xenbr0', clock }), clock });
  await t.throwsAsync(UdpForwarder.open({ endpoint: dom0, clock, hostPort: 70000, guestPort: 7, guestIp: '10.0.0.2' }), { message: /host port 70000 is not a UDP port/ });
  await t.throwsAsync(UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 0, guestIp: '10.0.0.2' }), { message: /guest port 0 is not a UDP port/ });
  await t.throwsAsync(UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 7 }), { message: /neither ip= nor mac=/ });
  await t.throwsAsync(UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 7, guestIp: '10.0.0.300' }), { message: /10\.0\.0\.300 is not an IPv4 address/ });
});

test('closing the forwarder frees the host port and the dom0 ports', async (t) => {
  const { dom0, fwd } = await setup();
  const c = await client();
  const r = nextMessage(c);
  c.send('x', fwd.hostPort, LOOPBACK);
  await r;
  c.close();
  const port = fwd.hostPort;
  await fwd.close();
  await fwd.close(); // idempotent
  const again = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.bind({ port, address: LOOPBACK, exclusive: true }, resolve);
  });
  again.close();
  t.deepEqual(fwd.mappings(), []);
  t.is(dom0.bindUdp(49152, () => {}).port, 49152, 'the mapping\'s dom0 port is free again');
});

test('without ip=, the guest address comes from its gratuitous ARP', async (t) => {
  const { fwd, guest } = await setup({ guestMac: '00:16:3e:00:00:02' });
  const c = await client();
  try {
    const dropped = new Promise<string>((resolve) => { const off = fwd.onDrop((reason) => { off(); resolve(reason); }); });
    c.send('too early', fwd.hostPort, LOOPBACK);
    t.is(await dropped, 'guest-ip-unknown');
    t.is(fwd.guestIp(), undefined);
    guest.announce();
    t.is(fwd.guestIp(), '10.0.0.2');
    const r = nextMessage(c);
    c.send('after announce', fwd.hostPort, LOOPBACK);
    t.is((await r).msg.toString(), 'after announce');
    t.deepEqual(guest.udpSeen.map((d) => text(d.payload)), ['after announce']);
  } finally {
    c.close();
    await fwd.close();
  }
});

test('only the guest\'s address and port may answer on a mapping', async (t) => {
  const clock = new FakeClock();
  const bridge = new Bridge({ name: 'xenbr0', clock });
  const dom0 = new Dom0Endpoint({ bridge, clock });
  const gMac: Mac = parseMac('00:16:3e:00:00:02')!;
  const gIp = parseIpv4('10.0.0.2')!;
  let link: BridgeLink | undefined;
  // A guest that answers ARP, then replies twice: once from the wrong port, once right.
  const guest: BridgePort = {
    name: 'vif1.0',
    deliver: (f) => {
      const eth = parseEthernet(f);
      if (!eth.ok) return;
      if (eth.value.ethertype === ETHERTYPE_ARP) {
        const a = parseArp(eth.value.payload);
        if (a.ok && a.value.targetIp === gIp) link!.transmit(buildArpReplyFrame(gMac, gIp, a.value.senderMac, a.value.senderIp));
        return;
      }
      const p = parseIpv4Packet(eth.value.payload);
      const u = p.ok ? parseUdp(p.value.payload, p.value.src, p.value.dst) : undefined;
      if (!p.ok || !u?.ok) return;
      for (const srcPort of [8, 7]) {
        link!.transmit(buildEthernet({
          dst: eth.value.src, src: gMac, ethertype: ETHERTYPE_IPV4,
          payload: buildUdpPacket({ src: gIp, dst: p.value.src, srcPort, dstPort: u.value.srcPort, payload: new TextEncoder().encode(`from ${srcPort}`) }),
        }));
      }
    },
  };
  link = bridge.attach(guest);
  const fwd = await UdpForwarder.open({ endpoint: dom0, clock, hostPort: 0, guestPort: 7, guestIp: '10.0.0.2' });
  const c = await client();
  try {
    const r = nextMessage(c);
    c.send('q', fwd.hostPort, LOOPBACK);
    t.is((await r).msg.toString(), 'from 7');
    t.is(fwd.drops()['not-from-guest'], 1);
  } finally {
    c.close();
    await fwd.close();
  }
});

test('benchUdpForward runs (smoke: a few round trips)', async (t) => {
  const r = await benchUdpForward(20, 32);
  t.is(r.roundTrips, 20);
  t.true(r.roundTripsPerSec > 0);
});
