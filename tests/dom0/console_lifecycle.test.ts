import test, { type ExecutionContext } from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { domid, evtchnPort, mfn } from '../../hypervisor/public/types.js';
import { Xenconsoled } from '../../hypervisor/dom0/console/xenconsoled.js';
import { ConsoleFront, FakeLinkEnv, tempDir, text } from './console_env.js';

const D1 = domid(1);
const PAGE = mfn(0x100);
const NEW_PAGE = mfn(0x900);
const PORT = evtchnPort(3);
const NEW_PORT = evtchnPort(5);

function setup(t: ExecutionContext) {
  const dir = tempDir(t, 'xenport-console-');
  const env = new FakeLinkEnv();
  const consoled = new Xenconsoled(env, { consoleDir: dir });
  const logOf = (): string => text(readFileSync(consoled.logPath(D1)!));
  return { env, consoled, logOf };
}

test('console_io output before the ring is up starts the same log', (t) => {
  const { env, consoled, logOf } = setup(t);
  consoled.appendOutput(D1, 'Xen PV entry, start_info at 0x...\n');
  t.is(consoled.state(D1)?.state, 'unconnected');
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  front.write('xencons0 attached\n');
  env.signal(1, PORT);
  t.is(logOf(), 'Xen PV entry, start_info at 0x...\nxencons0 attached\n');
});

test('console_io interleaves with ring output in the order the guest produced it', (t) => {
  const { env, consoled, logOf } = setup(t);
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  // Ring bytes written but not yet signalled, then a hypercall, then more ring bytes.
  front.write('A: ring\n');
  consoled.appendOutput(D1, 'B: console_io\n');
  front.write('C: ring\n');
  consoled.appendOutput(D1, Uint8Array.from([0x44, 0x3a, 0xe9, 0x0a])); // raw bytes pass through
  env.signal(1, PORT);
  t.is(readFileSync(consoled.logPath(D1)!).toString('latin1'), 'A: ring\nB: console_io\nC: ring\nD:\u00e9\n');
  t.true(logOf().startsWith('A: ring\nB: console_io\nC: ring\n'));
});

test('reconnect after restore: new page and port, log, viewers and queued input carry over', (t) => {
  const { env, consoled, logOf } = setup(t);
  const old = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  const seen: string[] = [];
  consoled.attach(D1, { onData: (d) => seen.push(text(d)) });
  old.write('before save\n');
  env.signal(1, PORT);
  consoled.write(D1, new Uint8Array(1500).fill(0x61)); // 1024 go in, 476 wait

  // The restored page is a copy of the saved one, at a new frame, with a new port.
  const restored = env.addPage(D1, NEW_PAGE);
  restored.bytes.set(env.pages.get(`1:${PAGE}`)!.bytes);
  const fresh = new ConsoleFront(restored.mem);
  fresh.write('after restore\n');
  t.deepEqual(consoled.reconnect(D1, NEW_PAGE, NEW_PORT), { ok: true });
  t.is(env.open(1, PORT), undefined, 'the old binding is closed');
  t.truthy(env.open(1, NEW_PORT));
  t.like(consoled.state(D1), { state: 'connected', mfn: NEW_PAGE, port: NEW_PORT });

  t.is(logOf(), 'before save\nafter restore\n');
  t.deepEqual(seen, ['before save\n', 'after restore\n']);
  t.is(fresh.read().length, 1024, 'the restored ring still holds the input delivered before');
  env.signal(1, NEW_PORT);
  t.is(fresh.read().length, 476, 'queued input follows on the new page');

  const oldCons = old.view().get('out_cons');
  old.write('stale page\n');
  env.signal(1, PORT);
  t.is(old.view().get('out_cons'), oldCons, 'the old page is not read any more');
});

test('a stale event from before the reconnect is ignored', (t) => {
  const { env, consoled, logOf } = setup(t);
  const old = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  const oldBinding = env.open(1, PORT)!;
  env.addPage(D1, NEW_PAGE);
  consoled.reconnect(D1, NEW_PAGE, NEW_PORT);
  old.write('ghost\n');
  oldBinding.onEvent(); // delivered late, after the channel was closed
  t.false(existsSync(consoled.logPath(D1)!) && logOf().includes('ghost'));
});

test('reconnect brings a broken console back', (t) => {
  const { env, consoled, logOf } = setup(t);
  const bad = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  bad.view().set('out_prod', 99999);
  env.signal(1, PORT);
  t.is(consoled.state(D1)?.state, 'broken');
  const fresh = new ConsoleFront(env.addPage(D1, NEW_PAGE).mem);
  t.deepEqual(consoled.reconnect(D1, NEW_PAGE, NEW_PORT), { ok: true });
  fresh.write('alive again\n');
  env.signal(1, NEW_PORT);
  t.is(logOf(), 'alive again\n');
});

test('add refuses a frame that is not the guest\'s, a failed bind, and a second add', (t) => {
  const { env, consoled } = setup(t);
  t.like(consoled.add(D1, PAGE, PORT), { ok: false });
  env.addPage(D1, PAGE);
  env.bindEventChannel(D1, PORT, () => undefined); // someone else holds the port
  const r = consoled.add(D1, PAGE, PORT);
  t.false(r.ok);
  t.regex(r.ok ? '' : r.error, /cannot bind port 3: .*EBUSY/);
  t.deepEqual(consoled.add(D1, PAGE, NEW_PORT), { ok: true });
  t.like(consoled.add(D1, PAGE, NEW_PORT), { ok: false });
  t.like(consoled.reconnect(domid(4), PAGE, PORT), { ok: false });
});

test('remove takes the last output, closes the channel and tells viewers', (t) => {
  const { env, consoled, logOf } = setup(t);
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  let closed = 0;
  consoled.attach(D1, { onData: () => undefined, onClose: () => closed++ });
  front.write('last words\n');
  consoled.remove(D1);
  t.is(logOf(), 'last words\n');
  t.is(env.open(1, PORT), undefined);
  t.is(closed, 1);
  t.is(consoled.state(D1), undefined);
  consoled.remove(D1);
});

test('a log file that cannot be written is reported once; output stays in memory', (t) => {
  const env = new FakeLinkEnv();
  const consoled = new Xenconsoled(env, { consoleDir: '/nonexistent/xenport/console' });
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  front.write('one\n');
  env.signal(1, PORT);
  front.write('two\n');
  env.signal(1, PORT);
  t.is(env.reports.length, 1);
  t.regex(env.reports[0]!, /cannot write .*1\.log/);
  t.is(text(consoled.tail(D1)), 'one\ntwo\n');
  t.is(consoled.state(D1)?.state, 'connected');
});

test('without a console dir the console is kept in memory only', (t) => {
  const env = new FakeLinkEnv();
  const consoled = new Xenconsoled(env);
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  consoled.add(D1, PAGE, PORT);
  front.write('hello\n');
  env.signal(1, PORT);
  t.is(consoled.logPath(D1), undefined);
  t.is(text(consoled.tail(D1)), 'hello\n');
  consoled.close();
  t.deepEqual(consoled.domains(), []);
});

test('a page that is already broken when it connects is refused', (t) => {
  const { env, consoled } = setup(t);
  const front = new ConsoleFront(env.addPage(D1, PAGE).mem);
  front.view().set('out_prod', 5000);
  const r = consoled.add(D1, PAGE, PORT);
  t.false(r.ok);
  t.regex(r.ok ? '' : r.error, /out_prod 5000 is 5000 bytes past out_cons 0/);
  t.like(consoled.state(D1), { state: 'broken' });
});
