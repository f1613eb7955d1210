/*
 * Booting the netbsd image on a real Machine (simulated clock): the console
 * transcript, the memory layout the kernel found, what it published for
 * the toolstack, and misbehaving start_info.
 */
import test from 'ava';
import { netbsdImage } from '../../arch/xen/conf/netbsd.js';
import { BOOT_COMPLETE } from '../../arch/xen/x86/machdep.js';
import { shared_info } from '../../hypervisor/public/xen.js';
import { SHUTDOWN_crash } from '../../hypervisor/public/sched.js';
import { bootRig, bootOne } from './fixture.js';

test('the netbsd image boots: autoconf lines, memory sizes, clock line, boot complete', (t) => {
  const rig = bootRig();
  const pv = bootOne(rig, netbsdImage, { memMiB: 16 });
  const out = rig.consoles.output(pv.domid);
  const lines = out.split('\n');
  const want = [
    'total memory = 16 MB',
    'mainbus0 (root)',
    'hypervisor0 at mainbus0: Xen version 4.17.0-xenport',
    'xencons0 at hypervisor0: Xen Virtual Console Driver',
    'xenbus0 at hypervisor0: Xen Virtual Bus Interface',
    'timecounter: Timecounter "xen_system_time" frequency 1000000000 Hz quality 10000',
  ];
  for (const w of want) t.true(lines.includes(w), `console has the line "${w}":\n${out}`);
  t.regex(out, /^avail memory = 1[0-5] MB$/m);
  t.regex(out, /^xen_clock: 2024-01-01 00:00:00 UTC, system time 0\.\d{9} s, 100 Hz tick on event channel \d+$/m);
  t.regex(out, new RegExp(`^${BOOT_COMPLETE}: 5 devices, \\d+ MB free`, 'm'));
  t.regex(out, /^ctrl_if0 at hypervisor0/m, 'the Xen 2.0 control interface attaches: the builder put ctrl_if= on the command line');
  // Order: memory, autoconf, clock, done.
  const at = (s: string): number => out.indexOf(s);
  t.true(at('total memory') < at('mainbus0') && at('mainbus0') < at('hypervisor0') && at('hypervisor0') < at('xencons0') && at('xencons0') < at('xenbus0'));
  t.true(at('xencons0') < at('timecounter') && at('timecounter') < at(BOOT_COMPLETE));
  const d = rig.m.domain(pv.domid)!;
  t.is(d.crash, null);
  t.false(d.shuttingDown);
  t.deepEqual(rig.m.log.bugs, []);
});

test('the kernel publishes its P2M for the toolstack: frame list list and max_pfn in shared_info', (t) => {
  const rig = bootRig();
  const pv = bootOne(rig, netbsdImage, { memMiB: 24 });
  const m = rig.m;
  const d = m.domain(pv.domid)!;
  const maxPfn = d.sharedInfo.getBigUint64(shared_info.offsetOf('arch.max_pfn'), true);
  const fll = Number(d.sharedInfo.getBigUint64(shared_info.offsetOf('arch.pfn_to_mfn_frame_list_list'), true));
  t.is(maxPfn, BigInt(pv.nrPages));
  t.is(m.frames.owner[fll], pv.domid, 'the top page is a frame of the guest');
  const p2mFrames = Math.ceil(pv.nrPages / 512);
  const flPages = Math.ceil(p2mFrames / 512);
  const p2m: number[] = [];
  for (let j = 0; j < flPages; j++) {
    const fl = Number(m.memory.readU64(fll, j * 8));
    for (let i = 0; i < 512 && j * 512 + i < p2mFrames; i++) {
      const frame = Number(m.memory.readU64(fl, i * 8));
      t.is(m.frames.owner[frame], pv.domid);
      for (let k = 0; k < 512 && p2m.length < pv.nrPages; k++) p2m.push(Number(m.memory.readU64(frame, k * 8)));
    }
  }
  t.deepEqual(p2m, pv.p2m, 'walking the three levels gives the P2M the builder wrote');
});

test('memory: the kernel takes the pages after the boot stack, and maps shared_info and the grant table outside the direct map', (t) => {
  const rig = bootRig();
  const pv = bootOne(rig, netbsdImage, { memMiB: 16 });
  const out = rig.consoles.output(pv.domid);
  const free = Number(/^avail memory = (\d+) MB$/m.exec(out)?.[1]);
  const expect = Math.floor((pv.nrPages - pv.firstFreePfn) / 256);
  t.true(free === expect || free === expect - 1, `avail ${free} MB, free pages after the builder's ${pv.nrPages - pv.firstFreePfn}`);
  // shared_info is mapped by the guest: the frame has a mapping reference.
  const d = rig.m.domain(pv.domid)!;
  t.true(rig.m.frames.refCount[d.sharedInfoMfn]! > 0, 'shared_info is mapped');
  for (const f of rig.m.gnttab.tableFrames(pv.domid)) t.true(rig.m.frames.refCount[f]! > 0, `grant frame ${f} is mapped`);
});

test('boot flags on the command line: -q keeps autoconf lines off the console', (t) => {
  const rig = bootRig();
  const pv = bootOne(rig, netbsdImage, { cmdline: '-q' });
  const out = rig.consoles.output(pv.domid);
  t.false(out.includes('mainbus0 (root)'), out);
  t.true(out.includes('total memory = 16 MB'));
  t.true(out.includes(BOOT_COMPLETE));
});

test('a start_info with the wrong magic: panic on the console, that domain crashed, machine and another guest fine', (t) => {
  const rig = bootRig();
  const bad = rig.create({ image: netbsdImage, magic: 'xen-3.0-x86_32' });
  const good = rig.create({ image: netbsdImage });
  rig.runUntilOutput(good.domid, BOOT_COMPLETE);
  rig.runFor(50_000_000);
  const d = rig.m.domain(bad.domid)!;
  t.true(d.shuttingDown);
  t.is(d.shutdownCode, SHUTDOWN_crash);
  t.regex(rig.consoles.output(bad.domid), /^panic: start: start_info magic "xen-3\.0-x86_32" is not "xen-3\.0-x86_64"$/m);
  t.false(rig.consoles.output(bad.domid).includes('mainbus0'));
  t.is(rig.m.domain(good.domid)!.crash, null);
  t.false(rig.m.domain(good.domid)!.shuttingDown);
  t.deepEqual(rig.m.log.bugs, []);
  // The good guest keeps ticking.
  const before = rig.m.domain(good.domid)!.vcpus[0]!.entries;
  rig.runFor(100_000_000);
  t.true(rig.m.domain(good.domid)!.vcpus[0]!.entries >= before + 10);
});

test('50 guests of 16 MiB boot at once on one machine', (t) => {
  const rig = bootRig({ memoryBytes: 1024 * 1024 * 1024 });
  const pvs = Array.from({ length: 50 }, () => rig.create({ image: netbsdImage, memMiB: 16 }));
  const done = (): boolean => pvs.every((p) => rig.consoles.output(p.domid).includes(BOOT_COMPLETE));
  t.is(rig.m.runUntil(done, 200_000), 'done');
  for (const p of pvs) {
    const out = rig.consoles.output(p.domid);
    t.true(out.includes('total memory = 16 MB') && out.includes('xencons0 at hypervisor0'), `d${p.domid}:\n${out}`);
    t.is(rig.m.domain(p.domid)!.crash, null);
  }
  t.is(new Set(pvs.map((p) => p.domid)).size, 50);
  t.deepEqual(rig.m.log.bugs, []);
});
