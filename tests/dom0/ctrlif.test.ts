import test from 'ava';
import { readFileSync } from 'node:fs';
import { domid, evtchnPort, mfn } from '../../hypervisor/public/types.js';
import {
  CMSG_CONSOLE, CMSG_CONSOLE_DATA, CMSG_MEM_REQUEST, CMSG_NETIF_FE, CMSG_SHUTDOWN, CMSG_SHUTDOWN_POWEROFF, CMSG_SHUTDOWN_REBOOT,
  CMSG_SHUTDOWN_SUSPEND, CMSG_SHUTDOWN_SYSRQ, CONTROL_RING_SIZE,
} from '../../hypervisor/public/domain_controller.js';
import { DomainController, type CtrlIfResult } from '../../hypervisor/dom0/ctrlif/controller.js';
import { Xenconsoled } from '../../hypervisor/dom0/console/xenconsoled.js';
import { FakeClock, FakeLinkEnv, tempDir, text } from './console_env.js';
import { CtrlIfFront, type Msg } from './ctrlif_front.js';

const D1 = domid(1);
const PAGE = mfn(0x77);
const PORT = evtchnPort(4);
const TIMEOUT = 5_000_000_000;

function setup(opts: { consoleOutput?: (d: typeof D1, b: Uint8Array) => void } = {}) {
  const env = new FakeLinkEnv();
  const clock = new FakeClock();
  const ctl = new DomainController(env, { clock, timeoutNs: TIMEOUT, ...opts });
  const guest = (d: typeof D1, page: typeof PAGE, startIdx?: number): CtrlIfFront => {
    const front = new CtrlIfFront(env.addPage(d, page).mem);
    if (startIdx !== undefined) front.setIndices(startIdx);
    const r = ctl.add(d, page, PORT);
    if (!r.ok) throw new Error(`add d${d}: ${r.error}`);
    return front;
  };
  return { env, clock, ctl, guest };
}

/** Settle state of a promise without waiting for it. */
function watch(p: Promise<CtrlIfResult>): { result: CtrlIfResult | undefined } {
  const box: { result: CtrlIfResult | undefined } = { result: undefined };
  void p.then((r) => { box.result = r; });
  return box;
}

const echo = (m: Msg, payload: number[] = []): Msg => ({ type: m.type, subtype: m.subtype, id: m.id, payload });
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a shutdown request is sent on rx_ring and its answer echoes type, subtype and id', async (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const p = ctl.sendShutdown(D1, 'suspend');
  const reqs = front.takeRequests();
  t.is(reqs.length, 1);
  const req = reqs[0]!;
  t.like(req, { type: CMSG_SHUTDOWN, subtype: CMSG_SHUTDOWN_SUSPEND, payload: [] });
  t.is(env.notifies(1, PORT), 1, 'the guest was signalled');

  front.respond(echo(req));
  env.signal(1, PORT);
  const r = await p;
  t.true(r.ok);
  if (r.ok) t.like(r.response, { type: CMSG_SHUTDOWN, subtype: CMSG_SHUTDOWN_SUSPEND, id: req.id });
  t.like(ctl.state(D1), { state: 'connected', outstanding: 0, queued: 0 });
});

test('every shutdown kind has its subtype; sysrq carries its key', async (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  const ps = [ctl.sendShutdown(D1, 'poweroff'), ctl.sendShutdown(D1, 'reboot'), ctl.sendShutdown(D1, 'sysrq', 'b')];
  const reqs = front.takeRequests();
  t.deepEqual(reqs.map((m) => [m.type, m.subtype, m.payload]), [
    [CMSG_SHUTDOWN, CMSG_SHUTDOWN_POWEROFF, []],
    [CMSG_SHUTDOWN, CMSG_SHUTDOWN_REBOOT, []],
    [CMSG_SHUTDOWN, CMSG_SHUTDOWN_SYSRQ, [0x62]],
  ]);
  t.is(new Set(reqs.map((m) => m.id)).size, 3, 'distinct ids');
  // Answer out of order: matched by id.
  for (const m of [reqs[2]!, reqs[0]!, reqs[1]!]) front.respond(echo(m));
  env.signal(1, PORT);
  const rs = await Promise.all(ps);
  t.deepEqual(rs.map((r) => r.ok && r.response.subtype), [CMSG_SHUTDOWN_POWEROFF, CMSG_SHUTDOWN_REBOOT, CMSG_SHUTDOWN_SYSRQ]);
  t.throws(() => ctl.sendShutdown(D1, 'sysrq'), { instanceOf: RangeError });
});

test('with 8 requests outstanding the 9th waits until an answer frees a slot (indices wrapping 2^32)', async (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE, 2 ** 32 - 3);
  const boxes = Array.from({ length: CONTROL_RING_SIZE + 1 }, (_, i) => watch(ctl.send(D1, { type: CMSG_MEM_REQUEST, subtype: 0, payload: Uint8Array.of(i) })));
  const first = front.takeRequests();
  t.is(first.length, CONTROL_RING_SIZE, 'only 8 go into the ring');
  t.deepEqual(first.map((m) => m.payload[0]), [0, 1, 2, 3, 4, 5, 6, 7]);
  t.like(ctl.state(D1), { state: 'connected', outstanding: 8, queued: 1 });
  env.signal(1, PORT);
  t.is(front.takeRequests().length, 0, 'still full: nothing answered');

  front.respond(echo(first[0]!, [42]));
  env.signal(1, PORT);
  await flush();
  t.like(boxes[0]!.result, { ok: true });
  t.deepEqual(boxes[0]!.result?.ok && [...boxes[0]!.result.response.payload], [42]);
  const ninth = front.takeRequests();
  t.is(ninth.length, 1, 'the 9th went out once a slot was free');
  t.is(ninth[0]!.payload[0], 8);
  t.true(front.view().get('rx_req_prod') < 2 ** 31, 'rx_req_prod wrapped past 2^32');
  for (const m of [...first.slice(1), ninth[0]!]) front.respond(echo(m));
  env.signal(1, PORT);
  await flush();
  t.true(boxes.every((b) => b.result?.ok === true));
});

test('guest CMSG_CONSOLE data reaches the console log and is answered with length 0', (t) => {
  const dir = tempDir(t, 'xenport-ctrlif-');
  const env = new FakeLinkEnv();
  const consoled = new Xenconsoled(env, { consoleDir: dir });
  const ctl = new DomainController(env, { clock: new FakeClock(), consoleOutput: (d, b) => consoled.appendOutput(d, b) });
  const front = new CtrlIfFront(env.addPage(D1, PAGE).mem);
  t.deepEqual(ctl.add(D1, PAGE, PORT), { ok: true });
  const bytes = (s: string): number[] => [...new TextEncoder().encode(s)];
  t.true(front.send({ type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 0xff, payload: bytes('ctrl_if says hi\n') }));
  t.true(front.send({ type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 3, payload: bytes('and again\n') }));
  env.signal(1, PORT);
  t.is(text(readFileSync(consoled.logPath(D1)!)), 'ctrl_if says hi\nand again\n');
  t.deepEqual(front.takeResponses(), [
    { type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 0xff, payload: [] },
    { type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 3, payload: [] },
  ]);
  t.is(env.notifies(1, PORT), 1);
});

test('an unknown type is answered with length 0; a registered handler answers with its payload', (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  ctl.onGuestRequest(CMSG_NETIF_FE, (_d, req) => Uint8Array.of(req.subtype, 0xaa));
  front.send({ type: 99, subtype: 7, id: 5, payload: [1, 2, 3] });
  front.send({ type: CMSG_NETIF_FE, subtype: 2, id: 6, payload: [] });
  env.signal(1, PORT);
  t.deepEqual(front.takeResponses(), [
    { type: 99, subtype: 7, id: 5, payload: [] },
    { type: CMSG_NETIF_FE, subtype: 2, id: 6, payload: [2, 0xaa] },
  ]);
  t.like(ctl.state(D1), { state: 'connected' });
});

test('a malformed guest request (length > 60) is answered with length 0 and not forwarded', (t) => {
  const forwarded: Uint8Array[] = [];
  const { env, guest } = setup({ consoleOutput: (_d, b) => forwarded.push(b) });
  const front = guest(D1, PAGE);
  front.send({ type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 1, payload: [65] }, 200);
  env.signal(1, PORT);
  t.deepEqual(front.takeResponses(), [{ type: CMSG_CONSOLE, subtype: CMSG_CONSOLE_DATA, id: 1, payload: [] }]);
  t.is(forwarded.length, 0);
});

test('a handler that throws still gets the guest an answer', (t) => {
  const { env, ctl, guest } = setup();
  const front = guest(D1, PAGE);
  ctl.onGuestRequest(CMSG_MEM_REQUEST, () => { throw new Error('handler bug'); });
  front.send({ type: CMSG_MEM_REQUEST, subtype: 0, id: 2, payload: [9] });
  env.signal(1, PORT);
  t.deepEqual(front.takeResponses(), [{ type: CMSG_MEM_REQUEST, subtype: 0, id: 2, payload: [] }]);
});

test('golden bytes: a suspend request lands in rx_ring[0] at offset 512, rx_req_prod at 1032', (t) => {
  const { ctl, env } = setup();
  const page = env.addPage(domid(3), mfn(0x300));
  t.deepEqual(ctl.add(domid(3), mfn(0x300), PORT), { ok: true });
  void ctl.sendShutdown(domid(3), 'suspend');
  const id = page.bytes[512 + 2]!;
  t.deepEqual([...page.bytes.subarray(512, 516)], [CMSG_SHUTDOWN, CMSG_SHUTDOWN_SUSPEND, id, 0]);
  t.deepEqual([...page.bytes.subarray(1024, 1040)], [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
});
