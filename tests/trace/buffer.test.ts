/*
 * The trace buffer (hypervisor/xen/trace.ts) on its own: off by default,
 * bounded, ordered, filtered; JSON lines back and forth; and the machine's
 * hypercall gate has no observer unless tracing is on.
 */
import test from 'ava';
import { DOMID_INVALID } from '../../hypervisor/public/xen.js';
import { Machine } from '../../hypervisor/xen/machine.js';
import { Trace, parseTraceLine, traceLine, type TraceRecord } from '../../hypervisor/xen/trace.js';

/** A trace on a clock the test moves by hand. */
function traceAt(capacity?: number): { trace: Trace; clock: { ns: number }; switches: boolean[] } {
  const clock = { ns: 0 };
  const switches: boolean[] = [];
  const trace = new Trace(() => clock.ns, capacity, (on) => switches.push(on));
  return { trace, clock, switches };
}

test('off by default: record keeps nothing until the trace is switched on, and the switch is reported once each way', (t) => {
  const { trace, switches } = traceAt();
  t.false(trace.enabled);
  t.is(trace.record(1, 'xen', 'ignored'), undefined);
  t.deepEqual(trace.records(), []);
  trace.enabled = true;
  trace.enabled = true;
  t.truthy(trace.record(1, 'xen', 'kept'));
  trace.enabled = false;
  t.deepEqual(switches, [true, false]);
  t.deepEqual(trace.records().map((r) => r.event), ['kept']);
  t.is(trace.nextSeq, 1);
});

test('records are in order: seq from 0 without gaps, the machine time of each, and host ms that never go back', (t) => {
  const { trace, clock } = traceAt();
  trace.enabled = true;
  for (let i = 0; i < 5; i++) {
    clock.ns = 1000 * i;
    trace.record(i % 2, 'toolstack', `step ${i}`, i === 0 ? undefined : `detail ${i}`);
  }
  const rs = trace.records();
  t.deepEqual(rs.map((r) => r.seq), [0, 1, 2, 3, 4]);
  t.deepEqual(rs.map((r) => r.ns), [0, 1000, 2000, 3000, 4000]);
  t.true(rs.every((r, i) => Number.isFinite(r.hostMs) && (i === 0 || r.hostMs >= rs[i - 1]!.hostMs)));
  t.false('detail' in rs[0]!, 'no detail key when there is none');
  t.is(rs[1]!.detail, 'detail 1');
});

test('bounded: past its capacity the oldest records go, seq goes on, and dropped counts them', (t) => {
  const { trace } = traceAt(4);
  trace.enabled = true;
  for (let i = 0; i < 7; i++) trace.record(1, 'xen', `e${i}`);
  t.is(trace.capacity, 4);
  t.deepEqual(trace.records().map((r) => r.event), ['e3', 'e4', 'e5', 'e6']);
  t.deepEqual(trace.records().map((r) => r.seq), [3, 4, 5, 6]);
  t.is(trace.dropped, 3);
  t.is(trace.nextSeq, 7);
  t.deepEqual(trace.records({ since: 1 }).map((r) => r.seq), [3, 4, 5, 6], 'since before the oldest kept: what is left');
  t.deepEqual(trace.records({ since: 5 }).map((r) => r.seq), [5, 6]);
  t.deepEqual(trace.records({ since: 7 }), []);
  t.throws(() => new Trace(() => 0, 0), { instanceOf: RangeError });
});

test('filters: by domain, by source and by seq, combined', (t) => {
  const { trace } = traceAt();
  trace.enabled = true;
  trace.record(1, 'xen', 'a');
  trace.record(2, 'xen', 'b');
  trace.record(1, 'xenstored', 'c');
  trace.record(2, 'toolstack', 'd');
  trace.record(1, 'toolstack', 'e');
  t.deepEqual(trace.records({ domid: 1 }).map((r) => r.event), ['a', 'c', 'e']);
  t.deepEqual(trace.records({ domid: 2 }).map((r) => r.event), ['b', 'd']);
  t.deepEqual(trace.records({ src: 'toolstack' }).map((r) => r.event), ['d', 'e']);
  t.deepEqual(trace.records({ domid: 1, since: 1 }).map((r) => r.event), ['c', 'e']);
  t.deepEqual(trace.records({ domid: 3 }), []);
});

test('clear forgets the records kept, and seq goes on after it', (t) => {
  const { trace } = traceAt(3);
  trace.enabled = true;
  trace.record(1, 'xen', 'a');
  trace.record(1, 'xen', 'b');
  trace.clear();
  t.deepEqual(trace.records(), []);
  trace.record(1, 'xen', 'c');
  t.deepEqual(trace.records().map((r) => [r.seq, r.event]), [[2, 'c']]);
});

test('steps(): toolstack records about the listener\'s domain, or the domain a step names, or none yet', (t) => {
  const { trace } = traceAt();
  trace.enabled = true;
  trace.steps(4)('P2M read', 'max_pfn 8');
  const restore = trace.steps();
  restore('stream read started');
  restore('domain created', 'd7', 7);
  t.deepEqual(trace.records().map((r) => [r.domid, r.src, r.event]), [
    [4, 'toolstack', 'P2M read'], [DOMID_INVALID, 'toolstack', 'stream read started'], [7, 'toolstack', 'domain created'],
  ]);
});

test('JSON lines: a record survives the round trip; lines that are not records are refused', (t) => {
  const r: TraceRecord = { seq: 3, ns: 1234, hostMs: 5.5, domid: 2, src: 'xenstored', event: 'XS_WATCH', detail: 'device token "1"' };
  t.deepEqual(parseTraceLine(traceLine(r)), r);
  const { detail: _d, ...bare } = r;
  t.deepEqual(parseTraceLine(traceLine(bare)), bare);
  t.is(parseTraceLine('not json'), undefined);
  t.is(parseTraceLine('[1,2]'), undefined);
  t.is(parseTraceLine(JSON.stringify({ ...r, src: 'guest' })), undefined, 'unknown source');
  t.is(parseTraceLine(JSON.stringify({ ...r, ns: 'soon' })), undefined, 'ns not a number');
  t.is(parseTraceLine(JSON.stringify({ ...r, detail: 3 })), undefined, 'detail not a string');
});

test('the machine: the trace is off and the hypercall gate has no observer unless asked; switching installs and removes it', (t) => {
  const off = new Machine({ memoryBytes: 8 * 2 ** 20 });
  t.false(off.trace.enabled);
  t.is(off.hypercalls.observer, null);
  const on = new Machine({ memoryBytes: 8 * 2 ** 20, trace: true, traceCapacity: 64 });
  t.true(on.trace.enabled);
  t.not(on.hypercalls.observer, null);
  t.is(on.trace.capacity, 64);
  on.trace.enabled = false;
  t.is(on.hypercalls.observer, null);
});

test("the machine: a toolstack domctl is traced from the hypervisor's side, about the target domain", (t) => {
  const m = new Machine({ memoryBytes: 16 * 2 ** 20, trace: true });
  const domid = m.xc.createDomain({ maxVcpus: 1 });
  t.true(domid > 0);
  t.is(m.xc.pauseDomain(domid), 0);
  t.is(m.xc.destroyDomain(domid), 0);
  t.is(m.xc.unpauseDomain(domid) < 0, true, 'the domain is gone');
  t.deepEqual(m.trace.records().map((r) => [r.domid, r.src, r.event, r.detail ?? '']), [
    [domid, 'xen', 'domctl createdomain', ''],
    [domid, 'xen', 'domctl pausedomain', ''],
    [domid, 'xen', 'domctl destroydomain', ''],
    [domid, 'xen', 'domctl unpausedomain', '= -ESRCH'],
  ]);
});
