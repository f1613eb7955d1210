/*
 * Issue 7, "suspend at every point": a netbsd guest (blk,net,clock; a disk
 * and a vif) is asked to suspend (control/shutdown = "suspend"), then
 * exactly k machine steps (Machine.step: one vCPU entry, or a timer jump)
 * run, then one outside event is injected between step k and k+1:
 *   backend   blkback and netback poll (a completion lands), dom0's tick
 *   xenstore  a host write to a watched node (xbd0's backend state, again
 *             Connected) and to the guest's data/
 *   timer     the clock jumps 10 ms (the guest's tick comes due)
 * then the suspend finishes, the domain is saved (the image passes
 * checkImage and Xen's verify-stream-v2 -f xl) and restored into a new
 * machine, and: no blk error, the disk file's blocks check with the
 * workload's own checker, xbd0 and xennet0 Connected again, the counters
 * go on. One guest goes through all the cycles (a chain of machines).
 *
 * The path length L (steps from the request to SHUTDOWN_suspend; 6 at
 * the time of writing: each step is a whole vCPU entry) is measured on
 * the first cycle. Up to L = 24 every k in 0..L-1 gets all three events
 * (3L cycles); a longer path is sampled (0..4, a sparse middle, L-4..L-1;
 * all three events at the ends, one in turn elsewhere). Each cycle logs
 * its own path length in parentheses.
 */
import test from 'ava';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import {
  tempDir, diskImage, e2eHost, guestConfig, boot, counter, waitCounter, drive, runFor, consoleText, scanDisk, node, turn, MS,
} from '../e2e/fixture.js';
import { suspended, saveImage, nextHost, restoreImage, connected, imageProblems, xenVerify, VBD } from './fixture.js';

type Kind = 'backend' | 'xenstore' | 'timer';
const KINDS: readonly Kind[] = ['backend', 'xenstore', 'timer'];

async function inject(h: MachineHost, d: number, kind: Kind, k: number): Promise<void> {
  if (kind === 'backend') {
    h.backends.blkback.poll();
    h.backends.netback.poll();
    h.backends.tick();
  } else if (kind === 'xenstore') {
    const be = node(h, `${domainPath(d)}/${VBD.replace(/state$/, 'backend')}`);
    const st = be === undefined ? undefined : node(h, `${be}/state`);
    if (be !== undefined && st !== undefined) await h.xs.write(`${be}/state`, st);
    await h.xs.write(`${domainPath(d)}/data/proof`, String(k));
  } else {
    h.m.clock.advance(10 * MS);
  }
}

test('suspend at every point: an event between any two steps of the suspend path, then save and restore', async (t) => {
  const dir = tempDir(t);
  const img = diskImage(dir, 2);
  const cfg = guestConfig({
    name: 'points', extra: 'workload=blk,net,clock blk_lag=64', memory: 32,
    disks: [`file:${img},xvda,w`], vifs: ['mac=00:16:3e:00:00:31,ip=10.0.0.31,bridge=xenbr0'],
  });
  let h: MachineHost = await e2eHost(t);
  let d = (await boot(t, h, cfg)).domid;
  await waitCounter(t, h, d, 'blk', 'verified', 8);
  await drive(t, h, () => connected(h, d, true), 'xbd0 and xennet0 Connected');

  let L = 0;
  const plan: [number, Kind][] = [];
  const done: string[] = [];
  for (let i = 0; ; i++) {
    if (i === 1) {
      // The plan, from the length measured on cycle 0 (k = 0).
      const ks = new Set<number>();
      if (L <= 24) for (let k = 0; k < L; k++) ks.add(k);
      else {
        for (let k = 0; k < 5; k++) ks.add(k);
        for (let k = 8; k < L - 4; k += Math.max(4, Math.floor(L / 6))) ks.add(k);
        for (let k = L - 4; k < L; k++) ks.add(k);
      }
      const sorted = [...ks].sort((a, b) => a - b);
      sorted.forEach((k, j) => {
        const all = L <= 24 || k === 0 || k === L - 1;
        for (const kind of all ? KINDS : [KINDS[j % 3]!]) plan.push([k, kind]);
      });
    }
    const [k, kind]: [number, Kind] = i === 0 ? [0, 'backend'] : plan[i - 1] ?? [-1, 'timer'];
    if (k < 0) break;
    const verified = counter(h, d, 'blk', 'verified');
    await runFor(h, (5 + 2 * i) * MS);
    await h.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
    let steps = 0;
    while (steps < k && !suspended(h, d)) {
      h.m.step();
      steps++;
      await turn();
    }
    const early = suspended(h, d);
    await inject(h, d, kind, k);
    let more = 0;
    for (; more < 1_000_000 && !suspended(h, d); more++) {
      h.m.step();
      if (more % 8 === 7) await turn();
    }
    if (!suspended(h, d)) await drive(t, h, () => suspended(h, d), `suspend (k=${k}, ${kind})`);
    if (i === 0) L = steps + more;
    else if (early) t.fail(`k=${k}: the guest suspended within ${steps} steps, before the event (path shorter than L=${L})`);
    done.push(`k=${k}:${kind}(${steps + more})`);
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
  t.true(L >= 2 && plan.length >= 3 * Math.min(L, 5), `plan of ${plan.length} cycles for a path of ${L} steps`);
});
