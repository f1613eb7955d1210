/*
 * `make demo-migrate`: live migration between two machine processes,
 * driven the way a user would drive it — through ./bin/xl in child
 * processes, against two machine daemons in a fresh directory — with what
 * it measured. Every number printed is measured in this run; any missing
 * piece of evidence ends the demo with one line on stderr and exit 1.
 *
 * Machine A and machine B start (other frame scramble, other TSC
 * frequency). A netbsd guest with a disk image and a vif (no host UDP
 * forward: a forward cannot move between two daemons on one host) is
 * created on A and runs blk,net,mem,clock; dom0 pings it on A's bridge.
 * `xl migrate-receive` listens on B, `xl migrate` sends the guest there
 * while it runs, and xl's rounds and summary are printed. Then the
 * evidence: gone from A's `xl list`, in B's; the counters carry on on B
 * with no error and the clock never back; the blocks written on A read
 * back and verified on B; the P2M on other machine frames; the guest's
 * console line about its resume; dom0 pinging it on B's bridge and B's
 * bridge seeing its gratuitous ARP.
 *
 * Then, from the two machines' protocol traces (<dir>/trace.jsonl), the
 * migration as each side saw it: the sender's pre-copy rounds, suspend,
 * final round, handshake and destroy; the receiver's stream, restore
 * steps, handshake, unpause, the guest's resume hypercalls and its
 * frontends Connected again.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TraceRecord } from '../hypervisor/xen/trace.js';
import { formatTimeline, migrateReceiveSteps, migrateSendSteps } from '../hypervisor/tools/xentrace/timeline.js';
import {
  ROOT, XL, Missing, ERRORS, type Counters, timeline, say, xl, followConsole, fmt, parseP2m, waitCounters, readTrace, sayTimeline,
} from './demo-kit.js';
const MAC = '00:16:3e:00:00:53';
const IP = '10.0.0.53';

function config(disk: string): string {
  return `# embedded demo guest (no host UDP forward: it could not move between two machine processes on one host)
name = "demo"
kernel = "netbsd"
memory = 64
vcpus = 1
disk = [ 'file:${disk},xvda,w' ]
vif = [ 'mac=${MAC},ip=${IP},bridge=xenbr0' ]
extra = "workload=blk,net,mem,clock mem_mb=2"
on_crash = "preserve"
`;
}

/** Where the machines' logs and traces stay, once made (said on failure too). */
let kept = '';

/** Evidence that must hold: the demo stops with `what` otherwise. */
function need(ok: boolean, what: string): void {
  if (!ok) throw new Missing(what);
}

/** `xl list` rows as [name, id, state]. */
function listRows(out: string): [string, number, string][] {
  return out.trim().split('\n').slice(1).map((l) => {
    const f = l.trim().split(/\s+/);
    return [f[0]!, Number(f[1]), f[4]!];
  });
}

function noErrors(c: Counters, when: string): void {
  for (const k of ERRORS) need(c[k] === 0, `the workload counts ${k}=${c[k]} ${when}`);
}

/** A running child's stdout as lines, its exit as a promise. */
interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  /** `xl VERB ...`, for messages. */
  readonly what: string;
  readonly lines: string[];
  /** Resolves with the next line once there is one past `seen` (rejects when the child exits first or after `limitMs`). */
  line(seen: number, limitMs: number): Promise<string>;
  readonly exit: Promise<{ code: number | null; err: string }>;
}

function child(args: string[], echo: boolean): Child {
  const proc = spawn(XL, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d: string) => {
    err += d;
  });
  proc.stdout.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(l);
      if (echo) say(`  ${l}`);
    }
    wake();
  });
  let exited = false;
  const exit = new Promise<{ code: number | null; err: string }>((resolve) => {
    proc.once('close', (code) => {
      exited = true;
      wake();
      resolve({ code, err: err.trim() });
    });
  });
  const line = (seen: number, limitMs: number): Promise<string> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Missing(`xl ${args.slice(2).join(' ')} printed no line ${seen + 1} within ${limitMs} ms`)), limitMs);
    const check = (): void => {
      if (lines.length > seen) {
        clearTimeout(timer);
        resolve(lines[seen]!);
      } else if (exited) {
        clearTimeout(timer);
        reject(new Missing(`xl ${args.slice(2).join(' ')} exited before printing line ${seen + 1}: ${err.trim()}`));
      } else waiters.push(check);
    };
    check();
  });
  return { proc, what: `xl ${args.slice(2).join(' ')}`, lines, line, exit };
}

/** The child's exit, or a failure (and the child killed) after `limitMs`. */
async function within(c: Child, limitMs: number): Promise<{ code: number | null; err: string }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      c.proc.kill();
      reject(new Missing(`${c.what} did not exit within ${limitMs} ms`));
    }, limitMs);
  });
  try {
    return await Promise.race([c.exit, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Each pattern must match a step's "event: detail", in this order. */
function needSteps(steps: readonly TraceRecord[], pats: readonly RegExp[], side: string): void {
  let from = 0;
  for (const p of pats) {
    const i = steps.findIndex((r, k) => k >= from && p.test(`${r.event}: ${r.detail ?? ''}`));
    need(i >= 0, `the ${side} timeline has no step matching ${p} after step ${from} (${steps.length} steps)`);
    from = i + 1;
  }
}

/** The first step whose event matches `p`. */
function stepOf(steps: readonly TraceRecord[], p: RegExp): TraceRecord {
  const r = steps.find((x) => p.test(x.event));
  need(r !== undefined, `no step ${p} in the timeline`);
  return r!;
}

/** Host ms from step `a` to step `b` (both in one machine's trace). */
function ms(a: TraceRecord, b: TraceRecord): string {
  return `${(b.hostMs - a.hostMs).toFixed(1)} ms`;
}

function stepName(r: TraceRecord): string {
  return r.event === 'XS_WRITE' ? `${r.event} ${r.detail ?? ''}` : r.event;
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'xl.js'))) throw new Error('dist/xl.js is missing: run make');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'xenport-demo-migrate-'));
  kept = `${work}/machine-{a,b}/`;
  const dirA = path.join(work, 'machine-a');
  const dirB = path.join(work, 'machine-b');
  const cfg = path.join(work, 'demo.cfg');
  const disk = path.join(work, 'disk.img');
  fs.writeFileSync(disk, new Uint8Array(16 * 2 ** 20));
  fs.writeFileSync(cfg, config(disk));
  say(`xenport demo-migrate: machine dirs ${dirA} and ${dirB}\n`);
  let startedA = false;
  let startedB = false;
  let receiver: Child | undefined;
  let domidA = 0;
  let domidB = 0;
  try {
    say('== xl machine start (machine A: --scramble 3 --tsc-khz 2400000; machine B: --scramble 17 --tsc-khz 3100000)');
    say(xl(dirA, ['machine', 'start', '--memory', '256M', '--scramble', '3', '--tsc-khz', '2400000']).trim());
    startedA = true;
    say(xl(dirB, ['machine', 'start', '--memory', '256M', '--scramble', '17', '--tsc-khz', '3100000']).trim());
    startedB = true;

    say(`\n== xl create demo.cfg on A (64 MiB netbsd guest, 16 MiB disk image, vif ${IP} on xenbr0, no host forward)`);
    domidA = Number(xl(dirA, ['create', cfg]).trim());
    need(Number.isInteger(domidA) && domidA > 0, 'xl create printed no domid');
    say(`domid ${domidA}; its console until the end of boot:`);
    await followConsole(dirA, 'demo', /^boot complete/, 30_000);

    say('\n== xl list (A)');
    say(xl(dirA, ['list']).trimEnd());
    const xsA = path.join(dirA, 'xenstored.sock');
    const xsB = path.join(dirB, 'xenstored.sock');
    const running = await waitCounters(xsA, domidA, (c) => c['mem/passes']! >= 1 && c['clock/ticks']! >= 3 && c['blk/verified']! >= 8 && c['net/heartbeats']! >= 1, 'the workload counters on A');
    say(`\n== workload counters on A: ${fmt(running)}`);
    noErrors(running, 'on A');
    const pingA = xl(dirA, ['network-ping', 'demo']).trim();
    need(pingA.includes(`from ${IP}`), `xl network-ping on A: ${pingA}`);
    say(`== xl network-ping demo (dom0 10.0.0.1 on A's xenbr0): ${pingA}`);
    const p2mBefore = parseP2m(xl(dirA, ['p2m', 'demo']));
    need(p2mBefore.size > 1000, `xl p2m on A gave ${p2mBefore.size} entries`);
    say(`== xl p2m demo (A): ${p2mBefore.size} pfns`);

    say('\n== xl migrate-receive on B');
    receiver = child(['--dir', dirB, 'migrate-receive'], false);
    const listening = await receiver.line(0, 10_000);
    say(`  ${listening}`);
    const at = /^listening on (\S+:\d+)$/.exec(listening)?.[1];
    need(at !== undefined, `xl migrate-receive's first line: ${JSON.stringify(listening)}`);

    const before = await waitCounters(xsA, domidA, () => true, 'the counters just before the migration');
    say(`\n== workload counters on A just before the migration: ${fmt(before)}`);
    say(`\n== xl migrate demo ${at} (on A, the guest running)`);
    const mstart = performance.now();
    const sender = child(['--dir', dirA, 'migrate', 'demo', at!], true);
    const sent = await within(sender, 60_000);
    timeline.push({ what: `xl migrate demo ${at}`, ms: performance.now() - mstart });
    need(sent.code === 0, `xl migrate failed (exit ${sent.code}): ${sent.err}`);
    const got = await within(receiver, 30_000);
    need(got.code === 0, `xl migrate-receive failed (exit ${got.code}): ${got.err}`);
    domidB = Number(receiver.lines[1]);
    receiver = undefined;
    need(Number.isInteger(domidB) && domidB > 0, 'xl migrate-receive printed no domid');

    const rounds = sender.lines.map((l) => /^round (\d+): (\d+) pages \((pre-copy|final), /.exec(l)).filter((m) => m !== null);
    const summary = /^migrated domain demo to (\S+) \(domid (\d+) there\): (\d+) rounds, (\d+) pre-copy while it ran then (\d+) pages after it suspended via (\w+); (\d+) pages, (\d+) bytes, downtime (\d+) ms: destroyed here$/
      .exec(sender.lines.at(-1) ?? '');
    need(summary !== null, `xl migrate printed no summary line: ${JSON.stringify(sender.lines.at(-1))}`);
    const [, , remote, nRounds, nPre, finalPages, via, pages, bytes, downtime] = summary!;
    need(Number(remote) === domidB, `xl migrate says domid ${remote} there, xl migrate-receive printed ${domidB}`);
    need(rounds.length === Number(nRounds) && rounds.length >= 2, `${rounds.length} round lines for ${nRounds} rounds`);
    need(rounds.every((m, i) => Number(m[1]) === i), 'rounds numbered 0, 1, ...');
    need(rounds.at(-1)![3] === 'final' && rounds.slice(0, -1).every((m) => m[3] === 'pre-copy'), 'pre-copy rounds, then one final round');
    need(Number(rounds[0]![2]) >= p2mBefore.size * 0.9, `round 0 sent ${rounds[0]![2]} pages of ${p2mBefore.size}`);
    say(`== xl migrate-receive (B) printed the new domid: ${domidB}`);
    say(`== migration: ${nRounds} rounds (${nPre} pre-copy while the guest ran: ${rounds.slice(0, -1).map((m) => m[2]).join(' + ')} pages; then ${finalPages} pages after it suspended via ${via}),`
      + ` ${pages} pages / ${(Number(bytes) / 2 ** 20).toFixed(1)} MiB on the wire, downtime ${downtime} ms`);

    say('\n== xl list (A) after the migration');
    const listA = xl(dirA, ['list']);
    say(listA.trimEnd());
    need(listRows(listA).every((r) => r[0] === 'Domain-0'), 'the domain (or its --migratedaway copy) is still listed on A');
    say('== xl list (B) after the migration');
    const listB = xl(dirB, ['list']);
    say(listB.trimEnd());
    const onB = listRows(listB).find((r) => r[0] === 'demo');
    need(onB !== undefined && onB[1] === domidB && /^[r-][b-]----$/.test(onB[2]), `demo is not running on B as domid ${domidB}`);

    const after = await waitCounters(xsB, domidB, (c) => c['clock/ticks']! > before['clock/ticks']! && c['mem/passes']! > before['mem/passes']!
      && c['blk/verified']! > before['blk/writes']! && c['net/heartbeats']! > before['net/heartbeats']!, 'the counters to carry on on B');
    say(`\n== workload counters on B after the migration: ${fmt(after)}`);
    noErrors(after, 'on B');
    const later = await waitCounters(xsB, domidB, (c) => c['clock/ticks']! > after['clock/ticks']! + 10 && c['blk/writes']! > after['blk/writes']!
      && c['mem/passes']! > after['mem/passes']!, 'the counters to keep growing on B');
    say(`== workload counters on B a little later:      ${fmt(later)}`);
    noErrors(later, 'on B later');
    say(`== blk: all ${before['blk/writes']} blocks written on A before the migration were read back and verified on B (verified ${before['blk/verified']} -> ${after['blk/verified']}), errors ${later['blk/errors']}`);
    say(`== clock: ticks ${before['clock/ticks']} on A -> ${after['clock/ticks']} -> ${later['clock/ticks']} on B, backwards ${later['clock/backwards']}; mem passes ${before['mem/passes']} -> ${later['mem/passes']}, errors ${later['mem/errors']}`);

    const p2mAfter = parseP2m(xl(dirB, ['p2m', 'demo']));
    need(p2mAfter.size === p2mBefore.size, `${p2mBefore.size} pfns on A, ${p2mAfter.size} on B`);
    let moved = 0;
    for (const [pfn, mfn] of p2mBefore) if (p2mAfter.get(pfn) !== mfn) moved++;
    need(moved > p2mBefore.size / 2, `only ${moved} of ${p2mBefore.size} pfns moved to other machine frames`);
    say(`== P2M (xl p2m on A before, on B after): ${moved} of ${p2mBefore.size} pfns are on other machine frames now (${p2mAfter.size} pfns on B)`);

    // The console log is written as the daemon flushes its logs: wait for the line.
    const log = path.join(dirB, 'console', `${domidB}.log`);
    let resumed: string[] = [];
    for (const deadline = performance.now() + 10_000; resumed.length === 0; await new Promise((res) => setTimeout(res, 100))) {
      if (fs.existsSync(log)) resumed = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /^xen_suspend: resumed/.test(l));
      if (resumed.length === 0 && performance.now() > deadline) throw new Missing(`${log} has no "xen_suspend: resumed" line`);
    }
    say(`== the guest's console on B (${path.basename(log)}):`);
    for (const l of resumed) say(`  | ${l}`);

    const pingB = xl(dirB, ['network-ping', 'demo']).trim();
    need(pingB.includes(`from ${IP}`), `xl network-ping on B: ${pingB}`);
    say(`\n== xl network-ping demo (dom0 10.0.0.1 on B's xenbr0): ${pingB}`);
    const info = JSON.parse(xl(dirB, ['network-info'])) as { gratuitousArps: { mac: string; ip: string; port: string; bridge: string; op: string }[] };
    const garps = info.gratuitousArps.filter((g) => g.mac === MAC);
    need(garps.length > 0, 'B\'s bridge saw no gratuitous ARP from the guest');
    for (const g of garps) say(`== xl network-info (B): gratuitous ARP ${g.op} ${g.ip} is-at ${g.mac} on ${g.bridge} port ${g.port}`);

    say('\n== xl destroy demo (B); xl machine stop (B, A)');
    xl(dirB, ['destroy', 'demo']);
    say(xl(dirB, ['machine', 'stop']).trim());
    startedB = false;
    say(xl(dirA, ['machine', 'stop']).trim());
    startedA = false;
  } finally {
    if (receiver !== undefined && receiver.proc.exitCode === null) receiver.proc.kill();
    if (startedA) spawnSync(XL, ['--dir', dirA, 'machine', 'stop'], { encoding: 'utf8' });
    if (startedB) spawnSync(XL, ['--dir', dirB, 'machine', 'stop'], { encoding: 'utf8' });
    fs.rmSync(disk, { force: true });
  }

  sayTimeline();

  const send = migrateSendSteps(readTrace(path.join(dirA, 'trace.jsonl')), domidA);
  need(send.length > 0, `machine A's trace holds no complete migration of d${domidA}`);
  needSteps(send, [/^migrate: banner received/, /^domctl shadow_op: log-dirty on/, /^pre-copy round 0 sent/, /^pre-copy done/, /^suspend requested/,
    /^SCHEDOP_shutdown: suspend/, /^SHUTDOWN_suspend seen/, /^final round sent/, /^image written/, /^domctl shadow_op: log-dirty off/,
    /^migrate: ready received/, /^migrate: go sent/, /^migrate: started received/, /^domctl destroydomain/], 'sender');
  say(`\n== timeline of the protocol: xl migrate of d${domidA}, the sending side (machine A's trace.jsonl)`);
  for (const l of formatTimeline(send)) say(l);
  const [s0, sLast] = [send[0]!, send[send.length - 1]!];
  say(`  ${stepName(s0)} -> ${stepName(sLast)}: ${ms(s0, sLast)} (pre-copy while the guest ran: ${ms(stepOf(send, /^domctl shadow_op/), stepOf(send, /^pre-copy done/))};`
    + ` suspend requested -> started received: ${ms(stepOf(send, /^suspend requested/), stepOf(send, /^migrate: started received/))})`);

  const recv = migrateReceiveSteps(readTrace(path.join(dirB, 'trace.jsonl')), domidB);
  need(recv.length > 0, `machine B's trace holds no complete incoming migration into d${domidB}`);
  needSteps(recv, [/^migrate: sender connected/, /^stream read started/, /^stream header ok/, /^domain created/, /^pages populated and written/,
    /^page tables localized/, /^M2P updated/, /^P2M rewritten/, /^start_info rewritten/, /^shared_info rewritten/, /^vcpu context set/,
    /^XS_INTRODUCE/, /^devices attached/, /^migrate: ready sent/, /^migrate: go received/, /^domctl unpausedomain/, /^shared_info mapped/,
    /^set_callbacks/, /^GNTTABOP_setup_table/, /^EVTCHNOP_bind_virq/], 'receiver');
  needSteps(recv, [/^domctl unpausedomain/, /^migrate: started sent/], 'receiver');
  needSteps(recv, [/^domctl unpausedomain/, /^XS_WRITE: device\/vbd\/\d+\/state = 4 \(Connected\)/], 'receiver');
  needSteps(recv, [/^domctl unpausedomain/, /^XS_WRITE: device\/vif\/\d+\/state = 4 \(Connected\)/], 'receiver');
  say(`\n== timeline of the protocol: xl migrate-receive into d${domidB}, the receiving side (machine B's trace.jsonl)`);
  for (const l of formatTimeline(recv)) say(l);
  const [r0, rLast, unpaused] = [recv[0]!, recv[recv.length - 1]!, stepOf(recv, /^domctl unpausedomain$/)];
  say(`  ${stepName(r0)} -> ${stepName(rLast)}: ${ms(r0, rLast)} (to ready sent: ${ms(r0, stepOf(recv, /^migrate: ready sent/))};`
    + ` go received -> domctl unpausedomain: ${ms(stepOf(recv, /^migrate: go received/), unpaused)}; then ${ms(unpaused, rLast)})`);
  say('  (at ms / took ms: host time in that machine process, from the first step / until the next step - the two machine');
  say('   processes have their own host clocks, so A\'s and B\'s columns do not line up; system time: the machine\'s Xen system');
  say('   time, which the guest reads from vcpu_time_info; by: xen = seen at the hypercall gate, toolstack = the migration and');
  say('   the machine host, xenstored = requests it received)');
  say(`\n== kept for reading: ${work}/machine-{a,b}/ (machine.log, trace.jsonl, console/) and demo.cfg; the disk image was removed`);
}

main().catch((e: unknown) => {
  // One line: a child's multi-line stderr is folded into it.
  const why = (e instanceof Error ? e.message : String(e)).trim().split('\n').map((l) => l.trim()).filter((l) => l !== '').join(' | ');
  process.stderr.write(`demo-migrate failed: ${why}${kept === '' ? '' : ` (logs and traces kept in ${kept})`}\n`);
  process.exit(1);
});
