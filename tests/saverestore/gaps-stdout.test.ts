/*
 * `xl save DOM -`: the image goes to xl's standard output (the status line
 * to stderr). Captured into a file, it passes verify-stream-v2 -f xl, and
 * `xl restore FILE` in a new machine process brings the guest back with
 * its workload counters carrying on.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { COUNTERS, XEN_PYTHONPATH, XL, createGuest, growing, startMachine, tempDir, until, verifyStream } from './fixture.js';

test('xl save DOM - writes the image to stdout: verify-stream-v2 accepts it and xl restore in a new machine brings the guest back', async (t) => {
  t.true(existsSync(join(XEN_PYTHONPATH, 'xen', 'migration', 'libxc.py')), `Xen's python modules under ${XEN_PYTHONPATH}`);
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'), ['--scramble', '7']);
  const { domid, first } = await createGuest(t, a, dir, 'piped');
  const grown = await growing(a, domid, first);
  const img = join(dir, 'piped.img');
  const fd = openSync(img, 'w');
  let err = '';
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [XL, '--dir', join(dir, 'a'), 'save', 'piped', '-'], { stdio: ['ignore', fd, 'pipe'] });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (err += d));
    child.once('exit', (c) => resolve(c));
  });
  closeSync(fd);
  t.is(code, 0, err);
  t.regex(err, /^saved domain piped \(\d+ bytes, suspended via \w+\): destroyed\n$/);
  const bytes = Number(/\((\d+) bytes/.exec(err)?.[1]);
  t.is(statSync(img).size, bytes, 'stdout carried exactly the image');
  t.deepEqual(readdirSync(join(dir, 'a')).filter((n) => n.startsWith('stdout-save-')), [], 'no temporary image left in the machine directory');
  const v = await verifyStream(img);
  t.is(v.code, 0, v.out + v.err);
  t.false((await a.ok(t, ['list'])).includes('piped'), 'the saved domain is gone');
  await a.ok(t, ['machine', 'stop']);

  const b = await startMachine(t, join(dir, 'b'), ['--scramble', '19']);
  const nd = Number((await b.ok(t, ['restore', img])).trim());
  t.true(nd > 0);
  const after = await until('the counters after the restore', 60_000, async () => {
    const c = await b.counters(nd, COUNTERS);
    return c !== undefined && c['clock/ticks']! >= grown['clock/ticks']! && c['mem/passes']! >= grown['mem/passes']! ? c : undefined;
  });
  const later = await growing(b, nd, after);
  t.is(later['mem/errors'], 0);
  t.is(later['clock/backwards'], 0);
  t.log(`d${domid} before ${JSON.stringify(grown)}; d${nd} after ${JSON.stringify(later)}`);
});
