/*
 * Host UDP port forwarding: `vif = [ '...,forward=udp:5555:7' ]`.
 *
 * A real UDP socket on 127.0.0.1:HOST. A datagram from a host client
 * (`nc -u 127.0.0.1 5555`, a Python socket) is sent into the emulated
 * network from dom0's address to GUEST_IP:GUEST, from a dom0 UDP port
 * allocated for that client (one mapping per client address:port, as a
 * NAT keeps one per flow). The guest's answer to that dom0 port goes back
 * to that client from the forwarded socket, so the client sees the reply
 * come from the address it sent to.
 *
 * A mapping idle for `idleTimeoutNs` on the injected clock is removed by
 * tick() and its dom0 port freed; a later datagram from the same client
 * gets a fresh mapping. Only the guest's IP and port may answer on a
 * mapping (anything else is dropped and counted).
 *
 * The socket is bound to 127.0.0.1 only and replies go only to the
 * loopback clients that wrote to it: nothing here reaches another host.
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import createDebug from 'debug';
import type { NetClock } from './bridge.js';
import { parseIpv4, formatIpv4 } from './addr.js';
import type { Dom0Endpoint, UdpBinding, UdpMessage } from './endpoint.js';

const log = createDebug('dom0:net');

export const FORWARD_BIND_ADDRESS = '127.0.0.1';

export interface UdpForwarderOptions {
  readonly endpoint: Dom0Endpoint;
  readonly clock: NetClock;
  /** Host port on 127.0.0.1; 0 lets the OS pick one (tests, benchmarks). */
  readonly hostPort: number;
  readonly guestPort: number;
  /** The guest's address (a vif's `ip=`). */
  readonly guestIp?: string;
  /** Without `guestIp`, the address this MAC last announced over ARP is used. */
  readonly guestMac?: string;
  /** Forget a client mapping idle this long (default 60 s). */
  readonly idleTimeoutNs?: number;
  /** Client mappings kept at once; the least recently used goes first (default 256). */
  readonly maxMappings?: number;
  /** For logs and errors, e.g. `vif3.0`. */
  readonly name?: string;
}

export class UdpForwardError extends Error {
  constructor(readonly hostPort: number, readonly code: string, message: string) {
    super(message);
    this.name = 'UdpForwardError';
  }
}

export interface ForwardMapping {
  /** Host client `127.0.0.1:PORT`. */
  readonly client: string;
  /** dom0's UDP port standing for that client on the emulated network. */
  readonly dom0Port: number;
  readonly idleNs: number;
}

export interface ForwardCounters {
  toGuest: number;
  toHost: number;
  mappingsCreated: number;
  mappingsExpired: number;
}

interface Mapping {
  readonly clientPort: number;
  readonly key: string;
  readonly binding: UdpBinding;
  lastNs: number;
}

export class UdpForwarder {
  readonly name: string;
  readonly hostPort: number;
  readonly guestPort: number;
  private readonly opts: UdpForwarderOptions;
  private readonly socket: dgram.Socket;
  private readonly idleTimeoutNs: number;
  private readonly maxMappings: number;
  /** By client key, least recently used first. */
  private readonly byClient = new Map<string, Mapping>();
  private readonly dropCounts = new Map<string, number>();
  private readonly dropListeners = new Set<(reason: string, detail: string) => void>();
  private readonly stats: ForwardCounters = { toGuest: 0, toHost: 0, mappingsCreated: 0, mappingsExpired: 0 };
  private closing: Promise<void> | undefined;

  /** Bind 127.0.0.1:hostPort; a port in use rejects with a UdpForwardError naming it. */
  static open(opts: UdpForwarderOptions): Promise<UdpForwarder> {
    const what = `udp:${opts.hostPort}:${opts.guestPort}${opts.name === undefined ? '' : ` (${opts.name})`}`;
    if (!Number.isInteger(opts.hostPort) || opts.hostPort < 0 || opts.hostPort > 0xffff) {
      return Promise.reject(new UdpForwardError(opts.hostPort, 'EINVAL', `forward ${what}: host port ${opts.hostPort} is not a UDP port`));
    }
    if (!Number.isInteger(opts.guestPort) || opts.guestPort < 1 || opts.guestPort > 0xffff) {
      return Promise.reject(new UdpForwardError(opts.hostPort, 'EINVAL', `forward ${what}: guest port ${opts.guestPort} is not a UDP port`));
    }
    if (opts.guestIp === undefined && opts.guestMac === undefined) {
      return Promise.reject(new UdpForwardError(opts.hostPort, 'EINVAL', `forward ${what}: the vif has neither ip= nor mac=`));
    }
    const guestIp = opts.guestIp === undefined ? undefined : parseIpv4(opts.guestIp);
    if (opts.guestIp !== undefined && guestIp === undefined) {
      return Promise.reject(new UdpForwardError(opts.hostPort, 'EINVAL', `forward ${what}: guest address ${opts.guestIp} is not an IPv4 address`));
    }
    // Canonical text, so that replies (whose source the endpoint formats) compare equal.
    const canonical: UdpForwarderOptions = guestIp === undefined ? opts : { ...opts, guestIp: formatIpv4(guestIp) };
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.close();
        const code = err.code ?? 'EIO';
        const why = code === 'EADDRINUSE' ? 'is already in use' : `cannot be bound (${err.message})`;
        reject(new UdpForwardError(opts.hostPort, code, `forward ${what}: UDP port ${FORWARD_BIND_ADDRESS}:${opts.hostPort} ${why}`));
      };
      socket.once('error', onError);
      socket.bind({ port: opts.hostPort, address: FORWARD_BIND_ADDRESS, exclusive: true }, () => {
        socket.off('error', onError);
        resolve(new UdpForwarder(canonical, socket));
      });
    });
  }

  private constructor(opts: UdpForwarderOptions, socket: dgram.Socket) {
    this.opts = opts;
    this.socket = socket;
    this.hostPort = (socket.address() as AddressInfo).port;
    this.guestPort = opts.guestPort;
    this.name = opts.name ?? `udp:${this.hostPort}:${this.guestPort}`;
    this.idleTimeoutNs = opts.idleTimeoutNs ?? 60e9;
    this.maxMappings = opts.maxMappings ?? 256;
    socket.on('message', (msg, rinfo) => this.fromHost(msg, rinfo));
    socket.on('error', (err) => this.countDrop('socket-error', err.message));
    log('%s: forwarding %s:%d to guest port %d', this.name, FORWARD_BIND_ADDRESS, this.hostPort, this.guestPort);
  }

  /** Dropped datagrams, by reason. */
  drops(): Record<string, number> {
    return Object.fromEntries(this.dropCounts);
  }

  counters(): Readonly<ForwardCounters> {
    return this.stats;
  }

  mappings(): ForwardMapping[] {
    const now = this.opts.clock.now();
    return [...this.byClient.values()].map((m) => ({ client: m.key, dom0Port: m.binding.port, idleNs: now - m.lastNs }));
  }

  /** The guest address datagrams go to now (undefined while unknown). */
  guestIp(): string | undefined {
    if (this.opts.guestIp !== undefined) return this.opts.guestIp;
    return this.opts.guestMac === undefined ? undefined : this.opts.endpoint.ipOf(this.opts.guestMac);
  }

  /** Remove mappings idle for longer than the timeout. */
  tick(): void {
    const now = this.opts.clock.now();
    for (const m of [...this.byClient.values()]) {
      if (now - m.lastNs > this.idleTimeoutNs) {
        this.removeMapping(m);
        this.stats.mappingsExpired++;
        log('%s: mapping %s -> dom0 port %d expired', this.name, m.key, m.binding.port);
      }
    }
  }

  /** Close the socket and free every mapping. */
  close(): Promise<void> {
    this.closing ??= new Promise((resolve) => {
      for (const m of [...this.byClient.values()]) this.removeMapping(m);
      this.socket.close(() => resolve());
      log('%s: closed %s:%d', this.name, FORWARD_BIND_ADDRESS, this.hostPort);
    });
    return this.closing;
  }

  /** Call `fn` on every dropped datagram; returns the unsubscribe. */
  onDrop(fn: (reason: string, detail: string) => void): () => void {
    this.dropListeners.add(fn);
    return () => { this.dropListeners.delete(fn); };
  }

  private countDrop(reason: string, detail: string): void {
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + 1);
    log('%s: drop (%s) %s', this.name, reason, detail);
    for (const fn of [...this.dropListeners]) fn(reason, detail);
  }

  private removeMapping(m: Mapping): void {
    m.binding.close();
    this.byClient.delete(m.key);
  }

  private fromHost(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    if (rinfo.address !== FORWARD_BIND_ADDRESS) {
      this.countDrop('not-loopback', `datagram from ${rinfo.address}:${rinfo.port}`);
      return;
    }
    const guestIp = this.guestIp();
    if (guestIp === undefined) {
      this.countDrop('guest-ip-unknown', `${this.opts.guestMac ?? '?'} has not announced an address yet`);
      return;
    }
    const m = this.mappingFor(rinfo.port);
    if (!m) return;
    const r = this.opts.endpoint.sendUdp({ dstIp: guestIp, dstPort: this.guestPort, srcPort: m.binding.port, payload: msg });
    if (!r.ok) {
      this.countDrop(r.reason, r.detail);
      return;
    }
    this.stats.toGuest++;
  }

  private mappingFor(clientPort: number): Mapping | undefined {
    const key = `${FORWARD_BIND_ADDRESS}:${clientPort}`;
    const now = this.opts.clock.now();
    const existing = this.byClient.get(key);
    if (existing) {
      existing.lastNs = now;
      // Re-insert: Map order is then least recently used first.
      this.byClient.delete(key);
      this.byClient.set(key, existing);
      return existing;
    }
    if (this.byClient.size >= this.maxMappings) {
      const oldest = this.byClient.values().next().value;
      if (oldest) {
        this.removeMapping(oldest);
        this.countDrop('mapping-evicted', `${oldest.key} made room for ${key}`);
      }
    }
    let binding: UdpBinding;
    try {
      binding = this.opts.endpoint.bindUdp(0, (reply) => this.fromGuest(m, reply));
    } catch (err) {
      this.countDrop('no-dom0-port', (err as Error).message);
      return undefined;
    }
    const m: Mapping = { clientPort, key, binding, lastNs: now };
    this.byClient.set(key, m);
    this.stats.mappingsCreated++;
    log('%s: mapping %s -> dom0 port %d', this.name, key, binding.port);
    return m;
  }

  private fromGuest(m: Mapping, reply: UdpMessage): void {
    if (this.closing || this.byClient.get(m.key) !== m) return;
    if (reply.srcIp !== this.guestIp() || reply.srcPort !== this.guestPort) {
      this.countDrop('not-from-guest', `${reply.srcIp}:${reply.srcPort} answered on dom0 port ${m.binding.port}`);
      return;
    }
    m.lastNs = reply.timeNs;
    this.socket.send(reply.payload, m.clientPort, FORWARD_BIND_ADDRESS, (err) => {
      if (err) this.countDrop('host-send-error', err.message);
    });
    this.stats.toHost++;
  }
}
