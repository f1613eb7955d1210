/*
 * xenstored: the core plus its transports.
 *
 * Holds the current state, routes each transport's requests through the
 * pure core and delivers what the core sends. Transports: host unix-socket
 * clients (dom0 rights), in-process clients (the toolstack in the same
 * process), and domain rings (attached when a domain is introduced: the
 * host's `mapRing` hook maps the store page and supplies the notify
 * callback standing in for the event channel).
 */
import type { Socket } from 'node:net';
import createDebug from 'debug';
import type { ByteMem } from '../../public/layout.js';
import type { DomId, EvtchnPort } from '../../public/types.js';
import {
  closeConnection, handleMessage, initialState, openConnection, reportDomainGone, reportDomainShutdown,
  resetConnection, typeName, type ConnId, type CoreOptions, type StepResult, type XsState,
} from './core.js';
import { XsRingTransport, type RingOptions } from './ring.js';
import { XsSocketTransport } from './socket.js';
import { latin1, type XsMsg } from './wire.js';
import { listenUnixSocket } from './listen.js';

const log = createDebug('xenstored');

/** Where a domain's store page is and how to signal it. */
export interface RingAttachment {
  readonly mem: ByteMem;
  readonly base: number;
  readonly notify: () => void;
}

export interface XenstoredOptions extends Partial<CoreOptions> {
  /** Map an introduced domain's store page; undefined leaves the domain without a ring. */
  readonly mapRing?: (domid: DomId, mfn: string, port: EvtchnPort) => RingAttachment | undefined;
  /** Ring limits (replies left unread before requests stop being taken; bytes queued for a domain). */
  readonly ring?: RingOptions;
  /** Told of each request as it arrives, with the domain it comes from (0: dom0 or a host client); the host's trace tap. */
  readonly onRequest?: (domid: number, msg: XsMsg) => void;
}

interface Endpoint {
  deliver(msg: XsMsg): void;
  close(): void;
}

/** An in-process client connection (dom0 rights). */
export interface LocalPort {
  readonly conn: ConnId;
  send(msg: XsMsg): void;
  close(): void;
}

export class Xenstored {
  private current: XsState;
  private readonly endpoints = new Map<ConnId, Endpoint>();
  private readonly rings = new Map<ConnId, XsRingTransport>();
  /** Steps waiting while one is being delivered: a transport may call back synchronously. */
  private readonly pending: (() => StepResult)[] = [];
  private applying = false;

  constructor(private readonly opts: XenstoredOptions = {}) {
    this.current = initialState(opts);
  }

  /** The current state (immutable: safe to keep and inspect). */
  get state(): XsState {
    return this.current;
  }

  /** Serve one accepted unix-socket client. */
  acceptSocket(sock: Socket): ConnId {
    const opened = openConnection(this.current, 'socket');
    this.current = opened.state;
    const conn = opened.conn;
    const t = new XsSocketTransport(sock);
    t.onMessage = (msg) => this.request(conn, msg);
    t.onClose = () => this.dropEndpoint(conn);
    t.onProtocolError = (why) => log('socket client %d dropped: %s', conn, why);
    this.endpoints.set(conn, { deliver: (m) => t.send(m), close: () => t.close() });
    log('socket client %d connected', conn);
    return conn;
  }

  /** Open an in-process client connection; replies and events go to `onMessage`. */
  connectLocal(onMessage: (msg: XsMsg) => void): LocalPort {
    const opened = openConnection(this.current, 'local');
    this.current = opened.state;
    const conn = opened.conn;
    let open = true;
    this.endpoints.set(conn, { deliver: onMessage, close: () => { open = false; } });
    return {
      conn,
      send: (msg) => {
        if (open) this.request(conn, msg);
      },
      close: () => {
        open = false;
        this.dropEndpoint(conn);
      },
    };
  }

  /**
   * Attach a ring to an introduced domain by hand (when there is no
   * `mapRing` hook, or in tests). Returns the transport; call its `kick()`
   * when the guest signals.
   */
  attachRing(domid: DomId, mem: ByteMem, base: number, notify: () => void): XsRingTransport {
    const dom = this.current.domains.get(domid);
    if (dom === undefined || !dom.introduced || dom.conn === undefined) throw new Error(`attachRing: domain ${domid} is not introduced`);
    return this.bindRing(dom.conn, domid, { mem, base, notify });
  }

  /** The ring transport of a domain, if it has one. */
  ringOf(domid: DomId): XsRingTransport | undefined {
    const conn = this.current.domains.get(domid)?.conn;
    return conn === undefined ? undefined : this.rings.get(conn);
  }

  /** Handle one request from a connection and deliver the outcome. */
  request(conn: ConnId, msg: XsMsg): void {
    if (log.enabled) log('conn %d %s tx=%d req=%d %s', conn, typeName(msg.type), msg.txId, msg.reqId, printable(msg.payload));
    this.opts.onRequest?.(this.current.conns.get(conn)?.domid ?? 0, msg);
    this.run(() => handleMessage(this.current, conn, msg));
  }

  /** The hypervisor reports a domain shut down: @releaseDomain watchers hear of it (once until RESUME). */
  domainShutdown(domid: DomId): void {
    this.run(() => reportDomainShutdown(this.current, domid));
  }

  /** The hypervisor reports a domain destroyed: as RELEASE. */
  domainGone(domid: DomId): void {
    this.run(() => reportDomainGone(this.current, domid));
  }

  /** Drop every connection. */
  close(): void {
    for (const [conn, ep] of [...this.endpoints]) {
      this.endpoints.delete(conn);
      this.rings.delete(conn);
      ep.close();
    }
  }

  /** Run core steps one at a time, in arrival order, each fully delivered before the next. */
  private run(step: () => StepResult): void {
    this.pending.push(step);
    if (this.applying) return;
    this.applying = true;
    try {
      for (let next = this.pending.shift(); next !== undefined; next = this.pending.shift()) this.apply(next());
    } finally {
      this.applying = false;
    }
  }

  private apply(step: StepResult): void {
    this.current = step.state;
    for (const e of step.effects) {
      if (e.kind === 'introduce') this.onIntroduce(e.conn, e.domid, e.mfn, e.port, e.reintroduce);
      else if (e.kind === 'release') this.onRelease(e.conn, e.domid);
      else if (this.current.logging) log('%s', e.text);
    }
    for (const { conn, msg } of step.out) {
      if (log.enabled) log('conn %d <- %s req=%d %s', conn, typeName(msg.type), msg.reqId, printable(msg.payload));
      this.endpoints.get(conn)?.deliver(msg);
    }
  }

  private onIntroduce(conn: ConnId, domid: number, mfn: string, port: number, reintroduce: boolean): void {
    log('domain %d introduced (mfn %s, port %d%s)', domid, mfn, port, reintroduce ? ', again' : '');
    const ring = this.rings.get(conn);
    if (ring !== undefined) {
      if (reintroduce) ring.reset();
      return;
    }
    // The core only introduces real domain ids (below DOMID_FIRST_RESERVED) with a non-zero port.
    const where = this.opts.mapRing?.(domid as DomId, mfn, port as EvtchnPort);
    if (where !== undefined) this.bindRing(conn, domid as DomId, where);
  }

  private onRelease(conn: ConnId, domid: number): void {
    log('domain %d released', domid);
    const ep = this.endpoints.get(conn);
    this.endpoints.delete(conn);
    this.rings.delete(conn);
    ep?.close();
  }

  private bindRing(conn: ConnId, domid: DomId, at: RingAttachment): XsRingTransport {
    this.rings.get(conn)?.close();
    const ring = new XsRingTransport(at.mem, at.base, at.notify, domid, this.opts.ring);
    ring.onMessage = (msg) => this.request(conn, msg);
    ring.onDisconnect = (why) => {
      log('domain %d disconnected: %s', domid, why);
      this.current = closeConnection(this.current, conn);
    };
    ring.onReconnect = () => {
      log('domain %d reconnected its ring', domid);
      this.current = resetConnection(this.current, conn);
    };
    this.rings.set(conn, ring);
    this.endpoints.set(conn, { deliver: (m) => ring.send(m), close: () => ring.close() });
    return ring;
  }

  private dropEndpoint(conn: ConnId): void {
    if (!this.endpoints.has(conn)) return;
    this.endpoints.delete(conn);
    this.current = closeConnection(this.current, conn);
    log('client %d gone', conn);
  }
}

function printable(payload: Uint8Array): string {
  const s = latin1(payload.subarray(0, 200)).replace(/\0/g, '|');
  return payload.length > 200 ? `${s}...` : s;
}

export interface XenstoredHandle {
  readonly xenstored: Xenstored;
  readonly socketPath: string;
  /** Stop listening, drop every client, remove the socket file. */
  close(): Promise<void>;
}

/** Start xenstored listening on a unix socket (the in-process API for tests and the machine). */
export async function startXenstored(opts: XenstoredOptions & { readonly socketPath: string }): Promise<XenstoredHandle> {
  const xenstored = new Xenstored(opts);
  const socketPath = opts.socketPath;
  const listener = await listenUnixSocket(socketPath, (sock) => xenstored.acceptSocket(sock));
  log('listening on %s', socketPath);
  return {
    xenstored,
    socketPath,
    close: () => listener.close(() => xenstored.close()),
  };
}
