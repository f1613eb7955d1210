/*
 * The guest's ctrl_if driver against the real dom0 domain controller
 * (hypervisor/dom0/ctrlif), on a real machine booting the netbsd image
 * (MachineHost, simulated clock).
 */
import test from 'ava';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { control_if, CMSG_MEM_REQUEST, CMSG_SHUTDOWN, CMSG_SHUTDOWN_SYSRQ } from '../../hypervisor/public/domain_controller.js';
import type { CtrlIfResult } from '../../hypervisor/dom0/ctrlif/controller.js';
import {
  host, boot, config, consoleText, drive, node, runFor, ctrlIfPage, u32le, holdDom0CtrlIf,
} from './fixture.js';
import { ctrlifImage, CTRLIF_TEST_TYPE, CTRLIF_SENDERS, CTRLIF_LINES } from './workloads.js';

const TX_REQ_PROD = control_if.offsetOf('tx_req_prod');
const TX_RESP_PROD = control_if.offsetOf('tx_resp_prod');
const RX_REQ_PROD = control_if.offsetOf('rx_req_prod');
const RX_RESP_PROD = control_if.offsetOf('rx_resp_prod');

test('ctrl_if0 attaches to the page and port the builder put on the command line', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-attach', ''));
  const st = h.controller.state(toDomId(b.domid));
  t.is(st?.state, 'connected');
  if (st?.state !== 'connected') return;
  const out = consoleText(h, b.domid);
  t.regex(out, /ctrl_if0 at hypervisor0: Xen 2\.0 control interface\n/);
  t.regex(out, new RegExp(`ctrl_if0: page pfn \\d+, event channel ${st.port}\\n`), 'the port dom0 serves');
  t.deepEqual(h.m.log.bugs, []);
});

test('dom0 queues 9 requests: 8 go into the ring, the guest answers all 9 in order, each echoing its request', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-rx', ''));
  const d = toDomId(b.domid);
  const keys = 'abcdefghi';
  const settled: string[] = [];
  const results: Promise<CtrlIfResult>[] = [...keys].map((k) => h.controller.sendShutdown(d, 'sysrq', k).then((r) => {
    settled.push(k);
    return r;
  }));
  const st = h.controller.state(d);
  t.deepEqual(st?.state === 'connected' ? [st.outstanding, st.queued] : st, [8, 1], 'a ring of 8, one waits in dom0');
  await drive(t, h, () => settled.length === keys.length, 'all nine answers');
  const rs = await Promise.all(results);
  for (const [i, r] of rs.entries()) {
    t.true(r.ok, `request ${i} answered`);
    if (!r.ok) continue;
    t.is(r.response.type, CMSG_SHUTDOWN);
    t.is(r.response.subtype, CMSG_SHUTDOWN_SYSRQ);
    t.is(r.response.payload.length, 0);
  }
  const ids = rs.map((r) => (r.ok ? r.response.id : -1));
  t.is(new Set(ids).size, 9, `distinct ids echoed: ${ids.join(',')}`);
  t.deepEqual(settled.join(''), keys, 'answered in order');
  const lines = consoleText(h, b.domid).split('\n').filter((l) => l.startsWith('ctrl_if0: sysrq'));
  t.deepEqual(lines, [...keys].map((k) => `ctrl_if0: sysrq ${k}`));
  const p = ctrlIfPage(h, b.domid);
  t.is(p.mem.getUint32(RX_RESP_PROD, true), p.mem.getUint32(RX_REQ_PROD, true), 'every request answered');
});

test('a type nobody handles is answered with length 0, echoing type, subtype and id', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, config('g-unknown', ''));
  const d = toDomId(b.domid);
  const a = h.controller.send(d, { type: 200, subtype: 7, payload: Uint8Array.of(1, 2, 3) });
  const m = h.controller.send(d, { type: CMSG_MEM_REQUEST, subtype: 0, payload: Uint8Array.of(0, 1, 0, 0, 0, 0, 0, 0) });
  let done = 0;
  void a.then(() => done++);
  void m.then(() => done++);
  await drive(t, h, () => done === 2, 'both answers');
  for (const [r, type, subtype] of [[await a, 200, 7], [await m, CMSG_MEM_REQUEST, 0]] as const) {
    t.true(r.ok);
    if (!r.ok) continue;
    t.deepEqual([r.response.type, r.response.subtype, r.response.payload.length], [type, subtype, 0]);
  }
});

test('guest -> dom0: with dom0 busy, 8 requests fill the ring and the other senders sleep; all are answered in order', async (t) => {
  const image = ctrlifImage();
  const h = await host(t, [image]);
  h.controller.onGuestRequest(CTRLIF_TEST_TYPE, (_d, req) => Uint8Array.of(...req.payload.map((x) => x + 1), 0xee));
  const b = await h.create(config('g-tx', 'workload=ctrlif_send', {}, image), true);
  const hold = holdDom0CtrlIf(h, b.domid);
  h.unpause(b.domid);
  await drive(t, h, () => consoleText(h, b.domid).includes(`ctrlif_send: ${CTRLIF_SENDERS} senders`), 'the senders');
  await runFor(h, 200_000_000);
  const p = ctrlIfPage(h, b.domid);
  const inRing = (p.mem.getUint32(TX_REQ_PROD, true) - p.mem.getUint32(TX_RESP_PROD, true)) >>> 0;
  t.is(inRing, 8, 'the ring is full');
  t.true(hold.held() > 0, 'the guest signalled dom0');
  t.false(consoleText(h, b.domid).includes('answered'), 'nobody answered yet');
  hold.release();
  await drive(t, h, () => consoleText(h, b.domid).includes('ctrlif_send: done'), 'the report');
  const out = consoleText(h, b.domid);
  const answers = out.split('\n').filter((l) => l.includes(' answered: '));
  const want = Array.from({ length: CTRLIF_SENDERS }, (_, k) => {
    const i = k + 1;
    const x = (i + 1).toString(16).padStart(2, '0');
    return `ctrlif_send: sender ${i} answered: error 0 type ${CTRLIF_TEST_TYPE} subtype ${i} payload ${x}${x}${x}ee`;
  });
  t.deepEqual(answers, want, 'every sender got its own answer, first come first served');
  t.regex(out, /before the lines: sent 12 answered 12 waited 4 maxinflight 8 maxqueued 4\n/);
  // The console lines went through CMSG_CONSOLE into dom0's console log, in order.
  const lines = out.split('\n').filter((l) => l.startsWith('ctrl_if line '));
  t.deepEqual(lines, Array.from({ length: CTRLIF_LINES }, (_, i) => `ctrl_if line ${i.toString().padStart(2, '0')}`));
  t.regex(out, new RegExp(`${CTRLIF_LINES} lines queued, 0 refused: sent 20 answered 12 waited 16 maxinflight 8 maxqueued 12\\n`));
  t.regex(out, /done: sent 32 answered 32 /);
  t.deepEqual(h.m.log.bugs, []);
});

test('hostile indices: a tx_resp_prod past our requests stops ctrl_if only; the guest runs on and xenstore still works', async (t) => {
  const h = await host(t, undefined, { ctrlIfTimeoutNs: 500_000_000 });
  const b = await boot(t, h, config('g-hostile-tx', 'workload=clock'));
  const dom = `/local/domain/${b.domid}`;
  const p = ctrlIfPage(h, b.domid);
  p.write(TX_RESP_PROD, u32le(p.mem.getUint32(TX_REQ_PROD, true) + 5));
  // Any event on the port makes the guest look.
  let settled = false;
  const r = h.controller.sendShutdown(toDomId(b.domid), 'sysrq', 'x').finally(() => {
    settled = true;
  });
  await drive(t, h, () => consoleText(h, b.domid).includes('ctrl_if disabled'), 'the report');
  t.regex(consoleText(h, b.domid), /ctrl_if0: tx_resp_prod \d+ answers 5 requests but only 0 are outstanding; ctrl_if disabled\n/);
  await drive(t, h, () => settled, 'the request settled');
  const res = await r;
  t.false(res.ok, 'the request that came with it is never answered');
  if (!res.ok) t.is(res.error.kind, 'timeout');
  t.false(consoleText(h, b.domid).includes('sysrq x'));
  const ticks = Number(node(h, `${dom}/data/workload/clock/ticks`));
  await runFor(h, 1_000_000_000);
  t.true(Number(node(h, `${dom}/data/workload/clock/ticks`)) > ticks + 50, 'the clock workload carries on');
  await h.xs.write(`${dom}/control/shutdown`, 'poweroff');
  await drive(t, h, () => h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the poweroff through xenstore');
  t.is(h.m.domain(b.domid)?.crash ?? null, null, 'no crash');
  t.deepEqual(h.m.log.bugs, []);
});

test('hostile indices: rx_req_prod 50 past our answers stops ctrl_if only', async (t) => {
  const h = await host(t, undefined, { ctrlIfTimeoutNs: 500_000_000 });
  const b = await boot(t, h, config('g-hostile-rx', 'workload=clock'));
  const dom = `/local/domain/${b.domid}`;
  let settled = false;
  const r = h.controller.sendShutdown(toDomId(b.domid), 'sysrq', 'y').finally(() => {
    settled = true;
  });
  const p = ctrlIfPage(h, b.domid);
  p.write(RX_REQ_PROD, u32le(p.mem.getUint32(RX_RESP_PROD, true) + 50));
  await drive(t, h, () => consoleText(h, b.domid).includes('ctrl_if disabled'), 'the report');
  t.regex(consoleText(h, b.domid), /ctrl_if0: rx_req_prod \d+ is 50 past rx_resp_prod \d+ \(ring of 8\); ctrl_if disabled\n/);
  await drive(t, h, () => settled, 'the request settled');
  t.false((await r).ok);
  const ticks = Number(node(h, `${dom}/data/workload/clock/ticks`));
  await runFor(h, 500_000_000);
  t.true(Number(node(h, `${dom}/data/workload/clock/ticks`)) > ticks + 20, 'the guest runs on');
  t.is(h.m.domain(b.domid)?.crash ?? null, null);
});
