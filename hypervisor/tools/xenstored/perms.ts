/*
 * Node permissions, as xenstored keeps them.
 *
 * A node's permission list is never empty. Entry 0 names the owner and, by
 * its letter, what every domain not listed afterwards may do. Entries 1..n
 * grant a specific domain n(one), r(ead), w(rite) or b(oth). The owner, a
 * privileged connection (dom0, host sockets) and a domain whose SET_TARGET
 * target is the owner get everything, including the owner bit that
 * SET_PERMS requires.
 *
 * Entries naming a domain that no longer exists (or was created after the
 * node was last written) are ignored, so a new domain reusing a domid does
 * not inherit its predecessor's rights. Once ignored, an entry stays ignored
 * (the flag is kept when the node is rewritten or its perms are inherited).
 */
import { latin1 } from './wire.js';

export const PERM_NONE = 0;
export const PERM_READ = 1;
export const PERM_WRITE = 2;
export const PERM_BOTH = PERM_READ | PERM_WRITE;
/** Only in computed rights: the connection may change the permissions. */
export const PERM_OWNER = 8;
export const PERM_ALL = PERM_READ | PERM_WRITE | PERM_OWNER;

export interface PermEntry {
  readonly id: number;
  /** PERM_NONE, PERM_READ, PERM_WRITE or PERM_BOTH. */
  readonly perms: number;
  /** Set once the entry's domain has gone (see the header comment). */
  readonly ignore?: true;
}

/** Never empty: [0] is the owner. */
export type Perms = readonly PermEntry[];

const LETTERS = ['n', 'r', 'w', 'b'] as const;

export function formatPerm(p: PermEntry): string {
  return `${LETTERS[p.perms & PERM_BOTH] ?? 'n'}${p.id >>> 0}`;
}

/** C's strtol(s, &end, 0) requiring the whole string: decimal, 0x hex or 0 octal. */
function parseWholeInt(s: string): number | undefined {
  const m = /^[ \t\n\r\f\v]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2] ?? '';
  let v: number;
  if (/^0[xX]/.test(body)) v = parseInt(body.slice(2), 16);
  else if (body.length > 1 && body.startsWith('0')) v = parseInt(body.slice(1), 8);
  else v = parseInt(body, 10);
  if (!Number.isFinite(v)) return undefined;
  return (m[1] === '-' ? -v : v) >>> 0;
}

/** Parse `<letter><domid>`; undefined for anything else. */
export function parsePerm(s: string): PermEntry | undefined {
  const letter = s[0];
  const perms = letter === 'n' ? PERM_NONE : letter === 'r' ? PERM_READ : letter === 'w' ? PERM_WRITE : letter === 'b' ? PERM_BOTH : -1;
  if (perms < 0) return undefined;
  const id = parseWholeInt(s.slice(1));
  if (id === undefined) return undefined;
  return { id, perms };
}

/** Parse the NUL-separated permission strings of SET_PERMS. */
export function parsePermStrings(bytes: Uint8Array): PermEntry[] | undefined {
  const out: PermEntry[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 0) continue;
    const p = parsePerm(latin1(bytes.subarray(start, i)));
    if (p === undefined) return undefined;
    out.push(p);
    start = i + 1;
  }
  return out;
}

/** Who is asking: enough of a connection to compute its rights. */
export interface Requester {
  readonly domid: number;
  readonly privileged: boolean;
  readonly target?: number | undefined;
}

/**
 * Rights of `who` on a node with `perms`. `live(id)` says whether a non-owner
 * entry for domain `id` still counts (see the header comment).
 */
export function rightsOf(who: Requester, perms: Perms, live: (id: number) => boolean): number {
  const owner = perms[0];
  if (owner === undefined) return who.privileged ? PERM_ALL : PERM_NONE;
  if (who.privileged || owner.id === who.domid || (who.target !== undefined && owner.id === who.target)) return PERM_ALL;
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i];
    if (e === undefined || e.ignore === true || !live(e.id)) continue;
    if (e.id === who.domid || (who.target !== undefined && e.id === who.target)) return e.perms & PERM_BOTH;
  }
  return owner.perms & PERM_BOTH;
}

/** The same list with every dead non-owner entry marked ignored (unchanged list when none is). */
export function settleIgnored(perms: Perms, live: (id: number) => boolean): Perms {
  let out: PermEntry[] | undefined;
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i];
    if (e === undefined || e.ignore === true || live(e.id)) continue;
    out ??= perms.slice();
    out[i] = { id: e.id, perms: e.perms, ignore: true };
  }
  return out ?? perms;
}

export function samePerms(a: Perms, b: Perms): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined || x.id !== y.id || x.perms !== y.perms || x.ignore !== y.ignore) return false;
  }
  return true;
}
