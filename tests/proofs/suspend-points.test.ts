/*
 * Issue 7, "suspend at every point": a netbsd guest (blk,net,clock; a disk
 * and a vif; a heartbeat every 10 ms so its TX ring is busy too) is asked
 * to suspend (control/shutdown = "suspend"), then exactly k machine steps
 * (Machine.step: one vCPU entry, or a timer jump) run, then one outside
 * event is injected between step k and k+1, and shown to be non-empty:
 *   backend   blkback and netback are held (their poll does nothing) from
 *             before the request until the injection, so requests wait on
 *             the rings; then they poll, and dom0 ticks. Proved from the
 *             guest's memory (the rings' shared indices, the page its
 *             ring-ref grants): xbd0's ring and xennet0's TX ring had
 *             requests waiting, and rsp_prod moved over every one of them.
 *   xenstore  a host write to a watched node (xbd0's backend state, again
 *             Connected) and to the guest's data/ (not watched). Proved:
 *             the guest's connection watches the first, and its watch
 *             event is in the guest's store ring (between rsp_prod before
 *             and after the writes), nothing left queued in xenstored.
 *   timer     the clock jumps 10 ms. Proved: the guest's one-shot timer
 *             was armed and is due after the jump; the timers then run
 *             (what the next step does first), it fires, and VIRQ_TIMER
 *             goes from clear to pending in the guest's shared_info.
 * then the suspend finishes, the domain is saved (the image passes
 * checkImage and Xen's verify-stream-v2 -f xl) and restored into a new
 * machine, and: no blk error, the disk file's blocks check with the
 * workload's own checker, xbd0 and xennet0 Connected again, the counters
 * go on. One guest goes through all the cycles (a chain of machines).
 *
 * The path length L (steps from the request to SHUTDOWN_suspend; 6 at
 * the time of writing: each step is a whole vCPU entry) is the shortest
 * path of the first three cycles (k = 0, each event; an event can make the
 * path longer: a completion or a tick wakes the guest). Up to L = 24 every
 * other k in 1..L-1 gets all three events (3L cycles in all); a longer
 * path is sampled (1..4, a sparse middle, L-4..L-1; all three events at
 * the end, one in turn elsewhere). Each cycle logs its own path length and
 * what its event did, in parentheses.
 */
import test, { type ExecutionContext } from 'ava';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import {
  tempDir, diskImage, e2eHost, guestConfig, boot, counter, waitCounter, drive, runFor, consoleText, scanDisk, node, turn, MS,
} from '../e2e/fixture.js';
import {
  suspended, saveImage, nextHost, restoreImage, connected, imageProblems, xenVerify, VBD,
  frontRings, unanswered, published, holdBackends, storeMark, watchEventsSince, watchedAs, timerVirq,
} from './fixture.js';

type Kind = 'backend' | 'xenstore' | 'timer';
const KINDS: readonly Kind[] = ['backend', 'xenstore', 'timer'];

/**
 * Inject the event, and prove it was one: each check below fails if the
 * event was empty at this step. Returns what it saw, for the log.
 */
async function inject(t: ExecutionContext, h: MachineHost, d: number, kind: Kind, at: string, release: () => void): Promise<string> {
  if (kind === 'backend') {
    // Held since before the request: what the guest queued is still on its rings.
    const before = frontRings(h, d);
    const waiting = { blk: unanswered(before.blk), tx: unanswered(before.tx) };
    release();
    const served = h.backends.blkback.poll();
    h.backends.netback.poll();
    h.backends.tick();
    const after = frontRings(h, d);
    const got = { blk: published(before.blk, after.blk), tx: published(before.tx, after.tx), rx: published(before.rx, after.rx) };
    t.true(waiting.blk > 0, `${at}: xbd0 has requests waiting on its ring (guest memory: ${JSON.stringify(before.blk)})`);
    t.is(got.blk, waiting.blk, `${at}: blkback answers every waiting request on xbd0's ring (rsp_prod in guest memory)`);
    t.is(served, got.blk, `${at}: blkback's poll took as many requests as it answered`);
    t.true(waiting.tx > 0, `${at}: xennet0 has transmits waiting on its TX ring (guest memory: ${JSON.stringify(before.tx)})`);
    t.is(got.tx, waiting.tx, `${at}: netback answers every waiting transmit on xennet0's TX ring`);
    return `blk ${got.blk} tx ${got.tx} rx ${got.rx}`;
  }
  if (kind === 'xenstore') {
    const be = node(h, `${domainPath(d)}/${VBD.replace(/state$/, 'backend')}`);
    const st = be === undefined ? undefined : node(h, `${be}/state`);
    const writes: [string, string][] = [
      ...(be !== undefined && st !== undefined ? [[`${be}/state`, st] as [string, string]] : []),
      [`${domainPath(d)}/data/proof`, at],
    ];
    // Which of them the guest's connection watches, and the path each event names.
    const told = writes.map(([p]) => watchedAs(h, d, p)).filter((p): p is string => p !== undefined);
    t.true(be !== undefined && told.includes(`${be}/state`), `${at}: the guest watches ${be}/state (its watches tell: ${told.join(', ')})`);
    const mark = storeMark(h, d);
    for (const [p, v] of writes) await h.xs.write(p, v);
    const now = storeMark(h, d);
    const events = mark === undefined ? [] : watchEventsSince(h, d, mark);
    t.true(mark !== undefined && now !== undefined && now.queued === mark.queued,
      `${at}: nothing left queued in xenstored for the store ring (${JSON.stringify(mark)} -> ${JSON.stringify(now)})`);
    t.deepEqual(events.filter((e) => told.includes(e)).sort(), [...told].sort(),
      `${at}: each watched write put its watch event on the guest's store ring (events there: ${events.join(', ')})`);
    return `events ${events.length}, watched ${told.length} of ${writes.length} writes`;
  }
  const v = h.m.domain(d)?.vcpus[0];
  const deadline = v?.singleshot.active === true ? v.singleshot.deadline : undefined;
  const virq = timerVirq(h, d);
  h.m.clock.advance(10 * MS);
  const now = h.m.clock.now();
  t.true(deadline !== undefined && deadline <= now, `${at}: the guest's one-shot timer is due after the jump (deadline ${deadline}, now ${now})`);
  // What the next step does first: the due timer fires VIRQ_TIMER.
  h.m.timers.runDue(now);
  const after = timerVirq(h, d);
  t.true(v !== undefined && !v.singleshot.active, `${at}: the guest's timer fired`);
  t.true(virq !== undefined && !virq.pending && after?.pending === true,
    `${at}: VIRQ_TIMER (port ${virq?.port}) went pending in the guest's shared_info (${virq?.pending} -> ${after?.pending})`);
  return `due ${deadline === undefined ? '-' : ((now - deadline) / 1000).toFixed(0)} us ago`;
}

test('suspend at every point: an event between any two steps of the suspend path, then save and restore', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 2);
  const cfg = guestConfig({
    name: 'points', extra: 'workload=blk,net,clock blk_lag=64 net_hb_ms=10', memory: 32,
    disks: [`file:${img},xvda,w`], vifs: ['mac=00:16:3e:00:00:31,ip=10.0.0.31,bridge=xenbr0'],
  });
  let h: MachineHost = await e2eHost(t);
  let d = (await boot(t, h, cfg)).domid;
  await waitCounter(t, h, d, 'blk', 'verified', 8);
  await drive(t, h, () => connected(h, d, true), 'xbd0 and xennet0 Connected');

  // First k = 0 with each event; L is the shortest path they took.
  const first: [number, Kind][] = KINDS.map((kind) => [0, kind]);
  let L = 0;
  const plan: [number, Kind][] = [];
  const done: string[] = [];
  for (let i = 0; ; i++) {
    if (i === first.length) {
      // The rest of the plan, from L.
      const ks = new Set<number>();
      if (L <= 24) for (let k = 1; k < L; k++) ks.add(k);
      else {
        for (let k = 1; k < 5; k++) ks.add(k);
        for (let k = 8; k < L - 4; k += Math.max(4, Math.floor(L / 6))) ks.add(k);
        for (let k = L - 4; k < L; k++) ks.add(k);
      }
      const sorted = [...ks].sort((a, b) => a - b);
      sorted.forEach((k, j) => {
        const all = L <= 24 || k === L - 1;
        for (const kind of all ? KINDS : [KINDS[j % 3]!]) plan.push([k, kind]);
      });
    }
    const [k, kind]: [number, Kind] = first[i] ?? plan[i - first.length] ?? [-1, 'timer'];
    if (k < 0) break;
    const verified = counter(h, d, 'blk', 'verified');
    // A backend event: blkback and netback held from here, so requests pile up on the rings.
    const release = kind === 'backend' ? holdBackends(h) : () => undefined;
    await runFor(h, (5 + 2 * i) * MS);
    if (kind === 'backend') {
      await drive(t, h, () => unanswered(frontRings(h, d).blk) > 0 && unanswered(frontRings(h, d).tx) > 0,
        `k=${k}: a blk request and a transmit waiting with the backends held`);
    }
    await h.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
    let steps = 0;
    while (steps < k && !suspended(h, d)) {
      h.m.step();
      steps++;
      await turn();
    }
    const early = suspended(h, d);
    const saw = await inject(t, h, d, kind, `k=${k} ${kind}`, release);
    let more = 0;
    for (; more < 1_000_000 && !suspended(h, d); more++) {
      h.m.step();
      if (more % 8 === 7) await turn();
    }
    if (!suspended(h, d)) await drive(t, h, () => suspended(h, d), `suspend (k=${k}, ${kind})`);
    if (i < first.length) L = L === 0 ? steps + more : Math.min(L, steps + more);
    else if (early) t.fail(`k=${k}: the guest suspended within ${steps} steps, before the event (path shorter than L=${L})`);
    done.push(`k=${k}:${kind}(${steps + more}; ${saw})`);
    t.is(counter(h, d, 'blk', 'errors'), 0, `blk errors, k=${k} ${kind}`);
    const bytes = await saveImage(h, d, cfg);
    t.is(await imageProblems(bytes), '', `image k=${k} ${kind}`);
    const x = xenVerify(dir, bytes, `points-${i}`);
    t.is(x.status, 0, `verify-stream-v2 -f xl, image k=${k} ${kind}:\n${x.out}`);
    const disk = scanDisk(img, 8, 256);
    t.deepEqual(disk.bad, [], `disk after save, k=${k} ${kind}`);
    const next = await nextHost(t, 200 + i);
    await h.close();
    h = next;
    d = await restoreImage(h, bytes, cfg);
    await drive(t, h, () => consoleText(h, d).includes(`resumed in a new domain (restore ${i + 1})`), `resume k=${k} ${kind}`);
    await drive(t, h, () => connected(h, d, true), `xbd0 and xennet0 Connected, k=${k} ${kind}`);
    await waitCounter(t, h, d, 'blk', 'verified', verified + 8);
    t.is(counter(h, d, 'blk', 'errors'), 0, `blk errors after restore, k=${k} ${kind}`);
    t.is(counter(h, d, 'net', 'errors'), 0, `net errors after restore, k=${k} ${kind}`);
  }
  const beats = counter(h, d, 'net', 'heartbeats');
  await waitCounter(t, h, d, 'net', 'heartbeats', beats + 1);
  t.is(counter(h, d, 'clock', 'backwards'), 0);
  t.deepEqual(scanDisk(img, 8, 256).bad, []);
  t.deepEqual(h.m.log.bugs, []);
  t.log(`suspend path: ${L} machine steps from the request to SHUTDOWN_suspend; ${done.length} cycles: ${done.join(' ')}`);
  t.true(L >= 2 && first.length + plan.length >= 3 * Math.min(L, 5), `${first.length + plan.length} cycles for a path of ${L} steps`);
});
