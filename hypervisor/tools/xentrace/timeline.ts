/*
 * Reading a machine's protocol trace back (what xentrace_format is to
 * xentrace): pick the steps of one save or one restore out of the records
 * (hypervisor/xen/trace.ts, as `<dir>/trace.jsonl` holds them) and print
 * them as a timeline with durations. `make demo` and `make demo-migrate`
 * print these.
 *
 *   saveSteps(records, domid)      from the toolstack's "suspend requested"
 *                                  to domctl destroydomain (or resumedomain)
 *   restoreSteps(records, domid)   from "stream read started" to the guest's
 *                                  frontends all Connected again and its
 *                                  workload writing to data/
 *   migrateSendSteps(records, domid)
 *                                  `xl migrate` on the source: from the
 *                                  receiver's banner through the pre-copy
 *                                  rounds, the suspend, the final round and
 *                                  the handshake to domctl destroydomain (or
 *                                  the failure, after the resume)
 *   migrateReceiveSteps(records, domid)
 *                                  `xl migrate-receive` on the target: from
 *                                  the sender's connection, the restore as
 *                                  restoreSteps cuts it, with the handshake
 *                                  (ready, go, started) in it
 *   formatTimeline(steps)          one line per step (runs of one event
 *                                  but XS_WRITE folded into one line): host ms since the
 *                                  first step, the step's duration until the
 *                                  next one, the machine's system time
 *
 * Host milliseconds say how long things took in this process; the system
 * time column is the machine's Xen system time at each step, which is what
 * the guest reads through vcpu_time_info (after a restore the guest adds
 * its own offset on top, to stay monotonic).
 */
import { DOMID_INVALID } from '../../public/xen.js';
import type { TraceRecord } from '../../xen/trace.js';

/** A frontend's device/<type>/<id>/state = 4 as xs-trace.ts words it. */
const FRONTEND_CONNECTED = /^device\/[^/]+\/[^/]+\/state = 4 /;
const FRONTEND_STATE = /^device\/([^/]+\/[^/]+)\/state = /;
const FIRST_DATA = /^data\/.*\(first data\/ write/;

/**
 * The save of `domid`: its records from the last "suspend requested"
 * before the first destroydomain (or resumedomain, for `save -c`) to that
 * record. Empty when the trace has no complete save of it.
 */
export function saveSteps(records: readonly TraceRecord[], domid: number): TraceRecord[] {
  const mine = records.filter((r) => r.domid === domid);
  const end = mine.findIndex((r) => r.event === 'domctl destroydomain' || r.event === 'domctl resumedomain');
  if (end < 0) return [];
  let start = -1;
  for (let i = end; i >= 0; i--) {
    if (mine[i]!.src === 'toolstack' && mine[i]!.event === 'suspend requested') {
      start = i;
      break;
    }
  }
  return start < 0 ? [] : mine.slice(start, end + 1);
}

/**
 * The restore that made `domid`: "stream read started" (recorded before
 * the domain existed), then its records up to the first moment after the
 * unpause when every frontend the toolstack set up (the device/<type>/<id>/state
 * nodes written before the unpause) is Connected and the workload has
 * written to data/. Empty when the trace does not show the restore complete.
 */
export function restoreSteps(records: readonly TraceRecord[], domid: number): TraceRecord[] {
  const created = records.findIndex((r) => r.domid === domid && r.event === 'domain created');
  if (created < 0) return [];
  let start = created;
  for (let i = created - 1; i >= 0; i--) {
    const r = records[i]!;
    if (r.domid === DOMID_INVALID && r.event === 'stream read started') {
      start = i;
      break;
    }
  }
  const frontendWrite = (r: TraceRecord): RegExpExecArray | null =>
    (r.domid === domid && r.src === 'xenstored' && r.event === 'XS_WRITE' ? FRONTEND_STATE.exec(r.detail ?? '') : null);
  const unpaused = records.findIndex((r, i) => i > created && r.domid === domid && r.event === 'domctl unpausedomain');
  if (unpaused < 0) return [];
  const connected = new Map<string, boolean>();
  for (let i = created; i < unpaused; i++) {
    const fe = frontendWrite(records[i]!);
    if (fe !== null) connected.set(fe[1]!, false);
  }
  let data = false;
  let end = -1;
  for (let i = unpaused + 1; i < records.length && end < 0; i++) {
    const r = records[i]!;
    const fe = frontendWrite(r);
    if (fe !== null && connected.has(fe[1]!)) connected.set(fe[1]!, FRONTEND_CONNECTED.test(r.detail ?? ''));
    if (r.domid === domid && r.src === 'xenstored' && FIRST_DATA.test(r.detail ?? '')) data = true;
    if (data && [...connected.values()].every((c) => c)) end = i;
  }
  if (end < 0) return [];
  // Before the domain existed, the toolstack's steps name no domain.
  return records.slice(start, end + 1).filter((r, k) => r.domid === domid || (start + k < created && r.domid === DOMID_INVALID && r.src === 'toolstack'));
}

/** The toolstack's records of a migration (hypervisor/tools/machine/migrate.ts). */
const MIGRATE = {
  banner: 'migrate: banner received',
  firstRound: 'pre-copy round 0 sent',
  failed: 'migrate: failed',
  connected: 'migrate: sender connected',
  go: 'migrate: go received',
  started: 'migrate: started sent',
} as const;

/**
 * The live migration of `domid` away from this machine: the first one that
 * sent its pre-copy round 0 and then ended, either with domctl
 * destroydomain (it runs on the receiver) or with the toolstack's
 * "migrate: failed" (after the fast resume, when there was one). It starts
 * at the receiver's banner before round 0 (the log-dirty switch, or round
 * 0 itself, in a trace without the banner step). Empty when the trace has
 * no migration of it that sent pages and ended.
 */
export function migrateSendSteps(records: readonly TraceRecord[], domid: number): TraceRecord[] {
  const mine = records.filter((r) => r.domid === domid);
  const toolstack = (r: TraceRecord, event: string): boolean => r.src === 'toolstack' && r.event === event;
  const round0 = mine.findIndex((r) => toolstack(r, MIGRATE.firstRound));
  if (round0 < 0) return [];
  const end = mine.findIndex((r, i) => i > round0 && (r.event === 'domctl destroydomain' || toolstack(r, MIGRATE.failed)));
  if (end < 0) return [];
  let start = round0;
  for (let i = round0 - 1; i >= 0; i--) {
    const r = mine[i]!;
    if (toolstack(r, MIGRATE.banner)) {
      start = i;
      break;
    }
    if (start === round0 && r.src === 'xen' && r.event === 'domctl shadow_op' && r.detail === 'log-dirty on') start = i;
    // A round 0 belongs to the last banner before it; an earlier migration's end means there is none.
    if (r.event === 'domctl destroydomain' || toolstack(r, MIGRATE.failed)) break;
  }
  return mine.slice(start, end + 1);
}

/**
 * The incoming migration that made `domid`: the restore as restoreSteps
 * cuts it (the domain unpaused, its frontends Connected, its workload
 * writing), from the sender's connection (recorded before the domain
 * existed) and up to the "started" report if that came later. Empty when
 * the trace shows no complete restore of it, or one that was not a
 * migration (no permission to go: an `xl restore`).
 */
export function migrateReceiveSteps(records: readonly TraceRecord[], domid: number): TraceRecord[] {
  const restore = restoreSteps(records, domid);
  if (restore.length === 0) return [];
  const toolstack = (r: TraceRecord, event: string): boolean => r.domid === domid && r.src === 'toolstack' && r.event === event;
  const created = records.findIndex((r) => r.domid === domid && r.event === 'domain created');
  if (!records.some((r, i) => i > created && toolstack(r, MIGRATE.go))) return [];
  let start = records.indexOf(restore[0]!);
  let end = records.indexOf(restore[restore.length - 1]!);
  const started = records.findIndex((r, i) => i > created && toolstack(r, MIGRATE.started));
  if (started > end) end = started;
  for (let i = start - 1; i >= 0; i--) {
    const r = records[i]!;
    if (r.domid !== DOMID_INVALID || r.src !== 'toolstack') continue;
    if (r.event === MIGRATE.connected) {
      start = i;
      break;
    }
    // Another incoming stream's steps: that connection was not this one.
    if (r.event === 'stream read started') break;
  }
  return records.slice(start, end + 1).filter((r, k) => r.domid === domid || (start + k < created && r.domid === DOMID_INVALID && r.src === 'toolstack'));
}

/** Consecutive records of one source and event, shown as one line. */
export interface TimelineStep {
  readonly first: TraceRecord;
  readonly count: number;
  readonly details: readonly string[];
}

/** Events each record of which stays on its own line: every write is a step of its own (a state change, an ack). */
const NEVER_FOLDED: ReadonlySet<string> = new Set(['XS_WRITE']);

export function foldRuns(records: readonly TraceRecord[]): TimelineStep[] {
  const out: { first: TraceRecord; count: number; details: string[] }[] = [];
  for (const r of records) {
    const last = out[out.length - 1];
    if (last !== undefined && last.first.src === r.src && last.first.event === r.event && !NEVER_FOLDED.has(r.event)) {
      last.count++;
      if (r.detail !== undefined) last.details.push(r.detail);
      continue;
    }
    out.push({ first: r, count: 1, details: r.detail === undefined ? [] : [r.detail] });
  }
  return out;
}

/** Longest detail text on one line. */
const DETAIL_MAX = 110;

function detailText(s: TimelineStep): string {
  const d = s.details.join('; ');
  return d.length > DETAIL_MAX ? `${d.slice(0, DETAIL_MAX - 3)}...` : d;
}

/**
 * The timeline, one line per step: ms since the first step, the step's
 * duration (until the next step; the last has none), the machine's system
 * time in seconds, the domain, the source, the event (xN for a folded run)
 * and its detail.
 */
export function formatTimeline(records: readonly TraceRecord[]): string[] {
  const steps = foldRuns(records);
  if (steps.length === 0) return [];
  const t0 = steps[0]!.first.hostMs;
  const lines = [`  ${'at ms'.padStart(9)} ${'took ms'.padStart(9)}  ${'system time'.padStart(14)}  dom  ${'by'.padEnd(9)}  step`];
  steps.forEach((s, i) => {
    const next = steps[i + 1];
    const at = (s.first.hostMs - t0).toFixed(1).padStart(9);
    const took = next === undefined ? ''.padStart(9) : (next.first.hostMs - s.first.hostMs).toFixed(1).padStart(9);
    const sys = `${(s.first.ns / 1e9).toFixed(6)} s`.padStart(14);
    const dom = s.first.domid === DOMID_INVALID ? '-' : `d${s.first.domid}`;
    const event = s.count > 1 ? `${s.first.event} x${s.count}` : s.first.event;
    const detail = detailText(s);
    lines.push(`  ${at} ${took}  ${sys}  ${dom.padEnd(3)}  ${s.first.src.padEnd(9)}  ${event}${detail === '' ? '' : `: ${detail}`}`);
  });
  return lines;
}
