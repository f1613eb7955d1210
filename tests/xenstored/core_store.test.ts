import test from 'ava';
import {
  XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_MKDIR, XS_READ,
  XS_RM, XS_SET_PERMS, XS_WATCH_EVENT, XS_WRITE, XENSTORE_PAYLOAD_MAX,
} from '../../hypervisor/public/io/xs_wire.js';
import { fromLatin1, latin1 } from '../../hypervisor/tools/xenstored/wire.js';
import { Core } from './harness.js';

test('WRITE then READ returns the bytes; the reply echoes req_id and tx_id with OK', (t) => {
  const c = new Core();
  const h = c.open();
  const w = c.write(h, '/a', 'hello');
  t.is(w.type, XS_WRITE);
  t.is(w.raw, 'OK\0');
  const r = c.call(h, XS_READ, ['/a']);
  t.is(r.type, XS_READ);
  t.is(r.raw, 'hello', 'READ returns the value without a NUL');
});

test('values are binary: NULs and high bytes survive', (t) => {
  const c = new Core();
  const h = c.open();
  const value = new Uint8Array([0, 1, 2, 0, 255, 128]);
  t.is(c.write(h, '/bin', value).err, undefined);
  t.deepEqual([...c.call(h, XS_READ, ['/bin']).msg.payload], [...value]);
});

test('WRITE creates missing parents with empty values, and DIRECTORY lists children in creation order', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/x/y/z', 'v');
  t.is(c.call(h, XS_READ, ['/x/y']).raw, '', 'implicit parent has an empty value');
  c.write(h, '/x/b', '1');
  c.write(h, '/x/a', '2');
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/x']).strings, ['y', 'b', 'a']);
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/x/y/z']).strings, [], 'a leaf lists nothing');
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/']).strings, ['tool', 'x'], 'the store starts with /tool');
});

test('READ of a missing node is ENOENT; malformed paths are EINVAL', (t) => {
  const c = new Core();
  const h = c.open();
  t.is(c.call(h, XS_READ, ['/nope']).err, 'ENOENT');
  for (const bad of ['/a/', '/a//b', '/a b', '/a\u00e9', '@foo', '']) {
    t.is(c.call(h, XS_READ, [bad]).err, 'EINVAL', `path ${JSON.stringify(bad)}`);
  }
  t.is(c.call(h, XS_READ, ['/' + 'a'.repeat(3072)]).err, 'EINVAL', 'longer than XENSTORE_ABS_PATH_MAX');
  t.is(c.send(h, XS_READ, fromLatin1('/tool')).err, 'EINVAL', 'no NUL terminator');
  t.is(c.send(h, XS_READ, fromLatin1('/tool\0x\0')).err, 'EINVAL', 'extra argument');
  t.is(c.send(h, XS_WRITE, fromLatin1('/nonul')).err, 'EINVAL', 'WRITE needs a NUL after the path');
});

test('host connections resolve relative paths against /local/domain/0', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, 'rel/node', 'r');
  t.is(c.call(h, XS_READ, ['/local/domain/0/rel/node']).raw, 'r');
  t.is(c.call(h, XS_GET_DOMAIN_PATH, ['7']).raw, '/local/domain/7\0');
});

test('MKDIR creates the node and parents, and leaves an existing value alone', (t) => {
  const c = new Core();
  const h = c.open();
  t.is(c.call(h, XS_MKDIR, ['/m/n']).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/m/n']).raw, '');
  c.write(h, '/m/n', 'keep');
  c.call(h, XS_MKDIR, ['/m/n']);
  t.is(c.call(h, XS_READ, ['/m/n']).raw, 'keep');
});

test('RM removes a subtree; a missing node is fine if its parent exists, not otherwise', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/r/a/b', '1');
  c.write(h, '/r/c', '2');
  t.is(c.call(h, XS_RM, ['/r/a']).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/r/a/b']).err, 'ENOENT');
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/r']).strings, ['c']);
  t.is(c.call(h, XS_RM, ['/r/gone']).raw, 'OK\0', 'parent exists');
  t.is(c.call(h, XS_RM, ['/r/gone/deeper']).err, 'ENOENT', 'parent missing');
  t.is(c.call(h, XS_RM, ['/']).err, 'EINVAL', 'the root cannot go');
});

test('GET_PERMS and SET_PERMS round-trip; the root starts as n0', (t) => {
  const c = new Core();
  const h = c.open();
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/']).strings, ['n0']);
  c.write(h, '/p', '');
  t.is(c.call(h, XS_SET_PERMS, ['/p', 'b5', 'r6', 'n0x7']).raw, 'OK\0');
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/p']).strings, ['b5', 'r6', 'n7'], 'hex domids are accepted and printed in decimal');
  t.is(c.call(h, XS_SET_PERMS, ['/p']).err, 'EINVAL', 'at least one permission');
  t.is(c.call(h, XS_SET_PERMS, ['/p', 'x1']).err, 'EINVAL', 'unknown letter');
  t.is(c.call(h, XS_SET_PERMS, ['/p', 'r1z']).err, 'EINVAL', 'trailing garbage after the domid');
  t.is(c.call(h, XS_SET_PERMS, ['/missing', 'b0']).err, 'ENOENT');
  t.deepEqual(c.call(h, XS_GET_PERMS, ['@releaseDomain']).strings, ['n0'], 'special nodes have permissions');
  t.is(c.call(h, XS_GET_PERMS, ['@other']).err, 'ENOENT');
});

test('DIRECTORY of more than a payload of names is E2BIG; DIRECTORY_PART pages through it with a stable generation', (t) => {
  const c = new Core();
  const h = c.open();
  const names: string[] = [];
  for (let i = 0; i < 400; i++) {
    const name = `child-with-a-long-name-${String(i).padStart(4, '0')}`;
    names.push(name);
    c.write(h, `/big/${name}`, '');
  }
  t.is(c.call(h, XS_DIRECTORY, ['/big']).err, 'E2BIG');
  const got: string[] = [];
  let gen: string | undefined;
  let off = 0;
  for (let round = 0; round < 10; round++) {
    const r = c.call(h, XS_DIRECTORY_PART, ['/big', String(off)]);
    t.is(r.type, XS_DIRECTORY_PART);
    t.true(r.msg.payload.length <= XENSTORE_PAYLOAD_MAX);
    const [g, ...rest] = r.strings;
    gen ??= g;
    t.is(g, gen, 'generation unchanged between parts');
    const done = rest.length > 0 && rest[rest.length - 1] === '';
    const part = done ? rest.slice(0, -1) : rest;
    got.push(...part);
    off += part.reduce((n, s) => n + s.length + 1, 0);
    if (done) break;
  }
  t.deepEqual(got, names);
  t.deepEqual(c.call(h, XS_DIRECTORY_PART, ['/big', '999999']).strings, [gen ?? '', ''], 'offset past the end: just the end marker');
  c.write(h, '/big/one-more', '');
  t.not(c.call(h, XS_DIRECTORY_PART, ['/big', '0']).strings[0], gen, 'adding a child changes the generation');
  c.write(h, '/big/one-more', 'value');
  const g2 = c.call(h, XS_DIRECTORY_PART, ['/big', '0']).strings[0];
  c.write(h, '/big/one-more', 'other value');
  t.is(c.call(h, XS_DIRECTORY_PART, ['/big', '0']).strings[0], g2, "a child's value is not the node's content");
  t.is(c.call(h, XS_DIRECTORY_PART, ['/big']).err, 'EINVAL', 'needs path and offset');
});

test('unknown and reply-only message types are ENOSYS', (t) => {
  const c = new Core();
  const h = c.open();
  for (const type of [XS_WATCH_EVENT, XS_ERROR, 20, 23, 0xffff, 12345]) {
    t.is(c.call(h, type, ['/']).err, 'ENOSYS', `type ${type}`);
  }
});

test('errors go back as XS_ERROR with the request ids', (t) => {
  const c = new Core();
  const h = c.open();
  const r = c.call(h, XS_READ, ['/nope']);
  t.is(r.type, XS_ERROR);
  t.is(r.raw, 'ENOENT\0');
  t.is(r.msg.txId, 0);
});

test('XS_CONTROL answers help, quota, quota set and print', (t) => {
  const c = new Core();
  const h = c.open();
  t.regex(c.call(h, XS_CONTROL, ['help']).raw, /^check/m);
  t.regex(c.call(h, XS_CONTROL, ['quota']).raw, /nodes\s+:\s+1000/);
  t.regex(c.call(h, XS_CONTROL, ['quota', '0']).raw, /^Domain 0:/);
  t.is(c.call(h, XS_CONTROL, ['print', 'hi']).raw, 'OK\0');
  t.deepEqual(c.effects.at(-1), { kind: 'log', text: 'control: hi' });
  t.is(c.call(h, XS_CONTROL, ['check']).raw, 'OK\0', 'node accounting is consistent');
  t.is(c.call(h, XS_CONTROL, ['bogus']).err, 'EINVAL');
  t.is(c.call(h, XS_CONTROL, ['quota', 'set', 'watches', '3']).raw, 'OK\0');
  t.is(c.state.options.quotas.watches, 3);
  t.is(c.call(h, XS_CONTROL, ['quota', 'set', 'nonsense', '3']).err, 'EINVAL');
  t.is(c.call(h, XS_CONTROL, ['quota', 'set', 'watches', '0']).err, 'EINVAL');
  t.is(c.send(h, XS_CONTROL, new Uint8Array(0)).err, 'EINVAL');
});

test('the input state is never modified (the core is pure)', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/a', '1');
  const before = c.state;
  const snapshot = JSON.stringify([...before.conns.keys()]) + latin1(c.call(h, XS_READ, ['/a']).msg.payload);
  c.write(h, '/a', '2');
  c.write(h, '/b', '3');
  t.is(JSON.stringify([...before.conns.keys()]) + '1', snapshot);
  c.state = before;
  t.is(c.call(h, XS_READ, ['/a']).raw, '1', 'an old state still answers as it did');
  t.is(c.call(h, XS_READ, ['/b']).err, 'ENOENT');
});
