/*
 * WATCH, UNWATCH and RESET_WATCHES.
 *
 * A watch is a (path, token) pair on one connection. Registering fires it
 * once straight away (the path as given, and the token), which is how
 * clients learn the watch is live. Relative watch paths resolve against
 * the connection's home and their events come back relative too.
 */
import { XS_WATCH_EVENT } from '../../public/io/xs_wire.js';
import type { Draft } from './draft.js';
import { canonicalize } from './path.js';
import { isPrivileged, type Connection, type Delivery } from './state.js';
import { nulStrings, nulTerminated, type XsErr } from './wire.js';
import { OK, type OpResult } from './store_ops.js';

function watchArgs(d: Draft, conn: Connection, payload: Uint8Array): { path: string; token: string; prefixLen: number } | { err: XsErr } {
  const strings = nulTerminated(payload);
  if (strings.length !== 2) return { err: 'EINVAL' };
  const [raw, token] = strings as [string, string];
  const c = canonicalize(raw, { domid: conn.domid, privileged: isPrivileged(conn), pathMax: d.options.quotas.pathMax }, true);
  if ('err' in c) return c;
  return { path: c.path, token, prefixLen: c.relative ? c.path.length - raw.length : 0 };
}

/** The result of WATCH: the reply, then the initial event. */
export function opWatch(d: Draft, conn: Connection, payload: Uint8Array): OpResult & { after?: Delivery[] } {
  const a = watchArgs(d, conn, payload);
  if ('err' in a) return a;
  if (conn.watches.some((w) => w.path === a.path && w.token === a.token)) return { err: 'EEXIST' };
  if (!isPrivileged(conn) && conn.watches.length >= d.options.quotas.watches) return { err: 'E2BIG' };
  d.putConn({ ...conn, watches: [...conn.watches, a] });
  const event = { type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload: nulStrings([a.path.slice(a.prefixLen), a.token]) };
  return { ...OK, after: [{ conn: conn.id, msg: event }] };
}

export function opUnwatch(d: Draft, conn: Connection, payload: Uint8Array): OpResult {
  const a = watchArgs(d, conn, payload);
  if ('err' in a) return a;
  const i = conn.watches.findIndex((w) => w.path === a.path && w.token === a.token);
  if (i < 0) return { err: 'ENOENT' };
  d.putConn({ ...conn, watches: conn.watches.filter((_, j) => j !== i) });
  return OK;
}

/** Forget every watch and transaction of the connection. */
export function opResetWatches(d: Draft, conn: Connection): OpResult {
  d.putConn({ ...conn, watches: [], transactions: new Map() });
  return OK;
}
