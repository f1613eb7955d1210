/*
 * Xen's own test-xenstore (xen-utils-4.17) against our server: every test it
 * lists, ten iterations each, then its random mode for 30 seconds.
 */
import test from 'ava';
import { run, serve } from './peers.js';

const TEST_XENSTORE = '/usr/lib/xen-4.17/bin/test-xenstore';

async function listed(): Promise<string[]> {
  const r = await run(TEST_XENSTORE, ['-l'], process.env);
  if (r.code !== 0) throw new Error(`test-xenstore -l exited ${r.code}: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.includes(':')).map((l) => l.slice(0, l.indexOf(':')).trim());
}

test('test-xenstore -i 10: every listed test passes', async (t) => {
  const names = await listed();
  t.true(names.length >= 12, `test-xenstore lists ${names.length} tests`);
  const s = await serve();
  try {
    const r = await run(TEST_XENSTORE, ['-i', '10'], s.env);
    t.is(r.code, 0, `exit ${r.code}\n${r.stdout}${r.stderr}`);
    for (const name of names) {
      const line = r.stdout.split('\n').find((l) => l.startsWith(name.padEnd(10) + ':'));
      t.truthy(line, `no result line for "${name}"`);
      t.notRegex(line ?? '', /failed/, line);
      t.regex(line ?? '', /avg: \d+ ns/, line);
    }
    t.notRegex(r.stdout, /Exhaustive transaction retries/, 'no transaction retried 100 times');
  } finally {
    await s.stop();
  }
});

test('test-xenstore -t runs a single named test', async (t) => {
  const s = await serve();
  try {
    const r = await run(TEST_XENSTORE, ['-t', 'ta err', '-i', '3'], s.env);
    t.is(r.code, 0, r.stdout + r.stderr);
    t.regex(r.stdout, /^ta err\s+: avg:/m);
  } finally {
    await s.stop();
  }
});

test('test-xenstore -r 30 (random mode) passes and cleans up after itself', async (t) => {
  const s = await serve();
  try {
    const r = await run(TEST_XENSTORE, ['-r', '30'], s.env);
    t.is(r.code, 0, `exit ${r.code}\n${r.stdout}${r.stderr}`);
    t.notRegex(r.stdout, /failed/);
    const left = await run('xenstore-ls', ['/local/domain/0'], s.env);
    t.notRegex(left.stdout, /xenstore-test/, 'test-xenstore removed its nodes');
  } finally {
    await s.stop();
  }
});
