import test from 'ava';
import { XsError } from '../../hypervisor/tools/xenstored/client.js';
import { BuildError } from '../../hypervisor/tools/builder/errors.js';
import { buildDomain } from '../../hypervisor/tools/builder/build.js';
import { defineKernel } from '../kernels/image.js';
import { R_ENTRIES, R_MAGIC_OK, R_NR_PAGES, R_MFN_LIST, R_P2M_FIRST, R_START_INFO_VA, R_RSP, R_STORE_VA, R_SHINFO_RC, R_SHUTDOWN_SEEN, PROBE_BASE } from './builder-kernel.js';
import { config, drive, host, report, runUntil } from './builder-fixture.js';

const UUID = '5f1e6b0c-3c2e-4a8e-9d61-0a1b2c3d4e5f';

test('xenstore: the domain\'s nodes, with libxl\'s permissions, and XS_INTRODUCE fires @introduceDomain', async (t) => {
  const h = await host(t);
  await h.xs.watch('@introduceDomain', 'intro');
  t.deepEqual(await h.xs.nextEvent(), { path: '@introduceDomain', token: 'intro' }, 'the watch fires once when set');
  const b = await h.create(config('web', { extra: 'nostore' }), true, UUID);
  const n = b.domid;
  const dom = `/local/domain/${n}`;
  t.deepEqual(await h.xs.nextEvent(), { path: '@introduceDomain', token: 'intro' });
  t.true(await h.xs.isDomainIntroduced(n));
  const read = (p: string): Promise<string> => h.xs.read(`${dom}/${p}`);
  t.is(await read('name'), 'web');
  t.is(await read('domid'), String(n));
  t.is(await read('vm'), `/vm/${UUID}`);
  t.is(await read('memory/target'), String(16 * 1024));
  t.is(await read('memory/static-max'), String(16 * 1024 + 1024));
  t.is(await read('cpu/0/availability'), 'online');
  t.is(await read('store/port'), String(b.storePort));
  t.is(await read('store/ring-ref'), String(b.storeMfn));
  t.is(await read('console/port'), String(b.consolePort));
  t.is(await read('console/ring-ref'), String(b.consoleMfn));
  t.is(await read('console/type'), 'xenconsoled');
  t.is(await read('console/output'), 'pty', 'no console dir: no log file');
  t.is(await read('device/suspend/event-channel'), '');
  t.is(await read('control/shutdown'), '');
  t.is(await read('control/platform-feature-multiprocessor-suspend'), '1');
  t.is(await read('control/platform-feature-xs_reset_watches'), '1');
  t.is(await h.xs.read(`/vm/${UUID}/name`), 'web');
  t.is(await h.xs.read(`/vm/${UUID}/uuid`), UUID);
  const perms = (p: string): Promise<string[]> => h.xs.getPerms(p);
  t.deepEqual(await perms(dom), ['n0', `r${n}`], 'the domain directory is dom0\'s, readable by the guest');
  for (const own of ['control/shutdown', 'control/feature-poweroff', 'device/suspend/event-channel', 'data', 'console']) {
    t.deepEqual(await perms(`${dom}/${own}`), [`n${n}`], `${own} is the guest's`);
  }
  for (const ro of ['name', 'store/ring-ref', 'console/ring-ref', 'memory/target', 'device']) {
    t.deepEqual(await perms(`${dom}/${ro}`), ['n0', `r${n}`], `${ro} is read-only to the guest`);
  }
});

test('the probe kernel boots from start_info alone and talks to xenstored over its ring', async (t) => {
  const h = await host(t);
  const b = await h.create(config('probe1'));
  runUntil(t, h, () => report(h, b, R_ENTRIES) >= 1, 'the first entry');
  t.is(report(h, b, R_MAGIC_OK), 1, 'start_info magic');
  t.is(report(h, b, R_START_INFO_VA), PROBE_BASE + b.layout.startInfoPfn * 4096);
  t.is(report(h, b, R_RSP), PROBE_BASE + (b.layout.stackPfn + 1) * 4096);
  t.is(report(h, b, R_NR_PAGES), 4096);
  t.is(report(h, b, R_MFN_LIST), PROBE_BASE + b.layout.p2mPfn * 4096);
  t.is(report(h, b, R_P2M_FIRST), b.p2m[0]!, 'reads the P2M through the direct map');
  t.is(report(h, b, R_STORE_VA), PROBE_BASE + b.layout.storePfn * 4096);
  t.is(report(h, b, R_SHINFO_RC), 0, 'maps shared_info with update_va_mapping');
  t.regex(h.m.log.console(b.domid), /probe: booted \(ctrl_if=12,\d+\)/);
  runUntil(t, h, () => report(h, b, R_ENTRIES) >= 3, 'xenstored answers');
  t.is(await h.xs.read(`/local/domain/${b.domid}/control/feature-poweroff`), '1', 'the guest wrote through its ring');
  t.deepEqual(h.m.log.bugs, []);
});

test('xl shutdown through xenstore: the guest sees control/shutdown, powers off, on_poweroff destroys it', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const b = await h.create(config('sd'));
  runUntil(t, h, () => report(h, b, R_ENTRIES) >= 3, 'the guest advertised feature-poweroff');
  let finished = false;
  const done = h.shutdown(b.domid, 'xenstore', true).then(() => { finished = true; });
  await drive(t, h, () => h.m.domain(b.domid)?.shuttingDown === true, 'the guest powering off');
  t.is(report(h, b, R_SHUTDOWN_SEEN), 1);
  await drive(t, h, () => finished, 'xl shutdown -w returning');
  await done;
  t.is(h.m.domain(b.domid), undefined, 'destroyed');
  t.is(h.record(b.domid), undefined);
  t.is(h.m.frames.freeFrames, free, 'every frame back');
  await t.throwsAsync(h.xs.read(`/local/domain/${b.domid}/name`), { instanceOf: XsError });
  t.false(await h.xs.isDomainIntroduced(b.domid));
});

test('xl shutdown of a guest that never advertised feature-poweroff says so instead of hanging', async (t) => {
  const h = await host(t);
  const b = await h.create(config('deaf', { extra: 'nostore' }));
  runUntil(t, h, () => report(h, b, R_ENTRIES) >= 1, 'boot');
  await t.throwsAsync(h.shutdown(b.domid, 'xenstore', true), { message: /has not advertised control\/feature-poweroff/ });
});

test('on_poweroff = preserve keeps the shut-down domain; on_reboot = restart builds it again with a new id', async (t) => {
  const h = await host(t);
  const kept = await h.create(config('kept', { extra: 'poweroff', onPoweroff: 'preserve' }));
  runUntil(t, h, () => h.m.domain(kept.domid)?.shuttingDown === true, 'poweroff');
  await h.settle();
  t.truthy(h.m.domain(kept.domid), 'still there');
  t.is(h.list().find((r) => r.name === 'kept')?.state, '---s--');
  const rb = await h.create(config('again', { extra: 'nostore' }), false, UUID);
  runUntil(t, h, () => report(h, rb, R_ENTRIES) >= 1, 'boot');
  await h.xs.write(`/local/domain/${rb.domid}/control/shutdown`, 'reboot'); // nobody listens: reboot by hand
  h.m.shutdownDomain(h.m.domain(rb.domid)!, 1);
  await drive(t, h, () => h.domainRecords.some((r) => r.name === 'again' && r.built.domid !== rb.domid), 'the restart');
  await h.settle();
  const again = h.domainRecords.find((r) => r.name === 'again')!;
  t.not(again.built.domid, rb.domid);
  t.is(again.built.uuid, UUID, 'same VM, same uuid');
  t.is(h.m.domain(rb.domid), undefined);
});

test('a crash is logged and on_crash = destroy takes the domain away', async (t) => {
  const h = await host(t);
  const b = await h.create(config('crashy', { extra: 'crash' }));
  runUntil(t, h, () => h.m.domain(b.domid)?.shuttingDown === true, 'the crash');
  await h.settle();
  t.is(h.m.domain(b.domid), undefined);
  t.regex(h.m.log.ring(), /crash requested on the command line/);
  t.regex(h.m.log.ring(), new RegExp(`d${b.domid} \\(crashy\\) crash: destroy`));
});

test('errors: unknown kernel lists the known ones; nothing is left behind', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const e = await t.throwsAsync(h.create(config('x', { kernel: 'netbsd' })), { instanceOf: BuildError });
  t.is(e.step, 'kernel');
  t.is(e.message, 'unknown kernel "netbsd" (this machine can boot: probe)');
  t.is(h.m.frames.freeFrames, free);
  t.is(h.m.domains.length, 1);
});

test('errors: memory larger than what is free says how much is free', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const e = await t.throwsAsync(h.create(config('big', { memory: 100 })), { instanceOf: BuildError });
  t.is(e.step, 'memory');
  t.regex(e.message, /^memory = 100 MiB does not fit: the machine has \d+ MiB free of 64 MiB$/);
  t.is(h.m.frames.freeFrames, free);
});

test('errors: a kernel too big for its memory is refused before anything is made', async (t) => {
  const h = await host(t);
  const fat = defineKernel({ name: 'fat', virtBase: PROBE_BASE, imageSize: 20 * 2 ** 20, textBase: 0x8000_7100_0000, symbols: { start() {} } });
  h.m.registerImage(fat);
  const free = h.m.frames.freeFrames;
  const e = await t.throwsAsync(h.create(config('fat', { kernel: 'fat' })), { instanceOf: BuildError });
  t.is(e.step, 'layout');
  t.is(h.m.frames.freeFrames, free);
});

test('errors: a failure late in the build (console) undoes everything: frames, ports, nodes, introduction', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const broken = { ...h.services, attachConsole: () => ({ ok: false as const, error: 'xenconsoled is on strike' }) };
  const e = await t.throwsAsync(buildDomain(h.m, broken, config('late')), { instanceOf: BuildError });
  t.is(e.step, 'console');
  t.is(e.message, 'xenconsoled is on strike');
  t.is(h.m.frames.freeFrames, free, 'every frame back');
  t.is(h.m.domains.length, 1, 'only dom0');
  t.deepEqual(await h.xs.directory('/local/domain').catch(() => []), [], 'no domain directory left');
  t.deepEqual(await h.xs.directory('/vm').catch(() => []), []);
  t.deepEqual(h.m.evtchn.channels(0).filter((c) => c.dom !== undefined && c.dom !== 0), [], 'dom0 holds no port to the dead domain');
});

test('errors: a failure in the middle (ctrl_if after the console) detaches the console too', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const broken = { ...h.services, attachCtrlIf: () => ({ ok: false as const, error: 'no controller' }) };
  await t.throwsAsync(buildDomain(h.m, broken, config('mid')), { instanceOf: BuildError, message: 'no controller' });
  t.is(h.m.frames.freeFrames, free);
  t.deepEqual(h.consoled.domains(), []);
});

test('errors: xenstore refusing the nodes rolls the build back', async (t) => {
  const h = await host(t);
  const free = h.m.frames.freeFrames;
  const xs = Object.create(h.xs) as typeof h.xs;
  xs.transactionStart = () => Promise.reject(new XsError('ENOSPC', 'TRANSACTION_START'));
  const e = await t.throwsAsync(buildDomain(h.m, { ...h.services, xs }, config('nospace')), { instanceOf: BuildError });
  t.is(e.step, 'xenstore');
  t.regex(e.message, /ENOSPC/);
  t.is(h.m.frames.freeFrames, free);
  t.is(h.m.domains.length, 1);
});

test('two domains cannot share a name', async (t) => {
  const h = await host(t);
  await h.create(config('twin', { extra: 'nostore' }), true);
  await t.throwsAsync(h.create(config('twin')), { message: 'a domain named "twin" already exists' });
});
