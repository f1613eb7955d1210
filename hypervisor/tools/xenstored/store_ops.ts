/*
 * The data requests: READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART,
 * GET_PERMS, SET_PERMS. Each runs on a View: the global tree, or the
 * transaction's own tree when the request carries a transaction id.
 */
import { XENSTORE_PAYLOAD_MAX } from '../../public/io/xs_wire.js';
import type { Draft } from './draft.js';
import { canonicalize, type Canonical } from './path.js';
import {
  PERM_OWNER, PERM_READ, PERM_WRITE, formatPerm, parsePermStrings, rightsOf, settleIgnored,
  type PermEntry, type Perms,
} from './perms.js';
import { isPrivileged, liveAt, requesterOf, rightsOn, type Connection, type PendingFire, type Transaction } from './state.js';
import {
  baseName, childNameBytes, childNamesLength, childPath, lookup, makeNode, ownerDelta, parentPath, postOrder,
  setAt, type XsNode,
} from './tree.js';
import {
  concatBytes, countNuls, firstArgAndRest, fromLatin1, nulStrings, nulTerminated, oneArg, atoi, type XsErr,
} from './wire.js';

export type OpResult = { readonly ok: Uint8Array } | { readonly err: XsErr };

export const OK: OpResult = { ok: fromLatin1('OK\0') };

/** Accounted size of a node, as xenstored counts it for the node-size quota. */
export function nodeSize(node: XsNode, extraChildBytes = 0): number {
  return 16 + 8 * node.perms.length + node.value.length + childNamesLength(node) + extraChildBytes;
}

/** One request's working view of the tree. */
export class View {
  root: XsNode;
  /** The transaction's read set (undefined outside one), copied on the first new path. */
  private reads: ReadonlySet<string> | undefined;
  private ownReads: Set<string> | undefined;
  private readonly queued: PendingFire[] = [];
  readonly privileged: boolean;

  constructor(
    readonly d: Draft,
    readonly conn: Connection,
    readonly tx: Transaction | undefined,
  ) {
    this.root = tx?.root ?? d.root;
    this.reads = tx?.reads;
    this.privileged = isPrivileged(conn);
  }

  canon(raw: string | undefined, allowSpecial = false): Canonical {
    return canonicalize(raw, { domid: this.conn.domid, privileged: this.privileged, pathMax: this.d.options.quotas.pathMax }, allowSpecial);
  }

  get(path: string): XsNode | undefined {
    this.noteRead(path);
    return lookup(this.root, path);
  }

  noteRead(path: string): void {
    if (this.reads === undefined || this.reads.has(path)) return;
    if (this.ownReads === undefined) {
      this.ownReads = new Set(this.reads);
      this.reads = this.ownReads;
    }
    this.ownReads.add(path);
  }

  rights(node: Pick<XsNode, 'perms' | 'generation'>): number {
    return rightsOn(this.d.domainTable, this.conn, node);
  }

  /** Mark dead permission entries of a node about to be rewritten (see perms.ts). */
  settle(perms: Perms, generation: number): Perms {
    return settleIgnored(perms, liveAt(this.d.domainTable, generation));
  }

  /** Put a node (or remove a subtree) at `path`; the parent is rewritten when its name list changes. */
  put(path: string, node: XsNode | undefined): void {
    const parent = path === '/' ? undefined : lookup(this.root, parentPath(path));
    const gen = this.d.nextGen();
    let root = this.root;
    if (parent !== undefined && (node === undefined || !parent.children.has(baseName(path)))) {
      const settled = this.settle(parent.perms, parent.generation);
      if (settled !== parent.perms) root = setAt(root, parentPath(path), { ...parent, perms: settled }, gen);
    }
    this.root = setAt(root, path, node, gen);
  }

  fire(path: string, exact: boolean, oldPerms?: Perms): void {
    if (this.tx !== undefined) this.queued.push({ path, exact });
    else this.d.fire({ path, exact, oldPerms }, this.root);
  }

  /** Nodes the requesting domain owns, counting this transaction's changes. */
  ownedNow(): number {
    const domid = this.conn.domid;
    const global = this.d.ownedBy(domid);
    if (this.tx === undefined) return global + (ownerDelta(this.d.root, this.root).get(domid) ?? 0);
    return global + (ownerDelta(this.tx.base, this.root).get(domid) ?? 0);
  }

  /** Store the view's changes into the draft; the request's result passes through (or becomes ENOSPC). */
  finish(res: OpResult): OpResult {
    const tx = this.tx;
    if (tx === undefined) {
      if ('ok' in res) this.d.setRoot(this.root);
      return res;
    }
    const overQuota = !this.privileged && this.reads !== undefined && this.reads.size > this.d.options.quotas.transactionNodes;
    if (overQuota) {
      this.storeTx({ ...tx, failed: true });
      return { err: 'ENOSPC' };
    }
    if ('err' in res) {
      // What a failed request read still counts for conflicts, as in xenstored.
      if (this.ownReads !== undefined) this.storeTx({ ...tx, reads: this.ownReads });
      return res;
    }
    this.storeTx({
      ...tx,
      root: this.root,
      reads: this.reads ?? tx.reads,
      fires: this.queued.length === 0 ? tx.fires : [...tx.fires, ...this.queued],
    });
    return res;
  }

  private storeTx(tx: Transaction): void {
    const c = this.d.conn(this.conn.id) ?? this.conn;
    const txs = new Map(c.transactions);
    txs.set(tx.id, tx);
    this.d.putConn({ ...c, transactions: txs });
  }
}

/**
 * Fetch a node the connection needs `want` rights on. A missing node is
 * ENOENT only if the nearest existing ancestor grants some of those rights;
 * otherwise EACCES, so a domain learns nothing about places it may not look.
 */
function checkedGet(v: View, path: string, want: number): { node: XsNode } | { err: XsErr } {
  const node = v.get(path);
  if (node !== undefined) return (v.rights(node) & want) === want ? { node } : { err: 'EACCES' };
  let p = path;
  let anc: XsNode | undefined;
  do {
    p = parentPath(p);
    anc = v.get(p);
  } while (anc === undefined && p !== '/');
  if (anc === undefined) return { err: 'EACCES' };
  return (v.rights(anc) & want) !== 0 ? { err: 'ENOENT' } : { err: 'EACCES' };
}

/** Create `path` and its missing parents, inheriting permissions from the nearest existing ancestor. */
function createNode(v: View, path: string, value: Uint8Array): OpResult {
  const missing: string[] = [];
  let p = path;
  let anc: XsNode | undefined;
  while (anc === undefined) {
    if (p === '/') return { err: 'EINVAL' };
    missing.unshift(baseName(p));
    p = parentPath(p);
    anc = v.get(p);
  }
  const q = v.d.options.quotas;
  if (!v.privileged && v.ownedNow() + missing.length > q.nodes) return { err: 'ENOSPC' };
  const inherited = v.settle(anc.perms, anc.generation);
  const owner = inherited[0];
  const perms: Perms = v.privileged || owner === undefined
    ? inherited
    : [{ id: v.conn.domid, perms: owner.perms }, ...inherited.slice(1)];
  let node = makeNode(perms, v.d.nextGen(), value);
  if (!v.privileged && nodeSize(node) > q.nodeSize) return { err: 'ENOSPC' };
  for (let i = missing.length - 1; i > 0; i--) {
    node = makeNode(perms, v.d.nextGen(), undefined, new Map([[missing[i] as string, node]]));
  }
  const first = missing[0] as string;
  if (!v.privileged && nodeSize(anc, first.length + 1) > q.nodeSize) return { err: 'ENOSPC' };
  v.put(childPath(p, first), node);
  return OK;
}

function pathArg(v: View, payload: Uint8Array, allowSpecial = false): Canonical {
  return v.canon(oneArg(payload), allowSpecial);
}

export function opRead(v: View, payload: Uint8Array): OpResult {
  const c = pathArg(v, payload);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_READ);
  return 'err' in r ? r : { ok: r.node.value };
}

export function opDirectory(v: View, payload: Uint8Array): OpResult {
  const c = pathArg(v, payload);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_READ);
  return 'err' in r ? r : { ok: childNameBytes(r.node) };
}

/**
 * DIRECTORY_PART path|offset: the node's generation, then as many whole
 * names from byte `offset` of the name list as fit; an empty name (a
 * second NUL) marks the end of the list.
 */
export function opDirectoryPart(v: View, payload: Uint8Array): OpResult {
  if (countNuls(payload) !== 2) return { err: 'EINVAL' };
  const [rawPath, rawOff] = nulTerminated(payload);
  const c = v.canon(rawPath);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_READ);
  if ('err' in r) return r;
  const names = childNameBytes(r.node);
  const off = atoi(rawOff ?? '') >>> 0;
  const gen = fromLatin1(`${r.node.generation}\0`);
  if (off >= names.length) return { ok: concatBytes([gen, new Uint8Array(1)]) };
  const room = XENSTORE_PAYLOAD_MAX - gen.length - 1;
  let len = 0;
  while (off + len < names.length) {
    const end = names.indexOf(0, off + len);
    const nameLen = (end < 0 ? names.length : end) - (off + len);
    if (len + nameLen >= room) break;
    len += nameLen + 1;
  }
  const parts = [gen, names.subarray(off, off + len)];
  if (off + len >= names.length) parts.push(new Uint8Array(1));
  return { ok: concatBytes(parts) };
}

export function opWrite(v: View, payload: Uint8Array): OpResult {
  const a = firstArgAndRest(payload);
  if (a === undefined) return { err: 'EINVAL' };
  const c = v.canon(a.arg);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_WRITE);
  if ('node' in r) {
    const node: XsNode = { ...r.node, value: a.rest, perms: v.settle(r.node.perms, r.node.generation), generation: v.d.nextGen() };
    if (!v.privileged && nodeSize(node) > v.d.options.quotas.nodeSize) return { err: 'ENOSPC' };
    v.put(c.path, node);
  } else if (r.err === 'ENOENT') {
    const made = createNode(v, c.path, a.rest);
    if ('err' in made) return made;
  } else {
    return r;
  }
  v.fire(c.path, false);
  return OK;
}

export function opMkdir(v: View, payload: Uint8Array): OpResult {
  const c = pathArg(v, payload);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_WRITE);
  if ('node' in r) return OK;
  if (r.err !== 'ENOENT') return r;
  const made = createNode(v, c.path, new Uint8Array(0));
  if ('err' in made) return made;
  v.fire(c.path, false);
  return OK;
}

export function opRm(v: View, payload: Uint8Array): OpResult {
  const c = pathArg(v, payload);
  if ('err' in c) return c;
  const r = checkedGet(v, c.path, PERM_WRITE);
  if ('err' in r) {
    // Removing what is not there is fine, as long as its parent is.
    if (r.err !== 'ENOENT') return r;
    return v.get(parentPath(c.path)) !== undefined ? OK : { err: 'ENOENT' };
  }
  if (c.path === '/') return { err: 'EINVAL' };
  if (v.get(parentPath(c.path)) === undefined) return { err: 'EINVAL' };
  // Children first, each firing only watches set on itself; the removed node last, for its watchers and those above.
  for (const p of postOrder(r.node, c.path)) {
    v.noteRead(p);
    v.fire(p, p !== c.path, lookup(v.root, p)?.perms);
  }
  v.put(c.path, undefined);
  return OK;
}

export function opGetPerms(v: View, payload: Uint8Array): OpResult {
  const c = pathArg(v, payload, true);
  if ('err' in c) return c;
  if (c.path.startsWith('@')) {
    const perms = v.d.specialPerms(c.path);
    if (perms === undefined) return (v.rights(v.d.root) & PERM_READ) !== 0 ? { err: 'ENOENT' } : { err: 'EACCES' };
    if ((rightsOf(requesterOf(v.conn), perms, () => true) & PERM_READ) === 0) return { err: 'EACCES' };
    return { ok: nulStrings(perms.map(formatPerm)) };
  }
  const r = checkedGet(v, c.path, PERM_READ);
  return 'err' in r ? r : { ok: nulStrings(r.node.perms.map(formatPerm)) };
}

export function opSetPerms(v: View, payload: Uint8Array): OpResult {
  const n = countNuls(payload);
  if (n < 2) return { err: 'EINVAL' };
  const a = firstArgAndRest(payload);
  if (a === undefined) return { err: 'EINVAL' };
  if (!v.privileged && n - 1 > v.d.options.quotas.nodePerms) return { err: 'ENOSPC' };
  const parsed = parsePermStrings(a.rest);
  if (parsed === undefined || parsed.length === 0) return { err: 'EINVAL' };
  // Entries for domains the hypervisor does not know are kept but never apply.
  const exists = (id: number): boolean => v.d.domain(id) !== undefined || v.d.options.domainExists(id);
  const perms: PermEntry[] = parsed.map((p) => (exists(p.id) ? p : { ...p, ignore: true }));
  if (perms[0]?.ignore === true) return { err: 'ENOENT' };
  const c = v.canon(a.arg, true);
  if ('err' in c) return c;
  const want = PERM_WRITE | PERM_OWNER;
  let oldPerms: Perms;
  if (c.path.startsWith('@')) {
    const cur = v.d.specialPerms(c.path);
    if (cur === undefined) return (v.rights(v.d.root) & want) !== 0 ? { err: 'ENOENT' } : { err: 'EACCES' };
    if ((rightsOf(requesterOf(v.conn), cur, () => true) & want) !== want) return { err: 'EACCES' };
    if (!v.privileged && perms[0]?.id !== cur[0]?.id) return { err: 'EPERM' };
    oldPerms = cur;
    registerDomains(v, perms);
    v.d.setSpecialPerms(c.path, perms);
  } else {
    const r = checkedGet(v, c.path, want);
    if ('err' in r) return r;
    if (!v.privileged && perms[0]?.id !== r.node.perms[0]?.id) return { err: 'EPERM' };
    oldPerms = r.node.perms;
    registerDomains(v, perms);
    v.put(c.path, { ...r.node, perms, generation: v.d.nextGen() });
  }
  v.fire(c.path, false, oldPerms);
  return OK;
}

/** xenstored learns of a domain the first time a permission names it. */
function registerDomains(v: View, perms: readonly PermEntry[]): void {
  for (const p of perms) {
    if (p.ignore === true || v.d.domain(p.id) !== undefined) continue;
    v.d.putDomain({ domid: p.id, generation: v.d.generation, introduced: false, shutdown: false });
  }
}
