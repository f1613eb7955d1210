/*
 * Cutting the demo's sections out of a trace (xentrace/timeline.ts), on
 * records made by hand: a save or a restore that the trace does not show
 * complete gives no section, and the restore ends at the first moment its
 * frontends are all Connected and the workload has written.
 */
import test from 'ava';
import { DOMID_INVALID } from '../../hypervisor/public/xen.js';
import type { TraceRecord, TraceSource } from '../../hypervisor/xen/trace.js';
import { foldRuns, formatTimeline, restoreSteps, saveSteps } from '../../hypervisor/tools/xentrace/timeline.js';

function records(rows: readonly [number, TraceSource, string, string?][]): TraceRecord[] {
  return rows.map(([domid, src, event, detail], seq) => ({ seq, ns: seq * 1000, hostMs: seq * 2, domid, src, event, ...(detail === undefined ? {} : { detail }) }));
}

const restoreRows: [number, TraceSource, string, string?][] = [
  [DOMID_INVALID, 'toolstack', 'stream read started'],
  [DOMID_INVALID, 'toolstack', 'stream header ok'],
  [3, 'toolstack', 'domain created', 'd3 (paused)'],
  [3, 'xenstored', 'XS_WRITE', 'device/vbd/1/state = 1 (Initialising) (by d0)'],
  [3, 'xenstored', 'XS_WRITE', 'device/vif/0/state = 1 (Initialising) (by d0)'],
  [3, 'xen', 'domctl unpausedomain'],
  [3, 'xen', 'EVTCHNOP_unmask', 'port 1'],
  [3, 'xen', 'EVTCHNOP_unmask', 'port 2'],
  [3, 'xenstored', 'XS_WRITE', 'device/vbd/1/state = 4 (Connected)'],
  [4, 'xen', 'domctl createdomain'],
  [3, 'xenstored', 'XS_WRITE', 'data/x = "1" (first data/ write; later ones are not traced)'],
  [3, 'xenstored', 'XS_WRITE', 'device/vif/0/state = 4 (Connected)'],
  [3, 'xen', 'domctl destroydomain'],
];

test('the restore section: from the stream to the last frontend Connected, about that domain only', (t) => {
  const rs = restoreSteps(records(restoreRows), 3);
  t.deepEqual(rs.map((r) => r.seq), [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
});

test('no restore section while a frontend never connects, or without the unpause', (t) => {
  t.deepEqual(restoreSteps(records(restoreRows.filter((r) => r[3] !== 'device/vif/0/state = 4 (Connected)')), 3), []);
  t.deepEqual(restoreSteps(records(restoreRows.filter((r) => r[2] !== 'domctl unpausedomain')), 3), []);
  t.deepEqual(restoreSteps(records(restoreRows), 9), [], 'no such domain');
});

test('the save section: from the last suspend request before the destroy (or the fast resume) to it', (t) => {
  const rows: [number, TraceSource, string, string?][] = [
    [2, 'toolstack', 'suspend requested', 'via xenstore'],
    [2, 'xen', 'domctl resumedomain'],
    [2, 'toolstack', 'suspend requested', 'via evtchn'],
    [2, 'xen', 'SCHEDOP_shutdown', 'suspend'],
    [2, 'xen', 'domctl destroydomain'],
  ];
  t.deepEqual(saveSteps(records(rows), 2).map((r) => r.seq), [0, 1], 'the first complete one: a save -c');
  t.deepEqual(saveSteps(records(rows.slice(2)), 2).map((r) => r.seq), [0, 1, 2]);
  t.deepEqual(saveSteps(records(rows.slice(2, 4)), 2), [], 'not destroyed yet');
});

test('runs of one event fold into one line, XS_WRITE never; durations run to the next line', (t) => {
  const rs = records(restoreRows).slice(5, 9);
  t.deepEqual(foldRuns(rs).map((s) => [s.first.event, s.count]), [['domctl unpausedomain', 1], ['EVTCHNOP_unmask', 2], ['XS_WRITE', 1]]);
  const lines = formatTimeline(rs);
  t.is(lines.length, 4);
  t.regex(lines[1]!, /^ +0\.0 +2\.0 +0\.000005 s  d3 +xen +domctl unpausedomain$/);
  t.regex(lines[2]!, /^ +2\.0 +4\.0 +0\.000006 s  d3 +xen +EVTCHNOP_unmask x2: port 1; port 2$/);
  t.regex(lines[3]!, /^ +6\.0 +0\.000008 s  d3 +xenstored +XS_WRITE: device\/vbd\/1\/state = 4 \(Connected\)$/);
});
