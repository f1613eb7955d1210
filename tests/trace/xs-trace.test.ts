/*
 * Which xenstore requests become trace records (xs-trace.ts), fed as
 * xenstored's onRequest hook would: the domain a request is about, not
 * only the one it comes from; one data/ write per introduce or resume.
 */
import test from 'ava';
import { XS_INTRODUCE, XS_READ, XS_RELEASE, XS_RESUME, XS_WATCH, XS_WRITE } from '../../hypervisor/public/io/xs_wire.js';
import { XsRequestTracer } from '../../hypervisor/tools/xenstored/xs-trace.js';
import { Xenstored } from '../../hypervisor/tools/xenstored/server.js';
import { XsClient } from '../../hypervisor/tools/xenstored/client.js';
import { concatBytes, fromLatin1, nulStrings, type XsMsg } from '../../hypervisor/tools/xenstored/wire.js';

const msg = (type: number, payload: Uint8Array): XsMsg => ({ type, reqId: 1, txId: 0, payload });
const write = (path: string, value: string): XsMsg => msg(XS_WRITE, concatBytes([nulStrings([path]), fromLatin1(value)]));

function tracer(): { t: XsRequestTracer; out: string[] } {
  const out: string[] = [];
  return { t: new XsRequestTracer((d, e, detail) => out.push(`d${d} ${e}${detail === '' ? '' : `: ${detail}`}`)), out };
}

test('domain management requests are about the domain they name', (t) => {
  const { t: x, out } = tracer();
  x.observe(0, msg(XS_INTRODUCE, nulStrings(['5', '4096', '1'])));
  x.observe(0, msg(XS_RESUME, nulStrings(['5'])));
  x.observe(0, msg(XS_RELEASE, nulStrings(['5'])));
  t.deepEqual(out, ['d5 XS_INTRODUCE: mfn 4096, port 1', 'd5 XS_RESUME', 'd5 XS_RELEASE']);
});

test("a domain's watches are traced, dom0's are not", (t) => {
  const { t: x, out } = tracer();
  x.observe(3, msg(XS_WATCH, nulStrings(['control/shutdown', '2'])));
  x.observe(0, msg(XS_WATCH, nulStrings(['@releaseDomain', 'x'])));
  t.deepEqual(out, ['d3 XS_WATCH: control/shutdown token "2"']);
});

test('state, shutdown and suspend-channel writes, relative or absolute, by the domain or by dom0; the backend state about its frontend', (t) => {
  const { t: x, out } = tracer();
  x.observe(3, write('device/vbd/51712/state', '4'));
  x.observe(0, write('/local/domain/3/device/vif/0/state', '1'));
  x.observe(0, write('/local/domain/0/backend/vbd/3/51712/state', '2'));
  x.observe(0, write('/local/domain/3/control/shutdown', 'suspend'));
  x.observe(3, write('control/shutdown', ''));
  x.observe(3, write('device/suspend/event-channel', '6'));
  x.observe(3, write('device/vbd/51712/ring-ref', '8'));
  x.observe(0, write('/local/domain/0/name', 'Domain-0'));
  x.observe(3, msg(XS_READ, nulStrings(['device/vbd/51712/state'])));
  t.deepEqual(out, [
    'd3 XS_WRITE: device/vbd/51712/state = 4 (Connected)',
    'd3 XS_WRITE: device/vif/0/state = 1 (Initialising) (by d0)',
    'd3 XS_WRITE: backend vbd/51712 state = 2 (InitWait)',
    'd3 XS_WRITE: control/shutdown = "suspend" (by d0)',
    'd3 XS_WRITE: control/shutdown = ""',
    'd3 XS_WRITE: device/suspend/event-channel = "6"',
  ]);
});

test('only the first data/ write after each introduce or resume is traced', (t) => {
  const { t: x, out } = tracer();
  x.observe(0, msg(XS_INTRODUCE, nulStrings(['4', '10', '1'])));
  x.observe(4, write('data/workload/clock/ticks', '1'));
  x.observe(4, write('data/workload/clock/ticks', '2'));
  x.observe(0, write('/local/domain/4/data/ping', 'x'));
  x.observe(0, msg(XS_RESUME, nulStrings(['4'])));
  x.observe(4, write('data/workload/clock/ticks', '3'));
  t.deepEqual(out.filter((l) => l.includes('data/')), [
    'd4 XS_WRITE: data/workload/clock/ticks = "1" (first data/ write; later ones are not traced)',
    'd4 XS_WRITE: data/workload/clock/ticks = "3" (first data/ write; later ones are not traced)',
  ]);
});

test("xenstored calls its onRequest hook with the requesting connection's domain for every request", async (t) => {
  const seen: [number, number][] = [];
  const xs = new Xenstored({ onRequest: (from, m) => seen.push([from, m.type]) });
  const client = new XsClient((m) => port.send(m));
  const port = xs.connectLocal((m) => client.receive(m));
  await client.write('/local/domain/0/x', '1');
  await client.read('/local/domain/0/x');
  t.deepEqual(seen, [[0, XS_WRITE], [0, XS_READ]]);
});
