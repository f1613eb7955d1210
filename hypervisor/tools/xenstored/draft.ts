/*
 * A draft of the next state, used while one request is handled.
 *
 * Handlers change the draft; the input state is never touched (maps are
 * copied on first change), so the core stays a pure function. The draft also
 * collects what the step sends, in order, and the effects for the host.
 */
import { XS_WATCH_EVENT, XENSTORE_PAYLOAD_MAX } from '../../public/io/xs_wire.js';
import { PERM_READ, rightsOf, type Perms } from './perms.js';
import {
  requesterOf, type ConnId, type Connection, type Delivery, type Domain, type Effect, type PendingFire,
  type XsState, liveAt, rightsOn,
} from './state.js';
import { lookup, ownerDelta, parentPath, type XsNode } from './tree.js';
import { nulStrings, type XsMsg } from './wire.js';

export class Draft {
  root: XsNode;
  generation: number;
  logging: boolean;
  readonly out: Delivery[] = [];
  readonly effects: Effect[] = [];
  private special: ReadonlyMap<string, Perms>;
  private conns: ReadonlyMap<ConnId, Connection>;
  private connsOwned = false;
  private nextConnId: ConnId;
  private domains: ReadonlyMap<number, Domain>;
  private domainsOwned = false;
  private owned: ReadonlyMap<number, number>;
  private opts: XsState['options'];

  constructor(state: XsState) {
    this.root = state.root;
    this.generation = state.generation;
    this.logging = state.logging;
    this.special = state.special;
    this.conns = state.conns;
    this.nextConnId = state.nextConnId;
    this.domains = state.domains;
    this.owned = state.owned;
    this.opts = state.options;
  }

  get options(): XsState['options'] {
    return this.opts;
  }

  setOptions(opts: XsState['options']): void {
    this.opts = opts;
  }

  finish(): XsState {
    return {
      root: this.root,
      generation: this.generation,
      special: this.special,
      conns: this.conns,
      nextConnId: this.nextConnId,
      domains: this.domains,
      owned: this.owned,
      options: this.opts,
      logging: this.logging,
    };
  }

  nextGen(): number {
    this.generation += 1;
    return this.generation;
  }

  // -------------------------------------------------------------------------
  // Connections and domains

  conn(id: ConnId): Connection | undefined {
    return this.conns.get(id);
  }

  allConns(): Iterable<Connection> {
    return this.conns.values();
  }

  putConn(c: Connection): void {
    if (!this.connsOwned) {
      this.conns = new Map(this.conns);
      this.connsOwned = true;
    }
    (this.conns as Map<ConnId, Connection>).set(c.id, c);
  }

  dropConn(id: ConnId): void {
    if (!this.conns.has(id)) return;
    if (!this.connsOwned) {
      this.conns = new Map(this.conns);
      this.connsOwned = true;
    }
    (this.conns as Map<ConnId, Connection>).delete(id);
  }

  newConnId(): ConnId {
    const id = this.nextConnId;
    this.nextConnId += 1;
    return id;
  }

  domain(domid: number): Domain | undefined {
    return this.domains.get(domid);
  }

  putDomain(dom: Domain): void {
    if (!this.domainsOwned) {
      this.domains = new Map(this.domains);
      this.domainsOwned = true;
    }
    (this.domains as Map<number, Domain>).set(dom.domid, dom);
  }

  dropDomain(domid: number): void {
    if (!this.domains.has(domid)) return;
    if (!this.domainsOwned) {
      this.domains = new Map(this.domains);
      this.domainsOwned = true;
    }
    (this.domains as Map<number, Domain>).delete(domid);
  }

  /** The view of the state permission checks need. */
  get domainTable(): { readonly domains: ReadonlyMap<number, Domain> } {
    return { domains: this.domains };
  }

  specialPerms(path: string): Perms | undefined {
    return this.special.get(path);
  }

  setSpecialPerms(path: string, perms: Perms): void {
    const m = new Map(this.special);
    m.set(path, perms);
    this.special = m;
  }

  // -------------------------------------------------------------------------
  // The global tree

  /** Replace the global tree, keeping the per-owner node counts in step. */
  setRoot(root: XsNode): void {
    if (root === this.root) return;
    const delta = ownerDelta(this.root, root);
    this.root = root;
    if (delta.size === 0) return;
    const owned = new Map(this.owned);
    for (const [id, d] of delta) {
      const n = (owned.get(id) ?? 0) + d;
      if (n > 0) owned.set(id, n);
      else owned.delete(id);
    }
    this.owned = owned;
  }

  ownedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  // -------------------------------------------------------------------------
  // Output

  send(conn: ConnId, msg: XsMsg): void {
    this.out.push({ conn, msg });
  }

  /**
   * Fire the watches matching a change, now. Permissions are judged against
   * `permRoot` (the tree in which the node is visible: before a removal,
   * after anything else): a connection hears of a change to a node it may
   * read, whose parent it may read, or that it could read before.
   */
  fire(f: PendingFire, permRoot: XsNode): void {
    for (const c of this.conns.values()) {
      if (c.ignored || c.watches.length === 0) continue;
      if (!this.watchPermitted(c, f, permRoot)) continue;
      for (const w of c.watches) {
        const hit = f.exact ? w.path === f.path : isChild(f.path, w.path);
        if (!hit) continue;
        const payload = nulStrings([f.path.slice(w.prefixLen), w.token]);
        // xenstored never sends an event that would exceed the payload limit.
        if (payload.length > XENSTORE_PAYLOAD_MAX) continue;
        this.send(c.id, { type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload });
      }
    }
  }

  private watchPermitted(c: Connection, f: PendingFire, permRoot: XsNode): boolean {
    const who = requesterOf(c);
    if (who.privileged) return true;
    if (f.oldPerms !== undefined && (rightsOf(who, f.oldPerms, () => true) & PERM_READ) !== 0) return true;
    const tbl = this.domainTable;
    if (f.path.startsWith('@')) {
      const perms = this.special.get(f.path);
      if (perms !== undefined && (rightsOf(who, perms, liveAt(tbl, this.generation)) & PERM_READ) !== 0) return true;
      return (rightsOn(tbl, c, permRoot) & PERM_READ) !== 0;
    }
    const node = lookup(permRoot, f.path);
    if (node === undefined) return false;
    if ((rightsOn(tbl, c, node) & PERM_READ) !== 0) return true;
    const parent = lookup(permRoot, parentPath(f.path));
    return parent !== undefined && (rightsOn(tbl, c, parent) & PERM_READ) !== 0;
  }
}

/** Is `path` the watched path or below it? Everything is below "/". */
export function isChild(path: string, watched: string): boolean {
  if (watched === '/') return true;
  if (!path.startsWith(watched)) return false;
  return path.length === watched.length || path[watched.length] === '/';
}
