/*
 * A migration that fails before the receiver got permission to start the
 * domain leaves it running on the source: nobody listening, the connection
 * cut in the middle of the stream, the receiving machine killed, a receiver
 * that vanishes after the whole stream (the guest already suspended for the
 * last round: a fast resume, the suspend hypercall returning 1). Each time
 * xl migrate fails with one line and a non-zero status, log-dirty mode is
 * off (the same domain can be migrated again), and the guest's counters go
 * on with no errors; a receiver that lost its sender leaves no domain and
 * its machine keeps serving.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { StreamParser } from '../../hypervisor/tools/stream/index.js';
import { MIGRATE_BANNER } from '../../hypervisor/tools/machine/migrate-wire.js';
import {
  WL, bootGuest, counters, deadPort, grown, guestConfig, listRows, receive, relay, roundsOf, startMachine, tempDir, until,
  type Machine,
} from './fixture.js';

/** The guest is still `name` with the same domid, not shut down, and its counters grow with no errors. */
async function runsOn(t: import('ava').ExecutionContext, m: Machine, name: string, domid: number): Promise<void> {
  const row = (await listRows(t, m)).find((r) => r[1] === domid);
  t.is(row?.[0], name, 'the same name and domid');
  t.regex(row?.[2] ?? '', /^[r-][b-]----$/, 'running: not paused, suspended or dying');
  const base = await counters(m, domid, WL);
  const later = await grown(m, domid, WL, base!, ['mem/passes', 'clock/ticks'], `${name}'s counters to grow after the failed migration`);
  t.is(later['mem/errors'], 0);
  t.is(later['clock/backwards'], 0);
}

test('nobody listening: xl migrate fails at once with one line, the domain keeps running', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  const { domid } = await bootGuest(t, a, guestConfig(dir, 'lonely'));
  const port = await deadPort();
  const r = await a.xl(['migrate', 'lonely', `127.0.0.1:${port}`]);
  t.is(r.code, 1, r.out + r.err);
  t.is(r.out, '', 'no round was sent');
  t.regex(r.err, new RegExp(`^xl: migration of lonely \\(${domid}\\) to 127\\.0\\.0\\.1:${port} failed, the domain keeps running here: cannot connect to 127\\.0\\.0\\.1:${port}: connection refused[^\\n]*\\n$`));
  await runsOn(t, a, 'lonely', domid);
  const bad = await a.xl(['migrate', 'lonely', 'no-port-here']);
  t.is(bad.code, 1);
  t.regex(bad.err, /^xl: "no-port-here": expected HOST:PORT\n$/);
});

test('the stream cut in the middle: the source resumes, the receiver leaves nothing and keeps serving; then the same domain migrates fine', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '9']);
  const { domid } = await bootGuest(t, a, guestConfig(dir, 'cut'));
  const recv = await receive(t, b);
  const wire = await relay(t, recv.port, { cutAfter: 4 * 2 ** 20 });
  const r = await a.xl(['migrate', 'cut', `127.0.0.1:${wire.port}`]);
  t.is(r.code, 1, r.out + r.err);
  t.regex(r.err, new RegExp(`^xl: migration of cut \\(${domid}\\) to 127\\.0\\.0\\.1:${wire.port} failed, the domain was resumed here: [^\\n]+\\n$`));
  const got = await recv.done;
  t.is(got.code, 1, got.out + got.err);
  t.regex(got.err, /^xl: migrate-receive from 127\.0\.0\.1:\d+ failed, no domain was left here: the stream was cut short: [^\n]*\n$/);
  t.deepEqual((await listRows(t, b)).map((x) => x[0]), ['Domain-0'], 'nothing left on B');
  await runsOn(t, a, 'cut', domid);

  // Both machines are fine: the same domain (log-dirty off again) goes over now.
  const again = await receive(t, b);
  const out = await a.ok(t, ['migrate', 'cut', `127.0.0.1:${again.port}`]);
  t.regex(out, /: destroyed here\n$/);
  const done = await again.done;
  t.is(done.code, 0, done.err);
  const nd = Number(done.out.trim().split('\n')[1]);
  const base = await until('counters on B', 60_000, () => counters(b, nd, WL));
  const later = await grown(b, nd, WL, base, ['mem/passes', 'clock/ticks'], 'the counters to grow on B');
  t.is(later['mem/errors'], 0);
});

test('the receiving machine killed during the pre-copy: the source resumes and runs on', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  const b = await startMachine(t, join(dir, 'b'));
  const { domid } = await bootGuest(t, a, guestConfig(dir, 'orphan'));
  const recv = await receive(t, b);
  const pidB = Number(readFileSync(join(dir, 'b', 'machine.pid'), 'utf8'));
  let killed = false;
  const wire = await relay(t, recv.port, {
    at: {
      bytes: 2 * 2 ** 20,
      fn: () => {
        process.kill(pidB, 'SIGKILL');
        killed = true;
      },
    },
  });
  const r = await a.xl(['migrate', 'orphan', `127.0.0.1:${wire.port}`]);
  t.true(killed, 'B was killed in the middle of the stream');
  t.is(r.code, 1, r.out + r.err);
  t.regex(r.err, new RegExp(`^xl: migration of orphan \\(${domid}\\) to 127\\.0\\.0\\.1:${wire.port} failed, the domain was resumed here: [^\\n]+\\n$`));
  t.not((await recv.done).code, 0, 'migrate-receive fails when its machine dies');
  await runsOn(t, a, 'orphan', domid);
});

test('a receiver that vanishes after the whole stream: the suspended guest is resumed in place (suspend returns 1) and runs on', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  const { domid } = await bootGuest(t, a, guestConfig(dir, 'late'));
  // A receiver that takes the stream to its END and then goes away without a word.
  let streamDone = false;
  const server = net.createServer((sock) => {
    server.close();
    sock.on('error', () => undefined);
    const parser = new StreamParser({ allowTrailing: true });
    sock.on('data', (b: Buffer) => {
      if (streamDone) return;
      const step = parser.push(b);
      if (step.error !== undefined) sock.destroy();
      if (step.done) {
        streamDone = true;
        sock.destroy();
      }
    });
    sock.write(MIGRATE_BANNER);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const r = await a.xl(['migrate', 'late', `127.0.0.1:${port}`]);
  t.true(streamDone, 'the whole stream went out first');
  t.is(r.code, 1, r.out + r.err);
  t.is(roundsOf(r.out).at(-1)?.phase, 'final', 'the guest had suspended for the last round');
  t.regex(r.err, new RegExp(`^xl: migration of late \\(${domid}\\) to 127\\.0\\.0\\.1:${port} failed, the domain was resumed here: [^\\n]*ready message[^\\n]*\\n$`));
  const log = join(dir, 'a', 'console', `${domid}.log`);
  await until('the guest to say it resumed in place', 30_000, () => Promise.resolve(readFileSync(log, 'utf8').includes('suspend cancelled, resumed in the same domain') ? true : undefined));
  await runsOn(t, a, 'late', domid);
});
