/*
 * Cutting the demo's sections out of a trace (xentrace/timeline.ts), on
 * records made by hand: a save or a restore that the trace does not show
 * complete gives no section, and the restore ends at the first moment its
 * frontends are all Connected and the workload has written. A migration's
 * two sides: the sender's from the banner to the destroy (or the failure),
 * the receiver's from the connection through the handshake.
 */
import test from 'ava';
import { DOMID_INVALID } from '../../hypervisor/public/xen.js';
import type { TraceRecord, TraceSource } from '../../hypervisor/xen/trace.js';
import {
  foldRuns, formatTimeline, migrateReceiveSteps, migrateSendSteps, restoreSteps, saveSteps,
} from '../../hypervisor/tools/xentrace/timeline.js';

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

/** The source machine's records of one `xl migrate` of d2 (d5 another domain on it). */
const sendRows: [number, TraceSource, string, string?][] = [
  [2, 'xenstored', 'XS_WRITE', 'data/x = "1" (first data/ write; later ones are not traced)'],
  [2, 'toolstack', 'migrate: banner received', 'from 127.0.0.1:1, suspend via evtchn for the last round'],
  [2, 'xen', 'domctl shadow_op', 'log-dirty on'],
  [2, 'toolstack', 'pre-copy round 0 sent', '16383 pages'],
  [5, 'xen', 'EVTCHNOP_unmask', 'port 1'],
  [2, 'toolstack', 'pre-copy round 1 sent', '81 pages'],
  [2, 'toolstack', 'pre-copy done', '2 round(s)'],
  [2, 'toolstack', 'suspend requested', 'via evtchn'],
  [2, 'xen', 'SCHEDOP_shutdown', 'suspend'],
  [2, 'toolstack', 'SHUTDOWN_suspend seen'],
  [2, 'toolstack', 'final round sent', '39 pages'],
  [2, 'toolstack', 'image written'],
  [2, 'xen', 'domctl shadow_op', 'log-dirty off'],
  [2, 'toolstack', 'migrate: ready received'],
  [2, 'toolstack', 'migrate: go sent'],
  [2, 'toolstack', 'migrate: started received', 'domid 1 on 127.0.0.1:1'],
  [2, 'xen', 'domctl destroydomain'],
  [2, 'xenstored', 'XS_RELEASE'],
];

test('the sending side of a migration: from the banner through the rounds, the suspend and the handshake to the destroy, that domain only', (t) => {
  const rs = migrateSendSteps(records(sendRows), 2);
  t.deepEqual(rs.map((r) => r.seq), [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  t.is(rs[0]!.event, 'migrate: banner received');
  t.is(rs.at(-1)!.event, 'domctl destroydomain');
  t.deepEqual(migrateSendSteps(records(sendRows), 5), [], 'd5 was not migrated');
});

test('no sending section without round 0 or without an end; a trace without the banner starts at log-dirty on', (t) => {
  t.deepEqual(migrateSendSteps(records(sendRows.filter((r) => r[2] !== 'pre-copy round 0 sent')), 2), []);
  t.deepEqual(migrateSendSteps(records(sendRows.filter((r) => r[2] !== 'domctl destroydomain')), 2), [], 'not destroyed yet');
  const noBanner = migrateSendSteps(records(sendRows.filter((r) => r[2] !== 'migrate: banner received')), 2);
  t.is(noBanner[0]?.detail, 'log-dirty on');
  t.is(noBanner.at(-1)?.event, 'domctl destroydomain');
});

test('a failed migration ends the sending section at its failure (after the resume); the retry that worked is not mixed in', (t) => {
  const failedThenOk: [number, TraceSource, string, string?][] = [
    [2, 'toolstack', 'migrate: banner received'],
    [2, 'toolstack', 'pre-copy round 0 sent', '16383 pages'],
    [2, 'toolstack', 'suspend requested', 'via evtchn'],
    [2, 'xen', 'domctl resumedomain'],
    [2, 'toolstack', 'migrate: failed', 'resumed here: the receiver failed: no'],
    ...sendRows,
  ];
  t.deepEqual(migrateSendSteps(records(failedThenOk), 2).map((r) => r.event),
    ['migrate: banner received', 'pre-copy round 0 sent', 'suspend requested', 'domctl resumedomain', 'migrate: failed']);
  // A failure before round 0 (the receiver refused at once) is not the section of the next attempt.
  const refused: [number, TraceSource, string, string?][] = [
    [2, 'toolstack', 'migrate: banner received'],
    [2, 'toolstack', 'migrate: failed', 'resumed here: the receiver failed: no'],
    ...sendRows.filter((r) => r[2] !== 'migrate: banner received'),
  ];
  t.is(migrateSendSteps(records(refused), 2)[0]?.detail, 'log-dirty on', 'the earlier banner is not taken');
});

/** The target machine's records of one `xl migrate-receive` into d3. */
const receiveRows: [number, TraceSource, string, string?][] = [
  [DOMID_INVALID, 'toolstack', 'migrate: sender connected', 'from 127.0.0.1:2'],
  ...restoreRows.slice(0, 5),
  [3, 'toolstack', 'devices attached'],
  [3, 'toolstack', 'migrate: ready sent', 'paused as x--incoming'],
  [3, 'toolstack', 'migrate: go received'],
  ...restoreRows.slice(5, 12),
  [3, 'toolstack', 'migrate: started sent', '"started 3" to 127.0.0.1:2'],
  [3, 'xen', 'domctl destroydomain'],
];

test('the receiving side of a migration: from the connection, the restore and the handshake, up to the started report when it comes last', (t) => {
  const rs = migrateReceiveSteps(records(receiveRows), 3);
  t.deepEqual(rs.map((r) => r.event), [
    'migrate: sender connected', 'stream read started', 'stream header ok', 'domain created', 'XS_WRITE', 'XS_WRITE', 'devices attached',
    'migrate: ready sent', 'migrate: go received', 'domctl unpausedomain', 'EVTCHNOP_unmask', 'EVTCHNOP_unmask', 'XS_WRITE', 'XS_WRITE',
    'XS_WRITE', 'migrate: started sent',
  ]);
  t.false(rs.some((r) => r.domid === 4), 'd4\'s records left out');
  // With the report before the last frontend connects, the section ends where restoreSteps ends it.
  const early = [...receiveRows.slice(0, 11), receiveRows[16]!, ...receiveRows.slice(11, 16)];
  const rs2 = migrateReceiveSteps(records(early), 3);
  t.is(rs2.at(-1)?.detail, 'device/vif/0/state = 4 (Connected)');
  t.true(rs2.some((r) => r.event === 'migrate: started sent'));
});

test('no receiving section for an xl restore (no go), nor for a restore that never completed', (t) => {
  t.deepEqual(migrateReceiveSteps(records(restoreRows), 3), [], 'a plain restore');
  t.true(restoreSteps(records(restoreRows), 3).length > 0, 'which restoreSteps still cuts');
  t.deepEqual(migrateReceiveSteps(records(receiveRows.filter((r) => r[2] !== 'domctl unpausedomain')), 3), []);
  t.deepEqual(migrateReceiveSteps(records(receiveRows), 9), [], 'no such domain');
  // Without the connection step (an older trace) it starts at the stream.
  t.is(migrateReceiveSteps(records(receiveRows.slice(1)), 3)[0]?.event, 'stream read started');
});
