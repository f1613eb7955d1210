/*
 * End to end through the shipped program: `xl` (bin/xl-main.js, the netbsd
 * kernel) starts a real machine daemon on the real clock; `xl create`
 * boots a guest from an xl.cfg file with a disk image, a vif with a host
 * UDP forward, and `workload=blk,net,mem,clock`. Then, from outside, as a
 * user would: Debian's xenstore-read over the daemon's xenstored.sock sees
 * the counters grow without errors, a node dgram client on 127.0.0.1 gets
 * its datagram echoed by the guest, `xl network-ping` gets an ICMP echo
 * reply, `xl network-info` shows dom0 counting the heartbeats, and the
 * image file holds the blocks the guest wrote.
 *
 * The daemon runs in real time, so waiting is polling with a deadline
 * (what a user's script would do), never a fixed sleep.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetworkInfo } from '../../hypervisor/tools/backend/dom0.js';
import { tempDir, diskImage, freeUdpPort, cfgText, scanDisk } from './fixture.js';
import { until, watchMachine } from '../helpers/xs-events.js';

const XL = fileURLToPath(new URL('../../bin/xl-main.js', import.meta.url));

interface Ran {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, encoding: 'utf8', timeout: 60_000 }, (error, out, err) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, out, err });
    });
  });
}

const xl = (args: readonly string[]): Promise<Ran> => run(process.execPath, [XL, ...args]);

test('the shipped xl: a guest with a disk, a vif and workload=blk,net,mem,clock, seen from outside with Debian\'s xenstore-read, UDP, network-ping', async (t) => {
  const dir = tempDir(t);
  const machineDir = join(dir, 'machine');
  const started = await xl(['machine', 'start', '--dir', machineDir, '--memory', '256M']);
  t.is(started.code, 0, started.err);
  const unwatch = watchMachine(machineDir);
  t.teardown(async () => {
    unwatch();
    await xl(['--dir', machineDir, 'machine', 'stop']);
  });
  const img = diskImage(dir, 2);
  const port = await freeUdpPort();
  const cfgFile = join(dir, 'guest.cfg');
  writeFileSync(cfgFile, cfgText({
    name: 'e2e', memory: 48, extra: 'workload=blk,net,mem,clock mem_mb=2',
    disks: ['file:disk.img,xvda,w'], vifs: [`mac=00:16:3e:00:00:02,ip=10.0.0.2,bridge=xenbr0,forward=udp:${port}:7`],
  }));
  const created = await xl(['--dir', machineDir, 'create', cfgFile]);
  t.is(created.code, 0, created.err);
  const domid = Number(created.out.trim());
  t.true(domid > 0, created.out);

  // Counters, read the way any Xen user reads xenstore.
  const env = { ...process.env, XENSTORED_PATH: join(machineDir, 'xenstored.sock') };
  const base = `/local/domain/${domid}/data/workload`;
  const names = ['blk/writes', 'blk/verified', 'blk/errors', 'blk/flushes', 'net/heartbeats', 'net/errors', 'mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'];
  const read = async (): Promise<Record<string, number> | undefined> => {
    const r = await run('xenstore-read', names.map((n) => `${base}/${n}`), env);
    if (r.code !== 0) return undefined;
    const vals = r.out.trim().split('\n').map(Number);
    return Object.fromEntries(names.map((n, i) => [n, vals[i] ?? NaN]));
  };
  const first = await until('every counter, blk verifying and flushing', 90_000, async () => {
    const c = await read();
    return c !== undefined && c['blk/verified']! > 0 && c['blk/flushes']! > 0 && c['net/heartbeats']! >= 1 && c['mem/passes']! >= 1 ? c : undefined;
  });
  const later = await until('the counters to grow', 60_000, async () => {
    const c = await read();
    return c !== undefined && c['blk/writes']! > first['blk/writes']! && c['blk/verified']! > first['blk/verified']! &&
      c['clock/ticks']! > first['clock/ticks']! && c['net/heartbeats']! > first['net/heartbeats']! ? c : undefined;
  });
  for (const n of ['blk/errors', 'net/errors', 'mem/errors', 'clock/backwards']) t.is(later[n], 0, `${n} is 0`);
  const status = await run('xenstore-read', ['blk', 'net', 'mem', 'clock'].map((w) => `${base}/${w}/status`), env);
  t.is(status.out, 'running\nrunning\nrunning\nrunning\n', status.err);

  // A real UDP client on 127.0.0.1, through the vif's forward, to the guest's echo service.
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  const echoed = new Promise<string>((resolve) => sock.once('message', (m) => resolve(m.toString('latin1'))));
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  const payload = `ping from the host ${process.pid}`;
  // UDP may lose the first datagram while the guest's ARP entry for dom0 is being made: send until answered.
  let answered = false;
  void echoed.then(() => {
    answered = true;
  });
  // Sent again on every xenstore change (the guest publishes every 50 ms of guest time) until answered.
  await until('the echo', 30_000, async () => {
    if (!answered) sock.send(payload, port, '127.0.0.1');
    return answered ? true : undefined;
  });
  t.is(await echoed, payload);

  // dom0 pings the guest.
  const ping = await xl(['--dir', machineDir, 'network-ping', 'e2e']);
  t.is(ping.code, 0, ping.err);
  t.regex(ping.out, /^64 bytes from 10\.0\.0\.2: icmp_seq=\d+ ttl=\d+ time=[\d.]+ ms\n$/);

  // dom0's HeartbeatMonitor counts the guest's beats.
  const info = JSON.parse((await xl(['--dir', machineDir, 'network-info'])).out) as NetworkInfo;
  const hb = info.heartbeats.find((s) => s.ip === '10.0.0.2');
  t.truthy(hb, JSON.stringify(info.heartbeats));
  t.true(hb!.count >= later['net/heartbeats']! - 1, `dom0 counted ${hb!.count} beats, the guest ${later['net/heartbeats']}`);
  t.regex(hb!.lastPayload, /^hb \d+ \d+$/);
  const echoCount = await until('echoed >= 1', 10_000, async () => {
    const r = await run('xenstore-read', [`${base}/net/echoed`], env);
    return r.code === 0 && Number(r.out) >= 1 ? Number(r.out) : undefined;
  });
  t.true(echoCount >= 1);

  // The blocks the guest wrote and flushed are in the image file (looked at once the domain is gone and blkback let go of it).
  const destroyed = await xl(['--dir', machineDir, 'destroy', 'e2e']);
  t.is(destroyed.code, 0, destroyed.err);
  const scan = scanDisk(img);
  t.deepEqual(scan.bad, []);
  t.true(scan.good >= Math.min(later['blk/writes']!, scan.blocks), `${scan.good} good blocks on disk, ${later['blk/writes']} writes counted`);
  t.true(scan.maxSeq >= later['blk/writes']!, `the newest block on disk is write ${scan.maxSeq}`);
});
