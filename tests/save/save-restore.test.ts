/*
 * The round trip: a guest running a memory-pattern loop is suspended,
 * saved, checked by our checker and by Xen's own verify-stream-v2, and
 * restored into a second machine (another allocator seed, another TSC
 * frequency), where its loop carries on without a single pattern error
 * and nearly every pfn sits on a different MFN.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, createReadStream, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkImage } from '../../hypervisor/tools/stream/index.js';
import { shared_info, start_info } from '../../hypervisor/public/xen.js';
import { vcpu_guest_context } from '../../hypervisor/public/arch-x86_64.js';
import { RestoreError, p2mOf, restoreDomain, saveDomain, waitForSuspend } from '../../hypervisor/tools/save/index.js';
import {
  V_CANCELS, V_CHECKED, V_ENTRIES, V_ERRORS, V_FIRST_BAD, V_LAST_RAX, V_RESUMES, V_SWEEP, memtestKernel,
} from './kernels/memtest.js';
import { askSuspend, freePages, guest, machine, runEntries, startRestored, suspendAndSave, vars, verifyStream } from './fixture.js';
import { planGuest } from './builder.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xenport-save-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const STATE = { errors: V_ERRORS, resumes: V_RESUMES, cancels: V_CANCELS, rax: V_LAST_RAX, sweep: V_SWEEP, checked: V_CHECKED, entries: V_ENTRIES, firstBad: V_FIRST_BAD };

test('a suspended guest saved to a file passes checkImage and verify-stream-v2, and runs on in another machine', async (t) => {
  const a = machine({ seed: 11, tscKhz: 2_000_000 });
  const g = guest(a, memtestKernel, { pages: 1024, window: 16 });
  runEntries(t, a, g.domid, 200); // more than one full sweep of ~990 pattern pages
  const before = vars(a, g.domid, STATE);
  t.true(before.sweep >= 2, `the loop should have swept its pages twice before the save (sweep ${before.sweep})`);
  t.is(before.errors, 0);
  const sourceP2m = p2mOf(a, g.domid);
  t.deepEqual(sourceP2m.mismatches, []);

  const freeA = freePages(a);
  askSuspend(a, g.domid);
  await waitForSuspend(a, g.domid, 1e9);
  const file = path.join(dir, 'guest.img');
  const out = createWriteStream(file);
  const saved = await saveDomain(a, g.domid, out, { config: 'name = "memtest"\nkernel = "memtest"\nmemory = 4\n', xenstore: [{ path: 'name', value: 'memtest' }] });
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  t.is(saved.outcome, 'destroyed');
  t.is(saved.maxPfn, 1024);
  t.is(saved.holes, 0);
  t.is(saved.pages, 1024);
  t.true(saved.pageTables >= 4, `page tables saved: ${saved.pageTables}`);
  t.is(a.domain(g.domid), undefined, 'the saved domain is destroyed');
  t.is(freePages(a), freeA + 1024 + 2, 'every frame of the domain (RAM, shared_info, grant frame) went back');

  const check = await checkImage(file);
  t.true(check.ok, check.errors.map((e) => e.message).join('\n'));
  t.is(check.summary.maxPfn, 1024);
  t.deepEqual(check.summary.xenportMeta?.kernel, { name: 'memtest', versionHash: memtestKernel.versionHash });
  t.deepEqual(check.summary.xenportMeta?.xenstore, [{ path: 'name', value: 'memtest' }]);

  const v = verifyStream(file);
  t.is(v.status, 0, v.out);
  t.regex(v.out, /64bit guest, 4 levels of pagetables/);

  const b = machine({ seed: 977, tscKhz: 3_100_000 });
  const freeB = freePages(b);
  const r = await restoreDomain(b, createReadStream(file));
  t.is(r.maxPfn, 1024);
  t.is(r.pages, 1024);
  t.deepEqual(r.xenportMeta?.kernel.name, 'memtest');
  t.is(r.config?.text.includes('memory = 4'), true);
  t.is(b.xc.getDomainInfo(r.domid)?.paused, true, 'a restored domain waits for the caller to unpause it');

  // What the restore rewrote, before the guest runs.
  const si = start_info.view(b.memory.frameMem(r.startInfoMfn), 0);
  t.is(si.get('store_mfn'), BigInt(r.storeMfn));
  t.is(si.get('store_evtchn'), r.storePort);
  t.is(si.sub('console').sub('domU').get('mfn'), BigInt(r.consoleMfn));
  t.is(si.sub('console').sub('domU').get('evtchn'), r.consolePort);
  t.is(si.get('nr_pages'), 1024n);
  t.is(si.get('shared_info'), BigInt(r.sharedInfoMfn) * 4096n);
  t.is(si.get('flags'), 0);
  t.like(b.gnttab.readEntry(r.domid, 0), { domid: 0, frame: r.consoleMfn });
  t.like(b.gnttab.readEntry(r.domid, 1), { domid: 0, frame: r.storeMfn });
  const sh = shared_info.view(b.memory.frameMem(r.sharedInfoMfn), 0);
  t.is(sh.sub('arch').get('pfn_to_mfn_frame_list_list'), 0n, 'the guest must rebuild its frame list');
  t.is(sh.sub('arch').get('max_pfn'), 1024n);
  for (let w = 0; w < 64; w++) {
    if (sh.getAt('evtchn_mask', w) !== 0xffff_ffff_ffff_ffffn || sh.getAt('evtchn_pending', w) !== 0n) {
      t.fail(`event word ${w}: mask ${sh.getAt('evtchn_mask', w)}, pending ${sh.getAt('evtchn_pending', w)}`);
    }
  }
  t.is(sh.sub('vcpu_info', 0).get('evtchn_upcall_pending'), 0);
  const ctx = b.xc.getVcpuContext(r.domid, 0) as Uint8Array;
  const c = vcpu_guest_context.view(new DataView(ctx.buffer, ctx.byteOffset), 0);
  t.is(c.sub('user_regs').get('rdx'), BigInt(r.startInfoMfn), 'rdx names the new start_info');
  t.is(c.sub('user_regs').get('rax'), 0n);
  t.is(b.frames.m2p[r.startInfoMfn], g.layout.startInfoPfn, 'the M2P knows the new frames');
  startRestored(b, r.domid);
  runEntries(t, b, r.domid, 300);
  const after = vars(b, r.domid, STATE);
  t.is(after.errors, 0, `pattern errors after restore (first bad pfn ${after.firstBad - 1})`);
  t.is(after.resumes, 1);
  t.is(after.rax, 0, 'the suspend hypercall returns 0 in the new domain');
  t.true(after.checked > before.checked + 300 * 16 - 100, 'the loop carried on where it stopped');
  t.true(after.sweep > before.sweep, 'and completed further sweeps');

  const dest = p2mOf(b, r.domid);
  t.deepEqual(dest.mismatches, []);
  let moved = 0;
  for (const e of dest.entries) if (sourceP2m.entries[e.pfn]?.mfn !== e.mfn) moved++;
  t.true(moved >= 0.95 * 1024, `only ${moved} of 1024 pfns got a different MFN`);
  t.log(`${moved} of 1024 pfns moved to a different MFN; image ${saved.bytes} bytes`);
  t.is(freePages(b), freeB - 1024 - 2);
});

test('a checkpoint save (-c) resumes the same domain, whose suspend hypercall returns 1', async (t) => {
  const a = machine({ seed: 5 });
  const g = guest(a, memtestKernel, { pages: 512 });
  runEntries(t, a, g.domid, 50);
  const { image, result } = await suspendAndSave(a, g.domid, { checkpointResume: true });
  t.is(result.outcome, 'resumed');
  t.not(a.domain(g.domid), undefined);
  runEntries(t, a, g.domid, 100);
  const s = vars(a, g.domid, STATE);
  t.is(s.cancels, 1);
  t.is(s.rax, 1);
  t.is(s.resumes, 0);
  t.is(s.errors, 0);
  const info = a.xc.getDomainInfo(g.domid);
  t.false(info?.shutdown ?? true, 'the domain is running again');

  // The checkpoint is a complete image of its own.
  const b = machine({ seed: 6, tscKhz: 1_000_000 });
  const r = await restoreDomain(b, image);
  startRestored(b, r.domid);
  runEntries(t, b, r.domid, 100);
  const s2 = vars(b, r.domid, STATE);
  t.is(s2.errors, 0);
  t.is(s2.rax, 0);
  t.is(s2.resumes, 1);
});

test('the restored guest runs in a fresh OS process', async (t) => {
  const a = machine({ seed: 21 });
  const g = guest(a, memtestKernel, { pages: 384 });
  runEntries(t, a, g.domid, 60);
  const { image } = await suspendAndSave(a, g.domid);
  const file = path.join(dir, 'child.img');
  writeFileSync(file, image);
  const child = path.join(path.dirname(new URL(import.meta.url).pathname), 'restore-child.js');
  const r = spawnSync(process.execPath, [child, file, '31337', '2500000'], { encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Record<string, number>;
  t.is(report['errors'], 0);
  t.is(report['resumes'], 1);
  t.true((report['checked'] ?? 0) > 0);
});

test('progress: the save reports pages done out of max_pfn, the restore pages written', async (t) => {
  const a = machine({ seed: 8 });
  const g = guest(a, memtestKernel, { pages: 2500 });
  const seen: [number, number][] = [];
  const { image } = await suspendAndSave(a, g.domid, { progress: (done, total) => seen.push([done, total]) });
  t.deepEqual(seen, [[1024, 2500], [2048, 2500], [2500, 2500]]);
  const written: number[] = [];
  const b = machine({ seed: 9 });
  await restoreDomain(b, image, { progress: (n) => written.push(n) });
  t.deepEqual(written, [1024, 2048, 2500]);
});

test('a bare libxc stream (as migrate-receive reads it) restores when told the kernel, and is refused when not', async (t) => {
  const a = machine({ seed: 12 });
  const g = guest(a, memtestKernel, { pages: 256 });
  runEntries(t, a, g.domid, 20);
  const { image } = await suspendAndSave(a, g.domid, { format: 'libxc' });
  const b = machine({ seed: 13 });
  const free = freePages(b);
  const e = await t.throwsAsync(restoreDomain(b, image, { format: 'libxc' }), { instanceOf: RestoreError });
  t.is(e?.code, 'no-meta');
  t.is(freePages(b), free);
  const kernel = { name: memtestKernel.name, versionHash: memtestKernel.versionHash };
  const r = await restoreDomain(b, image, { format: 'libxc', kernel });
  t.is(r.xenportMeta, undefined);
  startRestored(b, r.domid);
  runEntries(t, b, r.domid, 50);
  t.is(vars(b, r.domid, STATE).errors, 0);
});

test('a ctrl_if page named on the command line gets a fresh port, and the line is rewritten to say so', async (t) => {
  const a = machine({ seed: 14 });
  const stackPfn = planGuest(256).stackPfn;
  const g = guest(a, memtestKernel, { pages: 256, cmdLine: `console=xvc0 ctrl_if=${stackPfn},7 quiet` });
  runEntries(t, a, g.domid, 10);
  const { image } = await suspendAndSave(a, g.domid);
  const b = machine({ seed: 15 });
  const r = await restoreDomain(b, image);
  t.not(r.ctrlIf, undefined);
  t.is(b.frames.m2p[r.ctrlIf!.mfn], stackPfn);
  t.not(r.ctrlIf!.port, r.storePort);
  t.not(r.ctrlIf!.port, r.consolePort);
  const si = start_info.view(b.memory.frameMem(r.startInfoMfn), 0);
  t.is(si.getString('cmd_line'), `console=xvc0 ctrl_if=${stackPfn},${r.ctrlIf!.port} quiet`);
  startRestored(b, r.domid);
  runEntries(t, b, r.domid, 10);
  t.is(vars(b, r.domid, STATE).errors, 0);
});
