import test from 'ava';
import {
  XS_DIRECTORY, XS_MKDIR, XS_READ, XS_RESET_WATCHES, XS_RM, XS_SET_PERMS, XS_TRANSACTION_END,
  XS_TRANSACTION_START, XS_WATCH,
} from '../../hypervisor/public/io/xs_wire.js';
import { Core } from './harness.js';

function start(c: Core, conn: number): number {
  const r = c.call(conn, XS_TRANSACTION_START, ['']);
  if (r.err !== undefined) throw new Error(`TRANSACTION_START: ${r.err}`);
  return Number(r.strings[0]);
}

test('transaction ids are per connection, start at 1 and are never 0', (t) => {
  const c = new Core();
  const a = c.open();
  const b = c.open();
  t.is(start(c, a), 1);
  t.is(start(c, a), 2);
  t.is(start(c, b), 1);
});

test('a transaction sees its own writes; others see them only after commit', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/k', 'old');
  const tx = start(c, h);
  c.write(h, '/k', 'new', tx);
  c.write(h, '/k2/sub', 'created', tx);
  t.is(c.call(h, XS_READ, ['/k'], tx).raw, 'new');
  t.is(c.call(h, XS_READ, ['/k']).raw, 'old', 'outside the transaction nothing changed');
  t.is(c.call(h, XS_READ, ['/k2/sub']).err, 'ENOENT');
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/k']).raw, 'new');
  t.is(c.call(h, XS_READ, ['/k2/sub']).raw, 'created');
});

test('a transaction reads from its snapshot, not later global writes', (t) => {
  const c = new Core();
  const h = c.open();
  const other = c.open();
  c.write(h, '/s', 'a');
  const tx = start(c, h);
  c.write(other, '/s', 'b');
  t.is(c.call(h, XS_READ, ['/s'], tx).raw, 'a');
});

test('read-modify-write conflicting with another write fails with EAGAIN and changes nothing', (t) => {
  const c = new Core();
  const h = c.open();
  const other = c.open();
  c.write(h, '/counter', '1');
  const tx = start(c, h);
  t.is(c.call(h, XS_READ, ['/counter'], tx).raw, '1');
  c.write(other, '/counter', '5');
  c.write(h, '/counter', '2', tx);
  c.write(h, '/unrelated-new', 'x', tx);
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).err, 'EAGAIN');
  t.is(c.call(h, XS_READ, ['/counter']).raw, '5');
  t.is(c.call(h, XS_READ, ['/unrelated-new']).err, 'ENOENT');
  t.is(c.call(h, XS_READ, ['/counter'], tx).err, 'ENOENT', 'the transaction is gone after a failed commit');
  // The retry succeeds.
  const tx2 = start(c, h);
  const v = Number(c.call(h, XS_READ, ['/counter'], tx2).raw);
  c.write(h, '/counter', String(v + 1), tx2);
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx2).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/counter']).raw, '6');
});

test('writes elsewhere in the store do not conflict, and survive the commit', (t) => {
  const c = new Core();
  const h = c.open();
  const other = c.open();
  c.write(h, '/dir/mine', '1');
  const tx = start(c, h);
  c.call(h, XS_READ, ['/dir/mine'], tx);
  c.write(h, '/dir/mine', '2', tx);
  c.write(other, '/elsewhere', 'e');
  c.write(other, '/dir/theirs', 't');
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/dir/mine']).raw, '2');
  t.is(c.call(h, XS_READ, ['/elsewhere']).raw, 'e');
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/dir']).strings, ['mine', 'theirs']);
});

test('two transactions creating children of the same directory: the second conflicts', (t) => {
  const c = new Core();
  const a = c.open();
  const b = c.open();
  c.call(a, XS_MKDIR, ['/d']);
  const ta = start(c, a);
  const tb = start(c, b);
  c.write(a, '/d/x', '1', ta);
  c.write(b, '/d/y', '2', tb);
  t.is(c.call(a, XS_TRANSACTION_END, ['T'], ta).raw, 'OK\0');
  t.is(c.call(b, XS_TRANSACTION_END, ['T'], tb).err, 'EAGAIN', 'both changed the name list of /d');
  t.deepEqual(c.call(a, XS_DIRECTORY, ['/d']).strings, ['x']);
});

test('reading a node that does not exist yet conflicts with its creation', (t) => {
  const c = new Core();
  const h = c.open();
  const other = c.open();
  c.call(h, XS_MKDIR, ['/p']);
  const tx = start(c, h);
  t.is(c.call(h, XS_READ, ['/p/q'], tx).err, 'ENOENT');
  c.write(other, '/p/q', 'now');
  c.write(h, '/p/r', '', tx);
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).err, 'EAGAIN');
});

test('abort (F) discards; an empty transaction commits', (t) => {
  const c = new Core();
  const h = c.open();
  const tx = start(c, h);
  c.write(h, '/aborted', 'x', tx);
  t.is(c.call(h, XS_TRANSACTION_END, ['F'], tx).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/aborted']).err, 'ENOENT');
  const tx2 = start(c, h);
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx2).raw, 'OK\0');
});

test('rm and set_perms inside a transaction apply at commit', (t) => {
  const c = new Core();
  const h = c.open();
  c.write(h, '/t/a/b', '1');
  c.write(h, '/t/c', '2');
  const tx = start(c, h);
  c.call(h, XS_RM, ['/t/a'], tx);
  c.call(h, XS_SET_PERMS, ['/t/c', 'r0'], tx);
  t.is(c.call(h, XS_READ, ['/t/a/b']).raw, '1');
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).raw, 'OK\0');
  t.is(c.call(h, XS_READ, ['/t/a/b']).err, 'ENOENT');
  t.deepEqual(c.call(h, XS_DIRECTORY, ['/t']).strings, ['c']);
});

test('transaction errors: unknown id ENOENT, nesting EBUSY, bad argument EINVAL, END without one ENOENT', (t) => {
  const c = new Core();
  const h = c.open();
  t.is(c.call(h, XS_READ, ['/tool'], 42).err, 'ENOENT');
  const tx = start(c, h);
  t.is(c.call(h, XS_TRANSACTION_START, [''], tx).err, 'EBUSY');
  t.is(c.call(h, XS_TRANSACTION_END, ['X'], tx).err, 'EINVAL');
  t.is(c.call(h, XS_TRANSACTION_END, ['T']).err, 'ENOENT');
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).raw, 'OK\0', 'EINVAL left the transaction alive');
  const other = c.open();
  const tx2 = start(c, h);
  t.is(c.call(other, XS_READ, ['/tool'], tx2).err, 'ENOENT', "another connection cannot use it");
});

test('watch events of a transaction fire at commit, not before, and not on abort', (t) => {
  const c = new Core();
  const h = c.open();
  const w = c.open();
  c.call(w, XS_WATCH, ['/wt', 'tok']);
  c.events(w);
  const tx = start(c, h);
  c.write(h, '/wt/a', '1', tx);
  c.write(h, '/wt/a', '2', tx);
  t.deepEqual(c.events(w), []);
  c.call(h, XS_TRANSACTION_END, ['T'], tx);
  t.deepEqual(c.events(w), [{ path: '/wt/a', token: 'tok' }], 'one event per changed path');
  const tx2 = start(c, h);
  c.write(h, '/wt/b', '1', tx2);
  c.call(h, XS_TRANSACTION_END, ['F'], tx2);
  t.deepEqual(c.events(w), []);
});

test('a domain may hold at most 10 transactions (ENOSPC), dom0 more', (t) => {
  const c = new Core();
  const h = c.open();
  const d = c.introduce(h, 4);
  for (let i = 0; i < 10; i++) start(c, d);
  t.is(c.call(d, XS_TRANSACTION_START, ['']).err, 'ENOSPC');
  for (let i = 0; i < 20; i++) start(c, h);
  t.pass();
});

test('RESET_WATCHES drops the transactions too', (t) => {
  const c = new Core();
  const h = c.open();
  const tx = start(c, h);
  t.is(c.call(h, XS_RESET_WATCHES, ['']).raw, 'OK\0');
  t.is(c.call(h, XS_TRANSACTION_END, ['T'], tx).err, 'ENOENT');
});

test('a transaction touching more nodes than the quota fails for a domain, at the access and at commit', (t) => {
  const c = new Core({ quotas: { nodes: 1000, nodeSize: 2048, watches: 128, transactions: 10, transactionNodes: 5, nodePerms: 5, pathMax: 2048, outstanding: 20 } });
  const h = c.open();
  c.call(h, XS_MKDIR, ['/local/domain/6']);
  c.call(h, XS_SET_PERMS, ['/local/domain/6', 'n6']);
  const d = c.introduce(h, 6);
  const tx = start(c, d);
  let err: string | undefined;
  for (let i = 0; i < 10 && err === undefined; i++) err = c.call(d, XS_READ, [`n${i}`], tx).err === 'ENOSPC' ? 'ENOSPC' : undefined;
  t.is(err, 'ENOSPC');
  t.is(c.call(d, XS_TRANSACTION_END, ['T'], tx).err, 'ENOMEM', 'a failed transaction cannot commit');
});
