/*
 * python3-pyxs against our server: transactions that conflict and retry,
 * watches, permissions. pyxs is installed for Debian's /usr/bin/python3.
 */
import test from 'ava';
import { run, serve } from './peers.js';

const PYTHON = '/usr/bin/python3';

/** Run a pyxs script; it prints one JSON document. */
async function pyxs(env: NodeJS.ProcessEnv, body: string): Promise<unknown> {
  const script = `
import json, os, sys, errno
from pyxs import Client, PyXSError
path = os.environ["XENSTORED_PATH"]
def client():
    return Client(unix_socket_path=path)
${body}
`;
  const r = await run(PYTHON, ['-c', script], env);
  if (r.code !== 0) throw new Error(`python3 exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test('pyxs is importable by /usr/bin/python3', async (t) => {
  const r = await run(PYTHON, ['-c', 'import pyxs'], process.env);
  t.is(r.code, 0, `python3-pyxs missing: ${r.stderr}`);
});

test('pyxs: conflicting transactions fail to commit and succeed on retry', async (t) => {
  const s = await serve();
  try {
    const out = await pyxs(s.env, `
with client() as a, client() as b:
    a[b"/ctr"] = b"0"
    # a reads in a transaction, b changes the value meanwhile: a's commit must fail.
    a.transaction()
    v = int(a[b"/ctr"])
    b[b"/ctr"] = b"100"
    a[b"/ctr"] = str(v + 1).encode()
    first = a.commit()
    # Retry loop as a client would write it, with b interfering once more.
    attempts = 0
    while True:
        attempts += 1
        a.transaction()
        v = int(a[b"/ctr"])
        if attempts == 1:
            b[b"/ctr"] = b"200"
        a[b"/ctr"] = str(v + 1).encode()
        if a.commit():
            break
    print(json.dumps({"first": first, "attempts": attempts, "final": a[b"/ctr"].decode()}))
`);
    t.deepEqual(out, { first: false, attempts: 2, final: '201' });
  } finally {
    await s.stop();
  }
});

test('pyxs: transaction isolation and abort', async (t) => {
  const s = await serve();
  try {
    const out = await pyxs(s.env, `
with client() as a, client() as b:
    a[b"/iso"] = b"before"
    a.transaction()
    a[b"/iso"] = b"inside"
    seen_by_b = b[b"/iso"].decode()
    a.rollback()
    print(json.dumps({"b": seen_by_b, "after": a[b"/iso"].decode()}))
`);
    t.deepEqual(out, { b: 'before', after: 'before' });
  } finally {
    await s.stop();
  }
});

test('pyxs: watches report the initial event and changes below the path with the token', async (t) => {
  const s = await serve();
  try {
    const out = await pyxs(s.env, `
with client() as c, client() as w:
    m = w.monitor()
    m.watch(b"/pw", b"tok")
    events = m.wait()
    first = next(events)
    c[b"/pw/a/b"] = b"1"
    second = next(events)
    c.delete(b"/pw")
    third = next(events)
    m.unwatch(b"/pw", b"tok")
    print(json.dumps([[e.path.decode(), e.token.decode()] for e in (first, second, third)]))
`);
    t.deepEqual(out, [['/pw', 'tok'], ['/pw/a/b', 'tok'], ['/pw', 'tok']]);
  } finally {
    await s.stop();
  }
});

test('pyxs: permissions set, read back, and errors reported as errno', async (t) => {
  const s = await serve();
  try {
    const out = await pyxs(s.env, `
with client() as c:
    c[b"/pp"] = b"v"
    c.set_perms(b"/pp", [b"n0", b"r3", b"b4"])
    perms = [p.decode() for p in c.get_perms(b"/pp")]
    errs = []
    for op in (lambda: c[b"/missing/node"], lambda: c.set_perms(b"/missing", [b"b0"]), lambda: c.delete(b"/missing/deeper")):
        try:
            op()
            errs.append(None)
        except PyXSError as e:
            errs.append(errno.errorcode[e.args[0]])
    print(json.dumps({"perms": perms, "errs": errs, "dom": c.get_domain_path(7).decode(), "intro": c.is_domain_introduced(0)}))
`);
    t.deepEqual(out, { perms: ['n0', 'r3', 'b4'], errs: ['ENOENT', 'ENOENT', 'ENOENT'], dom: '/local/domain/7', intro: true });
  } finally {
    await s.stop();
  }
});
