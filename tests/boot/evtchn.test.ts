/*
 * Drivers' building blocks in a booted guest: an event channel signalled
 * from dom0 reaches its handler through the upcall; a grant made by the
 * guest is what the hypervisor sees in the table frame, a mapped grant
 * cannot be revoked, an unmapped one can; console input reaches a reader.
 */
import test from 'ava';
import { defineNetbsdImage } from '../../arch/xen/conf/netbsd.js';
import { GTF_permit_access, GTF_reading, GTF_writing, GNTMAP_host_map, GNTST_okay } from '../../hypervisor/public/grant_table.js';
import { VIRQ_DEBUG } from '../../hypervisor/public/xen.js';
import { xencons_interface } from '../../hypervisor/public/io/console.js';
import { bootRig } from './fixture.js';
import { bootTestWorkloads, FLOOD_LINES, floodLine } from './workloads.js';

const image = defineNetbsdImage([bootTestWorkloads], 'netbsd-test');
const DOM0 = { domid: 0, vcpuId: 0, privileged: true };

test('a port signalled from dom0 reaches its handler, once per event', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image, cmdline: 'workload=evtest' });
  const out = rig.runUntilOutput(pv.domid, /^evtest: port (\d+)$/m);
  const port = Number(/^evtest: port (\d+)$/m.exec(out)![1]);
  const local = rig.m.xc.bindInterdomain(pv.domid, port);
  t.true(local > 0, `dom0 binds the guest's unbound port (${local})`);
  for (let i = 1; i <= 3; i++) {
    t.is(rig.m.xc.notify(local), 0);
    rig.runUntilOutput(pv.domid, `evtest: event ${i} on port ${port} (bound ${port})`);
  }
  // Two events before the guest runs again are one pending bit: one upcall, one handler call.
  rig.m.xc.notify(local);
  rig.m.xc.notify(local);
  rig.runFor(100_000_000);
  const text = rig.consoles.output(pv.domid);
  t.true(text.includes(`evtest: event 4 on port ${port}`));
  t.false(text.includes('evtest: event 5'), text);
  t.deepEqual(rig.m.log.bugs, []);
});

test('xengnt: the grant is in the table frame as written; busy while dom0 maps it; revoked after the unmap', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image, cmdline: 'workload=gnttest' });
  const out = rig.runUntilOutput(pv.domid, /^gnttest: ref (\d+) mfn (\d+)$/m);
  const [, refS, mfnS] = /^gnttest: ref (\d+) mfn (\d+)$/m.exec(out)!;
  const ref = Number(refS);
  const mfn = Number(mfnS);
  t.true(ref >= 8, 'refs 0..7 are the toolstack\'s');
  t.is(rig.m.frames.owner[mfn], pv.domid, 'the granted frame is the guest\'s');
  // Host side: read entry `ref` straight out of the table frame.
  const frames = rig.m.gnttab.tableFrames(pv.domid);
  const entry = (): { flags: number; domid: number; frame: number } => {
    const f = frames[Math.floor(ref / 512)]!;
    const off = (ref % 512) * 8;
    const lo = Number(rig.m.memory.readU64(f, off) & 0xffff_ffffn);
    return { flags: lo & 0xffff, domid: lo >>> 16, frame: Number(rig.m.memory.readU64(f, off) >> 32n) };
  };
  t.deepEqual(entry(), { flags: GTF_permit_access, domid: 0, frame: mfn });
  t.deepEqual(rig.m.gnttab.readEntry(pv.domid, ref), { flags: GTF_permit_access, domid: 0, frame: mfn });
  // dom0 maps it (as a backend would), and reads what the guest wrote.
  const map = rig.m.gnttab.mapGrantRef(DOM0, { dom: pv.domid, ref, flags: GNTMAP_host_map, hostAddr: 0x7000_0000n });
  t.is(map.status, GNTST_okay);
  t.is(map.mfn as number, mfn);
  t.is(rig.m.memory.readBytes(mfn, 0, 4).join(','), '160,161,162,163');
  t.is(entry().flags & (GTF_reading | GTF_writing), GTF_reading | GTF_writing, 'Xen marks a writable mapping in the entry');
  rig.runUntilOutput(pv.domid, `gnttest: ref ${ref} busy`);
  t.false(rig.consoles.output(pv.domid).includes('revoked'), 'no revoke while mapped');
  t.is(rig.m.gnttab.unmapHandle(DOM0, map.handle), GNTST_okay);
  const done = rig.runUntilOutput(pv.domid, new RegExp(`^gnttest: ref ${ref} revoked \\(0\\) after \\d+ tries$`, 'm'));
  t.true(Number(/after (\d+) tries/.exec(done)![1]) >= 2);
  t.deepEqual(entry(), { flags: 0, domid: 0, frame: 0 }, 'the entry is clear again');
  t.deepEqual(rig.m.log.bugs, []);
});

test('console input typed in dom0 reaches a reader in the guest', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image, cmdline: 'workload=echo' });
  rig.runUntilOutput(pv.domid, 'echo: ready');
  rig.consoles.type(pv.domid, 'hello xen\n');
  rig.runUntilOutput(pv.domid, /^echo: hello xen$/m);
  // More input than the `in` ring holds arrives in pieces, none lost.
  const long = Array.from({ length: 40 }, (_, i) => `line ${i} ${'x'.repeat(40)}`).join('\n') + '\n';
  rig.consoles.type(pv.domid, long);
  rig.runUntilOutput(pv.domid, /^echo: line 39 x{40}$/m);
  const echoed = rig.consoles.output(pv.domid).split('\n').filter((l) => l.startsWith('echo: line '));
  t.is(echoed.length, 40);
});

test('console output bigger than the ring in one go arrives whole and in order', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image, cmdline: 'workload=flood' });
  rig.runUntilOutput(pv.domid, 'flood: done');
  const lines = rig.consoles.output(pv.domid).split('\n').filter((l) => l.startsWith('flood '));
  t.is(lines.length, FLOOD_LINES);
  lines.forEach((l, i) => t.is(l, floodLine(i)));
  t.true(FLOOD_LINES * floodLine(0).length > 4 * 2048, 'several ring-fulls in one entry');
});

test('VIRQ_DEBUG from the hypervisor makes the kernel dump its event table', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image });
  rig.runUntilOutput(pv.domid, 'boot complete');
  rig.m.evtchn.sendVirq(pv.domid, VIRQ_DEBUG, 0);
  const out = rig.runUntilOutput(pv.domid, /^xen debug event on port \d+: \d+ upcalls, 0 stray$/m);
  t.regex(out, /^ {2}port \d+ virq clock: \d+ events$/m);
  t.regex(out, /^ {2}port \d+ virq debug: 1 events$/m);
  t.regex(out, /^ {2}port \d+ preset xencons: \d+ events$/m);
});

test('a backend that breaks the console ring sends the kernel back to the emergency console, output intact', (t) => {
  const rig = bootRig();
  const pv = rig.create({ image, cmdline: 'workload=evtest' });
  const out = rig.runUntilOutput(pv.domid, /^evtest: port (\d+)$/m);
  const port = Number(/^evtest: port (\d+)$/m.exec(out)![1]);
  const local = rig.m.xc.bindInterdomain(pv.domid, port);
  // The peer claims to have consumed 5000 bytes that were never produced.
  const f = rig.m.xc.foreignFrame(pv.domid, pv.p2m[pv.consolePfn]!, true);
  if (typeof f === 'number') throw new Error(`map console: ${f}`);
  const prod = f.mem.getUint32(xencons_interface.offsetOf('out_prod'), true);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, (prod + 5000) >>> 0, true);
  f.write(xencons_interface.offsetOf('out_cons'), b);
  rig.m.xc.notify(local);
  rig.runUntilOutput(pv.domid, /^xencons0: console ring broken \(out_cons \d+ is \d+ behind out_prod\); using the emergency console$/m);
  rig.m.xc.notify(local);
  rig.runUntilOutput(pv.domid, `evtest: event 2 on port ${port}`);
  t.is(rig.m.domain(pv.domid)!.crash, null);
  t.true(rig.m.log.console(pv.domid).includes(`evtest: event 2 on port ${port}`), 'later output went through console_io');
});
