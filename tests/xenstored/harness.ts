/*
 * A harness around the pure xenstored core: connections are numbers, every
 * request returns its reply, and watch events are collected per connection.
 */
import {
  XS_ERROR, XS_INTRODUCE, XS_WATCH_EVENT, XS_WRITE,
} from '../../hypervisor/public/io/xs_wire.js';
import {
  handleMessage, initialState, openConnection, reportDomainGone, reportDomainShutdown,
  type ConnId, type CoreOptions, type Effect, type StepResult, type XsState,
} from '../../hypervisor/tools/xenstored/core.js';
import { concatBytes, fromLatin1, latin1, nulStrings, nulTerminated, type XsMsg } from '../../hypervisor/tools/xenstored/wire.js';

export interface Reply {
  readonly type: number;
  readonly msg: XsMsg;
  /** Payload as text, NULs kept. */
  readonly raw: string;
  /** The NUL-terminated strings of the payload. */
  readonly strings: string[];
  /** The error name for an XS_ERROR reply, else undefined. */
  readonly err: string | undefined;
}

export interface Event {
  readonly path: string;
  readonly token: string;
}

export class Core {
  state: XsState;
  readonly effects: Effect[] = [];
  private readonly inbox = new Map<ConnId, Event[]>();
  private reqId = 1;
  /** Messages every step sent, in order (for ordering checks). */
  readonly sent: { conn: ConnId; msg: XsMsg }[] = [];

  constructor(opts: Partial<CoreOptions> = {}) {
    this.state = initialState(opts);
  }

  /** A host (socket) connection: dom0 rights. */
  open(): ConnId {
    const r = openConnection(this.state);
    this.state = r.state;
    return r.conn;
  }

  /** Introduce a domain through `dom0` and return its connection. */
  introduce(dom0: ConnId, domid: number, port = 1): ConnId {
    const r = this.call(dom0, XS_INTRODUCE, [String(domid), '1234', String(port)]);
    if (r.err !== undefined) throw new Error(`introduce ${domid}: ${r.err}`);
    const conn = this.state.domains.get(domid)?.conn;
    if (conn === undefined) throw new Error(`no connection for domain ${domid}`);
    return conn;
  }

  /** Send a request whose payload is the given strings, each NUL-terminated. */
  call(conn: ConnId, type: number, args: readonly string[], txId = 0): Reply {
    return this.send(conn, type, nulStrings(args), txId);
  }

  write(conn: ConnId, path: string, value: string | Uint8Array, txId = 0): Reply {
    const v = typeof value === 'string' ? fromLatin1(value) : value;
    return this.send(conn, XS_WRITE, concatBytes([nulStrings([path]), v]), txId);
  }

  send(conn: ConnId, type: number, payload: Uint8Array, txId = 0): Reply {
    const reqId = this.reqId++;
    const step = handleMessage(this.state, conn, { type, reqId, txId, payload });
    const reply = this.absorb(step).find((d) => d.conn === conn && d.msg.type !== XS_WATCH_EVENT && d.msg.reqId === reqId);
    if (reply === undefined) return { type: -1, msg: { type: -1, reqId, txId, payload: new Uint8Array(0) }, raw: '', strings: [], err: 'NO-REPLY' };
    const raw = latin1(reply.msg.payload);
    return {
      type: reply.msg.type,
      msg: reply.msg,
      raw,
      strings: nulTerminated(reply.msg.payload),
      err: reply.msg.type === XS_ERROR ? raw.replace(/\0$/, '') : undefined,
    };
  }

  shutdown(domid: number): void {
    this.absorb(reportDomainShutdown(this.state, domid));
  }

  gone(domid: number): void {
    this.absorb(reportDomainGone(this.state, domid));
  }

  /** Watch events a connection received since the last call. */
  events(conn: ConnId): Event[] {
    const evs = this.inbox.get(conn) ?? [];
    this.inbox.set(conn, []);
    return evs;
  }

  private absorb(step: StepResult): { conn: ConnId; msg: XsMsg }[] {
    this.state = step.state;
    this.effects.push(...step.effects);
    for (const d of step.out) {
      this.sent.push(d);
      if (d.msg.type === XS_WATCH_EVENT) {
        const [path = '', token = ''] = nulTerminated(d.msg.payload);
        const list = this.inbox.get(d.conn) ?? [];
        list.push({ path, token });
        this.inbox.set(d.conn, list);
      }
    }
    return [...step.out];
  }
}

/** Deterministic PRNG (mulberry32) for chunk sizes and random data. Shared with the frame allocator (hypervisor/xen/frametable.ts). */
export { mulberry32 as prng } from '../../hypervisor/xen/frametable.js';
