/*
 * The porting guide's "what breaks if you skip it" claims (docs/porting-guide.md)
 * that no other test shows: each test here leaves one step of the
 * suspend/restore sequence out, through the image, the toolstack or the
 * machine (never by changing shipped guest code), and shows the failure.
 *
 *   store/console MFN -> PFN     start_info in the image keeps an MFN: the
 *                                restore refuses it, or (an MFN that happens to
 *                                be a valid PFN) hands xenstored the wrong page
 *   pending/mask in shared_info  the image's shared_info has events pending and
 *                                unmasked: the restore clears and masks them
 *   event channels rebound       a resumed guest whose ports are not bound in
 *                                the domain it runs in: xenstore and the tick stall
 *   wall clock read afresh       the wall-clock base of the new machine is not
 *                                the saved one: a kernel keeping the old base is
 *                                off by exactly the hosts' difference
 */
import test from 'ava';
import { RestoreError, restoreDomain } from '../../hypervisor/tools/save/index.js';
import { EVTCHN_WORDS, __HYPERVISOR_event_channel_op, shared_info, start_info } from '../../hypervisor/public/xen.js';
import { EVTCHNOP_reset, evtchn_reset } from '../../hypervisor/public/event_channel.js';
import { vcpu_guest_context } from '../../hypervisor/public/arch-x86_64.js';
import { Machine } from '../../hypervisor/xen/machine.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { ALL_MEMTEST_KERNELS, memtestKernel } from '../save/kernels/memtest.js';
import { MiB, guest, machine, mailboxMfn, runEntries, suspendAndSave } from '../save/fixture.js';
import { putTogether, takeApart, type EditableImage } from '../save/image-edit.js';
import {
  host, boot, drive, node, consoleText, count, suspended, saveToBytes, restoreInto, ping,
} from '../suspend/fixture.js';

const PAGE = 4096;

/** The MFN that holds `pfn` of `domid` (from the M2P, as `xl` would find it). */
function mfnOf(m: Machine, domid: number, pfn: number): number {
  const f = m.frames;
  for (let mfn = 0; mfn < f.nrFrames; mfn++) if (f.owner[mfn] === domid && f.m2p[mfn] === pfn) return mfn;
  throw new Error(`d${domid} has no pfn ${pfn}`);
}

/** Edit a u64 of the image's start_info page in place. */
function setStartInfoField(img: EditableImage, field: 'store_mfn' | 'console.domU.mfn', value: bigint): bigint {
  const ctx = img.vcpus[0]!.context;
  const pfn = Number(new DataView(ctx.buffer, ctx.byteOffset).getBigUint64(vcpu_guest_context.offsetOf('user_regs.rdx'), true));
  const data = img.pages.get(pfn)!.data!;
  const dv = new DataView(data.buffer, data.byteOffset, PAGE);
  const off = start_info.offsetOf(field);
  const old = dv.getBigUint64(off, true);
  dv.setBigUint64(off, value, true);
  return old;
}

/** A suspended memtest guest's image, with what the source machine knew of its store and console pages. */
async function savedMemtest(seed: number): Promise<{ img: EditableImage; storePfn: number; storeMfn: number; consolePfn: number; consoleMfn: number }> {
  const a = machine({ seed });
  const g = guest(a, memtestKernel, { pages: 256 });
  const storeMfn = mfnOf(a, g.domid, g.layout.storePfn);
  const consoleMfn = mfnOf(a, g.domid, g.layout.consolePfn);
  const { image } = await suspendAndSave(a, g.domid);
  return { img: takeApart(image), storePfn: g.layout.storePfn, storeMfn, consolePfn: g.layout.consolePfn, consoleMfn };
}

test('skipping the store MFN -> PFN conversion: an MFN beyond max_pfn is refused by the restore, naming start_info.store_mfn', async (t) => {
  const s = await savedMemtest(60);
  // Control: the guest converted it (the memtest kernel does, as xen_prepare_suspend does).
  t.is(setStartInfoField(s.img, 'store_mfn', BigInt(s.storeMfn)), BigInt(s.storePfn), 'the image holds the store PFN');
  t.true(s.storeMfn >= s.img.maxPfn, `the store page's MFN ${s.storeMfn} is beyond max_pfn ${s.img.maxPfn} on this seed`);
  const b = machine({ seed: 61 });
  const e = await t.throwsAsync(restoreDomain(b, await putTogether(s.img)), { instanceOf: RestoreError });
  t.is(e?.code, 'pfn-out-of-range');
  t.regex(e?.message ?? '', /start_info\.store_mfn .*is 0x[0-9a-f]+, not a pfn below max_pfn/);
  t.is(b.domains.length, 1, 'nothing left behind but dom0');
});

test('skipping the console MFN -> PFN conversion: refused the same way, naming console.domU.mfn', async (t) => {
  const s = await savedMemtest(62);
  t.is(setStartInfoField(s.img, 'console.domU.mfn', BigInt(s.consoleMfn)), BigInt(s.consolePfn));
  t.true(s.consoleMfn >= s.img.maxPfn);
  const b = machine({ seed: 63 });
  const e = await t.throwsAsync(restoreDomain(b, await putTogether(s.img)), { instanceOf: RestoreError });
  t.is(e?.code, 'pfn-out-of-range');
  t.regex(e?.message ?? '', /start_info\.console\.domU\.mfn/);
});

test('an unconverted store MFN that happens to be a valid PFN is taken at its word: xenstored is handed the wrong page', async (t) => {
  const s = await savedMemtest(64);
  // The old MFN read as a PFN: here it lands on pfn 0, the kernel's .data (any valid pfn would do).
  setStartInfoField(s.img, 'store_mfn', 0n);
  const b = machine({ seed: 65 });
  const r = await restoreDomain(b, await putTogether(s.img));
  const realStore = mfnOf(b, r.domid, s.storePfn);
  t.not(r.storeMfn, realStore, 'the store ring the toolstack introduces is not the guest\'s store page');
  t.is(r.storeMfn, mailboxMfn(b, r.domid), 'it is the kernel\'s own .data page, which xenstored would now scribble on');
  // And the guest is told so in its start_info too: it would map its .data as the ring.
  const si = b.xc.foreignFrame(r.domid, mfnOf(b, r.domid, Number(new DataView(s.img.vcpus[0]!.context.buffer, s.img.vcpus[0]!.context.byteOffset).getBigUint64(vcpu_guest_context.offsetOf('user_regs.rdx'), true))));
  if (typeof si === 'number') throw new Error(`start_info: ${si}`);
  const page = si.read(0, PAGE);
  t.is(new DataView(page.buffer, page.byteOffset).getBigUint64(start_info.offsetOf('store_mfn'), true), BigInt(mailboxMfn(b, r.domid)));
});

test('the restore clears every pending event and masks every port, whatever the saved shared_info says', async (t) => {
  const s = await savedMemtest(66);
  const PEND = shared_info.offsetOf('evtchn_pending');
  const MASK = shared_info.offsetOf('evtchn_mask');
  s.img.sharedInfo.fill(0xff, PEND, PEND + 8 * EVTCHN_WORDS);
  s.img.sharedInfo.fill(0, MASK, MASK + 8 * EVTCHN_WORDS);
  const b = machine({ seed: 67 });
  const r = await restoreDomain(b, await putTogether(s.img));
  const sh = b.domain(r.domid)!.sharedInfo;
  let pending = 0;
  let unmasked = 0;
  for (let i = 0; i < 8 * EVTCHN_WORDS; i++) {
    if (sh.getUint8(PEND + i) !== 0) pending++;
    if (sh.getUint8(MASK + i) !== 0xff) unmasked++;
  }
  t.is(pending, 0, 'no pending bit carried over from the image');
  t.is(unmasked, 0, 'every port masked until the guest unmasks what it rebinds');
});

test('the wall-clock base is the new machine\'s: a kernel that keeps the one it read before the save is off by the hosts\' difference', async (t) => {
  const WALL_A = 1_700_000_000n * 1_000_000_000n;
  const WALL_B = 1_748_779_200n * 1_000_000_000n;
  const mk = (seed: number, wall: bigint): Machine => {
    const m = new Machine({ memoryBytes: 32 * MiB, clock: 'simulated', scrambleSeed: seed, tscKhz: 2_000_000, bootWallNs: wall });
    for (const k of ALL_MEMTEST_KERNELS) m.registerImage(k);
    return m;
  };
  const wcBase = (sh: { getUint32(o: number, le?: boolean): number }): bigint =>
    (BigInt(sh.getUint32(shared_info.offsetOf('wc_sec_hi'), true)) * 2n ** 32n + BigInt(sh.getUint32(shared_info.offsetOf('wc_sec'), true))) * 1_000_000_000n +
    BigInt(sh.getUint32(shared_info.offsetOf('wc_nsec'), true));
  const a = mk(70, WALL_A);
  const g = guest(a, memtestKernel, { pages: 256 });
  runEntries(t, a, g.domid, 20);
  const baseBefore = wcBase(a.domain(g.domid)!.sharedInfo);
  t.is(baseBefore, WALL_A);
  const { image } = await suspendAndSave(a, g.domid);
  const b = mk(71, WALL_B);
  const r = await restoreDomain(b, image);
  const baseAfter = wcBase(b.domain(r.domid)!.sharedInfo);
  t.is(baseAfter, WALL_B, 'the new domain\'s shared_info has the new machine\'s wall-clock base (not the image\'s)');
  const saved = takeApart(image).sharedInfo;
  t.is(wcBase(new DataView(saved.buffer, saved.byteOffset, saved.length)), WALL_A, 'the image still carries the old one');
  // wall = base + system time: with the stale base every reading is off by exactly this.
  t.is(baseBefore - baseAfter, WALL_A - WALL_B);
  t.not(baseBefore, baseAfter);
});

test('a resumed guest whose event channels are not bound in the domain it runs in: xenstore and the tick stall', async (t) => {
  const a = await host(t, { scrambleSeed: 81 });
  const built = await boot(t, a, 'susp');
  await a.xs.write(`${domainPath(built.domid)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, built.domid), 'the suspend');
  const bytes = await saveToBytes(a, built.domid);
  const b = await host(t, { scrambleSeed: 82 });
  const d = await restoreInto(b, bytes, 'restored');
  const text = (): string => consoleText(b, d);
  await drive(t, b, () => text().includes('resumed in a new domain (restore 1)'), 'the resume');
  // Control: with its ports rebound (events_resume, xenbus resume) it answers and ticks.
  await ping(t, b, d, 'bound');
  const n0 = count(text(), 'susp: tick');
  await drive(t, b, () => count(text(), 'susp: tick') >= n0 + 2, 'ticks');
  // Now the state of a guest that skipped the rebind: none of the ports it uses exist in this domain.
  const mem = b.m.xc.h.arena;
  mem.reset();
  const v = evtchn_reset.view(mem, mem.alloc(evtchn_reset.size));
  v.set('dom', d);
  t.is(b.m.xc.h.call(__HYPERVISOR_event_channel_op, EVTCHNOP_reset, v.base), 0);
  const ticksAtReset = count(text(), 'susp: tick');
  await b.xs.write(`${domainPath(d)}/data/ping`, 'unbound');
  for (let i = 0; i < 20; i++) {
    b.m.runUntil(() => node(b, `${domainPath(d)}/data/pong`) === 'unbound', 100_000);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  t.not(node(b, `${domainPath(d)}/data/pong`), 'unbound', 'the watch event never reached the guest: xenstore stalls');
  t.true(count(text(), 'susp: tick') <= ticksAtReset + 1, `no timer events: the tick stops (${ticksAtReset} -> ${count(text(), 'susp: tick')})`);
});
