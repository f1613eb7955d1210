/*
 * The migration wire alone, over a socket pair on 127.0.0.1: addresses as
 * xl migrate and migrate-receive take them, handshake lines (bounded,
 * exact), the stream read as chunks up to a point and the rest read as
 * lines, a peer that closes or stays silent.
 */
import test from 'ava';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { MAX_LINE, MIGRATE_BANNER, MigrateWireError, Wire, connectTo, parseHostPort } from '../../hypervisor/tools/machine/migrate-wire.js';
import { deadPort } from './fixture.js';

test('HOST:PORT, [v6]:PORT and a bare PORT where a default host is given; everything else refused with one line', (t) => {
  t.deepEqual(parseHostPort('127.0.0.1:8002'), { host: '127.0.0.1', port: 8002 });
  t.deepEqual(parseHostPort('target.example:1'), { host: 'target.example', port: 1 });
  t.deepEqual(parseHostPort('[::1]:65535'), { host: '::1', port: 65535 });
  t.deepEqual(parseHostPort('0', { defaultHost: '127.0.0.1', allowZero: true }), { host: '127.0.0.1', port: 0 });
  t.deepEqual(parseHostPort('0.0.0.0:0', { defaultHost: '127.0.0.1', allowZero: true }), { host: '0.0.0.0', port: 0 });
  for (const bad of ['8002', ':8002', 'host:', 'host:0', 'host:65536', 'host:80x', '::1:80', 'a b:80', '[::1]80']) {
    const e = t.throws(() => parseHostPort(bad), { instanceOf: MigrateWireError }, bad);
    t.regex(e?.message ?? '', /^"[^"]*": (expected HOST:PORT|port must be 1\.\.65535)/, bad);
  }
});

async function pair(t: import('ava').ExecutionContext): Promise<{ ours: Wire; theirs: net.Socket }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sock = await connectTo({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, 5000);
  const theirs = await accepted;
  theirs.on('error', () => undefined);
  server.close();
  t.teardown(() => {
    sock.destroy();
    theirs.destroy();
  });
  return { ours: new Wire(sock), theirs };
}

test('lines come whole whatever the chunking; a stream read up to a point leaves the rest for the lines', async (t) => {
  const { ours, theirs } = await pair(t);
  const stream = new Uint8Array(300_000).map((_, i) => i & 0xff);
  theirs.write(MIGRATE_BANNER.slice(0, 7));
  theirs.write(MIGRATE_BANNER.slice(7));
  await ours.expect(MIGRATE_BANNER, 'the banner', 5000);
  theirs.write(stream);
  theirs.write('after the stream\nand ');
  theirs.write('another\n');
  const got: number[] = [];
  let n = 0;
  for await (const c of ours.chunks(5000, 'the stream')) {
    const want = stream.length - n;
    if (c.length >= want) {
      got.push(...c.subarray(0, want));
      ours.unread(c.subarray(want));
      break;
    }
    got.push(...c);
    n += c.length;
  }
  t.deepEqual(new Uint8Array(got), stream);
  t.is(await ours.readLine('a line', 5000), 'after the stream');
  t.is(ours.peekLine(), 'and another');
  t.is(await ours.readLine('a line', 5000), 'and another');
  t.is(ours.peekLine(), undefined);
});

test('a peer that sends too long a line, the wrong line, nothing, or closes: each a MigrateWireError naming what was awaited', async (t) => {
  const long = await pair(t);
  long.theirs.write('x'.repeat(MAX_LINE + 10));
  const e1 = await t.throwsAsync(long.ours.readLine('the ready message', 5000), { instanceOf: MigrateWireError });
  t.regex(e1?.message ?? '', /sent \d+ bytes without a newline where the ready message was expected/);

  const wrong = await pair(t);
  wrong.theirs.write('hello\n');
  const e2 = await t.throwsAsync(wrong.ours.expect(MIGRATE_BANNER, 'the banner', 5000), { instanceOf: MigrateWireError });
  t.regex(e2?.message ?? '', /sent "hello" where the banner was expected/);

  const silent = await pair(t);
  const e3 = await t.throwsAsync(silent.ours.readLine('the report', 30), { instanceOf: MigrateWireError });
  t.is((e3 as MigrateWireError | undefined)?.code, 'timeout');
  t.regex(e3?.message ?? '', /^timed out after 30 ms waiting for the report from 127\.0\.0\.1:\d+$/);

  const gone = await pair(t);
  gone.theirs.end('half a li');
  const e4 = await t.throwsAsync(gone.ours.readLine('permission to go', 5000), { instanceOf: MigrateWireError });
  t.regex(e4?.message ?? '', /closed the connection before permission to go/);
  const chunks: Uint8Array[] = [];
  const g2 = await pair(t);
  g2.theirs.end('bytes');
  for await (const c of g2.ours.chunks(5000, 'the stream')) chunks.push(c);
  t.is(Buffer.concat(chunks).toString(), 'bytes', 'a clean close ends the chunks');
});

test('connecting where nobody listens: refused, in one line', async (t) => {
  const port = await deadPort();
  const e = await t.throwsAsync(connectTo({ host: '127.0.0.1', port }, 5000), { instanceOf: MigrateWireError });
  t.regex(e?.message ?? '', new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`));
});
