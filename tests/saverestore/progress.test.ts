/*
 * `xl save` on a terminal shows a progress line (rewritten with `\r`) as
 * the machine streams how many pages it wrote; into a pipe, no progress at
 * all: the output is the one result line, as before.
 */
import test from 'ava';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { assertValidImage } from '../helpers/verify-image.js';
import { XL, createGuest, run, startMachine, tempDir, verifyStream } from './fixture.js';

const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

test('xl save on a TTY prints a \\r progress line up to every page; into a pipe, none', async (t) => {
  const dir = tempDir(t);
  const a = await startMachine(t, join(dir, 'a'));
  await createGuest(t, a, dir, 'big', 128);
  const img = join(dir, 'big.img');
  // script(1) gives xl a pseudo-terminal for its stdout.
  const cmd = [process.execPath, XL, '--dir', join(dir, 'a'), 'save', '-c', 'big', img].map(sh).join(' ');
  const r = await run('script', ['-qfec', cmd, '/dev/null']);
  t.is(r.code, 0, r.out + r.err);
  const shown = [...r.out.matchAll(/\rsaving big: (\d+)\/(\d+) pages \((\d+)%\)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const);
  t.true(shown.length >= 4, `${shown.length} progress updates: ${JSON.stringify(r.out.slice(0, 400))}`);
  const total = shown[0]![1];
  t.true(total >= 128 * 256, `${total} pages in all`);
  t.deepEqual(shown.at(-1), [total, total, 100], 'the last update is every page');
  for (let i = 1; i < shown.length; i++) t.true(shown[i]![0] > shown[i - 1]![0], 'pages done only grow');
  t.regex(r.out, /\r +\rsaved domain big to .* \(\d+ bytes, suspended via \w+\): resumed\r?\n$/, 'the progress line is wiped before the result');
  t.is((await verifyStream(img)).code, 0);

  const piped = await a.xl(['save', 'big', join(dir, 'big2.img')]);
  t.is(piped.code, 0, piped.err);
  t.regex(piped.out, /^saved domain big to .* \(\d+ bytes, suspended via \w+\): destroyed\n$/, 'into a pipe: the result line only');
  await assertValidImage(readFileSync(join(dir, 'big2.img')), 'the piped save');
});
