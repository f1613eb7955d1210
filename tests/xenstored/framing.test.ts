/*
 * The socket framing: a stream of requests fed 1 byte at a time and in
 * random chunk sizes gives the same replies as fed whole; an oversize
 * message drops that client only.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import test from 'ava';
import {
  XS_DIRECTORY, XS_ERROR, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_TRANSACTION_END, XS_TRANSACTION_START,
  XS_WATCH, XS_WRITE, XENSTORE_PAYLOAD_MAX,
} from '../../hypervisor/public/io/xs_wire.js';
import { connectSocketClient } from '../../hypervisor/tools/xenstored/client.js';
import { Xenstored } from '../../hypervisor/tools/xenstored/server.js';
import {
  concatBytes, encodeMsg, FrameDecoder, fromLatin1, nulStrings, type XsMsg,
} from '../../hypervisor/tools/xenstored/wire.js';
import { prng } from './harness.js';
import { serve } from './peers.js';

/** Enough of a net.Socket for the transport: records what the server writes. */
class FakeSocket extends EventEmitter {
  readonly written: Uint8Array[] = [];
  destroyed = false;
  writableEnded = false;
  write(b: Uint8Array): boolean {
    this.written.push(new Uint8Array(b));
    return true;
  }
  end(cb?: () => void): void {
    this.writableEnded = true;
    cb?.();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

function requestStream(): Uint8Array {
  const msgs: XsMsg[] = [];
  let id = 1;
  const m = (type: number, payload: Uint8Array, txId = 0): void => {
    msgs.push({ type, reqId: id++, txId, payload });
  };
  m(XS_WATCH, nulStrings(['/s', 'tok']));
  m(XS_MKDIR, nulStrings(['/s/dir']));
  for (let i = 0; i < 20; i++) m(XS_WRITE, concatBytes([nulStrings([`/s/dir/n${i}`]), fromLatin1('v'.repeat(i * 150))]));
  m(XS_WRITE, new Uint8Array(0));
  m(XS_DIRECTORY, nulStrings(['/s/dir']));
  m(XS_READ, nulStrings(['/s/dir/n19']));
  m(XS_GET_PERMS, nulStrings(['/s']));
  m(XS_TRANSACTION_START, nulStrings(['']));
  m(XS_WRITE, concatBytes([nulStrings(['/s/tx']), fromLatin1('in tx')]), 1);
  m(XS_TRANSACTION_END, nulStrings(['T']), 1);
  m(XS_RM, nulStrings(['/s/dir']));
  m(XS_READ, nulStrings(['/s/tx']));
  return concatBytes(msgs.map(encodeMsg));
}

/** Feed the stream in the given chunk sizes; return the decoded replies and events. */
function replay(stream: Uint8Array, chunkSize: (remaining: number) => number): XsMsg[] {
  const server = new Xenstored();
  const sock = new FakeSocket();
  server.acceptSocket(sock as unknown as Socket);
  for (let off = 0; off < stream.length;) {
    const n = Math.max(1, Math.min(chunkSize(stream.length - off), stream.length - off));
    sock.emit('data', Buffer.from(stream.subarray(off, off + n)));
    off += n;
  }
  const dec = new FrameDecoder();
  const out: XsMsg[] = [];
  for (const ev of dec.pushAll(concatBytes(sock.written))) if (ev.kind === 'msg') out.push(ev.msg);
  return out;
}

test('the decoder yields the same messages for any chunking', (t) => {
  const stream = requestStream();
  const whole = new FrameDecoder().pushAll(stream);
  t.true(whole.length > 20);
  const dec = new FrameDecoder();
  const byByte = [];
  for (const b of stream) byByte.push(...dec.pushAll(new Uint8Array([b])));
  t.deepEqual(byByte, whole);
  t.true(dec.atBoundary);
});

test('requests fed one byte at a time get the same replies as fed whole', (t) => {
  const stream = requestStream();
  const whole = replay(stream, (n) => n);
  t.true(whole.length > 25);
  t.deepEqual(replay(stream, () => 1), whole);
});

test('requests fed in random chunk sizes (seeded) get the same replies', (t) => {
  const stream = requestStream();
  const whole = replay(stream, (n) => n);
  for (const seed of [1, 2, 3, 42, 4096]) {
    const rnd = prng(seed);
    t.deepEqual(replay(stream, () => 1 + Math.floor(rnd() * 700)), whole, `seed ${seed}`);
  }
  t.is(whole.filter((m) => m.type === XS_ERROR).length, 1, 'only the empty WRITE fails');
});

test('an oversize header poisons the decoder', (t) => {
  const dec = new FrameDecoder();
  const hdr = encodeMsg({ type: XS_READ, reqId: 9, txId: 0, payload: new Uint8Array(0) });
  new DataView(hdr.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
  const evs = dec.pushAll(concatBytes([hdr, new Uint8Array(100)]));
  t.is(evs.length, 1);
  t.like(evs[0], { kind: 'oversize', header: { reqId: 9, len: XENSTORE_PAYLOAD_MAX + 1 } });
  t.true(dec.isBroken);
  t.deepEqual(dec.pushAll(new Uint8Array(50)), []);
});

test('a socket client sending an oversize message gets E2BIG and is dropped; another client carries on', async (t) => {
  const s = await serve();
  try {
    const good = await connectSocketClient(s.socketPath);
    const bad = await connectSocketClient(s.socketPath);
    await good.write('/still', 'here');
    const hdr = encodeMsg({ type: XS_WRITE, reqId: 77, txId: 0, payload: new Uint8Array(0) });
    new DataView(hdr.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
    const closed = new Promise<void>((resolve) => bad.socket.once('close', () => resolve()));
    const reply = bad.request(XS_WRITE, new Uint8Array(0)).catch((e: Error) => e);
    // Bypass the client: the raw oversize header (req_id 77) followed by garbage.
    bad.socket.write(concatBytes([hdr, new Uint8Array(64)]));
    await closed;
    t.true((await reply) instanceof Error);
    t.is(await good.read('/still'), 'here');
    await good.write('/after', 'ok');
    t.is(await good.read('/after'), 'ok');
    good.close();
  } finally {
    await s.stop();
  }
});

test('a payload of exactly XENSTORE_PAYLOAD_MAX bytes is accepted', async (t) => {
  const s = await serve();
  try {
    const c = await connectSocketClient(s.socketPath);
    const path = '/max';
    const value = 'm'.repeat(XENSTORE_PAYLOAD_MAX - path.length - 1);
    await c.write(path, value);
    t.is((await c.read(path)).length, value.length);
    c.close();
  } finally {
    await s.stop();
  }
});
