import test from 'ava';
import {
  XS_CONTROL, XS_DIRECTORY, XS_GET_PERMS, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE,
  XS_RESUME, XS_RM, XS_SET_PERMS, XS_SET_TARGET,
} from '../../hypervisor/public/io/xs_wire.js';
import { Core } from './harness.js';

/** dom0 socket, and domains 1 and 2 introduced, each with a home it owns (as the builder sets up). */
function setup(): { c: Core; h: number; d1: number; d2: number } {
  const c = new Core();
  const h = c.open();
  for (const id of [1, 2]) {
    c.call(h, XS_MKDIR, [`/local/domain/${id}`]);
    c.call(h, XS_SET_PERMS, [`/local/domain/${id}`, `n${id}`, 'r0']);
  }
  const d1 = c.introduce(h, 1);
  const d2 = c.introduce(h, 2);
  return { c, h, d1, d2 };
}

test('a domain cannot read or write dom0 nodes, and learns nothing about missing ones (EACCES, not ENOENT)', (t) => {
  const { c, h, d1 } = setup();
  c.write(h, '/secret', 's');
  t.is(c.call(d1, XS_READ, ['/secret']).err, 'EACCES');
  t.is(c.write(d1, '/secret', 'x').err, 'EACCES');
  t.is(c.call(d1, XS_READ, ['/nothing-here']).err, 'EACCES', 'the nearest parent (/) is unreadable');
  t.is(c.call(d1, XS_DIRECTORY, ['/']).err, 'EACCES');
  t.is(c.call(d1, XS_READ, ['/local/domain/1/missing']).err, 'ENOENT', 'under its own home a missing node is ENOENT');
});

test('relative paths of a domain resolve against its home; nodes it creates are its own', (t) => {
  const { c, h, d1 } = setup();
  t.is(c.write(d1, 'data/x', '1').err, undefined);
  t.is(c.call(h, XS_READ, ['/local/domain/1/data/x']).raw, '1');
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/local/domain/1/data/x']).strings, ['n1', 'r0'], 'perms inherited, owner is the creator');
  t.is(c.call(d1, XS_READ, ['data/x']).raw, '1');
});

test('nodes dom0 creates inherit the parent permissions unchanged', (t) => {
  const { c, h } = setup();
  c.write(h, '/local/domain/1/device/vbd/0/state', '1');
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/local/domain/1/device/vbd/0/state']).strings, ['n1', 'r0']);
});

test('entries grant per domain: r, w, b, n; the first entry is the default for others', (t) => {
  const { c, h, d1, d2 } = setup();
  c.write(h, '/shared', 'v');
  c.call(h, XS_SET_PERMS, ['/shared', 'r0', 'w1']);
  t.is(c.call(d2, XS_READ, ['/shared']).raw, 'v', 'default r for everybody else');
  t.is(c.write(d2, '/shared', 'x').err, 'EACCES');
  t.is(c.call(d1, XS_READ, ['/shared']).err, 'EACCES', 'w1 grants write only');
  t.is(c.write(d1, '/shared', 'by1').err, undefined);
  c.call(h, XS_SET_PERMS, ['/shared', 'n0', 'b1', 'n2']);
  t.is(c.call(d1, XS_READ, ['/shared']).raw, 'by1');
  t.is(c.call(d2, XS_READ, ['/shared']).err, 'EACCES');
});

test('only the owner may change permissions, and a domain may not give its node away', (t) => {
  const { c, h, d1, d2 } = setup();
  c.write(d1, 'mine', '');
  t.is(c.call(d2, XS_SET_PERMS, ['/local/domain/1/mine', 'b2']).err, 'EACCES');
  c.call(d1, XS_SET_PERMS, ['mine', 'n1', 'b2']);
  t.is(c.call(d2, XS_SET_PERMS, ['/local/domain/1/mine', 'b2']).err, 'EACCES', 'write access is not ownership');
  t.is(c.call(d1, XS_SET_PERMS, ['mine', 'n2']).err, 'EPERM');
  t.is(c.call(d1, XS_SET_PERMS, ['mine', 'r1', 'b2', 'r0']).raw, 'OK\0');
  t.is(c.call(d1, XS_SET_PERMS, ['mine', 'n1', 'r2', 'r3', 'r4', 'r5', 'r6']).err, 'ENOSPC', 'more than 5 entries');
  t.is(c.call(h, XS_SET_PERMS, ['/local/domain/1/mine', 'n2']).raw, 'OK\0', 'dom0 may change the owner');
});

test('creating a node needs write access to the nearest existing ancestor', (t) => {
  const { c, h, d2 } = setup();
  c.write(h, '/open', '');
  c.call(h, XS_SET_PERMS, ['/open', 'n0', 'w2']);
  t.is(c.write(d2, '/open/a/b', 'x').err, undefined);
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/open/a/b']).strings, ['n2', 'w2']);
  t.is(c.write(d2, '/closed/a', 'x').err, 'EACCES');
  t.is(c.call(d2, XS_MKDIR, ['/closed']).err, 'EACCES');
  t.is(c.call(d2, XS_RM, ['/tool']).err, 'EACCES', 'rm needs write on the node itself');
  t.is(c.call(d2, XS_RM, ['/open/a']).raw, 'OK\0');
});

test('privileged requests are refused to domains', (t) => {
  const { c, d1 } = setup();
  for (const [type, args] of [
    [XS_INTRODUCE, ['5', '1', '1']], [XS_RELEASE, ['2']], [XS_RESUME, ['2']], [XS_SET_TARGET, ['1', '2']],
    [XS_IS_DOMAIN_INTRODUCED, ['2']], [XS_CONTROL, ['help']],
  ] as const) {
    t.is(c.call(d1, type, args).err, 'EACCES', `type ${type}`);
  }
});

test('SET_TARGET lets a domain act as its target: full access to what the target owns and what it was granted', (t) => {
  const { c, h, d1 } = setup();
  c.write(h, '/granted', 'g');
  c.call(h, XS_SET_PERMS, ['/granted', 'n0', 'r2']);
  t.is(c.call(d1, XS_READ, ['/local/domain/2']).err, 'EACCES');
  t.is(c.call(h, XS_SET_TARGET, ['1', '2']).raw, 'OK\0');
  t.is(c.call(d1, XS_READ, ['/local/domain/2']).raw, '');
  t.is(c.call(d1, XS_SET_PERMS, ['/local/domain/2', 'n2', 'r0']).raw, 'OK\0', "owner's rights include SET_PERMS");
  t.is(c.call(d1, XS_READ, ['/granted']).raw, 'g');
  t.is(c.call(h, XS_SET_TARGET, ['1', '9']).err, 'ENOENT', 'the target must be introduced');
});

test('permissions naming a released domain do not pass to a new domain with the same id', (t) => {
  const { c, h, d1 } = setup();
  c.write(h, '/for3', 'x');
  c.call(h, XS_SET_PERMS, ['/for3', 'n0', 'r3']);
  const d3 = c.introduce(h, 3);
  t.is(c.call(d3, XS_READ, ['/for3']).raw, 'x');
  c.call(h, XS_RELEASE, ['3']);
  t.is(c.call(d1, XS_READ, ['/for3']).err, 'EACCES');
  // A new domain 3: the old grant must not apply, even after the node is rewritten.
  const d3b = c.introduce(h, 3);
  t.is(c.call(d3b, XS_READ, ['/for3']).err, 'EACCES');
  c.write(h, '/for3', 'y');
  t.is(c.call(d3b, XS_READ, ['/for3']).err, 'EACCES');
  t.deepEqual(c.call(h, XS_GET_PERMS, ['/for3']).strings, ['n0', 'r3'], 'the entry is still listed');
  c.call(h, XS_SET_PERMS, ['/for3', 'n0', 'r3']);
  t.is(c.call(d3b, XS_READ, ['/for3']).raw, 'y', 'granting again works');
});

test('SET_PERMS naming an owner the hypervisor does not know is ENOENT', (t) => {
  const c = new Core({ domainExists: (id) => id < 100 });
  const h = c.open();
  c.write(h, '/n', '');
  t.is(c.call(h, XS_SET_PERMS, ['/n', 'b200']).err, 'ENOENT');
  t.is(c.call(h, XS_SET_PERMS, ['/n', 'b0', 'r200']).raw, 'OK\0', 'an unknown non-owner entry is kept, ignored');
});
