/*
 * `xl save` and `xl restore` of a guest with a disk and a vif, through the
 * shipped program and real machine daemons: workload=blk,net,mem,clock
 * runs, a real UDP client on 127.0.0.1 gets an echo through the vif's host
 * forward; the guest is saved (verify-stream-v2 accepts the file), its
 * machine stopped, and the image restored in a NEW machine process (other
 * frame scramble, other TSC frequency) with the same disk file: the
 * counters carry on without errors (blocks written before the save verify
 * after it), the echo answers again through the new machine's forward, and
 * the new bridge saw the guest's gratuitous ARP.
 */
import test from 'ava';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from './fixture.js';
import { startMachine, tempDir, until, verifyStream } from './fixture.js';

const C = ['blk/writes', 'blk/verified', 'blk/errors', 'net/heartbeats', 'net/echoed', 'net/errors',
  'mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'] as const;

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Send a datagram to 127.0.0.1:port, again on every xenstore change of the
 * watched machines (the guest publishes its counters every 50 ms of guest
 * time) until one comes back: its text. UDP may lose the first one while
 * the bridge and ARP learn where the guest is.
 */
async function echo(port: number, text: string, ms = 30_000): Promise<string> {
  const s = dgram.createSocket('udp4');
  let got: string | undefined;
  s.on('message', (msg) => {
    got ??= msg.toString('utf8');
  });
  try {
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    return await until(`an echo on 127.0.0.1:${port}`, ms, async () => {
      if (got === undefined) s.send(text, port, '127.0.0.1');
      return got;
    });
  } finally {
    s.close();
  }
}

async function counters(m: Machine, domid: number): Promise<Record<string, number> | undefined> {
  const c = await m.counters(domid, C);
  return c !== undefined && Object.values(c).every(Number.isFinite) ? c : undefined;
}

interface Info {
  gratuitousArps: { mac: string; ip: string; port: string; bridge: string }[];
  forwards: { vif: string; hostPort: number; guestPort: number }[];
}

test('a guest with a disk and a vif: xl save, verify-stream-v2, a new machine process, xl restore: blk verifies, the echo answers through the new forward, gratuitous ARP on the new bridge', async (t) => {
  const dir = tempDir(t);
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(16 * 2 ** 20));
  const port = await freeUdpPort();
  const cfg = join(dir, 'dev.cfg');
  writeFileSync(cfg, [
    'name = "dev"', 'kernel = "netbsd"', 'memory = 32',
    `disk = [ 'file:${disk},xvda,w' ]`,
    `vif = [ 'mac=00:16:3e:00:00:52,ip=10.0.0.52,bridge=xenbr0,forward=udp:${port}:7' ]`,
    'extra = "workload=blk,net,mem,clock mem_mb=2"', '',
  ].join('\n'));

  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '5', '--tsc-khz', '2400000']);
  const domid = Number((await a.ok(t, ['create', cfg])).trim());
  const first = await until('blk, net, mem and clock counters', 90_000, async () => {
    const c = await counters(a, domid);
    return c !== undefined && c['blk/verified']! >= 8 && c['net/heartbeats']! >= 1 && c['mem/passes']! >= 1 && c['clock/ticks']! >= 2 ? c : undefined;
  });
  t.is(first['blk/errors'], 0);
  const grown = await until('the counters to grow before the save', 60_000, async () => {
    const c = await counters(a, domid);
    return c !== undefined && c['blk/verified']! > first['blk/verified']! && c['clock/ticks']! > first['clock/ticks']! ? c : undefined;
  });
  t.is(await echo(port, 'before the save'), 'before the save');

  const img = join(dir, 'dev.img');
  const before = await counters(a, domid);
  const saved = await a.ok(t, ['save', 'dev', img]);
  t.regex(saved, /saved domain dev to .*: destroyed\n$/);
  const v = await verifyStream(img);
  t.is(v.code, 0, v.out + v.err);
  await a.ok(t, ['machine', 'stop']);

  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '23', '--tsc-khz', '3100000']);
  const nd = Number((await b.ok(t, ['restore', img])).trim());
  t.true(nd > 0);
  // blk reads each block back a fixed lag after writing it: once verified passes the
  // writes counted before the save, every block written before the save was read back.
  const after = await until('blk to verify every block written before the save', 90_000, async () => {
    const c = await counters(b, nd);
    return c !== undefined && c['blk/verified']! > before!['blk/writes']! && c['clock/ticks']! > before!['clock/ticks']! ? c : undefined;
  });
  const later = await until('all the counters to grow on the new machine', 60_000, async () => {
    const c = await counters(b, nd);
    return c !== undefined && c['mem/passes']! > after['mem/passes']! && c['net/heartbeats']! > after['net/heartbeats']! &&
      c['blk/writes']! > after['blk/writes']! ? c : undefined;
  });
  t.log(`d${domid} before the save ${JSON.stringify(before)}\n  d${nd} after the restore ${JSON.stringify(later)}`);
  for (const k of ['blk/errors', 'net/errors', 'mem/errors', 'clock/backwards']) t.is(later[k], 0, k);
  t.true(later['blk/verified']! > grown['blk/verified']!, 'blk verified carried on');
  t.true(later['blk/writes']! > before!['blk/writes']!, 'blk writes carried on');
  t.true(later['clock/ticks']! > before!['clock/ticks']!, 'ticks carried on from before the save');
  t.is(await echo(port, 'after the restore'), 'after the restore');
  const info = JSON.parse(await b.ok(t, ['network-info'])) as Info;
  t.deepEqual(info.forwards.map((f) => [f.vif, f.hostPort, f.guestPort]), [[`vif${nd}.0`, port, 7]]);
  t.true(info.gratuitousArps.some((g) => g.mac === '00:16:3e:00:00:52' && g.ip === '10.0.0.52' && g.bridge === 'xenbr0'),
    JSON.stringify(info.gratuitousArps));
});
