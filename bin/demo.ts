/*
 * `make demo`: the furthest end-to-end run that works today, driven the way
 * a user would drive it — through ./bin/xl in child processes, against a
 * machine daemon in a fresh directory — with a timeline of what it
 * measured. Every number printed is measured in this run.
 *
 * Today: start a machine, create the netbsd guest from an embedded config,
 * follow its console to the end of boot, show `xl list` and the guest's
 * xenstore nodes through Debian's xenstore-read, destroy it, stop the
 * machine... then the guest's workload (blk,net,mem,clock, on a disk image
 * file and a vif with a host UDP forward) runs, a UDP client on 127.0.0.1
 * gets an echo from the guest, `xl save` writes it in Xen's format, Xen's
 * verify-stream-v2 checks the file, the machine is stopped, a NEW machine
 * process (other frame scramble, other TSC) starts, `xl restore` brings the
 * guest back with the same disk file and the demo shows the counters went
 * on (blocks written before the save verify after it), the clock never went
 * back, the P2M moved to other frames, the echo answers again through the
 * new machine's forward and the new bridge saw the guest's gratuitous ARP.
 *
 * Then two timelines: the xl commands as this script saw them, and the
 * protocol as each machine traced it (<dir>/trace.jsonl): the save on the
 * first machine from the suspend request to the domain's destruction, the
 * restore on the second from the stream to the devices Connected again and
 * the workload writing to xenstore.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TraceRecord } from '../hypervisor/xen/trace.js';
import { formatTimeline, restoreSteps, saveSteps } from '../hypervisor/tools/xentrace/timeline.js';
import { ROOT, XL, timeline, say, xl, followConsole, fmt, parseP2m, waitCounters, readTrace, sayTimeline } from './demo-kit.js';

function config(disk: string, port: number): string {
  return `# embedded demo guest
name = "demo"
kernel = "netbsd"
memory = 64
vcpus = 1
disk = [ 'file:${disk},xvda,w' ]
vif = [ 'mac=00:16:3e:00:00:52,ip=10.0.0.52,bridge=xenbr0,forward=udp:${port}:7' ]
extra = "workload=blk,net,mem,clock mem_mb=2"
on_crash = "preserve"
`;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A UDP client on 127.0.0.1: send `text` to `port` every 200 ms until an answer comes (at most 30 s). */
async function udpEcho(port: number, text: string): Promise<string> {
  const start = performance.now();
  const s = dgram.createSocket('udp4');
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => s.send(text, port, '127.0.0.1'), 200);
      const give = setTimeout(() => {
        clearInterval(timer);
        reject(new Error(`no UDP echo on 127.0.0.1:${port} within 30 s`));
      }, 30_000);
      s.on('message', (msg) => {
        clearInterval(timer);
        clearTimeout(give);
        resolve(msg.toString('utf8'));
      });
      s.send(text, port, '127.0.0.1');
    });
    timeline.push({ what: `UDP echo via 127.0.0.1:${port}`, ms: performance.now() - start });
    return answer;
  } finally {
    s.close();
  }
}

const VERIFY = process.env['XEN_VERIFY_STREAM'] ?? '/usr/lib/xen-4.17/bin/verify-stream-v2';

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'xl.js'))) throw new Error('dist/xl.js is missing: run make');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-demo-'));
  const dir = path.join(work, 'machine-a');
  const dir2 = path.join(work, 'machine-b');
  const cfg = path.join(work, 'demo.cfg');
  const disk = path.join(work, 'disk.img');
  fs.writeFileSync(disk, new Uint8Array(16 * 2 ** 20));
  const port = await freeUdpPort();
  fs.writeFileSync(cfg, config(disk, port));
  say(`xenport demo: machine dir ${dir}\n`);
  let started = false;
  let started2 = false;
  let domidSaved = '';
  let domidRestored = '';
  try {
    say('== xl machine start --memory 256M --scramble 3 --tsc-khz 2400000');
    say(xl(dir, ['machine', 'start', '--memory', '256M', '--scramble', '3', '--tsc-khz', '2400000']).trim());
    started = true;

    say(`\n== xl create demo.cfg (64 MiB netbsd guest, 16 MiB disk image, vif 10.0.0.52 with host UDP ${port} -> guest 7)`);
    const domid = xl(dir, ['create', cfg]).trim();
    domidSaved = domid;
    say(`domid ${domid}; its console (xl console replays what the guest printed before it attached):`);
    await followConsole(dir, 'demo', /^boot complete/, 60_000);

    say('\n== xl list');
    say(xl(dir, ['list']).trimEnd());

    const xsPath = path.join(dir, 'xenstored.sock');
    say(`\n== XENSTORED_PATH=${xsPath} xenstore-read (Debian xenstore-utils)`);
    for (const node of [`/local/domain/${domid}/name`, `/local/domain/${domid}/memory/target`, `/local/domain/${domid}/console/ring-ref`]) {
      const start = performance.now();
      const r = spawnSync('xenstore-read', [node], { encoding: 'utf8', env: { ...process.env, XENSTORED_PATH: xsPath } });
      if (r.error) throw new Error(`xenstore-read: ${r.error.message} (make deps installs xenstore-utils)`);
      if (r.status !== 0) throw new Error(`xenstore-read ${node}: ${r.stderr.trim()}`);
      timeline.push({ what: `xenstore-read ${node}`, ms: performance.now() - start });
      say(`  ${node} = ${r.stdout.trim()}`);
    }

    const running = await waitCounters(xsPath, domid, (c) => c['mem/passes']! >= 1 && c['clock/ticks']! >= 3 && c['blk/verified']! >= 8 && c['net/heartbeats']! >= 1, 'the workload counters');
    say(`\n== UDP client -> 127.0.0.1:${port}: answer ${JSON.stringify(await udpEcho(port, 'hello before the save'))}`);
    say(`\n== workload counters running: ${fmt(running)}`);
    const p2mBefore = parseP2m(xl(dir, ['p2m', 'demo']));
    say(`== xl p2m demo: ${p2mBefore.size} pfns`);
    const before = await waitCounters(xsPath, domid, () => true, 'the counters just before the save');
    say(`== workload counters just before the save: ${fmt(before)}`);

    const img = path.join(work, 'demo.img');
    say('\n== xl save demo demo.img');
    say(xl(dir, ['save', 'demo', img]).trim());
    say(`\n== verify-stream-v2 -f xl demo.img (Xen's own checker)`);
    const vstart = performance.now();
    const v = spawnSync(VERIFY, ['-f', 'xl', '-i', img], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: '/usr/lib/xen-4.17/lib/python' } });
    if (v.error) throw new Error(`verify-stream-v2: ${v.error.message} (make deps installs xen-utils-4.17)`);
    if (v.status !== 0) throw new Error(`verify-stream-v2 rejected the image:\n${v.stdout}${v.stderr}`);
    timeline.push({ what: 'verify-stream-v2 -f xl', ms: performance.now() - vstart });
    say(`  accepted (${fs.statSync(img).size} bytes)`);

    say('\n== xl machine stop (the first machine process goes away)');
    say(xl(dir, ['machine', 'stop']).trim());
    started = false;

    say('\n== xl machine start --scramble 17 --tsc-khz 3100000 (a new machine process, other frames, other TSC)');
    say(xl(dir2, ['machine', 'start', '--memory', '256M', '--scramble', '17', '--tsc-khz', '3100000']).trim());
    started2 = true;
    say('\n== xl restore demo.img');
    const nd = xl(dir2, ['restore', img]).trim();
    domidRestored = nd;
    say(`domid ${nd}`);
    const xs2 = path.join(dir2, 'xenstored.sock');
    const after = await waitCounters(xs2, nd, (c) => c['clock/ticks']! > before['clock/ticks']! + 2 && c['mem/passes']! > before['mem/passes']! &&
      c['blk/verified']! > before['blk/writes']! && c['net/heartbeats']! > before['net/heartbeats']!, 'the counters to go on after the restore');
    say(`== workload counters after the restore: ${fmt(after)}`);
    say(`== blk: all ${before['blk/writes']} blocks written before the save are read back and verified now (verified ${before['blk/verified']} at the save -> ${after['blk/verified']}), errors ${after['blk/errors']}`);
    say(`\n== UDP client -> 127.0.0.1:${port} (the new machine's forward): answer ${JSON.stringify(await udpEcho(port, 'hello after the restore'))}`);
    const info = JSON.parse(xl(dir2, ['network-info'])) as { gratuitousArps: { mac: string; ip: string; port: string; bridge: string; op: string }[] };
    const garps = info.gratuitousArps.filter((g) => g.mac === '00:16:3e:00:00:52');
    if (garps.length === 0) throw new Error('the new bridge saw no gratuitous ARP from the guest');
    for (const g of garps) say(`== xl network-info (new machine): gratuitous ARP ${g.op} ${g.ip} is-at ${g.mac} on ${g.bridge} port ${g.port}`);
    const p2mAfter = parseP2m(xl(dir2, ['p2m', 'demo']));
    let moved = 0;
    for (const [pfn, mfn] of p2mBefore) if (p2mAfter.get(pfn) !== mfn) moved++;
    say(`== P2M: ${moved} of ${p2mBefore.size} pfns are on other machine frames now (${p2mAfter.size} pfns after)`);
    say(`== clock: ticks ${before['clock/ticks']} -> ${after['clock/ticks']}, backwards ${after['clock/backwards']}; mem errors ${after['mem/errors']}`);
    if (after['clock/backwards'] !== 0 || after['mem/errors'] !== 0 || after['blk/errors'] !== 0 || after['net/errors'] !== 0) throw new Error('the workload saw an error after the restore');
    const log = path.join(dir2, 'console', `${nd}.log`);
    if (fs.existsSync(log)) {
      const resumed = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /resum/.test(l)).slice(0, 3);
      for (const l of resumed) say(`  | ${l}`);
    }

    say('\n== xl list (new machine)');
    say(xl(dir2, ['list']).trimEnd());
    say('\n== xl destroy demo; xl machine stop');
    xl(dir2, ['destroy', 'demo']);
    say(xl(dir2, ['machine', 'stop']).trim());
    started2 = false;
  } finally {
    if (started) spawnSync(XL, ['--dir', dir, 'machine', 'stop'], { encoding: 'utf8' });
    if (started2) spawnSync(XL, ['--dir', dir2, 'machine', 'stop'], { encoding: 'utf8' });
    fs.rmSync(path.join(work, 'demo.img'), { force: true });
    fs.rmSync(path.join(work, 'disk.img'), { force: true });
  }

  sayTimeline();

  const saved = protocolSection(path.join(dir, 'trace.jsonl'), (rs) => saveSteps(rs, Number(domidSaved)));
  say(`\n== timeline of the protocol: xl save of d${domidSaved} on the first machine (its trace.jsonl)`);
  printSection(saved, 'SHUTDOWN_suspend seen');
  const restored = protocolSection(path.join(dir2, 'trace.jsonl'), (rs) => restoreSteps(rs, Number(domidRestored)));
  say(`\n== timeline of the protocol: xl restore into d${domidRestored} on the second machine (its trace.jsonl)`);
  printSection(restored, 'domctl unpausedomain');
  say('  (at ms / took ms: host time in that machine process, from the first step / until the next step; system time: the');
  say('   machine\'s Xen system time, which the guest reads from vcpu_time_info - after the restore it adds its own offset so');
  say('   that its clock carries on from before the save; by: xen = seen at the hypercall gate, toolstack = save/restore and');
  say('   the machine host, xenstored = requests it received)');
  say(`\n== kept for reading: ${work}/machine-{a,b}/ (machine.log, trace.jsonl, console/) and demo.cfg; the images were removed`);
}

/** The records of one machine's trace file that `pick` selects; fails when there are none. */
function protocolSection(file: string, pick: (rs: TraceRecord[]) => TraceRecord[]): TraceRecord[] {
  const records = readTrace(file);
  const steps = pick(records);
  if (steps.length === 0) throw new Error(`${file}: the trace does not hold the whole protocol run (${records.length} records)`);
  return steps;
}

/** The section's lines, then its length in host ms: in all, up to `mid`, and after it. */
function printSection(steps: readonly TraceRecord[], mid: string): void {
  for (const l of formatTimeline(steps)) say(l);
  const first = steps[0]!;
  const last = steps[steps.length - 1]!;
  const at = steps.find((r) => r.event === mid);
  const ms = (a: TraceRecord, b: TraceRecord): string => `${(b.hostMs - a.hostMs).toFixed(1)} ms`;
  const name = (r: TraceRecord): string => (r.event === 'XS_WRITE' ? `${r.event} ${r.detail ?? ''}` : r.event);
  say(`  ${name(first)} -> ${name(last)}: ${ms(first, last)}${at === undefined ? '' : ` (to ${mid}: ${ms(first, at)}, then ${ms(at, last)})`}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
