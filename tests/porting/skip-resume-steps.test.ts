/*
 * The porting guide's "what breaks if a step is skipped" claims
 * (docs/porting-guide.md) that only positive tests backed: three steps of
 * the guest's resume sequence (§5) and the xenstore drain of its suspend
 * (§2, steps 1/3). Each test runs a control, which must work, beside the
 * run with the step skipped, and shows what the skip breaks. Shipped guest
 * code is never changed. All guest state lives in guest memory, so a
 * skipped step is made by editing that memory in the saved image (each
 * image is checked with assertValidImage as saved, before the edit, and
 * again after it), by editing the new machine's state right after the
 * guest resumed, or by test kernel code that calls the shipped functions
 * but leaves one out.
 *
 *   xbd replay            a blk write is in flight at the save (blkback was
 *                         made deaf, dom0 never saw it). The image's xbd0
 *                         shadow table is emptied (every entry zeroed,
 *                         sc_nshadow = 0): the restored driver has nothing
 *                         to replay, as a driver that keeps no shadow.
 *   re-grant              the susp workload's record of the generation its
 *                         grant belongs to is set to the restore's
 *                         generation in the image, so after the restore it
 *                         does not grant its page again, as a driver that
 *                         does not re-grant. dom0 then maps the ref the guest
 *                         published before the save.
 *   watches re-sent       after the restored guest re-sent its watches, the
 *                         new xenstored's record of that connection's watches
 *                         is emptied: the state of a guest that never sent
 *                         XS_WATCH after the restore. Then control/shutdown =
 *                         suspend, with libxl's wait (waitForSuspend, on the
 *                         simulated clock).
 *   xenstore reply wait   on the xenbus harness (tests/xenbus/fixture.ts),
 *                         whose xenstored is made deaf so a read stays
 *                         unanswered: test kernel code suspends xenbus
 *                         without xs_suspend's wait (this tree's pmf guard
 *                         refuses; a port without it silences the store port
 *                         at once, xb_suspend_comms), then xenbus resumes on a
 *                         new xenstored and store page. The control suspends
 *                         the way this tree does (xs_suspend, then the pmf).
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestCpu } from '../../hypervisor/public/cpu.js';
import { struct, u32, u64 } from '../../hypervisor/public/layout.js';
import { BLKIF_OP_WRITE, blkif_request } from '../../hypervisor/public/io/blkif.js';
import { GNTST_general_error, GNTST_okay, gnttabStatusMessage } from '../../hypervisor/public/grant_table.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { WaitError, waitForSuspend } from '../../hypervisor/tools/save/index.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { xbd_softc_of } from '../../arch/xen/xen/xbd_io.js';
import { xbd_xenbus_softc, xbd_shadow, xbd_shadow_addr, XBD_NSHADOW, XBD_STATE_SUSPENDED, XS_REQ } from '../../arch/xen/xen/xbd_var.js';
import { xs_read, xs_result, xs_suspend, xs_outstanding } from '../../arch/xen/xenbus/xenbus_xs.js';
import { xb_suspend_comms } from '../../arch/xen/xenbus/xenbus_comms.js';
import { xs_resume_at } from '../../arch/xen/xenbus/xenbus_probe.js';
import { ksymtab, kcall } from '../../sys/kern/kern_ksyms.js';
import { lwp_list, lwp_find, lwp_frame_of, lwp_create } from '../../sys/kern/kern_lwp.js';
import { printf } from '../../sys/kern/subr_prf.js';
import { device_lookup, device_private } from '../../sys/kern/subr_autoconf.js';
import { assertValidImage } from '../helpers/verify-image.js';
import { putTogether, takeApart } from '../save/image-edit.js';
import {
  MS, tempDir, diskImage, e2eHost, guestConfig, boot as e2eBoot, counter, waitCounter, drive as e2eDrive, runFor, wlStatus,
  consoleText as e2eConsole, scanDisk,
} from '../e2e/fixture.js';
import { restoreImage, saveImage, suspended as e2eSuspended, connected } from '../proofs/fixture.js';
import {
  host, boot, drive, node, consoleText, count, suspended, saveToBytes, restoreInto, ping, grantHoldsPattern,
} from '../suspend/fixture.js';
import { grantPattern } from '../suspend/workloads.js';
import {
  world, bootDone, sleepingOn, newXenstored, storePage, settle, type XbWorld, DOMPATH, STORE_PORT,
} from '../xenbus/fixture.js';
import { dom0MapGrant, forgetWatches, imageMem, watchesOf } from './skip-fixture.js';

const PAGE = 4096;
const SECTORS_PER_BLOCK = 8;

/** SHA-256 of the slot of the disk image that holds block `i` (8 sectors). */
function slot(path: string, i: number): string {
  return createHash('sha256').update(readFileSync(path).subarray(i * SECTORS_PER_BLOCK * 512, (i + 1) * SECTORS_PER_BLOCK * 512)).digest('hex');
}

test('skipping the xbd replay after a restore: the write in flight at the save never reaches the disk and the workload hangs on it', async (t) => {
  const dir = tempDir(t, 'xenport-skipres-');
  const img = diskImage(dir, 2);
  const cfg = guestConfig({ name: 'noreplay', extra: 'workload=blk blk_lag=64', memory: 32, disks: [`file:${img},xvda,w`] });
  const a = await e2eHost(t);
  const d0 = (await e2eBoot(t, a, cfg)).domid;
  await waitCounter(t, a, d0, 'blk', 'verified', 8);
  // As in tests/e2e/restore.test.ts: blkback stops serving, the next write stays on the ring, unseen by dom0.
  a.backends.blkback.poll = () => 0;
  await runFor(a, 50 * MS);
  const stuck = counter(a, d0, 'blk', 'writes');
  await runFor(a, 50 * MS);
  t.is(counter(a, d0, 'blk', 'writes'), stuck, 'no write completes while blkback is deaf');
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await e2eDrive(t, a, () => e2eSuspended(a, d0), 'the suspend, with a request in flight');
  const onDisk = scanDisk(img, SECTORS_PER_BLOCK, 256);
  const saved = await saveImage(a, d0, cfg);
  await assertValidImage(saved, 'image with a write in flight');
  // The control gets its own copy of the disk as it was at the save.
  const controlImg = join(dir, 'control.img');
  copyFileSync(img, controlImg);

  // What xbd0 kept for the replay: one write, which the disk does not hold.
  const edited = takeApart(saved);
  const mem = imageMem(edited);
  const sc = xbd_softc_of(mem.cpu, 0);
  t.not(sc, 0, 'xbd0 is found in the image');
  const v = xbd_xenbus_softc.view(mem.cpu.mem, sc);
  t.is(v.get('sc_state'), XBD_STATE_SUSPENDED);
  t.is(v.get('sc_nshadow'), 1, 'one request in flight at the save');
  const inUse = [...Array(XBD_NSHADOW).keys()].filter((i) => xbd_shadow.view(mem.cpu.mem, xbd_shadow_addr(sc, i)).get('xs_bp') !== 0n);
  t.is(inUse.length, 1);
  const req = blkif_request.view(mem.cpu.mem, xbd_shadow_addr(sc, inUse[0]!) + XS_REQ);
  t.is(req.get('operation'), BLKIF_OP_WRITE, 'the request in flight is a write');
  const sector = Number(req.get('sector_number'));
  const nseg = req.get('nr_segments');
  let nsect = 0;
  for (let k = 0; k < nseg; k++) nsect += req.sub('seg', k).get('last_sect') - req.sub('seg', k).get('first_sect') + 1;
  const firstBlock = sector / SECTORS_PER_BLOCK;
  const blocks = nsect / SECTORS_PER_BLOCK;
  t.true(Number.isInteger(firstBlock) && Number.isInteger(blocks) && blocks > 0, `a write of ${nsect} sectors at sector ${sector}: whole blocks`);
  t.log(`in flight at the save: write of blocks ${firstBlock}..${firstBlock + blocks - 1} (${nseg} segments)`);
  const before = [...Array(blocks).keys()].map((k) => slot(img, firstBlock + k));
  // The skip: xbd0 keeps nothing of it.
  for (let i = 0; i < XBD_NSHADOW; i++) mem.cpu.mem.fill(xbd_shadow_addr(sc, i), xbd_shadow.size, 0);
  v.set('sc_nshadow', 0);
  mem.commit();
  const skipped = await putTogether(edited);
  await assertValidImage(skipped, 'image with xbd0\'s shadow emptied');

  // Control: restored as saved, xbd0 replays the write; it reaches the disk and the workload goes on.
  const c = await e2eHost(t, [defineNetbsdImage()], { machine: { memoryBytes: 256 * 2 ** 20, clock: 'simulated', scrambleSeed: 32 } });
  const dc = await restoreImage(c, saved, { ...cfg, disks: guestConfig({ name: 'x', extra: '', disks: [`file:${controlImg},xvda,w`] }).disks });
  await e2eDrive(t, c, () => /xbd0: replayed 1 request\(s\) in flight\n/.test(e2eConsole(c, dc)), 'the replay (control)');
  await waitCounter(t, c, dc, 'blk', 'writes', stuck + 4);
  t.true(scanDisk(controlImg, SECTORS_PER_BLOCK, 256).maxSeq > onDisk.maxSeq, 'control: the replayed write reached the disk');
  for (let k = 0; k < blocks; k++) t.not(slot(controlImg, firstBlock + k), before[k]!, `control: block ${firstBlock + k} was written`);
  t.is(counter(c, dc, 'blk', 'errors'), 0);

  // Skipped: nothing replayed, nothing written, and the workload waits for that write for ever.
  const b = await e2eHost(t, [defineNetbsdImage()], { machine: { memoryBytes: 256 * 2 ** 20, clock: 'simulated', scrambleSeed: 31 } });
  const d = await restoreImage(b, skipped, cfg);
  const text = (): string => e2eConsole(b, d);
  await e2eDrive(t, b, () => text().includes('resumed in a new domain (restore 1)') && connected(b, d, false), 'the resume, xbd0 Connected');
  await runFor(b, 2_000 * MS);
  t.false(/replayed/.test(text()), 'xbd0 replayed nothing');
  t.is(counter(b, d, 'blk', 'writes'), stuck, 'the workload is stuck on the lost write: 2 s of guest time, no write completes');
  t.is(counter(b, d, 'blk', 'errors'), 0, 'and no error is reported: the write is lost silently');
  t.is(wlStatus(b, d, 'blk'), 'running');
  for (let k = 0; k < blocks; k++) t.is(slot(img, firstBlock + k), before[k]!, `block ${firstBlock + k} on the disk is as it was at the save`);
  t.is(scanDisk(img, SECTORS_PER_BLOCK, 256).maxSeq, onDisk.maxSeq, 'the disk holds no newer write than at the save');
  for (const h of [a, b, c]) t.deepEqual(h.m.log.bugs, []);
});

/*
 * The susp workload's frame (tests/suspend/workloads.ts, struct sus_frame,
 * overlaid on init's lwp frame): sf_gen is the restore generation its
 * grant belongs to; the loop grants again when it differs from the
 * current one.
 */
const sus_frame = struct('struct sus_frame', { sf_page: u64, sf_last: u64, sf_ref: u32, sf_n: u32, sf_gen: u32, sf_seen: u32 });

test('a driver that does not grant again after a restore: dom0 cannot use the ref it published before the save', async (t) => {
  const a = await host(t, { scrambleSeed: 41 });
  const d0 = (await boot(t, a, 'susp')).domid;
  const oldRef = Number(node(a, `${domainPath(d0)}/data/gref`));
  t.true(oldRef > 1, `data/gref = ${oldRef} (refs 0 and 1 are the toolstack's)`);
  t.is(dom0MapGrant(a.m, d0, oldRef), GNTST_okay, 'before the save dom0 maps it');
  t.is(grantHoldsPattern(a, d0, oldRef), 'ok', 'and copies the page through it');
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d0), 'the suspend');
  const saved = await saveToBytes(a, d0);

  // The skip: the workload believes its grant already belongs to the generation the restore will bring.
  const edited = takeApart(saved);
  const mem = imageMem(edited);
  const frames = lwp_list(mem.cpu).map((l) => sus_frame.view(mem.cpu.mem, lwp_frame_of(lwp_find(mem.cpu, l.lid))))
    .filter((f) => f.get('sf_ref') === oldRef && f.get('sf_page') !== 0n);
  t.is(frames.length, 1, 'the workload\'s frame is found');
  const f = frames[0]!;
  const page = mem.cpu.mem.readBytes(Number(f.get('sf_page')), PAGE);
  t.true(page.every((b, i) => b === grantPattern(i)), 'it names the granted page');
  t.is(f.get('sf_gen'), 0, 'granted at boot (generation 0)');
  f.set('sf_gen', 1);
  mem.commit();
  const skipped = await putTogether(edited);
  await assertValidImage(skipped, 'image whose workload will not grant again');

  // Control: the workload grants its page again; dom0 maps and copies the new ref.
  const c = await host(t, { scrambleSeed: 43 });
  const dc = await restoreInto(c, saved, 'regrant');
  await drive(t, c, () => node(c, `${domainPath(dc)}/data/gref`) !== undefined, 'control: the new data/gref');
  const newRef = Number(node(c, `${domainPath(dc)}/data/gref`));
  t.is(count(consoleText(c, dc), 'susp: gref '), 1, 'control: granted again after the restore (this console starts at the restore)');
  t.log(`control: ref ${oldRef} before the save, ref ${newRef} granted again after the restore`);
  t.is(dom0MapGrant(c.m, dc, newRef), GNTST_okay, `control: dom0 maps the new ref ${newRef}`);
  t.is(grantHoldsPattern(c, dc, newRef), 'ok');

  // Skipped: the guest runs on and answers through xenstore, but its old ref is void in the new domain.
  const b = await host(t, { scrambleSeed: 42 });
  const d = await restoreInto(b, skipped, 'noregrant');
  const text = (): string => consoleText(b, d);
  await drive(t, b, () => /^susp: resumed kind=2 gen=1 /m.test(text()), 'the workload saw the restore');
  await ping(t, b, d, 'alive');
  const n = count(text(), 'susp: tick');
  await drive(t, b, () => count(text(), 'susp: tick') >= n + 2, 'ticks after the restore');
  t.is(count(text(), 'susp: gref '), 0, 'no grant since the restore');
  t.is(node(b, `${domainPath(d)}/data/gref`), undefined, 'no ref published in the new xenstore');
  const st = dom0MapGrant(b.m, d, oldRef);
  t.log(`map of the old ref ${oldRef} in the new machine: ${st} (${gnttabStatusMessage(st)})`);
  t.is(st, GNTST_general_error, `dom0's map of the old ref ${oldRef} fails: ${gnttabStatusMessage(st)}`);
  const copy = grantHoldsPattern(b, d, oldRef);
  t.log(copy);
  t.regex(copy, new RegExp(`^copy of ref ${oldRef}: `), 'a grant copy through it fails too');
  for (const h of [a, b, c]) t.deepEqual(h.m.log.bugs, []);
});

test('watches not sent again after a restore: control/shutdown = suspend is never acked and the toolstack\'s wait times out', async (t) => {
  const a = await host(t, { scrambleSeed: 51 });
  const d0 = (await boot(t, a, 'susp')).domid;
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d0), 'the suspend');
  const saved = await saveToBytes(a, d0);
  const restored = async (h: MachineHost, name: string): Promise<number> => {
    const d = await restoreInto(h, saved, name);
    await drive(t, h, () => /^susp: resumed kind=2 gen=1 /m.test(consoleText(h, d)), `${name}: the workload saw the restore`);
    // The guest re-sent its watches to this xenstored: data/ping is echoed.
    await ping(t, h, d, `${name}-1`);
    return d;
  };
  const TIMEOUT = 5_000 * MS;

  // Control: watches kept, the request is acked and the guest suspends.
  const c = await host(t, { scrambleSeed: 53 });
  const dc = await restored(c, 'control');
  await c.xs.write(`${domainPath(dc)}/control/shutdown`, 'suspend');
  await waitForSuspend(c.m, dc, TIMEOUT, { domExc: c.domExc });
  t.true(suspended(c, dc), 'control: suspended');
  t.is(node(c, `${domainPath(dc)}/control/shutdown`), '', 'control: acked');

  // Skipped: xenstored knows none of the guest's watches.
  const b = await host(t, { scrambleSeed: 52 });
  const d = await restored(b, 'nowatch');
  const dropped = forgetWatches(b, d);
  t.true(dropped.some((w) => w.path === `${domainPath(d)}/control/shutdown`), `the guest had re-sent its control/shutdown watch (${dropped.map((w) => w.path).join(', ')})`);
  t.deepEqual(watchesOf(b, d), []);
  await b.xs.write(`${domainPath(d)}/control/shutdown`, 'suspend');
  const e = await t.throwsAsync(waitForSuspend(b.m, d, TIMEOUT, { domExc: b.domExc }), { instanceOf: WaitError });
  t.is(e?.code, 'timeout');
  t.log(e?.message);
  t.false(suspended(b, d), 'the domain never suspended');
  t.is(node(b, `${domainPath(d)}/control/shutdown`), 'suspend', 'the request was never acked');
  // The guest itself runs on: only what reaches it through watches is lost.
  const n = count(consoleText(b, d), 'susp: tick');
  t.true(n > 0);
  await b.xs.write(`${domainPath(d)}/data/ping`, 'unheard');
  await runFor(b, 1_000 * MS);
  t.true(count(consoleText(b, d), 'susp: tick') > n, 'ticks go on');
  t.not(node(b, `${domainPath(d)}/data/pong`), 'unheard', 'data/ping is not echoed either');
  for (const h of [a, b, c]) t.deepEqual(h.m.log.bugs, []);
});

/*
 * A port's suspend path, as test kernel code on the xenbus harness
 * (tests/xenbus/fixture.ts: xenbus and the real xenstored, without the
 * hypervisor), built from the shipped functions in two ways: the way this
 * tree does it (xs_suspend waits for the replies outstanding, then the pmf
 * suspend of xenbus0), and the way a port that skips the wait would
 * (silence the store port at once, xb_suspend_comms).
 */
const portSyms = ksymtab({
  sk_read(cpu: GuestCpu): void {
    xs_read(cpu, 0, 'data/h', 'sk_read_1');
  },
  sk_read_1(cpu: GuestCpu): void {
    const r = xs_result(cpu);
    printf(cpu, 'sk: read %d %s\n', r.error, r.value);
  },
  /* This tree: wait for the outstanding replies, then xenbus0's pmf suspend. */
  sk_suspend(cpu: GuestCpu): void {
    xs_suspend(cpu, 'sk_suspend_1');
  },
  sk_suspend_1(cpu: GuestCpu): void {
    const dev = device_lookup(cpu, 'xenbus', 0);
    printf(cpu, 'sk: suspended, outstanding %d, pmf %d\n', xs_outstanding(cpu, device_private(cpu, dev)), kcall(cpu, 'xenbus_suspend', dev));
  },
  /* Skipping the wait, with this tree's guard: xenbus0's pmf suspend at once. */
  sk_pmf_nowait(cpu: GuestCpu): void {
    const dev = device_lookup(cpu, 'xenbus', 0);
    printf(cpu, 'sk: pmf without the wait %d\n', kcall(cpu, 'xenbus_suspend', dev));
  },
  /* Skipping the wait in a port without that guard: the store port goes quiet at once. */
  sk_suspend_nowait(cpu: GuestCpu): void {
    const sc = device_private(cpu, device_lookup(cpu, 'xenbus', 0));
    xb_suspend_comms(cpu, sc);
    printf(cpu, 'sk: suspended without waiting, outstanding %d\n', xs_outstanding(cpu, sc));
  },
});

/** A booted xenbus world with data/h = old, its xenstored deaf, an lwp's read of data/h sent and unanswered. */
async function readInFlight(t: ExecutionContext): Promise<XbWorld> {
  const w = await world({ extra: [portSyms] });
  t.true(w.run(30000, () => bootDone(w)), 'boot');
  await w.dom0.write(`${DOMPATH}/data/h`, 'old');
  w.deaf = true;
  lwp_create(w.h.cpu, 'sk_read', 'sk_read', 0);
  w.run(200);
  t.is(xs_outstanding(w.h.cpu, w.sc), 1, 'the read is on the ring, unanswered');
  t.true(sleepingOn(w, 'xsreq'), 'its lwp waits for the reply');
  return w;
}

/** The restore, for xenbus: a new xenstored (data/h = new) on a new store page; xenbus resumes onto it. */
async function resumeOnNewXenstored(t: ExecutionContext, w: XbWorld): Promise<void> {
  const old = w.xs;
  const fresh = await newXenstored(async (dom0) => {
    await dom0.write(`${DOMPATH}/data/h`, 'new');
  });
  const page = storePage(w.h);
  w.attach(fresh.xs, fresh.dom0, page);
  old.close();
  w.deaf = false;
  t.is(xs_resume_at(w.h.cpu, w.sc, page, STORE_PORT, false), 0);
}

test('suspending with a xenstore reply in flight, without waiting for it: the request is lost and its thread never continues after the restore', async (t) => {
  // Control: this tree's suspend waits; once xenstored answers, the read completes before the port goes quiet.
  const c = await readInFlight(t);
  lwp_create(c.h.cpu, 'sk_suspend', 'sk_suspend', 0);
  c.run(200);
  t.true(sleepingOn(c, 'xssuspend'), 'control: the suspend waits for the reply');
  c.deaf = false;
  c.ring().kick();
  t.true(c.run(30000, () => c.console().includes('sk: suspended')), 'control: suspended');
  t.regex(c.console(), /sk: read 0 old\n(.|\n)*sk: suspended, outstanding 0, pmf 1\n/);
  await resumeOnNewXenstored(t, c);
  lwp_create(c.h.cpu, 'sk_read', 'sk_read', 0);
  t.true(c.run(30000, () => c.console().includes('sk: read 0 new')), 'control: xenstore works after the restore');
  t.is(xs_outstanding(c.h.cpu, c.sc), 0);

  // This tree's guard: xenbus0's pmf suspend refuses while a reply is outstanding.
  const w = await readInFlight(t);
  lwp_create(w.h.cpu, 'sk_pmf_nowait', 'sk_pmf_nowait', 0);
  t.true(w.run(30000, () => w.console().includes('sk: pmf without the wait')));
  t.regex(w.console(), /1 xenstore requests outstanding; cannot suspend\n(.|\n)*sk: pmf without the wait 0\n/);
  // Without the guard: the port goes quiet with the read on the old ring; then the restore.
  lwp_create(w.h.cpu, 'sk_suspend_nowait', 'sk_suspend_nowait', 0);
  t.true(w.run(30000, () => w.console().includes('sk: suspended without waiting')));
  t.regex(w.console(), /sk: suspended without waiting, outstanding 1\n/);
  await resumeOnNewXenstored(t, w);
  // xenstore itself works on the new ring: a new read is answered ...
  lwp_create(w.h.cpu, 'sk_read', 'sk_read', 0);
  t.true(w.run(30000, () => w.console().includes('sk: read 0 new')), 'a read made after the restore is answered');
  w.run(20000);
  await settle();
  // ... but the read in flight at the suspend is never answered: the old xenstored is gone, the new one never saw it.
  t.false(w.console().includes('sk: read 0 old'), 'the old read never completes');
  t.is(count(w.console(), 'sk: read '), 1, 'only the new read completed');
  t.is(xs_outstanding(w.h.cpu, w.sc), 1, 'xenbus still counts it outstanding');
  t.true(sleepingOn(w, 'xsreq'), 'and its lwp sleeps for ever');
});
