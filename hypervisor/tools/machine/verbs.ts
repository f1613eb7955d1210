/*
 * The control verbs of the machine daemon (control.sock), over a
 * MachineHost. Each verb checks its arguments (they come from a peer
 * process), names domains by name or id, and fails with one clear line.
 *
 *   status    pid, uptime, memory, tsc, clock, domains, images
 *   info      `xl info`-like facts of the machine
 *   list      `xl list` rows (name, id, mem, vcpus, state, time)
 *   create    {config, paused}: build a domain -> {domid}
 *   console   {dom}: stream output, take input; "\x1d" (Ctrl-]) detaches
 *   dmesg     the hypervisor's console ring
 *   pause, unpause, destroy {dom}
 *   shutdown  {dom, via: xenstore|ctrl_if, wait}
 *   network-ping  {dom, timeout_ms?}: ICMP echo from dom0 (10.0.0.1) to the
 *             guest's address -> {ip, seq, ttl, bytes, rtt_ns, rtt_ms, line}
 *   network-info  bridges, dom0's ARP cache, heartbeats per source, the
 *             gratuitous ARP log, vifs, vbds, devices, forwards (JSON)
 *   save      {dom, file, checkpoint?, paused?, via?: evtchn|xenstore|ctrl_if, timeout_ms?}:
 *             suspend the guest, write the image (temp name, then rename),
 *             destroy it or (-c/-p) resume it -> {domid, via, bytes, pages, outcome, ...}
 *   restore   {file, paused?}: a domain from an image -> {domid, name}
 *   p2m       {dom}: the guest's P2M as `pfn mfn` lines
 *   migrate   {dom, target: HOST:PORT, via?, timeout_ms?}: live-migrate the
 *             domain to a migrate-receive there (migrate.ts); each round as
 *             a JSON data line {round, pages, phase} -> the summary
 *   migrate-receive  {listen?: [HOST:]PORT, paused?, timeout_ms?}: listen
 *             (default 127.0.0.1, any free port; a data line `listening
 *             HOST:PORT` once it does), take one migration -> {domid, name, ...}
 *             For both, the client going away before the permission to go
 *             abandons the migration (the source domain runs on).
 *             With checkpointed: one checkpointed stream; data lines
 *             `checkpoint N`; the domain started from the last complete
 *             checkpoint -> {domid, name, checkpoint, ended, why?}
 *   remus     {dom, target, interval_ms?, checkpoints?, via?, timeout_ms?}:
 *             checkpoint the running domain to a `migrate-receive -r`
 *             (migrate.ts); each checkpoint a JSON data line {n, pages, last};
 *             the client going away stops it at the next checkpoint
 *   stop      destroy every domain and stop the daemon (after replying)
 */
import os from 'node:os';
import type { KernelImage } from '../../public/cpu.js';
import { domid as toDomId } from '../../public/types.js';
import { HYPERVISOR_VIRT_START } from '../../public/arch-x86_64.js';
import { ControlError, type StreamChannel, type VerbHandler } from './control.js';
import { ConfigError, formatConfig, parseConfig, type DomainConfig } from '../xl/config.js';
import { BuildError } from '../builder/errors.js';
import { XsError } from '../xenstored/client.js';
import { ToolstackError, type MachineHost } from './host.js';
import { migrateDomain, receiveCheckpointed, receiveMigration, remusDomain } from './migrate.js';
import { MigrateWireError, formatHostPort, parseHostPort, type HostPort } from './migrate-wire.js';

export interface VerbContext {
  readonly host: MachineHost;
  readonly dir: string;
  /** Ask the daemon to stop once the current reply is out. */
  requestStop(): void;
  /** Write what the hypervisor logged since last time to machine.log. */
  flushLog(): void;
}

const MiB = 2 ** 20;
const ICMP_ECHO_HEADER_BYTES = 8;

function str(args: Record<string, unknown>, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v === '') throw new ControlError(`missing argument ${key}`);
  return v;
}

/** A config as xl sent it (JSON), checked again: the peer is another process. */
export function configFromWire(v: unknown): DomainConfig {
  if (typeof v !== 'object' || v === null) throw new ControlError('create: no config given');
  const c = v as Record<string, unknown>;
  const isStr = (k: string): boolean => typeof c[k] === 'string';
  const isNum = (k: string): boolean => typeof c[k] === 'number';
  const bad = ['name', 'kernel', 'extra', 'onPoweroff', 'onReboot', 'onCrash'].filter((k) => !isStr(k))
    .concat(['memory', 'vcpus'].filter((k) => !isNum(k)))
    .concat(['disks', 'vifs'].filter((k) => !Array.isArray(c[k])));
  if (bad.length > 0) throw new ControlError(`create: malformed config (${bad.join(', ')})`);
  try {
    // Round-trip through the xl.cfg parser: the daemon applies the same rules xl does.
    return parseConfig(formatConfig(c as unknown as DomainConfig), `config of ${String(c['name'])}`);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof TypeError) throw new ControlError(`create: ${e.message}`);
    throw e;
  }
}

function address(text: string, opts: { readonly defaultHost?: string; readonly allowZero?: boolean }): HostPort {
  try {
    return parseHostPort(text, opts);
  } catch (e) {
    if (e instanceof MigrateWireError) throw new ControlError(e.message);
    throw e;
  }
}

/** An optional `timeout_ms` argument: whole ms, 1..600000. */
function timeoutArg(args: Record<string, unknown>, verb: string): number | undefined {
  const ms = args['timeout_ms'];
  if (ms !== undefined && !(typeof ms === 'number' && Number.isInteger(ms) && ms > 0 && ms <= 600_000)) {
    throw new ControlError(`${verb}: timeout_ms must be 1..600000`);
  }
  return ms;
}

/** Run `fn`, turning toolstack and builder failures into one-line control errors. */
async function oneLine<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ToolstackError || e instanceof BuildError) throw new ControlError(e.message);
    if (e instanceof XsError) throw new ControlError(`xenstore: ${e.message}`);
    throw e;
  }
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return s;
}

function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** `xl console`: until Ctrl-], the client going away, or the console closing (domain gone). */
function console_(ctx: VerbContext, domid: number, stream: StreamChannel): Promise<null> {
  const h = ctx.host;
  return new Promise((resolve, reject) => {
    let done = false;
    let detach = (): void => undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      detach();
      resolve(null);
    };
    const att = h.consoled.attach(toDomId(domid), { onData: (d) => stream.data(latin1(d)), onClose: finish });
    if (att === undefined) {
      reject(new ControlError(`domain ${domid} has no console`));
      return;
    }
    detach = att.detach;
    if (att.backlog.length > 0) stream.data(latin1(att.backlog));
    const input = (chunk: string): void => {
      if (chunk.length === 0) return;
      h.consoled.write(toDomId(domid), latin1Bytes(chunk));
      h.m.poke();
    };
    stream.onInput((chunk) => {
      const cut = chunk.indexOf('\x1d');
      if (cut < 0) return input(chunk);
      input(chunk.slice(0, cut));
      finish();
    });
    stream.onClose(finish);
  });
}

export function xenInfo(h: MachineHost, images: readonly KernelImage[]): Record<string, string | number> {
  const mem = h.memory();
  const m = h.m;
  return {
    host: os.hostname(),
    release: os.release(),
    machine: 'x86_64',
    nr_cpus: 1,
    max_cpu_id: 0,
    nr_nodes: 1,
    cores_per_socket: 1,
    threads_per_core: 1,
    cpu_mhz: Math.round(m.clock.tscKhz / 1000),
    tsc_khz: m.clock.tscKhz,
    clock: m.clock.kind,
    virt_caps: 'pv',
    total_memory: Math.floor((mem.totalPages * 4096) / MiB),
    free_memory: Math.floor((mem.freePages * 4096) / MiB),
    xen_major: 4,
    xen_minor: 17,
    xen_extra: '.0-xenport',
    xen_version: '4.17.0-xenport',
    xen_caps: 'xen-3.0-x86_64',
    xen_scheduler: 'round-robin',
    xen_pagesize: 4096,
    platform_params: `virt_start=0x${HYPERVISOR_VIRT_START.toString(16)}`,
    kernel_images: images.map((i) => i.name).join(' ') || '(none)',
    xend_config_format: 4,
  };
}

export function makeVerbs(ctx: VerbContext, images: readonly KernelImage[]): Map<string, VerbHandler> {
  const h = ctx.host;
  const dom = (args: Record<string, unknown>): number => {
    try {
      return h.resolve(str(args, 'dom'));
    } catch (e) {
      if (e instanceof ToolstackError) throw new ControlError(e.message);
      throw e;
    }
  };
  const verbs = new Map<string, VerbHandler>();
  const verb = (name: string, fn: VerbHandler): void => {
    verbs.set(name, async (args, stream) => {
      try {
        return await oneLine(() => fn(args, stream));
      } finally {
        ctx.flushLog();
      }
    });
  };

  verb('status', () => {
    const mem = h.memory();
    return Promise.resolve({
      pid: process.pid,
      dir: ctx.dir,
      uptime_s: Math.round((Date.now() - h.startedAt) / 1000),
      total_memory_mib: Math.floor((mem.totalPages * 4096) / MiB),
      free_memory_mib: Math.floor((mem.freePages * 4096) / MiB),
      tsc_khz: h.m.clock.tscKhz,
      clock: h.m.clock.kind,
      domains: h.m.domains.length - 1,
      images: images.map((i) => i.name).join(' ') || '(none)',
    });
  });
  verb('info', () => Promise.resolve(xenInfo(h, images)));
  verb('list', () => Promise.resolve(h.list()));
  verb('dmesg', () => {
    const text = h.m.xc.readConsole();
    if (typeof text === 'number') throw new ControlError(`readconsole failed (errno ${-text})`);
    return Promise.resolve(text);
  });
  verb('create', async (args) => {
    const cfg = configFromWire(args['config']);
    const b = await h.create(cfg, args['paused'] === true);
    return { domid: b.domid, name: b.name };
  });
  verb('pause', (args) => Promise.resolve(h.pause(dom(args))));
  verb('unpause', (args) => Promise.resolve(h.unpause(dom(args))));
  verb('destroy', (args) => h.destroy(dom(args)));
  verb('shutdown', (args) => {
    const via = args['via'] === 'ctrl_if' ? 'ctrl_if' : 'xenstore';
    return h.shutdown(dom(args), via, args['wait'] === true);
  });
  verb('console', (args, stream) => console_(ctx, dom(args), stream));
  verb('network-ping', async (args) => {
    const domid = dom(args);
    const ms = args['timeout_ms'];
    if (ms !== undefined && !(typeof ms === 'number' && Number.isInteger(ms) && ms > 0 && ms <= 60_000)) {
      throw new ControlError('network-ping: timeout_ms must be 1..60000');
    }
    const { ip, result: r } = await h.ping(domid, typeof ms === 'number' ? ms * 1e6 : undefined);
    if (!r.ok) throw new ControlError(`network-ping ${String(args['dom'])} (${ip}): ${r.detail}`);
    const rttMs = r.rttNs / 1e6;
    // As ping(8) counts it: the ICMP message, its 8-byte header included.
    const bytes = r.bytes + ICMP_ECHO_HEADER_BYTES;
    return {
      ip, seq: r.seq, ttl: r.ttl, bytes, rtt_ns: r.rttNs, rtt_ms: rttMs,
      line: `${bytes} bytes from ${ip}: icmp_seq=${r.seq} ttl=${r.ttl} time=${rttMs.toFixed(3)} ms`,
    };
  });
  verb('network-info', () => Promise.resolve(h.backends.info()));
  verb('save', (args, stream) => {
    const domid = dom(args);
    const file = str(args, 'file');
    const via = args['via'];
    if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') {
      throw new ControlError('save: --suspend must be evtchn, xenstore or ctrl_if');
    }
    const ms = args['timeout_ms'];
    if (ms !== undefined && !(typeof ms === 'number' && Number.isInteger(ms) && ms > 0 && ms <= 600_000)) {
      throw new ControlError('save: timeout_ms must be 1..600000');
    }
    return h.save(domid, file, {
      checkpoint: args['checkpoint'] === true,
      paused: args['paused'] === true,
      ...(via === undefined ? {} : { via }),
      ...(typeof ms === 'number' ? { timeoutMs: ms } : {}),
      // progress: true: `done total\n` data chunks as the pages are written.
      ...(args['progress'] === true ? { progress: (done: number, total: number) => stream.data(`${done} ${total}\n`) } : {}),
    });
  });
  verb('restore', (args) => h.restore(str(args, 'file'), args['paused'] === true));
  verb('p2m', (args) => Promise.resolve(h.p2m(dom(args))));
  verb('migrate', (args, stream) => {
    const domid = dom(args);
    const to = address(str(args, 'target'), {});
    const via = args['via'];
    if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') {
      throw new ControlError('migrate: --suspend must be evtchn, xenstore or ctrl_if');
    }
    const ms = timeoutArg(args, 'migrate');
    const gone = new AbortController();
    stream.onClose(() => gone.abort());
    return migrateDomain(h, domid, to, {
      signal: gone.signal,
      ...(via === undefined ? {} : { via }),
      ...(ms === undefined ? {} : { timeoutMs: ms }),
      onRound: (r) => stream.data(`${JSON.stringify(r)}\n`),
    });
  });
  verb('migrate-receive', (args, stream) => {
    const listen = args['listen'] === undefined ? '0' : str(args, 'listen');
    const at = address(listen, { defaultHost: '127.0.0.1', allowZero: true });
    const ms = timeoutArg(args, 'migrate-receive');
    const gone = new AbortController();
    stream.onClose(() => gone.abort());
    if (args['checkpointed'] === true) {
      return receiveCheckpointed(h, {
        listen: at,
        paused: args['paused'] === true,
        signal: gone.signal,
        onListening: (a) => stream.data(`listening ${formatHostPort(a)}\n`),
        onCheckpoint: (n) => stream.data(`checkpoint ${n}\n`),
        ...(ms === undefined ? {} : { peerTimeoutMs: ms }),
      });
    }
    return receiveMigration(h, {
      listen: at,
      paused: args['paused'] === true,
      signal: gone.signal,
      onListening: (a) => stream.data(`listening ${formatHostPort(a)}\n`),
      ...(ms === undefined ? {} : { peerTimeoutMs: ms }),
    });
  });
  verb('remus', (args, stream) => {
    const domid = dom(args);
    const to = address(str(args, 'target'), {});
    const via = args['via'];
    if (via !== undefined && via !== 'evtchn' && via !== 'xenstore' && via !== 'ctrl_if') {
      throw new ControlError('remus: --suspend must be evtchn, xenstore or ctrl_if');
    }
    const ms = timeoutArg(args, 'remus');
    const interval = args['interval_ms'];
    if (interval !== undefined && !(typeof interval === 'number' && Number.isInteger(interval) && interval > 0 && interval <= 600_000)) {
      throw new ControlError('remus: interval_ms must be 1..600000');
    }
    const n = args['checkpoints'];
    if (n !== undefined && !(typeof n === 'number' && Number.isInteger(n) && n >= 1)) throw new ControlError('remus: checkpoints must be a positive integer');
    const stop = new AbortController();
    stream.onClose(() => stop.abort());
    return remusDomain(h, domid, to, {
      signal: stop.signal,
      ...(via === undefined ? {} : { via }),
      ...(ms === undefined ? {} : { timeoutMs: ms }),
      ...(interval === undefined ? {} : { intervalMs: interval }),
      ...(n === undefined ? {} : { checkpoints: n }),
      onCheckpoint: (cp) => stream.data(`${JSON.stringify({ n: cp.n, pages: cp.pages, last: cp.last })}\n`),
    });
  });
  verb('stop', () => {
    ctx.requestStop();
    return Promise.resolve({ stopping: true });
  });
  return verbs;
}
