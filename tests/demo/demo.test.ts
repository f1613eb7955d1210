/*
 * `make demo` is the project's main job, so the test suite runs it: the
 * built demo (bin/demo.js beside this test's build) against real machine
 * daemons through ./bin/xl, Debian's xenstore-read and Xen's
 * verify-stream-v2. The demo throws on any missing piece of evidence;
 * here its output is also read back, so that what it prints stays what
 * the README promises: the image accepted, the counters carried on, the
 * echo answered, the gratuitous ARP seen, the P2M moved, and both
 * protocol timelines with the steps of ARCHITECTURE §6 in them.
 */
import test from 'ava';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { builtDemo, runDemo, section, inOrder } from './run-demo.js';

const DEMO = builtDemo('demo.js');

test('make demo: boot, save, verify-stream-v2, a new machine process, restore; the evidence and both protocol timelines are printed', async (t) => {
  t.timeout(180_000);
  t.true(existsSync(DEMO), `${DEMO} is missing: the demo is built with the tests`);
  const r = await runDemo(DEMO);
  const dir = /^xenport demo: machine dir (.*)\/machine-a$/m.exec(r.out)?.[1];
  t.teardown(() => {
    if (dir !== undefined && path.basename(dir).startsWith('xenport-demo-')) rmSync(dir, { recursive: true, force: true });
  });
  t.is(r.code, 0, `the demo failed:\n${r.err}\n${r.out.slice(-3000)}`);
  const out = r.out;

  t.regex(out, /^ {2}accepted \(\d+ bytes\)$/m, "Xen's verify-stream-v2 accepted the image");
  t.regex(out, /answer "hello before the save"/);
  t.regex(out, /answer "hello after the restore"/, 'the echo answers through the new machine');
  t.regex(out, /gratuitous ARP request 10\.0\.0\.52 is-at 00:16:3e:00:00:52 on xenbr0/);

  const counters = (title: string): Record<string, number> => {
    const line = out.split('\n').find((l) => l.startsWith(`== ${title}: `)) ?? '';
    return Object.fromEntries([...line.matchAll(/(\w+\/\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  };
  const before = counters('workload counters just before the save');
  const after = counters('workload counters after the restore');
  for (const k of ['blk/writes', 'blk/verified', 'mem/passes', 'clock/ticks', 'net/heartbeats']) {
    t.true(after[k]! > before[k]!, `${k}: ${before[k]} before the save, ${after[k]} after the restore`);
  }
  for (const k of ['blk/errors', 'net/errors', 'mem/errors', 'clock/backwards']) t.is(after[k], 0, k);

  const p2m = /^== P2M: (\d+) of (\d+) pfns are on other machine frames now/m.exec(out);
  t.truthy(p2m, 'the P2M summary is printed');
  t.true(Number(p2m?.[1]) >= Number(p2m?.[2]) * 0.9, `moved ${p2m?.[1]} of ${p2m?.[2]}`);
  t.regex(out, /resumed in a new domain \(restore 1\)/);

  const save = section(out, 'timeline of the protocol: xl save');
  t.deepEqual(inOrder(save, [/suspend requested/, /shared_info unmapped/, /SCHEDOP_shutdown: suspend, rdx = start_info mfn/,
    /SHUTDOWN_suspend seen/, /pages written/, /image written/, /domctl destroydomain/]).filter((i) => i < 0), [],
  `the save's protocol steps, in order:\n${save.join('\n')}`);
  const restore = section(out, 'timeline of the protocol: xl restore');
  t.deepEqual(inOrder(restore, [/stream header ok/, /domain created/, /page tables localized/, /P2M rewritten/, /start_info rewritten/,
    /shared_info rewritten/, /XS_INTRODUCE/, /domctl unpausedomain/, /shared_info mapped/, /set_callbacks/, /GNTTABOP_setup_table/,
    /EVTCHNOP_bind_virq/, /XS_WATCH/, /device\/vbd\/51712\/state = 4 \(Connected\)/]).filter((i) => i < 0), [],
  `the restore's protocol steps, in order:\n${restore.join('\n')}`);
  for (const l of [...save, ...restore].filter((x) => /^\s+\d+\.\d+\s/.test(x))) {
    t.regex(l, /^\s+\d+\.\d+\s+(\d+\.\d+)?\s+\d+\.\d+ s\s+d\d+|^\s+\d+\.\d+\s+(\d+\.\d+)?\s+\d+\.\d+ s\s+-\s/, `a timeline line: ${l}`);
  }
});
