/*
 * Chained across OS processes: two machine daemons A and B (other frame
 * scrambles, other TSC frequencies). A netbsd guest (workload=mem,clock)
 * is saved on A and restored on B, saved on B and restored on A, ... 20
 * cycles, each restore into the other machine process. After each restore
 * the counters carry on (clock ticks, mem passes and blk verified past the
 * values before the save) with no error and no backwards clock; every image passes Xen's
 * verify-stream-v2 -f xl (run alongside the next cycles).
 */
import test from 'ava';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from './fixture.js';
import { XEN_PYTHONPATH, startMachine, tempDir, until, verifyStream } from './fixture.js';

const COUNTERS = ['blk/writes', 'blk/verified', 'blk/errors', 'mem/passes', 'mem/errors', 'clock/ticks', 'clock/backwards'] as const;

const CYCLES = 20;

test(`${CYCLES} chained save/restore cycles between two machine processes`, async (t) => {
  t.true(existsSync(join(XEN_PYTHONPATH, 'xen', 'migration', 'libxc.py')), `Xen's python modules under ${XEN_PYTHONPATH}`);
  const t0 = Date.now();
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '3', '--tsc-khz', '2400000']);
  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '29', '--tsc-khz', '3100000']);
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(16 * 2 ** 20));
  const cfg = join(dir, 'chain.cfg');
  writeFileSync(cfg, `name = "chain"\nkernel = "netbsd"\nmemory = 32\ndisk = [ 'file:${disk},xvda,w' ]\nextra = "workload=blk,mem,clock mem_mb=2"\n`);
  const domid = Number((await a.ok(t, ['create', cfg])).trim());
  const first = await until('the counters', 90_000, async () => {
    const c = await a.counters(domid, COUNTERS);
    return c !== undefined && Object.values(c).every(Number.isFinite) && c['blk/verified']! >= 8 && c['mem/passes']! >= 1 && c['clock/ticks']! >= 2 ? c : undefined;
  });
  t.is(first['blk/errors'], 0);
  let m: Machine = a;
  let d = domid;
  let last = first;
  const verified: Promise<void>[] = [];
  const times: number[] = [];
  for (let i = 1; i <= CYCLES; i++) {
    const c0 = Date.now();
    const img = join(dir, `chain-${i}.img`);
    const before = (await m.counters(d, COUNTERS))!;
    const saved = await m.ok(t, ['save', 'chain', img]);
    t.regex(saved, /: destroyed\n$/, `save ${i}`);
    const verifying = verifyStream(img);
    const to: Machine = m === a ? b : a;
    const nd = Number((await to.ok(t, ['restore', img])).trim());
    verified.push(verifying.then((v) => {
      t.is(v.code, 0, `verify-stream-v2 -f xl, image ${i}:\n${v.out}${v.err}`);
      rmSync(img, { force: true });
    }));
    t.true(nd > 0, `restore ${i}`);
    const after = await until(`the counters to grow after restore ${i}`, 60_000, async () => {
      const c = await to.counters(nd, COUNTERS);
      return c !== undefined && c['clock/ticks']! > before['clock/ticks']! && c['mem/passes']! > before['mem/passes']! &&
        c['blk/verified']! > before['blk/verified']! ? c : undefined;
    });
    t.is(after['blk/errors'], 0, `blk errors after restore ${i}`);
    t.is(after['mem/errors'], 0, `mem errors after restore ${i}`);
    t.is(after['clock/backwards'], 0, `clock backwards after restore ${i}`);
    t.true(after['clock/ticks']! > last['clock/ticks']!, `ticks carry on after restore ${i}`);
    last = after;
    m = to;
    d = nd;
    times.push(Date.now() - c0);
  }
  await Promise.all(verified);
  t.is(m, a, 'the guest ends where it started (an even number of cycles)');
  const ms = Date.now() - t0;
  t.log(`${CYCLES} cycles in ${ms} ms (per cycle: ${times.join(' ')} ms); from ${JSON.stringify(first)} to ${JSON.stringify(last)}`);
});
