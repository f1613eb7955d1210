/*
 * Path syntax: which names are valid and how relative names resolve.
 *
 * Valid characters are ASCII letters, digits and -/_@. A name not starting
 * with / or @ is relative to the connection's home, /local/domain/<domid>
 * (host sockets count as dom0, as in xenstored). A name starting with @ is a
 * special watch name, accepted only where the request allows it. A trailing
 * slash (except "/" itself), a doubled slash and an over-long path are
 * errors. Over-long means: more than XENSTORE_ABS_PATH_MAX bytes for anyone,
 * and for an unprivileged domain more than the path-max quota counted after
 * /local/domain/<id>/ (its own nodes get the whole budget).
 */
import { XENSTORE_ABS_PATH_MAX } from '../../public/io/xs_wire.js';
import { domainPath } from './state.js';
import type { XsErr } from './wire.js';

const VALID = /^[A-Za-z0-9\-/_@]*$/;
const LOCAL_DOMAIN = /^\/local\/domain\/\d{1,5}\//;

export interface PathRules {
  readonly domid: number;
  readonly privileged: boolean;
  readonly pathMax: number;
}

export type Canonical = { readonly path: string; readonly relative: boolean } | { readonly err: XsErr };

export function canonicalize(raw: string | undefined, rules: PathRules, allowSpecial: boolean): Canonical {
  if (raw === undefined || !VALID.test(raw)) return { err: 'EINVAL' };
  if (raw.startsWith('@') && !allowSpecial) return { err: 'EINVAL' };
  const relative = !raw.startsWith('/') && !raw.startsWith('@');
  const path = relative ? `${domainPath(rules.domid)}/${raw}` : raw;
  if (path.length > 1 && path.endsWith('/')) return { err: 'EINVAL' };
  if (path.includes('//')) return { err: 'EINVAL' };
  if (path.length > XENSTORE_ABS_PATH_MAX) return { err: 'EINVAL' };
  if (!rules.privileged) {
    const local = LOCAL_DOMAIN.exec(path);
    const counted = path.length - (local?.[0].length ?? 0);
    if (counted > rules.pathMax) return { err: 'EINVAL' };
  }
  return { path, relative };
}
