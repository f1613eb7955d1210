import test from 'ava';
import { domid, evtchnPort, mfn } from '../../hypervisor/public/types.js';
import { CMSG_SHUTDOWN, CMSG_SHUTDOWN_POWEROFF, CONTROL_RING_SIZE } from '../../hypervisor/public/domain_controller.js';
import { DomainController } from '../../hypervisor/dom0/ctrlif/controller.js';
import { FakeClock, FakeLinkEnv } from './console_env.js';
import { CtrlIfFront, type Msg } from './ctrlif_front.js';

const D1 = domid(1);
const D2 = domid(2);
const PAGE = mfn(0x77);
const PAGE2 = mfn(0x78);
const NEW_PAGE = mfn(0x99);
const PORT = evtchnPort(4);
const NEW_PORT = evtchnPort(8);
const TIMEOUT = 5_000_000_000;

function setup() {
  const env = new FakeLinkEnv();
  const clock = new FakeClock();
  const ctl = new DomainController(env, { clock, timeoutNs: TIMEOUT });
  const guest = (d: typeof D1, page: typeof PAGE): CtrlIfFront => {
    const front = new CtrlIfFront(env.addPage(d, page).mem);
    const r = ctl.add(d, page, PORT);
    if (!r.ok) throw new Error(r.error);
    return front;
  };
  return { env, clock, ctl, guest };
}

const echo = (m: Msg): Msg => ({ type: m.type, subtype: m.subtype, id: m.id, payload: [] });

test('tx_req_prod jumping more than 8 stops serving that domain only, with one clear log line', async (t) => {
  const { env, ctl, guest } = setup();
  const bad = guest(D1, PAGE);
  const good = guest(D2, PAGE2);
  const waiting = ctl.sendShutdown(D1, 'poweroff');
  bad.view().set('tx_req_prod', CONTROL_RING_SIZE + 1);
  env.signal(1, PORT);
  env.signal(1, PORT);

  t.like(ctl.state(D1), { state: 'broken' });
  t.is(env.reports.length, 1);
  t.regex(env.reports[0]!, /^ctrl_if d1: tx_req_prod jumped to 9: 9 requests past tx_resp_prod 0 .*; no longer serving this domain$/);
  t.is(env.open(1, PORT), undefined, 'its channel is closed');
  t.is(bad.view().get('tx_resp_prod'), 0, 'nothing was answered');
  const r = await waiting;
  t.like(r, { ok: false, error: { kind: 'broken', domid: D1, request: 'CMSG_SHUTDOWN/0' } });
  t.like(await ctl.sendShutdown(D1, 'reboot'), { ok: false, error: { kind: 'broken' } });

  const p2 = ctl.sendShutdown(D2, 'poweroff');
  const [req] = good.takeRequests();
  good.respond(echo(req!));
  env.signal(2, PORT);
  t.like(await p2, { ok: true, response: { type: CMSG_SHUTDOWN, subtype: CMSG_SHUTDOWN_POWEROFF } });
});

test('more answers than requests outstanding is hostile', async (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'suspend');
  const [req] = front.takeRequests();
  front.respond(echo(req!));
  front.respond(echo(req!));
  front.respond(echo(req!));
  env.signal(1, PORT);
  t.like(ctl.state(D1), { state: 'broken' });
  t.regex(env.reports[0] ?? '', /rx_resp_prod 3 answers 3 requests but only 1 are outstanding/);
  t.like(await p, { ok: false, error: { kind: 'broken' } });
});

test('a page restored with impossible indices is refused at connect', (t) => {
  const env = new FakeLinkEnv();
  const ctl = new DomainController(env, { clock: new FakeClock() });
  const front = new CtrlIfFront(env.addPage(D1, PAGE).mem);
  front.view().set('rx_req_prod', 20);
  const r = ctl.add(D1, PAGE, PORT);
  t.false(r.ok);
  t.regex(r.ok ? '' : r.error, /rx_req_prod 20 is 20 past rx_resp_prod 0/);
  t.is(env.reports.length, 1);
  t.is(env.open(1, PORT), undefined, 'nothing bound');
});

test('an answer that does not echo the request settles it as a bad response', async (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'reboot');
  const [req] = front.takeRequests();
  front.respond({ type: req!.type, subtype: 3, id: req!.id, payload: [] });
  env.signal(1, PORT);
  t.like(await p, { ok: false, error: { kind: 'bad-response', detail: 'answered with CMSG_SHUTDOWN/3' } });
  t.like(ctl.state(D1), { state: 'connected', outstanding: 0 });
});

test('an answer with an id dom0 never used is dropped; the request it displaced times out', async (t) => {
  const { env, clock, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'poweroff');
  const [req] = front.takeRequests();
  front.respond({ type: req!.type, subtype: req!.subtype, id: (req!.id + 100) & 0xff, payload: [] });
  env.signal(1, PORT);
  t.like(ctl.state(D1), { state: 'connected', outstanding: 0 }, 'the slot is free again; the domain is still served');
  clock.advance(TIMEOUT);
  t.like(await p, { ok: false, error: { kind: 'timeout' } });
});

test('an answer when nothing is outstanding is hostile', (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  front.respond({ type: CMSG_SHUTDOWN, subtype: 0, id: 0, payload: [] });
  env.signal(1, PORT);
  t.like(ctl.state(D1), { state: 'broken' });
  t.regex(env.reports[0] ?? '', /only 0 are outstanding/);
});

test('the timeout fires on the injected clock; a late answer is dropped and frees its slot', async (t) => {
  const { env, clock, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'suspend');
  const [req] = front.takeRequests();
  clock.advance(TIMEOUT - 1);
  let settled = false;
  void p.then(() => { settled = true; });
  await new Promise((resolve) => setImmediate(resolve));
  t.false(settled, 'not before the deadline');
  clock.advance(1);
  const r = await p;
  t.like(r, { ok: false, error: { kind: 'timeout', domid: D1, request: 'CMSG_SHUTDOWN/2' } });
  t.regex(r.ok ? '' : r.error.detail, /in the ring, unanswered/);
  t.is(clock.armed, 0);

  front.respond(echo(req!));
  env.signal(1, PORT);
  t.like(ctl.state(D1), { state: 'connected', outstanding: 0 });
  const p2 = ctl.sendShutdown(D1, 'poweroff');
  const [req2] = front.takeRequests();
  t.not(req2!.id, req!.id, 'a fresh id');
  front.respond(echo(req2!));
  env.signal(1, PORT);
  t.like(await p2, { ok: true });
});

test('a request still queued for ring space times out and never reaches the ring', async (t) => {
  const { env, clock, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  for (let i = 0; i < CONTROL_RING_SIZE; i++) void ctl.sendShutdown(D1, 'poweroff');
  const queued = ctl.sendShutdown(D1, 'reboot');
  clock.advance(TIMEOUT);
  t.like(await queued, { ok: false, error: { kind: 'timeout', request: 'CMSG_SHUTDOWN/1' } });
  const reqs = front.takeRequests();
  t.is(reqs.length, CONTROL_RING_SIZE);
  for (const m of reqs) front.respond(echo(m));
  env.signal(1, PORT);
  t.is(front.takeRequests().length, 0, 'the timed-out request was not sent later');
  t.like(ctl.state(D1), { state: 'connected', outstanding: 0, queued: 0 });
});

test('reconnect after restore: the new page and port serve, unanswered requests carry over', async (t) => {
  const { env, ctl, guest } = setup();
  const old = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'poweroff');
  const [req] = old.takeRequests();

  // The restored page is the saved one at a new frame; the guest resyncs
  // (Xen 2.0's ctrl_if_resume: rx_req_cons = rx_resp_prod) and answers again.
  const restored = env.addPage(D1, NEW_PAGE);
  restored.bytes.set(env.pages.get(`1:${PAGE}`)!.bytes);
  const fresh = new CtrlIfFront(restored.mem);
  fresh.rxReqCons = fresh.view().get('rx_resp_prod');
  fresh.txRespCons = fresh.view().get('tx_resp_prod');
  t.deepEqual(ctl.reconnect(D1, NEW_PAGE, NEW_PORT), { ok: true });
  t.is(env.open(1, PORT), undefined);
  const again = fresh.takeRequests();
  t.deepEqual(again.map((m) => m.id), [req!.id]);
  fresh.respond(echo(again[0]!));
  env.signal(1, NEW_PORT);
  t.like(await p, { ok: true });

  const p2 = ctl.sendShutdown(D1, 'reboot');
  env.signal(1, PORT); // the old port is gone: nothing happens
  const [r2] = fresh.takeRequests();
  fresh.respond(echo(r2!));
  env.signal(1, NEW_PORT);
  t.like(await p2, { ok: true });
});

test('requests to an unknown or removed domain settle with an error, never reject', async (t) => {
  const { ctl, guest } = setup();
  t.like(await ctl.sendShutdown(domid(42), 'poweroff'), { ok: false, error: { kind: 'no-such-domain' } });
  guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'poweroff');
  ctl.remove(D1);
  t.like(await p, { ok: false, error: { kind: 'removed' } });
  t.is(ctl.state(D1), undefined);
  ctl.close();
  t.like(await ctl.sendShutdown(D1, 'poweroff'), { ok: false, error: { kind: 'closed' } });
});
