/*
 * Checkpointing through the shipped xl between two machine daemons: xl
 * remus sends checkpoints of a running netbsd guest (mem, clock) to xl
 * migrate-receive -r while the guest keeps running on the primary; once the
 * receiver holds checkpoint 3, the primary machine is killed (SIGKILL) in
 * the interval that follows. The receiver fails over: the guest starts on
 * the secondary from checkpoint 3 and its workloads carry on with no errors.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  WL, XL, bootGuest, counters, grown, guestConfig, listRows, startMachine, tempDir, until, type Machine,
} from '../migrate/fixture.js';

interface Child {
  /** Resolves with the whole stdout once a line matches `re`. */
  line(re: RegExp, what: string): Promise<string>;
  readonly done: Promise<{ code: number | null; out: string; err: string }>;
}

/** `xl --dir M ARGS` as a child whose stdout is watched line by line. */
function xlChild(t: ExecutionContext, m: Machine, args: readonly string[]): Child {
  const child = spawn(process.execPath, [XL, '--dir', m.dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: (s: string) => void }[] = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    err += d;
  });
  child.stdout.on('data', (d: string) => {
    out += d;
    for (const w of [...waiters]) {
      if (w.re.test(out)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(out);
      }
    }
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    child.once('exit', (code) => resolve({ code, out, err }));
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill();
  });
  return {
    done,
    line: (re, what) => new Promise((resolve, reject) => {
      if (re.test(out)) {
        resolve(out);
        return;
      }
      waiters.push({ re, resolve });
      void done.then((r) => reject(new Error(`xl ${args[0]} exited (${r.code}) before ${what}: ${r.out}${r.err}`)));
    }),
  };
}

test('xl remus to migrate-receive -r: the primary runs on while checkpointed; killed after checkpoint 3, the guest fails over to the secondary from checkpoint 3 and runs on', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '5']);
  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '23', '--tsc-khz', '2900000']);
  const { domid } = await bootGuest(t, a, guestConfig(dir, 'rem'));

  const recv = xlChild(t, b, ['migrate-receive', '-r']);
  const port = Number(/^listening on 127\.0\.0\.1:(\d+)$/m.exec(await recv.line(/^listening on .*\n/m, 'listening'))![1]);
  const remus = xlChild(t, a, ['remus', '-i', '4000', '-n', '5', 'rem', `127.0.0.1:${port}`]);
  await remus.line(/^checkpoint 1: \d+ pages\n/m, 'checkpoint 1');
  // Between checkpoints the primary runs: its counters move on A.
  const base = (await counters(a, domid, WL))!;
  await grown(a, domid, WL, base, ['clock/ticks'], 'the primary\'s clock between checkpoints');
  const sent = await remus.line(/^checkpoint 3: \d+ pages\n/m, 'checkpoint 3');
  await recv.line(/^checkpoint 3 received\n/m, 'the receiver to hold checkpoint 3');
  t.deepEqual([...sent.matchAll(/^checkpoint (\d+): /gm)].map((x) => Number(x[1])), [1, 2, 3]);
  const row = (await listRows(t, a)).find((r) => r[1] === domid);
  t.regex(row?.[2] ?? '', /^[r-][b-]----$/, 'the primary runs during the interval');
  // The secondary holds the checkpoint in a domain that is built but never ran: paused, unnamed.
  const held = (await listRows(t, b)).filter((r) => r[0] !== 'Domain-0');
  t.is(held.length, 1);
  t.regex(held[0]?.[2] ?? '', /^--p---$/, 'paused on the secondary until failover');

  process.kill(Number(readFileSync(join(a.dir, 'machine.pid'), 'utf8')), 'SIGKILL');
  const gone = await remus.done;
  t.not(gone.code, 0, 'xl remus fails when its machine dies');
  t.notRegex(gone.out, /^checkpoint 4/m, 'killed before checkpoint 4');
  const got = await recv.done;
  t.is(got.code, 0, got.err);
  const lines = got.out.trim().split('\n');
  t.deepEqual(lines.slice(1, 4), ['checkpoint 1 received', 'checkpoint 2 received', 'checkpoint 3 received']);
  t.regex(lines[4] ?? '', /^started from checkpoint 3 \(the stream broke: .+\)$/);
  const nd = Number(lines[5]);
  t.true(Number.isInteger(nd) && nd > 0, got.out);
  t.is(lines.length, 6, got.out);

  const onB = (await listRows(t, b)).find((r) => r[1] === nd);
  t.is(onB?.[0], 'rem');
  t.regex(onB?.[2] ?? '', /^[r-][b-]----$/, 'running on the secondary');
  const first = await until('the counters on the secondary', 60_000, () => counters(b, nd, WL));
  const later = await grown(b, nd, WL, first, ['mem/passes', 'clock/ticks'], 'the workloads on the secondary');
  t.is(later['mem/errors'], 0);
  t.is(later['clock/backwards'], 0);
});
