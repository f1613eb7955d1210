/*
 * xl.cfg: the domain configuration file `xl create` reads.
 *
 * The syntax is xl's (libxlu): one `KEY = VALUE` per statement, VALUE a
 * quoted string, a number or a bracketed list of strings; `#` comments;
 * statements end at a newline or `;`; lists may span lines. Unlike xl, an
 * unknown key is an error here: a typo in a teaching tool should not be
 * silently ignored.
 *
 * Device specs follow xl-disk-configuration and xl-network-configuration:
 *   disk = [ 'file:/srv/guest.img,xvda,w' ]     (positional, legacy prefix)
 *   disk = [ 'format=raw,vdev=xvda,access=rw,target=/srv/guest.img' ]
 *   vif  = [ 'mac=00:16:3e:00:00:01,ip=10.0.0.2,bridge=xenbr0,forward=udp:5555:7' ]
 * `forward=udp:HOST:GUEST` is xenport's: netback relays 127.0.0.1:HOST to
 * the guest's UDP port GUEST.
 */

export class ConfigError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type OnEvent = 'destroy' | 'restart' | 'preserve' | 'rename-restart' | 'coredump-destroy' | 'coredump-restart' | 'soft-reset';
const ON_EVENTS: readonly OnEvent[] = ['destroy', 'restart', 'preserve', 'rename-restart', 'coredump-destroy', 'coredump-restart', 'soft-reset'];

export interface DiskSpec {
  /** Host path of the raw image. */
  readonly target: string;
  /** Virtual device name as the guest sees it (xvda, xvdb, ...). */
  readonly vdev: string;
  readonly readOnly: boolean;
  readonly format: 'raw';
}

export interface UdpForward {
  readonly hostPort: number;
  readonly guestPort: number;
}

export interface VifSpec {
  readonly mac: string;
  readonly ip?: string;
  readonly bridge: string;
  readonly forwards: readonly UdpForward[];
}

export interface DomainConfig {
  readonly name: string;
  readonly kernel: string;
  /** MiB */
  readonly memory: number;
  readonly vcpus: number;
  readonly extra: string;
  readonly disks: readonly DiskSpec[];
  readonly vifs: readonly VifSpec[];
  readonly onPoweroff: OnEvent;
  readonly onReboot: OnEvent;
  readonly onCrash: OnEvent;
}

type RawValue = { kind: 'string'; value: string } | { kind: 'number'; value: number } | { kind: 'list'; value: string[] };
interface RawEntry { key: string; value: RawValue; line: number }

/** Tokenize and parse the statements of an xl.cfg text. */
export function parseStatements(text: string, file = 'config'): RawEntry[] {
  const out: RawEntry[] = [];
  let i = 0;
  let line = 1;
  const err = (msg: string): never => { throw new ConfigError(file, line, msg); };
  const skipSpace = (newlines: boolean): void => {
    while (i < text.length) {
      const c = text[i]!;
      if (c === '#') { while (i < text.length && text[i] !== '\n') i++; continue; }
      if (c === '\n') { if (!newlines) return; line++; i++; continue; }
      if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
      return;
    }
  };
  const readString = (): string => {
    const q = text[i]!;
    i++;
    let s = '';
    while (i < text.length && text[i] !== q) {
      if (text[i] === '\n') err('unterminated string');
      if (text[i] === '\\' && i + 1 < text.length) { i++; const e = text[i]!; s += e === 'n' ? '\n' : e === 't' ? '\t' : e; i++; continue; }
      s += text[i]!;
      i++;
    }
    if (i >= text.length) err('unterminated string');
    i++;
    return s;
  };
  const readValue = (): RawValue => {
    const c = text[i];
    if (c === '"' || c === "'") return { kind: 'string', value: readString() };
    if (c === '[') {
      i++;
      const items: string[] = [];
      for (;;) {
        skipSpace(true);
        if (text[i] === ']') { i++; break; }
        if (text[i] === '"' || text[i] === "'") items.push(readString());
        else err(`expected a quoted string or ] in list, found ${JSON.stringify(text[i] ?? 'end of file')}`);
        skipSpace(true);
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; break; }
        err(`expected , or ] in list, found ${JSON.stringify(text[i] ?? 'end of file')}`);
      }
      return { kind: 'list', value: items };
    }
    const m = /^(0x[0-9a-fA-F]+|[0-9]+)/.exec(text.slice(i));
    if (m) { i += m[0].length; return { kind: 'number', value: Number(m[0]) }; }
    return err(`expected a value (string, number or list), found ${JSON.stringify(text.slice(i, i + 10))}`);
  };
  for (;;) {
    skipSpace(true);
    if (i >= text.length) break;
    if (text[i] === ';') { i++; continue; }
    const km = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i));
    if (!km) err(`expected a key, found ${JSON.stringify(text.slice(i, i + 10))}`);
    const key = km![0];
    const keyLine = line;
    i += key.length;
    skipSpace(false);
    if (text[i] !== '=') err(`expected = after ${key}`);
    i++;
    skipSpace(false);
    const value = readValue();
    out.push({ key, value, line: keyLine });
    skipSpace(false);
    if (i < text.length && text[i] !== '\n' && text[i] !== ';') err(`unexpected ${JSON.stringify(text[i])} after value of ${key}`);
  }
  return out;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseDiskSpec(spec: string): DiskSpec | string {
  // As in xl, `target=` must come last and takes the rest of the spec,
  // commas included, so any path can be named.
  let target: string | undefined;
  let head = spec;
  const tm = /(^|,)\s*target=/.exec(spec);
  if (tm) {
    target = spec.slice(tm.index + tm[0].length);
    head = spec.slice(0, tm.index);
  }
  const parts = head === '' ? [] : head.split(',').map((p) => p.trim());
  let vdev: string | undefined;
  let access: string | undefined;
  let format = 'raw';
  const positional: string[] = [];
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq > 0 && /^(target|vdev|access|format|devtype|backendtype)$/.test(p.slice(0, eq))) {
      const k = p.slice(0, eq);
      const v = p.slice(eq + 1);
      if (k === 'target') target = v;
      else if (k === 'vdev') vdev = v;
      else if (k === 'access') access = v;
      else if (k === 'format') format = v;
      else if (k === 'devtype' && v !== 'disk') return `disk devtype ${v} is not supported (only disk)`;
    } else positional.push(p);
  }
  if (positional.length > 0) {
    // Legacy positional form: target, vdev, access (format may prefix the target).
    [target, vdev, access] = [positional[0] ?? target, positional[1] ?? vdev, positional[2] ?? access];
  }
  if (target === undefined || target === '') return 'disk has no target (expected file:PATH)';
  const colon = /^([a-z]+):(.*)$/.exec(target);
  if (colon) {
    const prefix = colon[1]!;
    if (prefix === 'phy') return `disk ${target}: phy: devices are not supported, blkback serves raw image files (use file:PATH)`;
    if (prefix !== 'file' && prefix !== 'raw' && prefix !== 'aio') return `disk ${target}: unknown prefix ${prefix}: (use file:PATH)`;
    target = colon[2]!;
  }
  if (target === '') return 'disk has an empty path';
  if (format !== 'raw') return `disk format ${format} is not supported (only raw)`;
  if (vdev === undefined || !/^xvd[a-z]+$/.test(vdev)) return `disk vdev ${vdev ?? '(none)'} must be xvdX`;
  const a = access ?? 'w';
  if (!/^(r|ro|w|rw)$/.test(a)) return `disk access ${a} must be r, ro, w or rw`;
  return { target, vdev, readOnly: a === 'r' || a === 'ro', format: 'raw' };
}

export function parseVifSpec(spec: string, index: number): VifSpec | string {
  let mac: string | undefined;
  let ip: string | undefined;
  let bridge = 'xenbr0';
  const forwards: UdpForward[] = [];
  for (const raw of spec.split(',')) {
    const p = raw.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    if (eq <= 0) return `vif item ${JSON.stringify(p)} is not key=value`;
    const k = p.slice(0, eq);
    const v = p.slice(eq + 1);
    switch (k) {
      case 'mac':
        if (!MAC_RE.test(v)) return `vif mac ${v} is not a MAC address`;
        mac = v.toLowerCase();
        break;
      case 'ip': {
        const m = IPV4_RE.exec(v);
        if (!m || m.slice(1).some((o) => Number(o) > 255)) return `vif ip ${v} is not an IPv4 address`;
        ip = v;
        break;
      }
      case 'bridge':
        if (!/^[A-Za-z0-9_.-]+$/.test(v)) return `vif bridge ${v} is not a bridge name`;
        bridge = v;
        break;
      case 'forward': {
        const m = /^udp:(\d+):(\d+)$/.exec(v);
        const hp = m ? Number(m[1]) : NaN;
        const gp = m ? Number(m[2]) : NaN;
        if (!m || !(hp > 0 && hp < 65536) || !(gp > 0 && gp < 65536)) return `vif forward ${v} must be udp:HOSTPORT:GUESTPORT`;
        forwards.push({ hostPort: hp, guestPort: gp });
        break;
      }
      case 'model':
      case 'type':
      case 'script':
        break;
      default:
        return `vif key ${k} is not supported`;
    }
  }
  // xl makes up a MAC in Xen's OUI when none is given; ours is deterministic.
  const macAddr = mac ?? `00:16:3e:00:00:${(index + 1).toString(16).padStart(2, '0')}`;
  return ip === undefined ? { mac: macAddr, bridge, forwards } : { mac: macAddr, ip, bridge, forwards };
}

const KNOWN_KEYS = new Set(['name', 'kernel', 'memory', 'vcpus', 'extra', 'disk', 'vif', 'on_poweroff', 'on_reboot', 'on_crash', 'type', 'maxmem']);

/** Parse and validate an xl.cfg text. Throws ConfigError naming file and line. */
export function parseConfig(text: string, file = 'config'): DomainConfig {
  const entries = parseStatements(text, file);
  const seen = new Map<string, RawEntry>();
  for (const e of entries) {
    if (!KNOWN_KEYS.has(e.key)) throw new ConfigError(file, e.line, `unknown key ${e.key} (known: ${[...KNOWN_KEYS].join(', ')})`);
    if (seen.has(e.key)) throw new ConfigError(file, e.line, `${e.key} is set twice (first at line ${seen.get(e.key)!.line})`);
    seen.set(e.key, e);
  }
  const str = (key: string, dflt?: string): string => {
    const e = seen.get(key);
    if (!e) {
      if (dflt === undefined) throw new ConfigError(file, 0, `${key} is required`);
      return dflt;
    }
    if (e.value.kind !== 'string') throw new ConfigError(file, e.line, `${key} must be a quoted string`);
    return e.value.value;
  };
  const num = (key: string, dflt: number): { v: number; line: number } => {
    const e = seen.get(key);
    if (!e) return { v: dflt, line: 0 };
    if (e.value.kind === 'number') return { v: e.value.value, line: e.line };
    if (e.value.kind === 'string' && /^\d+$/.test(e.value.value)) return { v: Number(e.value.value), line: e.line };
    throw new ConfigError(file, e.line, `${key} must be a number`);
  };
  const list = (key: string): { items: string[]; line: number } => {
    const e = seen.get(key);
    if (!e) return { items: [], line: 0 };
    if (e.value.kind !== 'list') throw new ConfigError(file, e.line, `${key} must be a list like [ '...' ]`);
    return { items: e.value.value, line: e.line };
  };
  const onEvent = (key: string, dflt: OnEvent): OnEvent => {
    const v = str(key, dflt);
    if (!(ON_EVENTS as readonly string[]).includes(v)) throw new ConfigError(file, seen.get(key)!.line, `${key} = ${v}: expected one of ${ON_EVENTS.join(', ')}`);
    return v as OnEvent;
  };

  const name = str('name');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new ConfigError(file, seen.get('name')!.line, `name ${JSON.stringify(name)} must be 1-64 letters, digits, _ . -`);
  const type = seen.has('type') ? str('type') : 'pv';
  if (type !== 'pv') throw new ConfigError(file, seen.get('type')!.line, `type ${type}: only pv guests are supported`);
  const kernel = str('kernel');
  const memory = num('memory', 128);
  if (!Number.isInteger(memory.v) || memory.v < 4 || memory.v > 65536) throw new ConfigError(file, memory.line, `memory = ${memory.v}: expected MiB between 4 and 65536`);
  const vcpus = num('vcpus', 1);
  if (!Number.isInteger(vcpus.v) || vcpus.v < 1 || vcpus.v > 32) throw new ConfigError(file, vcpus.line, `vcpus = ${vcpus.v}: expected 1 to 32`);
  const disks: DiskSpec[] = [];
  const diskList = list('disk');
  for (const d of diskList.items) {
    const r = parseDiskSpec(d);
    if (typeof r === 'string') throw new ConfigError(file, diskList.line, r);
    if (disks.some((x) => x.vdev === r.vdev)) throw new ConfigError(file, diskList.line, `disk vdev ${r.vdev} used twice`);
    disks.push(r);
  }
  const vifs: VifSpec[] = [];
  const vifList = list('vif');
  vifList.items.forEach((v, idx) => {
    const r = parseVifSpec(v, idx);
    if (typeof r === 'string') throw new ConfigError(file, vifList.line, r);
    vifs.push(r);
  });
  return {
    name,
    kernel,
    memory: memory.v,
    vcpus: vcpus.v,
    extra: str('extra', ''),
    disks,
    vifs,
    onPoweroff: onEvent('on_poweroff', 'destroy'),
    onReboot: onEvent('on_reboot', 'restart'),
    onCrash: onEvent('on_crash', 'destroy'),
  };
}

function q(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** Render a config back to xl.cfg text (saved images carry it; parseConfig reads it back). */
export function formatConfig(c: DomainConfig): string {
  const lines = [
    `name = ${q(c.name)}`,
    `kernel = ${q(c.kernel)}`,
    `memory = ${c.memory}`,
    `vcpus = ${c.vcpus}`,
  ];
  if (c.extra !== '') lines.push(`extra = ${q(c.extra)}`);
  if (c.disks.length > 0) {
    lines.push(`disk = [ ${c.disks.map((d) => `'format=raw,vdev=${d.vdev},access=${d.readOnly ? 'ro' : 'rw'},target=${d.target}'`).join(', ')} ]`);
  }
  if (c.vifs.length > 0) {
    lines.push(`vif = [ ${c.vifs.map((v) => `'${[`mac=${v.mac}`, ...(v.ip ? [`ip=${v.ip}`] : []), `bridge=${v.bridge}`, ...v.forwards.map((f) => `forward=udp:${f.hostPort}:${f.guestPort}`)].join(',')}'`).join(', ')} ]`);
  }
  lines.push(`on_poweroff = ${q(c.onPoweroff)}`, `on_reboot = ${q(c.onReboot)}`, `on_crash = ${q(c.onCrash)}`);
  return lines.join('\n') + '\n';
}
