/*
 * The protocol trace of a real save and restore (MachineHost.save and
 * .restore, the code paths of `xl save` and `xl restore`) of a netbsd
 * guest with a disk and a vif, on simulated clocks: the suspend path and
 * the resume path appear in ARCHITECTURE §6's order, about the right
 * domain, and the demo's timeline sections are cut from them.
 */
import test from 'ava';
import { DOMID_INVALID } from '../../hypervisor/public/xen.js';
import { saveSteps, restoreSteps, formatTimeline } from '../../hypervisor/tools/xentrace/timeline.js';
import type { TraceRecord } from '../../hypervisor/xen/trace.js';
import { roundTrip, inOrder, ev, find, dump } from './fixture.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

/** seq consecutive, system time and host time never going back, host time finite. */
function wellFormed(rs: readonly TraceRecord[]): string {
  for (let i = 0; i < rs.length; i++) {
    const r = rs[i]!;
    if (!Number.isFinite(r.hostMs)) return `#${i}: hostMs ${r.hostMs}`;
    const p = rs[i - 1];
    if (p === undefined) continue;
    if (r.seq !== p.seq + 1) return `#${i}: seq ${r.seq} after ${p.seq}`;
    if (r.ns < p.ns) return `#${i}: system time ${r.ns} after ${p.ns}`;
    if (r.hostMs < p.hostMs) return `#${i}: host ms ${r.hostMs} after ${p.hostMs}`;
  }
  return '';
}

test.serial('save: the guest unbinds its VIRQs, unmaps shared_info, then SHUTDOWN_suspend with rdx = start_info; the toolstack saves and destroys', async (t) => {
  const { a, saved, savedSharedInfoMfn, savedStartInfoMfn } = await roundTrip(t);
  const all = a.m.trace.records();
  t.is(wellFormed(all), '');
  const rs = a.m.trace.records({ domid: saved });
  const request = find(rs, ev('suspend requested', /^via evtchn$/));
  t.true(request >= 0, dump(rs));
  const at = inOrder(t, rs, [
    ['VIRQ unbound', ev('EVTCHNOP_close')],
    ['shared_info unmapped', ev('shared_info unmapped', new RegExp(`, mfn ${hex(savedSharedInfoMfn)}$`))],
    ['SCHEDOP_shutdown(suspend)', ev('SCHEDOP_shutdown', new RegExp(`^suspend, rdx = start_info mfn ${hex(savedStartInfoMfn)}$`))],
    ['SHUTDOWN_suspend seen', ev('SHUTDOWN_suspend seen')],
    ['P2M read', ev('P2M read')],
    ['pages written', ev('pages written')],
    ['image written', ev('image written')],
    ['destroydomain', ev('domctl destroydomain')],
  ], request);
  t.is(at.length, 8);
  // Nothing of the guest's own between its suspend hypercall and the destroy: it is not running.
  const shutdown = at[2]!;
  const guestAfter = rs.slice(shutdown + 1, at[7]).filter((r) => r.src === 'xen' && !r.event.startsWith('domctl'));
  t.deepEqual(guestAfter, [], 'no guest hypercall is traced while it is suspended');
  t.true(rs.every((r) => r.domid === saved));
});

test.serial('restore: the toolstack rebuilds the domain; the guest maps shared_info, then callbacks, grants, binds, watches, and its devices connect', async (t) => {
  const { b, restored } = await roundTrip(t);
  const all = b.m.trace.records();
  t.is(wellFormed(all), '');
  const sharedInfo = b.m.domain(restored)?.sharedInfoMfn ?? -1;
  const start = find(all, (r) => r.domid === DOMID_INVALID && r.event === 'stream read started');
  t.true(start >= 0, dump(all));
  const created = find(all, ev('domain created', new RegExp(`^d${restored} \\(paused\\)`)), start);
  t.true(created > start, 'the new domain is named in "domain created"');
  t.is(all[created]!.domid, restored);
  const rs = all.slice(created);
  t.true(rs.every((r) => r.domid === restored), `every record after the creation is about d${restored}:\n${dump(rs)}`);
  const at = inOrder(t, rs, [
    ['pages written', ev('pages populated and written')],
    ['page tables localized', ev('page tables localized')],
    ['P2M rewritten', ev('P2M rewritten')],
    ['start_info rewritten', ev('start_info rewritten')],
    ['shared_info rewritten', ev('shared_info rewritten')],
    ['L4 pinned (hypervisor)', ev('MMUEXT_PIN_L4_TABLE')],
    ['vcpu set (hypervisor)', ev('domctl setvcpucontext', /^vcpu 0$/)],
    ['xenstore nodes', ev('xenstore nodes written')],
    ['XS_INTRODUCE', ev('XS_INTRODUCE')],
    ['console', ev('console attached')],
    ['devices', ev('devices attached')],
    ['unpause', ev('domctl unpausedomain')],
    ['shared_info mapped', ev('shared_info mapped', new RegExp(`, mfn ${hex(sharedInfo)}$`))],
    ['set_callbacks', ev('set_callbacks', /^event hypervisor_callback, failsafe failsafe_callback$/)],
    ['GNTTABOP_setup_table', ev('GNTTABOP_setup_table', /status 0$/)],
    ['VIRQ_TIMER bound', ev('EVTCHNOP_bind_virq', /^VIRQ_TIMER vcpu 0 -> port \d+$/)],
    ['XS_WATCH re-sent', ev('XS_WATCH', /^control\/shutdown /)],
    ['vbd Connected', ev('XS_WRITE', /^device\/vbd\/51712\/state = 4 \(Connected\)$/)],
  ]);
  t.is(at.length, 18);
  const unpause = at[11]!;
  // Nothing of the guest's before the unpause; after it, every bind comes before the first re-sent watch.
  t.deepEqual(rs.slice(0, unpause).filter((r) => r.event.startsWith('EVTCHNOP_') || r.event === 'XS_WATCH'), []);
  const firstWatch = find(rs, ev('XS_WATCH'), unpause);
  const lastBind = rs.reduce((last, r, i) => (i > unpause && r.event === 'EVTCHNOP_bind_virq' ? i : last), -1);
  t.true(lastBind > unpause && lastBind < firstWatch, `binds (last #${lastBind}) before the first XS_WATCH (#${firstWatch})`);
  const vif = find(rs, ev('XS_WRITE', /^device\/vif\/0\/state = 4 \(Connected\)$/), firstWatch);
  t.true(vif > firstWatch, 'the vif connects after the watches are back');
});

test.serial("the demo's timeline sections: the save from its request to the destroy, the restore from the stream to Connected and the workload", async (t) => {
  const { a, b, saved, restored } = await roundTrip(t);
  const save = saveSteps(a.m.trace.records(), saved);
  t.is(save[0]?.event, 'suspend requested');
  t.is(save.at(-1)?.event, 'domctl destroydomain');
  const restore = restoreSteps(b.m.trace.records(), restored);
  t.is(restore[0]?.event, 'stream read started');
  t.regex(restore.at(-1)?.detail ?? '', /state = 4 \(Connected\)$|\(first data\/ write/);
  const saveLines = formatTimeline(save);
  const restoreLines = formatTimeline(restore);
  t.log(['', ...saveLines, '', ...restoreLines].join('\n'));
  const order = (lines: readonly string[], steps: readonly RegExp[]): string => {
    let from = 0;
    for (const s of steps) {
      const i = lines.findIndex((l, k) => k >= from && s.test(l));
      if (i < 0) return `no line matching ${s} after line ${from}:\n${lines.join('\n')}`;
      from = i + 1;
    }
    return '';
  };
  t.is(order(saveLines, [/^ +at ms +took ms +system time +dom +by +step$/, /^ +0\.0 +[\d.]+ +[\d.]+ s  d\d+ +toolstack +suspend requested: via evtchn$/,
    /xen +EVTCHNOP_close x2: port \d+; port \d+$/, /shared_info unmapped/, /SCHEDOP_shutdown: suspend/, /SHUTDOWN_suspend seen/,
    /pages written/, /image written/, /domctl destroydomain$/]), '');
  t.is(order(restoreLines, [/ - +toolstack +stream read started/, /stream header ok/, /domain created/, /page tables pinned/,
    /domctl unpausedomain/, /shared_info mapped/, /set_callbacks/, /GNTTABOP_setup_table/, /XS_WATCH x\d+/,
    /device\/vbd\/51712\/state = 4 \(Connected\)/]), '');
  // Durations: each line but the last says how long until the next.
  t.true(restoreLines.slice(1, -1).every((l) => /^ +[\d.]+ +[\d.]+ /.test(l)));
});
