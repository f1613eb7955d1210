import test, { type ExecutionContext } from 'ava';
import { xencons_interface, MASK_XENCONS_IDX, XENCONS_IN_SIZE } from '../../hypervisor/public/io/console.js';
import { ControlError, type StreamChannel, type VerbHandler } from '../../hypervisor/tools/machine/control.js';
import { makeVerbs, configFromWire } from '../../hypervisor/tools/machine/verbs.js';
import { DaemonArgError, parseDaemonArgs, parseSize } from '../../hypervisor/tools/machine/args.js';
import type { MachineHost } from '../../hypervisor/tools/machine/host.js';
import type { DomainRow } from '../../hypervisor/tools/machine/host.js';
import { probeKernel, R_ENTRIES } from './builder-kernel.js';
import { config, drive, host, report } from './builder-fixture.js';

interface FakeStream extends StreamChannel {
  out: string;
  send(chunk: string): void;
  hangUp(): void;
}

function fakeStream(): FakeStream {
  let input: (c: string) => void = () => undefined;
  const closers: (() => void)[] = [];
  const s: FakeStream = {
    out: '',
    data: (c) => { s.out += c; },
    onInput: (fn) => { input = fn; },
    onClose: (fn) => { closers.push(fn); },
    send: (c) => input(c),
    hangUp: () => closers.forEach((f) => f()),
  };
  return s;
}

async function setup(t: ExecutionContext, ctrlIfTimeoutNs?: number): Promise<{ h: MachineHost; call: (verb: string, args?: Record<string, unknown>, s?: StreamChannel) => Promise<unknown>; stops: number[] }> {
  const h = await host(t, ctrlIfTimeoutNs === undefined ? {} : { ctrlIfTimeoutNs });
  const stops: number[] = [];
  const verbs: Map<string, VerbHandler> = makeVerbs({ host: h, dir: '/machine', requestStop: () => stops.push(1), flushLog: () => undefined }, [probeKernel]);
  const call = (verb: string, args: Record<string, unknown> = {}, s: StreamChannel = fakeStream()): Promise<unknown> => verbs.get(verb)!(args, s);
  return { h, call, stops };
}

const rowOf = (rows: unknown, name: string): DomainRow | undefined => (rows as DomainRow[]).find((r) => r.name === name);

test('status and info describe the machine', async (t) => {
  const { call } = await setup(t);
  const s = (await call('status')) as Record<string, unknown>;
  t.is(s['pid'], process.pid);
  t.is(s['total_memory_mib'], 64);
  t.is(s['clock'], 'simulated');
  t.is(s['tsc_khz'], 2_000_000);
  t.is(s['domains'], 0);
  t.is(s['images'], 'probe');
  const i = (await call('info')) as Record<string, unknown>;
  t.is(i['xen_version'], '4.17.0-xenport');
  t.is(i['xen_major'], 4);
  t.is(i['xen_minor'], 17);
  t.is(i['total_memory'], 64);
  t.is(i['nr_cpus'], 1);
  t.is(i['xen_caps'], 'xen-3.0-x86_64');
});

test('list: Domain-0 first, then each domain with xl\'s state letters', async (t) => {
  const { h, call } = await setup(t);
  await call('create', { config: config('paused', { memory: 8, extra: 'nostore' }), paused: true });
  const b = (await call('create', { config: config('idle', { memory: 8, extra: 'nostore' }) })) as { domid: number };
  await call('create', { config: config('kept', { memory: 8, extra: 'poweroff', onPoweroff: 'preserve' }) });
  await call('create', { config: config('wreck', { memory: 8, extra: 'crash', onCrash: 'preserve' }) });
  await drive(t, h, () => report(h, h.record(b.domid)!.built, R_ENTRIES) >= 1 && h.domainRecords.filter((r) => r.preserved).length === 2, 'boots and shutdowns');
  const rows = await call('list');
  t.deepEqual((rows as DomainRow[])[0], { name: 'Domain-0', domid: 0, memMiB: 0, vcpus: 1, state: 'r-----', cpuTimeSec: 0 });
  t.is(rowOf(rows, 'paused')?.state, '--p---');
  t.is(rowOf(rows, 'idle')?.state, '-b----');
  t.is(rowOf(rows, 'kept')?.state, '---s--');
  t.is(rowOf(rows, 'wreck')?.state, '---sc-');
  t.is(rowOf(rows, 'idle')?.memMiB, 8);
  t.is(rowOf(rows, 'idle')?.vcpus, 1);
  t.true((rowOf(rows, 'idle')?.cpuTimeSec ?? 0) > 0);
});

test('create checks the config it is sent', async (t) => {
  const { call } = await setup(t);
  await t.throwsAsync(call('create', {}), { instanceOf: ControlError, message: 'create: no config given' });
  await t.throwsAsync(call('create', { config: { name: 'x' } }), { instanceOf: ControlError, message: /^create: malformed config \(kernel, extra, onPoweroff, onReboot, onCrash, memory, vcpus, disks, vifs\)$/ });
  await t.throwsAsync(call('create', { config: config('x', { memory: 2 }) }), { instanceOf: ControlError, message: /memory = 2: expected MiB between 4 and 65536/ });
  await t.throwsAsync(call('create', { config: config('x', { kernel: 'nope' }) }), { instanceOf: ControlError, message: 'unknown kernel "nope" (this machine can boot: probe)' });
  t.deepEqual(configFromWire(config('ok')), config('ok'));
});

test('domains are named by name or id; unknown ones and Domain-0 get one clear line', async (t) => {
  const { call } = await setup(t);
  const b = (await call('create', { config: config('named', { extra: 'nostore' }), paused: true })) as { domid: number };
  await call('unpause', { dom: String(b.domid) });
  await call('pause', { dom: 'named' });
  await t.throwsAsync(call('pause', { dom: 'ghost' }), { instanceOf: ControlError, message: 'domain "ghost" does not exist' });
  await t.throwsAsync(call('destroy', { dom: '999' }), { instanceOf: ControlError, message: 'domain 999 does not exist' });
  await t.throwsAsync(call('console', { dom: 'ghost' }), { instanceOf: ControlError, message: 'domain "ghost" does not exist' });
  await t.throwsAsync(call('destroy', { dom: 'Domain-0' }), { instanceOf: ControlError, message: 'Domain-0 cannot be destroyed' });
  await t.throwsAsync(call('pause', {}), { instanceOf: ControlError, message: 'missing argument dom' });
  await call('destroy', { dom: 'named' });
  await t.throwsAsync(call('unpause', { dom: 'named' }), { instanceOf: ControlError, message: 'domain "named" does not exist' });
});

test('console: backlog first, input lands in the guest\'s ring, Ctrl-] detaches', async (t) => {
  const { h, call } = await setup(t);
  const b = (await call('create', { config: config('chatty', { extra: 'nostore' }) })) as { domid: number };
  await drive(t, h, () => h.consoled.tail(b.domid as never).length > 0, 'console output');
  const s = fakeStream();
  let finished = false;
  const done = call('console', { dom: 'chatty' }, s).then(() => { finished = true; });
  await Promise.resolve();
  t.regex(s.out, /probe: booted/);
  s.send('ls -l\r');
  const page = xencons_interface.view(h.m.memory.frameMem(h.record(b.domid)!.built.consoleMfn), 0);
  const prod = page.get('in_prod');
  let typed = '';
  for (let i = page.get('in_cons'); i !== prod; i = (i + 1) >>> 0) typed += String.fromCharCode(page.getAt('in', MASK_XENCONS_IDX(i, XENCONS_IN_SIZE)));
  t.is(typed, 'ls -l\r', 'keystrokes are in the console page\'s in ring');
  t.false(finished);
  s.send('q\x1dignored');
  await done;
  t.true(finished, 'Ctrl-] ends the verb');
});

test('console: ends when the domain goes away or the client hangs up', async (t) => {
  const { call } = await setup(t);
  await call('create', { config: config('short', { extra: 'nostore' }) });
  const a = fakeStream();
  const viewing = call('console', { dom: 'short' }, a);
  const b = fakeStream();
  const other = call('console', { dom: 'short' }, b);
  b.hangUp();
  await other;
  await call('destroy', { dom: 'short' });
  t.is(await viewing, null);
});

test('shutdown through ctrl_if: the guest answers CMSG_SHUTDOWN and powers off', async (t) => {
  const { h, call } = await setup(t);
  const b = (await call('create', { config: config('oldschool', { extra: 'nostore' }) })) as { domid: number };
  await drive(t, h, () => report(h, h.record(b.domid)!.built, R_ENTRIES) >= 1, 'boot');
  let finished = false;
  const done = call('shutdown', { dom: 'oldschool', via: 'ctrl_if', wait: true }).then(() => { finished = true; });
  await drive(t, h, () => finished, 'xl shutdown --ctrl-if -w');
  await done;
  t.is(h.m.domain(b.domid), undefined);
  t.regex(h.m.log.console(b.domid), /probe: ctrl_if poweroff/);
});

test('shutdown through ctrl_if to a guest that never answers times out with a clear line', async (t) => {
  const { h, call } = await setup(t, 1_000_000);
  await call('create', { config: config('asleep', { extra: 'nostore' }), paused: true });
  let error: unknown;
  const done = call('shutdown', { dom: 'asleep', via: 'ctrl_if' }).catch((e: unknown) => { error = e; });
  await drive(t, h, () => error !== undefined, 'the timeout');
  await done;
  t.true(error instanceof ControlError);
  t.regex((error as Error).message, /^ctrl_if shutdown of asleep \(\d+\) failed: timeout: no answer within 1000000 ns/);
});

test('stop asks the daemon to stop', async (t) => {
  const { call, stops } = await setup(t);
  t.deepEqual(await call('stop'), { stopping: true });
  t.deepEqual(stops, [1]);
});

test('machine options: sizes with units, ranges, and clear refusals', (t) => {
  t.is(parseSize('512M'), 512 * 2 ** 20);
  t.is(parseSize('2G'), 2 * 2 ** 30);
  t.is(parseSize('1GiB'), 2 ** 30);
  t.is(parseSize('65536k'), 64 * 2 ** 20);
  t.is(parseSize('300'), 300 * 2 ** 20, 'a bare number is MiB, as in xl');
  t.is(parseSize('lots'), undefined);
  t.deepEqual(parseDaemonArgs([]), { memoryBytes: 512 * 2 ** 20, tscKhz: 2_000_000, clock: 'realtime', scrambleSeed: 1 });
  t.deepEqual(parseDaemonArgs(['--memory', '1G', '--tsc-khz=2500000', '--clock', 'simulated', '--scramble', '9']), {
    memoryBytes: 2 ** 30, tscKhz: 2_500_000, clock: 'simulated', scrambleSeed: 9,
  });
  const refuse = (args: string[], msg: RegExp): void => {
    const e = t.throws(() => parseDaemonArgs(args), { instanceOf: DaemonArgError });
    t.regex(e.message, msg);
  };
  refuse(['--memory', '8M'], /must be between 16M and 64G/);
  refuse(['--memory', '100000000'], /must be between/);
  refuse(['--clock', 'fast'], /expected realtime or simulated/);
  refuse(['--tsc-khz', '-1'], /expected kHz/);
  refuse(['--scramble'], /needs a value/);
  refuse(['--turbo', '1'], /unknown machine option --turbo/);
});
