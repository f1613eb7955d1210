/*
 * A small promise-based xenstore client, independent of the transport: it
 * hands encoded requests to `send` and is fed replies and watch events
 * through `receive`. Used by the tests and the benchmark over the unix
 * socket, the in-process port and a domain ring alike.
 */
import { connect, type Socket } from 'node:net';
import {
  XS_CONTROL, XS_DIRECTORY, XS_DIRECTORY_PART, XS_ERROR, XS_GET_DOMAIN_PATH, XS_GET_PERMS, XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED, XS_MKDIR, XS_READ, XS_RELEASE, XS_RESET_WATCHES, XS_RESUME, XS_RM, XS_SET_PERMS,
  XS_SET_TARGET, XS_TRANSACTION_END, XS_TRANSACTION_START, XS_TYPE_NAMES, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
} from '../../public/io/xs_wire.js';
import { concatBytes, encodeMsg, FrameDecoder, fromLatin1, latin1, nulStrings, nulTerminated, type XsMsg } from './wire.js';

/** An XS_ERROR reply, as a rejection. */
export class XsError extends Error {
  constructor(readonly code: string, readonly request: string) {
    super(`${request}: ${code}`);
    this.name = 'XsError';
  }
}

export interface WatchEvent {
  readonly path: string;
  readonly token: string;
}

export class XsClient {
  private nextReq = 1;
  private readonly waiting = new Map<number, { resolve: (m: XsMsg) => void; reject: (e: Error) => void; what: string }>();
  private readonly events: WatchEvent[] = [];
  private readonly eventWaiters: ((e: WatchEvent) => void)[] = [];
  private closedWith: Error | undefined;

  constructor(private readonly sendMsg: (msg: XsMsg) => void) {}

  /** Feed a message from the server. */
  receive(msg: XsMsg): void {
    if (msg.type === XS_WATCH_EVENT) {
      const [path = '', token = ''] = nulTerminated(msg.payload);
      const ev = { path, token };
      const w = this.eventWaiters.shift();
      if (w !== undefined) w(ev);
      else this.events.push(ev);
      return;
    }
    const w = this.waiting.get(msg.reqId);
    if (w === undefined) return;
    this.waiting.delete(msg.reqId);
    if (msg.type === XS_ERROR) w.reject(new XsError(latin1(msg.payload).replace(/\0.*$/s, ''), w.what));
    else w.resolve(msg);
  }

  /** The transport is gone: fail everything waiting. */
  fail(err: Error): void {
    this.closedWith = err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  request(type: number, payload: Uint8Array, txId = 0): Promise<XsMsg> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    const reqId = this.nextReq;
    this.nextReq = (this.nextReq + 1) >>> 0 || 1;
    return new Promise<XsMsg>((resolve, reject) => {
      this.waiting.set(reqId, { resolve, reject, what: XS_TYPE_NAMES[type] ?? `type ${type}` });
      this.sendMsg({ type, reqId, txId, payload });
    });
  }

  /** The next watch event (queued ones first). */
  nextEvent(): Promise<WatchEvent> {
    const ev = this.events.shift();
    if (ev !== undefined) return Promise.resolve(ev);
    return new Promise((resolve) => this.eventWaiters.push(resolve));
  }

  /** Watch events received and not yet taken. */
  get pendingEvents(): readonly WatchEvent[] {
    return this.events;
  }

  async readBytes(path: string, tx = 0): Promise<Uint8Array> {
    return (await this.request(XS_READ, nulStrings([path]), tx)).payload;
  }

  async read(path: string, tx = 0): Promise<string> {
    return latin1(await this.readBytes(path, tx));
  }

  async write(path: string, value: string | Uint8Array, tx = 0): Promise<void> {
    const v = typeof value === 'string' ? fromLatin1(value) : value;
    await this.request(XS_WRITE, concatBytes([nulStrings([path]), v]), tx);
  }

  async mkdir(path: string, tx = 0): Promise<void> {
    await this.request(XS_MKDIR, nulStrings([path]), tx);
  }

  async rm(path: string, tx = 0): Promise<void> {
    await this.request(XS_RM, nulStrings([path]), tx);
  }

  async directory(path: string, tx = 0): Promise<string[]> {
    return nulTerminated((await this.request(XS_DIRECTORY, nulStrings([path]), tx)).payload);
  }

  /** DIRECTORY_PART from `offset`: the generation and the names (an empty last name ends the list). */
  async directoryPart(path: string, offset: number, tx = 0): Promise<{ generation: string; names: string[] }> {
    const [generation = '', ...names] = nulTerminated((await this.request(XS_DIRECTORY_PART, nulStrings([path, String(offset)]), tx)).payload);
    return { generation, names };
  }

  async getPerms(path: string, tx = 0): Promise<string[]> {
    return nulTerminated((await this.request(XS_GET_PERMS, nulStrings([path]), tx)).payload);
  }

  async setPerms(path: string, perms: readonly string[], tx = 0): Promise<void> {
    await this.request(XS_SET_PERMS, nulStrings([path, ...perms]), tx);
  }

  async watch(path: string, token: string): Promise<void> {
    await this.request(XS_WATCH, nulStrings([path, token]));
  }

  async unwatch(path: string, token: string): Promise<void> {
    await this.request(XS_UNWATCH, nulStrings([path, token]));
  }

  async resetWatches(): Promise<void> {
    await this.request(XS_RESET_WATCHES, nulStrings(['']));
  }

  async transactionStart(): Promise<number> {
    return Number(latin1((await this.request(XS_TRANSACTION_START, nulStrings(['']))).payload).replace(/\0.*$/s, ''));
  }

  /** Commit (or abort); a conflicting commit rejects with EAGAIN. */
  async transactionEnd(tx: number, commit = true): Promise<void> {
    await this.request(XS_TRANSACTION_END, nulStrings([commit ? 'T' : 'F']), tx);
  }

  async introduce(domid: number, mfn: number | string, port: number): Promise<void> {
    await this.request(XS_INTRODUCE, nulStrings([String(domid), String(mfn), String(port)]));
  }

  async release(domid: number): Promise<void> {
    await this.request(XS_RELEASE, nulStrings([String(domid)]));
  }

  async resume(domid: number): Promise<void> {
    await this.request(XS_RESUME, nulStrings([String(domid)]));
  }

  async setTarget(domid: number, target: number): Promise<void> {
    await this.request(XS_SET_TARGET, nulStrings([String(domid), String(target)]));
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    return latin1((await this.request(XS_IS_DOMAIN_INTRODUCED, nulStrings([String(domid)]))).payload).startsWith('T');
  }

  async getDomainPath(domid: number): Promise<string> {
    return latin1((await this.request(XS_GET_DOMAIN_PATH, nulStrings([String(domid)]))).payload).replace(/\0.*$/s, '');
  }

  async control(...args: string[]): Promise<string> {
    return latin1((await this.request(XS_CONTROL, nulStrings(args))).payload).replace(/\0.*$/s, '');
  }
}

/** A client over a unix socket; `close()` ends the connection. */
export interface SocketClient extends XsClient {
  close(): void;
  readonly socket: Socket;
}

export function connectSocketClient(path: string): Promise<SocketClient> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const decoder = new FrameDecoder();
    const client = new XsClient((m) => sock.write(encodeMsg(m))) as SocketClient;
    Object.assign(client, { socket: sock, close: () => sock.destroy() });
    sock.on('data', (chunk: Buffer) => {
      for (const ev of decoder.pushAll(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
        if (ev.kind === 'msg') client.receive(ev.msg);
      }
    });
    sock.on('close', () => client.fail(new Error('connection closed')));
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      sock.on('error', () => undefined);
      resolve(client);
    });
  });
}
