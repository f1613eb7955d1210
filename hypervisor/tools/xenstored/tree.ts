/*
 * The store: a persistent (immutable, path-copied) tree of nodes.
 *
 * A change makes new objects for the changed node and its ancestors and
 * shares every other subtree, so a transaction's snapshot is one pointer and
 * comparing two versions skips shared subtrees by identity.
 *
 * Each node carries a generation: a number from the store's global counter,
 * renewed whenever the node's own content changes: its value, its
 * permissions or the list of its children's names (a child added or removed;
 * not a change inside a child). Transactions detect conflicts by comparing
 * generations, and DIRECTORY_PART reports the generation of the listed node.
 * Children keep their creation order, which is the order DIRECTORY lists.
 */
import type { Perms } from './perms.js';
import { fromLatin1 } from './wire.js';

export interface XsNode {
  readonly value: Uint8Array;
  readonly perms: Perms;
  readonly children: ReadonlyMap<string, XsNode>;
  readonly generation: number;
}

/** Generation of a node that does not exist. */
export const NO_GENERATION = -1;

const NO_CHILDREN: ReadonlyMap<string, XsNode> = new Map();
const EMPTY = new Uint8Array(0);

export function makeNode(perms: Perms, generation: number, value: Uint8Array = EMPTY, children: ReadonlyMap<string, XsNode> = NO_CHILDREN): XsNode {
  return { value, perms, children, generation };
}

/** "/" -> []; "/a/b" -> ["a", "b"]. Paths are canonical (checked by the caller). */
export function segmentsOf(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function lookup(root: XsNode, path: string): XsNode | undefined {
  let node: XsNode | undefined = root;
  for (const seg of segmentsOf(path)) {
    node = node.children.get(seg);
    if (node === undefined) return undefined;
  }
  return node;
}

export function generationOf(root: XsNode, path: string): number {
  return lookup(root, path)?.generation ?? NO_GENERATION;
}

/**
 * Put `node` at `path` (undefined removes it and its subtree). The parent
 * must exist; when a child appears or disappears the parent's name list
 * changes, so it takes generation `parentGen`. Returns the new root, or the
 * old one unchanged if the parent is missing.
 */
export function setAt(root: XsNode, path: string, node: XsNode | undefined, parentGen: number): XsNode {
  const segs = segmentsOf(path);
  if (segs.length === 0) return node ?? root;
  const rec = (cur: XsNode, depth: number): XsNode | undefined => {
    const name = segs[depth] as string;
    if (depth === segs.length - 1) {
      const had = cur.children.has(name);
      if (node === undefined && !had) return cur;
      const children = new Map(cur.children);
      if (node === undefined) children.delete(name);
      else children.set(name, node);
      return { value: cur.value, perms: cur.perms, children, generation: had && node !== undefined ? cur.generation : parentGen };
    }
    const child = cur.children.get(name);
    if (child === undefined) return undefined;
    const next = rec(child, depth + 1);
    if (next === undefined) return undefined;
    if (next === child) return cur;
    const children = new Map(cur.children);
    children.set(name, next);
    return { value: cur.value, perms: cur.perms, children, generation: cur.generation };
  };
  return rec(root, 0) ?? root;
}

/** The name list as xenstored stores it: every name followed by a NUL. */
export function childNameBytes(node: XsNode): Uint8Array {
  let s = '';
  for (const name of node.children.keys()) s += name + '\0';
  return fromLatin1(s);
}

export function childNamesLength(node: XsNode): number {
  let n = 0;
  for (const name of node.children.keys()) n += name.length + 1;
  return n;
}

/** Visit `node` and its descendants, parents before children; return false to skip a subtree. */
export function walk(node: XsNode, path: string, visit: (node: XsNode, path: string) => boolean | void): void {
  if (visit(node, path) === false) return;
  for (const [name, child] of node.children) walk(child, childPath(path, name), visit);
}

/** Paths of a subtree, children before their parent (the order removal reports them). */
export function postOrder(node: XsNode, path: string, out: string[] = []): string[] {
  for (const [name, child] of node.children) postOrder(child, childPath(path, name), out);
  out.push(path);
  return out;
}

/**
 * Node-count changes per owner between two versions of a subtree: +1 for a
 * node that appeared, -1 for one that vanished, both when its owner changed.
 * Shared subtrees are skipped, so the cost follows the size of the change.
 */
export function ownerDelta(before: XsNode | undefined, after: XsNode | undefined, acc: Map<number, number> = new Map()): Map<number, number> {
  if (before === after) return acc;
  const bump = (id: number | undefined, d: number): void => {
    if (id === undefined) return;
    acc.set(id, (acc.get(id) ?? 0) + d);
  };
  if (before === undefined || after === undefined) {
    const gone = before ?? after;
    if (gone !== undefined) walk(gone, '', (n) => bump(n.perms[0]?.id, before === undefined ? 1 : -1));
    return acc;
  }
  const ob = before.perms[0]?.id;
  const oa = after.perms[0]?.id;
  if (ob !== oa) {
    bump(ob, -1);
    bump(oa, 1);
  }
  if (before.children !== after.children) {
    for (const [name, b] of before.children) ownerDelta(b, after.children.get(name), acc);
    for (const [name, a] of after.children) if (!before.children.has(name)) ownerDelta(undefined, a, acc);
  }
  return acc;
}

/**
 * Commit a transaction: apply what the transaction changed between `base`
 * (its snapshot) and `tx` (its view) onto the current global tree `global`.
 * A node whose generation changed in the transaction is taken from the
 * transaction with a fresh generation from `nextGen`; every other node is
 * the global one, so concurrent changes elsewhere survive. The caller has
 * checked that everything the transaction read is unchanged globally, which
 * makes the two views agree wherever they meet.
 */
export function mergeCommit(global: XsNode | undefined, base: XsNode | undefined, tx: XsNode | undefined, nextGen: () => number): XsNode | undefined {
  if (tx === base) return global;
  if (tx === undefined) return undefined;
  const changed = base === undefined || tx.generation !== base.generation;
  const names = changed || global === undefined ? tx.children : global.children;
  const children = new Map<string, XsNode>();
  for (const name of names.keys()) {
    const merged = mergeCommit(global?.children.get(name), base?.children.get(name), tx.children.get(name), nextGen);
    if (merged !== undefined) children.set(name, merged);
  }
  if (changed || global === undefined) return { value: tx.value, perms: tx.perms, children, generation: nextGen() };
  return { value: global.value, perms: global.perms, children, generation: global.generation };
}
