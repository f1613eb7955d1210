/*
 * Debian's xenstore-utils (libxenstore clients) against our server on a
 * unix socket, found through XENSTORED_PATH.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { connectSocketClient } from '../../hypervisor/tools/xenstored/client.js';
import { exited, LineReader, run, serve, spawnPeer } from './peers.js';

test('xenstore-write, -read, -exists, -list, -ls, -rm', async (t) => {
  const s = await serve();
  try {
    const w = await run('xenstore-write', ['/vm/name', 'guest', '/vm/memory', '512', '/vm/empty', ''], s.env);
    t.is(w.code, 0, w.stderr);
    const r = await run('xenstore-read', ['/vm/name', '/vm/memory'], s.env);
    t.is(r.stdout, 'guest\n512\n');
    t.is((await run('xenstore-exists', ['/vm/name'], s.env)).code, 0);
    t.not((await run('xenstore-exists', ['/vm/nothing'], s.env)).code, 0);
    t.is((await run('xenstore-list', ['/vm'], s.env)).stdout, 'name\nmemory\nempty\n');
    const ls = await run('xenstore-ls', ['/vm'], s.env);
    t.is(ls.stdout, 'name = "guest"\nmemory = "512"\nempty = ""\n');
    const full = await run('xenstore-ls', ['-f'], s.env);
    t.regex(full.stdout, /^\/vm\/memory = "512"$/m);
    t.regex(full.stdout, /^\/tool\/xenstored = ""$/m);
    t.is((await run('xenstore-rm', ['/vm/memory'], s.env)).code, 0);
    t.is((await run('xenstore-list', ['/vm'], s.env)).stdout, 'name\nempty\n');
    const bad = await run('xenstore-read', ['/vm/memory'], s.env);
    t.not(bad.code, 0);
    t.regex(bad.stderr, /couldn't read path \/vm\/memory/);
  } finally {
    await s.stop();
  }
});

test('xenstore-rm -t tidies empty parents; xenstore-read -p prefixes', async (t) => {
  const s = await serve();
  try {
    await run('xenstore-write', ['/tidy/a/b/c', 'x', '/tidy/keep', 'k'], s.env);
    t.is((await run('xenstore-read', ['-p', '/tidy/keep'], s.env)).stdout, '/tidy/keep: k\n');
    t.is((await run('xenstore-rm', ['-t', '/tidy/a/b/c'], s.env)).code, 0);
    t.is((await run('xenstore-list', ['/tidy'], s.env)).stdout, 'keep\n');
  } finally {
    await s.stop();
  }
});

test('xenstore-chmod sets permissions that xenstore-ls -p shows; -r recurses', async (t) => {
  const s = await serve();
  try {
    await run('xenstore-write', ['/perm/a', '1', '/perm/a/b', '2'], s.env);
    const c = await run('xenstore-chmod', ['/perm/a', 'n0', 'r5', 'b7'], s.env);
    t.is(c.code, 0, c.stderr);
    const ls = await run('xenstore-ls', ['-p', '/perm'], s.env);
    t.regex(ls.stdout, /^a = "1" .*\(n0,r5,b7\)$/m);
    t.regex(ls.stdout, /^ b = "2" .*\(n0\)$/m, 'children keep their own permissions');
    t.is((await run('xenstore-chmod', ['-r', '/perm', 'b3'], s.env)).code, 0);
    const client = await connectSocketClient(s.socketPath);
    try {
      t.deepEqual(await client.getPerms('/perm/a/b'), ['b3']);
    } finally {
      client.close();
    }
  } finally {
    await s.stop();
  }
});

test('xenstore-watch prints the initial event, then each change under the path', async (t) => {
  const s = await serve();
  const watch = spawnPeer('xenstore-watch', ['/watched'], s.env);
  try {
    const lines = new LineReader(watch, 'xenstore-watch');
    t.is(await lines.next(), '/watched', 'the initial event');
    t.is((await run('xenstore-write', ['/watched/child', 'v'], s.env)).code, 0);
    t.is(await lines.next(), '/watched/child');
    t.is((await run('xenstore-rm', ['/watched'], s.env)).code, 0);
    t.is(await lines.next(), '/watched');
  } finally {
    watch.kill();
    await exited(watch);
    await s.stop();
  }
});

test('xenstore-watch -n stops after that many events', async (t) => {
  const s = await serve();
  const watch = spawnPeer('xenstore-watch', ['-n', '2', '/n'], s.env);
  try {
    const lines = new LineReader(watch, 'xenstore-watch');
    t.is(await lines.next(), '/n');
    await run('xenstore-write', ['/n', 'x'], s.env);
    t.is(await lines.next(), '/n');
    t.is(await exited(watch), 0);
  } finally {
    watch.kill();
    await exited(watch);
    await s.stop();
  }
});

test('xenstore-list of a directory too big for one reply falls back to DIRECTORY_PART', async (t) => {
  const s = await serve();
  const client = await connectSocketClient(s.socketPath);
  try {
    const names: string[] = [];
    for (let i = 0; i < 300; i++) {
      names.push(`a-rather-long-child-name-${i}`);
      await client.write(`/many/${names[i] ?? ''}`, '');
    }
    const r = await run('xenstore-list', ['/many'], s.env);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(r.stdout.trimEnd().split('\n'), names);
  } finally {
    client.close();
    await s.stop();
  }
});

test('main.js serves a socket until it is signalled', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xenstored-main-'));
  const sock = join(dir, 'xs.sock');
  const main = fileURLToPath(new URL('../../hypervisor/tools/xenstored/main.js', import.meta.url));
  const daemon = spawnPeer(process.execPath, [main, '--socket', sock], process.env);
  try {
    const lines = new LineReader(daemon, 'xenstored main.js');
    t.is(await lines.next(), `xenstored: listening on ${sock}`);
    const env = { ...process.env, XENSTORED_PATH: sock };
    t.is((await run('xenstore-write', ['/from-main', 'ok'], env)).code, 0);
    t.is((await run('xenstore-read', ['/from-main'], env)).stdout, 'ok\n');
    daemon.kill('SIGTERM');
    t.is(await exited(daemon), 0);
    t.false(existsSync(sock), 'the socket file is removed on exit');
  } finally {
    daemon.kill();
    await exited(daemon);
    rmSync(dir, { recursive: true, force: true });
  }
});
