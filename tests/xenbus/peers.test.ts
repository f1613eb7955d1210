/*
 * The netbsd guest and Xen's own clients, through a real machine daemon
 * started with the shipped xl (bin/xl-main.js, which registers netbsd):
 *  - Debian's xenstore-watch, on the daemon's xenstored.sock, receives the
 *    event the GUEST causes when its xenbus publishes data/boot;
 *  - `xl shutdown -w` asks the guest through control/shutdown; the guest's
 *    watcher acks and powers off, and the domain is gone from `xl list`.
 * A missing peer binary fails the test.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const XL = fileURLToPath(new URL('../../bin/xl-main.js', import.meta.url));

function xl(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [XL, ...args], { encoding: 'utf8' }, (error, out, err) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, out, err });
    });
  });
}

test('xenstore-watch sees the guest publish data/boot; xl shutdown -w powers the guest off', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenport-peers-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const start = await xl(['--dir', dir, 'machine', 'start', '--memory', '128M']);
  t.is(start.code, 0, start.err);
  t.teardown(async () => {
    await xl(['--dir', dir, 'machine', 'stop']);
  });

  // Watch the guest's data/ directory before the guest exists (Xen allows
  // watching a path that is not there yet).
  const watcher = spawn('xenstore-watch', ['/local/domain/1/data'], {
    env: { ...process.env, XENSTORED_PATH: join(dir, 'xenstored.sock') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => watcher.kill());
  let seen = '';
  const published = new Promise<void>((resolve, reject) => {
    watcher.once('error', (e) => reject(new Error(`xenstore-watch (Debian xenstore-utils) could not run: ${e.message}`)));
    watcher.stdout.setEncoding('utf8');
    watcher.stdout.on('data', (d: string) => {
      seen += d;
      if (seen.includes('/local/domain/1/data/boot')) resolve();
    });
    watcher.once('exit', (code) => reject(new Error(`xenstore-watch exited (${code}) before the guest published; it printed:\n${seen}`)));
  });

  const cfg = join(dir, 'g.cfg');
  writeFileSync(cfg, 'name = "g"\nkernel = "netbsd"\nmemory = 32\n');
  const created = await xl(['--dir', dir, 'create', cfg]);
  t.is(created.code, 0, created.err);
  t.is(created.out.trim(), '1');

  await published;
  t.true(seen.includes('/local/domain/1/data/boot'), `xenstore-watch output:\n${seen}`);

  const shut = await xl(['--dir', dir, 'shutdown', '-w', 'g']);
  t.is(shut.code, 0, `xl shutdown: ${shut.err}`);
  const list = await xl(['--dir', dir, 'list']);
  t.is(list.code, 0, list.err);
  t.false(/^g\s/m.test(list.out), `the guest is gone from xl list:\n${list.out}`);
  t.regex(list.out, /^Domain-0\s/m);
});
