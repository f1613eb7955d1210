/*
 * The guest workloads (sys/workloads) on the netbsd image, on a real
 * machine (MachineHost, simulated clock): counters in xenstore under
 * data/workload/<name>/, growing, published at least every 100 ms of
 * guest time, readable by Debian's xenstore-read over the machine's
 * xenstored socket; the mem verifier catches a page changed behind its
 * back; the clock check holds.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { host, boot, config, consoleText, drive, node, runFor } from '../ctrlif/fixture.js';
import { run } from '../xenstored/peers.js';
import { ctrlIfSaveRestore } from '../ctrlif/restore-fixture.js';

const MS = 1_000_000;

function counter(h: MachineHost, domid: number, wl: string, name: string): number {
  const v = node(h, `/local/domain/${domid}/data/workload/${wl}/${name}`);
  return v === undefined ? NaN : Number(v);
}

function counters(h: MachineHost, domid: number, wl: string, names: readonly string[]): Record<string, number> {
  return Object.fromEntries(names.map((n) => [n, counter(h, domid, wl, n)]));
}

const MEM = ['passes', 'errors', 'rewrites', 'pages'] as const;
const CLOCK = ['ticks', 'backwards', 'wallclock_skew_ms', 'wallclock_resyncs'] as const;

/**
 * Wait for the framework's "workload: started ..." line. A boot path whose
 * init cannot run a list says 'init: no workload "a,b"': say what is missing.
 */
async function started(t: ExecutionContext, h: MachineHost, domid: number, names: string): Promise<void> {
  await drive(t, h, () => /workload: started |init: no workload "/.test(consoleText(h, domid)), 'the workloads start');
  const out = consoleText(h, domid);
  if (/init: no workload "[^"]*,/.test(out)) {
    const why = 'init does not run workload lists: xen_init_main must run the kernel symbol workload_list when workload= names several (sys/workloads/workload.ts)';
    t.fail(why);
    throw new Error(why);
  }
  t.regex(out, new RegExp(`workload: started ${names}\n`));
}

async function waitCounter(t: ExecutionContext, h: MachineHost, domid: number, wl: string, name: string, atLeast: number): Promise<void> {
  await drive(t, h, () => counter(h, domid, wl, name) >= atLeast, `data/workload/${wl}/${name} >= ${atLeast}`);
}

test('workload=mem,clock: both run as threads; their counters appear under data/workload and grow; no errors, clock sound', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-both', 'workload=mem,clock mem_mb=2 dirty_rate=200 wl_summary=1'));
  const d = b.domid;
  await started(t, h, d, 'mem, clock');
  await waitCounter(t, h, d, 'mem', 'passes', 2);
  await waitCounter(t, h, d, 'clock', 'ticks', 100);
  const first = { mem: counters(h, d, 'mem', MEM), clock: counters(h, d, 'clock', CLOCK) };
  await runFor(h, 1000 * MS);
  const later = { mem: counters(h, d, 'mem', MEM), clock: counters(h, d, 'clock', CLOCK) };
  t.is(later.mem['pages'], 512, '2 MiB of pages');
  t.true(later.mem['passes']! > first.mem['passes']!, `passes grow: ${first.mem['passes']} -> ${later.mem['passes']}`);
  t.true(later.mem['rewrites']! >= first.mem['rewrites']! + 150, `about 200 rewrites a second: ${first.mem['rewrites']} -> ${later.mem['rewrites']}`);
  t.is(later.mem['errors'], 0);
  t.true(later.clock['ticks']! >= first.clock['ticks']! + 90, `a tick's sample every 10 ms: ${first.clock['ticks']} -> ${later.clock['ticks']}`);
  t.is(later.clock['backwards'], 0);
  t.is(later.clock['wallclock_skew_ms'], 0);
  t.is(later.clock['wallclock_resyncs'], 0);
  for (const wl of ['mem', 'clock']) t.is(node(h, `/local/domain/${d}/data/workload/${wl}/status`), 'running');
  const out = consoleText(h, d);
  t.regex(out, /mem: 512 pages \(2 MiB\) filled, page 0 at pfn \d+, seed 1, rewriting 200 pages\/s\n/);
  t.regex(out, /workload mem: running, passes \d+, errors 0, rewrites \d+, pages 512\n/, 'a summary line a second');
  t.regex(out, /workload clock: running, ticks \d+, backwards 0, wallclock_skew_ms 0, wallclock_resyncs 0\n/);
  t.deepEqual(h.m.log.bugs, []);
});

test('workload=clock alone (init runs workload_clock itself): counters are rewritten at least every 100 ms of guest time', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-clock', 'workload=clock'));
  await waitCounter(t, h, b.domid, 'clock', 'ticks', 1);
  let last = counter(h, b.domid, 'clock', 'ticks');
  for (let i = 0; i < 20; i++) {
    await runFor(h, 100 * MS);
    const now = counter(h, b.domid, 'clock', 'ticks');
    t.true(now > last, `sample ${i}: ticks ${last} -> ${now} within 100 ms`);
    last = now;
  }
  t.regex(consoleText(h, b.domid), /workload: started clock\n/);
});

test('mem: a page changed behind the verifier\'s back is found once, reported, repaired', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-corrupt', 'workload=mem mem_mb=1 dirty_rate=0'));
  await waitCounter(t, h, b.domid, 'mem', 'passes', 1);
  const m = /page 0 at pfn (\d+)/.exec(consoleText(h, b.domid));
  t.truthy(m, 'the fill line names page 0');
  const pfn = Number(m?.[1]);
  const f = h.m.xc.foreignFrame(b.domid, b.p2m[pfn]!, true);
  if (typeof f === 'number') throw new Error(`foreign frame: ${f}`);
  const word = f.mem.getUint32(40, true);
  f.write(40, Uint8Array.of(~word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, (word >>> 24) & 0xff));
  const passes = counter(h, b.domid, 'mem', 'passes');
  await waitCounter(t, h, b.domid, 'mem', 'passes', passes + 3);
  t.is(counter(h, b.domid, 'mem', 'errors'), 1, 'counted once: the page was repaired');
  t.regex(consoleText(h, b.domid), new RegExp(`mem: page 0 \\(pfn ${pfn}\\) generation 0: word 10 is [0-9a-f]{8}, expected ${word.toString(16).padStart(8, '0')}\\n`));
});

test('an unknown workload is said so; the others run', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-unknown', 'workload=clock,nosuch'));
  await started(t, h, b.domid, 'clock');
  await waitCounter(t, h, b.domid, 'clock', 'ticks', 10);
  t.regex(consoleText(h, b.domid), /workload: no workload "nosuch" in this kernel\n/);
});

test('Debian xenstore-read on the machine\'s xenstored socket reads the counters the guest publishes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenport-wl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'xenstored.sock');
  const h = await host(t, undefined, { xenstoredSocket: sock });
  const b = await boot(t, h, config('g-deb', 'workload=mem,clock mem_mb=1'));
  await started(t, h, b.domid, 'mem, clock');
  await waitCounter(t, h, b.domid, 'mem', 'passes', 1);
  await waitCounter(t, h, b.domid, 'clock', 'ticks', 20);
  const base = `/local/domain/${b.domid}/data/workload`;
  const env = { ...process.env, XENSTORED_PATH: sock };
  const r = await run('xenstore-read', [`${base}/clock/ticks`, `${base}/clock/backwards`, `${base}/mem/errors`, `${base}/mem/passes`], env);
  t.is(r.code, 0, r.stderr);
  const [ticks, backwards, errors, passes] = r.stdout.trim().split('\n').map(Number);
  t.true(ticks! >= 20, `ticks ${ticks}`);
  t.is(backwards, 0);
  t.is(errors, 0);
  t.true(passes! >= 1);
  const ls = await run('xenstore-ls', [base], env);
  t.is(ls.code, 0, ls.stderr);
  t.regex(ls.stdout, /^mem = ""$/m);
  t.regex(ls.stdout, /^ passes = "\d+"$/m);
  t.regex(ls.stdout, /^ wallclock_skew_ms = "0"$/m);
});

test('mem carries on across a save and restore: the pattern verifies in the new domain, errors 0', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-memsave', 'workload=mem mem_mb=1 dirty_rate=300'));
  await waitCounter(t, h, b.domid, 'mem', 'passes', 2);
  const rewritesBefore = counter(h, b.domid, 'mem', 'rewrites');
  const r = await ctrlIfSaveRestore(t, h, b, false);
  // A new domain starts with an empty data/: everything is published again, unchanged counters too.
  await drive(t, h, () => MEM.every((c) => !Number.isNaN(counter(h, r.domid, 'mem', c))), 'every mem counter in the new domain');
  t.is(node(h, `/local/domain/${r.domid}/data/workload/mem/status`), 'running');
  t.is(counter(h, r.domid, 'mem', 'pages'), 256);
  await waitCounter(t, h, r.domid, 'mem', 'passes', counter(h, r.domid, 'mem', 'passes') + 3);
  t.is(counter(h, r.domid, 'mem', 'errors'), 0);
  t.true(counter(h, r.domid, 'mem', 'rewrites') > rewritesBefore, 'rewrites carried on');
  t.false(consoleText(h, r.domid).includes('mem: page'), 'no page reported');
});
