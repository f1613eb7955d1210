/*
 * The other ways through `xl save`: -c (the same domain runs on), each way
 * of asking the guest (--suspend=xenstore, --suspend=ctrl_if), and a
 * machine killed in the middle of a save, which must leave no file
 * `xl restore` accepts.
 */
import test from 'ava';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assertValidImage } from '../helpers/verify-image.js';
import { COUNTERS, createGuest, growing, spawnXl, startMachine, tempDir, until, verifyStream } from './fixture.js';

test('xl save -c: the image is written and the same domain carries on, its counters too', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  const { domid, first } = await createGuest(t, a, dir, 'ckpt');
  const img = join(dir, 'ckpt.img');
  const out = await a.ok(t, ['save', '-c', 'ckpt', img]);
  t.regex(out, /: resumed\n$/);
  const v = await verifyStream(img);
  t.is(v.code, 0, v.out + v.err);
  const list = await a.ok(t, ['list']);
  t.regex(list, new RegExp(`^ckpt\\s+${domid}\\s`, 'm'), 'the same domid');
  const later = await growing(a, domid, first);
  t.is(later['mem/errors'], 0);
  t.is(later['clock/backwards'], 0);
  // And it can be saved again (its next suspend is a new one).
  const again = await a.ok(t, ['save', 'ckpt', join(dir, 'ckpt2.img')]);
  t.regex(again, /: destroyed\n$/);
  await assertValidImage(readFileSync(join(dir, 'ckpt2.img')), 'the second save');
});

for (const via of ['xenstore', 'ctrl_if'] as const) {
  test(`xl save --suspend=${via} then xl restore: the guest carries on`, async (t) => {
    const dir = tempDir(t);
    const a = await startMachine(t, join(dir, 'a'));
    const name = `via-${via.replace('_', '')}`;
    const { domid, first } = await createGuest(t, a, dir, name);
    const img = join(dir, `${name}.img`);
    const out = await a.ok(t, ['save', `--suspend=${via}`, name, img]);
    t.regex(out, new RegExp(`suspended via ${via}\\): destroyed\\n$`));
    await assertValidImage(readFileSync(img), `the image saved via ${via}`);
    const nd = Number((await a.ok(t, ['restore', img])).trim());
    t.true(nd > domid);
    const after = await until('counters after the restore', 60_000, async () => {
      const c = await a.counters(nd, COUNTERS);
      return c !== undefined && c['clock/ticks']! >= first['clock/ticks']! ? c : undefined;
    });
    const later = await growing(a, nd, after);
    t.is(later['mem/errors'], 0);
    t.is(later['clock/backwards'], 0);
  });
}

test('a machine SIGKILLed in the middle of xl save leaves no file xl restore accepts', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  await createGuest(t, a, dir, 'killed', 128);
  const img = join(dir, 'killed.img');
  const pid = Number(readFileSync(join(dir, 'a', 'machine.pid'), 'utf8'));
  const child = spawnXl(['--dir', join(dir, 'a'), 'save', 'killed', img]);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const partial = await until('a partial image', 60_000, () => {
    const f = readdirSync(dir).find((n) => n.startsWith('.killed.img.partial-'));
    return Promise.resolve(f !== undefined && statSync(join(dir, f)).size > 0 ? f : undefined);
  }).catch(() => undefined);
  process.kill(pid, 'SIGKILL');
  t.not(partial, undefined, 'the save was caught while writing');
  t.not(await exited, 0, 'xl save fails when its machine dies');
  t.false(existsSync(img), 'no file under the name asked for');
  const b = await startMachine(t, join(dir, 'b'));
  for (const f of readdirSync(dir).filter((n) => n.includes('killed.img'))) {
    const r = await b.xl(['restore', join(dir, f)]);
    t.is(r.code, 1, `xl restore refuses ${f}`);
    t.regex(r.err, /^xl: restore of [^\n]*\n$/, 'one line');
  }
  t.is((await b.ok(t, ['list'])).trim().split('\n').length, 2, 'nothing left behind: Domain-0 only');
});
