/*
 * `xl migrate-receive` facing a sender that is not an honest xl migrate:
 * garbage instead of a stream, a valid image followed by anything but the
 * permission to go, a peer that hangs up. Each time migrate-receive fails
 * with one clear line and a non-zero status, tells the sender why when it
 * still can, leaves no domain (and no frames: the free memory is what it
 * was), and its machine keeps serving the next migration.
 */
import test from 'ava';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATE_BANNER, MIGRATE_GO, MIGRATE_READY } from '../../hypervisor/tools/machine/migrate-wire.js';
import { WL, bootGuest, counters, grown, guestConfig, listRows, receive, startMachine, tempDir, until, type Machine } from './fixture.js';

/** A raw TCP peer of migrate-receive: what it sends, line by line what it got back. */
class Peer {
  private buf = '';
  private closed = false;
  private wake: (() => void) | undefined;
  private constructor(readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port }, () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }

  /** The next line from the receiver, or undefined once it has closed without one. */
  async line(): Promise<string | undefined> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const l = this.buf.slice(0, nl + 1);
        this.buf = this.buf.slice(nl + 1);
        return l;
      }
      if (this.closed) return undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** Until the receiver has closed the connection. */
  async end(): Promise<void> {
    while (!this.closed) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  send(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve) => this.sock.write(data, () => resolve()));
  }
}

async function freeMiB(t: import('ava').ExecutionContext, m: Machine): Promise<string> {
  return /^free_memory\s*:\s*(\d+)$/m.exec(await m.ok(t, ['info']))?.[1] ?? '?';
}

test('garbage instead of a stream: one clear line, the sender told why, no domain, the machine serves on', async (t) => {
  const dir = tempDir(t);
  const b = await startMachine(t, join(dir, 'b'));
  const free = await freeMiB(t, b);
  const recv = await receive(t, b);
  const peer = await Peer.connect(recv.port);
  t.is(await peer.line(), MIGRATE_BANNER);
  await peer.send('GET / HTTP/1.0\r\n\r\n'.repeat(200));
  const said = await peer.line();
  t.regex(said ?? '', /^failed: [^\n]*not an xl save file[^\n]*\n$/);
  await peer.end();
  const r = await recv.done;
  t.is(r.code, 1);
  t.regex(r.err, /^xl: migrate-receive from 127\.0\.0\.1:\d+ failed, no domain was left here: [^\n]*not an xl save file[^\n]*\n$/);
  t.deepEqual((await listRows(t, b)).map((x) => x[0]), ['Domain-0']);
  t.is(await freeMiB(t, b), free, 'no frames left behind');
  // And it listens again for the next one; a client that connects and hangs up ends it cleanly.
  const next = await receive(t, b);
  const quitter = await Peer.connect(next.port);
  t.is(await quitter.line(), MIGRATE_BANNER);
  quitter.sock.end();
  const n = await next.done;
  t.is(n.code, 1);
  t.regex(n.err, /^xl: migrate-receive from [^\n]*, no domain was left here: the stream was cut short: [^\n]*\n$/);
});

test('a valid image, then no permission to go: the paused NAME--incoming is destroyed, nothing left; with the go and -p it is kept, paused, as NAME', async (t) => {
  const dir = tempDir(t);
  const b = await startMachine(t, join(dir, 'b'));
  const free = await freeMiB(t, b);
  // An image as `xl save` writes it: the same bytes an honest sender streams.
  await bootGuest(t, b, guestConfig(dir, 'img'));
  const img = join(dir, 'img.img');
  await b.ok(t, ['save', 'img', img]);
  t.deepEqual((await listRows(t, b)).map((x) => x[0]), ['Domain-0']);

  for (const [what, after] of [['a wrong go line', 'go ahead?\n'], ['a hang-up', undefined]] as const) {
    const recv = await receive(t, b);
    const peer = await Peer.connect(recv.port);
    t.is(await peer.line(), MIGRATE_BANNER);
    await peer.send(readFileSync(img));
    t.is(await peer.line(), MIGRATE_READY, `${what}: ready once the image is in`);
    const waiting = (await listRows(t, b)).find((x) => x[0] === 'img--incoming');
    t.regex(waiting?.[2] ?? '', /^--p---$/, `${what}: the domain waits paused as img--incoming`);
    if (after === undefined) peer.sock.end();
    else {
      await peer.send(after);
      t.regex((await peer.line()) ?? '', /^failed: [^\n]*permission to start[^\n]*\n$/, `${what}: the sender is told`);
    }
    await peer.end();
    const r = await recv.done;
    t.is(r.code, 1, what);
    t.regex(r.err, /^xl: migrate-receive from [^\n]*, no domain was left here: [^\n]*permission to start the domain[^\n]*\n$/, what);
    t.deepEqual((await listRows(t, b)).map((x) => x[0]), ['Domain-0'], `${what}: nothing left`);
  }
  t.is(await freeMiB(t, b), free, 'no frames left behind');

  // The same image with the go, to migrate-receive -p: started, and it stays paused until unpaused.
  const recv = await receive(t, b, ['-p']);
  const peer = await Peer.connect(recv.port);
  t.is(await peer.line(), MIGRATE_BANNER);
  await peer.send(readFileSync(img));
  t.is(await peer.line(), MIGRATE_READY);
  await peer.send(MIGRATE_GO);
  const started = /^started (\d+)\n$/.exec((await peer.line()) ?? '');
  t.not(started, null, 'the sender is told it started');
  await peer.end();
  const r = await recv.done;
  t.is(r.code, 0, r.err);
  const nd = Number(r.out.trim().split('\n')[1]);
  t.is(nd, Number(started?.[1]), 'the domid printed is the one reported');
  const row = (await listRows(t, b)).find((x) => x[1] === nd);
  t.deepEqual(row?.slice(0, 1), ['img']);
  t.is(row?.[2], '--p---', 'paused with -p');
  await b.ok(t, ['unpause', 'img']);
  const base = await until('counters after the unpause', 60_000, () => counters(b, nd, WL));
  const later = await grown(b, nd, WL, base, ['clock/ticks'], 'the clock to tick after the unpause');
  t.is(later['mem/errors'], 0);
});
