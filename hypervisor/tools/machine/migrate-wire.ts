/*
 * The wire of `xl migrate` / `xl migrate-receive`: one TCP connection, the
 * sender connecting to the receiver, carrying what xl carries over its ssh
 * pipe pair, both directions on one socket:
 *
 *   receiver -> sender   MIGRATE_BANNER                 before anything else
 *   sender -> receiver   the xl stream                  exactly what `xl save` writes:
 *                                                        xl header + config, libxl
 *                                                        stream (libxc rounds inside), END
 *   receiver -> sender   MIGRATE_READY                  the domain is in, paused
 *                  or    "failed: <one line>\n"         the receiver has nothing left
 *   sender -> receiver   MIGRATE_GO                     permission to start it
 *   receiver -> sender   "started <domid>\n"            running there: the sender destroys its copy
 *                  or    "failed: <one line>\n"         the receiver destroyed its copy:
 *                                                        the sender resumes its own
 *
 * The stream has no length prefix: the receiver knows where it ends from
 * libxl's END record (StreamParser with allowTrailing), as libxl does. The
 * handshake messages are text lines of bounded length; anything else where
 * one is expected is a protocol error. Either side closing the connection
 * before the sender has given permission aborts the migration, and the
 * source domain runs on.
 *
 * Wire wraps the socket: incoming bytes are queued (the socket is paused
 * while too much waits) and read either as raw chunks (the stream) or as
 * lines, each read with a deadline; socket errors are recorded, never
 * thrown at the event loop.
 */
import net from 'node:net';

/** The receiver is listening and wants the stream. */
export const MIGRATE_BANNER = 'xenport migrate-receive: ready for an xl migration stream\n';
/** The stream is in and the domain built, paused, waiting for permission. */
export const MIGRATE_READY = 'domain received and paused: waiting for permission to start it\n';
/** The sender has renamed its copy away and gives the receiver the domain. */
export const MIGRATE_GO = 'go: the domain is yours, start it\n';
/** `started <domid>`: the receiver's domain runs (or stays paused with -p). */
export const MIGRATE_STARTED = 'started ';
/** `failed: <why>`: the receiver gave up and left no domain. */
export const MIGRATE_FAILED = 'failed: ';

/** Longest handshake line either side accepts. */
export const MAX_LINE = 1024;
/** Incoming bytes queued before the socket is paused. */
const HIGH_WATER = 8 * 2 ** 20;

/** A migration that went wrong on the wire: what was awaited and what happened instead. */
export class MigrateWireError extends Error {
  override readonly name = 'MigrateWireError';
  constructor(readonly code: 'timeout' | 'closed' | 'protocol' | 'socket' | 'address', message: string) {
    super(message);
  }
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `HOST:PORT`, `[v6]:PORT`, or (with `defaultHost`) a bare PORT. Ports 1..65535, or 0 when `allowZero`. */
export function parseHostPort(text: string, opts: { readonly defaultHost?: string; readonly allowZero?: boolean } = {}): HostPort {
  const t = text.trim();
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(t);
  const colon = t.lastIndexOf(':');
  const host = v6 !== null ? v6[1] : colon >= 0 ? t.slice(0, colon) : opts.defaultHost;
  const portText = v6 !== null ? v6[2]! : t.slice(colon + 1);
  if (host === undefined || host === '' || /[\s[\]]/.test(host) || (v6 === null && host.includes(':')) || !/^\d{1,5}$/.test(portText)) {
    throw new MigrateWireError('address', `${JSON.stringify(text)}: expected HOST:PORT${opts.defaultHost === undefined ? '' : ' or PORT'}`);
  }
  const port = Number(portText);
  if (!(port <= 65535 && (port > 0 || opts.allowZero === true))) {
    throw new MigrateWireError('address', `${JSON.stringify(text)}: port must be 1..65535${opts.allowZero === true ? ' (or 0: any free port)' : ''}`);
  }
  return { host, port };
}

export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** A handshake line as the peer may see it: one line, bounded. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s*\n\s*/g, '; ').replace(/[\r\n]/g, ' ');
  return flat.length > MAX_LINE - 16 ? `${flat.slice(0, MAX_LINE - 20)}...` : flat;
}

/** Connect to `to`, at most `timeoutMs`; a refused or unreachable peer is a MigrateWireError. */
export function connectTo(to: HostPort, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host: to.host, port: to.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new MigrateWireError('timeout', `cannot connect to ${formatHostPort(to)}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      const why = e.code === 'ECONNREFUSED' ? 'connection refused (is xl migrate-receive listening there?)' : e.code ?? e.message;
      reject(new MigrateWireError('socket', `cannot connect to ${formatHostPort(to)}: ${why}`));
    });
  });
}

export class Wire {
  readonly #sock: net.Socket;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (b: Buffer) => {
      this.#queue.push(b);
      this.#queued += b.length;
      if (this.#queued > HIGH_WATER && !this.#paused) {
        this.#paused = true;
        sock.pause();
      }
      this.#notify();
    });
    const ended = (): void => {
      this.#ended = true;
      this.#notify();
    };
    sock.on('end', ended);
    sock.on('close', ended);
    sock.on('error', (e) => {
      this.#failure ??= e;
      ended();
    });
  }

  /** The socket itself: the stream writer's sink. */
  get socket(): net.Socket {
    return this.#sock;
  }

  /** `address:port` of the peer. */
  get peer(): string {
    const a = this.#sock.remoteAddress;
    return a === undefined ? '(unknown peer)' : formatHostPort({ host: a, port: this.#sock.remotePort ?? 0 });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Until more bytes arrive (than are queued now) or the connection ends; a MigrateWireError after `ms`. */
  #more(ms: number, what: string): Promise<void> {
    if (this.#ended) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        reject(new MigrateWireError('timeout', `timed out after ${ms} ms waiting for ${what} from ${this.peer}`));
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #closedError(what: string): MigrateWireError {
    const f = this.#failure as NodeJS.ErrnoException | undefined;
    return f === undefined
      ? new MigrateWireError('closed', `${this.peer} closed the connection before ${what}`)
      : new MigrateWireError('socket', `connection to ${this.peer} failed before ${what}: ${f.code ?? f.message}`);
  }

  #shift(): Uint8Array | undefined {
    const c = this.#queue.shift();
    if (c === undefined) return undefined;
    this.#queued -= c.length;
    if (this.#paused && this.#queued < HIGH_WATER / 2) {
      this.#paused = false;
      this.#sock.resume();
    }
    return c;
  }

  /**
   * The incoming bytes as they come, until the peer closes; a
   * MigrateWireError when nothing comes for `idleMs`. Stopping early
   * leaves the rest queued (see unread()).
   */
  async *chunks(idleMs: number, what: string): AsyncGenerator<Uint8Array> {
    for (;;) {
      const c = this.#shift();
      if (c !== undefined) {
        yield c;
        continue;
      }
      if (this.#ended) {
        if (this.#failure !== undefined) throw this.#closedError(`the end of ${what}`);
        return;
      }
      await this.#more(idleMs, what);
    }
  }

  /** Put bytes back in front of the queue (read past the end of the stream). */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#queue.unshift(bytes);
    this.#queued += bytes.length;
  }

  /** A whole line already received, without waiting (undefined when there is none). */
  peekLine(): string | undefined {
    const all = this.#gather();
    const nl = all.indexOf(0x0a);
    return nl < 0 ? undefined : Buffer.from(all.subarray(0, nl)).toString('latin1');
  }

  /** Everything queued as one chunk (kept queued). */
  #gather(): Uint8Array {
    if (this.#queue.length === 1) return this.#queue[0]!;
    const all = new Uint8Array(this.#queued);
    let at = 0;
    for (const c of this.#queue) {
      all.set(c, at);
      at += c.length;
    }
    this.#queue.splice(0, this.#queue.length, all);
    return all;
  }

  /**
   * The next line (without its newline), within `ms`. More than MAX_LINE
   * bytes without a newline, or the connection ending first, is an error
   * naming `what`.
   */
  async readLine(what: string, ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.#queued > 0) {
        const all = this.#gather();
        const nl = all.indexOf(0x0a);
        if (nl >= 0) {
          this.#queue.splice(0, 1);
          this.#queued -= all.length;
          this.unread(all.subarray(nl + 1));
          return Buffer.from(all.subarray(0, nl)).toString('latin1');
        }
        if (all.length > MAX_LINE) {
          throw new MigrateWireError('protocol', `${this.peer} sent ${all.length} bytes without a newline where ${what} was expected`);
        }
      }
      if (this.#ended) throw this.#closedError(what);
      await this.#more(Math.max(1, deadline - Date.now()), what);
    }
  }

  /** Read a line that must be exactly `expected` (with its newline). */
  async expect(expected: string, what: string, ms: number): Promise<void> {
    const line = await this.readLine(what, ms);
    if (`${line}\n` !== expected) {
      throw new MigrateWireError('protocol', `${this.peer} sent ${JSON.stringify(line.slice(0, 80))} where ${what} was expected`);
    }
  }

  /** Write and resolve once the bytes are handed to the OS; a failed or closed socket rejects. */
  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#sock.destroyed || this.#sock.writableEnded) {
        reject(this.#closedError('a message could be sent'));
        return;
      }
      this.#sock.write(data, (e) => (e ? reject(new MigrateWireError('socket', `writing to ${this.peer} failed: ${(e as NodeJS.ErrnoException).code ?? e.message}`)) : resolve()));
    });
  }

  /** Finish our side (what was written still goes out), then close. */
  end(): void {
    if (!this.#sock.destroyed) this.#sock.end();
    // A peer that never closes its side must not keep the socket forever.
    setTimeout(() => this.#sock.destroy(), 2000).unref();
  }

  destroy(): void {
    this.#sock.destroy();
  }
}
