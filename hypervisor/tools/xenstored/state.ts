/*
 * The whole state of the xenstore server core, as one immutable value.
 *
 * The core (core.ts) is a pure function from (state, connection, request)
 * to (new state, messages to deliver, effects for the host). Nothing in the
 * state refers to a socket, a ring or a timer: a connection is a number the
 * transports route by, and a domain's ring is the host's business (see the
 * 'introduce' effect).
 */
import type { Perms } from './perms.js';
import { PERM_NONE, rightsOf, type Requester } from './perms.js';
import { makeNode, type XsNode } from './tree.js';
import type { XsMsg } from './wire.js';
import { XENSTORE_REL_PATH_MAX } from '../../public/io/xs_wire.js';

export type ConnId = number;

/** Xen's default limits (xenstored's hard quotas); they apply to unprivileged domains only. */
export interface Quotas {
  /** Nodes a domain may own. */
  readonly nodes: number;
  /** Bytes of one node: header, permissions, value and child names. */
  readonly nodeSize: number;
  /** Watches per connection. */
  readonly watches: number;
  /** Concurrent transactions per connection. */
  readonly transactions: number;
  /** Distinct nodes one transaction may touch. */
  readonly transactionNodes: number;
  /** Permission entries per node. */
  readonly nodePerms: number;
  /** Path length, counted from /local/domain/<id>/ for a domain's own nodes. */
  readonly pathMax: number;
  /** Replies queued but not yet taken by the domain before its ring is no longer read. */
  readonly outstanding: number;
}

export const DEFAULT_QUOTAS: Quotas = Object.freeze({
  nodes: 1000,
  nodeSize: 2048,
  watches: 128,
  transactions: 10,
  transactionNodes: 1024,
  nodePerms: 5,
  pathMax: XENSTORE_REL_PATH_MAX,
  outstanding: 20,
});

/** QUOTA names as xenstore-control knows them. */
export const QUOTA_NAMES: readonly (readonly [keyof Quotas, string, string])[] = [
  ['nodes', 'nodes', 'Nodes per domain'],
  ['watches', 'watches', 'Watches per domain'],
  ['outstanding', 'outstanding', 'Outstanding requests per domain'],
  ['transactions', 'transactions', 'Active transactions per domain'],
  ['transactionNodes', 'transaction-nodes', 'Max. number of accessed nodes per transaction'],
  ['nodePerms', 'node-permissions', 'Max. number of permissions per node'],
  ['pathMax', 'path-max', 'Max. length of a node path'],
  ['nodeSize', 'node-size', 'Max. size of a node'],
];

export interface Watch {
  /** Canonical (absolute or @special) path. */
  readonly path: string;
  readonly token: string;
  /** Characters stripped from event paths: the watch was given relative to the domain's home. */
  readonly prefixLen: number;
}

/** A watch event still to be fired: by the request itself, or at commit for a transaction. */
export interface PendingFire {
  readonly path: string;
  /** Exact events match only watches on this very path (children of a removed node). */
  readonly exact: boolean;
  /** Permissions the node had before, so losing read access still reports the change. */
  readonly oldPerms?: Perms | undefined;
}

export interface Transaction {
  readonly id: number;
  /** The global tree when the transaction started. */
  readonly base: XsNode;
  /** The transaction's own view. */
  readonly root: XsNode;
  /** Paths read; the commit fails with EAGAIN if any changed globally meanwhile. */
  readonly reads: ReadonlySet<string>;
  readonly fires: readonly PendingFire[];
  /** Set when an operation inside failed half-way: the commit then fails. */
  readonly failed: boolean;
}

export interface Connection {
  readonly id: ConnId;
  /** 0 for host sockets, the domain's id for its ring. */
  readonly domid: number;
  readonly kind: 'socket' | 'domain' | 'local';
  readonly watches: readonly Watch[];
  readonly transactions: ReadonlyMap<number, Transaction>;
  readonly nextTxId: number;
  /** SET_TARGET: this connection acts for that domain. */
  readonly target?: number | undefined;
  /** A disconnected ring (hostile or broken): nothing is read or sent. */
  readonly ignored: boolean;
}

export interface Domain {
  readonly domid: number;
  /** Generation when xenstored learned of the domain: permissions older than this do not apply to it. */
  readonly generation: number;
  readonly introduced: boolean;
  readonly conn?: ConnId | undefined;
  readonly shutdown: boolean;
  /** As given in INTRODUCE (the store page's frame and event channel). */
  readonly mfn?: string | undefined;
  readonly port?: number | undefined;
}

export interface CoreOptions {
  readonly quotas: Quotas;
  /** Keep a released domain's nodes, owned by dom0, instead of removing them. */
  readonly keepOrphans: boolean;
  /** Whether a domain exists (the hypervisor's answer); permissions for others are ignored. */
  readonly domainExists: (domid: number) => boolean;
}

export interface XsState {
  readonly root: XsNode;
  /** The global generation counter: last generation handed out. */
  readonly generation: number;
  /** The special watch nodes (@introduceDomain, @releaseDomain): only their permissions. */
  readonly special: ReadonlyMap<string, Perms>;
  readonly conns: ReadonlyMap<ConnId, Connection>;
  readonly nextConnId: ConnId;
  readonly domains: ReadonlyMap<number, Domain>;
  /** Nodes owned per domain, for the nodes quota. */
  readonly owned: ReadonlyMap<number, number>;
  readonly options: CoreOptions;
  /** XS_CONTROL log switch (the host decides where logging goes). */
  readonly logging: boolean;
}

export type Effect =
  /** A domain was introduced (or re-introduced: its ring must be reset): attach its ring. */
  | { readonly kind: 'introduce'; readonly domid: number; readonly conn: ConnId; readonly mfn: string; readonly port: number; readonly reintroduce: boolean }
  /** A domain was released or destroyed: detach its ring. */
  | { readonly kind: 'release'; readonly domid: number; readonly conn: ConnId }
  /** CONTROL print and log: text for the host's log. */
  | { readonly kind: 'log'; readonly text: string };

export interface Delivery {
  readonly conn: ConnId;
  readonly msg: XsMsg;
}

export interface StepResult {
  readonly state: XsState;
  /** Messages to send, in order (replies and watch events). */
  readonly out: readonly Delivery[];
  readonly effects: readonly Effect[];
}

export const DOMID_SELF = 0x7ff0;
export const DOMID_FIRST_RESERVED = 0x7ff0;
export const SPECIAL_INTRODUCE = '@introduceDomain';
export const SPECIAL_RELEASE = '@releaseDomain';

export function initialState(options: Partial<CoreOptions> = {}): XsState {
  const dom0Only: Perms = [{ id: 0, perms: PERM_NONE }];
  // "/" with /tool/xenstored, as xenstored starts; dom0 owns all of it.
  const xenstoredNode = makeNode(dom0Only, 3);
  const tool = makeNode(dom0Only, 2, undefined, new Map([['xenstored', xenstoredNode]]));
  const root = makeNode(dom0Only, 1, undefined, new Map([['tool', tool]]));
  return {
    root,
    generation: 3,
    special: new Map([[SPECIAL_INTRODUCE, dom0Only], [SPECIAL_RELEASE, dom0Only]]),
    conns: new Map(),
    nextConnId: 1,
    domains: new Map([[0, { domid: 0, generation: 0, introduced: true, shutdown: false }]]),
    owned: new Map([[0, 3]]),
    options: {
      quotas: options.quotas ?? DEFAULT_QUOTAS,
      keepOrphans: options.keepOrphans ?? false,
      domainExists: options.domainExists ?? (() => true),
    },
    logging: true,
  };
}

export function domainPath(domid: number): string {
  return `/local/domain/${domid >>> 0}`;
}

/** dom0 and host connections may do anything; quotas do not apply to them. */
export function isPrivileged(conn: Connection): boolean {
  return conn.domid === 0;
}

export function requesterOf(conn: Connection): Requester {
  return { domid: conn.domid, privileged: isPrivileged(conn), target: conn.target };
}

/** Whether a permission entry for `id` still applies to a node written at generation `gen`. */
export function liveAt(state: Pick<XsState, 'domains'>, gen: number): (id: number) => boolean {
  return (id) => {
    const d = state.domains.get(id);
    return d !== undefined && d.generation <= gen;
  };
}

/** Rights of a connection on a node. */
export function rightsOn(state: Pick<XsState, 'domains'>, conn: Connection, node: Pick<XsNode, 'perms' | 'generation'>): number {
  return rightsOf(requesterOf(conn), node.perms, liveAt(state, node.generation));
}
