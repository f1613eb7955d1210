import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { ControlServer, ControlClient, ControlError, NoMachineError, type VerbHandler } from '../../hypervisor/tools/machine/control.js';

function tmpSock(): { dir: string; sock: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xp-ctl-'));
  return { dir, sock: path.join(dir, 'control.sock') };
}

const verbs = new Map<string, VerbHandler>([
  ['echo', async (args) => args['v']],
  ['fail', async () => { throw new ControlError('domain 7 does not exist'); }],
  ['bug', async () => { throw new TypeError('oops'); }],
  ['console', (_args, stream) => new Promise((resolve) => {
    stream.data('hello\n');
    stream.onInput((chunk) => {
      if (chunk === 'quit') resolve('detached');
      else stream.data(`you said ${chunk}\n`);
    });
  })],
]);

test('requests get their own answers; errors are one line', async (t) => {
  const { dir, sock } = tmpSock();
  const srv = new ControlServer(verbs);
  await srv.listen(sock);
  const c = await ControlClient.connect(dir, sock);
  const [a, b] = await Promise.all([c.call('echo', { v: 1 }).result, c.call('echo', { v: 'two' }).result]);
  t.is(a, 1);
  t.is(b, 'two');
  await t.throwsAsync(c.call('fail').result, { instanceOf: ControlError, message: 'domain 7 does not exist' });
  await t.throwsAsync(c.call('nope').result, { message: 'unknown verb "nope"' });
  await t.throwsAsync(c.call('bug').result, { message: /^internal error: TypeError: oops/ });
  c.close();
  await srv.close();
});

test('streaming verbs send data and take input', async (t) => {
  const { dir, sock } = tmpSock();
  const srv = new ControlServer(verbs);
  await srv.listen(sock);
  const c = await ControlClient.connect(dir, sock);
  const got: string[] = [];
  const call = c.call('console', {}, (d) => {
    got.push(d);
    if (got.length === 1) c.input(call.id, 'hi');
    if (got.length === 2) c.input(call.id, 'quit');
  });
  t.is(await call.result, 'detached');
  t.deepEqual(got, ['hello\n', 'you said hi\n']);
  c.close();
  await srv.close();
});

test('garbage from a client does not disturb the server', async (t) => {
  const { dir, sock } = tmpSock();
  const srv = new ControlServer(verbs);
  await srv.listen(sock);
  const raw = net.createConnection(sock);
  const reply = await new Promise<string>((resolve) => {
    raw.once('data', (d) => resolve(d.toString()));
    raw.write('this is not json\n');
  });
  t.regex(reply, /request is not JSON/);
  raw.destroy();
  const c = await ControlClient.connect(dir, sock);
  t.is(await c.call('echo', { v: 3 }).result, 3);
  c.close();
  await srv.close();
});

test('no daemon: a clear error naming the dir', async (t) => {
  const { dir, sock } = tmpSock();
  const e = await t.throwsAsync(ControlClient.connect(dir, sock), { instanceOf: NoMachineError });
  t.regex(e?.message ?? '', new RegExp(`no machine running at ${dir}`));
});
