/*
 * The domain ring transport on a 2076-byte xenstore_domain_interface page:
 * requests and replies through the rings, split across the ring end, with
 * indices past 2^31 and 2^32; hostile indices and oversize messages
 * disconnect that domain only; reconnection; the outstanding-reply limit.
 */
import test from 'ava';
import {
  XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX, XENSTORE_PAYLOAD_MAX,
  XENSTORE_RECONNECT, XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION, XS_READ,
  xenstore_domain_interface,
} from '../../hypervisor/public/io/xs_wire.js';
import { bytesMem, type ByteMem } from '../../hypervisor/public/layout.js';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { XsClient } from '../../hypervisor/tools/xenstored/client.js';
import { XS_RING_PAGE_BYTES, type RingOptions, type XsRingTransport } from '../../hypervisor/tools/xenstored/ring.js';
import { XsRingFront } from '../../hypervisor/tools/xenstored/ring_front.js';
import { Xenstored } from '../../hypervisor/tools/xenstored/server.js';
import { encodeMsg, nulStrings } from '../../hypervisor/tools/xenstored/wire.js';

interface Guest {
  readonly domid: number;
  readonly page: Uint8Array;
  readonly mem: ByteMem;
  readonly front: XsRingFront;
  readonly client: XsClient;
  readonly ring: () => XsRingTransport;
  notifications: number;
  /** While set, the guest does not react to the server's signals. */
  deaf: boolean;
}

/** A server, a dom0 client in-process, and guests whose pages the server maps on INTRODUCE. */
function machine(ring: RingOptions = {}, base = 0): { xs: Xenstored; dom0: XsClient; guest: (domid: number, start?: number) => Promise<Guest> } {
  const guests = new Map<number, Guest>();
  const xs = new Xenstored({
    ring,
    mapRing: (domid) => {
      const g = guests.get(domid);
      return g === undefined ? undefined : { mem: g.mem, base, notify: () => {
        g.notifications++;
        if (!g.deaf) g.front.notified();
      } };
    },
  });
  const dom0 = new XsClient((m) => port.send(m));
  const port = xs.connectLocal((m) => dom0.receive(m));
  const guest = async (domid: number, start = 0): Promise<Guest> => {
    const page = new Uint8Array(base + XS_RING_PAGE_BYTES);
    const mem = bytesMem(page);
    const v = xenstore_domain_interface.view(mem, base);
    for (const f of ['req_cons', 'req_prod', 'rsp_cons', 'rsp_prod'] as const) v.set(f, start >>> 0);
    const ring = (): XsRingTransport => {
      const r = xs.ringOf(toDomId(domid));
      if (r === undefined) throw new Error(`no ring for domain ${domid}`);
      return r;
    };
    const front = new XsRingFront(mem, base, () => xs.ringOf(toDomId(domid))?.kick());
    const client = new XsClient((m) => front.send(m));
    front.onMessage = (m) => client.receive(m);
    const g: Guest = { domid, page, mem, front, client, ring, notifications: 0, deaf: false };
    guests.set(domid, g);
    await dom0.mkdir(`/local/domain/${domid}`);
    await dom0.setPerms(`/local/domain/${domid}`, [`n${domid}`, 'r0']);
    await dom0.introduce(domid, 100 + domid, 10 + domid);
    return g;
  };
  return { xs, dom0, guest };
}

function view(g: Guest) {
  return xenstore_domain_interface.view(g.mem, 0);
}

test('the page is 2076 bytes and the server advertises reconnection and the error word', async (t) => {
  const { guest } = machine();
  const g = await guest(1);
  t.is(g.page.length, 2076);
  t.is(view(g).get('server_features'), XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR);
});

test('requests and replies travel through the rings, relative to the domain home', async (t) => {
  const { dom0, guest } = machine();
  const g = await guest(1);
  await g.client.write('name', 'guest-1');
  t.is(await dom0.read('/local/domain/1/name'), 'guest-1');
  t.is(await g.client.read('/local/domain/1/name'), 'guest-1');
  t.deepEqual(await g.client.directory('/local/domain/1'), ['name']);
  await t.throwsAsync(g.client.read('/tool'), { message: /EACCES/ });
  t.true(g.notifications > 0, 'the server signalled the guest');
});

test('the interface need not start at offset 0 of the memory the server is given', async (t) => {
  // A page mapped inside a larger window (base 512): every ring access must
  // add the base once, not twice.
  const { dom0, guest } = machine({}, 512);
  const g = await guest(3, 1000);
  const value = 'y'.repeat(1500);
  await g.client.write('far', value);
  t.is(await g.client.read('far'), value);
  t.is(await dom0.read('/local/domain/3/far'), value);
  t.true(g.page.subarray(0, 512).every((b) => b === 0), 'nothing was written below the interface');
});

test('messages split across the ring end, and indices past 2^31 and 2^32, work', async (t) => {
  for (const start of [1000, 0x7ffffff0, 0xfffffff0]) {
    const { guest } = machine();
    const g = await guest(2, start);
    // Bigger than a ring: the request and its reply each take several passes.
    const value = 'x'.repeat(2000);
    await g.client.write('big', value);
    t.is(await g.client.read('big'), value, `start ${start}`);
    for (let i = 0; i < 50; i++) await g.client.write(`k${i}`, String(i));
    t.is(await g.client.read('k49'), '49');
    const v = view(g);
    t.is(v.get('req_cons'), v.get('req_prod'), 'the server consumed every request');
    t.is(v.get('rsp_cons'), v.get('rsp_prod'));
    t.true(((v.get('req_prod') - start) >>> 0) > 2 * 1024, 'the indices went round the ring more than twice');
  }
});

test('watch events arrive on the ring', async (t) => {
  const { dom0, guest } = machine();
  const g = await guest(3);
  await g.client.watch('control/shutdown', 'sd');
  t.deepEqual(await g.client.nextEvent(), { path: 'control/shutdown', token: 'sd' });
  await dom0.write('/local/domain/3/control/shutdown', 'suspend');
  t.deepEqual(await g.client.nextEvent(), { path: 'control/shutdown', token: 'sd' });
});

test('a guest corrupting its request indices is disconnected; others do not notice', async (t) => {
  const { xs, dom0, guest } = machine();
  const bad = await guest(4);
  const good = await guest(5);
  await bad.client.watch('x', 't');
  const v = view(bad);
  v.set('req_prod', (v.get('req_cons') + 5000) >>> 0);
  bad.ring().kick();
  t.true(bad.ring().disconnected);
  t.is(v.get('error'), XENSTORE_ERROR_RINGIDX);
  const conn = xs.state.domains.get(4)?.conn ?? -1;
  t.true(xs.state.conns.get(conn)?.ignored, 'the core ignores the connection');
  t.is(xs.state.conns.get(conn)?.watches.length, 0, 'its watches are gone');
  await good.client.write('fine', 'yes');
  t.is(await dom0.read('/local/domain/5/fine'), 'yes');
  t.true(await dom0.isDomainIntroduced(4), 'still introduced: @releaseDomain can still be sent for it');
});

test('a guest corrupting its response indices is disconnected', async (t) => {
  const { guest } = machine();
  const bad = await guest(4);
  const v = view(bad);
  v.set('rsp_cons', (v.get('rsp_prod') + 3) >>> 0);
  const pending = bad.client.read('anything').catch((e: Error) => e);
  t.true(bad.ring().disconnected);
  t.is(v.get('error'), XENSTORE_ERROR_RINGIDX);
  bad.client.fail(new Error('gave up'));
  t.true((await pending) instanceof Error);
});

test('a guest announcing a payload over XENSTORE_PAYLOAD_MAX is disconnected; others do not notice', async (t) => {
  const { dom0, guest } = machine();
  const bad = await guest(6);
  const good = await guest(7);
  const hdr = encodeMsg({ type: XS_READ, reqId: 1, txId: 0, payload: new Uint8Array(0) });
  new DataView(hdr.buffer).setUint32(12, XENSTORE_PAYLOAD_MAX + 1, true);
  bad.front.send({ type: XS_READ, reqId: 1, txId: 0, payload: nulStrings(['ok']) });
  // Raw bytes straight into the request ring, as a hostile guest would.
  const v = view(bad);
  const prod = v.get('req_prod');
  bad.mem.writeBytes(v.addr('req') + (prod & 1023), hdr.subarray(0, Math.min(16, 1024 - (prod & 1023))));
  if ((prod & 1023) + 16 > 1024) bad.mem.writeBytes(v.addr('req'), hdr.subarray(1024 - (prod & 1023)));
  v.set('req_prod', (prod + 16) >>> 0);
  bad.ring().kick();
  t.true(bad.ring().disconnected);
  t.is(v.get('error'), XENSTORE_ERROR_PROTO);
  await good.client.write('fine', '1');
  t.is(await dom0.read('/local/domain/7/fine'), '1');
});

test('a guest may reconnect its ring: rings emptied, watches dropped, connection word back to 0', async (t) => {
  const { xs, guest } = machine();
  const g = await guest(8);
  await g.client.watch('w', 't');
  await g.client.nextEvent();
  const v = view(g);
  v.set('req_prod', (v.get('req_cons') + 9999) >>> 0);
  g.ring().kick();
  t.true(g.ring().disconnected);
  v.set('connection', XENSTORE_RECONNECT);
  g.ring().kick();
  t.is(v.get('connection'), XENSTORE_CONNECTED);
  t.is(v.get('error'), XENSTORE_ERROR_NONE);
  t.deepEqual([v.get('req_cons'), v.get('req_prod'), v.get('rsp_cons'), v.get('rsp_prod')], [0, 0, 0, 0]);
  const conn = xs.state.domains.get(8)?.conn ?? -1;
  t.false(xs.state.conns.get(conn)?.ignored);
  t.is(xs.state.conns.get(conn)?.watches.length, 0);
  await g.client.write('again', 'yes');
  t.is(await g.client.read('again'), 'yes');
});

test('requests stop being read while 20 replies wait for ring space, and resume when the guest reads', async (t) => {
  const { dom0, guest } = machine();
  const g = await guest(9);
  await dom0.write('/local/domain/9/big', 'b'.repeat(900));
  await dom0.setPerms('/local/domain/9/big', ['n9']);
  const v = view(g);
  g.deaf = true;
  // Write 30 READ requests straight into the ring without ever reading replies.
  const req = encodeMsg({ type: XS_READ, reqId: 5, txId: 0, payload: nulStrings(['big']) });
  let prod = v.get('req_prod');
  for (let i = 0; i < 30; i++) {
    for (let k = 0; k < req.length; k++) g.page[v.addr('req') + ((prod + k) & 1023)] = req[k] ?? 0;
    prod = (prod + req.length) >>> 0;
  }
  v.set('req_prod', prod);
  g.ring().kick();
  const taken = ((v.get('req_cons') - (prod - 30 * req.length)) >>> 0) / req.length;
  t.is(taken, 21, 'one reply fits in the ring, twenty wait: then reading stops');
  t.is(g.ring().queued, 20);
  // The guest drains replies (the front reads them and kicks): everything completes.
  let replies = 0;
  g.front.onMessage = () => { replies += 1; };
  g.deaf = false;
  g.front.notified();
  t.is(replies, 30);
  t.is(v.get('req_cons'), v.get('req_prod'));
});

test('RELEASE detaches the ring; a later kick does nothing', async (t) => {
  const { xs, dom0, guest } = machine();
  const g = await guest(10);
  const ring = g.ring();
  await dom0.release(10);
  t.is(xs.ringOf(toDomId(10)), undefined);
  const v = view(g);
  const before = v.get('rsp_prod');
  g.front.send({ type: XS_READ, reqId: 1, txId: 0, payload: nulStrings(['x']) });
  ring.kick();
  t.is(v.get('rsp_prod'), before);
});

test('events for a domain that stops reading are deduplicated and bounded', async (t) => {
  const { dom0, guest } = machine({ maxQueuedBytes: 4096 });
  const g = await guest(11);
  await g.client.watch('w', 'tok');
  await g.client.nextEvent();
  g.deaf = true;
  // Fill the response ring, then queue: the same event twice is queued once.
  for (let i = 0; i < 40; i++) await dom0.write(`/local/domain/11/w/fill-${i}`, '');
  const queued = g.ring().queued;
  await dom0.write('/local/domain/11/w/same', '1');
  await dom0.write('/local/domain/11/w/same', '2');
  t.is(g.ring().queued, queued + 1, 'an identical pending event is dropped');
  for (let i = 0; i < 500; i++) await dom0.write(`/local/domain/11/w/more-${i}`, '');
  t.true(g.ring().queued < 200, `queue bounded (${g.ring().queued} messages)`);
  // The domain still gets its replies once it reads again.
  g.deaf = false;
  g.front.notified();
  t.is(await g.client.read('w/same'), '2');
});
