import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { consoleUntil, runMachine, startMachine, tempDir, writeConfig, xl, XL_PROGRAM } from './xl-fixture.js';

const GUEST = (name: string, extra = ''): string => `name = "${name}"\nkernel = "probe"\nmemory = 16\n${extra === '' ? '' : `extra = "${extra}"\n`}`;

/** The row of `xl list` for a domain name: [name, id, mem, vcpus, state, time]. */
function row(list: string, name: string): string[] | undefined {
  return list.split('\n').map((l) => l.trim().split(/\s+/)).find((cols) => cols[0] === name);
}

test('a machine\'s life: start, status, create, list, console, dmesg, pause, unpause, destroy, stop', async (t) => {
  const { dir, pid } = await startMachine(t, ['--memory', '256M', '--tsc-khz', '3000000']);
  const status = await xl(['--dir', dir, 'machine', 'status']);
  t.is(status.code, 0, status.err);
  t.regex(status.out, new RegExp(`pid\\s+: ${pid}`));
  t.regex(status.out, /total_memory_mib: 256/);
  t.regex(status.out, /tsc_khz\s+: 3000000/);
  t.regex(status.out, /clock\s+: realtime/);
  t.regex(status.out, /domains\s+: 0/);

  const created = await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('guest1'))]);
  t.is(created.code, 0, created.err);
  const domid = created.out.trim();
  t.regex(domid, /^\d+$/);

  const list = await xl(['--dir', dir, 'list']);
  t.is(list.code, 0);
  t.regex(list.out, /^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)$/m);
  t.deepEqual(row(list.out, 'Domain-0')?.slice(1, 2), ['0']);
  const g = row(list.out, 'guest1');
  t.deepEqual(g?.slice(1, 4), [domid, '16', '1']);

  const seen = await consoleUntil(dir, 'guest1', /probe: booted/);
  t.regex(seen, /probe: booted \(ctrl_if=12,\d+\)/);
  t.regex(readFileSync(join(dir, 'console', `${domid}.log`), 'utf8'), /probe: booted/);
  const dmesg = await xl(['--dir', dir, 'dmesg']);
  t.regex(dmesg.out, new RegExp(`\\(d${domid}\\) probe: booted`));
  t.regex(dmesg.out, /\(XEN\) machine up/);

  t.is((await xl(['--dir', dir, 'pause', 'guest1'])).code, 0);
  t.regex(row((await xl(['--dir', dir, 'list'])).out, 'guest1')?.[4] ?? '', /^..p...$/);
  t.is((await xl(['--dir', dir, 'unpause', domid])).code, 0);
  t.regex(row((await xl(['--dir', dir, 'list'])).out, 'guest1')?.[4] ?? '', /^..-...$/);

  const info = await xl(['--dir', dir, 'info']);
  t.regex(info.out, /xen_version\s+: 4\.17/);
  t.regex(info.out, /total_memory\s+: 256/);

  t.is((await xl(['--dir', dir, 'destroy', 'guest1'])).code, 0);
  t.is(row((await xl(['--dir', dir, 'list'])).out, 'guest1'), undefined);
  t.regex(readFileSync(join(dir, 'machine.log'), 'utf8'), /d\d+ destroyed/);

  const stop = await xl(['--dir', dir, 'machine', 'stop']);
  t.is(stop.code, 0, stop.err);
  t.false(existsSync(join(dir, 'control.sock')), 'control.sock removed');
  t.false(existsSync(join(dir, 'xenstored.sock')), 'xenstored.sock removed');
  const after = await xl(['--dir', dir, 'list']);
  t.is(after.code, 1);
});

test('xl shutdown -w: the guest hears control/shutdown and is gone when xl returns', async (t) => {
  const { dir } = await startMachine(t, ['--clock', 'simulated']);
  const c = await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('polite'))]);
  t.is(c.code, 0, c.err);
  // The guest says so once it has advertised feature-poweroff and set its watch.
  await consoleUntil(dir, 'polite', /watching control\/shutdown/);
  const r = await xl(['--dir', dir, 'shutdown', '-w', 'polite']);
  t.is(r.code, 0, r.err);
  t.is(row((await xl(['--dir', dir, 'list'])).out, 'polite'), undefined);
});

test('xl shutdown of a guest without a shutdown watcher fails with one clear line', async (t) => {
  const { dir } = await startMachine(t);
  t.is((await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('deaf', 'nostore'))])).code, 0);
  const r = await xl(['--dir', dir, 'shutdown', 'deaf']);
  t.is(r.code, 1);
  t.regex(r.err, /^xl: domain deaf \(\d+\) has not advertised control\/feature-poweroff: .*\n$/);
});

test('two machines side by side in different directories do not see each other', async (t) => {
  const a = await startMachine(t, ['--memory', '128M']);
  const b = await startMachine(t, ['--memory', '128M', '--scramble', '42']);
  t.not(a.pid, b.pid);
  t.is((await xl(['--dir', a.dir, 'create', writeConfig(a.dir, 'g', GUEST('alpha', 'nostore'))])).code, 0);
  t.is((await xl(['--dir', b.dir, 'create', writeConfig(b.dir, 'g', GUEST('beta', 'nostore'))])).code, 0);
  const la = (await xl(['--dir', a.dir, 'list'])).out;
  const lb = (await xl(['--dir', b.dir, 'list'])).out;
  t.truthy(row(la, 'alpha'));
  t.is(row(la, 'beta'), undefined);
  t.truthy(row(lb, 'beta'));
  t.is(row(lb, 'alpha'), undefined);
  // XL_MACHINE picks the machine when --dir is not given.
  const viaEnv = await xl(['list'], { ...process.env, XL_MACHINE: b.dir });
  t.truthy(row(viaEnv.out, 'beta'));
  t.is((await xl(['--dir', a.dir, 'machine', 'stop'])).code, 0);
  t.truthy(row((await xl(['--dir', b.dir, 'list'])).out, 'beta'), 'the other machine carries on');
});

test('errors are one clear line and a non-zero exit: no machine, unknown domain, bad config, unknown kernel, too much memory', async (t) => {
  const nowhere = tempDir(t);
  const none = await xl(['--dir', nowhere, 'list']);
  t.is(none.code, 1);
  t.is(none.err, `xl: no machine running at ${nowhere} (ENOENT); start one with: xl machine start --dir ${nowhere}\n`);

  const { dir } = await startMachine(t, ['--memory', '64M']);
  const oneLine = (r: { code: number; err: string }, re: RegExp): void => {
    t.is(r.code, 1, r.err);
    t.regex(r.err, re);
    t.is(r.err.split('\n').length, 2, `one line: ${JSON.stringify(r.err)}`);
  };
  oneLine(await xl(['--dir', dir, 'pause', 'nope']), /^xl: domain "nope" does not exist\n$/);
  oneLine(await xl(['--dir', dir, 'destroy', '77']), /^xl: domain 77 does not exist\n$/);
  oneLine(await xl(['--dir', dir, 'create', writeConfig(dir, 'bad', 'name = "x"\nkernel = probe\n')]), /^xl: .*bad\.cfg:2: expected a value/);
  oneLine(await xl(['--dir', dir, 'create', writeConfig(dir, 'nok', 'name = "x"\nkernel = "netbsd"\n')]), /^xl: unknown kernel "netbsd" \(this machine can boot: probe\)\n$/);
  oneLine(await xl(['--dir', dir, 'create', writeConfig(dir, 'fat', 'name = "x"\nkernel = "probe"\nmemory = 128\n')]), /^xl: memory = 128 MiB does not fit: the machine has \d+ MiB free of 64 MiB\n$/);
  oneLine(await xl(['--dir', dir, 'create', join(dir, 'missing.cfg')]), /^xl: cannot read .*missing\.cfg: ENOENT\n$/);
  const list = await xl(['--dir', dir, 'list']);
  t.is(list.out.trim().split('\n').length, 2, 'nothing was left half-created');
  oneLine(await xl(['--dir', dir, 'machine', 'start', '--dir', dir]), /^xl: a machine is already running at /);
  oneLine(await xl(['machine', 'start', '--dir', tempDir(t), '--memory', 'lots']), /^xl: --memory lots: expected a size such as 512M or 2G\n$/);
});

test('xenstore-ls (Debian xenstore-utils) reads the daemon\'s xenstored.sock and sees /local/domain/N', async (t) => {
  const { dir } = await startMachine(t);
  const c = await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('listed', 'nostore'))]);
  const domid = c.out.trim();
  const out = await new Promise<string>((resolve, reject) => {
    execFile('xenstore-ls', [`/local/domain/${domid}`], { env: { ...process.env, XENSTORED_PATH: join(dir, 'xenstored.sock') } }, (e, stdout, stderr) => {
      if (e) reject(new Error(`xenstore-ls: ${stderr}`));
      else resolve(stdout);
    });
  });
  t.regex(out, /^name = "listed"$/m);
  t.regex(out, new RegExp(`^domid = "${domid}"$`, 'm'));
  t.regex(out, /^ type = "xenconsoled"$/m);
  t.regex(out, /^ ring-ref = "\d+"$/m);
});

test('xl machine stop makes the daemon exit 0; SIGTERM stops it cleanly too', async (t) => {
  const dir = tempDir(t);
  const m1 = await runMachine(dir, ['--clock', 'simulated']);
  t.is((await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('g', 'nostore'))])).code, 0);
  t.is((await xl(['--dir', dir, 'machine', 'stop'])).code, 0);
  t.is(await m1.exited, 0);
  t.false(existsSync(join(dir, 'control.sock')));
  t.false(existsSync(join(dir, 'machine.pid')));
  const m2 = await runMachine(dir);
  m2.child.kill('SIGTERM');
  t.is(await m2.exited, 0);
  t.false(existsSync(join(dir, 'xenstored.sock')));
  t.regex(readFileSync(join(dir, 'machine.log'), 'utf8'), /machine stopping/);
});

test('xl console shows the guest\'s output and Ctrl-] on its input detaches', async (t) => {
  const { dir } = await startMachine(t);
  t.is((await xl(['--dir', dir, 'create', writeConfig(dir, 'g', GUEST('talker', 'nostore'))])).code, 0);
  const child = spawn(process.execPath, [XL_PROGRAM, '--dir', dir, 'console', 'talker'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (/probe: booted/.test(out)) resolve();
    });
  });
  child.stdin.write('\x1d');
  t.is(await exited, 0);
  t.regex(out, /probe: booted/);
});
