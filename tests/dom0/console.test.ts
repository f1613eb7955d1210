import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { domid, evtchnPort, mfn } from '../../hypervisor/public/types.js';
import { XENCONS_IN_SIZE, XENCONS_OUT_SIZE } from '../../hypervisor/public/io/console.js';
import { Xenconsoled } from '../../hypervisor/dom0/console/xenconsoled.js';
import { ConsoleFront, FakeLinkEnv, tempDir, text } from './console_env.js';

const D1 = domid(1);
const D2 = domid(2);
const PAGE1 = mfn(0x1234);
const PAGE2 = mfn(0x2345);
const PORT = evtchnPort(3);

function setup(t: ExecutionContext, opts: { tailBytes?: number; maxPendingInput?: number } = {}) {
  const dir = tempDir(t, 'xenport-console-');
  const env = new FakeLinkEnv();
  const consoled = new Xenconsoled(env, { consoleDir: dir, ...opts });
  const guest = (d: typeof D1, page: typeof PAGE1) => {
    const front = new ConsoleFront(env.addPage(d, page).mem);
    return front;
  };
  const logOf = (d: typeof D1): string => text(readFileSync(consoled.logPath(d)!));
  return { dir, env, consoled, guest, logOf };
}

test('console output lands in <domid>.log in order, and the guest is signalled back', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  t.deepEqual(consoled.add(D1, PAGE1, PORT), { ok: true });
  t.is(consoled.logPath(D1)?.endsWith('/1.log'), true, 'log file named after the domid');

  front.write('NetBSD 10.0 (XEN3_DOMU)\n');
  env.signal(1, PORT);
  front.write('xbd0 at xenbus0\n');
  front.write('xennet0 at xenbus0\n');
  env.signal(1, PORT);

  t.is(logOf(D1), 'NetBSD 10.0 (XEN3_DOMU)\nxbd0 at xenbus0\nxennet0 at xenbus0\n');
  t.is(front.view().get('out_cons'), front.view().get('out_prod'), 'out_cons advanced to out_prod');
  t.is(env.notifies(1, PORT), 2, 'one notification per batch taken');
  env.signal(1, PORT);
  t.is(env.notifies(1, PORT), 2, 'nothing taken, no notification');
});

test('output written before add() is taken when the console connects', (t) => {
  const { consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  front.write('early ring bytes\n');
  consoled.add(D1, PAGE1, PORT);
  t.is(logOf(D1), 'early ring bytes\n');
});

test('output stays in order across the index wrap past 2^32 and the ring end', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  front.setIndices(2 ** 32 - 700);
  consoled.add(D1, PAGE1, PORT);
  let expected = '';
  for (let i = 0; i < 40; i++) {
    const line = `line ${i} `.padEnd(97, String.fromCharCode(97 + (i % 26))) + '\n';
    t.is(front.write(line), line.length);
    expected += line;
    if (i % 7 === 6) env.signal(1, PORT);
  }
  env.signal(1, PORT);
  t.is(logOf(D1), expected);
  t.true(front.view().get('out_prod') < 2 ** 31, 'out_prod wrapped past 2^32');
  t.is(front.view().get('out_cons'), front.view().get('out_prod'));
});

test('a full out ring (exactly 2048 bytes) is taken whole', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  front.setIndices(2 ** 32 - 1000);
  consoled.add(D1, PAGE1, PORT);
  const big = 'x'.repeat(XENCONS_OUT_SIZE - 1) + '\n';
  t.is(front.write(big + 'overflow'), XENCONS_OUT_SIZE, 'the ring holds exactly its size');
  env.signal(1, PORT);
  t.is(logOf(D1), big);
});

test('input is delivered in order with flow control; the rest waits for the guest to free space', (t) => {
  const { env, consoled, guest } = setup(t);
  const front = guest(D1, PAGE1);
  front.setIndices(2 ** 32 - 100);
  consoled.add(D1, PAGE1, PORT);
  const input = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
  t.is(consoled.write(D1, input), 3000, 'all accepted (queued)');
  t.is(consoled.pendingInput(D1), 3000 - XENCONS_IN_SIZE, 'the in ring took exactly its size');
  t.is(env.notifies(1, PORT), 1);

  const got: number[] = [];
  for (let round = 0; round < 10 && got.length < 3000; round++) {
    got.push(...front.read(700));
    env.signal(1, PORT); // the guest signals after consuming input
  }
  t.is(got.length, 3000);
  t.deepEqual(Uint8Array.from(got), input);
  t.is(consoled.pendingInput(D1), 0);
});

test('input beyond the queue limit is refused, not dropped silently', (t) => {
  const { consoled, guest } = setup(t, { maxPendingInput: 2048 });
  guest(D1, PAGE1);
  consoled.add(D1, PAGE1, PORT);
  t.is(consoled.write(D1, new Uint8Array(1500)), 1500, '1024 into the ring, 476 queued');
  t.is(consoled.write(D1, new Uint8Array(1500)), 1500, '1976 queued');
  t.is(consoled.write(D1, new Uint8Array(1500)), 72, 'only what fits in the queue is accepted');
  t.is(consoled.pendingInput(D1), 2048);
  t.is(consoled.write(domid(9), new Uint8Array(10)), 0, 'an unknown console accepts nothing');
});

test('broken out indices stop only that console, reported once', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const bad = guest(D1, PAGE1);
  const good = guest(D2, PAGE2);
  consoled.add(D1, PAGE1, PORT);
  consoled.add(D2, PAGE2, PORT);

  bad.write('before\n');
  env.signal(1, PORT);
  bad.view().set('out_prod', (bad.view().get('out_cons') + XENCONS_OUT_SIZE + 1) >>> 0);
  env.signal(1, PORT);
  env.signal(1, PORT);
  const st = consoled.state(D1);
  t.is(st?.state, 'broken');
  t.is(env.reports.length, 1, 'logged once');
  t.regex(env.reports[0]!, /console d1: ring broken \(out_prod .* 2049 bytes past out_cons/);
  t.is(env.open(1, PORT), undefined, 'the broken console no longer listens');
  const consBefore = bad.view().get('out_cons');
  bad.view().set('out_prod', (consBefore + 5) >>> 0);
  consoled.kick(D1);
  t.is(bad.view().get('out_cons'), consBefore, 'a broken ring is not read any more');
  t.is(consoled.write(D1, new Uint8Array([1])), 0, 'nor written');
  t.is(logOf(D1), 'before\n');

  good.write('still fine\n');
  env.signal(2, PORT);
  t.is(logOf(D2), 'still fine\n');
  t.is(consoled.state(D2)?.state, 'connected');
});

test('broken in indices (guest in_cons ahead of in_prod) break the console', (t) => {
  const { env, consoled, guest } = setup(t);
  const front = guest(D1, PAGE1);
  consoled.add(D1, PAGE1, PORT);
  front.view().set('in_cons', 5000);
  consoled.write(D1, new Uint8Array([65]));
  t.is(consoled.state(D1)?.state, 'broken');
  t.regex(env.reports[0] ?? '', /in_prod 0 is \d+ bytes past in_cons 5000/);
});

test('several viewers see the same output; a detach never disturbs the guest or the others', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  consoled.add(D1, PAGE1, PORT);
  front.write('boot\n');
  env.signal(1, PORT);

  const a: string[] = [];
  const b: string[] = [];
  const va = consoled.attach(D1, { onData: (d) => a.push(text(d)) })!;
  const vb = consoled.attach(D1, { onData: (d) => b.push(text(d)) })!;
  t.is(text(va.backlog), 'boot\n', 'a new viewer gets the recent output');
  front.write('login: ');
  env.signal(1, PORT);
  va.detach();
  va.detach();
  front.write('root\n');
  env.signal(1, PORT);

  t.deepEqual(a, ['login: ']);
  t.deepEqual(b, ['login: ', 'root\n']);
  t.is(logOf(D1), 'boot\nlogin: root\n');
  t.is(front.view().get('out_cons'), front.view().get('out_prod'));
  vb.detach();
  t.is(consoled.attach(domid(7), { onData: () => undefined }), undefined, 'no console, no attachment');
});

test('a viewer that throws is detached and the console carries on', (t) => {
  const { env, consoled, guest, logOf } = setup(t);
  const front = guest(D1, PAGE1);
  consoled.add(D1, PAGE1, PORT);
  let calls = 0;
  consoled.attach(D1, { onData: () => { calls++; throw new Error('viewer gone'); } });
  const seen: string[] = [];
  consoled.attach(D1, { onData: (d) => seen.push(text(d)) });
  front.write('one\n');
  env.signal(1, PORT);
  front.write('two\n');
  env.signal(1, PORT);
  t.is(calls, 1);
  t.deepEqual(seen, ['one\n', 'two\n']);
  t.is(logOf(D1), 'one\ntwo\n');
});

test('the in-memory tail keeps the most recent bytes', (t) => {
  const { env, consoled, guest } = setup(t, { tailBytes: 10 });
  const front = guest(D1, PAGE1);
  consoled.add(D1, PAGE1, PORT);
  front.write('0123456789abc');
  env.signal(1, PORT);
  t.is(text(consoled.tail(D1)), '3456789abc');
  front.write('XYZ');
  env.signal(1, PORT);
  t.is(text(consoled.tail(D1)), '6789abcXYZ');
});
