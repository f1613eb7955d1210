/*
 * The net workload on whole guests (MachineHost, simulated clock, dom0's
 * bridge xenbr0 at 10.0.0.1): a real UDP client on 127.0.0.1 gets its
 * datagrams echoed by the guest through the vif's host forward; the
 * guest's heartbeats reach dom0's HeartbeatMonitor once a second of guest
 * time; dom0 pings the guest (`xl network-ping`'s path); two guests on one
 * bridge ping each other.
 */
import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import {
  MS, e2eHost, guestConfig, boot, counter, counters, waitCounter, drive, runFor, wlStatus, consoleText, freeUdpPort,
} from './fixture.js';

const NET = ['echoed', 'heartbeats', 'errors'] as const;

/** A UDP client on 127.0.0.1 that keeps what it receives; closed when the test ends. */
async function udpClient(t: ExecutionContext): Promise<{ sock: dgram.Socket; got: { data: string; port: number }[] }> {
  const sock = dgram.createSocket('udp4');
  const got: { data: string; port: number }[] = [];
  sock.on('message', (msg, rinfo) => got.push({ data: msg.toString('latin1'), port: rinfo.port }));
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => sock.close(() => resolve())));
  return { sock, got };
}

function send(sock: dgram.Socket, port: number, text: string): Promise<void> {
  return new Promise((resolve, reject) => sock.send(Buffer.from(text, 'latin1'), port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
}

async function netGuest(t: ExecutionContext, h: MachineHost, name: string, ip: string, mac: string, more = '', vifMore = ''): Promise<number> {
  const b = await boot(t, h, guestConfig({ name, extra: `workload=net ${more}`.trim(), vifs: [`mac=${mac},ip=${ip},bridge=xenbr0${vifMore}`] }));
  await drive(t, h, () => wlStatus(h, b.domid, 'net') === 'running', `d${b.domid} net running`);
  return b.domid;
}

test('a real host UDP client on 127.0.0.1 gets its datagrams echoed by the guest through the vif\'s forward; echoed counts them', async (t) => {
  const port = await freeUdpPort();
  const h = await e2eHost(t);
  const d = await netGuest(t, h, 'echo', '10.0.0.2', '00:16:3e:00:00:02', '', `,forward=udp:${port}:7`);
  const { sock, got } = await udpClient(t);
  const sent = ['hello, guest', 'x'.repeat(1400), 'third \u00ff\u0001'];
  for (const text of sent) {
    await send(sock, port, text);
    const want = got.length + 1;
    await drive(t, h, () => got.length >= want, `the echo of a ${text.length}-byte datagram`);
  }
  t.deepEqual(got.map((g) => g.data), sent, 'each datagram came back as it was sent');
  t.true(got.every((g) => g.port === port), 'from the port the client wrote to');
  await waitCounter(t, h, d, 'net', 'echoed', 3);
  t.is(counter(h, d, 'net', 'echoed'), 3);
  t.is(counter(h, d, 'net', 'errors'), 0);
  const fwd = h.backends.info().forwards;
  t.like(fwd[0], { hostPort: port, guestPort: 7, guestIp: '10.0.0.2' });
  t.regex(consoleText(h, d), /net: xennet0 10\.0\.0\.2: echo on UDP port 7, heartbeat to 10\.0\.0\.1:7777 every 100 ticks\n/);
});

test('heartbeats reach dom0\'s HeartbeatMonitor once a second of guest time, as many as the guest counts', async (t) => {
  const h = await e2eHost(t);
  const d = await netGuest(t, h, 'hb', '10.0.0.4', '00:16:3e:00:00:04');
  const mon = h.backends.net.heartbeats;
  await drive(t, h, () => mon.count('10.0.0.4') >= 1, 'a first heartbeat');
  const first = mon.count('10.0.0.4');
  await runFor(h, 5000 * MS);
  const src = mon.source('10.0.0.4');
  t.truthy(src);
  t.true(src!.count >= first + 4 && src!.count <= first + 6, `about 5 beats in 5 s: ${first} -> ${src!.count}`);
  t.regex(src!.lastPayload, /^hb \d+ \d+$/);
  t.is(Number(src!.lastPayload.split(' ')[1]), src!.count, 'the sequence number in the payload is dom0\'s count: none lost');
  t.true(Math.abs(src!.maxGapNs - 1e9) <= 20 * MS, `a beat a second (largest gap ${src!.maxGapNs / MS} ms)`);
  await runFor(h, 100 * MS);
  t.is(counter(h, d, 'net', 'heartbeats'), mon.count('10.0.0.4'), 'the guest\'s counter and dom0\'s agree');
  t.deepEqual(counters(h, d, 'net', NET).errors, 0);
});

test('dom0 pings the guest (the path of xl network-ping) and gets an ICMP echo reply', async (t) => {
  const h = await e2eHost(t);
  const d = await netGuest(t, h, 'pingme', '10.0.0.5', '00:16:3e:00:00:05');
  for (const seqWanted of [1, 2]) {
    let answer: Awaited<ReturnType<MachineHost['ping']>> | undefined;
    void h.ping(d).then((r) => {
      answer = r;
    });
    await drive(t, h, () => answer !== undefined, 'the answer to the ping');
    t.like(answer, { ip: '10.0.0.5', result: { ok: true, seq: seqWanted } });
  }
});

test('two guests on one bridge ping each other (the net workload\'s net_ping=)', async (t) => {
  const h = await e2eHost(t);
  const a = await netGuest(t, h, 'ga', '10.0.0.11', '00:16:3e:00:00:11', 'net_ping=10.0.0.12');
  const b = await netGuest(t, h, 'gb', '10.0.0.12', '00:16:3e:00:00:12', 'net_ping=10.0.0.11');
  await waitCounter(t, h, a, 'net', 'ping_replies', 3);
  await waitCounter(t, h, b, 'net', 'ping_replies', 3);
  const ca = counters(h, a, 'net', ['pings', 'ping_replies']);
  const cb = counters(h, b, 'net', ['pings', 'ping_replies']);
  t.true(ca['ping_replies']! >= ca['pings']! - 2, `ga: ${JSON.stringify(ca)}`);
  t.true(cb['ping_replies']! >= cb['pings']! - 2, `gb: ${JSON.stringify(cb)}`);
  t.regex(consoleText(h, a), /net: xennet0 10\.0\.0\.11: .*, ping 10\.0\.0\.12 every second\n/);
  const br = h.backends.info().bridges.find((x) => x.name === 'xenbr0');
  t.truthy(br);
  t.true(br!.ports.includes(`vif${a}.0`) && br!.ports.includes(`vif${b}.0`), `both vifs on xenbr0: ${br!.ports.join(', ')}`);
});

test('net without an interface gives up with a clear status once net_wait runs out', async (t) => {
  const h = await e2eHost(t);
  const b = await boot(t, h, guestConfig({ name: 'nonet', extra: 'workload=net net_wait=1' }));
  await drive(t, h, () => wlStatus(h, b.domid, 'net')?.startsWith('failed') === true, 'net status failed');
  t.is(wlStatus(h, b.domid, 'net'), 'failed: no interface up');
});

test('two host clients on one forward each get their own datagram back', async (t) => {
  const port = await freeUdpPort();
  const h = await e2eHost(t);
  await netGuest(t, h, 'echo2', '10.0.0.6', '00:16:3e:00:00:06', '', `,forward=udp:${port}:7`);
  const c1 = await udpClient(t);
  const c2 = await udpClient(t);
  await send(c1.sock, port, 'from one');
  await send(c2.sock, port, 'from two');
  await drive(t, h, () => c1.got.length >= 1 && c2.got.length >= 1, 'both echoes');
  t.deepEqual(c1.got.map((g) => g.data), ['from one']);
  t.deepEqual(c2.got.map((g) => g.data), ['from two']);
  t.not((c1.sock.address() as AddressInfo).port, (c2.sock.address() as AddressInfo).port);
});
