/*
 * TRANSACTION_START and TRANSACTION_END.
 *
 * A transaction starts from a snapshot of the global tree (one pointer: the
 * tree is persistent) and works on its own copy. It remembers every path it
 * read. Committing succeeds only if none of those nodes changed globally in
 * the meantime (compared by generation, a missing node being a generation of
 * its own); otherwise the commit answers EAGAIN and the caller retries. A
 * write elsewhere in the store does not disturb it. Watch events of the
 * transaction's changes fire at commit, and only then.
 */
import type { Draft } from './draft.js';
import { isPrivileged, type Connection, type Transaction } from './state.js';
import { generationOf, lookup, mergeCommit, ownerDelta } from './tree.js';
import { fromLatin1, oneArg } from './wire.js';
import { OK, type OpResult } from './store_ops.js';

export function opTransactionStart(d: Draft, conn: Connection, current: Transaction | undefined): OpResult {
  // Transactions do not nest.
  if (current !== undefined) return { err: 'EBUSY' };
  if (!isPrivileged(conn) && conn.transactions.size >= d.options.quotas.transactions) return { err: 'ENOSPC' };
  // Ids are per connection, never 0 (that means "no transaction"), never one in use.
  let id = conn.nextTxId >>> 0;
  while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
  const tx: Transaction = { id, base: d.root, root: d.root, reads: new Set(), fires: [], failed: false };
  const txs = new Map(conn.transactions);
  txs.set(id, tx);
  d.putConn({ ...conn, transactions: txs, nextTxId: (id + 1) >>> 0 });
  return { ok: fromLatin1(`${id}\0`) };
}

export function opTransactionEnd(d: Draft, conn: Connection, tx: Transaction | undefined, payload: Uint8Array): OpResult {
  const arg = oneArg(payload);
  if (arg !== 'T' && arg !== 'F') return { err: 'EINVAL' };
  if (tx === undefined) return { err: 'ENOENT' };
  // The transaction ends here whatever the outcome.
  const txs = new Map(conn.transactions);
  txs.delete(tx.id);
  d.putConn({ ...conn, transactions: txs });
  if (arg === 'F') return OK;
  if (tx.failed) return { err: 'ENOMEM' };
  for (const path of tx.reads) {
    if (generationOf(d.root, path) !== generationOf(tx.base, path)) return { err: 'EAGAIN' };
  }
  if (!isPrivileged(conn)) {
    const added = ownerDelta(tx.base, tx.root).get(conn.domid) ?? 0;
    if (added > 0 && d.ownedBy(conn.domid) + added > d.options.quotas.nodes) return { err: 'ENOSPC' };
  }
  const merged = mergeCommit(d.root, tx.base, tx.root, () => d.nextGen()) ?? d.root;
  d.setRoot(merged);
  // One event per changed path; a subtree event wins over an exact one.
  const fires = new Map<string, boolean>();
  for (const f of tx.fires) fires.set(f.path, (fires.get(f.path) ?? true) && f.exact);
  for (const [path, exact] of fires) {
    d.fire({ path, exact, oldPerms: lookup(tx.base, path)?.perms }, d.root);
  }
  return OK;
}
