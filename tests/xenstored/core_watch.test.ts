import test from 'ava';
import {
  XS_MKDIR, XS_RESET_WATCHES, XS_RM, XS_SET_PERMS, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
} from '../../hypervisor/public/io/xs_wire.js';
import { Core } from './harness.js';

test('a new watch fires once straight away with its path and token, after the reply', (t) => {
  const c = new Core();
  const h = c.open();
  const r = c.call(h, XS_WATCH, ['/w', 'tok1']);
  t.is(r.raw, 'OK\0');
  const last = c.sent.slice(-2).map((d) => d.msg.type);
  t.deepEqual(last, [XS_WATCH, XS_WATCH_EVENT], 'reply first, then the initial event');
  t.deepEqual(c.events(h), [{ path: '/w', token: 'tok1' }], 'the path need not exist');
});

test('changes to the path and its descendants fire with the changed path and the token', (t) => {
  const c = new Core();
  const h = c.open();
  const w = c.open();
  c.call(w, XS_WATCH, ['/a', 'T']);
  c.events(w);
  c.write(h, '/a', '1');
  c.write(h, '/a/b/c', '2');
  c.write(h, '/ab', 'not a child');
  c.write(h, '/other', 'x');
  t.deepEqual(c.events(w), [{ path: '/a', token: 'T' }, { path: '/a/b/c', token: 'T' }]);
});

test('the writer hears its own change before its reply', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['/self', 'me']);
  c.write(h, '/self', 'v');
  t.deepEqual(c.sent.slice(-2).map((d) => d.msg.type), [XS_WATCH_EVENT, XS_WRITE]);
});

test('a watch on / sees everything; two watches with different tokens each fire', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['/', 'root']);
  c.call(h, XS_WATCH, ['/q', 'q']);
  c.events(h);
  c.write(h, '/q/r', '');
  t.deepEqual(c.events(h), [{ path: '/q/r', token: 'root' }, { path: '/q/r', token: 'q' }]);
});

test('removing a subtree fires for the removed node upward and for each watched descendant exactly', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/rm/a/b', '1');
  c.write(h, '/rm/a/c', '2');
  const w = c.open();
  c.call(w, XS_WATCH, ['/rm', 'top']);
  c.call(w, XS_WATCH, ['/rm/a/b', 'leaf']);
  c.call(w, XS_WATCH, ['/rm/a/b/none', 'absent']);
  c.events(w);
  c.call(h, XS_RM, ['/rm/a']);
  t.deepEqual(c.events(w), [{ path: '/rm/a/b', token: 'leaf' }, { path: '/rm/a', token: 'top' }]);
});

test('mkdir fires only when it creates; set_perms fires', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['/mk', 't']);
  c.events(h);
  c.call(h, XS_MKDIR, ['/mk']);
  c.call(h, XS_MKDIR, ['/mk']);
  c.call(h, XS_SET_PERMS, ['/mk', 'r0']);
  t.deepEqual(c.events(h), [{ path: '/mk', token: 't' }, { path: '/mk', token: 't' }]);
});

test('UNWATCH stops events; unknown watch is ENOENT; duplicate watch is EEXIST; bad args EINVAL', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['/u', 't']);
  t.is(c.call(h, XS_WATCH, ['/u', 't']).err, 'EEXIST');
  t.is(c.call(h, XS_WATCH, ['/u', 't2']).raw, 'OK\0', 'same path, other token');
  t.is(c.call(h, XS_UNWATCH, ['/u', 't']).raw, 'OK\0');
  t.is(c.call(h, XS_UNWATCH, ['/u', 't']).err, 'ENOENT');
  c.events(h);
  c.write(h, '/u', '');
  t.deepEqual(c.events(h), [{ path: '/u', token: 't2' }]);
  t.is(c.call(h, XS_WATCH, ['/u']).err, 'EINVAL', 'token missing');
  t.is(c.call(h, XS_WATCH, ['/u', 't', 'extra']).err, 'EINVAL');
  t.is(c.call(h, XS_WATCH, ['/bad/', 't']).err, 'EINVAL');
});

test('the tx_id of WATCH is ignored', (t) => {
  const c = new Core();
  const h = c.open();
  t.is(c.call(h, XS_WATCH, ['/x', 't'], 99).raw, 'OK\0');
});

test('a domain watching a relative path gets relative event paths', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_MKDIR, ['/local/domain/3']);
  c.call(h, XS_SET_PERMS, ['/local/domain/3', 'n3']);
  const d = c.introduce(h, 3);
  c.call(d, XS_WATCH, ['control/shutdown', 'sd']);
  t.deepEqual(c.events(d), [{ path: 'control/shutdown', token: 'sd' }]);
  c.write(h, '/local/domain/3/control/shutdown', 'suspend');
  t.deepEqual(c.events(d), [{ path: 'control/shutdown', token: 'sd' }]);
  c.call(d, XS_WATCH, ['/local/domain/3/device', 'abs']);
  c.events(d);
  c.write(h, '/local/domain/3/device/vif', '');
  t.deepEqual(c.events(d), [{ path: '/local/domain/3/device/vif', token: 'abs' }]);
});

test('domains hear only of nodes they (or whose parent they) may read', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_MKDIR, ['/local/domain/3']);
  c.call(h, XS_SET_PERMS, ['/local/domain/3', 'n3']);
  const d = c.introduce(h, 3);
  c.call(d, XS_WATCH, ['/', 'all']);
  c.events(d);
  c.write(h, '/private/x', '1');
  t.deepEqual(c.events(d), [], 'nothing readable');
  c.write(h, '/local/domain/3/mine', '1');
  t.deepEqual(c.events(d), [{ path: '/local/domain/3/mine', token: 'all' }]);
  c.write(h, '/pub', '');
  c.call(h, XS_SET_PERMS, ['/pub', 'n0', 'r3']);
  c.events(d);
  c.write(h, '/pub/child', 'x');
  t.deepEqual(c.events(d), [{ path: '/pub/child', token: 'all' }], 'the parent is readable');
  c.call(h, XS_SET_PERMS, ['/pub', 'n0']);
  t.deepEqual(c.events(d), [{ path: '/pub', token: 'all' }], 'losing access still reports the change');
});

test('a domain has at most 128 watches (E2BIG); RESET_WATCHES clears them', (t) => {
  const c = new Core();
  const h = c.open();
  const d = c.introduce(h, 8);
  for (let i = 0; i < 128; i++) t.is(c.call(d, XS_WATCH, [`/w${i}`, 't']).err, undefined);
  t.is(c.call(d, XS_WATCH, ['/w128', 't']).err, 'E2BIG');
  c.call(d, XS_RESET_WATCHES, ['']);
  t.is(c.call(d, XS_WATCH, ['/w128', 't']).err, undefined);
  for (let i = 0; i < 200; i++) c.call(h, XS_WATCH, [`/h${i}`, 't']);
  t.is(c.call(h, XS_WATCH, ['/h200', 't']).err, undefined, 'no limit for dom0');
});

test('an event longer than the payload limit is not sent', (t) => {
  const c = new Core();
  const h = c.open();
  c.call(h, XS_WATCH, ['/', 'x'.repeat(3000)]);
  c.events(h);
  c.write(h, '/' + 'p'.repeat(1500), '');
  t.deepEqual(c.events(h), []);
});
