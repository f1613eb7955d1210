/*
 * Domain management: INTRODUCE, RELEASE, RESUME, SET_TARGET,
 * IS_DOMAIN_INTRODUCED, GET_DOMAIN_PATH, and what the host reports about
 * domains (shut down, destroyed).
 *
 * Introducing a domain creates its connection in the core and asks the host
 * (an 'introduce' effect) to attach the domain's ring to it. Releasing or
 * destroying it drops the connection with its watches and transactions,
 * removes the nodes the domain owns (or hands them to dom0 when the core
 * keeps orphans), fires @releaseDomain and asks the host to detach the ring.
 */
import type { Draft } from './draft.js';
import {
  DOMID_FIRST_RESERVED, DOMID_SELF, SPECIAL_INTRODUCE, SPECIAL_RELEASE, domainPath,
  type Connection, type Domain,
} from './state.js';
import { lookup, postOrder, setAt, walk } from './tree.js';
import { fromLatin1, nulTerminated, oneArg, atoi } from './wire.js';
import { OK, type OpResult } from './store_ops.js';

function fireSpecial(d: Draft, name: string): void {
  d.fire({ path: name, exact: true }, d.root);
}

export function opIntroduce(d: Draft, payload: Uint8Array): OpResult {
  const args = nulTerminated(payload);
  if (args.length < 3) return { err: 'EINVAL' };
  const domid = atoi(args[0] ?? '') >>> 0;
  const mfn = args[1] ?? '';
  const port = atoi(args[2] ?? '') >>> 0;
  if (port === 0) return { err: 'EINVAL' };
  if (domid === 0 || domid >= DOMID_FIRST_RESERVED) return { err: 'EINVAL' };
  const dom = d.domain(domid);
  const old = dom?.conn === undefined ? undefined : d.conn(dom.conn);
  if (dom?.introduced === true && old !== undefined) {
    // Introducing again resets the connection: the ring starts over.
    d.putConn({ ...old, watches: [], transactions: new Map(), ignored: false });
    d.putDomain({ ...dom, mfn, port });
    d.effects.push({ kind: 'introduce', domid, conn: old.id, mfn, port, reintroduce: true });
    return OK;
  }
  const conn: Connection = {
    id: d.newConnId(), domid, kind: 'domain', watches: [], transactions: new Map(), nextTxId: 1, ignored: false,
  };
  d.putConn(conn);
  d.putDomain({ domid, generation: dom?.generation ?? d.generation, introduced: true, conn: conn.id, shutdown: false, mfn, port });
  d.effects.push({ kind: 'introduce', domid, conn: conn.id, mfn, port, reintroduce: false });
  fireSpecial(d, SPECIAL_INTRODUCE);
  return OK;
}

/** The introduced domain named by a one-argument request (never dom0). */
function introducedArg(d: Draft, payload: Uint8Array): Domain | { err: 'EINVAL' | 'ENOENT' } {
  const arg = oneArg(payload);
  if (arg === undefined) return { err: 'EINVAL' };
  const domid = atoi(arg) >>> 0;
  if (domid === 0) return { err: 'EINVAL' };
  const dom = d.domain(domid);
  if (dom === undefined || !dom.introduced) return { err: 'ENOENT' };
  return dom;
}

export function opRelease(d: Draft, payload: Uint8Array): OpResult {
  const dom = introducedArg(d, payload);
  if ('err' in dom) return dom;
  destroyDomain(d, dom);
  return OK;
}

export function opResume(d: Draft, payload: Uint8Array): OpResult {
  const dom = introducedArg(d, payload);
  if ('err' in dom) return dom;
  d.putDomain({ ...dom, shutdown: false });
  return OK;
}

export function opSetTarget(d: Draft, payload: Uint8Array): OpResult {
  const args = nulTerminated(payload);
  if (args.length < 2) return { err: 'EINVAL' };
  const find = (s: string): Connection | { err: 'EINVAL' | 'ENOENT' } => {
    const dom = d.domain(atoi(s) >>> 0);
    if (dom === undefined || !dom.introduced) return { err: 'ENOENT' };
    const c = dom.conn === undefined ? undefined : d.conn(dom.conn);
    return c ?? { err: 'EINVAL' };
  };
  const conn = find(args[0] ?? '');
  if ('err' in conn) return conn;
  const target = find(args[1] ?? '');
  if ('err' in target) return target;
  d.putConn({ ...conn, target: target.domid });
  return OK;
}

export function opIsDomainIntroduced(d: Draft, payload: Uint8Array): OpResult {
  const arg = oneArg(payload);
  if (arg === undefined) return { err: 'EINVAL' };
  const domid = atoi(arg) >>> 0;
  const yes = domid === DOMID_SELF || d.domain(domid)?.introduced === true;
  return { ok: fromLatin1(yes ? 'T\0' : 'F\0') };
}

export function opGetDomainPath(payload: Uint8Array): OpResult {
  const arg = oneArg(payload);
  if (arg === undefined) return { err: 'EINVAL' };
  return { ok: fromLatin1(`${domainPath(atoi(arg))}\0`) };
}

/** The domain shut down (crash, poweroff, suspend): @releaseDomain, once until RESUME. */
export function domainShutdown(d: Draft, domid: number): void {
  const dom = d.domain(domid);
  if (dom === undefined || !dom.introduced || dom.shutdown) return;
  d.putDomain({ ...dom, shutdown: true });
  fireSpecial(d, SPECIAL_RELEASE);
}

/** The domain is gone: forget it as RELEASE does. */
export function domainGone(d: Draft, domid: number): void {
  const dom = d.domain(domid);
  if (dom === undefined || domid === 0) return;
  if (dom.introduced) destroyDomain(d, dom);
  else d.dropDomain(domid);
}

function destroyDomain(d: Draft, dom: Domain): void {
  const conn = dom.conn === undefined ? undefined : d.conn(dom.conn);
  if (conn !== undefined) {
    // Its own watches must not fire while its nodes go.
    d.dropConn(conn.id);
    d.effects.push({ kind: 'release', domid: dom.domid, conn: conn.id });
  }
  d.dropDomain(dom.domid);
  removeOwnedNodes(d, dom.domid);
  fireSpecial(d, SPECIAL_RELEASE);
}

/** Nodes owned by a domain that is gone: removed with their subtrees, or given to dom0. */
function removeOwnedNodes(d: Draft, domid: number): void {
  const hits: string[] = [];
  walk(d.root, '/', (node, path) => {
    if (node.perms[0]?.id !== domid) return true;
    hits.push(path);
    return d.options.keepOrphans;
  });
  for (const path of hits) {
    const node = lookup(d.root, path);
    if (node === undefined) continue;
    const owner = node.perms[0];
    if (d.options.keepOrphans || path === '/') {
      const perms = [{ id: 0, perms: owner?.perms ?? 0 }, ...node.perms.slice(1)];
      d.setRoot(setAt(d.root, path, { ...node, perms, generation: d.nextGen() }, d.generation));
      continue;
    }
    for (const p of postOrder(node, path)) d.fire({ path: p, exact: p !== path }, d.root);
    d.setRoot(setAt(d.root, path, undefined, d.nextGen()));
  }
}
