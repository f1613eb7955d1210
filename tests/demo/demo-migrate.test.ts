/*
 * `make demo-migrate`, run as the suite runs `make demo`: the built demo
 * (bin/demo-migrate.js beside this test's build) against two real machine
 * daemons through ./bin/xl and Debian's xenstore-read. The demo throws on
 * any missing piece of evidence; here its output is read back as well, so
 * that what it prints stays what the README promises: xl's rounds and
 * summary, the domain gone from A and running on B, the counters carried
 * on with no error, the blocks written on A verified on B, the P2M moved,
 * the guest's resume line, the ping on B's bridge, and both sides of the
 * migration in the protocol timelines, in the protocol's order.
 */
import test from 'ava';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { builtDemo, runDemo, section, missing } from './run-demo.js';

const DEMO = builtDemo('demo-migrate.js');

test('make demo-migrate: xl migrate from machine A to machine B while the guest runs; the evidence and both sides of the protocol are printed', async (t) => {
  t.timeout(120_000);
  t.true(existsSync(DEMO), `${DEMO} is missing: the demo is built with the tests`);
  const r = await runDemo(DEMO);
  const dir = /^xenport demo-migrate: machine dirs (.*)\/machine-a and /m.exec(r.out)?.[1];
  t.teardown(() => {
    if (dir !== undefined && path.basename(dir).startsWith('xenport-demo-migrate-')) rmSync(dir, { recursive: true, force: true });
  });
  t.is(r.code, 0, `the demo failed:\n${r.err}\n${r.out.slice(-3000)}`);
  t.is(r.err, '', 'nothing on stderr');
  const out = r.out;

  // xl's rounds and its summary.
  const rounds = [...out.matchAll(/^ {2}round (\d+): (\d+) pages \((pre-copy|final), the guest (running|suspended)\)$/gm)];
  t.true(rounds.length >= 2, `xl migrate's round lines:\n${out}`);
  t.deepEqual(rounds.map((m) => Number(m[1])), rounds.map((_, i) => i), 'rounds numbered 0, 1, ...');
  t.is(rounds.at(-1)?.[3], 'final');
  t.true(rounds.slice(0, -1).every((m) => m[3] === 'pre-copy'));
  t.true(Number(rounds[0]?.[2]) > 16000, 'the first pass sends (nearly) every page of 64 MiB');
  const summary = /^ {2}migrated domain demo to 127\.0\.0\.1:\d+ \(domid (\d+) there\): (\d+) rounds, .* downtime (\d+) ms: destroyed here$/m.exec(out);
  t.truthy(summary, 'xl migrate\'s summary line');
  t.is(Number(summary?.[2]), rounds.length, 'as many rounds as round lines');
  t.regex(out, /^== migration: \d+ rounds \(\d+ pre-copy while the guest ran: .* pages; then \d+ pages after it suspended via \w+\), \d+ pages \/ [\d.]+ MiB on the wire, downtime \d+ ms$/m);
  const nd = Number(summary?.[1]);
  t.regex(out, new RegExp(`^== xl migrate-receive \\(B\\) printed the new domid: ${nd}$`, 'm'));

  // Gone from A, running on B.
  const listA = section(out, 'xl list (A) after the migration').filter((l) => l !== '');
  t.deepEqual(listA.slice(1).map((l) => l.split(/\s+/)[0]), ['Domain-0'], `A's list:\n${listA.join('\n')}`);
  const listB = section(out, 'xl list (B) after the migration').filter((l) => l !== '');
  const demoB = listB.map((l) => l.trim().split(/\s+/)).find((f) => f[0] === 'demo');
  t.is(Number(demoB?.[1]), nd, `B's list:\n${listB.join('\n')}`);

  // The workload carried on on B.
  const counters = (title: string): Record<string, number> => {
    const line = out.split('\n').find((l) => l.startsWith(`== ${title}: `)) ?? '';
    return Object.fromEntries([...line.matchAll(/(\w+\/\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  };
  const before = counters('workload counters on A just before the migration');
  const after = counters('workload counters on B after the migration');
  const later = counters('workload counters on B a little later');
  for (const k of ['blk/writes', 'blk/verified', 'mem/passes', 'clock/ticks', 'net/heartbeats']) {
    t.true(after[k]! > before[k]!, `${k}: ${before[k]} on A before, ${after[k]} on B after`);
  }
  for (const k of ['blk/writes', 'mem/passes', 'clock/ticks']) t.true(later[k]! > after[k]!, `${k} keeps growing on B: ${after[k]} -> ${later[k]}`);
  for (const k of ['blk/errors', 'net/errors', 'mem/errors', 'clock/backwards']) {
    t.is(after[k], 0, `${k} after`);
    t.is(later[k], 0, `${k} later`);
  }
  t.true(after['blk/verified']! > before['blk/writes']!, 'every block written on A verified on B');
  t.regex(out, new RegExp(`^== blk: all ${before['blk/writes']} blocks written on A before the migration were read back and verified on B`, 'm'));

  const p2m = /^== P2M \(xl p2m on A before, on B after\): (\d+) of (\d+) pfns are on other machine frames now/m.exec(out);
  t.truthy(p2m, 'the P2M summary is printed');
  t.true(Number(p2m?.[1]) >= Number(p2m?.[2]) * 0.9, `moved ${p2m?.[1]} of ${p2m?.[2]}`);
  t.regex(out, /^ {2}\| xen_suspend: resumed in a new domain \(restore 1\)/m, 'the guest\'s resume line from B\'s console log');
  t.regex(out, /^== xl network-ping demo \(dom0 10\.0\.0\.1 on B's xenbr0\): 64 bytes from 10\.0\.0\.53: icmp_seq=\d+ ttl=64 time=[\d.]+ ms$/m);
  t.regex(out, /^== xl network-info \(B\): gratuitous ARP \w+ 10\.0\.0\.53 is-at 00:16:3e:00:00:53 on xenbr0/m);

  // Both sides of the protocol, in its order.
  const send = section(out, 'timeline of the protocol: xl migrate of');
  t.deepEqual(missing(send, [/migrate: banner received/, /domctl shadow_op: log-dirty on/, /pre-copy round 0 sent/, /pre-copy done/,
    /suspend requested/, /SCHEDOP_shutdown: suspend/, /SHUTDOWN_suspend seen/, /final round sent/, /image written/,
    /domctl shadow_op: log-dirty off/, /migrate: ready received/, /migrate: go sent/, /migrate: started received/, /domctl destroydomain/]), [],
  `the sending side's steps, in order:\n${send.join('\n')}`);
  const recv = section(out, 'timeline of the protocol: xl migrate-receive into');
  t.deepEqual(missing(recv, [/migrate: sender connected/, /stream read started/, /stream header ok/, /domain created/,
    /pages populated and written/, /page tables localized/, /M2P updated/, /P2M rewritten/, /start_info rewritten/, /shared_info rewritten/,
    /vcpu context set/, /XS_INTRODUCE/, /devices attached/, /migrate: ready sent/, /migrate: go received/, /domctl unpausedomain/,
    /shared_info mapped/, /set_callbacks/, /GNTTABOP_setup_table/, /EVTCHNOP_bind_virq/]), [],
  `the receiving side's steps, in order:\n${recv.join('\n')}`);
  for (const fe of [/migrate: started sent/, /device\/vbd\/51712\/state = 4 \(Connected\)/, /device\/vif\/0\/state = 4 \(Connected\)/]) {
    t.deepEqual(missing(recv, [/domctl unpausedomain/, fe]), [], `${fe} after the unpause`);
  }
  for (const l of [...send, ...recv].filter((x) => /^\s+\d+\.\d+\s/.test(x))) {
    t.regex(l, /^\s+\d+\.\d+\s+(\d+\.\d+)?\s+\d+\.\d+ s\s+(d\d+|-)\s/, `a timeline line: ${l}`);
  }

  // The logs and traces are kept, the disk image is not.
  t.regex(out, /^== kept for reading: .*machine-\{a,b\}\/ .*the disk image was removed$/m);
  if (dir !== undefined) {
    t.true(existsSync(path.join(dir, 'machine-a', 'trace.jsonl')) && existsSync(path.join(dir, 'machine-b', 'trace.jsonl')), 'both traces kept');
    t.false(existsSync(path.join(dir, 'disk.img')), 'the disk image removed');
  } else {
    t.fail('the demo did not say where its machines are');
  }
});
