/*
 * The xenstore server core: a pure function of (state, connection, request)
 * to (new state, messages, effects).
 *
 * No sockets, rings or timers here. Transports turn bytes into XsMsg and
 * deliver what a step sends; the host acts on effects (attach or detach a
 * domain's ring, write a log line). Peer input never makes the core throw:
 * every problem is an XS_ERROR reply with one of xenstored's error names.
 */
import {
  XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_RM, XS_SET_PERMS,
  XS_SET_TARGET, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_TYPE_NAMES, XS_UNWATCH, XS_WATCH, XS_WRITE,
  XENSTORE_PAYLOAD_MAX,
} from '../../public/io/xs_wire.js';
import { opControl } from './control_ops.js';
import { domainGone, domainShutdown, opGetDomainPath, opIntroduce, opIsDomainIntroduced, opRelease, opResume, opSetTarget } from './domain_ops.js';
import { Draft } from './draft.js';
import { isPrivileged, type ConnId, type Connection, type Delivery, type StepResult, type Transaction, type XsState } from './state.js';
import {
  View, opDirectory, opDirectoryPart, opGetPerms, opMkdir, opRead, opRm, opSetPerms, opWrite, type OpResult,
} from './store_ops.js';
import { opTransactionEnd, opTransactionStart } from './tx_ops.js';
import { opResetWatches, opUnwatch, opWatch } from './watch_ops.js';
import { errorReply, replyTo, type XsMsg } from './wire.js';

export * from './state.js';

interface RequestKind {
  /** Only dom0 and host connections may send it. */
  readonly priv?: true;
  /** The header's tx_id is ignored. */
  readonly noTx?: true;
  readonly run: (d: Draft, conn: Connection, tx: Transaction | undefined, msg: XsMsg) => OpResult & { after?: Delivery[] };
}

const onView = (op: (v: View, payload: Uint8Array) => OpResult): RequestKind['run'] => (d, conn, tx, msg) => {
  const v = new View(d, conn, tx);
  return v.finish(op(v, msg.payload));
};

const REQUESTS: ReadonlyMap<number, RequestKind> = new Map<number, RequestKind>([
  [XS_CONTROL, { priv: true, run: (d, _c, _t, m) => opControl(d, m.payload) }],
  [XS_DIRECTORY, { run: onView(opDirectory) }],
  [XS_READ, { run: onView(opRead) }],
  [XS_GET_PERMS, { run: onView(opGetPerms) }],
  [XS_WATCH, { noTx: true, run: (d, c, _t, m) => opWatch(d, c, m.payload) }],
  [XS_UNWATCH, { noTx: true, run: (d, c, _t, m) => opUnwatch(d, c, m.payload) }],
  [XS_TRANSACTION_START, { run: (d, c, t) => opTransactionStart(d, c, t) }],
  [XS_TRANSACTION_END, { run: (d, c, t, m) => opTransactionEnd(d, c, t, m.payload) }],
  [XS_INTRODUCE, { priv: true, run: (d, _c, _t, m) => opIntroduce(d, m.payload) }],
  [XS_RELEASE, { priv: true, run: (d, _c, _t, m) => opRelease(d, m.payload) }],
  [XS_GET_DOMAIN_PATH, { run: (_d, _c, _t, m) => opGetDomainPath(m.payload) }],
  [XS_WRITE, { run: onView(opWrite) }],
  [XS_MKDIR, { run: onView(opMkdir) }],
  [XS_RM, { run: onView(opRm) }],
  [XS_SET_PERMS, { run: onView(opSetPerms) }],
  [XS_IS_DOMAIN_INTRODUCED, { priv: true, run: (d, _c, _t, m) => opIsDomainIntroduced(d, m.payload) }],
  [XS_RESUME, { priv: true, run: (d, _c, _t, m) => opResume(d, m.payload) }],
  [XS_SET_TARGET, { priv: true, run: (d, _c, _t, m) => opSetTarget(d, m.payload) }],
  [XS_RESET_WATCHES, { run: (d, c) => opResetWatches(d, c) }],
  [XS_DIRECTORY_PART, { run: onView(opDirectoryPart) }],
]);

/** Name of a request type for logs. */
export function typeName(type: number): string {
  return XS_TYPE_NAMES[type] ?? `type ${type}`;
}

/** Handle one request from connection `connId`. */
export function handleMessage(state: XsState, connId: ConnId, msg: XsMsg): StepResult {
  const conn = state.conns.get(connId);
  if (conn === undefined || conn.ignored) return { state, out: [], effects: [] };
  const d = new Draft(state);
  const kind = REQUESTS.get(msg.type);
  let res: OpResult & { after?: Delivery[] };
  if (kind === undefined) {
    res = { err: 'ENOSYS' };
  } else if (kind.priv === true && !isPrivileged(conn)) {
    res = { err: 'EACCES' };
  } else {
    const tx = kind.noTx === true || msg.txId === 0 ? undefined : conn.transactions.get(msg.txId);
    res = kind.noTx !== true && msg.txId !== 0 && tx === undefined ? { err: 'ENOENT' } : kind.run(d, conn, tx, msg);
  }
  if ('ok' in res && res.ok.length > XENSTORE_PAYLOAD_MAX) res = { err: 'E2BIG' };
  // A failed request changes nothing but the transaction it poisoned; its events are not sent.
  if ('err' in res) return failed(state, d, connId, msg, res.err);
  d.send(connId, replyTo(msg, msg.type, res.ok));
  for (const a of res.after ?? []) d.send(a.conn, a.msg);
  return { state: d.finish(), out: d.out, effects: d.effects };
}

function failed(state: XsState, d: Draft, connId: ConnId, msg: XsMsg, err: Parameters<typeof errorReply>[1]): StepResult {
  let next = state;
  const before = state.conns.get(connId);
  const after = d.conn(connId);
  if (before !== undefined && after !== undefined && msg.txId !== 0) {
    // The request's transaction keeps what it read, a poisoned flag, or its end.
    const txBefore = before.transactions.get(msg.txId);
    const txAfter = after.transactions.get(msg.txId);
    if (txAfter !== txBefore) {
      const txs = new Map(before.transactions);
      if (txAfter === undefined) txs.delete(msg.txId);
      else txs.set(msg.txId, txAfter);
      const conns = new Map(state.conns);
      conns.set(connId, { ...before, transactions: txs });
      next = { ...state, conns };
    }
  }
  return { state: next, out: [{ conn: connId, msg: errorReply(msg, err) }], effects: d.effects.filter((e) => e.kind === 'log') };
}

/** A new host connection (unix socket or in-process client): dom0's rights. */
export function openConnection(state: XsState, kind: 'socket' | 'local' = 'socket'): { state: XsState; conn: ConnId } {
  const d = new Draft(state);
  const id = d.newConnId();
  d.putConn({ id, domid: 0, kind, watches: [], transactions: new Map(), nextTxId: 1, ignored: false });
  return { state: d.finish(), conn: id };
}

/**
 * A connection's transport went away. Host connections vanish; a domain's
 * connection is kept but ignored (its watches and transactions dropped)
 * until the domain is released, re-introduced or reconnects its ring.
 */
export function closeConnection(state: XsState, connId: ConnId): XsState {
  const conn = state.conns.get(connId);
  if (conn === undefined) return state;
  const d = new Draft(state);
  if (conn.kind === 'domain') d.putConn({ ...conn, watches: [], transactions: new Map(), ignored: true });
  else d.dropConn(connId);
  return d.finish();
}

/** The domain asked to reconnect its ring (or was re-introduced): it starts over with nothing. */
export function resetConnection(state: XsState, connId: ConnId): XsState {
  const conn = state.conns.get(connId);
  if (conn === undefined) return state;
  const d = new Draft(state);
  d.putConn({ ...conn, watches: [], transactions: new Map(), ignored: false });
  return d.finish();
}

/** The hypervisor reports that a domain shut down. */
export function reportDomainShutdown(state: XsState, domid: number): StepResult {
  const d = new Draft(state);
  domainShutdown(d, domid);
  return { state: d.finish(), out: d.out, effects: d.effects };
}

/** The hypervisor reports that a domain no longer exists. */
export function reportDomainGone(state: XsState, domid: number): StepResult {
  const d = new Draft(state);
  domainGone(d, domid);
  return { state: d.finish(), out: d.out, effects: d.effects };
}
