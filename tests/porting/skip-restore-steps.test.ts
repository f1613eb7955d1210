/*
 * The toolstack's restore steps that docs/porting-guide.md §4 says matter,
 * each one skipped with the real NetBSD guest (the suspend tests' kernel and
 * its `susp` workload). For step 4 a control run restores the same image
 * (saved once, checked by both image checkers) into a machine with the same
 * seed, so whatever differs comes from the skip; for step 7 the contrast is
 * the same domain introduced late. Nothing in the guest, the hypervisor or
 * the toolstack is changed: the skip is done by the test, at the point where
 * the toolstack would have done (or not done) the step.
 *
 *   step 4, pending and mask   restoreDomain clears every evtchn_pending bit
 *                              and masks every port in the new shared_info.
 *                              Skipped: just before the unpause, the image's
 *                              own evtchn_pending, evtchn_mask, upcall_pending
 *                              and pending_sel are written back into the new
 *                              shared_info through the toolstack's foreign
 *                              mapping, as a toolstack copying shared_info
 *                              verbatim would. The guest was busy when it was
 *                              saved: a disk and a vif connected, the tick
 *                              running, and while it was suspended a watch
 *                              fired, console input came and dom0 pinged it.
 *                              Also copied alone: the pending bits, the mask.
 *   step 4, wall clock         the new shared_info carries the new machine's
 *                              wall-clock base. Skipped: the image's wc_version,
 *                              wc_sec, wc_nsec, wc_sec_hi written back likewise.
 *   step 7, XS_INTRODUCE       libxl's part of the restore without
 *                              XS_INTRODUCE (nodes, console, devices, unpause),
 *                              run for a bounded simulated time; then
 *                              introduced late.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EVTCHN_WORDS, VIRQ_DEBUG, XEN_LEGACY_MAX_VCPUS, shared_info, vcpu_info } from '../../hypervisor/public/xen.js';
import { EVTCHNSTAT_interdomain, EVTCHNSTAT_unbound } from '../../hypervisor/public/event_channel.js';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { RestoredDomain } from '../../hypervisor/tools/save/index.js';
import { domainPath } from '../../hypervisor/tools/builder/xenstore.js';
import { takeApart } from '../save/image-edit.js';
import { MiB, image, host, boot, drive, node, consoleText, count, suspended, saveToBytes, ping, pingFromDom0 } from '../suspend/fixture.js';
import { restoreLibxl, editSharedInfo, runFor } from './skip-restore-fixture.js';

const PEND = shared_info.offsetOf('evtchn_pending');
const MASK = shared_info.offsetOf('evtchn_mask');
const EVTCHN_BYTES = 8 * EVTCHN_WORDS;
const VCPU_INFO = shared_info.offsetOf('vcpu_info');
const UPCALL_PENDING = vcpu_info.offsetOf('evtchn_upcall_pending');
const PENDING_SEL = vcpu_info.offsetOf('evtchn_pending_sel');
const WC_FROM = shared_info.offsetOf('wc_version');
const WC_TO = shared_info.offsetOf('wc_sec_hi') + 4;

const IP = '10.0.0.41';
const VBD = 'device/vbd/51712';
const VIF = 'device/vif/0';
const CONNECTED = '4';
/** 2023-11-14T22:13:20Z and 2025-06-01T12:00:00Z. */
const WALL_A = 1_700_000_000n * 1_000_000_000n;
const WALL_B = 1_748_779_200n * 1_000_000_000n;

/** Ports whose bit in the event bitmap at `off` of `page` is `value`. */
function portsWithBit(page: Uint8Array, off: number, value: 0 | 1): number[] {
  const out: number[] = [];
  for (let p = 0; p < EVTCHN_BYTES * 8; p++) if (((page[off + (p >> 3)]! >> (p & 7)) & 1) === value) out.push(p);
  return out;
}

function devConfig(disk: string): DomainConfig {
  return {
    name: 'g-busy', kernel: image.name, memory: 32, vcpus: 1, extra: 'workload=susp',
    disks: [{ target: disk, vdev: 'xvda', readOnly: false, format: 'raw' }],
    vifs: [{ mac: '00:16:3e:00:00:41', ip: IP, bridge: 'xenbr0', forwards: [] }],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
  };
}

/** Frontend and backend of `dev` both Connected. */
function devConnected(h: MachineHost, domid: number, dev: string): boolean {
  const fe = `${domainPath(domid)}/${dev}`;
  const be = node(h, `${fe}/backend`);
  return node(h, `${fe}/state`) === CONNECTED && be !== undefined && node(h, `${be}/state`) === CONNECTED;
}

function bothConnected(h: MachineHost, domid: number): boolean {
  return devConnected(h, domid, VBD) && devConnected(h, domid, VIF);
}

interface BusyImage {
  readonly bytes: Uint8Array;
  readonly cfg: DomainConfig;
  /** What the image's shared_info says. */
  readonly pending: number[];
  readonly unmasked: number[];
  /** The old domain's ports, by owner. */
  readonly ports: { store: number; console: number; vif: number; suspend: number; virqs: number[] };
}

/**
 * A netbsd guest with a disk and a vif, connected and ticking, suspended
 * through control/shutdown; while suspended, a data/ping watch fires, console
 * input arrives and dom0 pings the vif; then saved.
 */
async function busyGuestImage(t: ExecutionContext): Promise<BusyImage> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-skiprst-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(MiB));
  const cfg = devConfig(disk);
  const a = await host(t, { memoryBytes: 128 * MiB, scrambleSeed: 91 });
  const built = await a.create(cfg);
  const d = built.domid;
  const dom = domainPath(d);
  await drive(t, a, () => bothConnected(a, d) && count(consoleText(a, d), 'susp: tick') >= 2, 'xbd0 and xennet0 connected, ticking');
  const virqs = a.m.evtchn.channels(d).filter((c) => c.virq !== undefined).map((c) => c.localPort as number);
  const ports = {
    store: built.storePort, console: built.consolePort, vif: Number(node(a, `${dom}/${VIF}/event-channel`)),
    suspend: Number(node(a, `${dom}/device/suspend/event-channel`)), virqs,
  };
  await a.xs.write(`${dom}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d), 'the suspend');
  // Events for the suspended guest: a watch of its fires, console input, a packet for its vif.
  await a.xs.write(`${dom}/data/ping`, 'while-suspended');
  t.is(a.consoled.write(toDomId(d), new TextEncoder().encode('hello\n')), 6);
  const p = await pingFromDom0(t, a, IP);
  t.true(typeof p !== 'string' && !p.ok, `a suspended guest does not answer: ${JSON.stringify(p)}`);
  const bytes = await saveToBytes(a, d);
  await a.backends.detachDevices(d);
  const si = takeApart(bytes).sharedInfo;
  return { bytes, cfg, pending: portsWithBit(si, PEND, 1), unmasked: portsWithBit(si, MASK, 0), ports };
}

/** What the guest's VIRQ_DEBUG handler printed last: upcalls, stray events, events per handler name. */
interface EventDump {
  readonly upcalls: number;
  readonly stray: number;
  readonly events: Record<string, number>;
  readonly lines: string[];
}

function lastDump(text: string): EventDump {
  const at = text.lastIndexOf('xen debug event on port');
  if (at < 0) throw new Error('no VIRQ_DEBUG dump on the console');
  const lines = text.slice(at).split('\n');
  const head = /^xen debug event on port \d+: (\d+) upcalls, (\d+) stray$/.exec(lines[0] ?? '');
  if (head === null) throw new Error(`unexpected dump head: ${lines[0]}`);
  const events: Record<string, number> = {};
  const body: string[] = [lines[0]!];
  for (const l of lines.slice(1)) {
    const m = /^ {2}port \d+ \w+ (\S+): (\d+) events/.exec(l);
    if (m === null) break;
    events[m[1]!] = Number(m[2]);
    body.push(l);
  }
  return { upcalls: Number(head[1]), stray: Number(head[2]), events, lines: body };
}

/** Console lines that report something (not the tick lines, not the dump). */
function reports(text: string, dump: EventDump): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('susp: tick') && !dump.lines.includes(l));
}

interface Run {
  readonly r: RestoredDomain;
  readonly atUnpause: { pending: number[]; unmasked: number[] };
  readonly dump: EventDump;
  readonly text: string;
  readonly bugs: readonly unknown[];
}

/** What of the image's event state is copied into the new shared_info: nothing (the control), all of it, or one half. */
type Copy = 'nothing' | 'all' | 'pending' | 'mask';

/** Restore the busy image into a new machine (seed 92), copying `copy` of its event state back; run it until it is back and dump its event table. */
async function restoreBusy(t: ExecutionContext, img: BusyImage, copy: Copy): Promise<Run> {
  const saved = takeApart(img.bytes).sharedInfo;
  const b = await host(t, { memoryBytes: 128 * MiB, scrambleSeed: 92 });
  let atUnpause = { pending: [] as number[], unmasked: [] as number[] };
  const r = await restoreLibxl(b, img.bytes, {
    name: 'g-busy', kernel: image.name, memoryMib: 32, devices: img.cfg,
    beforeUnpause: (rd) => {
      editSharedInfo(b, rd, (page) => {
        if (copy === 'all' || copy === 'pending') page.set(saved.subarray(PEND, PEND + EVTCHN_BYTES), PEND);
        if (copy === 'all' || copy === 'mask') page.set(saved.subarray(MASK, MASK + EVTCHN_BYTES), MASK);
        if (copy === 'all') {
          for (let v = 0; v < XEN_LEGACY_MAX_VCPUS; v++) {
            const vi = VCPU_INFO + v * vcpu_info.size;
            page[vi + UPCALL_PENDING] = saved[vi + UPCALL_PENDING]!;
            page.set(saved.subarray(vi + PENDING_SEL, vi + PENDING_SEL + 8), vi + PENDING_SEL);
          }
        }
        atUnpause = { pending: portsWithBit(page, PEND, 1), unmasked: portsWithBit(page, MASK, 0) };
      });
    },
  });
  const d = r.domid;
  const text = (): string => consoleText(b, d);
  await drive(t, b, () => /^susp: resumed kind=2 /m.test(text()) && bothConnected(b, d), 'the restored guest back, xbd0 and xennet0 reconnected');
  await ping(t, b, d, 'after-restore');
  const p = await pingFromDom0(t, b, IP);
  t.true(typeof p !== 'string' && p.ok, `dom0 pings the restored guest (copy ${copy}): ${JSON.stringify(p)}`);
  t.true(b.m.evtchn.sendVirq(d, VIRQ_DEBUG));
  await drive(t, b, () => text().includes('xen debug event on port') && / {2}port \d+ unbound xbd0: /.test(text()), 'the event table dump');
  return { r, atUnpause, dump: lastDump(text()), text: text(), bugs: [...b.m.log.bugs] };
}

/** Events per handler name, `run` minus `control`, where they differ. */
function extraEvents(control: Run, run: Run): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const name of new Set([...Object.keys(control.dump.events), ...Object.keys(run.dump.events)])) {
    const n = (run.dump.events[name] ?? NaN) - (control.dump.events[name] ?? NaN);
    if (n !== 0) diff[name] = n;
  }
  return diff;
}

test('restore step 4 skipped (stale pending bits and mask): the busy guest takes one spurious event on its console and its vif, strays none, and runs on as the control run does', async (t) => {
  const img = await busyGuestImage(t);
  // What a verbatim copy carries: the events that came while it was suspended,
  // on ports it had masked, and the unmasked bits of its closed VIRQ ports and its suspend channel.
  t.deepEqual(img.pending, [img.ports.store, img.ports.console, img.ports.vif].sort((x, y) => x - y),
    'pending in the image: the watch (store port), the console input, the packet (vif port)');
  t.deepEqual(img.unmasked, [...img.ports.virqs, img.ports.suspend].sort((x, y) => x - y),
    'unmasked in the image: the VIRQ ports (closed at the suspend) and the suspend event channel');

  const control = await restoreBusy(t, img, 'nothing');
  const skipped = await restoreBusy(t, img, 'all');
  t.deepEqual(control.atUnpause, { pending: [], unmasked: [] }, 'control: the restore left nothing pending, every port masked');
  t.deepEqual(skipped.atUnpause, { pending: img.pending, unmasked: img.unmasked }, 'skip: the image\'s event state is in the new shared_info at the unpause');
  // The new domain's ports carry the same numbers for the same owners (the
  // restore and the guest allocate them in the same order), so each stale bit
  // lands on the port that now serves what it served before.
  t.is(skipped.r.storePort, img.ports.store);
  t.is(skipped.r.consolePort, img.ports.console);

  // What the guest did differently: exactly one more event for xencons and
  // for xennet0 (the stale bits, delivered when each driver unmasked its port),
  // none more for xenbus (its stale bit merged with xenstored's own signal),
  // none more for anything else (the tick included), no stray event, one more
  // upcall.
  t.deepEqual(extraEvents(control, skipped), { xencons: 1, xennet0: 1 }, `events per handler, skip minus control\ncontrol: ${control.dump.lines.join('\n')}\nskip: ${skipped.dump.lines.join('\n')}`);
  t.is(control.dump.stray, 0);
  t.is(skipped.dump.stray, 0, 'no event on a port without a handler');
  t.is(skipped.dump.upcalls - control.dump.upcalls, 1);
  // The cause is the pending bits: copying them alone gives the same; copying the mask alone, nothing.
  t.deepEqual(extraEvents(control, await restoreBusy(t, img, 'pending')), { xencons: 1, xennet0: 1 }, 'pending bits only');
  t.deepEqual(extraEvents(control, await restoreBusy(t, img, 'mask')), {}, 'mask only');
  // Otherwise the same guest: the same console reports, no bug on either machine.
  t.deepEqual(reports(skipped.text, skipped.dump), reports(control.text, control.dump));
  t.regex(skipped.text, /^susp: resumed kind=2 gen=1 cancels=0 ports=8 masked=0 inuse=\d+$/m);
  t.deepEqual(control.bugs, []);
  t.deepEqual(skipped.bugs, []);
});

test('restore step 7 skipped (no XS_INTRODUCE): the guest resumes and ticks, but for 30 s nothing it asks of xenstore is answered (no suspend event channel, no data/gref, no pong, devices stay Initialising); introduced late, all of it goes through', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xenport-skiprst-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const disk = path.join(dir, 'disk.img');
  writeFileSync(disk, new Uint8Array(MiB));
  const cfg = devConfig(disk);
  const a = await host(t, { memoryBytes: 128 * MiB, scrambleSeed: 93 });
  const d0 = (await a.create(cfg)).domid;
  await drive(t, a, () => bothConnected(a, d0) && count(consoleText(a, d0), 'susp: tick') >= 2, 'xbd0 and xennet0 connected');
  await a.xs.write(`${domainPath(d0)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, d0), 'the suspend');
  const bytes = await saveToBytes(a, d0);
  await a.backends.detachDevices(d0);

  const b = await host(t, { memoryBytes: 128 * MiB, scrambleSeed: 94 });
  const r = await restoreLibxl(b, bytes, { name: 'g-nointro', kernel: image.name, memoryMib: 32, devices: cfg, introduce: false });
  const d = r.domid;
  const dom = domainPath(d);
  const text = (): string => consoleText(b, d);
  const storePortStatus = (): number | undefined => b.m.evtchn.channels(d).find((c) => c.localPort === r.storePort)?.status;
  await runFor(b, 15_000_000_000);
  // The guest itself comes back: its resume queues its xenstore requests and goes on.
  t.regex(text(), /^xen_suspend: resumed in a new domain \(restore 1\)/m);
  t.regex(text(), /^susp: resumed kind=2 gen=1 /m);
  const ticks = count(text(), 'susp: tick');
  t.true(ticks >= 10, `it ticks (${ticks} tick lines)`);
  await b.xs.write(`${dom}/data/ping`, 'unintroduced');
  await runFor(b, 15_000_000_000);
  t.true(count(text(), 'susp: tick') > ticks, 'still ticking 15 s later');
  // Nothing it sent reached xenstored, which never bound the store port.
  t.is(storePortStatus(), EVTCHNSTAT_unbound, 'the store port is still unbound: nobody listens');
  t.is(node(b, `${dom}/device/suspend/event-channel`), '', 'no suspend event channel published: the toolstack has none to signal');
  t.is(node(b, `${dom}/data/gref`), undefined, 'the workload\'s new grant ref is never published');
  t.is(node(b, `${dom}/data/pong`), undefined, 'the data/ping watch never fires: xenstored never got it');
  t.false(text().includes('susp: pong'));
  t.is(node(b, `${dom}/${VBD}/state`), '1', 'xbd0 frontend stays Initialising');
  t.is(node(b, `${dom}/${VIF}/state`), '1', 'xennet0 frontend stays Initialising');
  t.is(node(b, `${node(b, `${dom}/${VBD}/backend`)}/state`), '2', 'blkback waits in InitWait');
  t.is(node(b, `${node(b, `${dom}/${VIF}/backend`)}/state`), '2', 'netback waits in InitWait');

  // Introduced late: xenstored binds the port and takes what waited in the ring.
  await b.xs.introduce(d, r.storeMfn, r.storePort);
  await drive(t, b, () => bothConnected(b, d) && node(b, `${dom}/data/pong`) === 'unintroduced', 'both devices Connected and the pong, once introduced');
  t.is(storePortStatus(), EVTCHNSTAT_interdomain);
  t.regex(node(b, `${dom}/device/suspend/event-channel`) ?? '', /^\d+$/);
  t.regex(node(b, `${dom}/data/gref`) ?? '', /^\d+$/);
  t.deepEqual(b.m.log.bugs, []);
});

test('restore step 4 skipped (wall clock): with the image\'s wall-clock base the restored guest reads the old host\'s time, earlier than the moment it was saved', async (t) => {
  const a = await host(t, { scrambleSeed: 95, bootWallNs: WALL_A });
  const built = await boot(t, a, 'susp');
  await drive(t, a, () => count(consoleText(a, built.domid), 'susp: tick') >= 15, 'three seconds of ticks');
  await a.xs.write(`${domainPath(built.domid)}/control/shutdown`, 'suspend');
  await drive(t, a, () => suspended(a, built.domid), 'the suspend');
  const wallAtSave = WALL_A + BigInt(a.m.clock.now());
  const bytes = await saveToBytes(a, built.domid);
  const saved = takeApart(bytes).sharedInfo;

  const resumeWall = async (skip: boolean): Promise<bigint> => {
    const b = await host(t, { scrambleSeed: 96, bootWallNs: WALL_B });
    const r = await restoreLibxl(b, bytes, {
      name: 'g-wc', kernel: image.name, memoryMib: 16,
      beforeUnpause: (rd) => {
        if (skip) editSharedInfo(b, rd, (page) => page.set(saved.subarray(WC_FROM, WC_TO), WC_FROM));
      },
    });
    await drive(t, b, () => consoleText(b, r.domid).includes('resumed in a new domain'), 'the resume');
    const m = /^xen_suspend: resumed in a new domain .* wall clock (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC$/m.exec(consoleText(b, r.domid));
    if (m === null) throw new Error(`no resume line:\n${consoleText(b, r.domid)}`);
    t.deepEqual(b.m.log.bugs, []);
    const [y, mo, da, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
    return BigInt(Date.UTC(y, mo - 1, da, h, mi, s) / 1000);
  };
  const control = await resumeWall(false);
  const skipped = await resumeWall(true);
  t.is(control, WALL_B / 1_000_000_000n, 'control: the new machine\'s date (2025-06-01 12:00:00)');
  t.is(skipped - control, (WALL_A - WALL_B) / 1_000_000_000n, 'skip: off by exactly the hosts\' difference');
  t.true(skipped < wallAtSave / 1_000_000_000n, `skip: ${skipped} s is before the save (${wallAtSave / 1_000_000_000n} s): the time of day went back`);
});
