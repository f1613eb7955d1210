/*
 * XS_CONTROL: xenstored's command channel (privileged only).
 *
 * Commands: check (verify the store's bookkeeping), log [on|off], print
 * <text>, quota [set <name> <value> | <domid>], help. The replies follow
 * xenstored's text formats, NUL-terminated.
 */
import type { Draft } from './draft.js';
import { QUOTA_NAMES, type Quotas } from './state.js';
import { walk } from './tree.js';
import { atoi, fromLatin1, nulTerminated } from './wire.js';
import { OK, type OpResult } from './store_ops.js';

const COMMANDS: readonly (readonly [string, string])[] = [
  ['check', ''],
  ['log', '[on|off]'],
  ['print', '<string>'],
  ['quota', '[set <name> <val>|<domid>]'],
  ['help', ''],
];

function text(s: string): OpResult {
  return { ok: fromLatin1(s + '\0') };
}

export function opControl(d: Draft, payload: Uint8Array): OpResult {
  const strings = nulTerminated(payload);
  const cmd = strings[0];
  if (cmd === undefined) return { err: 'EINVAL' };
  const args = strings.slice(1);
  switch (cmd) {
    case 'check':
      return args.length === 0 ? check(d) : { err: 'EINVAL' };
    case 'log':
      if (args.length === 0) return text(`Log switch settings:\nlogging : ${d.logging ? 'on' : 'off'}\n`);
      if (args.length !== 1 || (args[0] !== 'on' && args[0] !== 'off')) return { err: 'EINVAL' };
      d.logging = args[0] === 'on';
      return OK;
    case 'print':
      if (args.length !== 1) return { err: 'EINVAL' };
      d.effects.push({ kind: 'log', text: `control: ${args[0] ?? ''}` });
      return OK;
    case 'quota':
      return quota(d, args);
    case 'help':
      if (args.length !== 0) return { err: 'EINVAL' };
      return text(COMMANDS.map(([c, p]) => `${c.padEnd(15)} ${p}\n`).join(''));
    default:
      return { err: 'EINVAL' };
  }
}

function quota(d: Draft, args: string[]): OpResult {
  const q = d.options.quotas;
  if (args.length === 0) {
    return text('Quota settings:\n' + QUOTA_NAMES.map(([k, name, descr]) => `${name.padEnd(17)}: ${String(q[k]).padStart(8)} ${descr}\n`).join(''));
  }
  if (args[0] === 'set') {
    const entry = QUOTA_NAMES.find(([, name]) => name === args[1]);
    const val = atoi(args[2] ?? '');
    if (args.length !== 3 || entry === undefined || val < 1) return { err: 'EINVAL' };
    d.setOptions({ ...d.options, quotas: { ...q, [entry[0]]: val } });
    return OK;
  }
  if (args.length !== 1) return { err: 'EINVAL' };
  const domid = atoi(args[0] ?? '') >>> 0;
  const dom = d.domain(domid);
  if (dom === undefined) return { err: 'ENOENT' };
  const conn = dom.conn === undefined ? undefined : d.conn(dom.conn);
  const used: Partial<Record<keyof Quotas, number>> = {
    nodes: d.ownedBy(domid),
    watches: conn?.watches.length ?? 0,
    transactions: conn?.transactions.size ?? 0,
  };
  return text(`Domain ${domid}:\n` + QUOTA_NAMES.map(([k, name]) => `${name.padEnd(17)}: ${String(used[k] ?? 0).padStart(8)} (max ${String(q[k]).padStart(8)})\n`).join(''));
}

/** The per-owner node counts must match the tree. */
function check(d: Draft): OpResult {
  const counts = new Map<number, number>();
  walk(d.root, '/', (node) => {
    const id = node.perms[0]?.id;
    if (id !== undefined) counts.set(id, (counts.get(id) ?? 0) + 1);
  });
  for (const [id, n] of counts) {
    if (d.ownedBy(id) !== n) {
      d.effects.push({ kind: 'log', text: `check: domain ${id} owns ${n} nodes, accounted ${d.ownedBy(id)}` });
      return { err: 'EIO' };
    }
  }
  return OK;
}
