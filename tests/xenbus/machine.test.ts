/*
 * xenbus in a real guest: the netbsd image (with xenbus) booted on a real
 * Machine by the real builder, its store ring served by the machine host's
 * xenstored (mapped through the toolstack, kicked by the store port),
 * simulated clock. The host side is dom0's XsClient, as xl uses it.
 */
import test, { type ExecutionContext } from 'ava';
import { SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_suspend } from '../../hypervisor/public/sched.js';
import { xenstore_domain_interface } from '../../hypervisor/public/io/xs_wire.js';
import { domid as toDomId } from '../../hypervisor/public/types.js';
import { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { BuiltDomain } from '../../hypervisor/tools/builder/build.js';
import type { DomainConfig } from '../../hypervisor/tools/xl/config.js';
import { lookup } from '../../hypervisor/tools/xenstored/tree.js';
import { latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import { xenbusImage } from './workloads.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../xenstored/peers.js';

const MiB = 2 ** 20;
const image = xenbusImage();

function config(name: string, workload: string, over: Partial<DomainConfig> = {}): DomainConfig {
  return {
    name, kernel: image.name, memory: 16, vcpus: 1, extra: `workload=${workload}`, disks: [], vifs: [],
    onPoweroff: 'preserve', onReboot: 'preserve', onCrash: 'preserve',
    ...over,
  };
}

async function host(t: ExecutionContext): Promise<MachineHost> {
  const h = await MachineHost.create({ machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: 11 }, images: [image] });
  t.teardown(() => h.close());
  return h;
}

/** A node's value straight from xenstored's state (undefined: no such node). */
function node(h: MachineHost, path: string): string | undefined {
  const n = lookup(h.xenstored.state.root, path);
  return n === undefined ? undefined : latin1(n.value);
}

function consoleText(h: MachineHost, domid: number): string {
  return latin1(h.consoled.tail(toDomId(domid)));
}

/** Run the machine and the host's promises in turn until `cond` holds. */
async function drive(t: ExecutionContext, h: MachineHost, cond: () => boolean, what: string, rounds = 300): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (h.m.runUntil(cond, 100_000) === 'done') return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (cond()) return;
  }
  t.fail(`never saw ${what}`);
}

async function boot(t: ExecutionContext, h: MachineHost, workload: string): Promise<BuiltDomain> {
  const b = await h.create(config(`g-${workload}`, workload));
  await drive(t, h, () => node(h, `/local/domain/${b.domid}/data/boot`) === 'complete', 'data/boot = complete');
  return b;
}

test('the guest attaches xenbus0, advertises its shutdown features and publishes data/', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xenbus');
  const dom = `/local/domain/${b.domid}`;
  for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) t.is(node(h, `${dom}/control/${f}`), '1', f);
  t.is(node(h, `${dom}/data/kernel`), 'NetBSD/xen');
  t.is(node(h, `${dom}/data/kernel-version`), image.versionHash);
  t.regex(consoleText(h, b.domid), /xenbus0 at hypervisor0: Xen Virtual Bus Interface/);
  t.deepEqual(h.m.log.bugs, []);
});

test('the guest reads and writes its own nodes and its watch fires on a host write', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xbrw');
  const dom = `/local/domain/${b.domid}`;
  await drive(t, h, () => consoleText(h, b.domid).includes('xbrw: watch 0'), 'the watch registered');
  const out = consoleText(h, b.domid);
  t.regex(out, /xbrw: write 0\n/);
  t.regex(out, /xbrw: read 0 "written by the guest"\n/);
  t.is(await h.xs.read(`${dom}/data/xbrw`), 'written by the guest');
  await h.xs.write(`${dom}/data/poke`, 'from dom0');
  await drive(t, h, () => consoleText(h, b.domid).includes('xbrw: poked data/poke="from dom0"'), 'the watch callback');
});

test('a transaction conflicting with a host write (xl-style client) is retried and wins', async (t) => {
  const h = await host(t);
  const b0 = await h.create(config('g-tx', 'xbtx'));
  const dom = `/local/domain/${b0.domid}`;
  await h.xs.write(`${dom}/data/counter`, '5');
  await drive(t, h, () => consoleText(h, b0.domid).includes('xbtx: read 5 in tx (try 0)'), 'the first read in the transaction');
  await h.xs.write(`${dom}/data/counter`, '41');
  await drive(t, h, () => /xbtx: commit 0/.test(consoleText(h, b0.domid)), 'a successful commit');
  const out = consoleText(h, b0.domid);
  t.regex(out, /xbtx: commit 35\n/, 'the first commit conflicted (EAGAIN)');
  t.regex(out, /xbtx: read 41 in tx \(try 1\)/);
  t.is(await h.xs.read(`${dom}/data/counter`), '42');
});

test('control/shutdown = poweroff: the guest acks and shuts down with reason poweroff', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xenbus');
  const dom = `/local/domain/${b.domid}`;
  await h.xs.write(`${dom}/control/shutdown`, 'poweroff');
  await drive(t, h, () => h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the domain shut down');
  const info = h.m.xc.getDomainInfo(b.domid);
  t.is(info?.shutdownReason, SHUTDOWN_poweroff);
  t.is(node(h, `${dom}/control/shutdown`), '', 'acknowledged by writing ""');
  t.regex(consoleText(h, b.domid), /xenbus: poweroff requested/);
});

test('control/shutdown = reboot shuts down with reason reboot; halt and nonsense are ignored', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xenbus');
  const dom = `/local/domain/${b.domid}`;
  await h.xs.write(`${dom}/control/shutdown`, 'halt');
  await drive(t, h, () => consoleText(h, b.domid).includes('halt requested; ignored'), 'halt ignored');
  await h.xs.write(`${dom}/control/shutdown`, 'sideways');
  await drive(t, h, () => consoleText(h, b.domid).includes('ignoring shutdown request: sideways'), 'nonsense ignored');
  t.false(h.m.xc.getDomainInfo(b.domid)?.shutdown ?? true);
  await h.xs.write(`${dom}/control/shutdown`, 'reboot');
  await drive(t, h, () => h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the domain shut down');
  t.is(h.m.xc.getDomainInfo(b.domid)?.shutdownReason, SHUTDOWN_reboot);
});

test('control/shutdown = suspend: acked, and the guest suspends itself (SHUTDOWN_suspend)', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xenbus');
  const dom = `/local/domain/${b.domid}`;
  await h.xs.write(`${dom}/control/shutdown`, 'suspend');
  await drive(t, h, () => h.m.xc.getDomainInfo(b.domid)?.shutdown === true, 'the suspend');
  t.is(h.m.xc.getDomainInfo(b.domid)?.shutdownReason, SHUTDOWN_suspend);
  t.is(node(h, `${dom}/control/shutdown`), '', 'the request was acked with an empty write before suspending');
});

test('a hostile store ring: garbage indices make the guest report and stop using xenbus, nothing else breaks', async (t) => {
  const h = await host(t);
  const b = await boot(t, h, 'xenbus');
  const dom = `/local/domain/${b.domid}`;
  // Scribble on the reply ring's producer index, as a broken xenstored would, then signal.
  const f = h.m.xc.foreignFrame(b.domid, b.storeMfn, true);
  if (typeof f === 'number') throw new Error(`foreign frame: ${f}`);
  const idx = new Uint8Array(4);
  const cons = f.mem.getUint32(xenstore_domain_interface.offsetOf('rsp_cons'), true);
  new DataView(idx.buffer).setUint32(0, (cons + 5000) >>> 0, true);
  f.write(xenstore_domain_interface.offsetOf('rsp_prod'), idx);
  await h.xs.write(`${dom}/control/shutdown`, 'poweroff');
  await drive(t, h, () => consoleText(h, b.domid).includes('xenstore ring broken'), 'the report');
  t.regex(consoleText(h, b.domid), /xenbus: xenstore ring broken: reply ring indices out of range; xenbus disabled/);
  h.m.runUntil(h.m.clock.now() + 1_000_000_000);
  const info = h.m.xc.getDomainInfo(b.domid);
  t.false(info?.shutdown ?? true, 'the guest did not act on a request it could not read');
  t.is(h.m.domain(b.domid)?.crash ?? null, null, 'no crash');
  t.deepEqual(h.m.log.bugs, []);
});

test('a frontend driver on xenbus: ring granted, port allocated, handshake driven by the backend, fatal errors reported', async (t) => {
  const h = await host(t);
  const b = await h.create(config('g-drv', 'xbdrv'));
  const d = b.domid;
  await drive(t, h, () => consoleText(h, d).includes('xbdrv: ready'), 'the driver table line');
  const fe = `/local/domain/${d}/device/tbx/0`;
  const be = `/local/domain/0/backend/tbx/${d}/0`;
  await h.xs.write(be, '');
  await h.xs.setPerms(be, ['n0', `r${d}`]);
  await h.xs.write(`${be}/state`, '1');
  await h.xs.write(fe, '');
  await h.xs.setPerms(fe, [`n${d}`, 'r0']);
  for (const [k, v] of [['backend-id', '0'], ['backend', be], ['state', '1']] as const) await h.xs.write(`${fe}/${k}`, v);
  await drive(t, h, () => node(h, `${fe}/state`) === '3', 'the frontend Initialised');
  t.regex(consoleText(h, d), /tbdrv0 at xenbus0 id 0: test frontend/);
  const ref = Number(node(h, `${fe}/ring-ref`));
  const port = Number(node(h, `${fe}/event-channel`));
  t.true(Number.isInteger(ref) && ref >= 8, `ring-ref ${ref} is a grant of the kernel's own range`);
  t.true(h.m.xc.bindInterdomain(d, port) > 0, 'dom0 can bind the port allocated for it');
  await h.xs.write(`${be}/state`, '4');
  await drive(t, h, () => consoleText(h, d).includes('tbdrv: connected (0)'), 'the frontend Connected');
  t.is(node(h, `${fe}/state`), '4');
  await h.xs.write(`${be}/state`, '5');
  await drive(t, h, () => node(h, `${fe}/state`) === '5', 'the frontend Closing');
  t.is(node(h, `/local/domain/${d}/error/device/tbx/0/error`), '5 backend is closing');
  t.deepEqual(h.m.log.bugs, []);
});

test('Debian xenstore-write on the machine socket conflicts with the guest\'s transaction; the guest retries', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenbus-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'xenstored.sock');
  const h = await MachineHost.create({
    machine: { memoryBytes: 64 * MiB, clock: 'simulated', scrambleSeed: 5 }, images: [image], xenstoredSocket: sock,
  });
  t.teardown(() => h.close());
  const b = await h.create(config('g-deb', 'xbtx'));
  const dom = `/local/domain/${b.domid}`;
  const env = { ...process.env, XENSTORED_PATH: sock };
  t.is((await run('xenstore-write', [`${dom}/data/counter`, '7'], env)).code, 0);
  await drive(t, h, () => consoleText(h, b.domid).includes('xbtx: read 7 in tx (try 0)'), 'the first read');
  // The guest sleeps between its read and its write; simulated time stands still meanwhile.
  const w = await run('xenstore-write', [`${dom}/data/counter`, '70'], env);
  t.is(w.code, 0, w.stderr);
  await drive(t, h, () => consoleText(h, b.domid).includes('xbtx: commit 0'), 'the commit');
  t.regex(consoleText(h, b.domid), /xbtx: commit 35\n(.|\n)*xbtx: read 70 in tx \(try 1\)/);
  const r = await run('xenstore-read', [`${dom}/data/counter`], env);
  t.is(r.stdout.trim(), '71');
});
