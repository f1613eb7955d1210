import test from 'ava';
import {
  XS_DIRECTORY, XS_GET_DOMAIN_PATH, XS_INTRODUCE, XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE, XS_RESUME, XS_RM,
  XS_SET_PERMS, XS_TRANSACTION_START, XS_WATCH,
} from '../../hypervisor/public/io/xs_wire.js';
import { Core } from './harness.js';

function withHome(c: Core, h: number, domid: number): number {
  c.call(h, XS_MKDIR, [`/local/domain/${domid}`]);
  c.call(h, XS_SET_PERMS, [`/local/domain/${domid}`, `n${domid}`, 'r0']);
  return c.introduce(h, domid);
}

test('INTRODUCE makes the domain known, fires @introduceDomain and asks the host to attach its ring', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['@introduceDomain', 'intro']);
  t.deepEqual(c.events(h), [{ path: '@introduceDomain', token: 'intro' }]);
  t.is(c.call(h, XS_IS_DOMAIN_INTRODUCED, ['5']).raw, 'F\0');
  t.is(c.call(h, XS_INTRODUCE, ['5', '4660', '9']).raw, 'OK\0');
  t.is(c.call(h, XS_IS_DOMAIN_INTRODUCED, ['5']).raw, 'T\0');
  t.deepEqual(c.events(h), [{ path: '@introduceDomain', token: 'intro' }]);
  const e = c.effects.at(-1);
  t.like(e, { kind: 'introduce', domid: 5, mfn: '4660', port: 9, reintroduce: false });
  t.is(c.call(h, XS_GET_DOMAIN_PATH, ['5']).raw, '/local/domain/5\0');
});

test('INTRODUCE argument errors: missing fields, port 0, dom0 or reserved ids are EINVAL', (t) => {
  const c = new Core();
  const h = c.open();
  t.is(c.call(h, XS_INTRODUCE, ['5', '1']).err, 'EINVAL');
  t.is(c.call(h, XS_INTRODUCE, ['5', '1', '0']).err, 'EINVAL');
  t.is(c.call(h, XS_INTRODUCE, ['0', '1', '1']).err, 'EINVAL');
  t.is(c.call(h, XS_INTRODUCE, ['32752', '1', '1']).err, 'EINVAL');
});

test('introducing again resets the domain connection (watches, transactions) without a new @introduceDomain', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  c.call(d, XS_WATCH, ['x', 't']);
  c.call(d, XS_TRANSACTION_START, ['']);
  c.call(h, XS_WATCH, ['@introduceDomain', 'i']);
  c.events(h);
  c.call(h, XS_INTRODUCE, ['5', '1', '2']);
  t.deepEqual(c.events(h), []);
  t.is(c.state.conns.get(d)?.watches.length, 0);
  t.is(c.state.conns.get(d)?.transactions.size, 0);
  t.like(c.effects.at(-1), { kind: 'introduce', domid: 5, reintroduce: true, port: 2 });
});

test('RELEASE drops the domain, its watches and the nodes it owns, then fires @releaseDomain', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  c.write(d, 'data', 'mine');
  c.write(h, '/local/domain/0/backend/vbd/5/0/state', '4');
  c.call(d, XS_WATCH, ['/local/domain/5', 'own']);
  const w = c.open();
  c.call(w, XS_WATCH, ['@releaseDomain', 'rel']);
  c.call(w, XS_WATCH, ['/local/domain/5/data', 'data']);
  c.events(w);
  c.events(d);
  t.is(c.call(h, XS_RELEASE, ['5']).raw, 'OK\0');
  t.deepEqual(c.events(w), [{ path: '/local/domain/5/data', token: 'data' }, { path: '@releaseDomain', token: 'rel' }]);
  t.deepEqual(c.events(d), [], 'the released domain hears nothing');
  t.is(c.call(h, XS_READ, ['/local/domain/5']).err, 'ENOENT', 'its home (owned by it) is gone');
  t.is(c.call(h, XS_READ, ['/local/domain/0/backend/vbd/5/0/state']).raw, '4', 'dom0-owned nodes stay');
  t.is(c.call(h, XS_IS_DOMAIN_INTRODUCED, ['5']).raw, 'F\0');
  t.false(c.state.conns.has(d));
  t.like(c.effects.at(-1), { kind: 'release', domid: 5, conn: d });
  t.is(c.call(h, XS_RELEASE, ['5']).err, 'ENOENT');
  t.is(c.call(h, XS_RELEASE, ['0']).err, 'EINVAL');
});

test('with keepOrphans, a released domain\'s nodes stay, owned by dom0', (t) => {
  const c = new Core({ keepOrphans: true });
  const h = c.open();
  const d = withHome(c, h, 5);
  c.write(d, 'data', 'mine');
  c.call(h, XS_RELEASE, ['5']);
  t.is(c.call(h, XS_READ, ['/local/domain/5/data']).raw, 'mine');
});

test('a shutdown fires @releaseDomain once until RESUME; destruction fires it and releases', (t) => {
  const c = new Core();
  const h = c.open();
  withHome(c, h, 5);
  c.call(h, XS_WATCH, ['@releaseDomain', 'r']);
  c.events(h);
  c.shutdown(5);
  c.shutdown(5);
  t.deepEqual(c.events(h), [{ path: '@releaseDomain', token: 'r' }]);
  t.is(c.call(h, XS_RESUME, ['5']).raw, 'OK\0');
  c.shutdown(5);
  t.deepEqual(c.events(h), [{ path: '@releaseDomain', token: 'r' }]);
  c.gone(5);
  t.deepEqual(c.events(h), [{ path: '@releaseDomain', token: 'r' }]);
  t.is(c.call(h, XS_IS_DOMAIN_INTRODUCED, ['5']).raw, 'F\0');
  t.is(c.call(h, XS_RESUME, ['5']).err, 'ENOENT');
});

test('special watches reach a domain only if the special node grants it read access', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  c.call(d, XS_WATCH, ['@releaseDomain', 'r']);
  t.deepEqual(c.events(d), [{ path: '@releaseDomain', token: 'r' }], 'the initial event always comes');
  withHome(c, h, 6);
  c.call(h, XS_RELEASE, ['6']);
  t.deepEqual(c.events(d), []);
  c.call(h, XS_SET_PERMS, ['@releaseDomain', 'n0', 'r5']);
  t.deepEqual(c.events(d), [{ path: '@releaseDomain', token: 'r' }], 'the permission change itself is an event');
  withHome(c, h, 7);
  c.call(h, XS_RELEASE, ['7']);
  t.deepEqual(c.events(d), [{ path: '@releaseDomain', token: 'r' }]);
});

test('a domain may own at most 1000 nodes (ENOSPC); removing frees the quota', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  let err: string | undefined;
  for (let i = 0; err === undefined && i < 1100; i++) err = c.write(d, `g${Math.floor(i / 100)}/${i % 100}`, '').err;
  t.is(err, 'ENOSPC');
  t.is(c.state.owned.get(5), 1000, 'the home, the group directories and the leaves');
  t.is(c.write(h, '/local/domain/5/by-dom0', '').err, undefined, 'dom0 is not limited');
  t.is(c.state.owned.get(5), 1001, 'what dom0 creates under the home inherits the owner');
  c.call(h, XS_SET_PERMS, ['/local/domain/5/by-dom0', 'n0']);
  t.is(c.write(d, 'one-more', '').err, 'ENOSPC');
  t.is(c.call(d, XS_RM, ['g0/1']).raw, 'OK\0');
  t.is(c.write(d, 'one-more', '').err, undefined);
  t.is(c.state.owned.get(5), 1000);
});

test('a directory whose name list outgrows the node size is ENOSPC for a domain', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  let err: string | undefined;
  let i = 0;
  for (; err === undefined && i < 1000; i++) err = c.write(d, `flat/${i}`, '').err;
  t.is(err, 'ENOSPC');
  t.true(i > 400 && i < 600, `stopped after ${i} children`);
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/local/domain/5']).strings, ['flat']);
});

test('a node bigger than 2048 bytes is ENOSPC for a domain, fine for dom0', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  t.is(c.write(d, 'small', 'x'.repeat(1900)).err, undefined);
  t.is(c.write(d, 'big', 'x'.repeat(2100)).err, 'ENOSPC');
  t.is(c.write(h, '/local/domain/5/big', 'x'.repeat(4000)).err, undefined);
});

test('a domain path longer than the quota counted from its home is EINVAL', (t) => {
  const c = new Core();
  const h = c.open();
  const d = withHome(c, h, 5);
  const long = 'd'.repeat(1000) + '/' + 'e'.repeat(1000);
  t.is(c.write(d, long, '').err, undefined, `${long.length} bytes under its home`);
  t.is(c.write(d, 'b'.repeat(2049), '').err, 'EINVAL');
  t.is(c.write(h, '/local/domain/5/' + 'c'.repeat(2049), '').err, undefined, 'dom0 only has the absolute limit');
});
